//! The service table: the live instances of every service as this node
//! knows them, with the per-instance figures every `ServiceRef` on this
//! node shares, and the nodes ejected after a link-level failure. It
//! follows membership by applying [`ClusterEvent`]s.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use swarm_protocol::gossip::ServiceEntry;
use swarm_protocol::membership::MemberState;
use swarm_protocol::NodeId;

use super::strategy::p2c_score;
use crate::cluster::{ClusterEvent, Member};
use crate::mesh::Mesh;

/// How often an ejected node is dialed in the background.
const PROBE_EJECTED_EVERY: Duration = Duration::from_secs(1);

/// How fast a latency estimate fades when no new sample arrives: an
/// instance that was slow once is tried again after a few of these, so a
/// stale estimate (a cold start, a passing hiccup) cannot starve it.
const LATENCY_DECAY: Duration = Duration::from_millis(200);

fn clock_ns() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Per-instance figures shared by every `ServiceRef` on this node.
#[derive(Debug, Default)]
pub(crate) struct InstanceStats {
    outstanding: AtomicU32,
    /// Exponentially weighted latency, nanoseconds; 0 before any sample.
    ewma_ns: AtomicU64,
    /// When the last sample arrived (`clock_ns`).
    sampled_at: AtomicU64,
    /// Requests sent to this instance from this node.
    sent: AtomicU64,
}

impl InstanceStats {
    pub(crate) fn record(&self, elapsed: Duration) {
        let sample = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX).max(1);
        let old = self.decayed();
        let new = if old == 0 {
            sample
        } else {
            (old / 10).saturating_mul(7) + (sample / 10).saturating_mul(3)
        };
        self.ewma_ns.store(new.max(1), Ordering::Relaxed);
        self.sampled_at.store(clock_ns(), Ordering::Relaxed);
    }

    /// The latency estimate, faded by the time since its last sample.
    fn decayed(&self) -> u64 {
        let ewma = self.ewma_ns.load(Ordering::Relaxed);
        if ewma == 0 {
            return 0;
        }
        let age = clock_ns().saturating_sub(self.sampled_at.load(Ordering::Relaxed));
        let fade = (-(age as f64) / LATENCY_DECAY.as_nanos() as f64).exp();
        ((ewma as f64) * fade) as u64
    }

    pub(crate) fn score(&self) -> u128 {
        p2c_score(self.decayed(), self.outstanding.load(Ordering::Relaxed))
    }

    /// Counts one request in flight until the returned guard drops, so a
    /// caller that gives up (drops its future) does not leave it counted.
    pub(crate) fn begin(self: &Arc<Self>) -> Outstanding {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        self.sent.fetch_add(1, Ordering::Relaxed);
        Outstanding(Arc::clone(self))
    }
}

/// One request in flight to an instance; see [`InstanceStats::begin`].
pub(crate) struct Outstanding(Arc<InstanceStats>);

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One instance of a service.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The node hosting it.
    pub node: NodeId,
    /// The node's mesh address.
    pub addr: SocketAddr,
    /// The actor name it is exposed under on that node.
    pub actor: String,
    pub(crate) stats: Arc<InstanceStats>,
}

impl Instance {
    /// Requests in flight to it from this node.
    pub fn outstanding(&self) -> u32 {
        self.stats.outstanding.load(Ordering::Relaxed)
    }

    /// Requests sent to it from this node.
    pub fn sent(&self) -> u64 {
        self.stats.sent.load(Ordering::Relaxed)
    }

    /// Its EWMA latency as seen from this node, faded by the time since
    /// the last reply (zero before any reply).
    pub fn latency(&self) -> Duration {
        Duration::from_nanos(self.stats.decayed())
    }

    fn same(&self, other: &Instance) -> bool {
        self.node == other.node && self.actor == other.actor
    }
}

struct Ejection {
    at: Instant,
    last_probe: Instant,
}

/// The live instances of every service, as this node knows them.
#[derive(Default)]
pub(crate) struct ServiceTable {
    services: DashMap<String, Arc<Vec<Instance>>>,
    generation: AtomicU64,
    ejected: DashMap<NodeId, Ejection>,
}

