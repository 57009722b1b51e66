//! A simulated network for many real [`Membership`] instances in one
//! process, with virtual time: datagrams are delivered after a random
//! delay, dropped with a per-run loss rate, and cut by partitions,
//! isolation and per-link cuts, all recoverable (modelled on raft-rs's
//! harness `Network`). Nothing here sleeps; a 10,000-node run advances
//! virtual time as fast as the CPU allows.
//!
//! Node `i` lives at `10.a.b.c:7000` (`i` = a·65536 + b·256 + c), so
//! addresses map to indices without a table.

// A harness: an index out of range is the calling test's bug and panics
// with the index in the message.
#![allow(clippy::indexing_slicing)]

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use super::{MemberEvent, MemberState, Membership, MembershipConfig, Tick};
use crate::gossip::{GossipKey, KeyRing, MemberId, NodeMeta, SEAL_OVERHEAD};
use crate::identity::NodeId;

/// The simulated wall clock at virtual time zero, Unix ms (2026-01-01).
const SIM_EPOCH_MS: u64 = 1_767_225_600_000;

/// How the simulated network behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Membership settings of every node.
    pub membership: MembershipConfig,
    /// Seed of every random choice (the network's and each node's).
    pub seed: u64,
    /// Smallest one-way delay.
    pub min_delay: Duration,
    /// Largest one-way delay.
    pub max_delay: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Seal and open every datagram with a real key ring (slower; the
    /// byte counts include the seal overhead either way).
    pub seal: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            membership: MembershipConfig::default(),
            seed: 1,
            min_delay: Duration::from_micros(200),
            max_delay: Duration::from_millis(2),
            loss: 0.0,
            seal: false,
        }
    }
}

/// The address of simulated node `index`.
pub fn addr_of(index: usize) -> SocketAddr {
    let ip = Ipv4Addr::new(10, (index >> 16) as u8, (index >> 8) as u8, index as u8);
    SocketAddr::new(IpAddr::V4(ip), 7000)
}

/// The index of the simulated node at `addr`.
pub fn index_of(addr: &SocketAddr) -> Option<usize> {
    match addr.ip() {
        IpAddr::V4(ip) => {
            let [_, a, b, c] = ip.octets();
            Some((usize::from(a) << 16) | (usize::from(b) << 8) | usize::from(c))
        }
        IpAddr::V6(_) => None,
    }
}

fn node_id(index: usize) -> NodeId {
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&(index as u32 + 1).to_be_bytes());
    bytes[4..8].copy_from_slice(b"simu");
    NodeId::from_bytes(bytes)
}

/// Something the simulator recorded about a watched member.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Virtual time.
    pub at: Duration,
    /// Which node observed it.
    pub observer: usize,
    /// What it observed.
    pub event: MemberEvent,
}

struct Node {
    membership: Membership,
    running: bool,
    /// Ticks armed before a kill or restart carry an older generation.
    generation: u32,
    bump: u64,
}

enum Action {
    Deliver {
        to: usize,
        from: SocketAddr,
        datagram: Vec<u8>,
    },
    Tick {
        node: usize,
        generation: u32,
        tick: Tick,
    },
}

