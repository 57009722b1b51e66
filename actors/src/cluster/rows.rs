//! What operators see of the cluster, as plain serde rows: `swarm members`
//! and `swarm services` render them as tables or JSON, and the node's
//! `swarm.cluster` actor answers [`ListMembers`] and [`ListServices`] with
//! them. One data model for every view.

use serde::{Deserialize, Serialize};

use super::Member;
use crate::mesh::MeshStats;

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
    /// How the answering node reaches this member: `self`, `direct`,
    /// `relayed via NAME` (a link through that relay now), or `via NAME`
    /// (no link now; it announces that relay).
    #[serde(default)]
    pub reach: String,
    /// The member forwards relayed traffic.
    #[serde(default)]
    pub relay: bool,
    /// The answering node's own drop and refusal counters; present on
    /// that node's own row only (others' counters are theirs to report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<NodeCounters>,
}

/// Traffic a node refused or dropped, for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeCounters {
    /// The mesh's counters (refused handshakes, failed links, dropped tells).
    pub mesh: MeshStats,
    /// Gossip datagrams dropped: not sealed with a known key.
    pub gossip_unsealed: u64,
    /// Gossip datagrams dropped: larger than the maximum.
    pub gossip_oversized: u64,
    /// Gossip datagrams dropped: sealed correctly but malformed or refused.
    pub gossip_malformed: u64,
    /// Gossip datagrams dropped: replayed, or sent outside the clock-skew window.
    pub gossip_replayed: u64,
    /// Cluster events lost by slow subscribers.
    pub events_lost: u64,
    /// Members this node reported down since it started (each identity
    /// once). Where nothing crashed, each is a false down.
    #[serde(default)]
    pub members_down: u64,
    /// Times the cluster declared this node down and it rejoined under a
    /// renewed identity.
    #[serde(default)]
    pub rejoins: u64,
    /// Membership timers that fired late (the node was starved).
    #[serde(default)]
    pub late_ticks: u64,
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
            reach: if meta.via.is_empty() {
                "direct".to_owned()
            } else {
                "via ?".to_owned()
            },
            relay: meta.relay,
            counters: None,
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

crate::system_message! {
    ListMembers => "swarm.ListMembers", Read;
    ListServices => "swarm.ListServices", Read;
}
