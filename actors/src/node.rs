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

use actix::{Actor as _, Addr, ArbiterHandle, Context};
use swarm_protocol::membership::MemberState;
use swarm_protocol::NodeId;
use tokio::net::TcpListener;

use crate::cluster::{Cluster, ClusterEvent, Member, CLUSTER_ACTOR};
use crate::config::MeshConfig;
use crate::control::Control;
use crate::directory::{Directory, Entry, RemoteActor};
use crate::error::{ConnectError, DialError, ExposeError, StartError};
use crate::head::Head;
use crate::mesh::{unix_now, Detected, Mesh, MeshStats, PeerInfo};
use crate::remote::RemoteAddr;
use crate::supervision::{
    Host, HostSpawn, Leave, Registry, RemoteSpawnError, Restart, SpawnError, Spawnable, Supervised,
    HOST_ACTOR,
};
use crate::tasks::Tasks;

mod membership;
mod operators;

use membership::{bridge, leave_when_drained};

/// The handle to a running node. Cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Node {
    mesh: Mesh,
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
        let hs = &config.handshake;
        if hs.cert.body().static_key != *hs.key.public() {
            return Err(StartError::KeyMismatch);
        }
        hs.trust
            .verify(&hs.cert, unix_now(), Some(hs.key.public()))?;
        let (socket, udp) = bind(&config).await?;
        let listen = socket.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        config.listen = listen;
        let advertised = config.advertise.unwrap_or(listen);
        // Bound to a wildcard address with nothing to announce: ask a seed.
        let detect = advertised.ip().is_unspecified();
        let seeds = config
            .cluster
            .as_ref()
            .map(|c| c.seeds.clone())
            .unwrap_or_default();
        if detect && seeds.is_empty() {
            return Err(StartError::NoAdvertise { listen });
        }
        // The hello announces no address until one is known.
        config.handshake.listen = if detect {
            String::new()
        } else {
            advertised.to_string()
        };
        let relayed = config.relayed;
        let detect_within = config.handshake_timeout;
        let cluster_config = config.cluster.take();
        let head_config = config.head.take();
        let is_head = config
            .handshake
            .cert
            .body()
            .roles
            .iter()
            .any(|r| r == "head");
        let roles = &config.handshake.cert.body().roles;
        if cluster_config.is_some()
            && !roles
                .iter()
                .any(|r| crate::policy::NODE_ROLES.contains(&r.as_str()))
        {
            return Err(StartError::NotANode {
                roles: roles.clone(),
            });
        }
        if let Some(head) = &head_config {
            if cluster_config.is_none() || !is_head {
                return Err(StartError::Head {
                    reason: format!(
                        "{}: a head needs membership and a certificate with the head role",
                        head.dir.display()
                    ),
                });
            }
        }
        // The head's store is opened (and checked whole) before any actor
        // starts: a damaged one stops the start with nothing to tear down.
        let head_config = match head_config {
            Some(head) => {
                let store = crate::head::open_store(&head)?;
                Some((head, store))
            }
            None => None,
        };
        let summary_interval = config.summary_interval;
        // Relays learned through membership come later; configured ones are dialed now.
        let wait_for_relays =
            (config.relayed && !config.relays.is_empty()).then_some(config.handshake_timeout);
        let directory = Directory::default();
        if !config.counters {
            directory.set_uncounted(true);
        }
        let mesh = Mesh::start(config, socket, directory);
        if detect {
            match mesh.detect_address(&seeds, detect_within).await {
                Detected::Confirmed(addr) => {
                    tracing::info!(%addr, "announcing the address a seed dialed back");
                    mesh.set_detected(addr);
                }
                // Nobody dials a relayed node; the address names it in membership.
                Detected::Unconfirmed(addr) if relayed => {
                    tracing::info!(%addr, "announcing the address a seed saw (reached through relays)");
                    mesh.set_detected(addr);
                }
                _ => {
                    mesh.shutdown();
                    return Err(StartError::NoAdvertise { listen });
                }
            }
        }
        if let Some(within) = wait_for_relays {
            // The first metadata then names the relays others reach it by.
            first_relay(&mesh, within).await;
        }
        let cluster = match (udp, cluster_config) {
            (Some(socket), Some(config)) => Some(Cluster::start(mesh.clone(), socket, config)?),
            _ => None,
        };
        let types = Registry::new(mesh.id());
        let (left_tx, left) = tokio::sync::watch::channel(false);
        let mut node = Node {
            mesh,
            cluster,
            arbiter: actix::Arbiter::current(),
            types,
            control: None,
            head: None,
            tasks: None,
            left,
        };
        // The host hears the head's `HostLeave`; the node leaves and shuts
        // down once it is assembled (`leave_when_drained`).
        let (asked_tx, asked) = tokio::sync::watch::channel(false);
        let leave: Option<Leave> = node.cluster.is_some().then(|| {
            let leave: Leave = std::sync::Arc::new(move || {
                asked_tx.send_replace(true);
            });
            leave
        });
        let host = Host::new(
            node.types.clone(),
            node.mesh.directory().clone(),
            node.arbiter.clone(),
            leave,
        )
        .start();
        // Starting actors on request is for the control plane and operators.
        let entry = std::sync::Arc::new(Entry::declared(host.clone()));
        let exposed = node.mesh.directory().insert(HOST_ACTOR.to_owned(), entry);
        debug_assert!(exposed, "a new node's directory is empty");
        if let Some(cluster) = node.cluster.clone() {
            bridge(node.mesh.clone(), cluster.clone());
            let entry = Entry::declared(cluster.agent());
            let exposed = node
                .mesh
                .directory()
                .insert(CLUSTER_ACTOR.to_owned(), std::sync::Arc::new(entry));
            debug_assert!(exposed, "a new node's directory is empty");
            if let Some((head, store)) = head_config {
                match Head::start(node.mesh.clone(), cluster.clone(), head, store).await {
                    Ok(head) => node.head = Some(head),
                    Err(e) => {
                        node.shutdown();
                        return Err(e);
                    }
                }
            }
            let control = Control::new(node.mesh.clone(), cluster.clone());
            crate::control::lease::spawn(control.clone(), host.clone(), node.id());
            node.control = Some(control);
            node.tasks = Some(Tasks::start(node.mesh.clone(), cluster).await);
        }
        let mut inspector = crate::inspect::Inspector::new(node.mesh.clone(), host.clone());
        if let Some(head) = &node.head {
            inspector = inspector.head(head.status());
        }
        if let (Some(cluster), Some(tasks)) = (&node.cluster, &node.tasks) {
            inspector = inspector.member(cluster.clone(), tasks.scheduler().clone().recipient());
        }
        let inspector = inspector.start();
        let entry = Entry::declared(inspector);
        node.mesh.directory().insert(
            crate::inspect::INSPECT_ACTOR.to_owned(),
            std::sync::Arc::new(entry),
        );
        // Operators log in and present their sessions here.
        let session = crate::operators::session::Session {
            mesh: node.mesh.clone(),
            control: node.control.clone(),
            admin: None,
        }
        .start();
        let entry = Entry::declared(session)
            .stamped::<crate::operators::wire::AdminLogin>()
            .stamped::<crate::operators::delegate::Delegated>();
        node.mesh.directory().insert(
            crate::operators::SESSION_ACTOR.to_owned(),
            std::sync::Arc::new(entry),
        );
        crate::summary::spawn(node.mesh.clone(), node.cluster.clone(), summary_interval);
        if node.cluster.is_some() {
            leave_when_drained(node.clone(), asked, left_tx);
        }
        tracing::info!(id = %node.id().short(), name = %node.name(), %listen, "node started");
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
        if self.mesh.directory().insert(name.clone(), entry) {
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
        if self.mesh.directory().contains(&name) {
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
        if self.mesh.directory().contains(&name) {
            return Err(ExposeError::NameTaken { name });
        }
        Ok(crate::supervision::start(
            self.mesh.directory().clone(),
            &self.arbiter,
            name,
            policy,
            factory,
        )
        .await)
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
        };
        self.remote::<Host>(node, HOST_ACTOR)
            .send(request)
            .await??;
        Ok(self.remote(node, &name))
    }

    /// Removes a registration; later messages to the name fail with
    /// `NoSuchActor`. Returns whether the name was registered.
    pub fn unexpose(&self, name: &str) -> bool {
        self.mesh.directory().remove(name)
    }

    /// Turns the per-actor counters operators inspect on or off at run
    /// time ([`MeshConfig::counters`] sets them at start; benchmarks
    /// compare the two on one node).
    pub fn set_counters(&self, on: bool) {
        self.mesh.directory().set_uncounted(!on);
    }

    /// How many actors are exposed on this node.
    pub fn exposed(&self) -> usize {
        self.mesh.directory().len()
    }

    /// Every message the actors exposed on this node accept: (actor name,
    /// tag, the access class the message declares), sorted. What the
    /// policy's defaults read and the audit follows.
    pub fn protocols(&self) -> Vec<(String, &'static str, crate::Access)> {
        let mut all = Vec::new();
        for (name, entry) in self.mesh.directory().entries() {
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
        Ok(Control::through(self.mesh.clone(), agent))
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

/// Waits until a relayed node has a link to a relay, at most `within`.
async fn first_relay(mesh: &Mesh, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while mesh.via().is_empty() && tokio::time::Instant::now() < deadline {
        tick.tick().await;
    }
    if mesh.via().is_empty() {
        tracing::warn!("no relay reachable yet; other nodes cannot reach this one until one is");
    }
}

/// Binds a TCP listener on `addr` with a backlog of [`ACCEPT_BACKLOG`].
fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted node rebinds its port at once.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Connections the kernel queues for the listener before it drops new
/// SYNs (capped by `net.core.somaxconn`, 4096 on current Linux): a flood
/// that reconnects its silent connections as fast as the node closes them
/// must not fill the queue, or a real peer's SYN waits a 1 s retransmit
/// (tokio's `TcpListener::bind` uses 1024).
const ACCEPT_BACKLOG: u32 = 4096;

/// Binds the mesh listener and, with membership, the gossip socket on the
/// same port number. With port 0 the OS picks the TCP port; if that port is
/// taken for UDP, another is tried.
async fn bind(
    config: &MeshConfig,
) -> Result<(TcpListener, Option<std::net::UdpSocket>), StartError> {
    let bind_err = |source| StartError::Bind {
        addr: config.listen,
        source,
    };
    let mut attempts = 0;
    loop {
        let tcp = listen(config.listen).map_err(bind_err)?;
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
                    return Err(StartError::GossipBind { addr, source });
                }
            }
        }
    }
}
