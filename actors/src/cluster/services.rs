//! Service discovery and load balancing.
//!
//! An actor exposed on a node registers as an instance of a named service
//! ([`Node::register_service`](crate::Node::register_service)); the entry
//! travels in the node's gossiped metadata. Every node keeps a
//! service table of the instances on members that are alive: instances
//! on suspect, down or departed nodes leave it the moment membership says
//! so, and new ones enter it as soon as their metadata arrives.
//!
//! A [`ServiceRef`] sends to one live instance, chosen by its [`Strategy`].
//! A request that fails because the instance's node cannot be reached
//! (`LinkDown`, `NodeDown`, `Unreachable`) ejects that node from every
//! `ServiceRef` on this node; it is readmitted only once a new link to it
//! is up (dialed in the background, never by a user request) or membership
//! reports it alive again after a restart. So after the first failure, no
//! request goes to a dead node.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::{Actor, Context, Handler};
use dashmap::DashMap;
use swarm_protocol::gossip::ServiceEntry;
use swarm_protocol::NodeId;

use crate::directory::{RemoteMessage, Wire};
use crate::error::AskError;
use crate::node::Node;

/// How often an ejected node is dialed in the background.
const PROBE_EJECTED_EVERY: Duration = Duration::from_secs(1);
/// Points per instance on the consistent-hashing ring.
const RING_POINTS: usize = 128;

/// How a [`ServiceRef`] chooses an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Each instance in turn.
    RoundRobin,
    /// The instance with the fewest requests in flight from this node.
    LeastOutstanding,
    /// Two instances at random, then the one with the lower
    /// EWMA latency × (requests in flight + 1). The default: it follows
    /// load without herding onto one instance. Latency estimates fade
    /// within about a second without new samples, so a slow instance is
    /// retried now and then and gets its traffic back when it recovers.
    #[default]
    PowerOfTwoEwma,
    /// The instance owning the message's key on a hash ring
    /// ([`ServiceRef::send_keyed`]); when an instance joins or leaves,
    /// only the keys it owns move. Plain `send` uses round robin.
    ConsistentHash,
}

/// A message that carries its own routing key for consistent hashing.
pub trait Keyed {
    /// The key's type.
    type Key: Hash;
    /// The key requests with the same value are routed by.
    fn key(&self) -> Self::Key;
}

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
    fn record(&self, elapsed: Duration) {
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

    fn score(&self) -> u128 {
        let latency = u128::from(self.decayed());
        let inflight = u128::from(self.outstanding.load(Ordering::Relaxed));
        (latency + 1) * (inflight + 1)
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
    stats: Arc<InstanceStats>,
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
    /// Replaces the instances `node` hosts by `entries` (none: it is not
    /// alive, or hosts nothing).
    pub(crate) fn set_node(&self, node: NodeId, addr: SocketAddr, entries: &[ServiceEntry]) {
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
    pub(crate) fn eject(&self, node: NodeId) {
        let now = Instant::now();
        self.ejected.entry(node).or_insert(Ejection {
            at: now,
            last_probe: now,
        });
    }

    /// Membership reports `node` alive after a restart.
    pub(crate) fn readmit(&self, node: NodeId) {
        self.ejected.remove(&node);
    }

    /// Whether requests may go to `node` now.
    fn admissible(&self, node: &Node, id: NodeId) -> bool {
        if node.is_down(id) {
            return false;
        }
        let Some(mut ejection) = self.ejected.get_mut(&id) else {
            return true;
        };
        if let Some(link) = node.live_link(id) {
            if link.shared.established_at > ejection.at {
                drop(ejection);
                self.ejected.remove(&id);
                return true;
            }
        }
        if ejection.last_probe.elapsed() >= PROBE_EJECTED_EVERY {
            ejection.last_probe = Instant::now();
            drop(ejection);
            // Dial in the background; a new link readmits the node.
            let _ = node.link_now(id);
        }
        false
    }
}

/// A stable 64-bit hash (FNV-1a with a final mix), the same on every node
/// and every build, for the hash ring.
#[derive(Debug)]
struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        // splitmix64's finaliser spreads FNV's weak low bits.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn stable_hash(value: &impl Hash) -> u64 {
    let mut h = StableHasher::default();
    value.hash(&mut h);
    h.finish()
}

/// Points on the ring: (hash, index into the instance list).
struct Ring {
    generation: u64,
    points: Vec<(u64, usize)>,
}

impl Ring {
    fn build(generation: u64, instances: &[Instance]) -> Self {
        let mut points = Vec::with_capacity(instances.len() * RING_POINTS);
        for (index, instance) in instances.iter().enumerate() {
            for point in 0..RING_POINTS {
                let hash = stable_hash(&(instance.node.as_bytes(), &instance.actor, point));
                points.push((hash, index));
            }
        }
        points.sort_unstable();
        Self { generation, points }
    }

    /// Instance indices clockwise from `key`'s point, each once.
    fn walk(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        let start = self.points.partition_point(|(h, _)| *h < key);
        let len = self.points.len();
        let mut seen = Vec::new();
        (0..len).filter_map(move |step| {
            let (_, index) = self.points.get((start + step) % len)?;
            if seen.contains(index) {
                None
            } else {
                seen.push(*index);
                Some(*index)
            }
        })
    }
}

/// A typed handle to a named service: sends each request to one live
/// instance. Cheap to clone; clones share their round-robin position and
/// hash ring.
pub struct ServiceRef<A> {
    node: Node,
    table: Arc<ServiceTable>,
    service: String,
    strategy: Strategy,
    timeout: Duration,
    cursor: Arc<AtomicUsize>,
    rng: Arc<AtomicU64>,
    ring: Arc<Mutex<Option<Arc<Ring>>>>,
    _actor: PhantomData<fn() -> A>,
}

impl<A> Clone for ServiceRef<A> {
    fn clone(&self) -> Self {
        Self {
            node: self.node.clone(),
            table: Arc::clone(&self.table),
            service: self.service.clone(),
            strategy: self.strategy,
            timeout: self.timeout,
            cursor: Arc::clone(&self.cursor),
            rng: Arc::clone(&self.rng),
            ring: Arc::clone(&self.ring),
            _actor: PhantomData,
        }
    }
}

impl<A> std::fmt::Debug for ServiceRef<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceRef")
            .field("service", &self.service)
            .field("strategy", &self.strategy)
            .finish()
    }
}

