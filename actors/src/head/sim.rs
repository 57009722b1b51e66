//! A deterministic simulation of the control plane's fencing, in virtual
//! time, in the tradition of raft-rs's and quinn-proto's test harnesses:
//! the pure machines the real actors run (the leader's [`Leases`] and
//! [`reconcile::plan`], the hosts' [`Fencing`], the replicated
//! [`ControlState`]) driven over a simulated network with partitions,
//! heals, node crashes and restarts, head crashes and elections, message
//! loss, delay and reordering, and clock **rate** skew inside the bound
//! the leases assume ([`DRIFT`]).
//!
//! What the simulation adds around the machines, and how it models the
//! rest:
//!
//! - **Raft** is one linearizable log: a head commits (or confirms its
//!   leadership for a grant) only while it reaches a majority of the three
//!   heads; a new leader is elected among the heads that reach a majority
//!   once the old one has lacked one (or been down) for an election
//!   timeout, and it starts as the real one does ([`Leases::became_leader`],
//!   no deliveries known). A commit applies at once; its answer reaches the
//!   head that wrote it a moment later (renewals handled meanwhile see the
//!   write in flight, and a leadership that changed meanwhile delivers
//!   nothing), and a fifth of the writes share a log entry with the one
//!   before, as the write batcher makes them.
//! - **The lease keeper** is the real one's [`Keeper`]: it renews every
//!   lease/5 of its own clock (sooner after a failure), reporting what its
//!   host runs (the real [`Reporter`]'s deltas, rebuilt by the leader's
//!   real [`Reported`]) and the newest fence it saw, gives an answer up
//!   after twice that, and counts a grant's lease from when the renewal
//!   was sent, on the node's clock. Lossy links also duplicate renewals.
//! - **The leader's moves**: each tick, the placements of a node whose
//!   lease expired by [`Leases::expired`] go to the node with a lease that
//!   has the fewest placements (none: they wait for one). Crash evidence is
//!   a probe of a node that is really dead and reachable.
//! - **Clients** spawn names through the leader; a spawn is acknowledged
//!   once its placement committed.
//!
//! For each seed it checks after every event: no two incarnations of one
//! name are active (an incarnation is active while its host runs it and
//! holds a lease by its own clock); no (name, epoch) ever starts twice,
//! across every host's lives. After the faults stop it checks that every
//! acknowledged name converged to exactly one incarnation, the one the log
//! places, within [`SETTLE`]. A failing seed prints its trace and the
//! command that replays it (`SWARM_SIM_SEED`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use swarm_protocol::NodeId;

use super::leases::{Leases, DRIFT};
use super::reconcile::{self, Deliveries};
use super::reported::{Refusal, Reported};
use super::state::{ActorSpec, Applied, Command, ControlState, RecordState};
use crate::supervision::{Admission, Fencing, Keeper, Report, Reporter, Running, SpawnError};

/// The lease (the default).
const LEASE: Duration = Duration::from_secs(3);
/// How often the leader looks for placements to move.
const TICK: Duration = Duration::from_millis(50);
/// How long a head group lacks a leader before it elects one.
const ELECTION: Duration = Duration::from_secs(1);
/// Heads (Raft voters).
const HEADS: usize = 3;
/// Faults happen until then; then everything heals.
const FAULTS: Duration = Duration::from_secs(25);
/// The bound within which every name converges once the faults stopped:
/// an election, a whole lease × (1 + drift) of the new leader, two
/// renewals, slack.
const SETTLE: Duration = Duration::from_secs(8);
/// Trace lines kept for a failing seed.
const TRACE: usize = 600;

/// One run's settings.
#[derive(Debug, Clone)]
pub(crate) struct SimConfig {
    /// Every random choice follows from it.
    pub(crate) seed: u64,
    /// Worker nodes (hosts).
    pub(crate) nodes: usize,
    /// Names clients spawn.
    pub(crate) names: usize,
    /// Clock rates are drawn from `1 ± skew`.
    pub(crate) skew: f64,
}

impl SimConfig {
    /// The default run of `seed`: clock rates within the lease's bound.
    pub(crate) fn seeded(seed: u64) -> Self {
        Self {
            seed,
            nodes: 4,
            names: 8,
            // Rates within 1 ± 4%: two clocks differ by at most 8.3%, inside
            // the 10% the leader allows for.
            skew: DRIFT * 0.4,
        }
    }
}

