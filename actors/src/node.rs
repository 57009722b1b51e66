//! A node's mesh runtime: [`Node`] starts the Router and Listener on the
//! current arbiter and is the handle users keep (cheap to clone, usable from
//! any thread) to expose actors, connect to peers and get [`RemoteAddr`]s.
//!
//! ```text
//! Node (handle)
//! ├── Router    link table, dialing
//! │   └── Link × n
//! └── Listener  accepts and authenticates
//! ```
//!
//! The Router and Listener live until [`Node::shutdown`]; Links come and go.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::{Actor, Addr, Context, Handler};
use dashmap::DashMap;
use swarm_protocol::{HandshakeConfig, NodeId};
use tokio::net::TcpListener;

use crate::config::MeshConfig;
use crate::directory::{Dispatch, Entry, RemoteMessage, Wire};
use crate::error::{AskError, ConnectError, NodeError};
use crate::mesh::link::LinkHandle;
use crate::mesh::listener::Listener;
use crate::mesh::router::{CloseAll, Dial, DialNode, Router};
use crate::mesh::unix_now;
use crate::remote::RemoteAddr;

/// State shared by the node's actors and handles.
pub(crate) struct Core {
    /// This node's id.
    pub(crate) id: NodeId,
    /// This node's certificate name.
    pub(crate) name: String,
    /// The configuration the node started with.
    pub(crate) config: MeshConfig,
    /// The handshake configuration, with the bound listen address.
    pub(crate) handshake: Arc<HandshakeConfig>,
    /// Registered actors by name.
    pub(crate) directory: DashMap<String, Arc<dyn Dispatch>>,
    /// Bumped on every change of `directory`, so readers may cache lookups.
    pub(crate) generation: AtomicU64,
    /// Live links by peer; written only by the Router, read by senders.
    pub(crate) links: DashMap<NodeId, LinkHandle>,
    /// Peer names (from certificates) to ids.
    pub(crate) names: DashMap<String, NodeId>,
    /// Counters for operators and tests.
    pub(crate) stats: Stats,
    /// Where the listener is bound.
    pub(crate) listen: SocketAddr,
}

/// Counters of refused and dropped traffic.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) handshakes_refused: AtomicU64,
    pub(crate) links_failed: AtomicU64,
    pub(crate) tells_dropped: AtomicU64,
}

/// A snapshot of the node's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct NodeStats {
    /// Connections refused before or during the handshake.
    pub handshakes_refused: u64,
    /// Links closed because of an error (bad input, timeout, i/o).
    pub links_failed: u64,
    /// Tells that found no actor or did not decode.
    pub tells_dropped: u64,
}

/// A connected peer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// Its node id.
    pub id: NodeId,
    /// Its certificate name.
    pub name: String,
    /// Its certificate roles.
    pub roles: Vec<String>,
    /// The remote address of the link's socket.
    pub addr: SocketAddr,
    /// True if this node dialed the link.
    pub dialed: bool,
}

impl PeerInfo {
    pub(crate) fn from_link(link: &LinkHandle) -> Self {
        let s = &link.shared;
        Self {
            id: s.peer,
            name: s.peer_name.clone(),
            roles: s.peer_roles.clone(),
            addr: s.remote_addr,
            dialed: s.initiator != s.peer,
        }
    }
}

/// The handle to a running node.
#[derive(Clone)]
pub struct Node {
    core: Arc<Core>,
    router: Addr<Router>,
    listener: Addr<Listener>,
}

impl Node {
    /// Binds the listener and starts the node's actors on the current
    /// arbiter. MUST be called inside an actix `System`.
    ///
    /// # Errors
    ///
    /// [`NodeError::Bind`] if the address cannot be bound;
    /// [`NodeError::KeyMismatch`] or [`NodeError::Certificate`] if the
    /// node's own certificate is not for its key or not valid under its CA.
    pub async fn start(mut config: MeshConfig) -> Result<Node, NodeError> {
        let hs = &config.handshake;
        if hs.cert.body().static_key != *hs.key.public() {
            return Err(NodeError::KeyMismatch);
        }
        hs.trust
            .verify(&hs.cert, unix_now(), Some(hs.key.public()))?;
        let socket = TcpListener::bind(config.listen)
            .await
            .map_err(|source| NodeError::Bind {
                addr: config.listen,
                source,
            })?;
        let listen = socket.local_addr().map_err(|source| NodeError::Bind {
            addr: config.listen,
            source,
        })?;
        config.listen = listen;
        config.handshake.listen = listen.to_string();
        let core = Arc::new(Core {
            id: config.handshake.key.node_id(),
            name: config.handshake.cert.body().name.clone(),
            handshake: Arc::new(config.handshake.clone()),
            config,
            directory: DashMap::new(),
            generation: AtomicU64::new(0),
            links: DashMap::new(),
            names: DashMap::new(),
            stats: Stats::default(),
            listen,
        });
        let router = Router::new(Arc::clone(&core)).start();
        let listener = Listener::new(socket, Arc::clone(&core), router.clone()).start();
        tracing::info!(id = %core.id.short(), name = %core.name, %listen, "node started");
        Ok(Node {
            core,
            router,
            listener,
        })
    }