struct Scheduled {
    at: Duration,
    seq: u64,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Counters of the simulated network.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetStats {
    /// Datagrams sent.
    pub sent: u64,
    /// Bytes sent (sealed size).
    pub sent_bytes: u64,
    /// Datagrams lost to the loss rate.
    pub lost: u64,
    /// Datagrams dropped by a cut, partition, isolation or dead receiver.
    pub cut: u64,
    /// Datagrams delivered.
    pub delivered: u64,
    /// Down events about nodes that were running and reachable.
    pub false_down: u64,
    /// Timers the nodes cancelled (indirect probes settled by a direct ack);
    /// the simulator delivers them anyway, as a late timer would be.
    pub cancelled_ticks: u64,
    /// Bytes of datagrams sent and not yet delivered or dropped.
    pub in_flight_bytes: u64,
    /// The most bytes in flight at once (the simulator holds them).
    pub peak_in_flight_bytes: u64,
}

/// Many memberships over one simulated network.
pub struct Sim {
    config: SimConfig,
    now: Duration,
    nodes: Vec<Node>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    rng: SmallRng,
    /// The cluster's gossip key (when sealing).
    key: GossipKey,
    /// Nonces handed to sealing nodes: unique, so replay checks pass.
    nonces: u64,
    /// Partition group per node: nodes in different groups cannot talk.
    group: Vec<u32>,
    isolated: HashSet<usize>,
    cuts: HashSet<(usize, usize)>,
    watched: HashSet<SocketAddr>,
    /// Recorded events about watched members.
    pub observations: Vec<Observation>,
    /// Network counters.
    pub stats: NetStats,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl Sim {
    /// `nodes` nodes, not started.
    pub fn new(nodes: usize, config: SimConfig) -> Self {
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let key = GossipKey::from_bytes(rng.random());
        let mut sim = Self {
            now: Duration::ZERO,
            nodes: Vec::with_capacity(nodes),
            queue: BinaryHeap::new(),
            seq: 0,
            rng,
            key,
            nonces: 0,
            group: vec![0; nodes],
            isolated: HashSet::new(),
            cuts: HashSet::new(),
            watched: HashSet::new(),
            observations: Vec::new(),
            stats: NetStats::default(),
            config,
        };
        for index in 0..nodes {
            let membership = sim.fresh(index, 1);
            sim.nodes.push(Node {
                membership,
                running: false,
                generation: 0,
                bump: 1,
            });
        }
        sim
    }

    fn fresh(&mut self, index: usize, bump: u64) -> Membership {
        let me = MemberId {
            addr: addr_of(index),
            node: node_id(index),
            bump,
        };
        let meta = NodeMeta {
            name: format!("sim-{index}"),
            ..NodeMeta::default()
        };
        let seed = self.rng.random();
        let config = self.config.membership.clone();
        let made = if self.config.seal {
            Membership::new(config, me, meta, seed, KeyRing::new(self.key.clone()))
        } else {
            Membership::new_unsealed(config, me, meta, seed)
        };
        match made {
            Ok(membership) => membership,
            Err(err) => unreachable!("simulated metadata is small: {err}"),
        }
    }

    /// The simulated wall clock (every node's clock agrees), Unix ms.
    fn unix_ms(&self) -> u64 {
        SIM_EPOCH_MS + u64::try_from(self.now.as_millis()).unwrap_or(u64::MAX)
    }

    /// Virtual time now.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// How many nodes (running or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `index`'s membership.
    pub fn node(&self, index: usize) -> &Membership {
        &self.nodes[index].membership
    }

    /// Node `index`'s membership, to call into it directly; call
    /// [`Sim::flush_node`] afterwards.
    pub fn node_mut(&mut self, index: usize) -> &mut Membership {
        &mut self.nodes[index].membership
    }

    /// Moves what node `index` queued into the simulation.
    pub fn flush_node(&mut self, index: usize) {
        self.flush(index);
    }

    /// Whether node `index` runs.
    pub fn is_running(&self, index: usize) -> bool {
        self.nodes[index].running
    }

    /// Records every event about `index` from now on.
    pub fn watch(&mut self, index: usize) {
        self.watched.insert(addr_of(index));
    }

    /// Starts node `index` and has it join through `seeds`.
    pub fn start(&mut self, index: usize, seeds: &[usize]) {
        let node = &mut self.nodes[index];
        node.running = true;
        node.generation += 1;
        let seeds: Vec<SocketAddr> = seeds.iter().map(|&s| addr_of(s)).collect();
        let now = self.now;
        self.nodes[index].membership.join(&seeds, now);
        self.flush(index);
    }

    /// Starts nodes `range`, each joining through `seed`, one every `every`
    /// of virtual time.
    pub fn start_all(&mut self, range: std::ops::Range<usize>, seed: usize, every: Duration) {
        for index in range {
            if index != seed {
                self.start(index, &[seed]);
            } else {
                self.start(index, &[]);
            }
            if !every.is_zero() {
                let until = self.now + every;
                self.run_for_until(until);
            }
        }
    }

    /// Kills node `index` (as SIGKILL: it sends nothing more).
    pub fn kill(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        node.running = false;
        node.generation += 1;
    }

    /// Node `index` starts to leave cleanly; it stops once it has left
    /// (`leave_delay` later).
    pub fn leave(&mut self, index: usize) {
        let now = self.now;
        self.nodes[index].membership.leave(now);
        self.flush(index);
    }

    /// Restarts a killed node with the same node id and address and a new
    /// incarnation (a larger bump), joining through `seeds`.
    pub fn restart(&mut self, index: usize, seeds: &[usize]) {
        let bump = self.nodes[index].bump + 1;
        let membership = self.fresh(index, bump);
        let node = &mut self.nodes[index];
        node.membership = membership;
        node.bump = bump;
        self.start(index, seeds);
    }

    /// Splits the nodes into groups that cannot reach each other.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        for (number, members) in groups.iter().enumerate() {
            for &index in *members {
                self.group[index] = number as u32 + 1;
            }
        }
    }