/// A clock running at `rate` from `offset` (virtual time zero).
#[derive(Debug, Clone, Copy)]
struct Clock {
    rate: f64,
    offset: Duration,
}

/// Where a message goes, or comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Head(usize),
    Node(usize),
}

#[derive(Debug, Clone)]
enum Msg {
    Renew {
        node: usize,
        life: u64,
        req: u64,
        report: Report,
        seen: u64,
    },
    Grant {
        life: u64,
        req: u64,
        /// The report it answers, and whether it asks for the full list.
        seq: u64,
        resync: bool,
        lease: Duration,
        index: u64,
        start: Vec<(String, u64)>,
        stop: Vec<(String, u64)>,
    },
    /// A leader's push of a committed placement.
    Spawn {
        name: String,
        epoch: u64,
        fence: u64,
        /// The pushing head and its leadership, for the answer.
        head: usize,
        generation: u64,
    },
    /// The host answered a push without starting it (superseded by a
    /// grant, or no lease): the leader delivers it again in a grant.
    Refused {
        name: String,
        epoch: u64,
        generation: u64,
    },
}

#[derive(Debug, Clone)]
enum Event {
    Deliver {
        from: End,
        to: End,
        msg: Msg,
    },
    Renewal {
        node: usize,
        life: u64,
    },
    RenewTimeout {
        node: usize,
        life: u64,
        req: u64,
    },
    LeaseCheck {
        node: usize,
        life: u64,
    },
    Started {
        node: usize,
        life: u64,
        name: String,
        epoch: u64,
    },
    Committed {
        head: usize,
        node: usize,
        name: String,
        epoch: u64,
        index: u64,
        generation: u64,
    },
    Tick,
    Fault,
    ClientSpawn {
        name: String,
    },
}

struct Host {
    id: NodeId,
    alive: bool,
    life: u64,
    fencing: Fencing,
    keeper: Keeper,
    reporter: Reporter,
    /// The renewal waiting for its answer, and when it was sent (the
    /// node's clock).
    pending: Option<(u64, Instant)>,
    clock: Clock,
}

struct Leader {
    head: usize,
    leases: Leases,
    reported: Reported,
}

/// The simulated control plane.
pub(crate) struct Sim {
    config: SimConfig,
    rng: SmallRng,
    base: Instant,
    now: Duration,
    seq: u64,
    queue: BinaryHeap<Reverse<(Duration, u64)>>,
    events: BTreeMap<u64, Event>,
    state: ControlState,
    index: u64,
    heads_up: [bool; HEADS],
    head_clocks: [Clock; HEADS],
    leader: Option<Leader>,
    /// Each head's deliveries (cleared when a leadership begins or ends,
    /// as the supervisor does).
    deliveries: [Deliveries; HEADS],
    /// Since when the group has had no leader with a quorum.
    leaderless_since: Option<Duration>,
    hosts: Vec<Host>,
    /// Partition group of each end (heads first, then nodes).
    groups: Vec<u8>,
    loss: f64,
    /// Every (name, epoch) any host started, in any life.
    started: HashSet<(String, u64)>,
    acknowledged: BTreeSet<String>,
    trace: VecDeque<String>,
    /// Events handled.
    pub(crate) steps: u64,
}

