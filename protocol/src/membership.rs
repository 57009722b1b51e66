//! SWIM membership as a sans-IO state machine: foca for failure detection
//! and dissemination, plus what Swarm adds around it: suspicion and leave
//! events (foca reports only up and down), node metadata as custom
//! broadcasts with a pull for members whose metadata is missing, a
//! push/pull of the whole member list on join, and timeouts that grow with
//! the cluster.
//!
//! Plaintext datagrams start with a kind byte: 0 a foca message, 1 a
//! metadata request, 2 a metadata item, 3 a member-list request, 4 part of
//! a member list (`count u16 | members`, in foca's member encoding).
//!
//! The caller owns the clock, the sockets and the timers:
//!
//! - [`Membership::handle_datagram`] with each opened datagram,
//! - [`Membership::handle_tick`] when a timer from [`Membership::poll_timer`] fires,
//! - [`Membership::poll_transmit`] for plaintext datagrams to seal and send,
//! - [`Membership::poll_event`] for [`MemberEvent`]s.
//!
//! The real node drives it from a UDP socket (swarm-actors); the
//! [`sim`] harness drives thousands of them over a simulated network with
//! virtual time.
//!
//! # Failure-detection bound
//!
//! With probe period `P`, suspicion timeout `S` and a cluster of `N`
//! members, a crashed member is first probed by some member within a few
//! periods (each period every member probes one other, so a given member
//! escapes all probes of a period with probability about 1/e), declared
//! suspect one period later, declared down `S` later, and the down update
//! reaches every member within a few gossip rounds. The bound is
//! `S + (4 + log10 N) × P` ([`MembershipConfig::detection_bound`]); with
//! the defaults (`P` = 1 s, `S` = 4 × max(1, log10 N) × `P`, gossip every
//! 200 ms) that is 10.5 s for 20 members, 19 s for 1,000, 24 s for 10,000.
//! The `sim` tests check this bound; DESIGN.md's promise "a node killed with
//! SIGKILL is detected by every other node within the SWIM bound" names it.

mod table;

pub mod sim;

#[cfg(test)]
mod tests;

use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use foca::{BroadcastHandler, Foca, Invalidates, Member, Notification, Runtime, State, Timer};
use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::gossip::codec::Observed;
use crate::gossip::{GossipCodec, MemberId, MetaError, MetaItem, NodeMeta};

use table::Table;
pub use table::{MemberInfo, MemberState};

/// The first byte of every plaintext gossip datagram.
mod kind {
    pub(super) const FOCA: u8 = 0;
    pub(super) const META_REQUEST: u8 = 1;
    pub(super) const META_REPLY: u8 = 2;
    pub(super) const SYNC_REQUEST: u8 = 3;
    pub(super) const SYNC_REPLY: u8 = 4;
}

/// How long a node accepts sync replies after asking, and how often it
/// serves the same requester.
const SYNC_WINDOW: Duration = Duration::from_secs(5);

/// Tunables. The defaults suit a LAN; tests shorten the periods.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// How often each member probes one other.
    pub probe_period: Duration,
    /// How long a direct probe waits before asking others to probe.
    pub probe_rtt: Duration,
    /// How many members an indirect probe asks.
    pub indirect_probes: usize,
    /// How long a suspect has to refute before it is declared down;
    /// `None` scales it with the cluster: 4 × max(1, log10 N) × probe period.
    pub suspect_timeout: Option<Duration>,
    /// How often each update is retransmitted; `None` scales it with the
    /// cluster: 2 × ln(N + 1) + 4, at least 6.
    pub max_transmissions: Option<u8>,
    /// The largest plaintext datagram sent or accepted.
    pub max_packet: usize,
    /// How often pending updates are gossiped, and to how many members.
    pub gossip_interval: Duration,
    /// Members per gossip round.
    pub gossip_fanout: usize,
    /// How often a member asks a random member for a feed of members.
    pub announce_interval: Duration,
    /// How often this node re-announces its metadata although it did not
    /// change (anti-entropy). Stretched with the cluster so the cluster as
    /// a whole refreshes at most about ten items per second.
    pub meta_refresh: Duration,
    /// Metadata requests sent per pull round, for members whose metadata
    /// is missing.
    pub meta_pulls: usize,
    /// How often a pull round runs.
    pub meta_pull_interval: Duration,
    /// How long down and departed members stay listed.
    pub remove_down_after: Duration,
    /// How often the member table is checked against foca's (a safety net
    /// for suspicion, which foca does not report).
    pub reconcile_interval: Duration,
    /// How long a leaving node waits between telling every member it is
    /// leaving and gossiping that it is down.
    pub leave_delay: Duration,
    /// Whether metadata is gossiped at all. Only simulations of very large
    /// clusters turn it off: each simulated node would hold every other
    /// node's metadata, N² items in one process.
    pub gossip_meta: bool,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            probe_period: Duration::from_secs(1),
            probe_rtt: Duration::from_millis(500),
            indirect_probes: 3,
            suspect_timeout: None,
            max_transmissions: None,
            max_packet: 1400,
            gossip_interval: Duration::from_millis(200),
            gossip_fanout: 3,
            announce_interval: Duration::from_secs(10),
            meta_refresh: Duration::from_secs(60),
            meta_pulls: 32,
            meta_pull_interval: Duration::from_millis(100),
            remove_down_after: Duration::from_secs(15 * 60),
            reconcile_interval: Duration::from_secs(5),
            gossip_meta: true,
            leave_delay: Duration::from_millis(100),
        }
    }
}

