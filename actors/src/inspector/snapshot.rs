//! What the inspector answers and the console assembles: a node's
//! [`NodeSnapshot`] (what it alone knows: its actors, links, counters)
//! and the [`ClusterView`] the console joins from every member's snapshot
//! and the member list. They hold the rows of [`crate::inspect::model`]
//! beside the rows of the rooms they come from (members, heads, tasks,
//! placed actors, mesh counters): one data model for the console, its
//! `--json` output, the admin API and the metrics.

use serde::{Deserialize, Serialize};

use crate::cluster::MemberRow;
use crate::control::{HeadRow, PlacedRow};
use crate::inspect::{
    ActorView, ClosedLink, EventView, JournalTotals, LinkView, MemberCounts, ServiceView,
    TraceEntry,
};
use crate::mesh::MeshStats;
use crate::tasks::TaskTable;

/// What one node reports about itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeSnapshot {
    /// The node itself.
    pub node: NodeLocal,
    /// Its exposed actors, system actors included.
    pub actors: Vec<ActorView>,
    /// Its live links.
    pub links: Vec<LinkView>,
    /// Its most recently closed links, newest last.
    #[serde(default)]
    pub closed: Vec<ClosedLink>,
    /// Its recent events, oldest first.
    #[serde(default)]
    pub events: Vec<EventView>,
    /// Service instances as its load balancer sees them.
    #[serde(default)]
    pub services: Vec<ServiceView>,
    /// Its task scheduler's table (with membership).
    #[serde(default)]
    pub tasks: Option<TaskTable>,
    /// Its durable actors' journal totals, by backend.
    #[serde(default)]
    pub journals: Vec<JournalTotals>,
}

/// What a node knows of itself that membership does not carry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeLocal {
    /// Node id, hex.
    pub id: String,
    /// Certificate name.
    pub name: String,
    /// Seconds since the node started.
    pub uptime_s: u64,
    /// Exposed actors (system actors included).
    pub actors: usize,
    /// Live links.
    pub links: usize,
    /// The one-minute load average of its machine.
    pub load_average: f64,
    /// The head's Raft state, on heads.
    #[serde(default)]
    pub head: Option<HeadRow>,
    /// The mesh's counters.
    pub mesh: MeshStats,
    /// Whether per-actor counters are on.
    pub counters: bool,
    /// Its membership's members by state (none without membership).
    #[serde(default)]
    pub members: MemberCounts,
}

/// One node as the Nodes view shows it: its member row joined with what
/// it reported (nothing, if it did not answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// What membership says.
    #[serde(flatten)]
    pub member: MemberRow,
    /// What the node said of itself; `None` if it did not answer.
    pub local: Option<NodeLocal>,
    /// Why it did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The whole cluster at one moment, as the console assembles it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterView {
    /// When it was assembled, Unix milliseconds.
    pub at_ms: u64,
    /// Every member.
    pub nodes: Vec<NodeView>,
    /// Every exposed actor on every node that answered.
    pub actors: Vec<ActorView>,
    /// Every link of every node that answered.
    pub links: Vec<LinkView>,
    /// Recently closed links, by node.
    pub closed: Vec<ClosedLink>,
    /// Recent events of every node that answered, oldest first.
    #[serde(default)]
    pub events: Vec<EventView>,
    /// Service instances as every node's balancer sees them.
    #[serde(default)]
    pub services: Vec<ServiceView>,
    /// Each answering node's task table.
    #[serde(default)]
    pub tasks: Vec<TaskTable>,
    /// The named actors the head records (placement, resources, group),
    /// as its leader answered; empty without a control plane.
    #[serde(default)]
    pub placed: Vec<PlacedRow>,
    /// The actor being traced (`name@node-id`), if one is.
    #[serde(default)]
    pub traced: Option<String>,
    /// Its latest trace entries, oldest first.
    #[serde(default)]
    pub trace: Vec<TraceEntry>,
}