impl Sim {
    pub(crate) fn new(config: SimConfig) -> Self {
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let clock = |rng: &mut SmallRng| Clock {
            rate: 1.0 + rng.random_range(-config.skew..=config.skew),
            offset: Duration::from_millis(rng.random_range(0..10_000)),
        };
        let head_clocks = [clock(&mut rng), clock(&mut rng), clock(&mut rng)];
        let hosts = (0..config.nodes)
            .map(|i| Host {
                id: NodeId::from_bytes([u8::try_from(i + 1).unwrap_or(u8::MAX); 16]),
                alive: true,
                life: 0,
                fencing: Fencing::default(),
                keeper: Keeper::default(),
                reporter: Reporter::new(rng.random()),
                pending: None,
                clock: clock(&mut rng),
            })
            .collect();
        let mut sim = Self {
            groups: vec![0; HEADS + config.nodes],
            config,
            rng,
            base: Instant::now(),
            now: Duration::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            state: ControlState::default(),
            index: 0,
            heads_up: [true; HEADS],
            head_clocks,
            leader: None,
            deliveries: Default::default(),
            leaderless_since: Some(Duration::ZERO),
            hosts,
            loss: 0.0,
            started: HashSet::new(),
            acknowledged: BTreeSet::new(),
            trace: VecDeque::new(),
            steps: 0,
        };
        for node in 0..sim.hosts.len() {
            let first = Duration::from_millis(sim.rng.random_range(0..600));
            sim.at(first, Event::Renewal { node, life: 0 });
        }
        sim.at(TICK, Event::Tick);
        sim.at(Duration::from_millis(500), Event::Fault);
        for n in 0..sim.config.names {
            let when = sim.rng.random_range(500..FAULTS.as_millis() as u64);
            let name = format!("a{n}");
            sim.at(Duration::from_millis(when), Event::ClientSpawn { name });
        }
        sim
    }