impl MembershipConfig {
    /// The suspicion timeout for a cluster of `members`.
    pub fn suspect_timeout_for(&self, members: usize) -> Duration {
        self.suspect_timeout.unwrap_or_else(|| {
            let scale = (members.max(1) as f64).log10().max(1.0);
            self.probe_period.mul_f64(4.0 * scale)
        })
    }

    /// Retransmissions of each update for a cluster of `members`.
    pub fn max_transmissions_for(&self, members: usize) -> u8 {
        self.max_transmissions.unwrap_or_else(|| {
            // Each member misses an update with a probability of roughly
            // e^-tx; 2·ln(N) + 4 keeps the expected number of (member,
            // update) pairs missed in a whole-cluster join below one.
            let tx = (2.0 * ((members + 1) as f64).ln() + 4.0).ceil();
            tx.clamp(6.0, 255.0) as u8
        })
    }

    /// The documented bound: from a crash to down on every member, for a
    /// cluster of `members` (see the module docs): the suspicion timeout
    /// plus (4 + log10 N) probe periods for the first failed probe, the
    /// indirect probes and the dissemination of the verdict.
    pub fn detection_bound(&self, members: usize) -> Duration {
        let periods = 4.0 + (members.max(1) as f64).log10();
        self.suspect_timeout_for(members) + self.probe_period.mul_f64(periods)
    }

    fn foca(&self, members: usize) -> foca::Config {
        let nz = |n: usize| NonZeroUsize::new(n.max(1)).unwrap_or(NonZeroUsize::MIN);
        foca::Config {
            probe_period: self.probe_period,
            probe_rtt: self.probe_rtt,
            num_indirect_probes: nz(self.indirect_probes),
            max_transmissions: NonZeroU8::new(self.max_transmissions_for(members))
                .unwrap_or(NonZeroU8::MIN),
            suspect_to_down_after: self.suspect_timeout_for(members),
            remove_down_after: Some(self.remove_down_after),
            max_packet_size: nz(self.max_packet),
            notify_down_members: true,
            periodic_announce: Some(foca::PeriodicParams {
                frequency: self.announce_interval,
                num_members: nz(1),
            }),
            periodic_announce_to_down_members: Some(foca::PeriodicParams {
                frequency: self.announce_interval * 2,
                num_members: nz(1),
            }),
            periodic_gossip: Some(foca::PeriodicParams {
                frequency: self.gossip_interval,
                num_members: nz(self.gossip_fanout),
            }),
        }
    }
}

/// Something that happened to a member, in the order this node learned it.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberEvent {
    /// The member is alive: it joined, restarted, or refuted a suspicion.
    Up(MemberId),
    /// The member failed a probe; it is down unless it refutes in time.
    Suspect(MemberId),
    /// The member was declared down (crashed, or cut off).
    Down(MemberId),
    /// The member left cleanly.
    Left(MemberId),
    /// The member's metadata changed (services, resources, load).
    MetadataChanged(MemberId, Arc<NodeMeta>),
    /// This node was declared down and rejoined under a renewed identity.
    Rejoined(MemberId),
}

/// Why a datagram was dropped (counted in [`GossipStats`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GossipError {
    /// Larger than the configured maximum.
    #[error("gossip datagram of {0} bytes is too large")]
    TooLarge(usize),
    /// Empty, an unknown kind, or not decodable.
    #[error("malformed gossip datagram: {0}")]
    Malformed(String),
    /// Refused by foca (a message from ourselves, a probe for ourselves, ...).
    #[error("gossip message refused: {0}")]
    Refused(String),
}

