//! The leader's side of fencing: when each node last got a lease, and when
//! a node's placements may be moved elsewhere. Pure bookkeeping over
//! instants the caller passes in, tested without a cluster.
//!
//! # Why two incarnations cannot both be active
//!
//! A node runs head-placed actors only while it holds a lease. It asks for
//! one at `s` (its own clock) and, once the leader confirms with a quorum
//! that it is still the leader, holds it until `s + lease`. Without a
//! renewal it stops every head-placed actor by then.
//!
//! The confirmation is shared: one quorum round begun after the renewal
//! arrived serves every renewal (and read) waiting for it, and within the
//! read lease after such a round began (at most one election timeout,
//! less than the time followers refuse votes after its heartbeat:
//! `supervisor::reads`) a grant goes out without a round. Either way no
//! other leader can exist when the grant goes out, so a later leader
//! became leader after it; the grant is recorded when it goes out. The
//! read lease carries the reads' caveat: a follower that restarts during
//! a partition forgets when it last heard the leader and may vote early;
//! `read_lease = 0` turns it off, and every batch then waits for a round.
//!
//! The leader moves a node's actors only after
//! `max(last grant, became leader) + lease × (1 + drift) + margin` on its own
//! clock. A grant is sent after the renewal was, so the node's lease ran
//! out before that moment as long as the two clocks' rates differ by less
//! than `drift` (10%); a new leader was elected after any grant of an older
//! leader was confirmed, so counting from when it became leader covers
//! those too. The move itself is a Raft write that names the epoch it
//! replaces, so two heads' decisions cannot both win.
//!
//! The only faster path is crash evidence: a node whose renewals stopped,
//! whose mesh address now refuses connections (the kernel answers for a
//! killed process), is dead, and its actors move at once. That assumes
//! nothing between the nodes forges TCP resets for a live process.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use swarm_protocol::NodeId;

/// How much faster than the leader's clock a node's may run, at most.
pub(crate) const DRIFT: f64 = 0.1;

/// Slack on top of the drift bound.
pub(crate) const MARGIN: Duration = Duration::from_millis(100);

/// The leader's lease records.
#[derive(Debug)]
pub(crate) struct Leases {
    lease: Duration,
    leader_since: Option<Instant>,
    granted: HashMap<NodeId, Instant>,
    dead: HashSet<NodeId>,
    probed: HashMap<NodeId, Instant>,
}

impl Leases {
    pub(crate) fn new(lease: Duration) -> Self {
        Self {
            lease,
            leader_since: None,
            granted: HashMap::new(),
            dead: HashSet::new(),
            probed: HashMap::new(),
        }
    }

    /// The lease nodes get.
    pub(crate) fn lease(&self) -> Duration {
        self.lease
    }

    /// How often nodes renew.
    pub(crate) fn renew_every(&self) -> Duration {
        self.lease / 5
    }

    /// This head became the leader at `now`: it knows nothing of the
    /// grants of earlier leaders.
    pub(crate) fn became_leader(&mut self, now: Instant) {
        self.leader_since = Some(now);
        self.granted.clear();
        self.dead.clear();
        self.probed.clear();
    }

    /// This head is no longer the leader.
    pub(crate) fn lost_leadership(&mut self) {
        self.leader_since = None;
    }

    /// Whether this head acts as the leader.
    pub(crate) fn is_leading(&self) -> bool {
        self.leader_since.is_some()
    }

    /// Whether every live node had time to renew with this leader (one
    /// whole lease since it became leader).
    pub(crate) fn settled(&self, now: Instant) -> bool {
        self.leader_since
            .is_some_and(|since| now >= since + self.lease)
    }

    /// `node` got a lease at `now`.
    pub(crate) fn granted(&mut self, node: NodeId, now: Instant) {
        self.granted.insert(node, now);
        self.dead.remove(&node);
    }

    /// Whether `node` holds a lease now (takes new placements).
    pub(crate) fn holds(&self, node: NodeId, now: Instant) -> bool {
        !self.dead.contains(&node)
            && self
                .granted
                .get(&node)
                .is_some_and(|at| now < *at + self.lease)
    }

    fn since(&self, node: NodeId) -> Option<Instant> {
        let since = self.leader_since?;
        Some(self.granted.get(&node).map_or(since, |g| (*g).max(since)))
    }

    /// Whether `node`'s placements may move now: it is dead, or any lease
    /// it could hold has run out.
    pub(crate) fn expired(&self, node: NodeId, now: Instant) -> bool {
        if self.dead.contains(&node) {
            return true;
        }
        let Some(since) = self.since(node) else {
            return false;
        };
        now >= since + self.lease.mul_f64(1.0 + DRIFT) + MARGIN
    }

    /// Whether to probe `node` for crash evidence now: its renewal is a
    /// quarter interval late, and no probe within half an interval.
    /// Records the probe. (A probe is one TCP connect; a live node's
    /// renewals arrive every interval plus a round trip.)
    pub(crate) fn probe_due(&mut self, node: NodeId, now: Instant) -> bool {
        let every = self.renew_every();
        let Some(since) = self.since(node) else {
            return false;
        };
        if self.dead.contains(&node) || now < since + every + every / 4 {
            return false;
        }
        if self
            .probed
            .get(&node)
            .is_some_and(|at| now < *at + every / 2)
        {
            return false;
        }
        self.probed.insert(node, now);
        true
    }

