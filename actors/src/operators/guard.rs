//! The head leader's login guard: codes checked within ±1 step, each step
//! accepted once per operator (the caller passes the last step the log
//! recorded), and five failures in a row lock an operator (by certificate
//! serial) and a source address (by IP) out: 30 s, doubling with every
//! lockout after that up to an hour, until a login succeeds.
//!
//! Lockouts live in the leader's memory: a new leader starts with none
//! (the replay rule is in the log and survives it).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures in a row before a lockout.
pub const MAX_FAILURES: u32 = 5;
/// The first lockout.
pub const FIRST_LOCKOUT: Duration = Duration::from_secs(30);
/// The longest lockout.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(3_600);
/// Most keys remembered (forgotten oldest-first beyond it).
const MAX_KEYS: usize = 65_536;

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Locked out after too many failures.
    #[error("locked out after {MAX_FAILURES} failed codes: try again in {} s", .0.as_secs().max(1))]
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Operator(u64),
    Source(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    lockouts: u32,
    until: Option<Instant>,
    last: Instant,
}

/// Failure counts and lockouts by operator and by source.
#[derive(Debug, Default)]
pub(crate) struct Guard {
    failures: HashMap<Key, Failures>,
}

impl Guard {
    /// Checks a login by `serial` from `source`: `step` is the step the code
    /// matched (`None`: no step matched), `last_used` the last step the log
    /// recorded for the operator. Returns the step to record.
    pub(crate) fn check(
        &mut self,
        serial: u64,
        source: IpAddr,
        step: Option<u64>,
        last_used: Option<u64>,
        now: Instant,
    ) -> Result<u64, Refusal> {
        let keys = [Key::Operator(serial), Key::Source(source)];
        let locked = keys
            .iter()
            .filter_map(|k| self.failures.get(k).and_then(|f| f.until))
            .filter(|until| *until > now)
            .max();
        if let Some(until) = locked {
            return Err(Refusal::Locked(until - now));
        }
        let outcome = match step {
            None => Err(()),
            Some(step) if last_used.is_some_and(|last| step <= last) => Err(()),
            Some(step) => Ok(step),
        };
        match outcome {
            Ok(step) => {
                for k in keys {
                    self.failures.remove(&k);
                }
                Ok(step)
            }
            Err(()) => {
                let mut left = MAX_FAILURES;
                let mut lock = None;
                for k in keys {
                    let f = self.fail(k, now);
                    left = left.min(MAX_FAILURES.saturating_sub(f.count));
                    if let Some(until) = f.until.filter(|u| *u > now) {
                        lock = Some(lock.map_or(until, |l: Instant| l.max(until)));
                    }
                }
                if let Some(until) = lock {
                    return Err(Refusal::Locked(until - now));
                }
                Err(if step.is_some() {
                    Refusal::Replayed
                } else {
                    Refusal::Wrong { left }
                })
            }
        }
    }

    fn fail(&mut self, key: Key, now: Instant) -> Failures {
        if self.failures.len() >= MAX_KEYS && !self.failures.contains_key(&key) {
            if let Some(oldest) = self
                .failures
                .iter()
                .min_by_key(|(_, f)| f.last)
                .map(|(k, _)| *k)
            {
                self.failures.remove(&oldest);
            }
        }
        let f = self.failures.entry(key).or_insert(Failures {
            count: 0,
            lockouts: 0,
            until: None,
            last: now,
        });
        f.count += 1;
        f.last = now;
        if f.count >= MAX_FAILURES {
            let doubled = FIRST_LOCKOUT.saturating_mul(1 << f.lockouts.min(10));
            f.until = Some(now + doubled.min(MAX_LOCKOUT));
            f.lockouts += 1;
            // After the lockout, one more failure locks again (longer).
            f.count = MAX_FAILURES - 1;
        }
        *f
    }
}
