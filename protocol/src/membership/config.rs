//! Membership tunables: probe, suspicion and gossip timers, how they scale
//! with the cluster, and the failure-detection bound derived from them.

use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

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
    /// a whole refreshes about one item every four seconds.
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
    /// How often a node pulls one member's whole member list (in turn), so
    /// a node that missed updates catches up within this interval.
    pub resync_interval: Duration,
    /// How long a leaving node waits between telling every member it is
    /// leaving and gossiping that it is down.
    pub leave_delay: Duration,
    /// How far apart the clocks of two members may be. A datagram sent
    /// further from the receiver's clock is dropped, and nonces are
    /// remembered for twice as long, so captured datagrams cannot be
    /// replayed.
    pub max_clock_skew: Duration,
    /// Lifeguard's local health: the largest multiple by which a node that
    /// finds itself late (its timers fire late, it was suspected, it was
    /// declared down) stretches its own probe period, probe timeout and
    /// suspicion timeout, so that an overloaded node does not declare
    /// healthy members down. 1 turns it off.
    pub max_health_multiplier: u8,
    /// How late a timer may fire before the node counts itself as late.
    pub late_tick: Duration,
    /// Whether metadata is gossiped at all. Only simulations of very large
    /// clusters turn it off: each simulated node would hold every other
    /// node's metadata, N² items in one process.
    pub gossip_meta: bool,
    /// Whether what a member-list pull teaches this node is gossiped on
    /// (put in foca's update backlog) as if it had come by gossip. Off:
    /// what a pull teaches is the server's view, which the cluster has
    /// already heard (a change spreads by gossip from where it happened),
    /// and pulls repeat while they teach much (`sync`). Relaying it filled
    /// every backlog with the whole cluster during a mass join (N updates
    /// × 2 ln N transmissions per node): at 1,000 simulated nodes 3× the
    /// gossip bytes and 4× the CPU, for a slower convergence.
    pub relay_pulled: bool,
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
            resync_interval: Duration::from_secs(30),
            gossip_meta: true,
            relay_pulled: false,
            max_health_multiplier: 8,
            late_tick: Duration::from_millis(500),
            max_clock_skew: Duration::from_secs(30),
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

    pub(super) fn foca(&self, members: usize) -> foca::Config {
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