/// Counters of gossip traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GossipStats {
    /// Datagrams handed to `poll_transmit`'s caller.
    pub sent: u64,
    /// Their plaintext bytes.
    pub sent_bytes: u64,
    /// Datagrams accepted.
    pub received: u64,
    /// Their plaintext bytes.
    pub received_bytes: u64,
    /// Datagrams that did not open (wrong key, tampered): counted by the driver.
    pub dropped_unsealed: u64,
    /// Datagrams over the size limit.
    pub dropped_oversized: u64,
    /// Datagrams that did not decode or were refused.
    pub dropped_malformed: u64,
}

/// An opaque timer: hand it back to [`Membership::handle_tick`] when due.
#[derive(Debug, Clone)]
pub struct Tick(TickKind);

#[derive(Debug, Clone)]
enum TickKind {
    Foca(Timer<MemberId>),
    MetaRefresh,
    MetaPull,
    Reconcile,
    Join,
    FinishLeave,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MetaKey {
    addr: SocketAddr,
    version: (u64, u32),
}

impl Invalidates for MetaKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.addr == other.addr && self.version >= other.version
    }
}

/// Metadata known about every member, by address, shared with foca's
/// broadcast handler.
#[derive(Debug, Default)]
struct MetaStore {
    by_addr: HashMap<SocketAddr, (MemberId, u32, Arc<NodeMeta>)>,
    changed: Vec<SocketAddr>,
}

impl MetaStore {
    /// Stores `bytes` if newer than what is known; returns its key then.
    fn offer(&mut self, bytes: &[u8]) -> Result<Option<MetaKey>, MetaError> {
        let (id, seq, _) = MetaItem::peek(bytes)?;
        if let Some((known, known_seq, _)) = self.by_addr.get(&id.addr) {
            if (known.bump, *known_seq) >= (id.bump, seq) {
                return Ok(None);
            }
        }
        let item = MetaItem::decode(bytes)?;
        self.by_addr.insert(id.addr, (id, seq, Arc::new(item.meta)));
        self.changed.push(id.addr);
        Ok(Some(MetaKey {
            addr: id.addr,
            version: (id.bump, seq),
        }))
    }
}

#[derive(Debug, Clone, Default)]
struct MetaHandler(Arc<Mutex<MetaStore>>);

impl BroadcastHandler<MemberId> for MetaHandler {
    type Key = MetaKey;
    type Error = MetaError;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&MemberId>,
    ) -> Result<Option<MetaKey>, MetaError> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .offer(data)
    }
}

/// What foca asked for during one call.
#[derive(Debug, Default)]
struct Io {
    send: Vec<(MemberId, Vec<u8>)>,
    timers: Vec<(Duration, Timer<MemberId>)>,
    up: Vec<MemberId>,
    down: Vec<MemberId>,
    renamed: Vec<(MemberId, MemberId)>,
    probe_failed: Vec<MemberId>,
    rejoined: Option<MemberId>,
}

impl Runtime<MemberId> for Io {
    fn notify(&mut self, notification: Notification<'_, MemberId>) {
        match notification {
            Notification::MemberUp(id) => self.up.push(*id),
            Notification::MemberDown(id) => self.down.push(*id),
            Notification::Rename(old, new) => self.renamed.push((*old, *new)),
            Notification::Rejoin(id) => self.rejoined = Some(*id),
            Notification::ProbeFailed(_, id) => self.probe_failed.push(*id),
            _ => {}
        }
    }

    fn send_to(&mut self, to: MemberId, data: &[u8]) {
        let mut datagram = Vec::with_capacity(data.len() + 1);
        datagram.push(kind::FOCA);
        datagram.extend_from_slice(data);
        self.send.push((to, datagram));
    }

    fn submit_after(&mut self, event: Timer<MemberId>, after: Duration) {
        self.timers.push((after, event));
    }
}

type Swim = Foca<MemberId, GossipCodec, SmallRng, MetaHandler>;

/// One node's membership: foca plus the member table, metadata and events.
pub struct Membership {
    config: MembershipConfig,
    foca: Swim,
    io: Io,
    observed: Observed,
    metas: MetaHandler,
    table: Table,
    own_meta: MetaItem,
    /// Members whose metadata is missing, in pull order, with attempts made.
    pulls: VecDeque<(SocketAddr, u8)>,
    /// Metadata requests sent since the last pull round (the rate limit).
    pulled_this_round: usize,
    /// When this node last asked a member for its whole member list
    /// (after joining), if it did.
    synced_at: Option<Duration>,
    /// Requesters served a member list recently, and when.
    sync_served: HashMap<SocketAddr, Duration>,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    timers: Vec<(Duration, Tick)>,
    events: VecDeque<MemberEvent>,
    scale: usize,
    seeds: Vec<SocketAddr>,
    join_armed: bool,
    left: bool,
    stats: GossipStats,
    now: Duration,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("me", self.foca.identity())
            .field("members", &self.table.len())
            .finish()
    }
}

