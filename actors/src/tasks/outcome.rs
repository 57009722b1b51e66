//! How a run ended, as the node that ran it tells the task's owner
//! ([`TasksDone`], in batches): a result, kept or sent back, or why there
//! is none. The batch names its sender from the link's authenticated peer.

use actix::Message;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use swarm_protocol::NodeId;

use super::error::TaskError;
use crate::directory::{Caller, StampCaller};

/// How one run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Outcome {
    /// The task's number on its owner.
    pub(crate) seq: u64,
    /// The run it reports.
    pub(crate) attempt: u32,
    /// Its result.
    pub(crate) result: Result<Done, RunError>,
    /// How long it ran, microseconds (the owner learns how deep to pipeline).
    pub(crate) micros: u32,
}

/// A finished run's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Done {
    /// The value, encoded.
    Value(ByteBuf),
    /// Kept on the running node; its encoded size.
    Kept {
        /// Bytes.
        size: u64,
    },
}

/// Why a run produced no result, as the running node reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum RunError {
    /// The task itself failed: its error or panic message.
    Failed {
        /// What it said.
        message: String,
        /// It panicked (rather than returning an error).
        panicked: bool,
    },
    /// The node never ran it and will not: its queue was full, it could
    /// not ever fit it, or it does not have the function. The owner places
    /// it again (not a retry).
    Bounced {
        /// Why.
        reason: Bounce,
    },
    /// Cancelled by its owner.
    Cancelled,
    /// An argument or the result could not be moved or decoded.
    Argument {
        /// What went wrong (a lost kept value, a decode error).
        error: TaskError,
    },
}

/// Why a node handed a task back without running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Bounce {
    /// Its queue is full (backpressure).
    Busy,
    /// It does not have the function registered.
    Unregistered,
    /// It could never offer the resources.
    TooBig,
}

/// Outcomes, to the owner of the tasks.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub(crate) struct TasksDone {
    /// The node that ran them (stamped from the link).
    pub(crate) from: NodeId,
    /// The outcomes.
    pub(crate) outcomes: Vec<Outcome>,
}

impl StampCaller for TasksDone {
    fn stamp_caller(&mut self, caller: &Caller) {
        self.from = caller.node;
    }
}

crate::system_message! {
    TasksDone => "swarm.TasksDone", Nodes;
}
