//! The `Router` owns the link table. It dials lazily (callers ask it only
//! when the table has no live entry), keeps one link per peer (when both
//! sides dial at once, the link dialed by the lower node id wins on both
//! sides), learns peer addresses from handshakes and membership, and
//! forgets links that close. It never touches message bytes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use swarm_protocol::{Established, NodeId};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::connect::dial;
use super::link::{Close, Link, LinkHandle, LinkParts, PeerIdentity};
use super::Shared;
use crate::error::{CloseReason, DialError, LocalClose, Unreachable};

/// Two links to one peer established within this window are a simultaneous
/// dial (resolved by node id); a later one replaces the earlier (a restart).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(5);

type DialResult = Result<LinkHandle, DialError>;

/// The router actor.
pub(super) struct Router {
    /// The mesh, whose link table this actor alone writes.
    mesh: Arc<Shared>,
    /// The actors of the links in the table.
    actors: HashMap<NodeId, (LinkHandle, Addr<Link>)>,
    /// Where each known peer listens.
    addr_book: HashMap<NodeId, SocketAddr>,
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
            addr_book: HashMap::new(),
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
                            act.install(stream, est, leftover, addr, Some(addr), ctx)
                        }
                        Err(e) => {
                            tracing::warn!(%addr, error = %e, "dial failed");
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
        stream: TcpStream,
        est: Established,
        leftover: Vec<u8>,
        remote: SocketAddr,
        dialed: Option<SocketAddr>,
        ctx: &mut Context<Self>,
    ) -> DialResult {
        let me = self.mesh.id;
        let peer = est.peer.node_id;
        if peer == me {
            return Err(DialError::SelfConnect);
        }
        let listen = dialed.or_else(|| est.peer.listen.parse().ok());
        if let Some(addr) = listen {
            self.addr_book.insert(peer, addr);
        }
        let body = est.peer.cert.body();
        let initiator = if est.initiator { me } else { peer };
        if let Some((old, old_actor)) = self.actors.get(&peer) {
            let lower = me.min(peer);
            let simultaneous = old.established_at().elapsed() < DUPLICATE_WINDOW;
            if simultaneous && old.initiator() == lower && initiator != lower && !old.is_closed() {
                tracing::debug!(peer = %peer.short(), "duplicate link dropped; keeping the one dialed by the lower id");
                return Ok(old.clone());
            }
            old_actor.do_send(Close(CloseReason::Replaced));
            // Stop dispatching on the old link before the new one reads anything.
            old.mark_closed();
        }
        let id = self.next_link_id;
        self.next_link_id += 1;
        let who = PeerIdentity {
            peer,
            name: body.name.clone(),
            roles: body.roles.clone().into(),
            initiator,
            remote_addr: remote,
        };
        let parts = LinkParts {
            stream,
            sender: est.sender,
            receiver: est.receiver,
            leftover,
        };
        let (link, handle) = Link::new(id, who, parts, Arc::clone(&self.mesh), ctx.address());
        let actor = link.start();
        tracing::info!(peer = %peer.short(), name = %body.name, %remote, "link established");
        self.mesh.links.insert(handle.clone());
        self.actors.insert(peer, (handle.clone(), actor));
        Ok(handle)
    }
}

impl Actor for Router {
    type Context = Context<Self>;
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
            .addr_book
            .iter()
            .find(|(_, a)| **a == addr)
            .and_then(|(peer, _)| self.live(*peer));
        match known {
            Some(handle) => {
                let _ = tx.send(Ok(handle));
            }
            None => self.start_dial(addr, tx, ctx),
        }
        Box::pin(async move { rx.await.map_err(|_| DialError::Stopped)? })
    }
}

/// Returns the link to a node, dialing its known address if needed.
#[derive(Message)]
#[rtype(result = "Result<LinkHandle, Unreachable>")]
pub(super) struct DialNode {
    node: NodeId,
    /// Started by `Mesh::link_now`: the table's background-dial mark is
    /// cleared when it ends.
    background: bool,
}

impl DialNode {
    pub(super) fn new(node: NodeId) -> Self {
        Self {
            node,
            background: false,
        }
    }

    pub(super) fn background(node: NodeId) -> Self {
        Self {
            node,
            background: true,
        }
    }
}

impl Handler<DialNode> for Router {
    type Result = ResponseActFuture<Self, Result<LinkHandle, Unreachable>>;

    fn handle(&mut self, msg: DialNode, ctx: &mut Context<Self>) -> Self::Result {
        let DialNode { node, background } = msg;
        let finish = move |result: Result<LinkHandle, Unreachable>,
                           act: &mut Router,
                           _: &mut Context<Router>| {
            if background {
                act.mesh.links.end_background_dial(node);
            }
            result
        };
        if let Some(handle) = self.live(node) {
            return Box::pin(fut::ready(Ok(handle)).map(finish));
        }
        let Some(addr) = self.addr_book.get(&node).copied() else {
            return Box::pin(fut::ready(Err(Unreachable::NoAddress)).map(finish));
        };
        let (tx, rx) = oneshot::channel();
        self.start_dial(addr, tx, ctx);
        let wait = async move {
            let handle = rx
                .await
                .map_err(|_| DialError::Stopped)
                .and_then(|r| r)
                .map_err(Unreachable::Dial)?;
            if handle.peer() == node {
                Ok(handle)
            } else {
                Err(Unreachable::AnsweredAs(handle.peer()))
            }
        };
        Box::pin(wait.into_actor(self).map(finish))
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
        if let Err(reason) = self.install(msg.stream, msg.est, msg.leftover, msg.remote, None, ctx)
        {
            tracing::warn!(remote = %msg.remote, %reason, "inbound link refused");
        }
    }
}

/// A link stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct LinkClosed {
    pub(super) peer: NodeId,
    pub(super) id: u64,
}

impl Handler<LinkClosed> for Router {
    type Result = ();

    fn handle(&mut self, msg: LinkClosed, _ctx: &mut Context<Self>) {
        if self
            .actors
            .get(&msg.peer)
            .is_some_and(|(h, _)| h.id() == msg.id)
        {
            self.actors.remove(&msg.peer);
        }
        self.mesh.links.remove(msg.peer, msg.id);
    }
}

/// Membership learned where a node listens and that it is alive.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct PeerUp {
    pub(super) node: NodeId,
    pub(super) addr: SocketAddr,
}

impl Handler<PeerUp> for Router {
    type Result = ();

    fn handle(&mut self, msg: PeerUp, _ctx: &mut Context<Self>) {
        self.addr_book.insert(msg.node, msg.addr);
    }
}

/// Membership declared a node down or departed: close the link to it.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct PeerDown(pub(super) NodeId);

impl Handler<PeerDown> for Router {
    type Result = ();

    fn handle(&mut self, PeerDown(node): PeerDown, _ctx: &mut Context<Self>) {
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
        for (_, (handle, actor)) in self.actors.drain() {
            handle.mark_closed();
            actor.do_send(Close(CloseReason::Local(LocalClose::Shutdown)));
        }
        self.mesh.links.clear();
    }
}
