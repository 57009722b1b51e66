//! What schedulers tell each other (`swarm.tasks` on every node), at the
//! bottom of the tasks: the names of tasks and kept results, batches of
//! tasks to run, cancellations, releases of kept results and the
//! operator's listing. How runs ended travels in `outcome`, kept results
//! in `fetch` (they carry a [`TaskError`](super::TaskError)). Every batch
//! names its sender from the link's authenticated peer, never from what
//! the bytes claim.

use actix::Message;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use swarm_protocol::NodeId;

use crate::directory::StampCaller;
use crate::placement::ResourceSet;

/// The name each node's scheduler is exposed under.
pub const TASKS_ACTOR: &str = "swarm.tasks";

/// A task, cluster-wide: the node that submitted (and owns) it and its
/// number there. A kept result is named by the task that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskId {
    /// The submitting node; it owns the task and its result.
    pub owner: NodeId,
    /// Its number on the owner.
    pub seq: u64,
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.owner.short(), self.seq)
    }
}

/// A kept result: the task that made it and the node that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectId {
    /// The task whose result it is.
    pub task: TaskId,
    /// Where the value is.
    pub node: NodeId,
    /// The capability to read it, filled in by the owner when it sends a
    /// task that takes it (none in a handle: the owner reads its own).
    #[serde(default)]
    pub(crate) token: Token,
}

/// A kept result's read capability: 128 random bits the owner mints when
/// it submits the task that makes the result. The node that runs that task
/// keeps it beside the value; the owner hands it only to the nodes it sends
/// a task that takes the result. The holder serves the value to the owner
/// (known from the link) and to whoever presents the token, compared in
/// constant time. The zero token (randomness failed, or none was given)
/// admits nobody but the owner.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Token([u8; 16]);

impl Token {
    /// A fresh random token (the zero token if the OS has no randomness:
    /// then only the owner reads the result).
    pub(crate) fn mint() -> Self {
        let mut bytes = [0; 16];
        if getrandom::fill(&mut bytes).is_err() {
            tracing::warn!("no randomness for a kept result's token: only its owner may read it");
            bytes = [0; 16];
        }
        Self(bytes)
    }

    /// Whether `presented` is this token (and this token is not zero), in
    /// time that does not depend on where they differ.
    pub(crate) fn admits(&self, presented: &Token) -> bool {
        let diff = self
            .0
            .iter()
            .zip(presented.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        let zero = self.0.iter().fold(0u8, |acc, b| acc | b);
        std::hint::black_box(diff) == 0 && std::hint::black_box(zero) != 0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A capability: never in logs.
        f.write_str("Token(..)")
    }
}

/// One argument on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[doc(hidden)]
pub enum Arg {
    /// The value, encoded.
    Value(ByteBuf),
    /// A kept result, fetched by the node that runs the task.
    Ref(ObjectId),
}

/// A task as its owner sends it to the node that runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Spec {
    /// Its number on the owner (the sender of the batch).
    pub(crate) seq: u64,
    /// Which run this is (0 first; a retry counts up). Outcomes name it,
    /// so a late outcome of an abandoned run is told apart.
    pub(crate) attempt: u32,
    /// The function's tag.
    pub(crate) tag: String,
    /// The arguments.
    pub(crate) args: Vec<Arg>,
    /// What it holds while it runs.
    pub(crate) need: ResourceSet,
    /// Keep the result where it was made rather than send it back.
    pub(crate) keep: bool,
    /// With `keep`: the result's read capability, kept beside it.
    #[serde(default)]
    pub(crate) token: Token,
}

/// Tasks to run, from their owner.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub(crate) struct SubmitTasks {
    /// The owner (stamped from the link).
    pub(crate) owner: NodeId,
    /// The tasks.
    pub(crate) tasks: Vec<Spec>,
}

/// The owner cancels tasks it sent.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub(crate) struct CancelTasks {
    /// The owner (stamped from the link).
    pub(crate) owner: NodeId,
    /// Their numbers.
    pub(crate) seqs: Vec<u64>,
}

/// The owner drops kept results: nobody holds a handle any more.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub(crate) struct FreeObjects {
    /// The owner (stamped from the link).
    pub(crate) owner: NodeId,
    /// The numbers of the tasks whose results go.
    pub(crate) seqs: Vec<u64>,
}

/// Lists the tasks a node runs, queues and owns, for operators.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "TaskTable")]
pub struct ListTasks {
    /// At most this many rows of finished and failed tasks.
    pub recent: usize,
}

/// Where a task stands, as `swarm tasks` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TaskState {
    /// Waiting for resources (or for the results it takes) on its owner.
    Pending,
    /// Queued on the node that will run it, waiting for resources there.
    Queued,
    /// Running.
    Running,
    /// Finished with a result.
    Finished,
    /// Failed (its error, its node's death past its retries, ...).
    Failed,
    /// Cancelled.
    Cancelled,
}

/// One task as an operator sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRow {
    /// The task.
    pub id: TaskId,
    /// Its function's tag.
    pub function: String,
    /// Where it stands.
    pub state: TaskState,
    /// What it holds or waits for.
    pub resources: ResourceSet,
    /// The node it runs on, was sent to, or ran on.
    pub node: Option<NodeId>,
    /// The run (0 first).
    pub attempt: u32,
    /// Why it waits, or how it failed.
    pub reason: Option<String>,
}

/// What one node's scheduler shows: the tasks it runs and queues, the
/// tasks it owns that wait for a node, and its latest finished and failed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskTable {
    /// The node.
    pub node: Option<NodeId>,
    /// What it offers tasks in all.
    pub total: ResourceSet,
    /// What is free now.
    pub free: ResourceSet,
    /// Rows: pending, queued and running first, then the latest ended.
    pub rows: Vec<TaskRow>,
    /// Rows left out (the listing is capped).
    pub omitted: usize,
    /// Tasks run to an end here since start, by outcome.
    pub finished: u64,
    /// Runs that failed here since start.
    pub failed: u64,
    /// Tasks this node submitted since start.
    pub submitted: u64,
    /// Kept results held here, and their bytes.
    pub objects: (usize, u64),
    /// Nodes this node may send tasks to now (itself included).
    pub nodes: usize,
}

macro_rules! stamp_owner {
    ($($ty:ty => $field:ident),+) => {$(
        impl StampCaller for $ty {
            fn stamp_caller(&mut self, caller: &crate::directory::Caller) {
                self.$field = caller.node;
            }
        }
    )+};
}

stamp_owner!(
    SubmitTasks => owner,
    CancelTasks => owner,
    FreeObjects => owner
);

crate::system_message! {
    SubmitTasks => "swarm.SubmitTasks", Command;
    CancelTasks => "swarm.CancelTasks", Command;
    FreeObjects => "swarm.FreeObjects", Nodes;
    ListTasks => "swarm.ListTasks", Read;
}
