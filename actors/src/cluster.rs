//! Membership, service discovery and load balancing: the room above the
//! mesh. [`Cluster`] is its door, reached from a node started with
//! membership (`MeshConfig::cluster`).
//!
//! ```text
//! Cluster (handle)
//! └── Gossip     SWIM (foca) over sealed UDP on the mesh port; publishes
//!                ClusterEvents; owns the service table's updates
//! ```
//!
//! The `Gossip` actor runs `swarm_protocol::membership` over UDP on the
//! mesh port, every datagram sealed with AES-256-GCM under the cluster's
//! gossip key, and publishes every change as a [`ClusterEvent`] on a
//! bounded stream ([`events`]). The service table ([`services`]) follows
//! the stream, and so does the mesh (the node assembly subscribes it: links
//! to down members close, asks to them fail at once with
//! [`AskError::NodeDown`](crate::AskError::NodeDown)). If Gossip stops (the
//! node left), calls on the handle fail with [`ClusterError::Stopped`].
//!
//! Membership only says where a node is; the Noise handshake on the mesh
//! link is still what proves who it is.

pub mod events;
mod gossip;
pub mod resources;
pub mod rows;
pub mod services;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, Recipient};
use swarm_protocol::gossip::{GossipKey, NodeMeta, ServiceEntry};
use swarm_protocol::membership::{GossipStats, MemberState, MembershipConfig};
use swarm_protocol::NodeId;

use crate::directory::RemoteActor;
use crate::error::{ClusterError, StartError};
use crate::mesh::Mesh;
use events::EventBus;
use gossip::{GetMembers, Gossip, GossipParts, KeyOp, Leave, SetService, Stats, Subscribe};
use services::table::ServiceTable;

pub use events::{ClusterEvents, Lagged};
pub use gossip::Gossip as ClusterAgent;
pub use resources::ResourceOverrides;
pub use rows::{InstanceRow, ListMembers, ListServices, MemberRow, NodeCounters, ServiceRow};
pub use services::{Instance, Keyed, ServiceRef, Strategy};

/// The name every node with membership exposes its cluster actor under.
pub const CLUSTER_ACTOR: &str = "swarm.cluster";

/// Membership settings of a node.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Addresses to join through (any member's mesh address). Empty: this
    /// node starts a cluster of its own and waits to be joined.
    pub seeds: Vec<SocketAddr>,
    /// SWIM timers and limits.
    pub gossip: MembershipConfig,
    /// Gossip keys: the first seals, all open (rotation without downtime).
    /// Empty: one key derived from the join secret and cluster name.
    pub gossip_keys: Vec<GossipKey>,
    /// Declared resources replacing or extending the detected ones.
    pub resources: ResourceOverrides,
    /// How often load is measured (and gossiped when it changed).
    pub load_interval: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            seeds: Vec::new(),
            gossip: MembershipConfig::default(),
            gossip_keys: Vec::new(),
            resources: ResourceOverrides::default(),
            load_interval: Duration::from_secs(10),
        }
    }
}

/// A member as this node sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Its node id (claimed in gossip, proven by the mesh handshake).
    pub node: NodeId,
    /// Its mesh and gossip address.
    pub addr: SocketAddr,
    /// Its incarnation bump: larger after a restart.
    pub bump: u64,
    /// Alive, suspect, down or left.
    pub state: MemberState,
    /// Its metadata, once known.
    pub meta: Option<Arc<NodeMeta>>,
}

impl Member {
    /// The name from its metadata ("?" until it is known).
    pub fn name(&self) -> &str {
        self.meta.as_ref().map_or("?", |m| m.name.as_str())
    }
}

/// What happened to a member; delivered to subscribers in the order this
/// node learned it. A member that refutes a suspicion, or restarts, comes
/// `MemberUp` again.
#[derive(Debug, Clone, PartialEq, actix::Message)]
#[rtype(result = "()")]
pub enum ClusterEvent {
    /// Joined, restarted, or refuted a suspicion.
    MemberUp(Member),
    /// Failed a probe; its service instances get no traffic until it is up again.
    Suspect(Member),
    /// Declared down.
    MemberDown(Member),
    /// Left cleanly.
    MemberLeft(Member),
    /// Its metadata changed (services, resources, load).
    MetadataChanged(Member),
    /// The cluster declared this node down and it rejoined under a renewed
    /// identity (the member is this node). Whatever it ran for the cluster
    /// may run elsewhere now.
    Rejoined(Member),
}

impl ClusterEvent {
    /// The member the event is about.
    pub fn member(&self) -> &Member {
        match self {
            ClusterEvent::MemberUp(m)
            | ClusterEvent::Suspect(m)
            | ClusterEvent::MemberDown(m)
            | ClusterEvent::MemberLeft(m)
            | ClusterEvent::MetadataChanged(m)
            | ClusterEvent::Rejoined(m) => m,
        }
    }
}

