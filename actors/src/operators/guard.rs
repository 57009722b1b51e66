//! The head leader's login guard: counts failed logins by [`Lock`] and
//! decides lockouts; the lockouts themselves are committed to the Raft
//! log (`Command::Lockout`), so a new leader keeps them. Failure counts
//! stay in the leader's memory (a leader change forgets at most a few).
//!
//! The two login paths are counted apart, so that knowing a name is not
//! enough to shut its operator out:
//!
//! - certificate + TOTP (`swarm.Login`): by certificate serial. Only the
//!   holder of the certificate's private key reaches this check, so only it
//!   can lock it: 5 failures lock it for 30 s, doubling up to 15 min;
//! - name + password + TOTP (the admin API): by (name, source address):
//!   5 failures lock that name from that source, 60 s doubling up to
//!   15 min; and by name alone: 25 failures from anywhere lock the password
//!   path of the name for a fixed 5 min (never longer, however often).
//!
//! A failure count and its doubling are forgotten after 15 min without
//! a failure, so no lockout grows for good; the password path never locks
//! the certificate path, nor one source another.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Failures in a row before a certificate or (name, source) lockout.
pub const MAX_FAILURES: u32 = 5;
/// Failures of one name's password path, from all sources, before its
/// operator-wide lockout.
pub const NAME_FAILURES: u32 = 25;
/// The first lockout of a certificate.
pub const FIRST_LOCKOUT: Duration = Duration::from_secs(30);
/// The first lockout of a (name, source).
pub const FIRST_SOURCE_LOCKOUT: Duration = Duration::from_secs(60);
/// The operator-wide lockout of a name's password path: fixed.
pub const NAME_LOCKOUT: Duration = Duration::from_secs(300);
/// The longest lockout.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(900);
/// A failure count (and its doubling) is forgotten this long after its
/// last failure.
pub const FORGET_AFTER: Duration = Duration::from_secs(900);
/// Most keys remembered (forgotten oldest-first beyond it).
const MAX_KEYS: usize = 65_536;

/// What a lockout shuts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Lock {
    /// The certificate+TOTP login of one certificate (by serial).
    Certificate(u64),
    /// The password login of one name from one source (by
    /// [`source_key`](super::bucket::source_key)).
    Source {
        /// The name typed.
        name: String,
        /// Where from.
        source: IpAddr,
    },
    /// The password login of one name from everywhere.
    Name(String),
}

impl Lock {
    /// The locks a password login of `name` from `source` goes through.
    #[must_use]
    pub fn password(name: &str, source: IpAddr) -> [Lock; 2] {
        [
            Lock::Source {
                name: name.to_owned(),
                source: super::bucket::source_key(source),
            },
            Lock::Name(name.to_owned()),
        ]
    }

    fn threshold(&self) -> u32 {
        match self {
            Lock::Name(_) => NAME_FAILURES,
            _ => MAX_FAILURES,
        }
    }

    /// The lockout after `lockouts` earlier ones.
    fn duration(&self, lockouts: u32) -> Duration {
        let first = match self {
            Lock::Certificate(_) => FIRST_LOCKOUT,
            Lock::Source { .. } => FIRST_SOURCE_LOCKOUT,
            Lock::Name(_) => return NAME_LOCKOUT,
        };
        first.saturating_mul(1 << lockouts.min(10)).min(MAX_LOCKOUT)
    }
}

/// Why a login was refused: what the audit records. Password logins are
/// answered with [`PASSWORD_REFUSED`] whatever it was (the control
/// plane's `LoginRefusal::Password`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Locked out after too many failures.
    #[error("locked out after too many failed logins: try again in {} s", .0.as_secs().max(1))]
    Locked(Duration),
    /// Not the code of any step within the skew window.
    #[error("wrong TOTP code ({left} more before a lockout)")]
    Wrong {
        /// Failures left before a lockout.
        left: u32,
    },
    /// The code's step was used already.
    #[error("this TOTP code was used already: wait for the next one")]
    Replayed,
    /// The password was wrong (its code was not checked).
    #[error("wrong password")]
    WrongPassword,
    /// No operator has this name (a dummy hash was checked all the same).
    #[error("unknown operator name")]
    UnknownName,
    /// The operator's certificate is revoked.
    #[error("the certificate is revoked")]
    Revoked,
    /// Too many password logins from this node and source.
    #[error("rate limited: too many password logins from this source")]
    Limited(Duration),
    /// Every password check of the pool is busy.
    #[error("busy: every password check is in use")]
    Busy(Duration),
    /// A name, password or code longer than any can be (nothing checked).
    #[error("malformed: a name, password or code longer than any can be")]
    Malformed,
}

/// What a refused password login answers, whatever failed (the audit
/// records which).
pub const PASSWORD_REFUSED: &str =
    "login refused: wrong name, password or TOTP code, or too many attempts (try again later)";

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    lockouts: u32,
    until: Option<Instant>,
    last: Instant,
}

/// Failure counts by lock, and lockouts decided here and not yet seen
/// applied.
#[derive(Debug, Default)]
pub(crate) struct Guard {
    failures: HashMap<Lock, Failures>,
}