    /// Starts a node on another arbiter (thread), so several nodes can run
    /// in one process each on its own thread.
    ///
    /// # Errors
    ///
    /// As [`Node::start`]; [`NodeError::ArbiterGone`] if the arbiter stopped.
    pub async fn start_on(
        arbiter: &actix::ArbiterHandle,
        config: MeshConfig,
    ) -> Result<Node, NodeError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = arbiter.spawn(async move {
            let _ = tx.send(Node::start(config).await);
        });
        if !spawned {
            return Err(NodeError::ArbiterGone);
        }
        rx.await.map_err(|_| NodeError::ArbiterGone)?
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.core.id
    }

    /// This node's certificate name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The address the mesh listens on.
    pub fn listen_addr(&self) -> SocketAddr {
        self.core.listen
    }

    /// The default ask timeout.
    pub fn ask_timeout(&self) -> std::time::Duration {
        self.core.config.ask_timeout
    }

    /// Counters of refused and dropped traffic.
    pub fn stats(&self) -> NodeStats {
        let s = &self.core.stats;
        NodeStats {
            handshakes_refused: s.handshakes_refused.load(Ordering::Relaxed),
            links_failed: s.links_failed.load(Ordering::Relaxed),
            tells_dropped: s.tells_dropped.load(Ordering::Relaxed),
        }
    }

    /// Starts registering `addr` under `name`; list the message types it
    /// accepts with [`Exposure::accept`] and end with [`Exposure::finish`].
    pub fn expose<A>(&self, name: impl Into<String>, addr: Addr<A>) -> Exposure<A>
    where
        A: Actor<Context = Context<A>>,
    {
        Exposure {
            node: self.clone(),
            name: name.into(),
            entry: Entry::new(addr),
        }
    }

    /// Removes a registration; later messages to the name fail with
    /// `NoSuchActor`. Returns whether the name was registered.
    pub fn unexpose(&self, name: &str) -> bool {
        let removed = self.core.directory.remove(name).is_some();
        self.core.generation.fetch_add(1, Ordering::AcqRel);
        removed
    }

    /// Dials `addr` (or reuses an existing link to it) and returns who answered.
    ///
    /// # Errors
    ///
    /// [`ConnectError`] with the reason the connection or the handshake failed.
    pub async fn connect(&self, addr: SocketAddr) -> Result<PeerInfo, ConnectError> {
        let failed = |reason: String| ConnectError { addr, reason };
        self.router
            .send(Dial(addr))
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(failed)
    }

    /// A typed handle to the actor registered as `name` on node `node`
    /// (which may be this node: then calls skip serialization).
    pub fn remote<A>(&self, node: NodeId, name: &str) -> RemoteAddr<A>
    where
        A: Actor<Context = Context<A>>,
    {
        RemoteAddr::new(self.clone(), node, name)
    }

    /// The peers this node has a link to.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.core
            .links
            .iter()
            .map(|l| PeerInfo::from_link(l.value()))
            .collect()
    }

    /// The id of a peer seen under this certificate name.
    pub fn peer_named(&self, name: &str) -> Option<NodeId> {
        self.core.names.get(name).map(|id| *id)
    }

    /// Stops accepting connections and closes every link.
    pub fn shutdown(&self) {
        self.listener.do_send(StopListener);
        self.router.do_send(CloseAll);
    }

    pub(crate) fn directory_addr<A: Actor>(&self, name: &str) -> Option<Addr<A>> {
        let entry = self.core.directory.get(name)?;
        entry.value().addr().downcast_ref::<Addr<A>>().cloned()
    }

    /// The live link to `node`, dialing it if there is none.
    pub(crate) async fn link(&self, node: NodeId) -> Result<LinkHandle, AskError> {
        if let Some(link) = self.live_link(node) {
            return Ok(link);
        }
        self.router
            .send(DialNode(node))
            .await
            .map_err(|e| AskError::Unreachable {
                node,
                reason: e.to_string(),
            })?
    }

    /// The live link to `node`, if there is one.
    pub(crate) fn live_link(&self, node: NodeId) -> Option<LinkHandle> {
        self.core
            .links
            .get(&node)
            .filter(|link| !link.is_closed())
            .map(|link| link.clone())
    }

    /// The live link to `node` if there is one; otherwise starts dialing.
    pub(crate) fn link_now(&self, node: NodeId) -> Option<LinkHandle> {
        let link = self.live_link(node);
        if link.is_none() {
            self.router.do_send(DialNode(node));
        }
        link
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.core.id)
            .field("name", &self.core.name)
            .field("listen", &self.core.listen)
            .finish()
    }
}

/// A registration in progress; see [`Node::expose`].
pub struct Exposure<A: Actor> {
    node: Node,
    name: String,
    entry: Entry<A>,
}

impl<A: Actor<Context = Context<A>>> Exposure<A> {
    /// Accepts messages of type `M` from the network.
    #[must_use]
    pub fn accept<M>(mut self) -> Self
    where
        A: Handler<M>,
        M: RemoteMessage,
        M::Result: Wire,
    {
        self.entry.accept::<M>();
        self
    }

    /// Publishes the registration.
    ///
    /// # Errors
    ///
    /// [`NodeError::NameTaken`] if the name is registered already.
    pub fn finish(self) -> Result<(), NodeError> {
        use dashmap::mapref::entry::Entry as Slot;
        match self.node.core.directory.entry(self.name) {
            Slot::Occupied(slot) => Err(NodeError::NameTaken {
                name: slot.key().clone(),
            }),
            Slot::Vacant(slot) => {
                slot.insert(Arc::new(self.entry));
                self.node.core.generation.fetch_add(1, Ordering::AcqRel);
                Ok(())
            }
        }
    }
}

/// Stops the listener.
#[derive(actix::Message)]
#[rtype(result = "()")]
struct StopListener;

impl Handler<StopListener> for Listener {
    type Result = ();

    fn handle(&mut self, _: StopListener, ctx: &mut Context<Self>) {
        actix::ActorContext::stop(ctx);
    }
}
