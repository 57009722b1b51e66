//! `swarm.DrainNode`: an admin drains a node, and the head answers with
//! what became of each named actor there. The drain itself (moving,
//! refusing, forcing, asking the node to leave) is the supervisor's
//! (`head::supervisor::moves`); this file holds the request, the report
//! and the report's bounded decoder.

use std::fmt;

use actix::Message;
use serde::de::{Deserializer, Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use swarm_protocol::NodeId;

use super::ControlError;

/// Drains a node: no new placements there; its named actors move one by
/// one (each stopped before it starts elsewhere). If every one moved (or
/// `force`), the node is asked to leave; otherwise the drain stops, what
/// cannot move keeps running there, and the node takes placements again.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<DrainReport, ControlError>")]
pub(crate) struct DrainNode {
    /// The node.
    pub(crate) node: NodeId,
    /// Stop what cannot move (recording it failed, with the reason) and
    /// let the node leave anyway.
    #[serde(default)]
    pub(crate) force: bool,
}

/// What a drain did, actor by actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrainReport {
    /// The node drained.
    pub node: NodeId,
    /// The node was asked to leave: every actor moved, or the drain was
    /// forced. Otherwise it stays, and takes placements again.
    pub left: bool,
    /// Actors that moved.
    pub moved: usize,
    /// Actors that cannot move and keep running on the node.
    pub stayed: usize,
    /// Actors a forced drain stopped and recorded failed.
    pub stopped: usize,
    /// Each actor's outcome, those that did not move first; at most
    /// [`MAX_REPORTED`] (the counts cover every actor). A longer list is
    /// refused when decoded.
    #[serde(deserialize_with = "bounded")]
    pub actors: Vec<DrainedActor>,
}

/// One actor of a drained node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrainedActor {
    /// Its name.
    pub name: String,
    /// Its type.
    pub type_name: String,
    /// What became of it.
    pub outcome: DrainOutcome,
}

/// What became of one actor of a drained node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DrainOutcome {
    /// It runs on `node` now, under a new `epoch`.
    Moved {
        /// Where it runs.
        node: NodeId,
        /// Its new epoch.
        epoch: u64,
    },
    /// It has nowhere to go, or its move failed: it stays on the drained
    /// node, running, and the drain stopped.
    Stayed {
        /// Why it cannot move (a placement error says which constraint or
        /// resource).
        reason: ControlError,
    },
    /// It had nowhere to go; the forced drain stopped it and recorded it
    /// failed with this reason.
    Stopped {
        /// Why it could not move.
        reason: ControlError,
    },
    /// It was stopped or moved by someone else while the drain ran.
    Gone,
}

/// The most actors a [`DrainReport`] lists.
pub const MAX_REPORTED: usize = 4096;

impl DrainReport {
    /// The report of `node`'s drain: counts over every actor; the list
    /// keeps those that did not move first, at most [`MAX_REPORTED`].
    pub(crate) fn new(node: NodeId, left: bool, mut actors: Vec<DrainedActor>) -> Self {
        let count = |f: fn(&DrainOutcome) -> bool| actors.iter().filter(|a| f(&a.outcome)).count();
        let moved = count(|o| matches!(o, DrainOutcome::Moved { .. }));
        let stayed = count(|o| matches!(o, DrainOutcome::Stayed { .. }));
        let stopped = count(|o| matches!(o, DrainOutcome::Stopped { .. }));
        // Stable: each kind keeps the drain's order.
        actors.sort_by_key(|a| matches!(a.outcome, DrainOutcome::Moved { .. }));
        actors.truncate(MAX_REPORTED);
        Self {
            node,
            left,
            moved,
            stayed,
            stopped,
            actors,
        }
    }

    /// One line for operators, naming nodes with `name_of`:
    /// `n2: drained, 2 actor(s) moved; it leaves the cluster`.
    pub fn summary(&self, name_of: impl Fn(NodeId) -> String) -> String {
        let node = name_of(self.node);
        let moved = self.moved;
        match (self.left, self.stopped) {
            (true, 0) => format!("{node}: drained, {moved} actor(s) moved; it leaves the cluster"),
            (true, stopped) => format!(
                "{node}: drained with --force, {moved} actor(s) moved, {stopped} stopped and recorded failed; it leaves the cluster"
            ),
            (false, _) => format!(
                "{node}: drain stopped, {} actor(s) cannot move ({moved} moved); {node} stays in the cluster and takes placements again (--force stops what cannot move)",
                self.stayed
            ),
        }
    }
}

impl DrainedActor {
    /// One line for operators, naming nodes with `name_of`:
    /// `demo.Ledger 'ledger': moved to n3 (epoch 7)`.
    pub fn line(&self, name_of: impl Fn(NodeId) -> String) -> String {
        let who = format!("{} '{}'", self.type_name, self.name);
        match &self.outcome {
            DrainOutcome::Moved { node, epoch } => {
                format!("{who}: moved to {} (epoch {epoch})", name_of(*node))
            }
            DrainOutcome::Stayed { reason } => {
                format!("{who}: cannot move, keeps running: {reason}")
            }
            DrainOutcome::Stopped { reason } => {
                format!("{who}: stopped by --force and recorded failed: {reason}")
            }
            DrainOutcome::Gone => format!("{who}: stopped or moved meanwhile"),
        }
    }
}