    /// A probe found `node`'s address refusing connections.
    pub(crate) fn mark_dead(&mut self, node: NodeId) {
        self.dead.insert(node);
    }

    /// The first moment at which [`Self::expired`] or [`Self::probe_due`]
    /// may turn true for `node` (it may lie in the past: then at once);
    /// `None` while this head does not lead. A grant only pushes it later.
    pub(crate) fn due(&self, node: NodeId) -> Option<Instant> {
        let since = self.since(node)?;
        if self.dead.contains(&node) {
            return Some(since);
        }
        let expiry = since + self.lease.mul_f64(1.0 + DRIFT) + MARGIN;
        let every = self.renew_every();
        let mut probe = since + every + every / 4;
        if let Some(at) = self.probed.get(&node) {
            probe = probe.max(*at + every / 2);
        }
        Some(probe.min(expiry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u8) -> NodeId {
        NodeId::from_bytes([n; 16])
    }

    const LEASE: Duration = Duration::from_secs(2);

    #[test]
    fn nothing_expires_before_leading_and_the_lease_counts_from_the_election() {
        let t0 = Instant::now();
        let mut leases = Leases::new(LEASE);
        assert!(!leases.expired(node(1), t0 + LEASE * 10));
        leases.became_leader(t0);
        let bound = LEASE.mul_f64(1.0 + DRIFT) + MARGIN;
        assert!(!leases.expired(node(1), t0 + bound - Duration::from_millis(1)));
        assert!(leases.expired(node(1), t0 + bound));
    }

    #[test]
    fn a_grant_pushes_expiry_back_and_a_node_holds_its_lease_until_it_runs_out() {
        let t0 = Instant::now();
        let mut leases = Leases::new(LEASE);
        leases.became_leader(t0);
        let g = t0 + Duration::from_secs(1);
        leases.granted(node(1), g);
        assert!(leases.holds(node(1), g + LEASE - Duration::from_millis(1)));
        assert!(!leases.holds(node(1), g + LEASE));
        assert!(!leases.holds(node(2), g));
        let bound = LEASE.mul_f64(1.0 + DRIFT) + MARGIN;
        assert!(!leases.expired(node(1), g + bound - Duration::from_millis(1)));
        assert!(leases.expired(node(1), g + bound));
    }

    #[test]
    fn a_new_leader_forgets_grants_and_waits_a_whole_lease() {
        let t0 = Instant::now();
        let mut leases = Leases::new(LEASE);
        leases.became_leader(t0);
        leases.granted(node(1), t0);
        leases.lost_leadership();
        assert!(!leases.is_leading());
        assert!(!leases.expired(node(1), t0 + LEASE * 10));
        let t1 = t0 + LEASE * 10;
        leases.became_leader(t1);
        assert!(!leases.holds(node(1), t1));
        assert!(!leases.expired(node(1), t1 + LEASE));
    }

    #[test]
    fn crash_evidence_expires_at_once_and_a_renewal_clears_it() {
        let t0 = Instant::now();
        let mut leases = Leases::new(LEASE);
        leases.became_leader(t0);
        leases.granted(node(1), t0);
        let every = leases.renew_every();
        assert!(!leases.probe_due(node(1), t0 + every));
        assert!(leases.probe_due(node(1), t0 + every + every / 4));
        // Not again within half an interval, then again.
        assert!(!leases.probe_due(node(1), t0 + every + every / 2));
        assert!(leases.probe_due(node(1), t0 + every * 2));
        leases.mark_dead(node(1));
        assert!(leases.expired(node(1), t0 + every * 2));
        assert!(!leases.holds(node(1), t0 + every * 2));
        leases.granted(node(1), t0 + every * 3);
        assert!(!leases.expired(node(1), t0 + every * 3));
    }

    #[test]
    fn due_is_the_first_moment_a_probe_or_a_move_may_go() {
        let t0 = Instant::now();
        let mut leases = Leases::new(LEASE);
        assert_eq!(leases.due(node(1)), None);
        leases.became_leader(t0);
        let every = leases.renew_every();
        let first = t0 + every + every / 4;
        assert_eq!(leases.due(node(1)), Some(first));
        assert!(!leases.probe_due(node(1), first - Duration::from_millis(1)));
        assert!(leases.probe_due(node(1), first));
        // After a probe, the next one half an interval later.
        let next = leases.due(node(1)).unwrap();
        assert_eq!(next, first + every / 2);
        assert!(!leases.probe_due(node(1), next - Duration::from_millis(1)));
        assert!(leases.probe_due(node(1), next));
        // A grant pushes it back.
        let g = t0 + LEASE;
        leases.granted(node(1), g);
        assert_eq!(leases.due(node(1)), Some(g + every + every / 4));
        // Probes never go past the lease's expiry.
        let bound = LEASE.mul_f64(1.0 + DRIFT) + MARGIN;
        let mut at = g;
        while let Some(due) = leases.due(node(1)) {
            if due >= g + bound {
                break;
            }
            at = due;
            assert!(leases.probe_due(node(1), at));
        }
        assert_eq!(leases.due(node(1)), Some(g + bound));
        assert!(leases.expired(node(1), g + bound));
        assert!(at < g + bound);
        // A dead node is due at once.
        leases.mark_dead(node(1));
        assert!(leases.due(node(1)).unwrap() <= g);
    }
}
