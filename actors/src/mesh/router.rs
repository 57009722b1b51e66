//! The `Router` maps node ids to links. It dials lazily (callers ask it
//! only when the shared link table has no entry), keeps one link per peer
//! (when both sides dial at once, the link dialed by the lower node id
//! wins on both sides), learns peer addresses from handshakes, and forgets
//! links that close. It never touches message bytes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use swarm_protocol::{Established, NodeId};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::error::{AskError, CloseReason};
use crate::mesh::connect::{handshake, HandshakeFailure};
use crate::mesh::link::{new_handle, Close, Link, LinkHandle, LinkParts};
use crate::node::{Core, PeerInfo};

/// Two links to one peer established within this window are a simultaneous
/// dial (resolved by node id); a later one replaces the earlier (a restart).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(5);

type DialResult = Result<LinkHandle, String>;

/// The router actor.
pub(crate) struct Router {
    /// Node-wide state, including the link table this actor alone writes.
    core: Arc<Core>,
    /// Links by peer, with their actors.
    links: HashMap<NodeId, (LinkHandle, Addr<Link>)>,
    /// Where each known peer listens.
    addr_book: HashMap<NodeId, SocketAddr>,
    /// Dials in progress, with their waiters.
    dialing: HashMap<SocketAddr, Vec<oneshot::Sender<DialResult>>>,
    /// The next link id.
    next_link_id: u64,
}

impl Router {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        Self {
            core,
            links: HashMap::new(),
            addr_book: HashMap::new(),
            dialing: HashMap::new(),
            next_link_id: 1,
        }
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
        let config = Arc::clone(&self.core.handshake);
        let timeout = self.core.config.handshake_timeout;
        let fut = async move {
            let mut stream = TcpStream::connect(addr)
                .await
                .map_err(HandshakeFailure::Io)?;
            let _ = stream.set_nodelay(true);
            let (est, leftover) = handshake(&mut stream, config, true, timeout).await?;
            Ok::<_, HandshakeFailure>((stream, est, leftover))
        };
        ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
            let outcome = match result {
                Ok((stream, est, leftover)) => {
                    act.install(stream, est, leftover, addr, Some(addr), ctx)
                }
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "dial failed");
                    Err(e.to_string())
                }
            };
            for waiter in act.dialing.remove(&addr).unwrap_or_default() {
                let _ = waiter.send(outcome.clone());
            }
        }));
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
        let peer = est.peer.node_id;
        if peer == self.core.id {
            return Err("connected to itself".into());
        }
        let listen = dialed.or_else(|| est.peer.listen.parse().ok());
        if let Some(addr) = listen {
            self.addr_book.insert(peer, addr);
        }
        let body = est.peer.cert.body();
        self.core.names.insert(body.name.clone(), peer);
        let initiator = if est.initiator { self.core.id } else { peer };
        if let Some((old, old_actor)) = self.links.get(&peer) {
            let lower = self.core.id.min(peer);
            let simultaneous = old.shared.established_at.elapsed() < DUPLICATE_WINDOW;
            if simultaneous
                && old.shared.initiator == lower
                && initiator != lower
                && !old.is_closed()
            {
                tracing::debug!(peer = %peer.short(), "duplicate link dropped; keeping the one dialed by the lower id");
                return Ok(old.clone());
            }
            old_actor.do_send(Close(CloseReason::Replaced));
            // Stop dispatching on the old link before the new one reads anything.
            old.shared
                .closed
                .store(true, std::sync::atomic::Ordering::Release);
        }
        let id = self.next_link_id;
        self.next_link_id += 1;
        let (handle, rx) = new_handle(
            id,
            peer,
            body.name.clone(),
            body.roles.clone(),
            initiator,
            remote,
            self.core.config.link_queue_bytes,
        );
        let parts = LinkParts {
            stream,
            sender: est.sender,
            receiver: est.receiver,
            leftover,
        };
        let actor = Link::new(
            handle.clone(),
            rx,
            parts,
            Arc::clone(&self.core),
            ctx.address(),
        )
        .start();
        tracing::info!(peer = %peer.short(), name = %body.name, %remote, "link established");
        self.core.links.insert(peer, handle.clone());
        self.links.insert(peer, (handle.clone(), actor));
        Ok(handle)
    }
}

impl Actor for Router {
    type Context = Context<Self>;
}

/// Dials an address (or reuses the link to whoever is known to listen there).
#[derive(Message)]
#[rtype(result = "Result<PeerInfo, String>")]
pub(crate) struct Dial(pub(crate) SocketAddr);