/// Decodes at most [`MAX_REPORTED`] actors: a longer list is refused from
/// its length prefix, or at the first element past the bound.
fn bounded<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DrainedActor>, D::Error> {
    struct Bounded;

    impl<'de> Visitor<'de> for Bounded {
        type Value = Vec<DrainedActor>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of at most {MAX_REPORTED} drained actors")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let hint = seq.size_hint().unwrap_or(0);
            if hint > MAX_REPORTED {
                return Err(A::Error::invalid_length(hint, &self));
            }
            // The prefix is the sender's claim: allocate for a few only.
            let mut actors = Vec::with_capacity(hint.min(PREALLOCATED));
            while let Some(actor) = seq.next_element()? {
                if actors.len() == MAX_REPORTED {
                    return Err(A::Error::invalid_length(MAX_REPORTED + 1, &self));
                }
                actors.push(actor);
            }
            Ok(actors)
        }
    }

    d.deserialize_seq(Bounded)
}

/// Entries reserved up front when decoding a report.
const PREALLOCATED: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 16])
    }

    fn actor(i: usize, outcome: DrainOutcome) -> DrainedActor {
        DrainedActor {
            name: format!("a{i}"),
            type_name: "demo.Ledger".into(),
            outcome,
        }
    }

    fn moved(i: usize) -> DrainedActor {
        actor(
            i,
            DrainOutcome::Moved {
                node: id(3),
                epoch: 7,
            },
        )
    }

    fn pinned() -> ControlError {
        crate::placement::PlacementError::Unschedulable(crate::placement::Infeasible::Pinned {
            node: id(2),
            name: "n2".into(),
        })
        .into()
    }

    #[test]
    fn a_report_lists_what_did_not_move_first_and_counts_everything() {
        let mut actors: Vec<DrainedActor> = (0..MAX_REPORTED + 10).map(moved).collect();
        actors.push(actor(9999, DrainOutcome::Stayed { reason: pinned() }));
        let report = DrainReport::new(id(2), false, actors);
        assert_eq!(report.moved, MAX_REPORTED + 10);
        assert_eq!(report.stayed, 1);
        assert_eq!(report.stopped, 0);
        assert_eq!(report.actors.len(), MAX_REPORTED);
        assert_eq!(report.actors[0].name, "a9999");
        assert_eq!(report.actors[1].name, "a0");
    }

    #[test]
    fn a_report_survives_encoding_and_decoding() {
        let report = DrainReport::new(
            id(2),
            true,
            vec![
                moved(1),
                actor(2, DrainOutcome::Stopped { reason: pinned() }),
                actor(3, DrainOutcome::Gone),
            ],
        );
        let bytes = rmp_serde::to_vec(&Ok::<_, ControlError>(report.clone())).unwrap();
        let back: Result<DrainReport, ControlError> = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, Ok(report));
    }

    #[test]
    fn a_report_listing_more_than_the_bound_is_refused_when_decoded() {
        let over = DrainReport {
            node: id(2),
            left: true,
            moved: MAX_REPORTED + 1,
            stayed: 0,
            stopped: 0,
            actors: (0..=MAX_REPORTED).map(moved).collect(),
        };
        let bytes = rmp_serde::to_vec(&over).unwrap();
        let err = rmp_serde::from_slice::<DrainReport>(&bytes).unwrap_err();
        assert!(err.to_string().contains("at most 4096"), "{err}");
        // A length prefix claiming billions is refused before any entry.
        let mut lying = rmp_serde::to_vec(&DrainReport::new(id(2), true, Vec::new())).unwrap();
        let empty_list = lying.pop();
        assert_eq!(empty_list, Some(0x90), "an empty list ends the encoding");
        lying.extend_from_slice(&[0xdd, 0xff, 0xff, 0xff, 0xff]);
        assert!(rmp_serde::from_slice::<DrainReport>(&lying).is_err());
    }

    #[test]
    fn each_outcome_reads_as_one_line_with_the_real_reason() {
        let name_of = |n: NodeId| if n == id(3) { "n3".into() } else { n.short() };
        assert_eq!(
            moved(1).line(name_of),
            "demo.Ledger 'a1': moved to n3 (epoch 7)"
        );
        let stayed = actor(2, DrainOutcome::Stayed { reason: pinned() });
        assert_eq!(
            stayed.line(name_of),
            "demo.Ledger 'a2': cannot move, keeps running: unschedulable: its placement requires node n2"
        );
        let refused = DrainReport::new(id(3), false, vec![stayed, moved(1)]);
        assert!(
            refused
                .summary(name_of)
                .starts_with("n3: drain stopped, 1 actor(s) cannot move (1 moved)"),
            "{}",
            refused.summary(name_of)
        );
    }
}
