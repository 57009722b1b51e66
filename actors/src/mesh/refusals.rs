//! Refused connections, logged without flooding the log: the first few in
//! each interval are logged one by one with their remote address and
//! reason; the rest are counted per reason and summarised in one line when
//! the interval ends. A reconnecting flood costs a handful of lines per
//! interval, not one per connection.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Refusals logged one by one per interval before the rest are summarised.
const DETAILED_PER_INTERVAL: u32 = 5;

/// Why a connection was refused before it became a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Refusal {
    /// The global bound on handshakes in progress was reached.
    TooManyHandshakes,
    /// The bound on handshakes in progress from one address was reached.
    TooManyFromSource,
    /// Nothing arrived within the first-byte deadline.
    Silent,
    /// Nothing arrived yet, and the pool of silent connections was full:
    /// a newer connection took its place.
    PushedOut,
    /// The handshake failed (bad frame, wrong secret or certificate, timeout).
    HandshakeFailed,
    /// `accept` itself failed (typically out of file descriptors).
    AcceptFailed,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::TooManyHandshakes => "too many handshakes in progress",
            Refusal::TooManyFromSource => "too many handshakes from one address",
            Refusal::Silent => "nothing sent within the first-byte deadline",
            Refusal::PushedOut => "silent, pushed out by a newer connection",
            Refusal::HandshakeFailed => "handshake failed",
            Refusal::AcceptFailed => "accept failed",
        }
    }
}

/// Counts and rate-limits refusal log lines. One per listener.
#[derive(Debug)]
pub(super) struct RefusalLog {
    interval: Duration,
    started: Instant,
    logged: u32,
    suppressed: BTreeMap<Refusal, u64>,
}

impl RefusalLog {
    pub(super) fn new(interval: Duration, now: Instant) -> Self {
        Self {
            interval,
            started: now,
            logged: 0,
            suppressed: BTreeMap::new(),
        }
    }

    /// Records one refusal; logs it if this interval's budget allows.
    pub(super) fn refused(
        &mut self,
        now: Instant,
        remote: Option<SocketAddr>,
        why: Refusal,
        detail: &dyn Display,
    ) {
        self.roll(now);
        if self.logged < DETAILED_PER_INTERVAL {
            self.logged += 1;
            match remote {
                Some(remote) => {
                    tracing::warn!(%remote, reason = %detail, kind = why.as_str(), "handshake refused")
                }
                None => tracing::warn!(error = %detail, kind = why.as_str(), "accept failed"),
            }
        } else {
            *self.suppressed.entry(why).or_default() += 1;
        }
    }

    /// Ends the interval if it is over: logs the summary of what was not
    /// logged one by one, if anything. Returns whether it logged.
    pub(super) fn roll(&mut self, now: Instant) -> bool {
        if now.duration_since(self.started) < self.interval {
            return false;
        }
        let logged = !self.suppressed.is_empty();
        if logged {
            let total: u64 = self.suppressed.values().sum();
            let counts: Vec<String> = self
                .suppressed
                .iter()
                .map(|(why, n)| format!("{}: {n}", why.as_str()))
                .collect();
            tracing::warn!(
                total,
                counts = %counts.join(", "),
                "{total} more connections refused in the last {:?} (summarised)",
                self.interval
            );
        }
        self.started = now;
        self.logged = 0;
        self.suppressed.clear();
        logged
    }

    /// Refusals counted but not yet logged in this interval.
    #[cfg(test)]
    fn pending(&self) -> u64 {
        self.suppressed.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_logged_a_few_times_then_summarised_once_per_interval() {
        let start = Instant::now();
        let mut log = RefusalLog::new(Duration::from_secs(10), start);
        let remote = Some(SocketAddr::from(([127, 0, 0, 2], 9)));
        for i in 0..10_000u64 {
            let now = start + Duration::from_micros(i);
            log.refused(now, remote, Refusal::Silent, &"silent");
        }
        assert_eq!(log.logged, DETAILED_PER_INTERVAL);
        assert_eq!(log.pending(), 10_000 - u64::from(DETAILED_PER_INTERVAL));
        assert!(!log.roll(start + Duration::from_secs(9)));
        assert!(log.roll(start + Duration::from_secs(10)));
        assert_eq!((log.logged, log.pending()), (0, 0));
        // A quiet interval logs nothing.
        assert!(!log.roll(start + Duration::from_secs(30)));
    }
}