    /// Cuts node `index` off from everyone.
    pub fn isolate(&mut self, index: usize) {
        self.isolated.insert(index);
    }

    /// Cuts the link between `a` and `b` (both directions).
    pub fn cut(&mut self, a: usize, b: usize) {
        self.cuts.insert((a.min(b), a.max(b)));
    }

    /// Heals every partition, isolation and cut.
    pub fn recover(&mut self) {
        self.group.iter_mut().for_each(|g| *g = 0);
        self.isolated.clear();
        self.cuts.clear();
    }

    /// Whether `a` and `b` can reach each other now.
    pub fn reachable(&self, a: usize, b: usize) -> bool {
        self.group[a] == self.group[b]
            && !self.isolated.contains(&a)
            && !self.isolated.contains(&b)
            && !self.cuts.contains(&(a.min(b), a.max(b)))
    }

    /// Sets the loss rate from now on.
    pub fn set_loss(&mut self, loss: f64) {
        self.config.loss = loss;
    }

    fn schedule(&mut self, at: Duration, action: Action) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            action,
        }));
    }

    /// Moves what node `index` wants sent, armed and reported into the
    /// simulation.
    fn flush(&mut self, index: usize) {
        let from = addr_of(index);
        let unix_ms = self.unix_ms();
        while self.nodes[index].membership.wants_transmit() {
            self.nonces += 1;
            let mut nonce = [0u8; 12];
            nonce[..8].copy_from_slice(&self.nonces.to_be_bytes());
            let Some((to, datagram)) = self.nodes[index].membership.poll_transmit(nonce, unix_ms)
            else {
                break;
            };
            let overhead = if self.config.seal { 0 } else { SEAL_OVERHEAD };
            self.stats.sent += 1;
            self.stats.sent_bytes += (datagram.len() + overhead) as u64;
            let Some(to) = index_of(&to).filter(|&to| to < self.nodes.len()) else {
                self.stats.cut += 1;
                continue;
            };
            if self.config.loss > 0.0 && self.rng.random_bool(self.config.loss) {
                self.stats.lost += 1;
                continue;
            }
            let delay = self
                .rng
                .random_range(self.config.min_delay..=self.config.max_delay);
            let at = self.now + delay;
            self.stats.in_flight_bytes += datagram.capacity() as u64;
            self.stats.peak_in_flight_bytes = self
                .stats
                .peak_in_flight_bytes
                .max(self.stats.in_flight_bytes);
            self.schedule(at, Action::Deliver { to, from, datagram });
        }
        let generation = self.nodes[index].generation;
        while let Some((after, tick)) = self.nodes[index].membership.poll_timer() {
            let at = self.now + after;
            self.schedule(
                at,
                Action::Tick {
                    node: index,
                    generation,
                    tick,
                },
            );
        }
        while self.nodes[index].membership.poll_cancel().is_some() {
            self.stats.cancelled_ticks += 1;
        }
        while let Some(event) = self.nodes[index].membership.poll_event() {
            self.record(index, event);
        }
    }

    fn record(&mut self, observer: usize, event: MemberEvent) {
        let subject = match &event {
            MemberEvent::Up(id)
            | MemberEvent::Suspect(id)
            | MemberEvent::Down(id)
            | MemberEvent::Left(id)
            | MemberEvent::MetadataChanged(id, _)
            | MemberEvent::Rejoined(id) => *id,
        };
        if let MemberEvent::Down(id) = &event {
            if let Some(target) = index_of(&id.addr).filter(|&t| t < self.nodes.len()) {
                let node = &self.nodes[target];
                if node.running && node.bump == id.bump && self.reachable(observer, target) {
                    self.stats.false_down += 1;
                }
            }
        }
        if self.watched.contains(&subject.addr) {
            self.observations.push(Observation {
                at: self.now,
                observer,
                event,
            });
        }
    }

    /// Runs one scheduled action; false when nothing is scheduled.
    fn step(&mut self) -> bool {
        let Some(Reverse(next)) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(next.at);
        match next.action {
            Action::Deliver { to, from, datagram } => {
                self.stats.in_flight_bytes -= datagram.capacity() as u64;
                let from_index = index_of(&from).unwrap_or(usize::MAX);
                if !self.nodes[to].running || !self.reachable(from_index, to) {
                    self.stats.cut += 1;
                    return true;
                }
                self.stats.delivered += 1;
                let (now, unix_ms) = (self.now, self.unix_ms());
                let mut datagram = datagram;
                let _ =
                    self.nodes[to]
                        .membership
                        .handle_datagram(from, &mut datagram, now, unix_ms);
                self.flush(to);
            }
            Action::Tick {
                node,
                generation,
                tick,
            } => {
                let current = &self.nodes[node];
                if !current.running || current.generation != generation {
                    return true;
                }
                let now = self.now;
                self.nodes[node].membership.handle_tick(tick, now);
                self.flush(node);
                if self.nodes[node].membership.has_left() {
                    self.kill(node);
                }
            }
        }
        true
    }

    /// Runs every action scheduled up to `until`, then sets the clock there.
    pub fn run_for_until(&mut self, until: Duration) {
        while self
            .queue
            .peek()
            .is_some_and(|Reverse(next)| next.at <= until)
        {
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Runs for `span` of virtual time.
    pub fn run_for(&mut self, span: Duration) {
        let until = self.now + span;
        self.run_for_until(until);
    }

    /// Runs until `done` holds (checked every `check_every`) or `limit` of
    /// virtual time passes. Returns the virtual time it took, or `None`.
    pub fn run_until(
        &mut self,
        limit: Duration,
        check_every: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        let end = start + limit;
        loop {
            if done(self) {
                return Some(self.now - start);
            }
            if self.now >= end {
                return None;
            }
            let until = (self.now + check_every).min(end);
            self.run_for_until(until);
        }
    }

    /// Whether every running node counts every other running node as a
    /// live member (and nothing more).
    pub fn converged(&self) -> bool {
        let running = self.nodes.iter().filter(|n| n.running).count();
        self.nodes
            .iter()
            .filter(|n| n.running)
            .all(|n| n.membership.active_count() + 1 == running)
    }

    /// Whether every running node reachable from `index` lists it in `state`.
    pub fn all_see(&self, index: usize, state: MemberState) -> bool {
        let addr = addr_of(index);
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| *i != index && n.running)
            .all(|(_, n)| n.membership.member(&addr).is_some_and(|m| m.state == state))
    }

    /// How many running nodes list `index` in `state`.
    pub fn count_seeing(&self, index: usize, state: MemberState) -> usize {
        let addr = addr_of(index);
        self.nodes
            .iter()
            .filter(|n| n.running)
            .filter(|n| n.membership.member(&addr).is_some_and(|m| m.state == state))
            .count()
    }
}

