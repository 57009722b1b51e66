//! How changes of other members reach the node's log: every change is
//! counted; the first few of each summary interval are logged one by one
//! (at info), the rest only in the summary, one `membership changes` line
//! per interval in which anything changed. On a cluster of a thousand
//! nodes a storm of changes then costs each node a line every ten
//! seconds, not a line per member (issue 23: 8.4 million lines, mostly
//! `member down` warnings from every node about every other).

use std::time::{Duration, Instant};

/// A change of another member, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Up,
    Suspect,
    Down,
    Left,
}

/// Changes logged one by one per interval; the rest are only summarised.
const LOGGED_PER_INTERVAL: u32 = 16;

/// How often the summary is logged (when anything changed).
pub(super) const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// The counts since the last summary.
#[derive(Debug)]
pub(super) struct ChangeLog {
    up: u64,
    suspect: u64,
    down: u64,
    left: u64,
    /// Changes not logged one by one (over the interval's budget).
    unlisted: u64,
    logged: u32,
    since: Instant,
}

impl Default for ChangeLog {
    fn default() -> Self {
        Self {
            up: 0,
            suspect: 0,
            down: 0,
            left: 0,
            unlisted: 0,
            logged: 0,
            since: Instant::now(),
        }
    }
}

impl ChangeLog {
    /// Counts `change`; whether to log it on its own line.
    pub(super) fn note(&mut self, change: Change) -> bool {
        match change {
            Change::Up => self.up += 1,
            Change::Suspect => self.suspect += 1,
            Change::Down => self.down += 1,
            Change::Left => self.left += 1,
        }
        if self.logged < LOGGED_PER_INTERVAL {
            self.logged += 1;
            true
        } else {
            self.unlisted += 1;
            false
        }
    }

    /// The summary line's counts, if one is due (an interval passed and
    /// something changed); starts the next interval then.
    pub(super) fn due(&mut self, now: Instant) -> Option<Summary> {
        if now.saturating_duration_since(self.since) < SUMMARY_INTERVAL
            || self.up + self.suspect + self.down + self.left == 0
        {
            return None;
        }
        let summary = Summary {
            up: self.up,
            suspect: self.suspect,
            down: self.down,
            left: self.left,
            unlisted: self.unlisted,
            over: now.saturating_duration_since(self.since),
        };
        *self = Self {
            since: now,
            ..Self::default()
        };
        Some(summary)
    }
}

/// Changes over one interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Summary {
    pub(super) up: u64,
    pub(super) suspect: u64,
    pub(super) down: u64,
    pub(super) left: u64,
    pub(super) unlisted: u64,
    pub(super) over: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_of_changes_logs_a_few_lines_and_one_summary_per_interval() {
        let start = Instant::now();
        let mut log = ChangeLog {
            since: start,
            ..ChangeLog::default()
        };
        let listed = (0..1000)
            .filter(|i| log.note(if i % 2 == 0 { Change::Down } else { Change::Up }))
            .count();
        assert_eq!(listed, LOGGED_PER_INTERVAL as usize);
        assert_eq!(log.due(start + Duration::from_secs(1)), None);
        let summary = log.due(start + SUMMARY_INTERVAL).unwrap();
        assert_eq!((summary.down, summary.up), (500, 500));
        assert_eq!(summary.unlisted, 1000 - u64::from(LOGGED_PER_INTERVAL));
        // A new interval: its budget is whole again, and a quiet one logs nothing.
        assert!(log.note(Change::Left));
        assert_eq!(
            log.due(start + SUMMARY_INTERVAL * 2).map(|s| s.left),
            Some(1)
        );
        assert_eq!(log.due(start + SUMMARY_INTERVAL * 4), None);
    }
}
