//! The `Router` owns the link table. It dials lazily (callers ask it only
//! when the table has no live entry), keeps one link per peer (when both
//! sides dial at once, the link dialed by the lower node id wins on both
//! sides; a direct link wins over a relayed one; the other link hands
//! over what it carries, as a relayed link does when it becomes direct),
//! learns routes from handshakes and membership, and forgets links that
//! close. It never touches message bytes.
//!
//! Routes (`routes`): a node that accepts connections is dialed at its address; if
//! that fails, through a relay (this node's own first, then any relay). A
//! node reached through relays gets a circuit through one of them, and
//! every relayed link tries, now and then, to become direct: whichever
//! side can dial the other does, and the direct link replaces the relayed
//! one. A relayed node keeps links to `relay_links` relays.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use swarm_protocol::{Established, NodeId};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::connect::dial;
use super::link::{Close, Drain, Link, LinkHandle, LinkParts, PeerIdentity, Wire};
use super::Shared;

mod routes;

use crate::error::{CloseReason, DialError, LocalClose, Unreachable};
use routes::RelayKey;
pub(super) use routes::{DialNode, Through};

/// Two links to one peer established within this window are a simultaneous
/// dial (resolved by node id); a later one replaces the earlier (a restart).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(5);

type DialResult = Result<LinkHandle, DialError>;
/// A new link's parts: its wire, session, how it came to be, its dialer.
type NewLink = (Wire, Established, How, NodeId);
/// Closed (or set) when a link handing its peer over got that far.
type Waiter = tokio::sync::watch::Receiver<bool>;
type NodeWaiter = oneshot::Sender<Result<LinkHandle, Unreachable>>;

/// How a peer is reached.
#[derive(Debug, Clone, Default)]
struct Route {
    /// Where it listens (what it announced, or where it was dialed).
    addr: Option<SocketAddr>,
    /// The relays it is reached through; empty if it accepts connections.
    via: Vec<NodeId>,
}

/// The router actor.
pub(super) struct Router {
    /// The mesh, whose link table this actor alone writes.
    mesh: Arc<Shared>,
    /// The actors of the links in the table.
    actors: HashMap<NodeId, (LinkHandle, Addr<Link>)>,
    /// How each known peer is reached.
    routes: HashMap<NodeId, Route>,
    /// Relay-capable peers.
    relays: HashSet<NodeId>,
    /// Dials to nodes in progress (by node and direct-only), with their waiters.
    dialing_nodes: HashMap<(NodeId, bool), Vec<NodeWaiter>>,
    /// When each relayed link may next try to become direct, and the wait after that.
    upgrades: HashMap<NodeId, (Instant, Duration)>,
    /// Peers whose direct path failed lately: their next dial tries relays first.
    direct_failed: HashMap<NodeId, Instant>,
    /// A relayed node's next dial to each relay it lacks, and the wait after that.
    relay_backoff: HashMap<RelayKey, (Instant, Duration)>,
    /// Armed while relayed links exist: their next upgrade attempts.
    upgrade_timer: Option<SpawnHandle>,
    /// Links handing their peer over to a successor, still delivering what
    /// they carry (out of the table already).
    draining: HashMap<NodeId, (LinkHandle, tokio::sync::watch::Receiver<bool>)>,
    /// Dials in progress, with their waiters.
    dialing: HashMap<SocketAddr, Vec<oneshot::Sender<DialResult>>>,
    /// The next link id.
    next_link_id: u64,
}

impl Router {
    pub(super) fn new(mesh: Arc<Shared>) -> Self {
        Self {
            mesh,
            actors: HashMap::new(),
            routes: HashMap::new(),
            relays: HashSet::new(),
            dialing_nodes: HashMap::new(),
            upgrades: HashMap::new(),
            direct_failed: HashMap::new(),
            relay_backoff: HashMap::new(),
            upgrade_timer: None,
            draining: HashMap::new(),
            dialing: HashMap::new(),
            next_link_id: 1,
        }
    }

    fn live(&self, peer: NodeId) -> Option<LinkHandle> {
        self.actors
            .get(&peer)
            .filter(|(h, _)| !h.is_closed())
            .map(|(h, _)| h.clone())
    }

    fn start_dial(
        &mut self,
        addr: SocketAddr,
        waiter: oneshot::Sender<DialResult>,
        ctx: &mut Context<Self>,
    ) {
        if let Some(waiters) = self.dialing.get_mut(&addr) {
            waiters.push(waiter);
            return;
        }
        self.dialing.insert(addr, vec![waiter]);
        let config = self.mesh.handshake();
        let timeout = self.mesh.config.handshake_timeout;
        ctx.spawn(
            dial(addr, config, timeout)
                .into_actor(self)
                .map(move |result, act, ctx| {
                    let outcome = match result {
                        Ok((stream, est, leftover)) => {
                            let how = How {
                                remote: addr,
                                dialed: Some(addr),
                                via: None,
                                leftover,
                            };
                            act.install(Wire::Tcp(stream), est, how, ctx)
                        }
                        Err(e) => {
                            tracing::debug!(%addr, error = %e, "dial failed");
                            Err(e)
                        }
                    };
                    for waiter in act.dialing.remove(&addr).unwrap_or_default() {
                        let _ = waiter.send(outcome.clone());
                    }
                }),
        );
    }

