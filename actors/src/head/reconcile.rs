//! The leader's half of "one epoch, one incarnation", as pure bookkeeping:
//! which placements this leader delivered to their host, and what a
//! renewing node must start, restart under a new epoch, or stop. No clock
//! and no actors, so the supervisor and the control-plane simulator
//! (`super::sim`) run the same code.
//!
//! An epoch is delivered to its host at most once per leadership: when the
//! placement is committed (pushed) or, if that push has not gone out yet,
//! in the next grant. A placement that a renewal does not report running
//! although its host has seen the delivery (the renewal's `seen_index` is
//! at least the delivery's fence) was lost: the host restarted, rejoined or
//! refused it. It is never started again under that epoch: the leader
//! commits a new epoch for it (same node) and delivers that. A new leader
//! knows of no delivery, so every placement a renewal does not report
//! restarts under a new epoch. A host, for its part, never starts an epoch
//! twice in its life (`crate::supervision::Fencing`).

use std::collections::HashMap;

use swarm_protocol::NodeId;

use super::state::{ControlState, RecordState};
use crate::supervision::Running;

/// A placement of this leader on its way to its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// Its write is in flight: the epoch is not known yet.
    Writing,
    /// Committed under `epoch`; delivered at `fence` (a log index) if at all.
    Committed {
        /// Its epoch.
        epoch: u64,
        /// The fence it was delivered with.
        fence: Option<u64>,
    },
}

/// This leader's deliveries, by name (forgotten once the host reports the
/// placement running, or the name is placed anew).
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    pending: HashMap<String, Pending>,
    /// Counts leaderships: a write of an earlier one that resolves late
    /// (openraft answers it once applied, even on a follower) records and
    /// delivers nothing.
    generation: u64,
}

impl Deliveries {
    /// A placement write for `name` goes out now: answers the leadership
    /// it belongs to, for the calls that follow.
    pub(crate) fn writing(&mut self, name: &str) -> u64 {
        self.pending.insert(name.to_owned(), Pending::Writing);
        self.generation
    }

    /// The write for `name`, of leadership `generation`, committed under
    /// `epoch`.
    pub(crate) fn committed(&mut self, name: &str, epoch: u64, generation: u64) {
        if generation == self.generation {
            self.pending
                .insert(name.to_owned(), Pending::Committed { epoch, fence: None });
        }
    }

    /// The write for `name`, of leadership `generation`, failed or placed
    /// nothing.
    pub(crate) fn abandoned(&mut self, name: &str, generation: u64) {
        if generation == self.generation && self.pending.get(name) == Some(&Pending::Writing) {
            self.pending.remove(name);
        }
    }

    /// Whether to deliver `name`'s `epoch` at `fence` now (for leadership
    /// `generation`): true once, for a placement this leader committed and
    /// has not delivered.
    pub(crate) fn deliver(&mut self, name: &str, epoch: u64, fence: u64, generation: u64) -> bool {
        if generation != self.generation {
            return false;
        }
        match self.pending.get_mut(name) {
            Some(Pending::Committed {
                epoch: e,
                fence: f @ None,
            }) if *e == epoch => {
                *f = Some(fence);
                true
            }
            _ => false,
        }
    }

    /// The host answered the push of `name`'s `epoch` (leadership
    /// `generation`) without starting it: a grant overtook the push (the
    /// grant's index covers the push's fence, so the host refused the push
    /// as superseded) or the node held no lease at that moment. The host
    /// did not start it, so the next grant delivers it again, under the
    /// same epoch, instead of the renewal taking it for lost (a new epoch,
    /// a restart of an actor that never ran). A host never starts an epoch
    /// twice in its life, and this one did not start it at all.
    pub(crate) fn refused(&mut self, name: &str, epoch: u64, generation: u64) {
        if generation != self.generation {
            return;
        }
        if let Some(Pending::Committed { epoch: e, fence }) = self.pending.get_mut(name) {
            if *e == epoch {
                *fence = None;
            }
        }
    }

    /// A new leadership, or none: no delivery is known, and the writes of
    /// the last one deliver nothing.
    pub(crate) fn clear(&mut self) {
        self.pending.clear();
        self.generation += 1;
    }

