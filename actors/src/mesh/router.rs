//! The `Router` owns the link table. It dials lazily (callers ask it only
//! when the table has no live entry), keeps one link per peer (when both
//! sides dial at once, the link dialed by the lower node id wins on both
//! sides; a direct link wins over a relayed one), learns routes from
//! handshakes and membership, and forgets links that close. It never
//! touches message bytes.
//!
//! Routes: a node that accepts connections is dialed at its address; if
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

use super::connect::{dial, handshake};
use super::link::{Close, Drain, Link, LinkHandle, LinkParts, PeerIdentity, Wire};
use super::Shared;
use crate::error::{CloseReason, DialError, LocalClose, Unreachable};

/// Two links to one peer established within this window are a simultaneous
/// dial (resolved by node id); a later one replaces the earlier (a restart).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(5);

type DialResult = Result<LinkHandle, DialError>;
type NodeWaiter = oneshot::Sender<Result<LinkHandle, Unreachable>>;

/// How a peer is reached.
#[derive(Debug, Clone, Default)]
struct Route {
    /// Where it listens (what it announced, or where it was dialed).
    addr: Option<SocketAddr>,
    /// The relays it is reached through; empty if it accepts connections.
    via: Vec<NodeId>,
}

/// A relay a relayed node dials: configured by address, or learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum RelayKey {
    Addr(SocketAddr),
    Node(NodeId),
}

/// The longest wait between dials to a relay that cannot be reached.
const MAX_RELAY_BACKOFF: Duration = Duration::from_secs(30);

/// One way to try reaching a node.
#[derive(Debug, Clone, Copy)]
enum Attempt {
    Direct(SocketAddr),
    Via(NodeId),
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
        let config = Arc::clone(&self.mesh.handshake);
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
        let body = est.peer.cert.body();
        let initiator = if est.initiator { me } else { peer };
        // A link handing this peer over may still deliver: every later
        // link waits for it, so no two links deliver side by side.
        let mut predecessor = self
            .draining
            .get(&peer)
            .filter(|(old, _)| !old.shared_closed())
            .map(|(_, done)| done.clone());
        if let Some((old, old_actor)) = self.actors.get(&peer) {
            let live = !old.is_closed();
            if live && old.via().is_none() && how.via.is_some() {
                tracing::debug!(peer = %peer.short(), "relayed link dropped; a direct link exists");
                return Ok(old.clone());
            }
            let upgrade = live && old.via().is_some() && how.via.is_none();
            let lower = me.min(peer);
            let simultaneous = old.established_at().elapsed() < DUPLICATE_WINDOW;
            if !upgrade && simultaneous && old.initiator() == lower && initiator != lower && live {
                tracing::debug!(peer = %peer.short(), "duplicate link dropped; keeping the one dialed by the lower id");
                return Ok(old.clone());
            }
            if upgrade {
                // A handover: the relayed link delivers what it carries,
                // then the direct one takes over (nothing lost or reordered).
                tracing::info!(peer = %peer.short(), "relayed link upgraded to a direct link");
                let (done, wait) = tokio::sync::watch::channel(false);
                old.mark_draining();
                old_actor.do_send(Drain(done));
                predecessor = Some(wait.clone());
                self.draining.insert(peer, (old.clone(), wait));
            } else {
                old_actor.do_send(Close(CloseReason::Replaced));
                // Stop dispatching on the old link before the new one reads anything.
                old.mark_closed();
            }
        }
        let id = self.next_link_id;
        self.next_link_id += 1;
        let who = PeerIdentity {
            peer,
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
        };
        let (link, handle) = Link::new(id, who, parts, Arc::clone(&self.mesh), ctx.address());
        let actor = link.start();
        let remote = how.remote;
        match how.via {
            None => {
                self.upgrades.remove(&peer);
                tracing::info!(peer = %peer.short(), name = %body.name, %remote, "link established");
            }
            Some(relay) => {
                // Try the direct path soon, then less and less often. The
                // higher id waits an interval more, so that when both sides
                // can dial, one dials and the other finds a direct link (two
                // direct links at once would lose what the dropped one carried).
                let first = self.mesh.config.upgrade_interval;
                let stagger = if me > peer { first } else { Duration::ZERO };
                self.upgrades
                    .entry(peer)
                    .or_insert((Instant::now() + first / 5 + stagger, first));
                tracing::info!(peer = %peer.short(), name = %body.name, relay = %relay.short(), "relayed link established");
            }
        }
        self.mesh.links.insert(handle.clone());
        self.actors.insert(peer, (handle.clone(), actor));
        self.arm_upgrades(ctx);
        Ok(handle)
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

impl Router {
    /// How often relay links and upgrades are looked after.
    fn tick(&self) -> Duration {
        (self.mesh.config.upgrade_interval / 5).max(Duration::from_millis(50))
    }

