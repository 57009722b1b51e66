//! Membership on an overloaded box, simulated: every node is starved in
//! turns (as processes are when hundreds share two cores), so it reads
//! its datagrams and timers late, in arrival order, when it runs again.
//! A node that finds itself late stretches its own probe and suspicion
//! timers (Lifeguard's local health), so starvation alone declares no one
//! down and nobody rejoins under a renewed identity.
//!
//! The harness drives real `Membership`s through their public sans-IO
//! API on virtual time, like `membership::sim`, with one addition: stall
//! windows per node, during which everything addressed to it waits.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use swarm_protocol::gossip::{MemberId, NodeMeta};
use swarm_protocol::membership::sim::{addr_of, index_of};
use swarm_protocol::membership::{MemberEvent, Membership, MembershipConfig, Tick};
use swarm_protocol::NodeId;

/// The simulated wall clock at virtual time zero, Unix ms.
const EPOCH_MS: u64 = 1_767_225_600_000;

enum Item {
    Deliver(usize, SocketAddr, Vec<u8>),
    Tick(usize, Tick),
}

/// Nodes whose processing stalls in windows.
struct Overloaded {
    nodes: Vec<Membership>,
    /// Per node, its stall windows `[from, to)`, in order.
    stalls: Vec<Vec<(Duration, Duration)>>,
    queue: BinaryHeap<Reverse<(Duration, u64, usize)>>,
    items: Vec<Option<Item>>,
    seq: u64,
    rng: SmallRng,
    now: Duration,
    /// Down events (nothing crashes here: every one is false).
    false_down: u64,
    /// Down events about each node, by index.
    downs_of: Vec<u64>,
    rejoins: u64,
}

impl Overloaded {
    /// `n` nodes; each is starved for `stalled` of the time, in stalls of
    /// up to `longest`, spread over `span`.
    fn starved(
        n: usize,
        config: &MembershipConfig,
        stalled: f64,
        longest: Duration,
        span: Duration,
    ) -> Self {
        let mut sim = Self::new(n, config);
        for windows in &mut sim.stalls {
            let mut at = Duration::from_millis(sim.rng.random_range(0..2_000));
            while at < span {
                let stall = longest.mul_f64(sim.rng.random_range(0.2..1.0));
                windows.push((at, at + stall));
                let run = stall.mul_f64((1.0 - stalled) / stalled * sim.rng.random_range(0.5..1.5));
                at += stall + run;
            }
        }
        sim
    }

    /// `n` nodes that are never starved (until stalls are added).
    fn new(n: usize, config: &MembershipConfig) -> Self {
        let mut rng = SmallRng::seed_from_u64(23);
        let mut nodes = Vec::new();
        for i in 0..n {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            let me = MemberId {
                addr: addr_of(i),
                node: NodeId::from_bytes(bytes),
                bump: 1,
            };
            let meta = NodeMeta {
                name: format!("n{i}"),
                ..NodeMeta::default()
            };
            nodes.push(Membership::new_unsealed(config.clone(), me, meta, rng.random()).unwrap());
        }
        Self {
            nodes,
            stalls: vec![Vec::new(); n],
            queue: BinaryHeap::new(),
            items: Vec::new(),
            seq: 0,
            rng,
            now: Duration::ZERO,
            false_down: 0,
            downs_of: vec![0; n],
            rejoins: 0,
        }
    }

    fn schedule(&mut self, at: Duration, item: Item) {
        self.seq += 1;
        self.items.push(Some(item));
        self.queue
            .push(Reverse((at, self.seq, self.items.len() - 1)));
    }

    /// When node `i`, if stalled at `at`, runs again.
    fn resumes(&self, i: usize, at: Duration) -> Option<Duration> {
        self.stalls[i]
            .iter()
            .find(|(from, to)| *from <= at && at < *to)
            .map(|(_, to)| *to)
    }

    fn flush(&mut self, i: usize) {
        let unix_ms = EPOCH_MS + self.now.as_millis() as u64;
        while let Some((to, datagram)) = self.nodes[i].poll_transmit([0; 12], unix_ms) {
            let Some(to) = index_of(&to).filter(|&t| t < self.nodes.len()) else {
                continue;
            };
            let delay = Duration::from_micros(self.rng.random_range(200..2_000));
            self.schedule(self.now + delay, Item::Deliver(to, addr_of(i), datagram));
        }
        while let Some((after, tick)) = self.nodes[i].poll_timer() {
            self.schedule(self.now + after, Item::Tick(i, tick));
        }
        while self.nodes[i].poll_cancel().is_some() {}
        while let Some(event) = self.nodes[i].poll_event() {
            match event {
                MemberEvent::Down(id) => {
                    self.false_down += 1;
                    if let Some(slot) = index_of(&id.addr).and_then(|t| self.downs_of.get_mut(t)) {
                        *slot += 1;
                    }
                }
                MemberEvent::Rejoined(_) => self.rejoins += 1,
                _ => {}
            }
        }
    }

