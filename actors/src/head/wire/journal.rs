//! What a durable actor's node asks the head about its journal (the
//! embedded store of the `durable` room), and what it answers: claim a
//! journal for an incarnation (and read it), append events, save a
//! snapshot. Each is one Raft write, checked inside the state machine's
//! apply against the head's own placement record (`head::journal`).

use actix::Message;
use serde::{Deserialize, Serialize};
use swarm_protocol::NodeId;

use super::ControlError;

/// The largest event record.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// The most events one append carries.
pub const MAX_APPEND_EVENTS: usize = 1024;
/// The most bytes one append carries (all its events).
pub const MAX_APPEND_BYTES: usize = 256 * 1024;
/// The largest snapshot record.
pub const MAX_SNAPSHOT_BYTES: usize = 1 << 20;
/// The most bytes of events a journal keeps after its snapshot: an append
/// past it is refused until the actor saves a snapshot (which drops the
/// events it covers). With the snapshot, what one actor costs the heads
/// is bounded by `MAX_SNAPSHOT_BYTES + MAX_JOURNAL_BYTES`.
pub const MAX_JOURNAL_BYTES: usize = 4 << 20;

/// One stored record: its sequence number and its bytes (the durable
/// room's codec writes and reads them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// Its sequence number (events from 1; a snapshot takes the number of
    /// the last event it covers).
    pub seq: u64,
    /// The record.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// Who writes: an incarnation (name and epoch) and its claim, which the
/// store handed out when it recovered (a new claim, even under the same
/// epoch after a local restart, fences the writes of the one before).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Writer {
    /// The actor's name.
    pub name: String,
    /// Its incarnation's epoch.
    pub epoch: u64,
    /// Its claim.
    pub claim: u64,
}

/// What a claim answers: the journal as stored, and the writer the
/// claimant writes as from then on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// Who writes from now on.
    pub writer: Writer,
    /// The latest snapshot, if any.
    pub snapshot: Option<Stored>,
    /// The events after it, in order.
    pub events: Vec<Stored>,
    /// The next event's sequence number.
    pub next: u64,
}

/// Why a journal store refused or failed a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A newer incarnation (or a newer claim of the same one) owns the
    /// journal: this one must stop.
    #[error("fenced: a newer incarnation (epoch {newest}) owns the journal")]
    Fenced {
        /// The newest epoch the store holds for the name.
        newest: u64,
    },
    /// The write's sequence number is not the next one: a gap, or a
    /// write replayed or made twice.
    #[error("sequence conflict: the journal expects {expected}, the write starts at {got}")]
    Conflict {
        /// The next sequence number the journal takes.
        expected: u64,
        /// Where the write started.
        got: u64,
    },
    /// The store holds no placement of the name under this epoch on the
    /// writing node (a forged write, or the actor was stopped for good).
    #[error("refused: {reason}")]
    Refused {
        /// Why.
        reason: String,
    },
    /// A record, an append or the journal would be larger than allowed.
    #[error("{what} of {size} bytes is larger than the {max} allowed")]
    TooLarge {
        /// What.
        what: String,
        /// Its size.
        size: usize,
        /// The bound.
        max: usize,
    },
    /// The store could not be reached or did not answer in time; the
    /// write may or may not have been made.
    #[error("journal store unavailable: {reason}")]
    Unavailable {
        /// What failed.
        reason: String,
    },
    /// A stored record does not decode as the actor's events or snapshot.
    #[error("corrupt journal record: {reason}")]
    Corrupt {
        /// The decoder's words.
        reason: String,
    },
}

impl StoreError {
    /// `what`, of `size` bytes (or records), is over `max`.
    pub(crate) fn too_large(what: &str, size: usize, max: usize) -> Self {
        StoreError::TooLarge {
            what: what.to_owned(),
            size,
            max,
        }
    }
}

/// Refuses an append over the bounds (its event count, any event's size,
/// its total), before any store takes it: the heads' log and the
/// PostgreSQL store check the same.
pub(crate) fn check_append<E: AsRef<[u8]>>(events: &[E]) -> Result<(), StoreError> {
    if events.len() > MAX_APPEND_EVENTS {
        return Err(StoreError::too_large(
            "an append's event count",
            events.len(),
            MAX_APPEND_EVENTS,
        ));
    }
    let mut total = 0usize;
    for event in events {
        let len = event.as_ref().len();
        if len > MAX_EVENT_BYTES {
            return Err(StoreError::too_large("an event", len, MAX_EVENT_BYTES));
        }
        total = total.saturating_add(len);
    }
    if total > MAX_APPEND_BYTES {
        return Err(StoreError::too_large("an append", total, MAX_APPEND_BYTES));
    }
    Ok(())
}

/// Refuses a snapshot over [`MAX_SNAPSHOT_BYTES`].
pub(crate) fn check_snapshot(bytes: &[u8]) -> Result<(), StoreError> {
    if bytes.len() > MAX_SNAPSHOT_BYTES {
        return Err(StoreError::too_large(
            "a snapshot",
            bytes.len(),
            MAX_SNAPSHOT_BYTES,
        ));
    }
    Ok(())
}

