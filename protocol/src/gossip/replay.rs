//! Refusing replayed gossip datagrams. Every sealed datagram carries its
//! sending time and a random nonce ([`super::seal`]). A receiver drops one
//! whose time is more than `max_skew` from its own clock, and one whose
//! nonce it has seen. Nonces are remembered in two generations of
//! `2 × max_skew` each, so a datagram is remembered for at least as long as
//! its time passes the check: a captured datagram cannot be replayed to aim
//! a member's answers at someone else. Member clocks MUST agree within
//! `max_skew` (certificates already need roughly synchronised clocks).

use std::collections::HashSet;
use std::time::Duration;

use super::seal::{Opened, SealError, NONCE_LEN};

/// Nonces remembered per generation at most. A node receives tens of
/// datagrams per second; beyond this the generation turns early (and the
/// early turns are counted), so memory stays bounded under any load.
pub const MAX_REMEMBERED: usize = 65_536;

/// The freshness check of one receiver.
#[derive(Debug)]
pub struct ReplayGuard {
    max_skew_ms: u64,
    current: HashSet<[u8; NONCE_LEN]>,
    previous: HashSet<[u8; NONCE_LEN]>,
    /// When `current` started, receiver's clock (Unix ms).
    turned_at_ms: u64,
    /// Generations turned early because one was full.
    early_turns: u64,
}

impl ReplayGuard {
    /// A guard accepting datagrams sent within `max_skew` of the receiver's clock.
    pub fn new(max_skew: Duration) -> Self {
        Self {
            max_skew_ms: u64::try_from(max_skew.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            current: HashSet::new(),
            previous: HashSet::new(),
            turned_at_ms: 0,
            early_turns: 0,
        }
    }

    /// Accepts `opened` if it is fresh at `now_ms` (the receiver's clock,
    /// Unix milliseconds) and its nonce is new; remembers the nonce then.
    ///
    /// # Errors
    ///
    /// [`SealError::Stale`] or [`SealError::Replayed`]; the datagram MUST be dropped.
    pub fn check(&mut self, opened: &Opened<'_>, now_ms: u64) -> Result<(), SealError> {
        let skew_ms = now_ms.abs_diff(opened.sent_at_ms);
        if skew_ms > self.max_skew_ms {
            return Err(SealError::Stale { skew_ms });
        }
        self.turn(now_ms);
        if self.previous.contains(&opened.nonce) || !self.current.insert(opened.nonce) {
            return Err(SealError::Replayed);
        }
        if self.current.len() >= MAX_REMEMBERED {
            self.early_turns += 1;
            self.previous = std::mem::take(&mut self.current);
            self.turned_at_ms = now_ms;
        }
        Ok(())
    }

    /// Generations turned early because one was full (a sign of a flood).
    pub fn early_turns(&self) -> u64 {
        self.early_turns
    }

    fn turn(&mut self, now_ms: u64) {
        let generation = self.max_skew_ms.saturating_mul(2);
        if now_ms.saturating_sub(self.turned_at_ms) >= generation {
            // Two generations passed: nothing remembered is needed any more.
            if now_ms.saturating_sub(self.turned_at_ms) >= generation.saturating_mul(2) {
                self.previous.clear();
            } else {
                self.previous = std::mem::take(&mut self.current);
            }
            self.current.clear();
            self.turned_at_ms = now_ms;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(nonce: u8, sent_at_ms: u64) -> Opened<'static> {
        Opened {
            message: b"m",
            sent_at_ms,
            nonce: [nonce; NONCE_LEN],
        }
    }

    #[test]
    fn a_datagram_is_accepted_once_within_the_window() {
        let mut guard = ReplayGuard::new(Duration::from_secs(30));
        let now = 1_000_000;
        assert_eq!(guard.check(&opened(1, now), now), Ok(()));
        assert_eq!(
            guard.check(&opened(1, now), now + 5),
            Err(SealError::Replayed)
        );
        assert_eq!(guard.check(&opened(2, now - 29_000), now), Ok(()));
        assert_eq!(guard.check(&opened(3, now + 29_000), now), Ok(()));
    }

    #[test]
    fn stale_and_future_datagrams_are_refused() {
        let mut guard = ReplayGuard::new(Duration::from_secs(30));
        let now = 1_000_000;
        assert_eq!(
            guard.check(&opened(1, now - 31_000), now),
            Err(SealError::Stale { skew_ms: 31_000 })
        );
        assert!(guard.check(&opened(2, now + 31_000), now).is_err());
    }

    #[test]
    fn a_replay_is_refused_for_as_long_as_its_time_is_fresh() {
        let skew = 30_000;
        let mut guard = ReplayGuard::new(Duration::from_millis(skew));
        let sent = 10_000_000;
        // First seen at the earliest moment its time passes the check...
        assert_eq!(guard.check(&opened(9, sent), sent - skew), Ok(()));
        // ...and replayed every second until its time fails the check.
        let mut at = sent - skew + 1_000;
        while at <= sent + skew {
            assert_eq!(
                guard.check(&opened(9, sent), at),
                Err(SealError::Replayed),
                "at {at}"
            );
            // Other traffic keeps the generations turning.
            let _ = guard.check(&opened((at / 1000 % 250) as u8, at), at);
            at += 1_000;
        }
        assert!(matches!(
            guard.check(&opened(9, sent), at),
            Err(SealError::Stale { .. })
        ));
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_fresh_datagrams() {
        let mut guard = ReplayGuard::new(Duration::from_secs(30));
        let now = 1_000_000;
        for i in 0..(3 * MAX_REMEMBERED as u64) {
            let mut nonce = [0u8; NONCE_LEN];
            nonce[..8].copy_from_slice(&i.to_be_bytes());
            let o = Opened {
                message: b"",
                sent_at_ms: now,
                nonce,
            };
            assert_eq!(guard.check(&o, now), Ok(()));
        }
        assert!(guard.current.len() + guard.previous.len() <= 2 * MAX_REMEMBERED);
        assert_eq!(guard.early_turns(), 3);
    }
}
