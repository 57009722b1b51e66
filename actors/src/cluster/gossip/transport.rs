//! How the Gossip actor's datagrams travel: UDP on the mesh port, read
//! through tokio for readiness and written with a plain `sendto`; or, to
//! and from nodes that UDP cannot reach (a relayed node, or this node if
//! it is relayed), over mesh links, answered the way they came.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use actix::prelude::*;
use swarm_protocol::NodeId;
use tokio::io::unix::AsyncFd;

use super::{unix_millis, Gossip};
use crate::mesh::InboundDatagram;

/// Datagrams from the socket, as an actix stream. The socket is registered
/// for readability only: sends go through a plain socket, and a writable
/// registration would wake the node after every send for nothing.
pub(super) struct Datagrams {
    pub(super) socket: Arc<AsyncFd<std::net::UdpSocket>>,
    pub(super) buf: Box<[u8]>,
}

impl Stream for Datagrams {
    type Item = (Vec<u8>, SocketAddr);

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let mut guard = match this.socket.poll_read_ready(cx) {
                Poll::Ready(Ok(guard)) => guard,
                Poll::Ready(Err(e)) => {
                    tracing::trace!(error = %e, "gossip socket error");
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Pending => return Poll::Pending,
            };
            let buf = &mut this.buf;
            match guard.try_io(|socket| socket.get_ref().recv_from(buf)) {
                Ok(Ok((len, from))) => {
                    let datagram = buf.get(..len).unwrap_or_default().to_vec();
                    return Poll::Ready(Some((datagram, from)));
                }
                // ICMP errors of earlier sends surface here; they concern no
                // datagram in particular. Yield and try again, so that an
                // error that repeats cannot spin the node's thread.
                Ok(Err(e)) => {
                    tracing::trace!(error = %e, "gossip socket error");
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                // Not readable after all: readiness was cleared; wait again.
                Err(_would_block) => continue,
            }
        }
    }
}

/// Datagrams read from the socket before one timer is handled, at most.
const MAX_DRAINED: usize = 256;

/// How late a timer must fire for the socket to be read before it is
/// handled: more than the timer wheel's rounding (a millisecond or two),
/// so that a node on time skips the read, and far less than a probe
/// timeout, so that a starved node's queued acks and refutations still
/// count before its timers.
pub(super) const DRAIN_IF_LATE: Duration = Duration::from_millis(5);

/// How often a relayed node compares the relays it announces with its
/// relay links (a changed set is gossiped at once).
pub(super) const VIA_REFRESH: Duration = Duration::from_secs(1);

/// Mesh routes remembered; past that the list is cleared, and the next
/// datagram of each member over the mesh puts it back.
const MAX_MESH_ROUTES: usize = 4096;

/// Datagrams that arrived over mesh links, as an actix stream.
pub(super) struct MeshDatagrams(pub(super) tokio::sync::mpsc::Receiver<InboundDatagram>);

impl Stream for MeshDatagrams {
    type Item = InboundDatagram;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().0.poll_recv(cx)
    }
}

impl Gossip {
    /// Reads and applies the datagrams already queued on the socket (up
    /// to [`MAX_DRAINED`]), before a timer that fired late (by more than
    /// [`DRAIN_IF_LATE`]) is handled: a node that was starved handles
    /// what arrived in arrival order, so a suspect's refutation queued
    /// before the suspicion timed out still counts, and datagrams do not
    /// age in the queue while timers run first. The caller flushes what
    /// this queued.
    pub(super) fn drain_socket(&mut self) {
        let socket = Arc::clone(&self.socket);
        let mut buf = std::mem::take(&mut self.drain_buf);
        for _ in 0..MAX_DRAINED {
            // WouldBlock: nothing queued (the stream's readiness is
            // cleared on its next read); other errors concern earlier
            // sends, and the stream handles them.
            let Ok((len, from)) = socket.get_ref().recv_from(&mut buf) else {
                break;
            };
            let Some(datagram) = buf.get_mut(..len) else {
                break;
            };
            let now = self.epoch.elapsed();
            if let Err(e) = self
                .machine
                .handle_datagram(from, datagram, now, unix_millis())
            {
                tracing::debug!(%from, error = %e, "gossip datagram dropped");
            }
        }
        self.drain_buf = buf;
    }

    /// Sends one sealed datagram: over UDP, or over the mesh to (or from)
    /// a node that UDP cannot reach.
    pub(super) fn send(&mut self, to: SocketAddr, sealed: &[u8]) {
        // A learned route is checked again as membership learns more (the
        // member's announced relays): one that no longer holds is unused.
        let learned = self
            .mesh_routes
            .get(&to)
            .copied()
            .filter(|(origin, via)| self.route_refusal(to, *origin, *via).is_none());
        let mut via = self
            .members
            .get(&to)
            .and_then(|m| m.meta.as_ref())
            .map(|m| m.via.clone())
            .unwrap_or_default();
        if !self.mesh.is_relayed() && via.is_empty() && learned.is_none() {
            // UDP: a full socket buffer drops the datagram, as the network might.
            if let Err(e) = self.sender.send_to(sealed, to) {
                tracing::debug!(%to, error = %e, "gossip datagram not sent");
            }
            return;
        }
        let unknown = NodeId::from_bytes([0; 16]);
        let node = self
            .machine
            .member(&to)
            .map(|m| m.id.node)
            .filter(|n| *n != unknown)
            .or(learned.map(|(node, _)| node))
            .or_else(|| self.mesh.node_at(to));
        let Some(node) = node else {
            // A seed not linked yet: the dial has started; the join retries.
            return;
        };
        if let Some((_, Some(relay))) = learned {
            if !via.contains(&relay) {
                via.push(relay);
            }
        }
        self.mesh
            .send_datagram(node, &via, self.mesh.advertised_addr(), sealed);
    }

