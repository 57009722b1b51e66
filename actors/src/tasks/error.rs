//! [`TaskError`]: why a task produced no result, as its submitter sees it.

use serde::{Deserialize, Serialize};
use swarm_protocol::NodeId;

use super::wire::TaskId;
use crate::placement::Infeasible;

/// Why a task (or a kept result) produced no value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The function returned an error (its `to_string()`), past its
    /// retries if it opted into `retry_on_error`.
    #[error("task failed: {message}")]
    Failed {
        /// What the function said.
        message: String,
    },
    /// The function panicked.
    #[error("task panicked: {message}")]
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The node running it died (or left) and no retries were left.
    #[error("node {node} died while running the task ({attempts} attempts)")]
    NodeDied {
        /// The last node it ran on.
        node: NodeId,
        /// Runs started in all.
        attempts: u32,
    },
    /// Cancelled before it ended.
    #[error("task cancelled")]
    Cancelled,
    /// No node of the cluster could ever run it (the same causes as an
    /// actor's placement).
    #[error("unschedulable: {cause}")]
    Unschedulable {
        /// Which resource or constraint no node meets.
        cause: Infeasible,
    },
    /// No node that could run it has the function registered.
    #[error("no node that could run it registered the task {function:?}")]
    Unregistered {
        /// The function's tag.
        function: String,
    },
    /// A kept result is gone: its node died or it was freed.
    #[error("the kept result of task {task} on node {node} is lost")]
    ObjectLost {
        /// The task that made it.
        task: TaskId,
        /// Where it was.
        node: NodeId,
    },
    /// A kept result was asked for by a node that may not read it: neither
    /// its owner nor a node the owner sent a task that takes it (the reader
    /// is known from its link, never from what it claims).
    #[error("the kept result of task {task} is readable only by its owner and the nodes it sent a task that takes it")]
    Forbidden {
        /// The task that made it.
        task: TaskId,
    },
    /// A task whose result this one takes failed.
    #[error("task {task}, whose result this one takes, failed: {reason}")]
    Dependency {
        /// That task.
        task: TaskId,
        /// How it failed.
        reason: String,
    },
    /// An argument did not encode or decode, or the result did not.
    #[error("argument or result encoding: {reason}")]
    Codec {
        /// The serde error.
        reason: String,
    },
    /// The result is larger than a message may be; keep it (`keep()`)
    /// and pass it by reference instead.
    #[error("the result is {size} bytes, more than {max}; keep it instead")]
    TooLarge {
        /// Its encoded size.
        size: u64,
        /// The largest message.
        max: u64,
    },
    /// This node's scheduler stopped (the node shut down).
    #[error("the scheduler stopped")]
    Stopped,
}
