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

use crate::cluster::gossip::{
    GetMembers, Gossip, GossipParts, KeyOp, Leave, SetService, Stats as GossipStatsMsg, Subscribe,
};
use crate::cluster::services::{ServiceRef, ServiceTable};
use crate::cluster::{ClusterEvent, ListMembers, ListServices, Member, CLUSTER_ACTOR};
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
    /// Nodes membership holds down or departed; sends to them fail at once.
    pub(crate) down: DashMap<NodeId, ()>,
    /// `down.len()`, read on every send without touching the map.
    pub(crate) down_count: std::sync::atomic::AtomicUsize,
}

impl Core {
    /// Records membership's verdict on `node`.
    pub(crate) fn set_down(&self, node: NodeId, down: bool) {
        if down {
            if self.down.insert(node, ()).is_none() {
                self.down_count.fetch_add(1, Ordering::AcqRel);
            }
        } else if self.down.remove(&node).is_some() {
            self.down_count.fetch_sub(1, Ordering::AcqRel);
        }
    }
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
    cluster: Option<ClusterHandle>,
}

/// The membership side of a node.
#[derive(Clone)]
struct ClusterHandle {
    gossip: Addr<Gossip>,
    table: Arc<ServiceTable>,
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
        let (socket, udp) = bind(&config).await?;
        let listen = socket.local_addr().map_err(|source| NodeError::Bind {
            addr: config.listen,
            source,
        })?;
        config.listen = listen;
        config.handshake.listen = listen.to_string();
        let cluster_config = config.cluster.clone();
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
            down: DashMap::new(),
            down_count: std::sync::atomic::AtomicUsize::new(0),
        });
        let router = Router::new(Arc::clone(&core)).start();
        let cluster = match (udp, cluster_config) {
            (Some(socket), Some(config)) => {
                let table = Arc::new(ServiceTable::default());
                let gossip = Gossip::new(GossipParts {
                    core: Arc::clone(&core),
                    router: router.clone(),
                    table: Arc::clone(&table),
                    socket,
                    config,
                })?
                .start();
                Some(ClusterHandle { gossip, table })
            }
            _ => None,
        };
        let listener = Listener::new(socket, Arc::clone(&core), router.clone()).start();
        tracing::info!(id = %core.id.short(), name = %core.name, %listen, "node started");
        let node = Node {
            core,
            router,
            listener,
            cluster,
        };
        if let Some(cluster) = &node.cluster {
            node.expose(CLUSTER_ACTOR, cluster.gossip.clone())
                .accept::<ListMembers>()
                .accept::<ListServices>()
                .finish()?;
        }
        Ok(node)
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

    /// Leaves the cluster and waits until the goodbye is sent: members see
    /// this node as left at once, not down. The mesh keeps running; call
    /// [`Node::shutdown`] after. Without membership this does nothing.
    pub async fn leave(&self) {
        if let Some(cluster) = &self.cluster {
            let _ = cluster.gossip.send(Leave).await;
        }
    }

    /// Leaves the cluster (members see it as left at once, not down),
    /// stops accepting connections and closes every link.
    pub fn shutdown(&self) {
        if let Some(cluster) = &self.cluster {
            cluster.gossip.do_send(Leave);
        }
        self.listener.do_send(StopListener);
        self.router.do_send(CloseAll);
    }

    fn cluster(&self) -> Result<&ClusterHandle, NodeError> {
        self.cluster.as_ref().ok_or(NodeError::NoMembership)
    }

    /// Every member this node knows, itself first.
    ///
    /// # Errors
    ///
    /// [`NodeError::NoMembership`] without membership.
    pub async fn members(&self) -> Result<Vec<Member>, NodeError> {
        let cluster = self.cluster()?;
        cluster
            .gossip
            .send(GetMembers)
            .await
            .map_err(|_| NodeError::NoMembership)
    }

    /// Sends every later [`ClusterEvent`] to `recipient`; returns the
    /// members known now (this node first), so nothing falls between the
    /// snapshot and the first event.
    ///
    /// # Errors
    ///
    /// [`NodeError::NoMembership`] without membership.
    pub async fn subscribe(
        &self,
        recipient: actix::Recipient<ClusterEvent>,
    ) -> Result<Vec<Member>, NodeError> {
        let cluster = self.cluster()?;
        cluster
            .gossip
            .send(Subscribe(recipient))
            .await
            .map_err(|_| NodeError::NoMembership)
    }

    /// Registers the actor exposed as `actor` as an instance of `service`;
    /// every member learns it through gossip. Returns false if it was
    /// registered already.
    ///
    /// # Errors
    ///
    /// [`NodeError::NotExposed`] if no actor is exposed under `actor`;
    /// [`NodeError::Metadata`] if the node's metadata would exceed its
    /// bounds (too many services, names too long).
    pub async fn register_service(&self, service: &str, actor: &str) -> Result<bool, NodeError> {
        if !self.core.directory.contains_key(actor) {
            return Err(NodeError::NotExposed {
                name: actor.to_owned(),
            });
        }
        self.set_service(service, actor, true).await
    }

    /// Withdraws an instance registered with [`Node::register_service`].
    /// Returns whether it was registered.
    ///
    /// # Errors
    ///
    /// [`NodeError::NoMembership`] without membership.
    pub async fn deregister_service(&self, service: &str, actor: &str) -> Result<bool, NodeError> {
        self.set_service(service, actor, false).await
    }

    async fn set_service(
        &self,
        service: &str,
        actor: &str,
        present: bool,
    ) -> Result<bool, NodeError> {
        let cluster = self.cluster()?;
        let entry = swarm_protocol::gossip::ServiceEntry {
            service: service.to_owned(),
            actor: actor.to_owned(),
        };
        Ok(cluster
            .gossip
            .send(SetService { entry, present })
            .await
            .map_err(|_| NodeError::NoMembership)??)
    }

    /// A load-balanced handle to `service` (power of two choices on EWMA
    /// latency by default; see [`ServiceRef::with_strategy`]).
    ///
    /// # Errors
    ///
    /// [`NodeError::NoMembership`] without membership.
    pub fn service<A>(&self, service: &str) -> Result<ServiceRef<A>, NodeError>
    where
        A: Actor<Context = Context<A>>,
    {
        let cluster = self.cluster()?;
        Ok(ServiceRef::new(
            self.clone(),
            Arc::clone(&cluster.table),
            service.to_owned(),
        ))
    }

    /// Every known service with its live instances, sorted by name.
    pub fn services(&self) -> Vec<(String, Vec<crate::cluster::Instance>)> {
        self.cluster
            .as_ref()
            .map(|c| c.table.list())
            .unwrap_or_default()
    }

    /// Gossip traffic counters (datagrams sent, received, and dropped by reason).
    ///
    /// # Errors
    ///
    /// [`NodeError::NoMembership`] without membership.
    pub async fn gossip_stats(&self) -> Result<swarm_protocol::membership::GossipStats, NodeError> {
        let cluster = self.cluster()?;
        cluster
            .gossip
            .send(GossipStatsMsg)
            .await
            .map_err(|_| NodeError::NoMembership)
    }

    /// Changes the gossip key ring at run time: add a key everywhere, then
    /// use it everywhere, then remove the old one, and no datagram is lost.
    /// Returns the fingerprints of the keys held, the sealing key first.
    ///
    /// # Errors
    ///
    /// [`NodeError::NoMembership`] without membership; [`NodeError::KeyRing`]
    /// if the ring refuses (full, or removing the sealing key).
    pub async fn gossip_key(&self, op: GossipKeyOp) -> Result<Vec<String>, NodeError> {
        let cluster = self.cluster()?;
        let op = match op {
            GossipKeyOp::Add(key) => KeyOp::Add(key),
            GossipKeyOp::Use(key) => KeyOp::Use(key),
            GossipKeyOp::Remove(key) => KeyOp::Remove(key),
        };
        Ok(cluster
            .gossip
            .send(op)
            .await
            .map_err(|_| NodeError::NoMembership)??)
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

    /// Whether membership holds `node` down or departed.
    pub(crate) fn is_down(&self, node: NodeId) -> bool {
        self.core.down_count.load(Ordering::Acquire) > 0 && self.core.down.contains_key(&node)
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

/// A change to the gossip key ring; see [`Node::gossip_key`].
#[derive(Debug, Clone)]
pub enum GossipKeyOp {
    /// Accept datagrams sealed with this key too.
    Add(swarm_protocol::gossip::GossipKey),
    /// Seal with this key from now on (added if needed).
    Use(swarm_protocol::gossip::GossipKey),
    /// Stop accepting this key.
    Remove(swarm_protocol::gossip::GossipKey),
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

/// Binds the mesh listener and, with membership, the gossip socket on the
/// same port number. With port 0 the OS picks the TCP port; if that port is
/// taken for UDP, another is tried.
async fn bind(
    config: &MeshConfig,
) -> Result<(TcpListener, Option<std::net::UdpSocket>), NodeError> {
    let bind_err = |source| NodeError::Bind {
        addr: config.listen,
        source,
    };
    let mut attempts = 0;
    loop {
        let tcp = TcpListener::bind(config.listen).await.map_err(bind_err)?;
        if config.cluster.is_none() {
            return Ok((tcp, None));
        }
        let addr = tcp.local_addr().map_err(bind_err)?;
        match std::net::UdpSocket::bind(addr).and_then(|udp| {
            udp.set_nonblocking(true)?;
            Ok(udp)
        }) {
            Ok(udp) => return Ok((tcp, Some(udp))),
            Err(source) => {
                attempts += 1;
                if config.listen.port() != 0 || attempts >= 16 {
                    return Err(NodeError::GossipBind { addr, source });
                }
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