const MAX_PULL_ATTEMPTS: u8 = 5;

impl Membership {
    /// A membership for `me` announcing `meta`. `seed` seeds foca's
    /// random choices (draw it from the OS outside simulations).
    pub fn new(
        config: MembershipConfig,
        me: MemberId,
        meta: NodeMeta,
        seed: u64,
    ) -> Result<Self, MetaError> {
        let own_meta = MetaItem {
            id: me,
            seq: 0,
            meta,
        };
        let bytes = own_meta.encode()?;
        let observed = Observed::default();
        let metas = MetaHandler::default();
        let foca = Foca::with_custom_broadcast(
            me,
            config.foca(1),
            SmallRng::seed_from_u64(seed),
            GossipCodec::observing(observed.clone()),
            metas.clone(),
        );
        let mut this = Self {
            foca,
            io: Io::default(),
            observed,
            metas,
            table: Table::default(),
            own_meta,
            pulls: VecDeque::new(),
            pulled_this_round: 0,
            synced_at: None,
            sync_served: HashMap::new(),
            out: VecDeque::new(),
            timers: Vec::new(),
            events: VecDeque::new(),
            scale: 1,
            seeds: Vec::new(),
            join_armed: false,
            left: false,
            stats: GossipStats::default(),
            now: Duration::ZERO,
            config,
        };
        if this.config.gossip_meta {
            this.publish(&bytes);
            let refresh = this.refresh_interval();
            this.timers.push((refresh, Tick(TickKind::MetaRefresh)));
            this.timers
                .push((this.config.meta_pull_interval, Tick(TickKind::MetaPull)));
        }
        this.timers
            .push((this.config.reconcile_interval, Tick(TickKind::Reconcile)));
        Ok(this)
    }

    /// This node's current identity.
    pub fn me(&self) -> MemberId {
        *self.foca.identity()
    }

    /// The configuration in force.
    pub fn config(&self) -> &MembershipConfig {
        &self.config
    }

    /// Asks each seed address for a feed of members, and asks again every
    /// probe period for as long as this node knows no live member (a lost
    /// announce, a seed that starts later, or a node cut off from all).
    pub fn join(&mut self, seeds: &[SocketAddr], now: Duration) {
        self.now = now;
        let me = self.me().addr;
        self.seeds = seeds.iter().copied().filter(|&seed| seed != me).collect();
        self.announce_to_seeds();
    }

    fn announce_to_seeds(&mut self) {
        for seed in self.seeds.clone() {
            let _ = self.foca.announce(MemberId::seed(seed), &mut self.io);
        }
        if !self.seeds.is_empty() && !self.join_armed {
            self.join_armed = true;
            self.timers
                .push((self.config.probe_period, Tick(TickKind::Join)));
        }
        self.drain();
    }

    /// Leaves the cluster: tells every member directly that this node is
    /// going, then, [`MembershipConfig::leave_delay`] later (on a tick),
    /// gossips that it is down; members report it as left, not down. Keep
    /// driving the machine until [`Membership::has_left`].
    pub fn leave(&mut self, now: Duration) {
        self.now = now;
        self.own_meta.meta.leaving = true;
        self.republish();
        // Tell every live member directly (one hop) that this node is
        // leaving, so that the down update, which spreads by gossip, finds
        // the leaving mark already there and is reported as a departure.
        if let Ok(bytes) = self.own_meta.encode() {
            let mut notice = Vec::with_capacity(bytes.len() + 1);
            notice.push(kind::META_REPLY);
            notice.extend_from_slice(&bytes);
            let targets: Vec<SocketAddr> = self
                .table
                .iter()
                .filter(|m| m.state.is_active())
                .map(|m| m.id.addr)
                .collect();
            for addr in targets {
                self.queue_out(addr, notice.clone());
            }
        }
        let _ = self.foca.broadcast(&mut self.io);
        self.drain();
        // The down update follows once the notices had time to arrive
        // (datagrams may be reordered): see `has_left`.
        self.timers
            .push((self.config.leave_delay, Tick(TickKind::FinishLeave)));
    }

    /// Whether this node has left: the down update about itself is sent
    /// and it takes no further part. A driver stops after this.
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// Replaces this node's metadata and disseminates it at once.
    pub fn set_meta(&mut self, meta: NodeMeta, now: Duration) -> Result<(), MetaError> {
        self.now = now;
        let previous = std::mem::replace(&mut self.own_meta.meta, meta);
        self.own_meta.seq = self.own_meta.seq.wrapping_add(1);
        match self.own_meta.encode() {
            Ok(bytes) => {
                self.publish(&bytes);
                let _ = self.foca.broadcast(&mut self.io);
                self.drain();
                Ok(())
            }
            Err(err) => {
                self.own_meta.meta = previous;
                self.own_meta.seq = self.own_meta.seq.wrapping_sub(1);
                Err(err)
            }
        }
    }

