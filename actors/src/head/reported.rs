//! The leader's side of renewal reports: what each node last reported
//! running, rebuilt from full reports and deltas (the node's side is
//! `crate::supervision::Reporter`). Pure bookkeeping, shared by the
//! placement supervisor and the control-plane simulator.
//!
//! A delta is applied only onto the very report it names as its base, in
//! the same keeper life; a report older than the one held (a replay, or
//! one overtaken by a later one) is refused and changes nothing, the one
//! held again (the node's retry) answers the same list; a delta whose base
//! is not held (a lost grant, a new leader, a restarted node) is answered
//! with a request for the full list. A new leadership starts empty.

use std::collections::{BTreeMap, HashMap};

use swarm_protocol::NodeId;

use crate::supervision::{Report, Running};

/// Why a report was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// It is older than the report held from this keeper life.
    #[error("a report not newer than the one held")]
    Stale,
    /// A delta onto a report this leader does not hold: send the full list.
    #[error("a delta onto a report the leader does not hold")]
    Resync,
    /// It lists more running actors than a node may report.
    #[error("more than {limit} running actors")]
    TooMany {
        /// The most a node may report.
        limit: usize,
    },
}

/// What each node last reported, by node.
#[derive(Debug, Default)]
pub(crate) struct Reported {
    nodes: HashMap<NodeId, Held>,
}

/// One node's last report taken.
#[derive(Debug)]
struct Held {
    session: u64,
    seq: u64,
    running: BTreeMap<String, (u64, bool)>,
}

impl Reported {
    /// Takes `report` from `node` (the link's authenticated peer):
    /// answers the whole list it runs now.
    ///
    /// # Errors
    ///
    /// [`Refusal`]: nothing held changes, except that a report over the
    /// limit drops what was held (the next one must be full).
    pub(crate) fn take(&mut self, node: NodeId, report: &Report) -> Result<Vec<Running>, Refusal> {
        let held = self.nodes.get(&node);
        if let Some(h) = held.filter(|h| h.session == report.session && h.seq >= report.seq) {
            // The node's own retry of the report held (its answer was
            // lost): the same list again, nothing changes.
            if h.seq == report.seq {
                return Ok(list(&h.running));
            }
            return Err(Refusal::Stale);
        }
        let onto_held = match (report.base, held) {
            (None, _) => false,
            (Some(base), Some(h)) if h.session == report.session && h.seq == base => true,
            (Some(_), _) => return Err(Refusal::Resync),
        };
        // A delta edits the held list in place (no copy per renewal); every
        // path below either stores the result or drops the node's record.
        let mut running = if onto_held {
            self.nodes
                .remove(&node)
                .map(|h| h.running)
                .unwrap_or_default()
        } else {
            BTreeMap::new()
        };
        for name in &report.gone {
            running.remove(name);
        }
        for r in &report.running {
            running.insert(r.name.clone(), (r.epoch, r.failed));
            if running.len() > MAX_RUNNING {
                self.nodes.remove(&node);
                return Err(Refusal::TooMany { limit: MAX_RUNNING });
            }
        }
        let list = list(&running);
        self.nodes.insert(
            node,
            Held {
                session: report.session,
                seq: report.seq,
                running,
            },
        );
        Ok(list)
    }

    /// A new leadership, or none: nothing is held.
    pub(crate) fn clear(&mut self) {
        self.nodes.clear();
    }
}

/// The list a held report stands for.
fn list(running: &BTreeMap<String, (u64, bool)>) -> Vec<Running> {
    running
        .iter()
        .map(|(name, (epoch, failed))| Running {
            name: name.clone(),
            epoch: *epoch,
            failed: *failed,
        })
        .collect()
}

