//! The assembly: [`Node`] binds the sockets, starts the rooms (directory,
//! mesh, and with membership the cluster) on the current arbiter, and wires
//! them together through their doors. Nothing below imports this file.
//!
//! ```text
//! Node (handle)
//! ├── Directory   exposed actors by name
//! ├── Mesh        Router (+ Link × n) and Listener
//! ├── Cluster     Gossip (membership, services)      [with membership]
//! ├── bridge      task: cluster events -> Mesh::peer_up / peer_down
//! ├── drained     task: a head asked it to leave -> leave, shut down    [with membership]
//! └── summary     task: the counters log line, when they change
//! ```
//!
//! The rooms live until [`Node::shutdown`], or until a drain lets the node
//! go (the head's `HostLeave`): then it leaves membership and shuts down,
//! and [`Node::drained`] resolves. If the bridge falls behind the event
//! stream it re-reads the member list; it ends when membership stops.

use std::net::SocketAddr;
use std::time::Duration;

use actix::{Addr, ArbiterHandle, Context};
use swarm_protocol::membership::MemberState;
use swarm_protocol::NodeId;

use crate::cluster::{Cluster, ClusterEvent, Member, CLUSTER_ACTOR};
use crate::config::MeshConfig;
use crate::control::Control;
use crate::directory::{Directory, Entry, RemoteActor};
use crate::error::{ConnectError, DialError, ExposeError, StartError};
use crate::head::Head;
use crate::mesh::{Mesh, MeshStats, PeerInfo};
use crate::operators::sessions::Sessions;
use crate::remote::RemoteAddr;
use crate::supervision::{
    Host, HostSpawn, Registry, RemoteSpawnError, Restart, SpawnError, Spawnable, Supervised,
    HOST_ACTOR,
};
use crate::tasks::Tasks;

mod membership;
mod operators;
mod start;

use membership::{bridge, leave_when_drained};

/// The handle to a running node. Cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Node {
    mesh: Mesh,
    /// The actors this node exposes, by name.
    directory: Directory,
    /// Operators' sessions on this node's links.
    sessions: Sessions,
    /// Where operators' commands and refusals are audited.
    audit: crate::audit::Trail,
    /// Who may send what to this node's actors.
    policy: std::sync::Arc<crate::policy::Policy>,
    cluster: Option<Cluster>,
    /// The arbiter the node's actors run on; [`Node::spawn`] starts actors there.
    arbiter: ArbiterHandle,
    /// The actor types the cluster may start here.
    types: Registry,
    /// The control plane's client (with membership).
    control: Option<Control>,
    /// The head (control plane replica), on head nodes.
    head: Option<Head>,
    /// The task scheduler's client (with membership).
    tasks: Option<Tasks>,
    /// Turns true once a drain let the node go and it left and shut down
    /// (the program running it then exits).
    left: tokio::sync::watch::Receiver<bool>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.mesh.id())
            .field("name", &self.mesh.name())
            .field("listen", &self.mesh.listen_addr())
            .finish()
    }
}

impl Node {
    /// Binds the listener (and with membership the gossip socket on the same
    /// port number) and starts the node's actors on the current arbiter.
    /// MUST be called inside an actix `System`.
    ///
    /// # Errors
    ///
    /// [`StartError::Bind`] or [`StartError::GossipBind`] if the address
    /// cannot be bound; [`StartError::KeyMismatch`] or
    /// [`StartError::Certificate`] if the node's own certificate is not for
    /// its key or not valid under its CA; [`StartError::Metadata`] if its
    /// own metadata is refused.
    pub async fn start(mut config: MeshConfig) -> Result<Node, StartError> {
        let sockets = start::bind_checked(&mut config).await?;
        let rooms = start::Rooms::take(&mut config)?;
        let (mut node, host, asked) = start::transport(config, sockets, &rooms).await?;
        if let Some(cluster) = node.cluster.clone() {
            if let Err(e) = node.start_membership(cluster, rooms.head, &host).await {
                node.shutdown();
                return Err(e);
            }
        }
        node.start_services(&host, rooms.summary_interval);
        if let Some(asked) = asked {
            leave_when_drained(node.clone(), asked.asked, asked.left);
        }
        tracing::info!(id = %node.id().short(), name = %node.name(), listen = %node.listen_addr(), "node started");
        Ok(node)
    }

