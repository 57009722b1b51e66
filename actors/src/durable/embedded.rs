//! The embedded journal store: journals in the head group's replicated
//! state (openraft + redb on the heads, sealed at rest with the rest of
//! the head's store), written through the control client like any other
//! control-plane request. The head leader checks each write against its
//! placement record: only the node the head placed the name on, under the
//! write's epoch, may write it (`head::journal`).

use serde_bytes::ByteBuf;

use super::store::{JournalStore, Recovery, StoreFuture, Writer};
use crate::control::{Control, CALL_WITHIN};
use crate::head::wire::journal::{AppendJournal, ClaimJournal, SnapshotJournal};

/// Journals in the head group's log, reached through `control`.
#[derive(Clone)]
pub struct Embedded {
    control: Control,
    /// This node: what a head answering locally reads (over a link the
    /// head stamps the link's authenticated peer instead).
    node: swarm_protocol::NodeId,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded").finish_non_exhaustive()
    }
}

impl Embedded {
    /// A store reached through `control`, node `node`'s own client.
    pub(crate) fn new(control: Control, node: swarm_protocol::NodeId) -> Self {
        Self { control, node }
    }
}

impl JournalStore for Embedded {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    fn claim(&self, name: &str, epoch: u64) -> StoreFuture<Recovery> {
        let control = self.control.clone();
        let request = ClaimJournal {
            node: self.node,
            name: name.to_owned(),
            epoch,
        };
        Box::pin(async move { control.call(request, CALL_WITHIN).await? })
    }

    fn append(&self, writer: &Writer, first_seq: u64, events: Vec<Vec<u8>>) -> StoreFuture<u64> {
        let control = self.control.clone();
        let request = AppendJournal {
            node: self.node,
            writer: writer.clone(),
            first_seq,
            events: events.into_iter().map(ByteBuf::from).collect(),
        };
        Box::pin(async move { control.call(request, CALL_WITHIN).await? })
    }

    fn snapshot(&self, writer: &Writer, seq: u64, bytes: Vec<u8>) -> StoreFuture<()> {
        let control = self.control.clone();
        let request = SnapshotJournal {
            node: self.node,
            writer: writer.clone(),
            seq,
            bytes,
        };
        Box::pin(async move { control.call(request, CALL_WITHIN).await? })
    }
}
