//! Local supervision: a supervised actor (`Node::supervise`) is started
//! from a factory, and when it fails (a handler panics, or it stops
//! without being asked to) it is started again by its restart policy, under
//! the same name; only that actor is affected. The request it held fails
//! with `ActorFailed`. Past `max` restarts within the window the failure
//! escalates: the actor is marked failed and unexposed (the placement
//! supervisor of the control plane will re-place it).
//!
//! [`RestartTracker`] is the pure bookkeeping of a policy: after each
//! failure, restart after a backoff, or escalate. No clock of its own:
//! the caller passes the time, so tests drive it directly.
//!
//! ```
//! use std::time::Duration;
//! use swarm_actors::supervision::{Backoff, Restart};
//!
//! let policy = Restart::on_failure()
//!     .max(5)
//!     .within(Duration::from_secs(60))
//!     .backoff(Backoff::exponential(Duration::from_millis(100), Duration::from_secs(5)));
//! ```

mod fencing;
mod handover;
mod host;
mod hosting;
mod keeper;
pub(crate) mod passivation;
mod report;
mod spawn;

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::inspect::RestartRecord;
#[cfg(test)]
pub(crate) use fencing::{Admission, Fencing};
pub use handover::{HostHandOver, MAX_HAND_OVER};
pub(crate) use host::start;
pub use host::{Supervised, SupervisedState};
pub use hosting::Host;
pub(crate) use hosting::{ApplyGrant, LeaseRunning, Leave, SetReporter};
pub(crate) use keeper::Keeper;
pub(crate) use report::{Report, Reporter};
pub(crate) use spawn::Registry;
pub use spawn::{
    ActorRow, Grant, HostLeave, HostRestart, HostSpawn, HostStop, Incarnation, ListActors,
    ListTypes, RemoteSpawnError, Running, SpawnError, Spawnable, HOST_ACTOR,
};

/// How long to wait before each restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// The first wait.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// Waits `initial`, then twice as long after each failure in the
    /// window, at most `max`.
    pub fn exponential(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
        }
    }

    /// The wait before restart number `n` (0 for the first) of a window.
    fn wait(&self, n: usize) -> Duration {
        let factor = 1u32.checked_shl(n.min(31) as u32).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::exponential(Duration::from_millis(100), Duration::from_secs(10))
    }
}

/// When a supervised actor that failed (a handler panicked, or it stopped
/// without being asked to) is started again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Restart {
    /// Never: the first failure escalates.
    Never,
    /// After each failure, with a backoff, up to `max` restarts within
    /// `within`; one more failure in that window escalates.
    OnFailure {
        /// Restarts allowed within the window.
        max: usize,
        /// The window.
        within: Duration,
        /// The wait before each restart.
        backoff: Backoff,
    },
}

impl Default for Restart {
    fn default() -> Self {
        Self::on_failure()
    }
}

impl std::fmt::Display for Restart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Restart::Never => write!(f, "never restarted"),
            Restart::OnFailure { max, within, .. } => {
                write!(f, "restarted on failure, at most {max} within {within:?}")
            }
        }
    }
}

impl Restart {
    /// Never restart.
    pub fn never() -> Self {
        Self::Never
    }

    /// Restart on failure: at most 5 times a minute, backing off from
    /// 100 ms to 10 s, unless changed.
    pub fn on_failure() -> Self {
        Self::OnFailure {
            max: 5,
            within: Duration::from_secs(60),
            backoff: Backoff::default(),
        }
    }

    /// Sets how many restarts the window allows.
    pub fn max(mut self, restarts: usize) -> Self {
        if let Self::OnFailure { max, .. } = &mut self {
            *max = restarts;
        }
        self
    }

    /// Sets the window.
    pub fn within(mut self, window: Duration) -> Self {
        if let Self::OnFailure { within, .. } = &mut self {
            *within = window;
        }
        self
    }

    /// Sets the backoff.
    pub fn backoff(mut self, b: Backoff) -> Self {
        if let Self::OnFailure { backoff, .. } = &mut self {
            *backoff = b;
        }
        self
    }
}

/// What to do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start the actor again after this long.
    RestartAfter(Duration),
    /// Give up here: the placement supervisor decides.
    Escalate,
}

/// The restarts of one supervised actor, by its policy.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    policy: Restart,
    /// When recent restarts happened (times since an origin the caller chose).
    recent: VecDeque<Duration>,
    /// Restarts since the actor was placed.
    total: u64,
}

impl RestartTracker {
    /// A tracker for an actor under `policy`.
    pub fn new(policy: Restart) -> Self {
        Self {
            policy,
            recent: VecDeque::new(),
            total: 0,
        }
    }

    /// Restarts since the actor was placed (for `swarm actors`).
    pub fn restarts(&self) -> u64 {
        self.total
    }

    /// The actor failed at `now`: restart it (after a backoff) or escalate.
    pub fn on_failure(&mut self, now: Duration) -> Decision {
        let Restart::OnFailure {
            max,
            within,
            backoff,
        } = self.policy
        else {
            return Decision::Escalate;
        };
        while self
            .recent
            .front()
            .is_some_and(|at| now.saturating_sub(*at) >= within)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= max {
            return Decision::Escalate;
        }
        let wait = backoff.wait(self.recent.len());
        self.recent.push_back(now);
        self.total += 1;
        Decision::RestartAfter(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn never_escalates_at_once() {
        let mut t = RestartTracker::new(Restart::never());
        assert_eq!(t.on_failure(Duration::ZERO), Decision::Escalate);
        assert_eq!(t.restarts(), 0);
    }

    #[test]
    fn backs_off_then_escalates_past_max_within_the_window() {
        let policy = Restart::on_failure()
            .max(3)
            .within(Duration::from_secs(10))
            .backoff(Backoff::exponential(100 * MS, 250 * MS));
        let mut t = RestartTracker::new(policy);
        let at = |s: u64| Duration::from_secs(s);
        assert_eq!(t.on_failure(at(0)), Decision::RestartAfter(100 * MS));
        assert_eq!(t.on_failure(at(1)), Decision::RestartAfter(200 * MS));
        assert_eq!(
            t.on_failure(at(2)),
            Decision::RestartAfter(250 * MS),
            "capped"
        );
        assert_eq!(
            t.on_failure(at(3)),
            Decision::Escalate,
            "a fourth within 10 s"
        );
        assert_eq!(t.restarts(), 3);
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let policy = Restart::on_failure()
            .max(2)
            .within(Duration::from_secs(10))
            .backoff(Backoff::exponential(100 * MS, Duration::from_secs(1)));
        let mut t = RestartTracker::new(policy);
        assert!(matches!(
            t.on_failure(Duration::from_secs(0)),
            Decision::RestartAfter(_)
        ));
        assert!(matches!(
            t.on_failure(Duration::from_secs(5)),
            Decision::RestartAfter(_)
        ));
        // The first left the window: the backoff starts over from the second.
        assert_eq!(
            t.on_failure(Duration::from_secs(11)),
            Decision::RestartAfter(200 * MS)
        );
        assert_eq!(t.on_failure(Duration::from_secs(12)), Decision::Escalate);
        assert_eq!(t.restarts(), 3);
    }

    #[test]
    fn a_huge_failure_count_does_not_overflow_the_backoff() {
        let b = Backoff::exponential(Duration::from_secs(1), Duration::from_secs(30));
        assert_eq!(b.wait(200), Duration::from_secs(30));
    }
}