    /// Starts a node on another arbiter (thread), so several nodes can run
    /// in one process each on its own thread.
    ///
    /// # Errors
    ///
    /// As [`Node::start`]; [`StartError::ArbiterGone`] if the arbiter stopped.
    pub async fn start_on(arbiter: &ArbiterHandle, config: MeshConfig) -> Result<Node, StartError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = arbiter.spawn(async move {
            let _ = tx.send(Node::start(config).await);
        });
        if !spawned {
            return Err(StartError::ArbiterGone);
        }
        rx.await.map_err(|_| StartError::ArbiterGone)?
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.mesh.id()
    }

    /// This node's certificate name.
    pub fn name(&self) -> &str {
        self.mesh.name()
    }

    /// The address the mesh listens on.
    pub fn listen_addr(&self) -> SocketAddr {
        self.mesh.listen_addr()
    }

    /// The default ask timeout.
    pub fn ask_timeout(&self) -> Duration {
        self.mesh.ask_timeout()
    }

    /// Counters of links and of refused and dropped traffic.
    pub fn stats(&self) -> MeshStats {
        self.mesh.stats()
    }

    /// Membership, service discovery and load balancing; `None` when the
    /// node was started without membership (`MeshConfig::cluster`).
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// Registers `addr` under `name` with every message type its remote
    /// protocol declares ([`remote_actor!`](crate::remote_actor)), and
    /// returns a handle to it.
    ///
    /// # Errors
    ///
    /// [`ExposeError::NameTaken`] if the name is registered already.
    pub fn expose<A: RemoteActor>(
        &self,
        name: impl Into<String>,
        addr: Addr<A>,
    ) -> Result<RemoteAddr<A>, ExposeError> {
        let name = name.into();
        let entry = std::sync::Arc::new(Entry::declared(addr));
        if self.directory.insert(name.clone(), entry) {
            Ok(self.remote(self.id(), &name))
        } else {
            Err(ExposeError::NameTaken { name })
        }
    }

    /// Starts an actor on the node's arbiter and exposes it under `name`.
    ///
    /// # Errors
    ///
    /// [`ExposeError::NameTaken`] if the name is registered already (the
    /// actor is not started then).
    pub fn spawn<A, F>(
        &self,
        name: impl Into<String>,
        make: F,
    ) -> Result<RemoteAddr<A>, ExposeError>
    where
        A: RemoteActor + Send,
        F: FnOnce(&mut Context<A>) -> A + Send + 'static,
    {
        let name = name.into();
        if self.directory.contains(&name) {
            return Err(ExposeError::NameTaken { name });
        }
        let addr = A::start_in_arbiter(&self.arbiter, make);
        self.expose(name, addr)
    }

    /// Starts an actor under local supervision on the node's thread and
    /// exposes it as `name`: `factory` builds each incarnation. When one
    /// fails (a handler panics, or it stops without being asked to), the
    /// request it held fails with `ActorFailed`, the node and its other
    /// actors carry on, and a new incarnation (fresh state) is started
    /// after the policy's backoff; past the policy's restarts the actor
    /// is marked failed and unexposed.
    ///
    /// # Errors
    ///
    /// [`ExposeError::NameTaken`] if the name is registered already.
    pub async fn supervise<A, F>(
        &self,
        name: impl Into<String>,
        policy: Restart,
        factory: F,
    ) -> Result<Supervised, ExposeError>
    where
        A: RemoteActor,
        F: Fn() -> A + Send + Sync + 'static,
    {
        let name = name.into();
        if self.directory.contains(&name) {
            return Err(ExposeError::NameTaken { name });
        }
        Ok(
            crate::supervision::start(self.directory.clone(), &self.arbiter, name, policy, factory)
                .await,
        )
    }

    /// Registers an actor type the cluster may start on this node
    /// ([`Node::spawn_on`], later the control plane); false if it was
    /// registered already.
    pub fn register<A: Spawnable>(&self) -> bool {
        self.types.register::<A>()
    }

    /// Asks `node`'s host to start a registered type `A` as `name`, built
    /// from `args`, under local supervision with `restart`; `epoch` is the
    /// placement's fencing token ([`crate::supervision::Incarnation`]).
    /// This node's certificate needs the `head` or `operator` role.
    ///
    /// # Errors
    ///
    /// [`RemoteSpawnError::Refused`] with the host's [`SpawnError`]
    /// (unknown type, arguments that do not decode, name taken), or
    /// [`RemoteSpawnError::Ask`] if the request did not get an answer
    /// (including `Refused` for a missing role).
    pub async fn spawn_on<A: Spawnable>(
        &self,
        node: NodeId,
        name: impl Into<String>,
        args: &A::Args,
        epoch: u64,
        restart: Restart,
    ) -> Result<RemoteAddr<A>, RemoteSpawnError> {
        let name = name.into();
        let args = rmp_serde::to_vec_named(args).map_err(|e| SpawnError::Encode {
            reason: e.to_string(),
        })?;
        let request = HostSpawn {
            type_name: A::TYPE.to_owned(),
            name: name.clone(),
            args,
            epoch,
            restart,
            fence: None,
            idle_after_ms: None,
        };
        self.remote::<Host>(node, HOST_ACTOR)
            .send(request)
            .await??;
        Ok(self.remote(node, &name))
    }

    /// Removes a registration; later messages to the name fail with
    /// `NoSuchActor`. Returns whether the name was registered.
    pub fn unexpose(&self, name: &str) -> bool {
        self.directory.remove(name)
    }

    /// Turns the per-actor counters operators inspect on or off at run
    /// time ([`MeshConfig::counters`] sets them at start; benchmarks
    /// compare the two on one node).
    pub fn set_counters(&self, on: bool) {
        self.directory.set_uncounted(!on);
    }

    /// How many actors are exposed on this node.
    pub fn exposed(&self) -> usize {
        self.directory.len()
    }

    /// Every message the actors exposed on this node accept: (actor name,
    /// tag, the access class the message declares), sorted. What the
    /// policy's defaults read and the audit follows.
    pub fn protocols(&self) -> Vec<(String, &'static str, crate::Access)> {
        let mut all = Vec::new();
        for (name, entry) in self.directory.entries() {
            for (tag, access) in entry.protocol() {
                all.push((name.clone(), tag, access));
            }
        }
        all.sort_unstable_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        all
    }

    /// Dials `addr` (or reuses an existing link to it) and returns who answered.
    ///
    /// # Errors
    ///
    /// [`ConnectError`] with the reason the connection or the handshake failed.
    pub async fn connect(&self, addr: SocketAddr) -> Result<PeerInfo, ConnectError> {
        self.mesh.connect(addr).await
    }

    /// Opens a link to `node` through the relay `relay` (a node with
    /// `relay = true` that this node can dial), whatever the routes say,
    /// and returns who answered. A direct link to `node` that exists is
    /// kept instead. Routing does this by itself for nodes that announce
    /// relays; this is for choosing the path by hand.
    ///
    /// # Errors
    ///
    /// [`DialError::Relay`] with the relay's refusal (no link to `node`,
    /// not a relay, a loop), or why the relay or the handshake failed.
    pub async fn connect_via(&self, relay: NodeId, node: NodeId) -> Result<PeerInfo, DialError> {
        self.mesh.connect_via(relay, node).await
    }

    /// A typed handle to the actor registered as `name` on node `node`
    /// (which may be this node: then calls skip serialization).
    pub fn remote<A: RemoteActor>(&self, node: NodeId, name: &str) -> RemoteAddr<A> {
        RemoteAddr::new(self.mesh.clone(), node, name)
    }

    /// The peers this node has a link to.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.mesh.peers()
    }

    /// The id of a peer seen under this certificate name.
    pub fn peer_named(&self, name: &str) -> Option<NodeId> {
        self.mesh.peer_named(name)
    }

    /// Whether this node refuses certificate `serial` as revoked (from its
    /// configuration, its revocation file, or the head group's lease
    /// grants, which bring new revocations within a fifth of the lease).
    pub fn is_revoked(&self, serial: u64) -> bool {
        self.mesh.is_revoked(serial)
    }

    /// The control plane: named actors placed by the head, placement
    /// groups, drains. `None` without membership.
    pub fn control(&self) -> Option<&Control> {
        self.control.as_ref()
    }

    /// Sets where this node's durable actors keep their journals
    /// ([`crate::durable`]): the head group's log by default (on nodes
    /// with membership); another backend is a
    /// [`JournalStore`](crate::durable::JournalStore). Incarnations started
    /// afterwards use it.
    pub fn set_journal_store(&self, store: std::sync::Arc<dyn crate::durable::JournalStore>) {
        crate::durable::install(self.id(), store);
    }

    /// The store this node's durable actors keep their journals in
    /// (`None` on a node without membership, unless one was set).
    pub fn journal_store(&self) -> Option<std::sync::Arc<dyn crate::durable::JournalStore>> {
        crate::durable::store_of(self.id())
    }

    /// Ray-style tasks: submit functions to run where resources are free,
    /// and register the ones this node runs. `None` without membership.
    pub fn tasks(&self) -> Option<&Tasks> {
        self.tasks.as_ref()
    }

    /// A control-plane client for a node without membership (a tool):
    /// connects to `member`, and learns the heads from its member list.
    ///
    /// # Errors
    ///
    /// If no authenticated link to `member` can be made.
    pub async fn control_through(&self, member: SocketAddr) -> Result<Control, ConnectError> {
        let peer = self.connect(member).await?;
        let agent = self.remote(peer.id, CLUSTER_ACTOR);
        Ok(Control::through(
            self.mesh.clone(),
            self.sessions.clone(),
            agent,
        ))
    }

    /// Switches this node to a renewed certificate for every handshake from
    /// now on (`swarm cert renew`): the same key, so the same node id, and
    /// nothing stops: links up stay, actors keep running. Revoke the old
    /// serial once every node runs the new one.
    ///
    /// # Errors
    ///
    /// If the certificate is not for this node's key or does not verify
    /// (CA, validity, revocation).
    pub fn renew_certificate(
        &self,
        cert: swarm_protocol::Certificate,
    ) -> Result<(), swarm_protocol::CertError> {
        self.mesh.renew_certificate(cert)
    }

    /// Leaves the cluster (members see it as left at once, not down),
    /// stops accepting connections and closes every link.
    pub fn shutdown(&self) {
        crate::durable::uninstall(self.id());
        crate::durable::forget_status(self.id());
        if let Some(tasks) = &self.tasks {
            tasks.shutdown();
        }
        if let Some(head) = &self.head {
            head.shutdown();
        }
        if let Some(cluster) = &self.cluster {
            cluster.leave_now();
        }
        self.mesh.shutdown();
    }

    /// Resolves once a drain let this node go (`swarm drain`): it left
    /// membership (members see it as left, not down) and shut down as
    /// [`Node::shutdown`] does. Never resolves otherwise, and never
    /// without membership. A program running a node waits for this beside
    /// its stop signal, and exits.
    pub async fn drained(&self) {
        let mut left = self.left.clone();
        if left.wait_for(|left| *left).await.is_err() {
            // The node was assembled without the task that says so.
            std::future::pending::<()>().await;
        }
    }

    /// As [`Node::shutdown`], then waits (a second at most) until the
    /// node's listener has stopped: a program that returns right after
    /// (a command-line tool on an error path) then drops no actor that
    /// never ran.
    pub async fn close(&self) {
        self.shutdown();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while self.mesh.listening() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
