//! The lease keeper's timing as a pure machine: when a node renews its
//! lease next, and until when a grant holds. The lease keeper task
//! (`control::lease`) and the control-plane simulator drive the same one.

use std::time::{Duration, Instant};

/// How often to look for heads while none is known: from the first
/// value, doubling up to the second (an idle cluster without a control
/// plane should not wake up for it).
const IDLE: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(5));

/// The first retry after a failed renewal; each failure in a row doubles
/// it, up to the renewal interval.
const RETRY: Duration = Duration::from_millis(200);

/// The lease keeper's timing as a pure machine (the control-plane
/// simulator drives the same one): when to renew next, and how long a
/// grant holds.
#[derive(Debug, Clone)]
pub(crate) struct Keeper {
    every: Duration,
    /// The wait after a failed renewal (doubling in a row, see [`RETRY`]);
    /// `None` while renewals succeed.
    retry: Option<Duration>,
    idle: Duration,
    leased: bool,
    /// The leader asked for a full report: the next renewal goes at once.
    at_once: bool,
}

impl Default for Keeper {
    fn default() -> Self {
        Self {
            every: Duration::from_millis(200),
            retry: None,
            idle: IDLE.0,
            leased: false,
            at_once: false,
        }
    }
}

impl Keeper {
    /// How long to wait before the next step.
    pub(crate) fn wait(&self) -> Duration {
        if self.at_once {
            Duration::ZERO
        } else {
            self.retry.unwrap_or(self.every)
        }
    }

    /// Whether the next step needs to know of a head first (no lease: the
    /// leader is not known from renewals).
    pub(crate) fn needs_heads(&self) -> bool {
        !self.leased
    }

    /// No head is known: wait longer each time, up to [`IDLE`]'s bound.
    pub(crate) fn no_heads(&mut self) {
        self.every = self.idle;
        self.idle = (self.idle * 2).min(IDLE.1);
    }

    /// A renewal goes out now.
    pub(crate) fn renewing(&mut self) {
        self.idle = IDLE.0;
        self.at_once = false;
    }

    /// The grant asked for the full list (its report was a delta onto one
    /// the leader does not hold): renew again at once, not a fifth of the
    /// lease later, so the leader plans for this node without delay.
    pub(crate) fn resync(&mut self) {
        self.at_once = true;
    }

    /// How long to wait for a renewal's answer: two renewal intervals,
    /// whatever failed before (a leader too slow to answer in time must
    /// not be given less time, and more renewals, by its own slowness).
    pub(crate) fn answer_within(&self) -> Duration {
        self.every * 2
    }

    /// The renewal sent at `sent` got a lease of `lease`: answers until
    /// when it holds (counted from the sending, so a slow answer only
    /// shortens it); the next renewal comes a fifth of it later.
    pub(crate) fn granted(&mut self, sent: Instant, lease: Duration) -> Instant {
        self.every = (lease / 5).max(Duration::from_millis(20));
        self.retry = None;
        self.leased = true;
        sent + lease
    }

    /// The renewal failed: ask again soon, [`RETRY`] first, then twice
    /// as long after each failure in a row up to the renewal interval. A
    /// node never renews faster than its lease asks because renewals
    /// fail: under an overloaded or leaderless control plane every node
    /// failing at once and retrying at a fixed 200 ms tripled the load
    /// (and the answer's deadline shrank with it) just when the leader
    /// could least afford it. With 3 s leases the tries come 0.2, 0.6,
    /// 1.2, 1.8 and 2.4 s after the first failure: five before the lease
    /// runs out.
    pub(crate) fn failed(&mut self) {
        self.leased = false;
        let next = self
            .retry
            .map_or(RETRY, |retry| retry.saturating_mul(2))
            .min(self.every.max(RETRY));
        self.retry = Some(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_counts_from_the_sending_and_a_failure_renews_soon() {
        let mut keeper = Keeper::default();
        assert!(keeper.needs_heads());
        keeper.no_heads();
        keeper.no_heads();
        assert_eq!(keeper.wait(), IDLE.0 * 2, "idle waits grow");
        keeper.renewing();
        let sent = Instant::now();
        let lease = Duration::from_secs(3);
        assert_eq!(keeper.granted(sent, lease), sent + lease);
        assert!(!keeper.needs_heads());
        assert_eq!(keeper.wait(), lease / 5);
        assert_eq!(keeper.answer_within(), lease / 5 * 2);
        keeper.resync();
        assert_eq!(keeper.wait(), Duration::ZERO, "a resync renews at once");
        keeper.renewing();
        assert_eq!(keeper.wait(), lease / 5);
        keeper.failed();
        assert!(keeper.needs_heads());
        assert_eq!(keeper.wait(), RETRY);
    }

    #[test]
    fn failures_in_a_row_back_off_to_the_interval_and_never_cut_the_answers_deadline() {
        let mut keeper = Keeper::default();
        let lease = Duration::from_secs(3);
        keeper.granted(Instant::now(), lease);
        let within = keeper.answer_within();
        let mut waits = Vec::new();
        for _ in 0..5 {
            keeper.failed();
            waits.push(keeper.wait());
            assert_eq!(
                keeper.answer_within(),
                within,
                "a failure keeps the deadline"
            );
        }
        assert_eq!(
            waits,
            [RETRY, RETRY * 2, lease / 5, lease / 5, lease / 5],
            "doubling, capped at the renewal interval"
        );
        // A grant ends the backoff.
        keeper.granted(Instant::now(), lease);
        assert_eq!(keeper.wait(), lease / 5);
        keeper.failed();
        assert_eq!(keeper.wait(), RETRY);
        // Before any grant, retries stay at the default interval.
        let mut fresh = Keeper::default();
        fresh.failed();
        fresh.failed();
        assert_eq!(fresh.wait(), RETRY);
    }
}