    /// This node's metadata.
    pub fn own_meta(&self) -> &NodeMeta {
        &self.own_meta.meta
    }

    fn republish(&mut self) {
        self.own_meta.seq = self.own_meta.seq.wrapping_add(1);
        if let Ok(bytes) = self.own_meta.encode() {
            self.publish(&bytes);
        }
    }

    fn publish(&mut self, bytes: &[u8]) {
        if !self.config.gossip_meta {
            return;
        }
        // The handler stores it (so replies to pulls and listings see it)
        // and foca queues it for dissemination.
        // Items are validated and at most MAX_META_LEN bytes, below the
        // packet size foca checks against, so this does not fail.
        let _ = self.foca.add_broadcast(bytes);
        let me = self.own_meta.id.addr;
        self.metas
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .changed
            .retain(|addr| *addr != me);
    }

    /// Handles one opened datagram from `from`.
    pub fn handle_datagram(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        now: Duration,
    ) -> Result<(), GossipError> {
        self.now = now;
        if datagram.len() > self.config.max_packet + 1 {
            self.stats.dropped_oversized += 1;
            return Err(GossipError::TooLarge(datagram.len()));
        }
        let Some((&kind, body)) = datagram.split_first() else {
            self.stats.dropped_malformed += 1;
            return Err(GossipError::Malformed("empty datagram".into()));
        };
        let result = match kind {
            kind::FOCA => {
                let result = self.foca.handle_data(body, &mut self.io);
                let ok = result.is_ok();
                self.drain_observed(ok);
                self.drain();
                result.map_err(|err| match err {
                    foca::Error::Decode(_)
                    | foca::Error::MalformedPacket
                    | foca::Error::CustomBroadcast(_)
                    | foca::Error::DataTooBig => GossipError::Malformed(err.to_string()),
                    other => GossipError::Refused(other.to_string()),
                })
            }
            kind::META_REQUEST if body.is_empty() => {
                if let Ok(bytes) = self.own_meta.encode() {
                    let mut reply = Vec::with_capacity(bytes.len() + 1);
                    reply.push(kind::META_REPLY);
                    reply.extend_from_slice(&bytes);
                    self.queue_out(from, reply);
                }
                Ok(())
            }
            kind::SYNC_REQUEST if body.is_empty() => {
                self.serve_sync(from);
                Ok(())
            }
            kind::SYNC_REPLY => self.apply_sync(body),
            kind::META_REPLY => {
                let offered = self
                    .metas
                    .0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .offer(body);
                self.drain();
                offered
                    .map(|_| ())
                    .map_err(|err| GossipError::Malformed(err.to_string()))
            }
            other => Err(GossipError::Malformed(format!("unknown kind {other}"))),
        };
        match &result {
            Ok(()) => {
                self.stats.received += 1;
                self.stats.received_bytes += datagram.len() as u64;
            }
            Err(GossipError::Malformed(_)) => self.stats.dropped_malformed += 1,
            Err(_) => {}
        }
        result
    }

    /// Counts a datagram the driver could not open.
    pub fn count_unsealed(&mut self) {
        self.stats.dropped_unsealed += 1;
    }

    /// Counts a datagram the driver refused for its size before opening.
    pub fn count_oversized(&mut self) {
        self.stats.dropped_oversized += 1;
    }

    /// Handles a due timer.
    pub fn handle_tick(&mut self, tick: Tick, now: Duration) {
        self.now = now;
        match tick.0 {
            TickKind::Foca(timer) => {
                let suspect = match &timer {
                    Timer::ChangeSuspectToDown { member_id, .. } => Some(*member_id),
                    _ => None,
                };
                let _ = self.foca.handle_timer(timer, &mut self.io);
                if let Some(member) = suspect {
                    self.drop_spurious_turn_undead(member);
                }
                self.drain();
            }
            TickKind::MetaRefresh => {
                self.republish();
                let interval = self.refresh_interval();
                self.timers.push((interval, Tick(TickKind::MetaRefresh)));
            }
            TickKind::MetaPull => {
                self.pull_round();
                self.timers
                    .push((self.config.meta_pull_interval, Tick(TickKind::MetaPull)));
            }
            TickKind::FinishLeave => {
                let _ = self.foca.leave_cluster(&mut self.io);
                self.drain();
                self.left = true;
            }
            TickKind::Join => {
                self.join_armed = false;
                if self.foca.num_members() == 0 && !self.own_meta.meta.leaving {
                    self.announce_to_seeds();
                }
            }
            TickKind::Reconcile => {
                self.reconcile();
                self.drain();
                self.timers
                    .push((self.config.reconcile_interval, Tick(TickKind::Reconcile)));
            }
        }
    }