/// Why [`Cluster::wait_for_members`] gave up.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// Fewer members than wanted were alive (with their metadata known)
    /// when the time was up.
    #[error("{alive} of {wanted} members alive after {within:?}")]
    Timeout {
        /// How many were waited for.
        wanted: usize,
        /// How many were alive then.
        alive: usize,
        /// How long it waited.
        within: Duration,
    },
    /// Membership failed (it stopped).
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// A change to the gossip key ring; see [`Cluster::gossip_key`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum GossipKeyOp {
    /// Accept datagrams sealed with this key too.
    Add(GossipKey),
    /// Seal with this key from now on (added if needed).
    Use(GossipKey),
    /// Stop accepting this key.
    Remove(GossipKey),
}

/// The handle to a node's membership, service discovery and load
/// balancing. Cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Cluster {
    gossip: Addr<Gossip>,
    table: Arc<ServiceTable>,
    mesh: Mesh,
    /// The actors this node exposes (services are served by them).
    directory: crate::directory::Directory,
    /// Events lost by slow subscribers (the bus itself is Gossip's alone).
    events_lost: Arc<AtomicU64>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.mesh.id())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Starts membership on the current arbiter, gossiping on `socket`
    /// (bound on the mesh's port number, non-blocking).
    pub(crate) fn start(
        mesh: Mesh,
        directory: crate::directory::Directory,
        socket: std::net::UdpSocket,
        config: ClusterConfig,
    ) -> Result<Cluster, StartError> {
        let table = Arc::new(ServiceTable::default());
        let bus = EventBus::new();
        let events_lost = bus.lost_counter();
        let gossip = Gossip::new(GossipParts {
            mesh: mesh.clone(),
            table: Arc::clone(&table),
            bus,
            socket,
            config,
        })?
        .start();
        Ok(Cluster {
            gossip,
            table,
            mesh,
            directory,
            events_lost,
        })
    }

    /// The actor answering [`ListMembers`] and [`ListServices`], to expose
    /// as [`CLUSTER_ACTOR`].
    pub(crate) fn agent(&self) -> Addr<Gossip> {
        self.gossip.clone()
    }

    /// Every member this node knows, itself first.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Stopped`] once membership has stopped.
    pub async fn members(&self) -> Result<Vec<Member>, ClusterError> {
        self.gossip
            .send(GetMembers)
            .await
            .map_err(|_| ClusterError::Stopped)
    }

    /// The members known now (this node first) and a bounded stream of
    /// every later [`ClusterEvent`], so nothing falls between the two.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Stopped`] once membership has stopped.
    pub async fn events(&self) -> Result<(Vec<Member>, ClusterEvents), ClusterError> {
        self.gossip
            .send(Subscribe)
            .await
            .map_err(|_| ClusterError::Stopped)
    }

    /// Waits until at least `n` members (this node included) are alive
    /// with their metadata known, and answers the member list then (this
    /// node first). Follows the event stream: no polling.
    ///
    /// # Errors
    ///
    /// [`WaitError::Timeout`] if fewer are alive when `within` has passed;
    /// [`WaitError::Cluster`] with [`ClusterError::Stopped`] once
    /// membership has stopped.
    pub async fn wait_for_members(
        &self,
        n: usize,
        within: Duration,
    ) -> Result<Vec<Member>, WaitError> {
        let deadline = tokio::time::Instant::now() + within;
        let (mut members, mut events) = self.events().await?;
        loop {
            let alive = alive_members(&members);
            if alive >= n {
                return Ok(members);
            }
            match tokio::time::timeout_at(deadline, events.next()).await {
                Err(_) => {
                    return Err(WaitError::Timeout {
                        wanted: n,
                        alive,
                        within,
                    })
                }
                Ok(None) => return Err(ClusterError::Stopped.into()),
                Ok(Some(Ok(event))) => {
                    let member = event.member().clone();
                    match members.iter_mut().find(|m| m.node == member.node) {
                        Some(known) => *known = member,
                        None => members.push(member),
                    }
                }
                // Events were lost: start over from the list.
                Ok(Some(Err(_))) => members = self.members().await?,
            }
        }
    }

    /// Sends every later [`ClusterEvent`] to `recipient` (one at a time; a
    /// recipient that falls [`events::EVENT_BUFFER`] events behind loses
    /// the oldest); returns the members known now, this node first.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Stopped`] once membership has stopped.
    pub async fn subscribe(
        &self,
        recipient: Recipient<ClusterEvent>,
    ) -> Result<Vec<Member>, ClusterError> {
        let (members, events) = self.events().await?;
        events.forward(recipient);
        Ok(members)
    }

    /// Registers the actor exposed as `actor` as an instance of `service`;
    /// every member learns it through gossip. Returns false if it was
    /// registered already.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NotExposed`] if no actor is exposed under `actor`;
    /// [`ClusterError::Metadata`] if the node's metadata would exceed its
    /// bounds (too many services, names too long); `Stopped`.
    pub async fn register_service(&self, service: &str, actor: &str) -> Result<bool, ClusterError> {
        if !self.directory.contains(actor) {
            return Err(ClusterError::NotExposed {
                name: actor.to_owned(),
            });
        }
        self.set_service(service, actor, true).await
    }

    /// Withdraws an instance registered with [`Cluster::register_service`].
    /// Returns whether it was registered.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Stopped`] once membership has stopped.
    pub async fn deregister_service(
        &self,
        service: &str,
        actor: &str,
    ) -> Result<bool, ClusterError> {
        self.set_service(service, actor, false).await
    }

    async fn set_service(
        &self,
        service: &str,
        actor: &str,
        present: bool,
    ) -> Result<bool, ClusterError> {
        let entry = ServiceEntry {
            service: service.to_owned(),
            actor: actor.to_owned(),
        };
        let changed = self
            .gossip
            .send(SetService { entry, present })
            .await
            .map_err(|_| ClusterError::Stopped)??;
        // Policy rules name targets by service too.
        self.directory.set_service(actor, service, present);
        Ok(changed)
    }

    /// A load-balanced handle to `service` (power of two choices on EWMA
    /// latency by default; see [`ServiceRef::with_strategy`]).
    pub fn service<A: RemoteActor>(&self, service: &str) -> ServiceRef<A> {
        ServiceRef::new(
            self.mesh.clone(),
            Arc::clone(&self.table),
            service.to_owned(),
        )
    }

    /// Every known service with its live instances, sorted by name.
    pub fn services(&self) -> Vec<(String, Vec<Instance>)> {
        self.table.list()
    }

    /// Every service instance as this node's balancer sees it (for the
    /// console).
    pub(crate) fn service_views(&self) -> Vec<crate::inspect::ServiceView> {
        let me = self.mesh.id().to_string();
        let mut rows = Vec::new();
        for (service, instances) in self.table.list() {
            for i in instances {
                rows.push(crate::inspect::ServiceView {
                    node: me.clone(),
                    service: service.clone(),
                    instance_node: i.node.to_string(),
                    actor: i.actor.clone(),
                    outstanding: i.outstanding(),
                    sent: i.sent(),
                    latency_us: i.latency().as_secs_f64() * 1e6,
                    ejected: self.table.is_ejected(i.node),
                });
            }
        }
        rows
    }

    /// Gossip traffic counters (datagrams sent, received, and dropped by reason).
    ///
    /// # Errors
    ///
    /// [`ClusterError::Stopped`] once membership has stopped.
    pub async fn gossip_stats(&self) -> Result<GossipStats, ClusterError> {
        self.gossip
            .send(Stats)
            .await
            .map_err(|_| ClusterError::Stopped)
    }

    /// This node's refusal and drop counters: mesh, gossip and events.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Stopped`] once membership has stopped.
    pub async fn counters(&self) -> Result<NodeCounters, ClusterError> {
        let gossip = self.gossip_stats().await?;
        Ok(NodeCounters {
            mesh: self.mesh.stats(),
            gossip_unsealed: gossip.dropped_unsealed,
            gossip_oversized: gossip.dropped_oversized,
            gossip_malformed: gossip.dropped_malformed,
            gossip_replayed: gossip.dropped_replayed,
            events_lost: self.events_lost(),
            members_down: gossip.members_down,
            rejoins: gossip.rejoins,
            late_ticks: gossip.late_ticks,
        })
    }

    /// Cluster events lost by slow subscribers so far.
    pub fn events_lost(&self) -> u64 {
        self.events_lost.load(Ordering::Relaxed)
    }

    /// Changes the gossip key ring at run time: add a key everywhere, then
    /// use it everywhere, then remove the old one, and no datagram is lost.
    /// Returns the fingerprints of the keys held, the sealing key first.
    ///
    /// # Errors
    ///
    /// [`ClusterError::KeyRing`] if the ring refuses (full, or removing the
    /// sealing key); `Stopped`.
    pub async fn gossip_key(&self, op: GossipKeyOp) -> Result<Vec<String>, ClusterError> {
        let op = match op {
            GossipKeyOp::Add(key) => KeyOp::Add(key),
            GossipKeyOp::Use(key) => KeyOp::Use(key),
            GossipKeyOp::Remove(key) => KeyOp::Remove(key),
        };
        Ok(self
            .gossip
            .send(op)
            .await
            .map_err(|_| ClusterError::Stopped)??)
    }

    /// Leaves the cluster and waits until the goodbye is sent: members see
    /// this node as left at once, not down. Membership stops; the mesh
    /// keeps running.
    pub async fn leave(&self) {
        let _ = self.gossip.send(Leave).await;
    }

    /// Leaves without waiting.
    pub(crate) fn leave_now(&self) {
        self.gossip.do_send(Leave);
    }
}

/// Members alive with their metadata known.
fn alive_members(members: &[Member]) -> usize {
    members
        .iter()
        .filter(|m| m.state == MemberState::Alive && m.meta.is_some())
        .count()
}
