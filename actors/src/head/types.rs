//! The Raft type configuration of the head group: log entries carry
//! [`Command`]s, applying one answers an [`Applied`], and voters are named
//! by their mesh [`NodeId`] (as [`HeadId`]).

use std::fmt;

use serde::{Deserialize, Serialize};
use swarm_protocol::NodeId;

use super::state::{Applied, Command};

openraft::declare_raft_types!(
    /// The head group's Raft types.
    pub(crate) RaftConfig:
        D = Command,
        R = Applied,
        NodeId = HeadId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<RaftConfig>,
        SnapshotData = super::store::Pieces,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A voter of the head group: a node's mesh id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct HeadId(pub(crate) NodeId);

impl Default for HeadId {
    fn default() -> Self {
        HeadId(NodeId::from_bytes([0; 16]))
    }
}

impl fmt::Display for HeadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.short())
    }
}

impl fmt::Debug for HeadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HeadId({})", self.0.short())
    }
}

/// Numbered ids, for openraft's storage test suite.
impl From<u64> for HeadId {
    fn from(n: u64) -> Self {
        let mut bytes = [0u8; 16];
        bytes[8..].copy_from_slice(&n.to_be_bytes());
        HeadId(NodeId::from_bytes(bytes))
    }
}

/// Log ids, votes and storage errors of the head group.
pub(crate) type LogId = openraft::LogId<HeadId>;
pub(crate) type Vote = openraft::Vote<HeadId>;
pub(crate) type StorageError = openraft::StorageError<HeadId>;
pub(crate) type Entry = openraft::Entry<RaftConfig>;
pub(crate) type Membership = openraft::StoredMembership<HeadId, openraft::BasicNode>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<HeadId, openraft::BasicNode>;
pub(crate) type Snapshot = openraft::Snapshot<RaftConfig>;
pub(crate) type Raft = openraft::Raft<RaftConfig>;