    /// Adopts an established connection, unless a better link to the same
    /// peer exists. Returns the link to use for that peer.
    fn install(
        &mut self,
        wire: Wire,
        est: Established,
        how: How,
        ctx: &mut Context<Self>,
    ) -> DialResult {
        let me = self.mesh.id;
        let peer = est.peer.node_id;
        if peer == me {
            return Err(DialError::SelfConnect);
        }
        if how.via.is_none() && self.mesh.blocked(peer) {
            // An injected fault: the packets "never arrived".
            return Err(DialError::Timeout(self.mesh.config.handshake_timeout));
        }
        let route = self.routes.entry(peer).or_default();
        match how.dialed {
            Some(addr) => route.addr = Some(addr),
            None if route.addr.is_none() => route.addr = est.peer.listen.parse().ok(),
            None => {}
        }
        let name = est.peer.cert.body().name.clone();
        let initiator = if est.initiator { me } else { peer };
        // A link handing this peer over may still deliver: every later
        // link waits for it, so no two links deliver side by side.
        let mut predecessor = self
            .draining
            .get(&peer)
            .filter(|(old, _)| !old.stopped_delivering())
            .map(|(_, done)| done.clone());
        let mut write_after = None;
        if let Some((old, old_actor)) = self.actors.get(&peer) {
            let live = !old.is_closed();
            let upgrade = live && old.via().is_some() && how.via.is_none();
            let lower = me.min(peer);
            // Both sides dialed (the two links have different dialers).
            let crossed = live
                && old.initiator() != initiator
                && old.established_at().elapsed() < DUPLICATE_WINDOW;
            let relayed_after_direct = live && old.via().is_none() && how.via.is_some();
            if relayed_after_direct || (!upgrade && crossed && old.initiator() == lower) {
                // The peer may have sent on the new link before it saw the
                // one kept here: the new link delivers that, then stops.
                let kept = old.clone();
                if predecessor.is_some() {
                    // One duplicate at a time (a crossing makes one): a
                    // peer opening more is not waited for.
                    tracing::debug!(peer = %peer.short(), "duplicate link dropped; another still drains");
                    return Ok(kept);
                }
                tracing::debug!(peer = %peer.short(), relayed = how.via.is_some(), "duplicate link drained into the one kept");
                let parts = (wire, est, how, initiator);
                self.drain_duplicate(parts, &kept, predecessor, ctx);
                return Ok(kept);
            }
            if upgrade || crossed {
                // A handover: the old link delivers what it carries,
                // then the new one takes over (nothing lost or reordered).
                if upgrade {
                    tracing::info!(peer = %peer.short(), "relayed link upgraded to a direct link");
                } else {
                    tracing::debug!(peer = %peer.short(), "crossed dials: keeping the one dialed by the lower id");
                }
                let (done, wait) = tokio::sync::watch::channel(false);
                old.mark_draining();
                old_actor.do_send(Drain(done));
                predecessor = Some(wait.clone());
                write_after = Some(wait.clone());
                self.draining.insert(peer, (old.clone(), wait));
            } else {
                old_actor.do_send(Close(CloseReason::Replaced));
                // Stop dispatching on the old link before the new one reads anything.
                old.mark_closed();
            }
        }
        let remote = how.remote;
        let via = how.via;
        let order = (predecessor, write_after);
        let (handle, actor) = self.start_link((wire, est, how, initiator), order, ctx);
        match via {
            None => {
                self.upgrades.remove(&peer);
                tracing::info!(peer = %peer.short(), %name, %remote, "link established");
            }
            Some(relay) => {
                // Try the direct path soon, then less and less often. The
                // higher id waits an interval more, so that when both sides
                // can dial, one dials and the other finds a direct link (two
                // direct links at once cost a second handover).
                let first = self.mesh.config.upgrade_interval;
                let stagger = if me > peer { first } else { Duration::ZERO };
                self.upgrades
                    .entry(peer)
                    .or_insert((Instant::now() + first / 5 + stagger, first));
                tracing::info!(peer = %peer.short(), %name, relay = %relay.short(), "relayed link established");
            }
        }
        // An operator node's session goes first on every link.
        let present = self
            .mesh
            .greeting
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(envelope) = present {
            let _ = handle.try_send(envelope);
        }
        self.mesh.links.insert(handle.clone());
        self.actors.insert(peer, (handle.clone(), actor));
        self.arm_upgrades(ctx);
        Ok(handle)
    }
    /// Starts a link over an established session.
    fn start_link(
        &mut self,
        (wire, est, how, initiator): NewLink,
        (predecessor, write_after): (Option<Waiter>, Option<Waiter>),
        ctx: &mut Context<Self>,
    ) -> (LinkHandle, Addr<Link>) {
        let id = self.next_link_id;
        self.next_link_id += 1;
        let body = est.peer.cert.body();
        let who = PeerIdentity {
            peer: est.peer.node_id,
            serial: body.serial,
            name: body.name.clone(),
            roles: body.roles.clone().into(),
            initiator,
            remote_addr: how.remote,
            via: how.via,
        };
        let parts = LinkParts {
            wire,
            sender: est.sender,
            receiver: est.receiver,
            leftover: how.leftover,
            predecessor,
            write_after,
        };
        let (seed, handle) = Link::seed(id, who, parts, Arc::clone(&self.mesh), ctx.address());
        let actor = match self.mesh.priority.get() {
            Some(thread) if seed.is_priority() => seed.start_on(thread),
            _ => seed.start(),
        };
        (handle, actor)
    }