    /// Keeps the relays this node announces in step with its relay links.
    pub(super) fn refresh_via(&mut self, ctx: &mut Context<Self>) {
        let via = self.mesh.via();
        if self.machine.own_meta().via == via {
            return;
        }
        let mut meta = self.machine.own_meta().clone();
        meta.via = via;
        let now = self.now();
        match self.machine.set_meta(meta, now) {
            Ok(()) => {
                self.table.publish(&self.own_member());
                self.flush(ctx);
            }
            Err(e) => tracing::warn!(error = %e, "relays not announced"),
        }
    }
}

impl StreamHandler<InboundDatagram> for Gossip {
    /// A datagram over the mesh: opened and applied first, and only then,
    /// if it opened with the gossip key, its route is considered (answers
    /// it caused are sent after, the way it came, if the route holds).
    fn handle(&mut self, datagram: InboundDatagram, ctx: &mut Context<Self>) {
        if self.left {
            return;
        }
        let InboundDatagram {
            from,
            origin,
            via,
            mut bytes,
        } = datagram;
        let now = self.epoch.elapsed();
        match self
            .machine
            .handle_datagram(from, &mut bytes, now, unix_millis())
        {
            Ok(()) => self.learn_route(from, origin, via),
            // Counted by reason in the machine's stats.
            Err(e) => tracing::debug!(%from, error = %e, "gossip datagram dropped"),
        }
        self.flush(ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

/// Refused routes logged at warn level; the rest at debug.
const LOGGED_ROUTE_REFUSALS: u64 = 64;

impl Gossip {
    /// Remembers that the member at `from` is answered over the mesh (to
    /// `origin`, through `via`), if that route may be its route; otherwise
    /// counts and logs the refusal.
    fn learn_route(&mut self, from: SocketAddr, origin: NodeId, via: Option<NodeId>) {
        match self.route_refusal(from, origin, via) {
            None => {
                if self.mesh_routes.len() >= MAX_MESH_ROUTES
                    && !self.mesh_routes.contains_key(&from)
                {
                    self.mesh_routes.clear();
                }
                self.mesh_routes.insert(from, (origin, via));
            }
            Some(RouteRefusal::Unknown) => {
                // Nothing to steer yet: answered by UDP (or its announced
                // relays) until membership knows it.
                tracing::trace!(%from, "no route learned for an unknown member");
            }
            Some(why) => {
                self.mesh.count_relay_refused();
                self.routes_refused += 1;
                let carrier = via.unwrap_or(origin);
                if self.routes_refused <= LOGGED_ROUTE_REFUSALS {
                    tracing::warn!(%from, origin = %origin.short(), carrier = %carrier.short(), reason = why.as_str(), "gossip route refused");
                } else {
                    tracing::debug!(%from, origin = %origin.short(), carrier = %carrier.short(), reason = why.as_str(), "gossip route refused");
                }
            }
        }
    }

    /// Why the member at `from` may not be answered through `origin`
    /// (carried by `via`), if it may not: `from` must be `origin`'s
    /// address as membership knows it, and a relay that carried it must
    /// be a relay the member announces (or, until its metadata is known,
    /// any relay), or one of this node's own relays.
    fn route_refusal(
        &self,
        from: SocketAddr,
        origin: NodeId,
        via: Option<NodeId>,
    ) -> Option<RouteRefusal> {
        let unknown = NodeId::from_bytes([0; 16]);
        match self.machine.member(&from).map(|m| m.id.node) {
            None => return Some(RouteRefusal::Unknown),
            Some(node) if node == unknown => return Some(RouteRefusal::Unknown),
            Some(node) if node != origin => return Some(RouteRefusal::NotItsAddress),
            Some(_) => {}
        }
        let relay = via?;
        if self.mesh.via().contains(&relay) {
            return None;
        }
        let is_relay = self
            .members
            .values()
            .any(|m| m.node == relay && m.meta.as_ref().is_some_and(|meta| meta.relay));
        if !is_relay {
            return Some(RouteRefusal::NotARelay);
        }
        match self.members.get(&from).and_then(|m| m.meta.as_ref()) {
            Some(meta) if !meta.via.contains(&relay) => Some(RouteRefusal::NotItsRelay),
            _ => None,
        }
    }
}

/// Why a route over the mesh was not learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RouteRefusal {
    /// Membership knows no member at that address (yet).
    Unknown,
    /// The address is another member's.
    NotItsAddress,
    /// The node that carried it is not a relay.
    NotARelay,
    /// The member does not announce the node that carried it as its relay.
    NotItsRelay,
}

impl RouteRefusal {
    fn as_str(self) -> &'static str {
        match self {
            RouteRefusal::Unknown => "no member has that address",
            RouteRefusal::NotItsAddress => "the address is another member's",
            RouteRefusal::NotARelay => "the node that carried it is not a relay",
            RouteRefusal::NotItsRelay => "the member does not announce that relay",
        }
    }
}