    /// The current leadership.
    #[cfg(test)]
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// How many are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }
}

/// What a renewing node must do to run exactly what the log places on it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Deliver these (name, epoch) in the grant (first delivery).
    pub(crate) start: Vec<(String, u64)>,
    /// Lost: commit a new epoch on the same node for these (name, old epoch).
    pub(crate) restart: Vec<(String, u64)>,
    /// Stop these (name, epoch): not placed there under that epoch.
    pub(crate) stop: Vec<(String, u64)>,
    /// Failed past their restart policy (name, epoch).
    pub(crate) escalated: Vec<(String, u64)>,
}

/// The plan for `node`, which reports `running` and has seen fences up to
/// `seen_index`; the grant goes out at log index `index`. Names for which
/// `busy` is true (a move or restart in flight) are left alone.
pub(crate) fn plan(
    state: &ControlState,
    node: NodeId,
    running: &[Running],
    seen_index: u64,
    index: u64,
    deliveries: &mut Deliveries,
    busy: impl Fn(&str) -> bool,
) -> Plan {
    let reported: HashMap<&str, &Running> = running.iter().map(|r| (r.name.as_str(), r)).collect();
    let mut plan = Plan::default();
    for (name, record) in state.placed_on(node) {
        let pending = deliveries.pending.get(name.as_str()).copied();
        if let Some(r) = reported
            .get(name.as_str())
            .filter(|r| r.epoch == record.epoch)
        {
            if matches!(pending, Some(Pending::Committed { epoch, .. }) if epoch <= record.epoch) {
                deliveries.pending.remove(name.as_str());
            }
            if r.failed {
                plan.escalated.push((name.clone(), record.epoch));
            }
            continue;
        }
        if busy(name) {
            continue;
        }
        match pending {
            Some(Pending::Writing) => {}
            Some(Pending::Committed { epoch, fence: None }) if epoch == record.epoch => {
                let generation = deliveries.generation;
                deliveries.deliver(name, epoch, index, generation);
                plan.start.push((name.clone(), epoch));
            }
            // Delivered, the host has not seen it yet: on its way.
            Some(Pending::Committed {
                epoch,
                fence: Some(fence),
            }) if epoch == record.epoch && seen_index < fence => {}
            // Delivered and seen, or delivered by an earlier leader (or
            // never by this one): lost.
            _ => plan.restart.push((name.clone(), record.epoch)),
        }
    }
    plan.stop = running
        .iter()
        .filter(|r| {
            state.actor(&r.name).is_none_or(|rec| {
                rec.node != node || rec.epoch != r.epoch || rec.state != RecordState::Placed
            })
        })
        .map(|r| (r.name.clone(), r.epoch))
        .collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::state::{ActorSpec, Applied, Command};

    fn node(n: u8) -> NodeId {
        NodeId::from_bytes([n; 16])
    }

    fn place(state: &mut ControlState, name: &str, on: NodeId, expect: Option<u64>) -> u64 {
        let spec = ActorSpec::for_tests("demo.Ledger");
        match state.apply(Command::Place {
            name: name.to_owned(),
            spec,
            node: on,
            expect,
        }) {
            Applied::Placed { epoch } => epoch,
            other => panic!("{other:?}"),
        }
    }

    fn running(name: &str, epoch: u64) -> Running {
        Running {
            name: name.to_owned(),
            epoch,
            failed: false,
        }
    }

    #[test]
    fn a_committed_placement_is_delivered_once_then_waited_for_then_restarted_if_lost() {
        let mut state = ControlState::default();
        let mut d = Deliveries::default();
        let g = d.writing("a");
        // Applied but its write's answer not back: not lost, not started.
        let e = place(&mut state, "a", node(1), None);
        let p = plan(&state, node(1), &[], 0, 5, &mut d, |_| false);
        assert_eq!(p, Plan::default());
        d.committed("a", e, g);
        // Pushed at fence 5: a grant does not deliver it again.
        assert!(d.deliver("a", e, 5, g));
        assert!(!d.deliver("a", e, 6, g));
        let p = plan(&state, node(1), &[], 4, 6, &mut d, |_| false);
        assert_eq!(p, Plan::default(), "the host has not seen fence 5 yet");
        let p = plan(&state, node(1), &[], 6, 7, &mut d, |_| false);
        assert_eq!(p.restart, vec![("a".to_owned(), e)], "seen and not running");
        assert!(p.start.is_empty());
    }

    #[test]
    fn a_push_a_grant_overtook_is_delivered_again_by_the_next_grant_not_restarted() {
        use crate::supervision::{Admission, Fencing};
        use std::time::{Duration, Instant};
        let mut state = ControlState::default();
        let mut d = Deliveries::default();
        let mut host = Fencing::default();
        let now = Instant::now();
        let g = d.writing("a");
        let e = place(&mut state, "a", node(1), None);
        // A renewal answered while the write applied but before its answer
        // came back: the grant (index 6) does not list "a" ...
        let p = plan(&state, node(1), &[], 0, 6, &mut d, |_| false);
        assert_eq!(p, Plan::default());
        host.grant(now + Duration::from_secs(3), 6);
        // ... and overtakes the push (fence 5): the host refuses the push.
        d.committed("a", e, g);
        assert!(d.deliver("a", e, 5, g));
        assert!(host.admit("a", e, 5, false, now).is_err(), "superseded");
        d.refused("a", e, g);
        // The next renewal sees fence 6 and "a" not running: the grant
        // delivers the same epoch again rather than a new one.
        let p = plan(&state, node(1), &[], 6, 7, &mut d, |_| false);
        assert_eq!(p.start, vec![("a".to_owned(), e)]);
        assert!(p.restart.is_empty(), "it never ran: nothing to restart");
        assert!(matches!(
            host.admit("a", e, 7, true, now),
            Ok(Admission::Start { .. })
        ));
        // A refusal reported for another epoch or leadership changes nothing.
        d.refused("a", e + 1, g);
        d.refused("a", e, g + 1);
        let p = plan(&state, node(1), &[], 6, 8, &mut d, |_| false);
        assert_eq!(
            p,
            Plan::default(),
            "delivered at 7, not seen yet: on its way"
        );
    }

    #[test]
    fn a_grant_delivers_what_no_push_did_and_forgets_it_once_it_runs() {
        let mut state = ControlState::default();
        let mut d = Deliveries::default();
        let e = place(&mut state, "a", node(1), None);
        d.committed("a", e, d.generation());
        let p = plan(&state, node(1), &[], 0, 9, &mut d, |_| false);
        assert_eq!(p.start, vec![("a".to_owned(), e)]);
        assert!(
            !d.deliver("a", e, 9, d.generation()),
            "the push that comes late does not go"
        );
        let p = plan(&state, node(1), &[running("a", e)], 9, 10, &mut d, |_| {
            false
        });
        assert_eq!(p, Plan::default());
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn a_write_of_an_earlier_leadership_that_resolves_late_delivers_nothing() {
        let mut state = ControlState::default();
        let mut d = Deliveries::default();
        let g = d.writing("a");
        let e = place(&mut state, "a", node(1), None);
        // Leadership lost and won again while the write was in flight.
        d.clear();
        d.committed("a", e, g);
        assert!(
            !d.deliver("a", e, 5, g),
            "no push from a deposed leadership"
        );
        let p = plan(&state, node(1), &[], 0, 6, &mut d, |_| false);
        assert_eq!(
            p.restart,
            vec![("a".to_owned(), e)],
            "the new leadership restarts it"
        );
    }

    #[test]
    fn a_new_leader_restarts_what_is_not_reported_and_stops_what_is_not_placed() {
        let mut state = ControlState::default();
        let e = place(&mut state, "a", node(1), None);
        let old = place(&mut state, "b", node(1), None);
        let moved = place(&mut state, "b", node(2), Some(old));
        let mut d = Deliveries::default();
        let p = plan(&state, node(1), &[running("b", old)], 0, 9, &mut d, |_| {
            false
        });
        assert_eq!(p.restart, vec![("a".to_owned(), e)]);
        assert_eq!(p.stop, vec![("b".to_owned(), old)]);
        let p = plan(&state, node(2), &[], 0, 9, &mut d, |n| n == "b");
        assert!(p.restart.is_empty(), "a move in flight is left alone");
        assert_ne!(moved, old);
    }
}
