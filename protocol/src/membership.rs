//! SWIM membership as a sans-IO state machine: foca for failure detection
//! and dissemination, plus what Swarm adds around it: suspicion and leave
//! events (foca reports only up and down), node metadata as custom
//! broadcasts with a pull for members whose metadata is missing, a
//! push/pull of the whole member list on join, and timeouts that grow with
//! the cluster.
//!
//! Plaintext datagrams start with a kind byte (`datagram`).
//!
//! The caller owns the clock, the sockets and the timers:
//!
//! - [`Membership::handle_datagram`] with each opened datagram,
//! - [`Membership::handle_tick`] when a timer from [`Membership::poll_timer`] fires,
//! - [`Membership::poll_transmit`] for plaintext datagrams to seal and send,
//! - [`Membership::poll_event`] for [`MemberEvent`]s.
//!
//! The real node drives it from a UDP socket (swarm-actors); the
//! `sim` harness (cargo feature `sim`) drives thousands of them over a
//! simulated network with virtual time.
//!
//! # Layout
//!
//! - this file: [`Membership`], its events and the order of its calls;
//! - [`config`]: tunables, the scaling rules and the detection bound;
//! - `datagram`: datagrams in: opening, the replay check, dispatch by kind;
//! - `meta`: node metadata as custom broadcasts, and pulls of missing metadata;
//! - `sync`: push/pull of the member list (on join, every 30 s, and again
//!   at once while pulls teach much), with repair of lost buckets;
//! - `adaptor`: foca's runtime (what it asks for in one call) and the
//!   work-arounds for foca 2.0.0;
//! - `health`: Lifeguard's local health multiplier, which stretches this
//!   node's own probe and suspicion timers while it finds itself late;
//! - [`stats`]: drop reasons and counters;
//! - `table`: the member table with suspicion and leave states.
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
//! It holds for healthy members: a member that finds itself late (`health`)
//! stretches its own probe and suspicion timers up to
//! [`MembershipConfig::max_health_multiplier`] times, so on an overloaded
//! box detection slows down rather than healthy members being declared
//! down (Lifeguard's trade).

mod adaptor;
pub mod config;
mod datagram;
mod health;
mod meta;
#[cfg(feature = "sim")]
pub mod sim;
pub mod stats;
mod sync;
mod table;

#[cfg(all(test, feature = "sim"))]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use foca::{Foca, State, Timer};
use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::gossip::codec::Observed;
use crate::gossip::{GossipCodec, KeyRing, MemberId, MetaError, MetaItem, NodeMeta, ReplayGuard};

use adaptor::Io;
use datagram::kind;
use health::Health;
use meta::MetaHandler;

pub use config::MembershipConfig;
use stats::Events;
pub use stats::{GossipError, GossipStats};
use table::Table;
pub use table::{MemberInfo, MemberState};

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

/// An opaque timer: hand it back to [`Membership::handle_tick`] when due.
/// A tick with a [`Tick::key`] may be cancelled later
/// ([`Membership::poll_cancel`]); delivering it anyway is harmless.
#[derive(Debug, Clone)]
pub struct Tick {
    kind: TickKind,
    /// When it is due (the machine's clock), so that a late delivery is
    /// noticed (local health).
    due: Duration,
}

impl Tick {
    fn new(kind: TickKind) -> Self {
        Self {
            kind,
            due: Duration::ZERO,
        }
    }

    /// When it is due, on the clock the machine is handed (`now`): the
    /// driver can tell a late delivery from one on time.
    pub fn due(&self) -> Duration {
        self.due
    }