    /// A second link to a peer whose link is kept (crossed dials, or a
    /// relayed one while a direct one exists): it never carries anything
    /// from here; it delivers what the peer sent on it before the peer saw
    /// the kept link, answers those asks, and stops once the peer said its
    /// handover goodbye there. The kept link dispatches nothing more until
    /// then, so the peer's messages keep their order.
    fn drain_duplicate(
        &mut self,
        new: NewLink,
        kept: &LinkHandle,
        predecessor: Option<tokio::sync::watch::Receiver<bool>>,
        ctx: &mut Context<Self>,
    ) {
        let peer = kept.peer();
        let (handle, actor) = self.start_link(new, (predecessor, None), ctx);
        handle.mark_draining();
        let (done, wait) = tokio::sync::watch::channel(false);
        // Held before the goodbye goes out: the peer writes on the kept
        // link only once it read that goodbye (`LinkParts::write_after`),
        // or once its side of this link stopped.
        kept.hold_for(wait.clone());
        actor.do_send(Drain(done));
        self.draining.entry(peer).or_insert((handle, wait));
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Only a relayed node has a timer of its own; others wake up for
        // upgrades only while they have relayed links.
        if self.mesh.config.relayed {
            ctx.run_interval(self.tick(), |act, ctx| act.keep_relays(ctx));
            self.keep_relays(ctx);
        }
    }
}

/// Dials an address (or reuses the link to whoever is known to listen there).
#[derive(Message)]
#[rtype(result = "Result<LinkHandle, DialError>")]
pub(super) struct Dial(pub(super) SocketAddr);

impl Handler<Dial> for Router {
    type Result = ResponseFuture<Result<LinkHandle, DialError>>;

    fn handle(&mut self, Dial(addr): Dial, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let known = self
            .routes
            .iter()
            .find(|(_, r)| r.addr == Some(addr))
            .and_then(|(peer, _)| self.live(*peer))
            .filter(|link| link.via().is_none());
        match known {
            Some(handle) => {
                let _ = tx.send(Ok(handle));
            }
            None => self.start_dial(addr, tx, ctx),
        }
        Box::pin(async move { rx.await.map_err(|_| DialError::Stopped)? })
    }
}

/// How a new link came to be.
pub(super) struct How {
    /// The socket's remote address (a relayed link: the relay's).
    remote: SocketAddr,
    /// The address this node dialed, if it did.
    dialed: Option<SocketAddr>,
    /// The relay a relayed link runs through.
    via: Option<NodeId>,
    /// Bytes read past the handshake.
    leftover: Vec<u8>,
}

/// An accepted connection whose handshake succeeded.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Inbound {
    pub(super) stream: TcpStream,
    pub(super) est: Established,
    pub(super) leftover: Vec<u8>,
    pub(super) remote: SocketAddr,
}

impl Handler<Inbound> for Router {
    type Result = ();

    fn handle(&mut self, msg: Inbound, ctx: &mut Context<Self>) {
        if let Ok(local) = msg.stream.local_addr() {
            if self.mesh.detection.dialed_back(msg.est.peer.node_id, local) {
                tracing::info!(%local, "address confirmed by a dial-back");
                return;
            }
        }
        let how = How {
            remote: msg.remote,
            dialed: None,
            via: None,
            leftover: msg.leftover,
        };
        if let Err(reason) = self.install(Wire::Tcp(msg.stream), msg.est, how, ctx) {
            tracing::warn!(remote = %msg.remote, %reason, "inbound link refused");
        }
    }
}

