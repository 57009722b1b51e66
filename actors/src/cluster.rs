//! Membership, service discovery and load balancing for a running node.
//!
//! When [`MeshConfig::cluster`](crate::MeshConfig::cluster) is set, a node
//! starts a `Gossip` actor next to its Router. It runs SWIM (foca, through
//! `swarm_protocol::membership`) over UDP on the mesh port, every datagram
//! sealed with AES-256-GCM under the cluster's gossip key, and:
//!
//! - tells the Router where members listen and when they go down (the
//!   Router closes links to down members; asks to them fail at once with
//!   [`AskError::NodeDown`](crate::AskError::NodeDown));
//! - keeps the table of live service instances ([`services`]);
//! - sends [`ClusterEvent`]s to every subscribed actor.
//!
//! Membership only says where a node is; the Noise handshake on the mesh
//! link is still what proves who it is.

pub(crate) mod gossip;
pub mod resources;
pub mod services;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use swarm_protocol::gossip::{GossipKey, NodeMeta};
use swarm_protocol::membership::{MemberState, MembershipConfig};
use swarm_protocol::NodeId;

pub use resources::ResourceOverrides;
pub use services::{Instance, Keyed, ServiceRef, Strategy};

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
            load_interval: Duration::from_secs(5),
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
}

impl ClusterEvent {
    /// The member the event is about.
    pub fn member(&self) -> &Member {
        match self {
            ClusterEvent::MemberUp(m)
            | ClusterEvent::Suspect(m)
            | ClusterEvent::MemberDown(m)
            | ClusterEvent::MemberLeft(m)
            | ClusterEvent::MetadataChanged(m) => m,
        }
    }
}

/// One service with its live instances, as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRow {
    /// The service name.
    pub service: String,
    /// Its instances: node id (hex), node name, address, actor name.
    pub instances: Vec<InstanceRow>,
}

/// One instance, as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRow {
    /// Node id, hex.
    pub node: String,
    /// Node name.
    pub name: String,
    /// Mesh address.
    pub addr: String,
    /// Actor name on that node.
    pub actor: String,
}

/// One member, as listed by `swarm members`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberRow {
    /// Node id, hex.
    pub id: String,
    /// Node name.
    pub name: String,
    /// Mesh address.
    pub addr: String,
    /// Certificate roles.
    pub roles: Vec<String>,
    /// alive, suspect, down or left.
    pub state: String,
    /// CPUs offered.
    pub cpus: f64,
    /// Memory offered, bytes.
    pub memory: u64,
    /// GPUs offered.
    pub gpus: u32,
    /// Custom resources.
    pub custom: Vec<(String, f64)>,
    /// CPU use, percent.
    pub cpu_percent: f32,
    /// Memory in use, bytes.
    pub memory_used: u64,
    /// Service instances hosted.
    pub services: usize,
}

impl MemberRow {
    pub(crate) fn from_member(member: &Member) -> Self {
        let meta = member.meta.as_deref().cloned().unwrap_or_default();
        Self {
            id: member.node.to_string(),
            name: member.name().to_owned(),
            addr: member.addr.to_string(),
            roles: meta.roles,
            state: member.state.as_str().to_owned(),
            cpus: meta.resources.cpus,
            memory: meta.resources.memory,
            gpus: meta.resources.gpus,
            custom: meta.resources.custom,
            cpu_percent: meta.load.cpu_percent,
            memory_used: meta.load.memory_used,
            services: meta.services.len(),
        }
    }
}

/// Asks a node's `swarm.cluster` actor for its member list.
#[derive(Debug, Clone, Serialize, Deserialize, actix::Message)]
#[rtype(result = "Vec<MemberRow>")]
pub struct ListMembers;

/// Asks a node's `swarm.cluster` actor for its services.
#[derive(Debug, Clone, Serialize, Deserialize, actix::Message)]
#[rtype(result = "Vec<ServiceRow>")]
pub struct ListServices;

crate::remote_message!(
    ListMembers => "swarm.ListMembers",
    ListServices => "swarm.ListServices",
);

/// The name every node with membership exposes its cluster actor under.
pub const CLUSTER_ACTOR: &str = "swarm.cluster";

pub use gossip::Gossip;
