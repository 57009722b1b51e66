//! Durable actors' journals in the head's replicated state (the embedded
//! store of the `durable` room): per name, the newest epoch and claim that
//! own it, the latest snapshot and the events after it.
//!
//! Every check is made inside the apply of the one command that writes,
//! so no read-then-write spans two steps:
//!
//! - **who**: the writing node must be the one the head's placement record
//!   puts the name on, under the write's epoch (the node is the link's
//!   authenticated peer, stamped on the request; a forged write from
//!   another node is refused);
//! - **when**: a write from an older epoch, or from an older claim of the
//!   same epoch (an incarnation that restarted after a panic claims
//!   again), is refused as `Fenced`;
//! - **order**: an append must start at the journal's next sequence
//!   number (a replayed or doubled write is refused as `Conflict`);
//! - **size**: records, appends and what a journal keeps are bounded.
//!
//! A snapshot drops the events it covers, so a journal holds at most one
//! snapshot plus [`MAX_JOURNAL_BYTES`] of events.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use swarm_protocol::NodeId;

use super::wire::journal::{check_append, check_snapshot};
pub(crate) use super::wire::journal::{Recovery, StoreError, Stored, Writer, MAX_JOURNAL_BYTES};

/// A journal write, as the log carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum JournalCommand {
    /// Claims `name`'s journal for `epoch` (a new claim) and reads it.
    Claim {
        /// The actor.
        name: String,
        /// Its epoch.
        epoch: u64,
        /// The authenticated sender.
        node: NodeId,
    },
    /// Appends events from `first_seq` on.
    Append {
        /// Who writes.
        writer: Writer,
        /// The authenticated sender.
        node: NodeId,
        /// The first event's sequence number.
        first_seq: u64,
        /// The records.
        events: Vec<serde_bytes::ByteBuf>,
    },
    /// Saves a snapshot covering the events up to `seq`.
    Snapshot {
        /// Who writes.
        writer: Writer,
        /// The authenticated sender.
        node: NodeId,
        /// The last event it covers.
        seq: u64,
        /// The record.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
}

impl JournalCommand {
    /// The name it writes.
    pub(crate) fn name(&self) -> &str {
        match self {
            JournalCommand::Claim { name, .. } => name,
            JournalCommand::Append { writer, .. } | JournalCommand::Snapshot { writer, .. } => {
                &writer.name
            }
        }
    }

    /// Refuses a write larger than allowed, before it reaches the log
    /// (apply checks again).
    pub(crate) fn check_size(&self) -> Result<(), StoreError> {
        match self {
            JournalCommand::Claim { .. } => Ok(()),
            JournalCommand::Append { events, .. } => check_append(events),
            JournalCommand::Snapshot { bytes, .. } => check_snapshot(bytes),
        }
    }
}

/// What a journal write did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum JournalDone {
    /// Claimed: the journal as stored, and the new writer.
    Claimed(Box<Recovery>),
    /// Appended: the next sequence number.
    Appended {
        /// The next sequence number.
        next: u64,
    },
    /// The snapshot is saved.
    Snapshotted,
}

/// Where the head's record puts a name: its node, epoch, and whether it
/// is placed (not failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placed {
    pub(crate) node: NodeId,
    pub(crate) epoch: u64,
    pub(crate) placed: bool,
}

/// One actor's journal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Journal {
    /// The newest epoch that claimed it.
    epoch: u64,
    /// Its claims so far (the newest owns it).
    claim: u64,
    /// The latest snapshot.
    snapshot: Option<Stored>,
    /// The events after it.
    events: VecDeque<Stored>,
    /// The next event's sequence number.
    next: u64,
    /// The bytes of `events`.
    bytes: usize,
}

/// Every durable actor's journal, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Journals {
    journals: BTreeMap<String, Journal>,
}

