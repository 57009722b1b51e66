//! What a lease renewal says the node runs, as a pure machine: the whole
//! list, or only what changed since the last report the leader
//! acknowledged (by sequence number). The lease keeper task
//! (`control::lease`) and the control-plane simulator drive the same one;
//! the leader's side, which rebuilds the list, is `head::reported`.
//!
//! A report is a delta only against one the leader answered with a grant
//! (so the leader holds it); on any doubt (a renewal unanswered, an answer
//! for another report, the leader asking for it, new registered types, or
//! every [`FULL_EVERY`] reports anyway) the next report is the full list.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Running;

/// One renewal's report of what the node runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Report {
    /// This life of the node's keeper (random): a restarted node starts a
    /// new one, and the leader then takes only a full report from it.
    pub(crate) session: u64,
    /// Counts this life's reports, from 1: the leader never takes one
    /// that is not newer than the one it holds (replays, reordering).
    pub(crate) seq: u64,
    /// `None`: `running` is the whole list. `Some(b)`: `running` and
    /// `gone` are the changes since report `b`, which the leader answered.
    pub(crate) base: Option<u64>,
    /// The head-placed actors it runs (all of them, or those new or
    /// changed since `base`).
    pub(crate) running: Vec<Running>,
    /// Names it ran at `base` and no longer runs (deltas only).
    pub(crate) gone: Vec<String>,
    /// The actor types it may start (full reports only; a delta keeps
    /// those of the last full one).
    pub(crate) types: Vec<String>,
}

/// What the node last reported, as the leader may hold it.
type Listed = BTreeMap<String, (u64, bool)>;

/// The node's side: what to report next.
#[derive(Debug, Clone)]
pub(crate) struct Reporter {
    session: u64,
    seq: u64,
    /// The report the leader acknowledged: its number, list and types.
    acked: Option<(u64, Listed, Vec<String>)>,
    /// The report waiting for its answer.
    sent: Option<(u64, Listed, Vec<String>)>,
    /// Reports since the last full one.
    deltas: u32,
}

impl Reporter {
    /// A new life of the keeper, `session` drawn at random.
    pub(crate) fn new(session: u64) -> Self {
        Self {
            session,
            seq: 0,
            acked: None,
            sent: None,
            deltas: 0,
        }
    }

    /// The report for a renewal that goes out now, the node running
    /// `running` and able to start `types`.
    pub(crate) fn report(&mut self, running: &[Running], types: &[String]) -> Report {
        self.seq += 1;
        let listed: Listed = running
            .iter()
            .map(|r| (r.name.clone(), (r.epoch, r.failed)))
            .collect();
        let base = self
            .acked
            .as_ref()
            .filter(|(_, _, t)| t.as_slice() == types && self.deltas + 1 < FULL_EVERY);
        let report = match base {
            Some((base, acked, _)) => {
                self.deltas += 1;
                Report {
                    session: self.session,
                    seq: self.seq,
                    base: Some(*base),
                    running: running
                        .iter()
                        .filter(|r| acked.get(&r.name) != Some(&(r.epoch, r.failed)))
                        .cloned()
                        .collect(),
                    gone: acked
                        .keys()
                        .filter(|name| !listed.contains_key(*name))
                        .cloned()
                        .collect(),
                    types: Vec::new(),
                }
            }
            None => {
                self.deltas = 0;
                Report {
                    session: self.session,
                    seq: self.seq,
                    base: None,
                    running: running.to_vec(),
                    gone: Vec::new(),
                    types: types.to_vec(),
                }
            }
        };
        self.sent = Some((self.seq, listed, types.to_vec()));
        report
    }

    /// The grant answering report `seq` arrived; `resync`: the leader did
    /// not hold its base and wants the full list.
    pub(crate) fn granted(&mut self, seq: u64, resync: bool) {
        match self.sent.take() {
            Some(sent) if sent.0 == seq && !resync => self.acked = Some(sent),
            _ => self.acked = None,
        }
    }

    /// The renewal got no grant: the leader may or may not hold its
    /// report, so the next one is full.
    pub(crate) fn failed(&mut self) {
        self.sent = None;
        self.acked = None;
    }
}

/// A full report at least this often, even when every delta was answered:
/// a leader that lost track some way this machine does not see catches up.
const FULL_EVERY: u32 = 64;

#[cfg(test)]
mod tests {
    use super::*;

    fn running(name: &str, epoch: u64) -> Running {
        Running {
            name: name.to_owned(),
            epoch,
            failed: false,
        }
    }

    fn types() -> Vec<String> {
        vec!["demo.Ledger".to_owned()]
    }

    #[test]
    fn the_first_report_is_full_and_an_answered_one_makes_the_next_a_delta() {
        let mut r = Reporter::new(7);
        let first = r.report(&[running("a", 1), running("b", 2)], &types());
        assert_eq!((first.seq, first.base, first.running.len()), (1, None, 2));
        assert_eq!(first.types, types());
        r.granted(first.seq, false);
        let second = r.report(&[running("a", 1), running("c", 3)], &types());
        assert_eq!(second.base, Some(1));
        assert_eq!(second.running, vec![running("c", 3)]);
        assert_eq!(second.gone, vec!["b".to_owned()]);
        assert!(second.types.is_empty());
        r.granted(second.seq, false);
        let third = r.report(&[running("a", 1), running("c", 3)], &types());
        assert_eq!(third.base, Some(2));
        assert!(
            third.running.is_empty() && third.gone.is_empty(),
            "nothing changed"
        );
    }

    #[test]
    fn a_lost_grant_a_resync_or_an_answer_for_another_report_makes_the_next_report_full() {
        let mut r = Reporter::new(7);
        let first = r.report(&[running("a", 1)], &types());
        r.granted(first.seq, false);
        let _lost = r.report(&[], &types());
        r.failed();
        assert_eq!(r.report(&[], &types()).base, None, "after a lost grant");
        r.granted(3, false);
        let delta = r.report(&[], &types());
        assert_eq!(delta.base, Some(3));
        r.granted(delta.seq, true);
        assert_eq!(
            r.report(&[], &types()).base,
            None,
            "the leader asked for it"
        );
        r.granted(1, false);
        assert_eq!(
            r.report(&[], &types()).base,
            None,
            "answer for another report"
        );
    }

    #[test]
    fn new_types_or_many_deltas_in_a_row_make_a_full_report() {
        let mut r = Reporter::new(7);
        let first = r.report(&[], &types());
        r.granted(first.seq, false);
        let more = vec!["demo.Ledger".to_owned(), "demo.Other".to_owned()];
        let report = r.report(&[], &more);
        assert_eq!((report.base, report.types.clone()), (None, more.clone()));
        r.granted(report.seq, false);
        let mut fulls = 0;
        for _ in 0..FULL_EVERY * 2 {
            let report = r.report(&[], &more);
            fulls += u32::from(report.base.is_none());
            r.granted(report.seq, false);
        }
        assert_eq!(fulls, 2);
    }
}