impl From<ControlError> for StoreError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Forbidden { reason } | ControlError::Refused { reason } => {
                StoreError::Refused { reason }
            }
            other => StoreError::Unavailable {
                reason: other.to_string(),
            },
        }
    }
}

/// Claims `name`'s journal for incarnation `epoch` and reads it.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<Result<Recovery, StoreError>, ControlError>")]
pub(crate) struct ClaimJournal {
    /// The sender (set from the link's authenticated peer).
    pub(crate) node: NodeId,
    /// The actor.
    pub(crate) name: String,
    /// Its epoch.
    pub(crate) epoch: u64,
}

/// Appends events from `first_seq` on; answers the next sequence number.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<Result<u64, StoreError>, ControlError>")]
pub(crate) struct AppendJournal {
    /// The sender (set from the link's authenticated peer).
    pub(crate) node: NodeId,
    /// Who writes.
    pub(crate) writer: Writer,
    /// The first event's sequence number.
    pub(crate) first_seq: u64,
    /// The event records.
    pub(crate) events: Vec<serde_bytes::ByteBuf>,
}

/// One append of an [`AppendJournals`] group: as [`AppendJournal`],
/// without the sender (the group's).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Append {
    /// Who writes.
    pub(crate) writer: Writer,
    /// The first event's sequence number.
    pub(crate) first_seq: u64,
    /// The event records.
    pub(crate) events: Vec<serde_bytes::ByteBuf>,
}

impl Append {
    /// Its events' bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.events.iter().map(|e| e.len()).sum()
    }
}

/// The most appends one [`AppendJournals`] carries.
pub(crate) const MAX_GROUP_APPENDS: usize = 256;
/// The most bytes of events one [`AppendJournals`] carries (any one
/// append within [`MAX_APPEND_BYTES`] fits).
pub(crate) const MAX_GROUP_BYTES: usize = 1 << 20;

/// Many actors' appends from one node in one message (what its actors
/// asked to write meanwhile): each is checked, fenced and answered on its
/// own, exactly as an [`AppendJournal`] of it would be; the answers come
/// in the appends' order. A group over [`MAX_GROUP_APPENDS`] or
/// [`MAX_GROUP_BYTES`] is refused whole.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<Vec<Result<u64, StoreError>>, ControlError>")]
pub(crate) struct AppendJournals {
    /// The sender (set from the link's authenticated peer).
    pub(crate) node: NodeId,
    /// The appends, each of another actor.
    pub(crate) appends: Vec<Append>,
}

/// Refuses a group over its bounds (count, bytes), before any append of
/// it is looked at.
pub(crate) fn check_group(appends: &[Append]) -> Result<(), ControlError> {
    if appends.len() > MAX_GROUP_APPENDS {
        return Err(ControlError::Refused {
            reason: format!(
                "a group of {} journal appends is more than the {MAX_GROUP_APPENDS} allowed",
                appends.len()
            ),
        });
    }
    let bytes = appends
        .iter()
        .fold(0usize, |n, a| n.saturating_add(a.bytes()));
    if bytes > MAX_GROUP_BYTES {
        return Err(ControlError::Refused {
            reason: format!(
                "a group of journal appends of {bytes} bytes is larger than the {MAX_GROUP_BYTES} allowed"
            ),
        });
    }
    Ok(())
}

/// Saves a snapshot covering the events up to `seq`.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<Result<(), StoreError>, ControlError>")]
pub(crate) struct SnapshotJournal {
    /// The sender (set from the link's authenticated peer).
    pub(crate) node: NodeId,
    /// Who writes.
    pub(crate) writer: Writer,
    /// The last event it covers.
    pub(crate) seq: u64,
    /// The snapshot record.
    #[serde(with = "serde_bytes")]
    pub(crate) bytes: Vec<u8>,
}

impl crate::directory::StampCaller for ClaimJournal {
    fn stamp_caller(&mut self, caller: &crate::directory::Caller) {
        self.node = caller.node;
    }
}

impl crate::directory::StampCaller for AppendJournal {
    fn stamp_caller(&mut self, caller: &crate::directory::Caller) {
        self.node = caller.node;
    }
}

impl crate::directory::StampCaller for AppendJournals {
    fn stamp_caller(&mut self, caller: &crate::directory::Caller) {
        self.node = caller.node;
    }
}

impl crate::directory::StampCaller for SnapshotJournal {
    fn stamp_caller(&mut self, caller: &crate::directory::Caller) {
        self.node = caller.node;
    }
}

crate::system_message! {
    ClaimJournal => "swarm.ClaimJournal", Nodes;
    AppendJournal => "swarm.AppendJournal", Nodes;
    AppendJournals => "swarm.AppendJournals", Nodes;
    SnapshotJournal => "swarm.SnapshotJournal", Nodes;
}