impl Handler<Dial> for Router {
    type Result = ResponseFuture<Result<PeerInfo, String>>;

    fn handle(&mut self, Dial(addr): Dial, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let known = self
            .addr_book
            .iter()
            .find(|(_, a)| **a == addr)
            .and_then(|(peer, _)| self.links.get(peer))
            .filter(|(h, _)| !h.is_closed())
            .map(|(h, _)| h.clone());
        match known {
            Some(handle) => {
                let _ = tx.send(Ok(handle));
            }
            None => self.start_dial(addr, tx, ctx),
        }
        Box::pin(async move {
            let handle = rx.await.map_err(|_| "router stopped".to_string())??;
            Ok(PeerInfo::from_link(&handle))
        })
    }
}

/// Returns the link to a node, dialing its known address if needed.
#[derive(Message)]
#[rtype(result = "Result<LinkHandle, AskError>")]
pub(crate) struct DialNode(pub(crate) NodeId);

impl Handler<DialNode> for Router {
    type Result = ResponseFuture<Result<LinkHandle, AskError>>;

    fn handle(&mut self, DialNode(node): DialNode, ctx: &mut Context<Self>) -> Self::Result {
        if let Some((handle, _)) = self.links.get(&node).filter(|(h, _)| !h.is_closed()) {
            let handle = handle.clone();
            return Box::pin(async move { Ok(handle) });
        }
        let Some(addr) = self.addr_book.get(&node).copied() else {
            return Box::pin(async move {
                Err(AskError::Unreachable {
                    node,
                    reason: "no known address for this node".into(),
                })
            });
        };
        let (tx, rx) = oneshot::channel();
        self.start_dial(addr, tx, ctx);
        Box::pin(async move {
            let handle = rx
                .await
                .map_err(|_| "router stopped".to_string())
                .and_then(|r| r)
                .map_err(|reason| AskError::Unreachable { node, reason })?;
            if handle.shared.peer == node {
                Ok(handle)
            } else {
                Err(AskError::Unreachable {
                    node,
                    reason: format!("its address now answers as node {}", handle.shared.peer),
                })
            }
        })
    }
}

/// An accepted connection whose handshake succeeded.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Inbound {
    pub(crate) stream: TcpStream,
    pub(crate) est: Established,
    pub(crate) leftover: Vec<u8>,
    pub(crate) remote: SocketAddr,
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
pub(crate) struct LinkClosed {
    pub(crate) peer: NodeId,
    pub(crate) id: u64,
}

impl Handler<LinkClosed> for Router {
    type Result = ();

    fn handle(&mut self, msg: LinkClosed, _ctx: &mut Context<Self>) {
        if self
            .links
            .get(&msg.peer)
            .is_some_and(|(h, _)| h.shared.id == msg.id)
        {
            self.links.remove(&msg.peer);
            self.core
                .links
                .remove_if(&msg.peer, |_, h| h.shared.id == msg.id);
        }
    }
}

/// Membership learned where a node listens and that it is alive.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct MemberUp {
    pub(crate) node: NodeId,
    pub(crate) addr: SocketAddr,
}

impl Handler<MemberUp> for Router {
    type Result = ();

    fn handle(&mut self, msg: MemberUp, _ctx: &mut Context<Self>) {
        self.addr_book.insert(msg.node, msg.addr);
    }
}

/// Membership declared a node down or departed: close the link to it, so
/// asks waiting on it fail at once with `NodeDown`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct MemberDown(pub(crate) NodeId);

impl Handler<MemberDown> for Router {
    type Result = ();

    fn handle(&mut self, MemberDown(node): MemberDown, _ctx: &mut Context<Self>) {
        if let Some((handle, actor)) = self.links.remove(&node) {
            handle
                .shared
                .member_down
                .store(true, std::sync::atomic::Ordering::Release);
            actor.do_send(Close(CloseReason::MemberDown));
            self.core
                .links
                .remove_if(&node, |_, h| h.shared.id == handle.shared.id);
        }
    }
}

/// Closes every link (node shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CloseAll;

impl Handler<CloseAll> for Router {
    type Result = ();

    fn handle(&mut self, _: CloseAll, _ctx: &mut Context<Self>) {
        for (_, (handle, actor)) in self.links.drain() {
            handle
                .shared
                .closed
                .store(true, std::sync::atomic::Ordering::Release);
            actor.do_send(Close(CloseReason::Local("node shutting down".into())));
        }
        self.core.links.clear();
    }
}
