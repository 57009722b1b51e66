//! The host's half of fencing as a pure machine: which head placements a
//! node may start, which it must stop, and when. No clock and no actors:
//! the caller passes the time, so the host actor and the control-plane
//! simulator (`head::sim`) drive the same code.
//!
//! The rules:
//!
//! - a head placement starts only while the node holds a lease, and not if
//!   a newer grant superseded it (its fence index is older than the
//!   newest grant applied, unless the grant itself lists it);
//! - **an epoch starts at most once in a host's life**: a placement whose
//!   epoch is not newer than every epoch this host started for that name
//!   is refused as stale (a restart must come under a new epoch, which the
//!   head commits);
//! - when the lease runs out without a renewal, every head placement stops;
//!   nothing else stops them: a membership verdict ("declared down") is a
//!   rumour, the lease is what the leader counts on.

use std::collections::HashMap;
use std::time::Instant;

use super::spawn::SpawnError;

/// What to do with a head placement that was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// It runs (or starts) already under this epoch: nothing to do.
    Running,
    /// Start it; an older incarnation (its epoch) gives way first.
    Start {
        /// The older incarnation this one replaces, if one runs.
        replaces: Option<u64>,
    },
}

/// Where one head placement stands on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    epoch: u64,
    started: bool,
}

/// The host's fencing state.
#[derive(Debug, Default)]
pub(crate) struct Fencing {
    /// Until when the node holds a lease.
    lease_until: Option<Instant>,
    /// The log index of the newest grant applied.
    granted_index: u64,
    /// Head placements running or starting, by name.
    slots: HashMap<String, Slot>,
    /// The newest epoch this host started per name (never started twice).
    highest: HashMap<String, u64>,
}

impl Fencing {
    /// Whether the node holds a lease at `now`.
    pub(crate) fn holds_lease(&self, now: Instant) -> bool {
        self.lease_until.is_some_and(|until| now < until)
    }

    /// The epoch `name` runs (or starts) under here.
    pub(crate) fn epoch_of(&self, name: &str) -> Option<u64> {
        self.slots.get(name).map(|s| s.epoch)
    }

    /// The newest grant's log index: a renewal reports it. Every delivery
    /// with a fence up to it was either admitted before that grant (and
    /// is reported running) or is refused as superseded when it arrives,
    /// so the leader knows which of its deliveries this host lost. (Pushes
    /// are not counted: one log entry can carry several, under one fence,
    /// and they arrive in any order.)
    pub(crate) fn seen_index(&self) -> u64 {
        self.granted_index
    }

    /// Head placements running or starting: (name, epoch).
    pub(crate) fn placed(&self) -> impl Iterator<Item = (&str, u64)> {
        self.slots.iter().map(|(n, s)| (n.as_str(), s.epoch))
    }

    /// Decides on a head placement of `name` under `epoch`, delivered with
    /// `fence` (the log index it was sent at), from a grant or pushed.
    ///
    /// # Errors
    ///
    /// [`SpawnError::NoLease`] without a lease, [`SpawnError::Stale`] if a
    /// newer grant superseded it or this host started that epoch (or a
    /// newer one) before.
    pub(crate) fn admit(
        &mut self,
        name: &str,
        epoch: u64,
        fence: u64,
        from_grant: bool,
        now: Instant,
    ) -> Result<Admission, SpawnError> {
        let superseded = fence <= self.granted_index && !from_grant;
        let current = self.slots.get(name).copied();
        if current.is_some_and(|s| s.epoch == epoch) {
            return Ok(Admission::Running);
        }
        if !self.holds_lease(now) {
            return Err(SpawnError::NoLease);
        }
        let started_before = self.highest.get(name).is_some_and(|h| *h >= epoch);
        if superseded || started_before {
            return Err(SpawnError::Stale);
        }
        self.highest.insert(name.to_owned(), epoch);
        self.slots.insert(
            name.to_owned(),
            Slot {
                epoch,
                started: false,
            },
        );
        Ok(Admission::Start {
            replaces: current.filter(|s| s.started).map(|s| s.epoch),
        })
    }

    /// The incarnation admitted under `epoch` finished starting at `now`:
    /// true if it may run; false if it must stop at once (the lease ran
    /// out meanwhile, or a newer placement took its place).
    pub(crate) fn started(&mut self, name: &str, epoch: u64, now: Instant) -> bool {
        let lease = self.holds_lease(now);
        match self.slots.get_mut(name) {
            Some(slot) if slot.epoch == epoch && lease => {
                slot.started = true;
                true
            }
            Some(slot) if slot.epoch == epoch => {
                self.slots.remove(name);
                false
            }
            _ => false,
        }
    }

    /// The incarnation admitted under `epoch` did not start.
    pub(crate) fn not_started(&mut self, name: &str, epoch: u64) {
        if self.slots.get(name).is_some_and(|s| s.epoch == epoch) {
            self.slots.remove(name);
        }
    }