/// What [`bench()`] measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BenchReport {
    /// Simulated nodes.
    pub nodes: usize,
    /// Loss rate.
    pub loss: f64,
    /// Virtual seconds from the last join until every node sees every other.
    pub converge_s: Option<f64>,
    /// Nodes killed.
    pub killed: usize,
    /// Virtual seconds from the kill until every survivor marks a killed
    /// node down: median over the killed nodes.
    pub detect_s_p50: Option<f64>,
    /// The same, slowest killed node.
    pub detect_s_max: Option<f64>,
    /// The documented bound for this cluster size.
    pub bound_s: f64,
    /// Down events about nodes that were alive and reachable.
    pub false_down: u64,
    /// Gossip bytes (sealed size) sent per node per virtual second, over the
    /// whole run.
    pub gossip_bytes_per_node_per_s: f64,
    /// Virtual seconds simulated (the caller times the wall clock).
    pub virtual_s: f64,
    /// The most datagram bytes (allocated) the simulator held in flight at
    /// once, MiB: the bursts of member lists sent together.
    pub peak_in_flight_mib: f64,
}

/// The membership benchmark: `nodes` nodes join through one seed at once,
/// converge, then `kill_ratio` of them are killed and detection is timed,
/// all under `loss`.
pub fn bench(nodes: usize, loss: f64, kill_ratio: f64, mut config: SimConfig) -> BenchReport {
    config.loss = loss;
    let bound = config.membership.detection_bound(nodes);
    let mut sim = Sim::new(nodes, config);
    sim.start_all(0..nodes, 0, Duration::ZERO);
    let step = Duration::from_millis(100);
    let converge = sim.run_until(Duration::from_secs(600), step, Sim::converged);
    let mut report = BenchReport {
        nodes,
        loss,
        converge_s: converge.map(|d| d.as_secs_f64()),
        bound_s: bound.as_secs_f64(),
        ..BenchReport::default()
    };
    let killed =
        ((nodes as f64 * kill_ratio).round() as usize).clamp(1, nodes.saturating_sub(2).max(1));
    report.killed = killed;
    if converge.is_some() {
        // Kill nodes spread over the index range, never the seed.
        let victims: Vec<usize> = (0..killed).map(|k| 1 + k * (nodes - 1) / killed).collect();
        let killed_at = sim.now();
        for &victim in &victims {
            sim.kill(victim);
        }
        let mut detected: Vec<Option<Duration>> = vec![None; victims.len()];
        let limit = bound * 3;
        let _ = sim.run_until(limit, step, |s| {
            for (slot, &victim) in detected.iter_mut().zip(&victims) {
                if slot.is_none() && s.all_see(victim, MemberState::Down) {
                    *slot = Some(s.now() - killed_at);
                }
            }
            detected.iter().all(Option::is_some)
        });
        let mut times: Vec<f64> = detected
            .iter()
            .flatten()
            .map(Duration::as_secs_f64)
            .collect();
        times.sort_by(f64::total_cmp);
        if times.len() == victims.len() {
            report.detect_s_p50 = times.get(times.len() / 2).copied();
            report.detect_s_max = times.last().copied();
        }
    }
    report.false_down = sim.stats.false_down;
    report.virtual_s = sim.now().as_secs_f64();
    report.peak_in_flight_mib = sim.stats.peak_in_flight_bytes as f64 / f64::from(1 << 20);
    report.gossip_bytes_per_node_per_s =
        sim.stats.sent_bytes as f64 / nodes as f64 / report.virtual_s.max(1e-9);
    report
}