    /// The next plaintext datagram to seal and send.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        let (to, datagram) = self.out.pop_front()?;
        self.stats.sent += 1;
        self.stats.sent_bytes += datagram.len() as u64;
        Some((to, datagram))
    }

    /// The next timer to arm: fire it `after` from now.
    pub fn poll_timer(&mut self) -> Option<(Duration, Tick)> {
        self.timers.pop()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<MemberEvent> {
        self.events.pop_front()
    }

    /// Every member this node knows (not itself), in no particular order.
    pub fn members(&self) -> impl Iterator<Item = MemberInfo> + '_ {
        self.table.iter()
    }

    /// One member by address.
    pub fn member(&self, addr: &SocketAddr) -> Option<MemberInfo> {
        self.table.get(addr)
    }

    /// How many members are alive or suspect (not counting this node).
    pub fn active_count(&self) -> usize {
        self.foca.num_members()
    }

    /// The metadata known for the member at `addr`, with the identity it
    /// was published under.
    pub fn meta_of(&self, addr: &SocketAddr) -> Option<(MemberId, Arc<NodeMeta>)> {
        self.metas
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_addr
            .get(addr)
            .map(|(id, _, meta)| (*id, meta.clone()))
    }

    /// Gossip counters.
    pub fn stats(&self) -> GossipStats {
        self.stats
    }

    fn queue_out(&mut self, to: SocketAddr, datagram: Vec<u8>) {
        self.out.push_back((to, datagram));
    }

    fn refresh_interval(&self) -> Duration {
        // At most about ten refreshed items per second cluster-wide.
        let members = self.table.len() as u32 + 1;
        self.config
            .meta_refresh
            .max(Duration::from_millis(100) * members)
    }

    fn pull_round(&mut self) {
        self.pulled_this_round = 0;
        let mut sent = 0;
        let mut rounds = self.pulls.len();
        while sent < self.config.meta_pulls && rounds > 0 {
            rounds -= 1;
            let Some((addr, attempts)) = self.pulls.pop_front() else {
                break;
            };
            let Some(info) = self.table.get(&addr) else {
                continue;
            };
            if !info.state.is_active() || self.has_meta(&info.id) {
                continue;
            }
            self.queue_out(addr, vec![kind::META_REQUEST]);
            sent += 1;
            if attempts + 1 < MAX_PULL_ATTEMPTS {
                self.pulls.push_back((addr, attempts + 1));
            }
        }
    }

    fn has_meta(&self, id: &MemberId) -> bool {
        self.metas
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_addr
            .get(&id.addr)
            .is_some_and(|(known, _, _)| known.bump >= id.bump)
    }

    /// foca 2.0.0 sends "you are down" (`TurnUndead`) when a suspicion
    /// times out even if the member refuted it in time (the timer's
    /// condition failed and nothing was applied). The member would then
    /// believe it was declared down and rejoin under a new identity, and
    /// every other member would see it go down and come back. When the
    /// timer declared nothing down, that message is dropped here.
    fn drop_spurious_turn_undead(&mut self, member: MemberId) {
        if self.io.down.contains(&member) {
            return;
        }
        self.io.send.retain(|(to, datagram)| {
            *to != member || !is_turn_undead(datagram.get(1..).unwrap_or_default())
        });
    }

    /// Moves what foca asked for into the queues and the table.
    fn drain(&mut self) {
        let now = self.now;
        for (to, datagram) in self.io.send.drain(..) {
            self.out.push_back((to.addr, datagram));
        }
        for (after, timer) in self.io.timers.drain(..) {
            self.timers.push((after, Tick(TickKind::Foca(timer))));
        }
        let renamed: Vec<_> = self.io.renamed.drain(..).collect();
        for (old, new) in renamed {
            if let Some(event) = self.table.renamed(old, new, now) {
                self.events.push_back(event);
            }
            // A rename alone does not say whether the new identity is
            // active; ask foca (renames are rare).
            let active = self
                .foca
                .iter_membership_state()
                .any(|m| m.id() == &new && m.state() != State::Down);
            if active {
                self.mark_up(new);
            }
        }
        // Metadata first: a member that comes up in this call with
        // metadata already known gets one MetadataChanged, from mark_up.
        self.drain_meta_changes();
        let up: Vec<_> = self.io.up.drain(..).collect();
        for id in up {
            self.mark_up(id);
        }
        let down: Vec<_> = self.io.down.drain(..).collect();
        for id in down {
            let leaving = self
                .meta_of(&id.addr)
                .is_some_and(|(known, meta)| known.bump >= id.bump && meta.leaving);
            if let Some(event) = self.table.down(id, leaving, now) {
                self.events.push_back(event);
            }
        }
        let failed: Vec<_> = self.io.probe_failed.drain(..).collect();
        for id in failed {
            // foca may have refused the suspicion (a newer incarnation);
            // confirm against its table (probe failures are rare).
            let suspect = self
                .foca
                .iter_membership_state()
                .find(|m| m.id() == &id)
                .map(|m| (m.state(), m.incarnation()));
            if let Some((State::Suspect, incarnation)) = suspect {
                if let Some(event) = self.table.suspect(id, incarnation, now) {
                    self.events.push_back(event);
                }
            }
        }
        if let Some(id) = self.io.rejoined.take() {
            // Declared down and back: learn the cluster again.
            self.synced_at = None;
            self.own_meta.id = id;
            self.own_meta.seq = 0;
            self.republish();
            self.events.push_back(MemberEvent::Rejoined(id));
        }
        let members = self.table.active() + 1;
        self.rescale(members);
    }

    /// Right after joining, asks the first member met for its whole member
    /// list (push/pull anti-entropy, as memberlist does on join): foca's
    /// feeds and gossip alone leave a joiner missing members for up to
    /// a probe period per member.
    fn sync_after_join(&mut self, with: SocketAddr) {
        if self.seeds.is_empty() || self.synced_at.is_some() {
            return;
        }
        self.synced_at = Some(self.now);
        self.queue_out(with, vec![kind::SYNC_REQUEST]);
    }

    /// Sends `to` every live member this node knows, in datagrams of at
    /// most `max_packet` bytes; each requester at most once per window.
    fn serve_sync(&mut self, to: SocketAddr) {
        use foca::Codec;
        let now = self.now;
        if self
            .sync_served
            .get(&to)
            .is_some_and(|at| now.saturating_sub(*at) < SYNC_WINDOW)
        {
            return;
        }
        if self.sync_served.len() >= 1024 {
            self.sync_served
                .retain(|_, at| now.saturating_sub(*at) < SYNC_WINDOW);
        }
        self.sync_served.insert(to, now);
        let mut codec = GossipCodec::default();
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        let mut chunk = Vec::new();
        let mut count: u16 = 0;
        let start = |chunk: &mut Vec<u8>| {
            chunk.clear();
            chunk.extend_from_slice(&[kind::SYNC_REPLY, 0, 0]);
        };
        start(&mut chunk);
        for member in self.foca.iter_members() {
            if member.id().addr == to {
                continue;
            }
            let mark = chunk.len();
            if codec.encode_member(member, &mut chunk).is_err() {
                continue;
            }
            if chunk.len() > self.config.max_packet {
                chunk.truncate(mark);
                if let Some(tally) = chunk.get_mut(1..3) {
                    tally.copy_from_slice(&count.to_be_bytes());
                }
                chunks.push(chunk.clone());
                start(&mut chunk);
                count = 0;
                if codec.encode_member(member, &mut chunk).is_err() {
                    continue;
                }
            }
            count += 1;
        }
        if count > 0 {
            if let Some(tally) = chunk.get_mut(1..3) {
                tally.copy_from_slice(&count.to_be_bytes());
            }
            chunks.push(chunk);
        }
        for chunk in chunks {
            self.queue_out(to, chunk);
        }
    }

    /// Applies a member list this node asked for, by foca's own rules.
    /// What is new to this node is gossiped on as if it had arrived by
    /// gossip: applying it silently would stop this node from relaying
    /// those updates, and during a mass join the epidemic would starve.
    fn apply_sync(&mut self, body: &[u8]) -> Result<(), GossipError> {
        use foca::Codec;
        let asked = self
            .synced_at
            .is_some_and(|at| self.now.saturating_sub(at) < SYNC_WINDOW);
        if !asked {
            return Err(GossipError::Refused("sync reply not asked for".into()));
        }
        let (tally, mut rest) = body
            .split_first_chunk::<2>()
            .ok_or_else(|| GossipError::Malformed("sync reply without a count".into()))?;
        let count = u16::from_be_bytes(*tally);
        let mut codec = GossipCodec::default();
        let mut members = Vec::new();
        for _ in 0..count {
            let member = codec
                .decode_member(&mut rest)
                .map_err(|e| GossipError::Malformed(e.to_string()))?;
            members.push(member);
        }
        if !rest.is_empty() {
            return Err(GossipError::Malformed(
                "trailing bytes in sync reply".into(),
            ));
        }
        self.foca
            .apply_many(members.into_iter(), true, &mut self.io)
            .map_err(|e| GossipError::Refused(e.to_string()))?;
        self.drain();
        Ok(())
    }

    fn mark_up(&mut self, id: MemberId) {
        let now = self.now;
        self.sync_after_join(id.addr);
        if let Some(event) = self.table.up(id, now) {
            self.events.push_back(event);
        }
        if !self.config.gossip_meta {
        } else if !self.has_meta(&id) {
            // Ask at once while this round's budget lasts, later otherwise.
            if self.pulled_this_round < self.config.meta_pulls {
                self.pulled_this_round += 1;
                self.queue_out(id.addr, vec![kind::META_REQUEST]);
                self.pulls.push_back((id.addr, 1));
            } else {
                self.pulls.push_back((id.addr, 0));
            }
        } else if let Some((_, meta)) = self.meta_of(&id.addr) {
            // Metadata that arrived before the member did.
            self.events
                .push_back(MemberEvent::MetadataChanged(id, meta));
        }
    }

    fn drain_meta_changes(&mut self) {
        let changed: Vec<SocketAddr> = std::mem::take(
            &mut self
                .metas
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .changed,
        );
        for addr in changed {
            let Some((published, meta)) = self.meta_of(&addr) else {
                continue;
            };
            // Only metadata of the incarnation the table knows counts.
            let Some(id) = self.table.get(&addr).map(|info| info.id) else {
                continue;
            };
            if id != published {
                continue;
            }
            if meta.leaving {
                if let Some(event) = self.table.left(id, self.now) {
                    self.events.push_back(event);
                }
            }
            self.events
                .push_back(MemberEvent::MetadataChanged(id, meta));
        }
    }

    /// Applies decoded suspicions and refutations to the table when foca
    /// accepted the datagram, by the same precedence rules SWIM uses.
    fn drain_observed(&mut self, accepted: bool) {
        let observed: Vec<Member<MemberId>> =
            std::mem::take(&mut *self.observed.lock().unwrap_or_else(PoisonError::into_inner));
        if !accepted {
            return;
        }
        let now = self.now;
        let me = self.me();
        for member in observed {
            if member.id().addr == me.addr {
                continue;
            }
            let event = match member.state() {
                State::Suspect => self.table.suspect(*member.id(), member.incarnation(), now),
                State::Alive => self.table.refute(*member.id(), member.incarnation(), now),
                State::Down => None,
            };
            if let Some(event) = event {
                self.events.push_back(event);
            }
        }
    }

    /// Brings the table's suspicions in line with foca's view. One pass
    /// over foca's members; a table lookup only for suspects.
    fn reconcile(&mut self) {
        let now = self.now;
        let table_suspects = self.table.suspects();
        let mut events = Vec::new();
        for member in self.foca.iter_membership_state() {
            let event = match member.state() {
                State::Suspect => self.table.suspect(*member.id(), member.incarnation(), now),
                State::Alive if table_suspects.contains(&member.id().addr) => {
                    // foca holds it alive at this incarnation: the table's
                    // suspicion is stale.
                    self.table
                        .clear_suspicion(*member.id(), member.incarnation(), now)
                }
                _ => None,
            };
            events.extend(event);
        }
        self.events.extend(events);
        let keep = self.config.remove_down_after;
        self.table.expire(now, keep);
    }

    fn rescale(&mut self, members: usize) {
        // Re-derive timeouts and retransmissions at every quarter decade
        // of cluster size.
        let bucket = |n: usize| ((n.max(1) as f64).log10() * 4.0).floor() as usize;
        if bucket(members) != bucket(self.scale) {
            self.scale = members;
            let _ = self.foca.set_config(self.config.foca(members));
        }
    }
}

fn is_turn_undead(foca_message: &[u8]) -> bool {
    use foca::Codec;
    matches!(
        GossipCodec::default().decode_header(foca_message),
        Ok(foca::Header {
            message: foca::Message::TurnUndead,
            ..
        })
    )
}

/// A timer queue for drivers: deadlines in order of firing.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<std::cmp::Reverse<(Duration, u64)>>,
    ticks: HashMap<u64, Tick>,
    next: u64,
}

impl Timers {
    /// Arms `tick` to fire at `deadline`.
    pub fn push(&mut self, deadline: Duration, tick: Tick) {
        self.next += 1;
        self.heap.push(std::cmp::Reverse((deadline, self.next)));
        self.ticks.insert(self.next, tick);
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.heap.peek().map(|std::cmp::Reverse((at, _))| *at)
    }

    /// Takes the earliest tick if it is due at `now`.
    pub fn pop_due(&mut self, now: Duration) -> Option<Tick> {
        let std::cmp::Reverse((at, key)) = *self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        self.ticks.remove(&key)
    }
}