impl<A> ServiceRef<A>
where
    A: Actor<Context = Context<A>>,
{
    pub(crate) fn new(node: Node, table: Arc<ServiceTable>, service: String) -> Self {
        let seed = {
            let mut h = DefaultHasher::new();
            (std::process::id(), Instant::now(), &service).hash(&mut h);
            h.finish() | 1
        };
        Self {
            timeout: node.ask_timeout(),
            node,
            table,
            service,
            strategy: Strategy::default(),
            cursor: Arc::default(),
            rng: Arc::new(AtomicU64::new(seed)),
            ring: Arc::default(),
            _actor: PhantomData,
        }
    }

    /// The same service with another strategy.
    #[must_use]
    pub fn with_strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The same service with another per-request timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The service name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The strategy in use.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The instances requests may go to now.
    pub fn instances(&self) -> Vec<Instance> {
        self.table
            .instances(&self.service)
            .iter()
            .filter(|i| self.table.admissible(&self.node, i.node))
            .cloned()
            .collect()
    }

    fn random(&self) -> u64 {
        // xorshift64*: choices, not secrets.
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.store(x, Ordering::Relaxed);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The instance the next request would go to (`key` for consistent
    /// hashing), or `None` when no instance is live.
    pub fn pick(&self, key: Option<u64>) -> Option<Instance> {
        let all = self.table.instances(&self.service);
        if let (Strategy::ConsistentHash, Some(key)) = (self.strategy, key) {
            let ring = self.ring_for(&all);
            return ring
                .walk(key)
                .filter_map(|index| all.get(index))
                .find(|i| self.table.admissible(&self.node, i.node))
                .cloned();
        }
        let live: Vec<&Instance> = all
            .iter()
            .filter(|i| self.table.admissible(&self.node, i.node))
            .collect();
        if live.is_empty() {
            return None;
        }
        let chosen = match self.strategy {
            Strategy::RoundRobin | Strategy::ConsistentHash => {
                live.get(self.cursor.fetch_add(1, Ordering::Relaxed) % live.len())
            }
            Strategy::LeastOutstanding => {
                let start = self.cursor.fetch_add(1, Ordering::Relaxed);
                (0..live.len())
                    .filter_map(|k| live.get((start + k) % live.len()))
                    .min_by_key(|i| i.outstanding())
            }
            Strategy::PowerOfTwoEwma => {
                let n = live.len() as u64;
                let a = (self.random() % n) as usize;
                let mut b = (self.random() % n.saturating_sub(1).max(1)) as usize;
                if live.len() > 1 && b >= a {
                    b += 1;
                }
                match (live.get(a), live.get(b)) {
                    (Some(x), Some(y)) => Some(if y.stats.score() < x.stats.score() {
                        y
                    } else {
                        x
                    }),
                    (x, y) => x.or(y),
                }
            }
        };
        chosen.map(|i| (*i).clone())
    }

    fn ring_for(&self, all: &[Instance]) -> Arc<Ring> {
        let generation = self.table.generation();
        let mut cached = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        match cached.as_ref() {
            Some(ring) if ring.generation == generation => Arc::clone(ring),
            _ => {
                let ring = Arc::new(Ring::build(generation, all));
                *cached = Some(Arc::clone(&ring));
                ring
            }
        }
    }

    /// Sends `msg` to one live instance and waits for the reply.
    ///
    /// # Errors
    ///
    /// [`AskError::NoInstance`] when no instance is live; otherwise the
    /// instance's [`AskError`]. A request is sent once: one that fails
    /// because the instance's node died is not retried elsewhere (the
    /// handler may have run), but the node is ejected so no later request
    /// goes there.
    pub async fn send<M>(&self, msg: M) -> Result<M::Result, AskError>
    where
        A: Handler<M>,
        M: RemoteMessage,
        M::Result: Wire,
    {
        let instance = self.pick(None).ok_or_else(|| AskError::NoInstance {
            service: self.service.clone(),
        })?;
        self.send_to(instance, msg).await
    }

    /// Sends `msg` to the instance owning its key (with
    /// [`Strategy::ConsistentHash`]; other strategies ignore the key).
    ///
    /// # Errors
    ///
    /// As [`ServiceRef::send`].
    pub async fn send_keyed<M>(&self, msg: M) -> Result<M::Result, AskError>
    where
        A: Handler<M>,
        M: RemoteMessage + Keyed,
        M::Result: Wire,
    {
        let key = stable_hash(&msg.key());
        let instance = self.pick(Some(key)).ok_or_else(|| AskError::NoInstance {
            service: self.service.clone(),
        })?;
        self.send_to(instance, msg).await
    }

    async fn send_to<M>(&self, instance: Instance, msg: M) -> Result<M::Result, AskError>
    where
        A: Handler<M>,
        M: RemoteMessage,
        M::Result: Wire,
    {
        let target = self.node.remote::<A>(instance.node, &instance.actor);
        let stats = &instance.stats;
        stats.outstanding.fetch_add(1, Ordering::Relaxed);
        stats.sent.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = target.send_timeout(msg, self.timeout).await;
        stats.outstanding.fetch_sub(1, Ordering::Relaxed);
        match &result {
            Err(
                AskError::LinkDown { .. }
                | AskError::NodeDown { .. }
                | AskError::Unreachable { .. },
            ) => {
                self.table.eject(instance.node);
            }
            Err(AskError::Timeout { .. }) => stats.record(self.timeout),
            _ => stats.record(started.elapsed()),
        }
        result
    }
}

/// A service key's position on the hash ring, for tests and tools that
/// need to predict where [`ServiceRef::send_keyed`] goes.
pub fn key_hash(key: &impl Hash) -> u64 {
    stable_hash(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instances(n: usize) -> Vec<Instance> {
        (0..n)
            .map(|i| Instance {
                node: NodeId::from_bytes([i as u8 + 1; 16]),
                addr: SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16)),
                actor: "svc".into(),
                stats: Arc::default(),
            })
            .collect()
    }

    fn owner(ring: &Ring, all: &[Instance], key: u64) -> NodeId {
        let index = ring.walk(key).next().unwrap();
        all[index].node
    }

    #[test]
    fn the_ring_spreads_keys_and_moves_few_when_an_instance_joins() {
        let before = instances(4);
        let ring_before = Ring::build(1, &before);
        let mut counts = std::collections::HashMap::new();
        let keys: Vec<u64> = (0..10_000u64).map(|k| key_hash(&k)).collect();
        for &k in &keys {
            *counts.entry(owner(&ring_before, &before, k)).or_insert(0) += 1;
        }
        for count in counts.values() {
            assert!((1500..3500).contains(count), "uneven ring: {counts:?}");
        }
        let after = instances(5);
        let ring_after = Ring::build(2, &after);
        let moved = keys
            .iter()
            .filter(|&&k| owner(&ring_before, &before, k) != owner(&ring_after, &after, k))
            .count();
        // Ideal: 1/5 of the keys move, all to the new instance.
        assert!(moved < 3000, "{moved} of 10000 keys moved");
        let newcomer = after[4].node;
        assert!(keys
            .iter()
            .filter(|&&k| owner(&ring_before, &before, k) != owner(&ring_after, &after, k))
            .all(|&k| owner(&ring_after, &after, k) == newcomer));
    }

    #[test]
    fn a_leaving_instance_moves_only_its_own_keys() {
        let all = instances(5);
        let ring = Ring::build(1, &all);
        let gone = all[2].node;
        let rest: Vec<Instance> = all.iter().filter(|i| i.node != gone).cloned().collect();
        let ring_rest = Ring::build(2, &rest);
        for k in (0..5000u64).map(|k| key_hash(&k)) {
            let was = owner(&ring, &all, k);
            let now = owner(&ring_rest, &rest, k);
            if was != gone {
                assert_eq!(was, now, "a key not owned by the leaver moved");
            }
        }
    }
}