/// The most head-placed actors one node may report running: a bound on
/// what one node's reports make the leader hold (about 60 MiB at most),
/// not a quota. Placement does not know it, so it is far above what a
/// node hosts (a million actors over six nodes is 170,000 each); a node
/// refused for it loses its lease and its actors move.
pub(crate) const MAX_RUNNING: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervision::Reporter;

    fn node(n: u8) -> NodeId {
        NodeId::from_bytes([n; 16])
    }

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
    fn deltas_rebuild_the_list_the_node_runs() {
        let mut leader = Reported::default();
        let mut r = Reporter::new(1);
        for list in [
            vec![running("a", 1), running("b", 1)],
            vec![running("a", 1), running("b", 2), running("c", 1)],
            vec![running("c", 1)],
            vec![],
            vec![running("d", 4)],
        ] {
            let report = r.report(&list, &types());
            assert_eq!(leader.take(node(1), &report), Ok(list));
            r.granted(report.seq, false);
        }
    }

    #[test]
    fn a_lost_grant_costs_a_full_report_and_loses_no_stop_or_start() {
        let mut leader = Reported::default();
        let mut r = Reporter::new(1);
        let first = r.report(&[running("a", 1)], &types());
        leader.take(node(1), &first).unwrap();
        r.granted(first.seq, false);
        // The leader takes "a" gone and "b" new, but its grant is lost.
        let second = r.report(&[running("b", 1)], &types());
        leader.take(node(1), &second).unwrap();
        r.failed();
        let third = r.report(&[running("b", 1), running("c", 1)], &types());
        assert_eq!(third.base, None);
        assert_eq!(
            leader.take(node(1), &third),
            Ok(vec![running("b", 1), running("c", 1)])
        );
    }

    #[test]
    fn a_delta_onto_a_report_the_leader_lacks_asks_for_the_full_list() {
        let mut leader = Reported::default();
        let mut r = Reporter::new(1);
        let first = r.report(&[running("a", 1)], &types());
        leader.take(node(1), &first).unwrap();
        r.granted(first.seq, false);
        // A new leader (or this one after losing leadership) holds nothing.
        leader.clear();
        let delta = r.report(&[running("a", 1), running("b", 1)], &types());
        assert_eq!(leader.take(node(1), &delta), Err(Refusal::Resync));
        r.granted(delta.seq, true);
        let full = r.report(&[running("a", 1), running("b", 1)], &types());
        assert_eq!(full.base, None);
        assert_eq!(leader.take(node(1), &full).unwrap().len(), 2);
        // Another node's delta never lands on this node's list.
        let mut other = full.clone();
        other.seq += 1;
        other.base = Some(full.seq);
        assert_eq!(leader.take(node(2), &other), Err(Refusal::Resync));
    }

    #[test]
    fn a_replayed_or_overtaken_report_does_not_roll_the_list_back() {
        let mut leader = Reported::default();
        let mut r = Reporter::new(1);
        let first = r.report(&[running("a", 1)], &types());
        leader.take(node(1), &first).unwrap();
        r.granted(first.seq, false);
        let second = r.report(&[], &types());
        leader.take(node(1), &second).unwrap();
        assert_eq!(leader.take(node(1), &first), Err(Refusal::Stale));
        assert_eq!(leader.take(node(1), &second), Ok(vec![]), "a retry");
        r.granted(second.seq, false);
        let third = r.report(&[running("b", 1)], &types());
        assert_eq!(leader.take(node(1), &third), Ok(vec![running("b", 1)]));
    }

    #[test]
    fn a_restarted_node_starts_over_with_a_full_report_and_its_old_deltas_are_refused() {
        let mut leader = Reported::default();
        let mut old = Reporter::new(1);
        let first = old.report(&[running("a", 1)], &types());
        leader.take(node(1), &first).unwrap();
        old.granted(first.seq, false);
        let stale_delta = old.report(&[], &types());
        let mut new = Reporter::new(2);
        let fresh = new.report(&[], &types());
        assert_eq!(fresh.base, None);
        assert_eq!(leader.take(node(1), &fresh), Ok(vec![]));
        assert_eq!(leader.take(node(1), &stale_delta), Err(Refusal::Resync));
    }

    #[test]
    fn a_report_over_the_limit_is_refused_and_drops_what_was_held() {
        let mut leader = Reported::default();
        let many: Vec<Running> = (0..=MAX_RUNNING)
            .map(|i| running(&format!("a{i}"), 1))
            .collect();
        let mut r = Reporter::new(1);
        let small = r.report(&[], &types());
        leader.take(node(1), &small).unwrap();
        r.granted(small.seq, false);
        let report = r.report(&many, &types());
        assert_eq!(
            leader.take(node(1), &report),
            Err(Refusal::TooMany { limit: MAX_RUNNING })
        );
        let mut next = report.clone();
        next.seq += 1;
        next.base = Some(small.seq);
        next.running.clear();
        assert_eq!(leader.take(node(1), &next), Err(Refusal::Resync));
    }
}