    fn at(&mut self, when: Duration, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((when, self.seq)));
        self.events.insert(self.seq, event);
    }

    fn after(&mut self, delay: Duration, event: Event) {
        self.at(self.now + delay, event);
    }

    fn log(&mut self, line: String) {
        if self.trace.len() == TRACE {
            self.trace.pop_front();
        }
        let ms = self.now.as_secs_f64() * 1e3;
        self.trace.push_back(format!("{ms:>10.1} ms  {line}"));
    }

    /// `clock`'s reading now.
    fn local(&self, clock: Clock) -> Instant {
        self.base + clock.offset + self.now.mul_f64(clock.rate)
    }

    /// When (virtual time) `clock` reads `instant`.
    fn when(&self, clock: Clock, instant: Instant) -> Duration {
        let local = instant.saturating_duration_since(self.base + clock.offset);
        local.div_f64(clock.rate)
    }

    fn end_index(&self, end: End) -> usize {
        match end {
            End::Head(h) => h,
            End::Node(n) => HEADS + n,
        }
    }

    fn reachable(&self, a: End, b: End) -> bool {
        self.groups[self.end_index(a)] == self.groups[self.end_index(b)]
    }

    fn send(&mut self, from: End, to: End, msg: Msg) {
        if !self.reachable(from, to) || (self.loss > 0.0 && self.rng.random_bool(self.loss)) {
            return;
        }
        // Delays from 0.2 to 20 ms: messages overtake each other.
        let delay = Duration::from_micros(self.rng.random_range(200..20_000));
        self.after(delay, Event::Deliver { from, to, msg });
    }

    /// Whether head `h` is up and reaches a majority of the heads.
    fn quorum(&self, h: usize) -> bool {
        self.heads_up[h]
            && (0..HEADS)
                .filter(|o| self.heads_up[*o] && self.reachable(End::Head(h), End::Head(*o)))
                .count()
                * 2
                > HEADS
    }

    fn leader_now(&self) -> Option<Instant> {
        let leader = self.leader.as_ref()?;
        Some(self.local(self.head_clocks[leader.head]))
    }

    /// Commits `command` through the leader, if it has a quorum.
    fn commit(&mut self, command: Command) -> Option<(u64, Applied)> {
        let leader = self.leader.as_ref()?;
        if !self.quorum(leader.head) {
            return None;
        }
        self.index += 1;
        Some((self.index, self.state.apply(command)))
    }

    fn node_of(&self, id: NodeId) -> Option<usize> {
        self.hosts.iter().position(|h| h.id == id)
    }

    /// Commits `name` on `node` (replacing `expect`); the write's answer
    /// comes back to the head a moment later (renewals handled meanwhile
    /// see the write in flight), which then delivers it, as the
    /// supervisor does. Sometimes a second write shares the log entry (the
    /// write batcher), so two pushes share a fence.
    fn place(&mut self, name: &str, node: usize, expect: Option<u64>) -> Option<u64> {
        let head = self.leader.as_ref()?.head;
        let generation = self.deliveries[head].writing(name);
        let command = Command::Place {
            name: name.to_owned(),
            spec: ActorSpec::for_tests("sim.Actor"),
            node: self.hosts[node].id,
            expect,
        };
        let batched = self.index > 0 && self.rng.random_bool(0.2);
        let applied = if batched && self.leader.as_ref().is_some_and(|l| self.quorum(l.head)) {
            Some((self.index, self.state.apply(command)))
        } else {
            self.commit(command)
        };
        let Some((index, Applied::Placed { epoch })) = applied else {
            self.deliveries[head].abandoned(name, generation);
            return None;
        };
        let answer = Duration::from_micros(self.rng.random_range(100..5_000));
        let committed = Event::Committed {
            head,
            node,
            name: name.to_owned(),
            epoch,
            index,
            generation,
        };
        self.after(answer, committed);
        Some(epoch)
    }

    /// The node with a lease (by the leader) and the fewest placements.
    fn target(&self, exclude: Option<usize>) -> Option<usize> {
        let leader = self.leader.as_ref()?;
        let now = self.local(self.head_clocks[leader.head]);
        (0..self.hosts.len())
            .filter(|n| Some(*n) != exclude && leader.leases.holds(self.hosts[*n].id, now))
            .min_by_key(|n| (self.state.placed_count(self.hosts[*n].id), *n))
    }

    fn handle(&mut self, event: Event) -> Result<(), String> {
        match event {
            Event::Deliver { from, to, msg } => {
                if self.reachable(from, to) {
                    self.deliver(to, msg);
                }
            }
            Event::Renewal { node, life } => self.renewal(node, life),
            Event::RenewTimeout { node, life, req } => {
                let host = &mut self.hosts[node];
                if host.alive && host.life == life && host.pending.is_some_and(|p| p.0 == req) {
                    host.pending = None;
                    host.keeper.failed();
                    host.reporter.failed();
                    let wait = self.local_wait(node, self.hosts[node].keeper.wait());
                    self.after(wait, Event::Renewal { node, life });
                }
            }
            Event::LeaseCheck { node, life } => {
                let host = &self.hosts[node];
                if host.alive && host.life == life {
                    let now = self.local(host.clock);
                    let mut stopped = self.hosts[node].fencing.expire(now);
                    stopped.sort();
                    if !stopped.is_empty() {
                        self.log(format!("n{node}: lease ran out, stops {stopped:?}"));
                    }
                }
            }
            Event::Started {
                node,
                life,
                name,
                epoch,
            } => {
                let host = &self.hosts[node];
                if host.alive && host.life == life {
                    let now = self.local(host.clock);
                    if !self.hosts[node].fencing.started(&name, epoch, now) {
                        self.log(format!("n{node}: {name}@{epoch} stopped as it started"));
                    }
                }
            }
            Event::Committed {
                head,
                node,
                name,
                epoch,
                index,
                generation,
            } => {
                let deliveries = &mut self.deliveries[head];
                deliveries.committed(&name, epoch, generation);
                if deliveries.deliver(&name, epoch, index, generation) {
                    let msg = Msg::Spawn {
                        name,
                        epoch,
                        fence: index,
                        head,
                        generation,
                    };
                    self.send(End::Head(head), End::Node(node), msg);
                }
            }
            Event::Tick => {
                self.tick();
                self.after(TICK, Event::Tick);
            }
            Event::Fault => self.fault(),
            Event::ClientSpawn { name } => {
                if let Some(node) = self.target(None) {
                    if let Some(epoch) = self.place(&name, node, None) {
                        self.log(format!("spawn {name}@{epoch} on n{node}: acknowledged"));
                        self.acknowledged.insert(name);
                    }
                }
            }
        }
        self.check()
    }

    /// The node's wait of `local` (its own clock) in virtual time.
    fn local_wait(&self, node: usize, local: Duration) -> Duration {
        local.div_f64(self.hosts[node].clock.rate)
    }

    /// The lease keeper's next step, as `control::lease` takes it.
    fn renewal(&mut self, node: usize, life: u64) {
        let host = &self.hosts[node];
        if !host.alive || host.life != life {
            return;
        }
        // Heads are always known members here (membership is not
        // simulated), so the keeper never idles for want of one; a renewal
        // that finds no leader goes unanswered and is retried.
        let leader = self.leader.as_ref().map(|l| l.head);
        self.hosts[node].keeper.renewing();
        let host = &self.hosts[node];
        let sent = self.local(host.clock);
        let running: Vec<Running> = host
            .fencing
            .placed()
            .map(|(name, epoch)| Running {
                name: name.to_owned(),
                epoch,
                failed: false,
            })
            .collect();
        let seen = host.fencing.seen_index();
        let report = self.hosts[node].reporter.report(&running, &[]);
        self.seq += 1;
        let req = self.seq;
        self.hosts[node].pending = Some((req, sent));
        if let Some(head) = leader {
            let msg = Msg::Renew {
                node,
                life,
                req,
                report,
                seen,
            };
            // A lossy link's retry: the same renewal twice.
            if self.loss > 0.0 && self.rng.random_bool(self.loss) {
                self.send(End::Node(node), End::Head(head), msg.clone());
            }
            self.send(End::Node(node), End::Head(head), msg);
        }
        let within = self.local_wait(node, self.hosts[node].keeper.answer_within());
        self.after(within, Event::RenewTimeout { node, life, req });
    }

    fn deliver(&mut self, to: End, msg: Msg) {
        match (to, msg) {
            (
                End::Head(h),
                Msg::Renew {
                    node,
                    life,
                    req,
                    report,
                    seen,
                },
            ) => {
                if self.leader.as_ref().is_none_or(|l| l.head != h) || !self.quorum(h) {
                    return;
                }
                self.grant(node, life, req, &report, seen);
            }
            (
                End::Head(h),
                Msg::Refused {
                    name,
                    epoch,
                    generation,
                },
            ) => self.deliveries[h].refused(&name, epoch, generation),
            (End::Node(n), msg) => {
                if !self.hosts[n].alive {
                    return;
                }
                let life = self.hosts[n].life;
                let now = self.local(self.hosts[n].clock);
                match msg {
                    Msg::Grant {
                        life: for_life,
                        req,
                        seq,
                        resync,
                        lease,
                        index,
                        start,
                        stop,
                    } if for_life == life => {
                        // An answer after the keeper gave up is dropped.
                        let Some((_, sent)) = self.hosts[n].pending.filter(|p| p.0 == req) else {
                            return;
                        };
                        self.hosts[n].pending = None;
                        let until = self.hosts[n].keeper.granted(sent, lease);
                        self.hosts[n].reporter.granted(seq, resync);
                        if resync {
                            self.hosts[n].keeper.resync();
                        }
                        let wait = self.local_wait(n, self.hosts[n].keeper.wait());
                        self.after(wait, Event::Renewal { node: n, life });
                        self.hosts[n].fencing.grant(until, index);
                        for (name, epoch) in stop {
                            self.hosts[n].fencing.stop(&name, epoch);
                        }
                        for (name, epoch) in start {
                            // A grant's refusal needs no answer: the next
                            // renewal reports what runs.
                            let _ = self.admit(n, &name, epoch, index, true, now);
                        }
                        let check =
                            self.when(self.hosts[n].clock, until) + Duration::from_micros(1);
                        self.at(check.max(self.now), Event::LeaseCheck { node: n, life });
                    }
                    Msg::Spawn {
                        name,
                        epoch,
                        fence,
                        head,
                        generation,
                    } => {
                        let admitted = self.admit(n, &name, epoch, fence, false, now);
                        if matches!(admitted, Err(SpawnError::Stale | SpawnError::NoLease)) {
                            let answer = Msg::Refused {
                                name,
                                epoch,
                                generation,
                            };
                            self.send(End::Node(n), End::Head(head), answer);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn admit(
        &mut self,
        n: usize,
        name: &str,
        epoch: u64,
        fence: u64,
        grant: bool,
        now: Instant,
    ) -> Result<Admission, SpawnError> {
        let admitted = self.hosts[n].fencing.admit(name, epoch, fence, grant, now);
        if let Ok(Admission::Start { .. }) = admitted {
            self.log(format!("n{n}: starts {name}@{epoch}"));
            if !self.started.insert((name.to_owned(), epoch)) {
                self.log(format!("VIOLATION: {name}@{epoch} started twice"));
            }
            let life = self.hosts[n].life;
            let delay = Duration::from_micros(self.rng.random_range(100..5_000));
            let started = Event::Started {
                node: n,
                life,
                name: name.to_owned(),
                epoch,
            };
            self.after(delay, started);
        }
        admitted
    }
}

mod faults;
mod invariants;
mod leader;
#[cfg(test)]
mod tests;