impl Journals {
    /// Applies one write; `placed` is the head's record of its name.
    pub(crate) fn apply(
        &mut self,
        command: JournalCommand,
        placed: Option<Placed>,
    ) -> Result<JournalDone, StoreError> {
        command.check_size()?;
        match command {
            JournalCommand::Claim { name, epoch, node } => {
                owner(&name, epoch, node, placed)?;
                let journal = self
                    .journals
                    .entry(name.clone())
                    .or_insert_with(|| Journal {
                        next: 1,
                        ..Journal::default()
                    });
                if journal.epoch > epoch {
                    return Err(StoreError::Fenced {
                        newest: journal.epoch,
                    });
                }
                journal.epoch = epoch;
                journal.claim += 1;
                Ok(JournalDone::Claimed(Box::new(Recovery {
                    writer: Writer {
                        name,
                        epoch,
                        claim: journal.claim,
                    },
                    snapshot: journal.snapshot.clone(),
                    events: journal.events.iter().cloned().collect(),
                    next: journal.next,
                })))
            }
            JournalCommand::Append {
                writer,
                node,
                first_seq,
                events,
            } => {
                let journal = self.writable(&writer, node, placed)?;
                if first_seq != journal.next {
                    return Err(StoreError::Conflict {
                        expected: journal.next,
                        got: first_seq,
                    });
                }
                let total: usize = events.iter().map(|e| e.len()).sum();
                let kept = journal.bytes.saturating_add(total);
                if kept > MAX_JOURNAL_BYTES {
                    return Err(StoreError::too_large(
                        "the journal after its snapshot (save a snapshot)",
                        kept,
                        MAX_JOURNAL_BYTES,
                    ));
                }
                for event in events {
                    journal.events.push_back(Stored {
                        seq: journal.next,
                        bytes: event.into_vec(),
                    });
                    journal.next += 1;
                }
                journal.bytes = kept;
                Ok(JournalDone::Appended { next: journal.next })
            }
            JournalCommand::Snapshot {
                writer,
                node,
                seq,
                bytes,
            } => {
                let journal = self.writable(&writer, node, placed)?;
                let covered = journal.snapshot.as_ref().map_or(0, |s| s.seq);
                if seq >= journal.next || seq < covered {
                    return Err(StoreError::Conflict {
                        expected: journal.next.saturating_sub(1),
                        got: seq,
                    });
                }
                while journal.events.front().is_some_and(|e| e.seq <= seq) {
                    if let Some(dropped) = journal.events.pop_front() {
                        journal.bytes = journal.bytes.saturating_sub(dropped.bytes.len());
                    }
                }
                journal.snapshot = Some(Stored { seq, bytes });
                Ok(JournalDone::Snapshotted)
            }
        }
    }

    /// The journal `writer` may write, checked against the head's record
    /// and the journal's newest claim.
    fn writable(
        &mut self,
        writer: &Writer,
        node: NodeId,
        placed: Option<Placed>,
    ) -> Result<&mut Journal, StoreError> {
        owner(&writer.name, writer.epoch, node, placed)?;
        let Some(journal) = self.journals.get_mut(&writer.name) else {
            return Err(StoreError::Refused {
                reason: format!("{:?} has no claimed journal", writer.name),
            });
        };
        if journal.epoch != writer.epoch || journal.claim != writer.claim {
            return Err(StoreError::Fenced {
                newest: journal.epoch,
            });
        }
        Ok(journal)
    }