impl ServiceTable {
    /// Follows a membership event: a member's instances are listed while
    /// it is alive and withdrawn the moment it is suspect, down or gone.
    pub(crate) fn apply(&self, event: &ClusterEvent) {
        let member = event.member();
        match event {
            ClusterEvent::MemberUp(_) => {
                self.readmit(member.node);
                self.publish(member);
            }
            ClusterEvent::Suspect(_) => self.set_node(member.node, member.addr, &[]),
            ClusterEvent::MemberDown(_) | ClusterEvent::MemberLeft(_) => {
                self.set_node(member.node, member.addr, &[]);
                // Down excludes it anyway; an ejection would only linger.
                self.readmit(member.node);
            }
            ClusterEvent::MetadataChanged(_) => self.publish(member),
            ClusterEvent::Rejoined(_) => {}
        }
    }

    /// Lists `member`'s instances if it is alive, none otherwise.
    pub(crate) fn publish(&self, member: &Member) {
        let entries: &[ServiceEntry] = match (&member.meta, member.state) {
            (Some(meta), MemberState::Alive) => &meta.services,
            _ => &[],
        };
        self.set_node(member.node, member.addr, entries);
    }

    /// Replaces the instances `node` hosts by `entries`.
    fn set_node(&self, node: NodeId, addr: SocketAddr, entries: &[ServiceEntry]) {
        let mut changed = false;
        let mut kept: Vec<Instance> = Vec::new();
        let names: Vec<String> = self.services.iter().map(|e| e.key().clone()).collect();
        for name in names {
            let Some(mut slot) = self.services.get_mut(&name) else {
                continue;
            };
            if slot.iter().any(|i| i.node == node) {
                let (theirs, others): (Vec<Instance>, Vec<Instance>) =
                    slot.iter().cloned().partition(|i| i.node == node);
                kept.extend(theirs);
                *slot = Arc::new(others);
                changed = true;
            }
        }
        for entry in entries {
            let fresh = Instance {
                node,
                addr,
                actor: entry.actor.clone(),
                stats: Arc::default(),
            };
            // Keep the figures of an instance that was already known.
            let instance = kept
                .iter()
                .find(|old| old.same(&fresh) && old.addr == addr)
                .cloned()
                .unwrap_or(fresh);
            let mut slot = self.services.entry(entry.service.clone()).or_default();
            let mut list: Vec<Instance> = slot.iter().cloned().collect();
            list.push(instance);
            list.sort_by(|a, b| (a.node, &a.actor).cmp(&(b.node, &b.actor)));
            *slot = Arc::new(list);
            changed = true;
        }
        self.services.retain(|_, list| !list.is_empty());
        if changed {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The instances of `service` (alive nodes only), sorted.
    pub(crate) fn instances(&self, service: &str) -> Arc<Vec<Instance>> {
        self.services
            .get(service)
            .map(|list| Arc::clone(list.value()))
            .unwrap_or_default()
    }

    /// Every service with its instances, sorted by name.
    pub(crate) fn list(&self) -> Vec<(String, Vec<Instance>)> {
        let mut all: Vec<(String, Vec<Instance>)> = self
            .services
            .iter()
            .map(|e| (e.key().clone(), e.value().to_vec()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A request to `node` failed at the link level.
    /// Whether `node` is ejected now.
    pub(crate) fn is_ejected(&self, node: NodeId) -> bool {
        self.ejected.contains_key(&node)
    }

    pub(crate) fn eject(&self, node: NodeId) {
        let now = Instant::now();
        self.ejected.entry(node).or_insert(Ejection {
            at: now,
            last_probe: now,
        });
    }

    /// Membership reports `node` alive after a restart.
    fn readmit(&self, node: NodeId) {
        self.ejected.remove(&node);
    }

    /// Whether requests may go to `id` now.
    pub(crate) fn admissible(&self, mesh: &Mesh, id: NodeId) -> bool {
        if mesh.is_down(id) {
            return false;
        }
        let Some(mut ejection) = self.ejected.get_mut(&id) else {
            return true;
        };
        if let Some(link) = mesh.live_link(id) {
            if link.established_at() > ejection.at {
                drop(ejection);
                self.ejected.remove(&id);
                return true;
            }
        }
        if ejection.last_probe.elapsed() >= PROBE_EJECTED_EVERY {
            ejection.last_probe = Instant::now();
            drop(ejection);
            // Dial in the background; a new link readmits the node.
            let _ = mesh.link_now(id);
        }
        false
    }
}