    /// The head asks to stop `name`'s incarnations up to `epoch`: answers
    /// the epoch that stops, if one runs. Epochs up to `epoch` never start
    /// here afterwards, even if their delivery comes after the stop (a
    /// grant that travelled longer, a deposed leader's push).
    pub(crate) fn stop(&mut self, name: &str, epoch: u64) -> Option<u64> {
        let highest = self.highest.entry(name.to_owned()).or_insert(0);
        *highest = (*highest).max(epoch);
        let slot = self.slots.get(name).copied()?;
        if slot.epoch > epoch {
            return None;
        }
        self.slots.remove(name);
        Some(slot.epoch)
    }

    /// A grant at log `index`, valid until `until`.
    pub(crate) fn grant(&mut self, until: Instant, index: u64) {
        if self.lease_until.is_none_or(|u| u < until) {
            self.lease_until = Some(until);
        }
        self.granted_index = self.granted_index.max(index);
    }

    /// At `now`: if the lease ran out, gives it up and answers every head
    /// placement to stop (name, epoch); else nothing.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<(String, u64)> {
        if self.lease_until.is_none() || self.holds_lease(now) {
            return Vec::new();
        }
        self.lease_until = None;
        self.slots.drain().map(|(n, s)| (n, s.epoch)).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const LEASE: Duration = Duration::from_secs(3);

    #[test]
    fn an_epoch_starts_once_in_a_hosts_life_even_after_it_stopped() {
        let t0 = Instant::now();
        let mut f = Fencing::default();
        f.grant(t0 + LEASE, 5);
        assert_eq!(
            f.admit("a", 2, 5, true, t0),
            Ok(Admission::Start { replaces: None })
        );
        assert!(f.started("a", 2, t0));
        assert_eq!(f.admit("a", 2, 6, true, t0), Ok(Admission::Running));
        assert_eq!(f.stop("a", 2), Some(2));
        // The grant lists it again (a head that believes it was lost must
        // restart it under a new epoch instead).
        assert_eq!(f.admit("a", 2, 7, true, t0), Err(SpawnError::Stale));
        assert_eq!(
            f.admit("a", 3, 7, true, t0),
            Ok(Admission::Start { replaces: None })
        );
    }

    #[test]
    fn nothing_starts_without_a_lease_and_everything_stops_when_it_runs_out() {
        let t0 = Instant::now();
        let mut f = Fencing::default();
        assert_eq!(f.admit("a", 1, 1, false, t0), Err(SpawnError::NoLease));
        f.grant(t0 + LEASE, 1);
        assert!(f.expire(t0 + LEASE - Duration::from_millis(1)).is_empty());
        assert!(f.admit("a", 1, 2, false, t0).is_ok());
        assert!(f.started("a", 1, t0));
        assert_eq!(f.expire(t0 + LEASE), vec![("a".to_owned(), 1)]);
        assert!(!f.holds_lease(t0 + LEASE));
        // Starting when the lease ran out meanwhile: stop at once.
        f.grant(t0 + LEASE * 2, 3);
        assert!(f.admit("b", 4, 4, false, t0 + LEASE).is_ok());
        assert!(!f.started("b", 4, t0 + LEASE * 2));
        assert_eq!(f.epoch_of("b"), None);
    }

    #[test]
    fn a_push_older_than_the_newest_grant_is_stale_and_newer_epochs_replace_older() {
        let t0 = Instant::now();
        let mut f = Fencing::default();
        f.grant(t0 + LEASE, 10);
        assert_eq!(f.admit("a", 3, 9, false, t0), Err(SpawnError::Stale));
        assert_eq!(f.seen_index(), 10);
        assert!(f.admit("a", 3, 11, false, t0).is_ok());
        assert!(f.started("a", 3, t0));
        assert_eq!(f.seen_index(), 10, "pushes are not counted: only grants");
        assert_eq!(
            f.admit("a", 5, 12, false, t0),
            Ok(Admission::Start { replaces: Some(3) })
        );
        // The older one finishing late does not take the slot back.
        assert!(!f.started("a", 3, t0));
        assert_eq!(f.admit("a", 4, 13, false, t0), Err(SpawnError::Stale));
        assert_eq!(f.stop("a", 4), None, "a newer incarnation stays");
        assert_eq!(f.epoch_of("a"), Some(5));
    }

    #[test]
    fn a_stop_that_comes_before_its_delivery_still_fences_it() {
        let t0 = Instant::now();
        let mut f = Fencing::default();
        f.grant(t0 + LEASE, 10);
        // The head stops epoch 7 (a drain), then the grant that listed it
        // arrives, having travelled longer.
        assert_eq!(f.stop("a", 7), None);
        assert_eq!(f.admit("a", 7, 10, true, t0), Err(SpawnError::Stale));
        assert!(
            f.admit("a", 8, 11, true, t0).is_ok(),
            "a newer epoch starts"
        );
    }
}