    /// Why `command` would be refused for its sender or by fencing, on
    /// this state (nothing is changed).
    pub(crate) fn precheck(
        &self,
        command: &JournalCommand,
        placed: Option<Placed>,
    ) -> Option<StoreError> {
        match command {
            JournalCommand::Claim { name, epoch, node } => {
                owner(name, *epoch, *node, placed).err().or_else(|| {
                    self.journals
                        .get(name)
                        .filter(|j| j.epoch > *epoch)
                        .map(|j| StoreError::Fenced { newest: j.epoch })
                })
            }
            JournalCommand::Append { writer, node, .. }
            | JournalCommand::Snapshot { writer, node, .. } => {
                if let Err(e) = owner(&writer.name, writer.epoch, *node, placed) {
                    return Some(e);
                }
                match self.journals.get(&writer.name) {
                    None => Some(StoreError::Refused {
                        reason: format!("{:?} has no claimed journal", writer.name),
                    }),
                    Some(j) if j.epoch != writer.epoch || j.claim != writer.claim => {
                        Some(StoreError::Fenced { newest: j.epoch })
                    }
                    // An append out of step or past the bound costs no log
                    // entry either (the apply checks again).
                    Some(j) => match command {
                        JournalCommand::Append {
                            first_seq, events, ..
                        } => {
                            let total: usize = events.iter().map(|e| e.len()).sum();
                            if *first_seq != j.next {
                                Some(StoreError::Conflict {
                                    expected: j.next,
                                    got: *first_seq,
                                })
                            } else if j.bytes.saturating_add(total) > MAX_JOURNAL_BYTES {
                                Some(StoreError::too_large(
                                    "the journal after its snapshot (save a snapshot)",
                                    j.bytes.saturating_add(total),
                                    MAX_JOURNAL_BYTES,
                                ))
                            } else {
                                None
                            }
                        }
                        _ => None,
                    },
                }
            }
        }
    }

    /// The last sequence number `name`'s journal holds (0: none yet).
    pub(crate) fn last_seq(&self, name: &str) -> Option<u64> {
        self.journals.get(name).map(|j| j.next.saturating_sub(1))
    }

    /// Forgets `name`'s journal (the actor was stopped for good).
    pub(crate) fn forget(&mut self, name: &str) {
        self.journals.remove(name);
    }

    /// Journals held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.journals.len()
    }

    /// `name`'s snapshot position, events kept and their bytes.
    #[cfg(test)]
    pub(crate) fn held(&self, name: &str) -> Option<(Option<u64>, usize, usize)> {
        self.journals
            .get(name)
            .map(|j| (j.snapshot.as_ref().map(|s| s.seq), j.events.len(), j.bytes))
    }
}

impl super::state::ControlState {
    /// Where the record of `name` puts it, for its journal's checks.
    pub(crate) fn journal_owner(&self, name: &str) -> Option<Placed> {
        self.actor(name).map(|r| Placed {
            node: r.node,
            epoch: r.epoch,
            placed: r.state == super::state::RecordState::Placed,
        })
    }

    /// Why `command` would be refused by its sender or fencing, on this
    /// state (the leader checks before writing; apply checks again).
    pub(crate) fn journal_precheck(&self, command: &JournalCommand) -> Option<StoreError> {
        self.journals()
            .precheck(command, self.journal_owner(command.name()))
    }
}

/// Whether `node` may write `name` under `epoch`: the head's record puts
/// it there, under that epoch, placed.
fn owner(name: &str, epoch: u64, node: NodeId, placed: Option<Placed>) -> Result<(), StoreError> {
    let Some(record) = placed else {
        return Err(StoreError::Refused {
            reason: format!("no named actor {name:?}"),
        });
    };
    if record.epoch > epoch {
        return Err(StoreError::Fenced {
            newest: record.epoch,
        });
    }
    if record.epoch < epoch {
        return Err(StoreError::Refused {
            reason: format!("{name:?} was never placed under epoch {epoch}"),
        });
    }
    if record.node != node {
        return Err(StoreError::Refused {
            reason: format!(
                "{name:?} epoch {epoch} is placed on {}, not on the writing node {}",
                record.node.short(),
                node.short()
            ),
        });
    }
    if !record.placed {
        return Err(StoreError::Refused {
            reason: format!("{name:?} epoch {epoch} failed"),
        });
    }
    Ok(())
}

#[cfg(test)]
#[path = "journal/tests.rs"]
mod tests;
