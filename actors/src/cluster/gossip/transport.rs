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

use super::Gossip;
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
    /// Sends one sealed datagram: over UDP, or over the mesh to (or from)
    /// a node that UDP cannot reach.
    pub(super) fn send(&mut self, to: SocketAddr, sealed: &[u8]) {
        let learned = self.mesh_routes.get(&to).copied();
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
    fn handle(&mut self, datagram: InboundDatagram, ctx: &mut Context<Self>) {
        if self.mesh_routes.len() >= MAX_MESH_ROUTES
            && !self.mesh_routes.contains_key(&datagram.from)
        {
            self.mesh_routes.clear();
        }
        self.mesh_routes
            .insert(datagram.from, (datagram.origin, datagram.via));
        StreamHandler::<(Vec<u8>, SocketAddr)>::handle(self, (datagram.bytes, datagram.from), ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}
