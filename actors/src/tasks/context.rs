//! [`TaskContext`]: what a running task may learn about its run (its id,
//! the GPUs it was given, whether it was cancelled), read with
//! [`context`] from inside the task.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::wire::TaskId;

/// The run a task is in. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// The task.
    id: TaskId,
    /// The node it runs on.
    node: swarm_protocol::NodeId,
    /// Which run (0 first).
    attempt: u32,
    /// The GPU ids it holds on this node.
    gpus: Arc<[u32]>,
    /// Set when its owner cancels it.
    cancelled: Arc<AtomicBool>,
}

impl TaskContext {
    pub(crate) fn new(
        id: TaskId,
        node: swarm_protocol::NodeId,
        attempt: u32,
        gpus: Vec<u32>,
        cancelled: Arc<AtomicBool>,
    ) -> Self {
        Self {
            id,
            node,
            attempt,
            gpus: gpus.into(),
            cancelled,
        }
    }

    /// The task.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The node it runs on.
    pub fn node(&self) -> swarm_protocol::NodeId {
        self.node
    }

    /// Which run this is: 0, then 1 for the first retry, and so on.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The GPU ids this run was given on its node (as many as it asked
    /// for; empty if it asked for none).
    pub fn gpu_ids(&self) -> &[u32] {
        &self.gpus
    }

    /// Whether its owner cancelled it. A long sync task SHOULD check this
    /// now and then and return early; an async task is dropped at its next
    /// `.await` anyway.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

thread_local! {
    /// The sync task running on this thread.
    static CURRENT: RefCell<Option<TaskContext>> = const { RefCell::new(None) };
}

tokio::task_local! {
    /// The async task being polled.
    static ASYNC_CURRENT: TaskContext;
}

/// The context of the task this code runs in, or `None` outside a task.
pub fn context() -> Option<TaskContext> {
    ASYNC_CURRENT
        .try_with(Clone::clone)
        .ok()
        .or_else(|| CURRENT.with(|c| c.borrow().clone()))
}

/// Runs `f` with `ctx` as the current sync task.
pub(crate) fn with_sync<R>(ctx: TaskContext, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CURRENT.with(|c| c.borrow_mut().take());
        }
    }
    CURRENT.with(|c| *c.borrow_mut() = Some(ctx));
    let _reset = Reset;
    f()
}

/// `fut` with `ctx` as the current async task while it is polled.
pub(crate) fn with_async<F: std::future::Future>(
    ctx: TaskContext,
    fut: F,
) -> impl std::future::Future<Output = F::Output> {
    ASYNC_CURRENT.scope(ctx, fut)
}