/// A circuit opened to this node through a relay, whose handshake succeeded.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct InboundCircuit {
    pub(super) stream: super::relay::Circuit,
    pub(super) est: Established,
    pub(super) leftover: Vec<u8>,
    pub(super) relay: LinkHandle,
}

impl Handler<InboundCircuit> for Router {
    type Result = ();

    fn handle(&mut self, msg: InboundCircuit, ctx: &mut Context<Self>) {
        let relay = msg.relay.peer();
        let how = How {
            remote: msg.relay.remote_addr(),
            dialed: None,
            via: Some(relay),
            leftover: msg.leftover,
        };
        if let Err(reason) = self.install(Wire::Circuit(msg.stream), msg.est, how, ctx) {
            tracing::warn!(relay = %relay.short(), %reason, "relayed link refused");
        }
    }
}

/// A link stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct LinkClosed {
    pub(super) peer: NodeId,
    pub(super) id: u64,
    /// Closed by an error (not idle, shutdown or goodbye).
    pub(super) failed: bool,
}

impl Handler<LinkClosed> for Router {
    type Result = ();

    fn handle(&mut self, msg: LinkClosed, _ctx: &mut Context<Self>) {
        if self
            .draining
            .get(&msg.peer)
            .is_some_and(|(h, _)| h.id() == msg.id)
        {
            self.draining.remove(&msg.peer);
        }
        if self
            .actors
            .get(&msg.peer)
            .is_some_and(|(h, _)| h.id() == msg.id)
        {
            if let Some((link, _)) = self.actors.remove(&msg.peer) {
                if msg.failed && link.via().is_none() {
                    // The direct path broke: the next dial tries relays first.
                    self.direct_failed.insert(msg.peer, Instant::now());
                }
            }
        }
        self.mesh.links.remove(msg.peer, msg.id);
    }
}

/// Membership learned that a node is alive, and how it is reached.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct PeerUp {
    pub(super) node: NodeId,
    pub(super) addr: SocketAddr,
    pub(super) via: Vec<NodeId>,
    pub(super) relay: bool,
}

impl Handler<PeerUp> for Router {
    type Result = ();

    fn handle(&mut self, msg: PeerUp, _ctx: &mut Context<Self>) {
        let route = self.routes.entry(msg.node).or_default();
        route.addr = Some(msg.addr);
        route.via = msg.via;
        if msg.relay {
            self.relays.insert(msg.node);
        } else {
            self.relays.remove(&msg.node);
        }
    }
}

/// Membership declared a node down or departed: close the link to it.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct PeerDown(pub(super) NodeId);

impl Handler<PeerDown> for Router {
    type Result = ();

    fn handle(&mut self, PeerDown(node): PeerDown, _ctx: &mut Context<Self>) {
        self.relays.remove(&node);
        self.upgrades.remove(&node);
        self.direct_failed.remove(&node);
        if let Some((handle, actor)) = self.actors.remove(&node) {
            handle.mark_member_down();
            actor.do_send(Close(CloseReason::MemberDown));
            self.mesh.links.remove(node, handle.id());
        }
    }
}

/// Closes the links (and drops the draining ones) whose peer certificate
/// serial is revoked; their handshakes are refused from now on.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct CloseRevoked;

impl Handler<CloseRevoked> for Router {
    type Result = ();

    fn handle(&mut self, _: CloseRevoked, _ctx: &mut Context<Self>) {
        let handshake = self.mesh.handshake();
        let trust = &handshake.trust;
        let revoked: Vec<NodeId> = self
            .actors
            .iter()
            .filter(|(_, (handle, _))| trust.is_revoked(handle.serial()))
            .map(|(node, _)| *node)
            .collect();
        for node in revoked {
            if let Some((handle, actor)) = self.actors.remove(&node) {
                tracing::warn!(peer = %node.short(), serial = handle.serial(), "certificate revoked: closing its link");
                handle.mark_closed();
                actor.do_send(Close(CloseReason::Local(LocalClose::Revoked)));
                self.mesh.links.remove(node, handle.id());
            }
        }
        // A draining duplicate delivers until its peer's goodbye or its
        // deadline: a revoked peer's stops delivering now (its reader
        // refuses the next envelope and the link closes).
        self.draining.retain(|_, (handle, _)| {
            let revoked = trust.is_revoked(handle.serial());
            if revoked {
                handle.mark_closed();
            }
            !revoked
        });
    }
}

/// Closes every link (node shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct CloseAll;

impl Handler<CloseAll> for Router {
    type Result = ();

    fn handle(&mut self, _: CloseAll, _ctx: &mut Context<Self>) {
        // Draining links stop at their deadline, or when the node stops.
        self.draining.clear();
        for (_, (handle, actor)) in self.actors.drain() {
            handle.mark_closed();
            actor.do_send(Close(CloseReason::Local(LocalClose::Shutdown)));
        }
        self.mesh.links.clear();
    }
}
