//! Routes: how the Router reaches a node (directly, or through a relay of
//! its own, of this node, or any), relayed links' attempts to become
//! direct, and a relayed node's upkeep of its relay links.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use swarm_protocol::{Established, NodeId};
use tokio::sync::oneshot;

use super::{Dial, How, Router};
use crate::error::{DialError, Unreachable};
use crate::mesh::connect::handshake;
use crate::mesh::link::{LinkHandle, Wire};
use crate::mesh::Shared;

/// A relay a relayed node dials: configured by address, or learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum RelayKey {
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

impl Router {
    /// How often relay links and upgrades are looked after.
    pub(super) fn tick(&self) -> Duration {
        (self.mesh.config.upgrade_interval / 5).max(Duration::from_millis(50))
    }

    /// Arms the upgrade timer while any relayed link exists.
    pub(super) fn arm_upgrades(&mut self, ctx: &mut Context<Self>) {
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

/// Returns the link to a node, dialing it (directly or through a relay)
/// if needed.
#[derive(Message)]
#[rtype(result = "Result<LinkHandle, Unreachable>")]
pub(in crate::mesh) struct DialNode {
    node: NodeId,
    /// Started by `Mesh::link_now`: the table's background-dial mark is
    /// cleared when it ends.
    background: bool,
    /// Only a direct link will do (a relay's next hop, an upgrade).
    direct_only: bool,
}

impl DialNode {
    pub(in crate::mesh) fn new(node: NodeId) -> Self {
        Self {
            node,
            background: false,
            direct_only: false,
        }
    }

    pub(in crate::mesh) fn background(node: NodeId) -> Self {
        Self {
            node,
            background: true,
            direct_only: false,
        }
    }

    /// Asks for a direct link only.
    pub(in crate::mesh) fn direct_only(mut self) -> Self {
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
        let (mut stream, key) = crate::mesh::relay::open_circuit(mesh, &relay_link, node).await?;
        let config = mesh.handshake();
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
    pub(super) fn keep_relays(&mut self, ctx: &mut Context<Self>) {
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
pub(in crate::mesh) struct Through {
    pub(in crate::mesh) node: NodeId,
    pub(in crate::mesh) relay: NodeId,
}

impl Handler<Through> for Router {
    type Result = ResponseFuture<Result<LinkHandle, DialError>>;

    fn handle(&mut self, msg: Through, ctx: &mut Context<Self>) -> Self::Result {
        let router = ctx.address();
        let mesh = Arc::clone(&self.mesh);
        Box::pin(async move { Self::through(&router, &mesh, msg.node, msg.relay).await })
    }
}

/// A circuit this node opened, whose handshake succeeded.
#[derive(Message)]
#[rtype(result = "Result<LinkHandle, DialError>")]
struct OpenedCircuit {
    stream: crate::mesh::relay::Circuit,
    est: Established,
    leftover: Vec<u8>,
    relay: LinkHandle,
}

impl Handler<OpenedCircuit> for Router {
    type Result = Result<LinkHandle, DialError>;

    fn handle(&mut self, msg: OpenedCircuit, ctx: &mut Context<Self>) -> Self::Result {
        let how = How {
            remote: msg.relay.remote_addr(),
            dialed: None,
            via: Some(msg.relay.peer()),
            leftover: msg.leftover,
        };
        self.install(Wire::Circuit(msg.stream), msg.est, how, ctx)
    }
}
