//! Ray-style tasks: functions declared with [`task!`](crate::task), run
//! where resources are free, their results returned or kept where they
//! were made. Nothing here goes through the control plane's Raft log.
//!
//! ```no_run
//! use swarm_actors::placement::Placement;
//! swarm_actors::task!(fn square(x: u64) -> u64 { x * x });
//! swarm_actors::task!(fn total(xs: Vec<u64>) -> u64 { xs.iter().sum() });
//! swarm_actors::task!(fn numbers(n: u64) -> Vec<u64> { (0..n).collect() });
//!
//! # async fn run(node: swarm_actors::Node) -> Result<(), Box<dyn std::error::Error>> {
//! let tasks = node.tasks().expect("a node with membership");
//! // Every node that runs them registers them (the submitter need not).
//! tasks.register(square);
//! let h = tasks.submit(square, 7).await?;                 // 1 CPU, 3 retries
//! assert_eq!(h.await?, 49);
//! let h = tasks.task(square).cpus(0.5).retries(5).placement(Placement::Spread).submit(8).await?;
//! assert_eq!(h.await?, 64);
//! let r = tasks.task(numbers).keep().submit(1_000).await?; // stays where it was made
//! let sum = tasks.submit(total, &r).await?.await?;         // passed by reference
//! assert_eq!(sum, 499_500);
//! let all = tasks.submit_many(square, 0..100_000u64).await?.collect().await?;
//! assert_eq!(all[3], 9);
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! - A task runs **at most once** with `retries(0)`, and **at least once**
//!   while retries remain: when the node running it dies (membership
//!   declares it down or it leaves), it runs again elsewhere; a run whose
//!   outcome was lost may have had effects. `retry_on_error` retries the
//!   task's own failures too. A cancelled task is never retried.
//! - A request no node could ever satisfy fails with
//!   [`TaskError::Unschedulable`] at submission; one that must wait for
//!   resources waits on its owner, visibly (`swarm tasks` shows why).
//! - Memory is bounded: a node owns at most [`MAX_OWNED`] unfinished tasks
//!   (submitting waits beyond), a stream keeps a window in flight, and a
//!   node queues at most `MAX_QUEUED` tasks before it hands new ones back.
//! - A kept result lives until its last [`TaskRef`] clone is dropped and
//!   no task that takes it is left, or until its owner dies; a task that
//!   needs a result whose node died fails with [`TaskError::ObjectLost`]
//!   (no lineage reconstruction).
//!
//! # Layout
//!
//! - `task`: [`Task`] and the [`task!`](crate::task) macro; how arguments
//!   are passed ([`IntoArgs`]).
//! - `client` and `handle`: [`Tasks`], [`TaskBuilder`], [`TaskHandle`],
//!   [`TaskRef`], [`TaskStream`]; `submit` how they reach the scheduler.
//! - `scheduler`: the per-node actor; `owner` its book of submitted tasks
//!   and kept results; `pool` its run queue and task threads; `store`
//!   and `fetch` the kept results held here and how they move.
//! - [`policy`]: where a task goes, as pure functions.
//! - `wire`: what schedulers tell each other, at the bottom (`outcome`:
//!   how runs ended; fetches of kept results are in `fetch`).

mod client;
mod context;
mod error;
pub(crate) mod fetch;
mod handle;
pub(crate) mod outcome;
pub(crate) mod owner;
pub mod policy;
mod pool;
mod scheduler;
mod store;
mod submit;
mod task;
pub(crate) mod wire;

pub use client::{KeepBuilder, TaskBuilder, Tasks, MAX_OWNED};
pub use context::{context, TaskContext};
pub use error::TaskError;
pub use handle::{Canceller, TaskHandle, TaskRef, TaskStream};
pub use scheduler::Scheduler;
pub use serde_bytes::ByteBuf;
#[doc(hidden)]
pub use task::{__arg, __no_more, __output, AsyncRun, Blob, Failure, Runner};
pub use task::{Bytes, FromArg, IntoArg, IntoArgs, Task};
#[doc(hidden)]
pub use wire::Arg;
pub use wire::{ListTasks, ObjectId, TaskId, TaskRow, TaskState, TaskTable, TASKS_ACTOR};