    /// Arms the upgrade timer while any relayed link exists.
    fn arm_upgrades(&mut self, ctx: &mut Context<Self>) {
        let relayed = self
            .actors
            .values()
            .any(|(h, _)| h.via().is_some() && !h.is_closed());
        if self.upgrade_timer.is_some() || !relayed {
            return;
        }
        let timer = ctx.run_later(self.tick(), |act, ctx| {
            act.upgrade_timer = None;
            act.try_upgrades(ctx);
            act.arm_upgrades(ctx);
        });
        self.upgrade_timer = Some(timer);
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

/// Returns the link to a node, dialing it (directly or through a relay)
/// if needed.
#[derive(Message)]
#[rtype(result = "Result<LinkHandle, Unreachable>")]
pub(super) struct DialNode {
    node: NodeId,
    /// Started by `Mesh::link_now`: the table's background-dial mark is
    /// cleared when it ends.
    background: bool,
    /// Only a direct link will do (a relay's next hop, an upgrade).
    direct_only: bool,
}

impl DialNode {
    pub(super) fn new(node: NodeId) -> Self {
        Self {
            node,
            background: false,
            direct_only: false,
        }
    }

    pub(super) fn background(node: NodeId) -> Self {
        Self {
            node,
            background: true,
            direct_only: false,
        }
    }

    /// Asks for a direct link only.
    pub(super) fn direct_only(mut self) -> Self {
        self.direct_only = true;
        self
    }
}

impl Router {
    /// The ways to try reaching `node`, in order.
    fn plan(&self, node: NodeId, direct_only: bool) -> Vec<Attempt> {
        let route = self.routes.get(&node).cloned().unwrap_or_default();
        let direct = route.addr.map(Attempt::Direct);
        if direct_only {
            return direct.into_iter().collect();
        }
        let mut relays: Vec<NodeId> = route.via.clone();
        if route.via.is_empty() {
            // A node that accepts connections is dialed first; if its path
            // breaks, a relay (this node's own first) forwards to it.
            relays.extend(self.mesh.via.lock().map(|v| v.clone()).unwrap_or_default());
            let mut others: Vec<NodeId> = self.relays.iter().copied().collect();
            others.sort();
            relays.extend(others);
        }
        let mut seen = HashSet::new();
        relays.retain(|r| *r != node && *r != self.mesh.id && seen.insert(*r));
        if route.via.is_empty() {
            // A fallback, not a search: a node that is down should fail fast.
            relays.truncate(self.mesh.config.relay_links.max(1));
        }
        let mut plan: Vec<Attempt> = Vec::new();
        let broke_lately = self
            .direct_failed
            .get(&node)
            .is_some_and(|at| at.elapsed() < self.mesh.config.upgrade_interval * 4);
        if route.via.is_empty() && !broke_lately {
            plan.extend(direct);
        }
        plan.extend(relays.into_iter().map(Attempt::Via));
        if route.via.is_empty() && broke_lately {
            plan.extend(direct);
        }
        plan
    }

    /// Tries each way to reach `node` in turn.
    async fn reach(
        router: Addr<Router>,
        mesh: Arc<Shared>,
        node: NodeId,
        plan: Vec<Attempt>,
    ) -> Result<LinkHandle, Unreachable> {
        // The first way's failure says most (a refused dial to the node's
        // own address, or its first relay's refusal).
        let mut first = None;
        for attempt in plan {
            let result = match attempt {
                // An injected fault: the dial's packets "never arrive".
                Attempt::Direct(_) if mesh.blocked(node) => Err(Unreachable::Dial(
                    DialError::Timeout(mesh.config.handshake_timeout),
                )),
                Attempt::Direct(addr) => match router.send(Dial(addr)).await {
                    Ok(Ok(link)) if link.peer() == node => return Ok(link),
                    Ok(Ok(link)) => Err(Unreachable::AnsweredAs(link.peer())),
                    Ok(Err(e)) => Err(Unreachable::Dial(e)),
                    Err(_) => Err(Unreachable::Dial(DialError::Stopped)),
                },
                Attempt::Via(relay) => Self::through(&router, &mesh, node, relay)
                    .await
                    .map_err(Unreachable::Dial),
            };
            match result {
                Ok(link) => return Ok(link),
                Err(e) => {
                    tracing::debug!(node = %node.short(), ?attempt, error = %e, "route failed");
                    first.get_or_insert(e);
                }
            }
        }
        Err(first.unwrap_or(Unreachable::NoAddress))
    }

    /// Opens a circuit to `node` through `relay` and runs the handshake in it.
    async fn through(
        router: &Addr<Router>,
        mesh: &Arc<Shared>,
        node: NodeId,
        relay: NodeId,
    ) -> Result<LinkHandle, DialError> {
        let relay_link = match router.send(DialNode::new(relay).direct_only()).await {
            Ok(Ok(link)) => link,
            Ok(Err(Unreachable::Dial(e))) => return Err(e),
            Ok(Err(_)) => return Err(DialError::NoRelay),
            Err(_) => return Err(DialError::Stopped),
        };
        let timeout = mesh.config.handshake_timeout;
        let (mut stream, key) = super::relay::open_circuit(mesh, &relay_link, node).await?;
        let config = Arc::clone(&mesh.handshake);
        let (est, leftover) = handshake(&mut stream, config, true, timeout)
            .await
            .map_err(|e| match mesh.circuits.take_refusal(key) {
                // The relay (or the far end) said why it closed the circuit.
                Some(why) => DialError::Relay(why),
                None => DialError::Handshake(e),
            })?;
        if est.peer.node_id != node {
            return Err(DialError::Relay(
                swarm_protocol::relay::RelayRefusal::Forged,
            ));
        }
        router
            .send(OpenedCircuit {
                stream,
                est,
                leftover,
                relay: relay_link,
            })
            .await
            .map_err(|_| DialError::Stopped)?
    }

    /// Relayed links whose turn has come try to become direct.
    fn try_upgrades(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let cap = self.mesh.config.upgrade_interval * 4;
        let due: Vec<NodeId> = self
            .actors
            .iter()
            .filter(|(_, (h, _))| h.via().is_some() && !h.is_closed())
            .map(|(peer, _)| *peer)
            .filter(|peer| self.upgrades.get(peer).is_none_or(|(at, _)| *at <= now))
            .filter(|peer| self.routes.get(peer).is_some_and(|r| r.addr.is_some()))
            .collect();
        for peer in due {
            let wait = self
                .upgrades
                .get(&peer)
                .map_or(self.mesh.config.upgrade_interval, |(_, wait)| *wait);
            self.upgrades
                .insert(peer, (now + wait, (wait * 2).min(cap)));
            if self.dialing_nodes.contains_key(&(peer, true)) {
                continue;
            }
            let dial = self.dial_node(peer, true, ctx);
            ctx.spawn(dial.into_actor(self).map(move |result, _, _| {
                if let Err(e) = result {
                    tracing::debug!(peer = %peer.short(), error = %e, "direct path not available yet");
                }
            }));
        }
    }

    /// A relayed node keeps links to its relays and announces them.
    fn keep_relays(&mut self, ctx: &mut Context<Self>) {
        let mesh = Arc::clone(&self.mesh);
        let config = &mesh.config;
        if !config.relayed {
            return;
        }
        let relays = &self.relays;
        let mut live: Vec<NodeId> = self
            .actors
            .iter()
            .filter(|(peer, (h, _))| relays.contains(peer) && h.via().is_none() && !h.is_closed())
            .map(|(peer, _)| *peer)
            .collect();
        live.sort();
        live.truncate(config.relay_links.max(1));
        if let Ok(mut via) = self.mesh.via.lock() {
            if *via != live {
                tracing::info!(relays = ?live.iter().map(|r| r.short()).collect::<Vec<_>>(), "reached through relays");
                *via = live.clone();
            }
        }
        if live.len() >= config.relay_links.max(1) {
            return;
        }
        // Configured relays are dialed by address; relays learned from
        // membership by id. One that cannot be reached is tried less and
        // less often.
        let now = Instant::now();
        for addr in config.relays.clone() {
            let known = self
                .routes
                .iter()
                .any(|(peer, r)| r.addr == Some(addr) && live.contains(peer));
            if known
                || self.dialing.contains_key(&addr)
                || !self.relay_due(RelayKey::Addr(addr), now)
            {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            self.start_dial(addr, tx, ctx);
            ctx.spawn(rx.into_actor(self).map(move |result, act, _| {
                if let Ok(Ok(link)) = result {
                    act.relays.insert(link.peer());
                    act.relay_backoff.remove(&RelayKey::Addr(addr));
                }
            }));
        }
        let learned: Vec<NodeId> = self
            .relays
            .iter()
            .filter(|r| {
                !live.contains(r)
                    && !self.mesh.down.contains(**r)
                    && !self.dialing_nodes.contains_key(&(**r, true))
            })
            .copied()
            .collect();
        for relay in learned.into_iter().take(config.relay_links) {
            if !self.relay_due(RelayKey::Node(relay), now) {
                continue;
            }
            let dial = self.dial_node(relay, true, ctx);
            ctx.spawn(dial.into_actor(self).map(move |result, act, _| {
                if result.is_ok() {
                    act.relay_backoff.remove(&RelayKey::Node(relay));
                }
            }));
        }
    }

    /// Whether a dial to this relay may start now; if so, the next one waits longer.
    fn relay_due(&mut self, relay: RelayKey, now: Instant) -> bool {
        let first = (self.mesh.config.upgrade_interval / 5).max(Duration::from_millis(100));
        let (at, wait) = self
            .relay_backoff
            .get(&relay)
            .copied()
            .unwrap_or((now, first));
        if at > now {
            return false;
        }
        self.relay_backoff
            .insert(relay, (now + wait, (wait * 2).min(MAX_RELAY_BACKOFF)));
        true
    }

    /// Dials `node` (joining a dial under way); the future ends with the link.
    fn dial_node(
        &mut self,
        node: NodeId,
        direct_only: bool,
        ctx: &mut Context<Self>,
    ) -> impl std::future::Future<Output = Result<LinkHandle, Unreachable>> + 'static {
        let (tx, rx) = oneshot::channel();
        let key = (node, direct_only);
        if let Some(waiters) = self.dialing_nodes.get_mut(&key) {
            waiters.push(tx);
        } else {
            self.dialing_nodes.insert(key, vec![tx]);
            let plan = self.plan(node, direct_only);
            let reach = Self::reach(ctx.address(), Arc::clone(&self.mesh), node, plan);
            ctx.spawn(reach.into_actor(self).map(move |result, act, _| {
                if let Err(Unreachable::Dial(_)) = &result {
                    if direct_only {
                        act.direct_failed.insert(node, Instant::now());
                    }
                }
                for waiter in act.dialing_nodes.remove(&key).unwrap_or_default() {
                    let _ = waiter.send(result.clone());
                }
            }));
        }
        async move {
            rx.await
                .unwrap_or(Err(Unreachable::Dial(DialError::Stopped)))
        }
    }
}

impl Handler<DialNode> for Router {
    type Result = ResponseActFuture<Self, Result<LinkHandle, Unreachable>>;

    fn handle(&mut self, msg: DialNode, ctx: &mut Context<Self>) -> Self::Result {
        let DialNode {
            node,
            background,
            direct_only,
        } = msg;
        let finish = move |result: Result<LinkHandle, Unreachable>,
                           act: &mut Router,
                           _: &mut Context<Router>| {
            if background {
                act.mesh.links.end_background_dial(node);
            }
            result
        };
        if let Some(handle) = self
            .live(node)
            .filter(|l| !direct_only || l.via().is_none())
        {
            return Box::pin(fut::ready(Ok(handle)).map(finish));
        }
        if self.plan(node, direct_only).is_empty() {
            return Box::pin(fut::ready(Err(Unreachable::NoAddress)).map(finish));
        }
        let dial = self.dial_node(node, direct_only, ctx);
        Box::pin(dial.into_actor(self).map(finish))
    }
}

/// Opens a relayed link to `node` through `relay`, whatever the routes
/// say (an operator's or a test's choice of path).
#[derive(Message)]
#[rtype(result = "Result<LinkHandle, DialError>")]
pub(super) struct Through {
    pub(super) node: NodeId,
    pub(super) relay: NodeId,
}

impl Handler<Through> for Router {
    type Result = ResponseFuture<Result<LinkHandle, DialError>>;

    fn handle(&mut self, msg: Through, ctx: &mut Context<Self>) -> Self::Result {
        let router = ctx.address();
        let mesh = Arc::clone(&self.mesh);
        Box::pin(async move { Self::through(&router, &mesh, msg.node, msg.relay).await })
    }
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
            remote: msg.relay.info().addr,
            dialed: None,
            via: Some(relay),
            leftover: msg.leftover,
        };
        if let Err(reason) = self.install(Wire::Circuit(msg.stream), msg.est, how, ctx) {
            tracing::warn!(relay = %relay.short(), %reason, "relayed link refused");
        }
    }
}

/// A circuit this node opened, whose handshake succeeded.
#[derive(Message)]
#[rtype(result = "Result<LinkHandle, DialError>")]
struct OpenedCircuit {
    stream: super::relay::Circuit,
    est: Established,
    leftover: Vec<u8>,
    relay: LinkHandle,
}

impl Handler<OpenedCircuit> for Router {
    type Result = Result<LinkHandle, DialError>;

    fn handle(&mut self, msg: OpenedCircuit, ctx: &mut Context<Self>) -> Self::Result {
        let how = How {
            remote: msg.relay.info().addr,
            dialed: None,
            via: Some(msg.relay.peer()),
            leftover: msg.leftover,
        };
        self.install(Wire::Circuit(msg.stream), msg.est, how, ctx)
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