impl Guard {
    /// How long `lock` stays locked after `now`, as this leader decided
    /// it (the log's lockouts are checked by the caller too).
    pub(crate) fn locked(&self, lock: &Lock, now: Instant) -> Option<Duration> {
        self.failures
            .get(lock)
            .and_then(|f| f.until)
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    /// Failures `lock` has left before a lockout.
    pub(crate) fn left(&self, lock: &Lock, now: Instant) -> u32 {
        let count = self
            .failures
            .get(lock)
            .filter(|f| now.saturating_duration_since(f.last) < FORGET_AFTER)
            .map_or(0, |f| f.count);
        lock.threshold().saturating_sub(count)
    }

    /// Counts a failure of each of `locks`; answers the lockouts it
    /// decided (to commit), with their length.
    pub(crate) fn fail(&mut self, locks: &[Lock], now: Instant) -> Vec<(Lock, Duration)> {
        let mut decided = Vec::new();
        for lock in locks {
            if self.failures.len() >= MAX_KEYS && !self.failures.contains_key(lock) {
                if let Some(oldest) = self
                    .failures
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(k, _)| k.clone())
                {
                    self.failures.remove(&oldest);
                }
            }
            let f = self.failures.entry(lock.clone()).or_insert(Failures {
                count: 0,
                lockouts: 0,
                until: None,
                last: now,
            });
            if now.saturating_duration_since(f.last) >= FORGET_AFTER {
                *f = Failures {
                    count: 0,
                    lockouts: 0,
                    until: None,
                    last: now,
                };
            }
            f.count += 1;
            f.last = now;
            if f.count >= lock.threshold() {
                let length = lock.duration(f.lockouts);
                f.until = Some(now + length);
                f.lockouts = f.lockouts.saturating_add(1);
                // A fresh count after each lockout: the next one takes as
                // many failures again.
                f.count = 0;
                decided.push((lock.clone(), length));
            }
        }
        decided
    }

    /// Forgets the failures of `locks` (a login succeeded).
    pub(crate) fn succeed(&mut self, locks: &[Lock]) {
        for lock in locks {
            self.failures.remove(lock);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn five_failures_lock_a_name_from_one_source_only() {
        let mut g = Guard::default();
        let t = Instant::now();
        let attacker = Lock::password("alice", source(1));
        for i in 0..MAX_FAILURES {
            let decided = g.fail(&attacker, t);
            assert_eq!(decided.is_empty(), i + 1 < MAX_FAILURES);
        }
        assert_eq!(g.locked(&attacker[0], t), Some(FIRST_SOURCE_LOCKOUT));
        let colleague = Lock::password("alice", source(2));
        assert_eq!(g.locked(&colleague[0], t), None);
        assert_eq!(g.locked(&colleague[1], t), None, "not yet operator-wide");
        assert_eq!(g.locked(&Lock::Certificate(7), t), None);
    }

    #[test]
    fn the_operator_wide_password_lock_is_fixed_and_never_grows() {
        let mut g = Guard::default();
        let mut t = Instant::now();
        for round in 0..5u8 {
            let mut decided = Vec::new();
            for i in 0..NAME_FAILURES {
                // A new source each time: only the name-wide count adds up.
                let locks = Lock::password("alice", IpAddr::from([10, round, 0, i as u8]));
                decided.extend(g.fail(&locks[1..], t));
            }
            assert_eq!(decided, vec![(Lock::Name("alice".into()), NAME_LOCKOUT)]);
            t += NAME_LOCKOUT;
            assert_eq!(g.locked(&Lock::Name("alice".into()), t), None);
        }
    }

    #[test]
    fn source_lockouts_double_to_a_cap_and_start_over_after_a_quiet_spell() {
        let mut g = Guard::default();
        let mut t = Instant::now();
        let lock = [Lock::Source {
            name: "alice".into(),
            source: source(1),
        }];
        let mut lengths = Vec::new();
        for _ in 0..7 {
            for _ in 0..MAX_FAILURES {
                for (_, length) in g.fail(&lock, t) {
                    lengths.push(length.as_secs());
                }
            }
            // The attacker fails again as soon as each lockout ends.
            t += Duration::from_secs(*lengths.last().unwrap());
        }
        // Capped at 15 min; the failure after a 15-min lockout comes after
        // 15 quiet minutes, so the count starts over.
        assert_eq!(lengths, [60, 120, 240, 480, 900, 60, 120]);
        t += FORGET_AFTER;
        for _ in 0..MAX_FAILURES - 1 {
            assert!(g.fail(&lock, t).is_empty());
        }
        assert_eq!(
            g.fail(&lock, t),
            vec![(lock[0].clone(), FIRST_SOURCE_LOCKOUT)]
        );
    }

    #[test]
    fn a_success_forgets_the_failures() {
        let mut g = Guard::default();
        let t = Instant::now();
        let lock = [Lock::Certificate(3)];
        for _ in 0..MAX_FAILURES - 1 {
            g.fail(&lock, t);
        }
        assert_eq!(g.left(&lock[0], t), 1);
        g.succeed(&lock);
        assert_eq!(g.left(&lock[0], t), MAX_FAILURES);
    }
}