    fn run_until(&mut self, until: Duration) {
        while let Some(&Reverse((at, seq, slot))) = self.queue.peek() {
            if at > until {
                break;
            }
            self.queue.pop();
            let node = match &self.items[slot] {
                Some(Item::Deliver(to, ..)) => *to,
                Some(Item::Tick(node, _)) => *node,
                None => continue,
            };
            if let Some(resume) = self.resumes(node, at) {
                // Starved: it waits, behind what arrived before it.
                self.queue.push(Reverse((resume, seq, slot)));
                continue;
            }
            self.now = self.now.max(at);
            let unix_ms = EPOCH_MS + self.now.as_millis() as u64;
            match self.items[slot].take() {
                Some(Item::Deliver(to, from, mut datagram)) => {
                    let _ = self.nodes[to].handle_datagram(from, &mut datagram, self.now, unix_ms);
                    self.flush(to);
                }
                Some(Item::Tick(node, tick)) => {
                    self.nodes[node].handle_tick(tick, self.now);
                    self.flush(node);
                }
                None => {}
            }
        }
        self.now = self.now.max(until);
    }

    /// Every node joins through node 0, at time zero.
    fn join_all(&mut self) {
        for i in 0..self.nodes.len() {
            let seeds: Vec<SocketAddr> = if i == 0 { vec![] } else { vec![addr_of(0)] };
            self.nodes[i].join(&seeds, self.now);
            self.flush(i);
        }
    }

    fn converged(&self) -> bool {
        let n = self.nodes.len();
        self.nodes.iter().all(|m| m.active_count() + 1 == n)
    }
}

/// Runs `n` nodes joining through node 0, then starved in turns for
/// `span`; answers (false downs, rejoins, whether they converged at the end).
fn overloaded_run(n: usize, config: MembershipConfig) -> (u64, u64, bool) {
    let span = Duration::from_secs(180);
    let mut sim = Overloaded::starved(n, &config, 0.5, Duration::from_secs(6), span);
    sim.join_all();
    sim.run_until(span);
    // The box quiets down: every node catches up and keeps running.
    let quiet = span + Duration::from_secs(60);
    sim.stalls.iter_mut().for_each(Vec::clear);
    sim.run_until(quiet);
    (sim.false_down, sim.rejoins, sim.converged())
}

/// Issue 23: an overloaded box must not make membership amplify its own
/// load. Nodes starved half of the time, in stalls of up to 6 s (the
/// suspicion timeout at this size is 6.4 s): with local health, no false
/// down and no rejoin; without it (the control), false downs happen, so
/// the scenario is one that bites.
#[test]
fn starved_nodes_declare_no_one_down_with_local_health() {
    let n = 40;
    let (false_down, rejoins, converged) = overloaded_run(n, MembershipConfig::default());
    let control = MembershipConfig {
        max_health_multiplier: 1,
        ..MembershipConfig::default()
    };
    let (control_down, control_rejoins, _) = overloaded_run(n, control);
    eprintln!(
        "with local health: {false_down} false downs, {rejoins} rejoins; \
         without: {control_down} false downs, {control_rejoins} rejoins"
    );
    assert!(control_down > 0, "the control run declared no one down");
    assert_eq!((false_down, rejoins), (0, 0));
    assert!(converged, "not converged once the box quieted down");
}

/// A member starved for longer than the suspicion timeout is declared
/// down, finds out when it runs again and rejoins under a renewed
/// identity once: the others see it go and come back, and nobody else is
/// declared down or rejoins (no storm).
#[test]
fn a_member_starved_past_its_suspicion_rejoins_once_and_takes_no_one_with_it() {
    let n = 30;
    let config = MembershipConfig::default();
    let mut sim = Overloaded::new(n, &config);
    sim.join_all();
    sim.run_until(Duration::from_secs(30));
    assert!(sim.converged());
    let stall = config.detection_bound(n) + Duration::from_secs(5);
    let from = Duration::from_secs(31);
    sim.stalls[7].push((from, from + stall));
    sim.run_until(from + stall + Duration::from_secs(60));
    let others: u64 = (0..n).filter(|&i| i != 7).map(|i| sim.downs_of[i]).sum();
    assert_eq!(sim.rejoins, 1);
    assert_eq!(
        sim.downs_of[7],
        n as u64 - 1,
        "each other member saw it go once"
    );
    assert_eq!(others, 0);
    assert!(sim.converged(), "the renewed member is not back everywhere");
}