    /// The key [`Membership::poll_cancel`] names this tick by, if it can
    /// be cancelled.
    pub fn key(&self) -> Option<u64> {
        match self.kind {
            TickKind::Indirect(key) => Some(key),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
enum TickKind {
    Foca(Timer<MemberId>),
    /// A suspicion timeout that fired while this node was late, deferred
    /// once (see `health`).
    Verdict(Timer<MemberId>),
    /// foca's indirect-probe timer, held in `pending_indirect` under this key.
    Indirect(u64),
    MetaRefresh,
    MetaPull,
    Reconcile,
    /// A pull (generation: older ones are void; whether it is a fast one).
    Resync(u32, bool),
    /// A pull's repair: ask again for the buckets still missing.
    SyncRepair,
    /// The pull after joining, from the first member met.
    JoinPull(SocketAddr),
    Join,
    FinishLeave,
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
    events: Events,
    scale: usize,
    seeds: Vec<SocketAddr>,
    join_armed: bool,
    left: bool,
    stats: GossipStats,
    now: Duration,
    /// Whether a metadata pull round is armed (only while pulls are queued).
    pull_armed: bool,
    /// When this node last published its metadata.
    meta_published_at: Duration,
    /// Which member the next periodic pull asks (in turn).
    resync_cursor: usize,
    /// The generation of the pull timer in force (a fast pull replaces it).
    resync_gen: u32,
    /// Pulls in a row that taught this node something.
    fast_streak: u8,
    /// The pull under way, if any: which buckets arrived.
    pull: Option<sync::Pull>,
    /// Random choices of this node's own (fast pulls and repairs).
    rng: SmallRng,
    /// foca's indirect-probe timers not delivered yet: (tick key, probed
    /// member, timer). Delivered when a direct ack arrives (no wake-up
    /// needed then) or when their tick fires.
    pending_indirect: Vec<(u64, MemberId, Timer<MemberId>)>,
    /// The next cancellable tick's key.
    next_key: u64,
    /// Keys of ticks that need not fire any more.
    cancelled: Vec<u64>,
    /// foca's periodic gossip timer, held back while there is nothing to
    /// gossip, so an idle node does not wake up five times a second.
    parked_gossip: Option<Timer<MemberId>>,
    /// Seals what is sent and opens and checks what arrives; `None` only in
    /// the simulator's unsealed mode.
    seal: Option<Sealing>,
    /// How late this node finds itself: stretches its own probe and
    /// suspicion timers (Lifeguard).
    health: Health,
}

/// The keys and the replay check of a sealed membership.
struct Sealing {
    ring: KeyRing,
    replay: ReplayGuard,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("me", self.foca.identity())
            .field("members", &self.table.len())
            .finish()
    }
}

impl Membership {
    /// A membership for `me` announcing `meta`, sealing its datagrams with
    /// `keys`. `seed` seeds foca's random choices (draw it from the OS).
    ///
    /// # Errors
    ///
    /// [`MetaError`] if `meta` is over its bounds.
    pub fn new(
        config: MembershipConfig,
        me: MemberId,
        meta: NodeMeta,
        seed: u64,
        keys: KeyRing,
    ) -> Result<Self, MetaError> {
        let seal = Sealing {
            ring: keys,
            replay: ReplayGuard::new(config.max_clock_skew),
        };
        Self::build(config, me, meta, seed, Some(seal))
    }

    /// A membership whose datagrams are plaintext: only for simulations of
    /// many nodes, where sealing would cost time and prove nothing new.
    ///
    /// # Errors
    ///
    /// [`MetaError`] if `meta` is over its bounds.
    #[cfg(any(feature = "sim", fuzzing, test))]
    pub fn new_unsealed(
        config: MembershipConfig,
        me: MemberId,
        meta: NodeMeta,
        seed: u64,
    ) -> Result<Self, MetaError> {
        Self::build(config, me, meta, seed, None)
    }

    fn build(
        config: MembershipConfig,
        me: MemberId,
        meta: NodeMeta,
        seed: u64,
        seal: Option<Sealing>,
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
            events: Events::default(),
            scale: 1,
            seeds: Vec::new(),
            join_armed: false,
            left: false,
            stats: GossipStats::default(),
            now: Duration::ZERO,
            pull_armed: false,
            meta_published_at: Duration::ZERO,
            resync_cursor: 0,
            resync_gen: 0,
            fast_streak: 0,
            pull: None,
            rng: SmallRng::seed_from_u64(seed ^ 0x5eed_5eed_5eed_5eed),
            pending_indirect: Vec::new(),
            next_key: 0,
            cancelled: Vec::new(),
            parked_gossip: None,
            seal,
            health: Health::default(),
            config,
        };
        if this.config.gossip_meta {
            this.publish(&bytes);
            let refresh = this.refresh_interval();
            this.timers
                .push((refresh, Tick::new(TickKind::MetaRefresh)));
        }
        this.timers.push((
            this.config.reconcile_interval,
            Tick::new(TickKind::Reconcile),
        ));
        let first_pull = this.pull_interval();
        this.timers
            .push((first_pull, Tick::new(TickKind::Resync(0, false))));
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
                .push((self.config.probe_period, Tick::new(TickKind::Join)));
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
            .push((self.config.leave_delay, Tick::new(TickKind::FinishLeave)));
    }

    /// Whether this node has left: the down update about itself is sent
    /// and it takes no further part. A driver stops after this.
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// Handles a due timer.
    pub fn handle_tick(&mut self, tick: Tick, now: Duration) {
        self.now = now;
        let late = now.saturating_sub(tick.due);
        let probe = matches!(tick.kind, TickKind::Foca(Timer::ProbeRandomMember(_)));
        self.tick_arrived(late, probe);
        match tick.kind {
            TickKind::Indirect(key) => {
                // Still pending: no direct ack came; foca starts the
                // indirect probes.
                if let Some(at) = self.pending_indirect.iter().position(|p| p.0 == key) {
                    let (_, _, timer) = self.pending_indirect.swap_remove(at);
                    let _ = self.foca.handle_timer(timer, &mut self.io);
                    self.drain();
                }
            }
            TickKind::Foca(timer @ Timer::ChangeSuspectToDown { .. })
                if late > self.config.late_tick =>
            {
                // This node was away when the suspect's time ran out: what
                // queued up meanwhile (its refutation, say) comes first.
                self.timers
                    .push((late, Tick::new(TickKind::Verdict(timer))));
            }
            TickKind::Foca(timer) | TickKind::Verdict(timer) => {
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
                // The interval grows with the cluster: a timer armed when
                // this node knew few members may fire before it is due.
                let due = self.meta_published_at + self.refresh_interval();
                if now >= due {
                    self.republish();
                    let interval = self.refresh_interval();
                    self.timers
                        .push((interval, Tick::new(TickKind::MetaRefresh)));
                } else {
                    self.timers
                        .push((due - now, Tick::new(TickKind::MetaRefresh)));
                }
            }
            TickKind::MetaPull => {
                self.pull_armed = false;
                self.pull_round();
                // An idle, converged node has nothing to pull and no timer.
                self.arm_pulls();
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
                self.timers.push((
                    self.config.reconcile_interval,
                    Tick::new(TickKind::Reconcile),
                ));
            }
            TickKind::Resync(generation, fast) => self.resync_tick(generation, fast),
            TickKind::SyncRepair => self.repair_pull(),
            TickKind::JoinPull(with) => self.join_pull(with),
        }
    }

    /// The next datagram to send, sealed under the primary key with
    /// `nonce` (MUST be fresh and random for each call that returns one)
    /// and the sender's clock `unix_ms`.
    pub fn poll_transmit(
        &mut self,
        nonce: [u8; 12],
        unix_ms: u64,
    ) -> Option<(SocketAddr, Vec<u8>)> {
        let (to, datagram) = self.out.pop_front()?;
        self.stats.sent += 1;
        self.stats.sent_bytes += datagram.len() as u64;
        match &self.seal {
            Some(seal) => {
                let mut sealed = Vec::new();
                seal.ring.seal(&datagram, nonce, unix_ms, &mut sealed);
                Some((to, sealed))
            }
            None => Some((to, datagram)),
        }
    }

    /// Whether [`Membership::poll_transmit`] has a datagram to hand out
    /// (so a driver draws a nonce only when one is needed).
    pub fn wants_transmit(&self) -> bool {
        !self.out.is_empty()
    }

    /// The gossip keys: the first seals, all open.
    pub fn keys(&self) -> Option<&KeyRing> {
        self.seal.as_ref().map(|s| &s.ring)
    }

    /// The gossip keys, to rotate them (add, use, remove) at run time.
    pub fn keys_mut(&mut self) -> Option<&mut KeyRing> {
        self.seal.as_mut().map(|s| &mut s.ring)
    }

    /// The next timer to arm: fire it `after` from now.
    pub fn poll_timer(&mut self) -> Option<(Duration, Tick)> {
        let (after, mut tick) = self.timers.pop()?;
        tick.due = self.now + after;
        Some((after, tick))
    }

    /// The key of a tick from [`Membership::poll_timer`] that need not fire
    /// any more: cancel it (an idle node then wakes up less).
    pub fn poll_cancel(&mut self) -> Option<u64> {
        self.cancelled.pop()
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

    /// Gossip counters.
    pub fn stats(&self) -> GossipStats {
        GossipStats {
            members_down: self.events.down,
            members_suspected: self.events.suspected,
            ..self.stats
        }
    }

    fn queue_out(&mut self, to: SocketAddr, datagram: Vec<u8>) {
        self.out.push_back((to, datagram));
    }

    /// Moves what foca asked for into the queues and the table.
    fn drain(&mut self) {
        let now = self.now;
        for (to, datagram) in self.io.send.drain(..) {
            self.out.push_back((to.addr, datagram));
        }
        let idle = self.gossip_idle();
        let health = self.health_multiplier();
        for (after, timer) in self.io.timers.drain(..) {
            let after = health::stretch(&timer, after, health);
            if idle && matches!(timer, Timer::PeriodicGossip(_)) {
                // Nothing to gossip: no timer (no wakeup) until there is.
                self.parked_gossip = Some(timer);
                continue;
            }
            if let Timer::SendIndirectProbe { probed_id, .. } = &timer {
                self.next_key += 1;
                let key = self.next_key;
                self.pending_indirect.push((key, *probed_id, timer));
                self.timers
                    .push((after, Tick::new(TickKind::Indirect(key))));
                continue;
            }
            self.timers.push((after, Tick::new(TickKind::Foca(timer))));
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
            // Declared down and back: learn the cluster again, and back
            // off (a node declared down is most likely starved).
            self.stats.rejoins += 1;
            self.rejoined();
            self.synced_at = None;
            self.pull = None;
            self.own_meta.id = id;
            self.own_meta.seq = 0;
            self.republish();
            self.events.push_back(MemberEvent::Rejoined(id));
        }
        let members = self.table.active() + 1;
        self.rescale(members);
        if !self.gossip_idle() {
            if let Some(timer) = self.parked_gossip.take() {
                self.timers
                    .push((Duration::ZERO, Tick::new(TickKind::Foca(timer))));
            }
        }
    }
}
