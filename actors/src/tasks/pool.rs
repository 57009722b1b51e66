//! The node's run queue and its task threads. Tasks wait here, grouped by
//! what they need, until the node's free resources hold them; sync tasks
//! then run on one of `threads` OS threads (a blocking task never stalls
//! an arbiter; started with the first sync task, so a node that runs none
//! has none), async ones are handed to the scheduler to run on its
//! arbiter. A thread that finishes a task takes the next runnable one
//! itself, so a stream of small tasks costs no hop per task; the scheduler
//! is woken once per batch of ended tasks.
//!
//! The queue is bounded by the scheduler (it refuses what would not fit);
//! nothing here grows on its own.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::Notify;

use super::context::{self, TaskContext};
use super::task::{Blob, Failure, Runner};
use super::wire::{TaskId, TaskRow, TaskState, Token};
use crate::placement::ResourceSet;

/// A task admitted to this node, with its arguments at hand.
pub(crate) struct Job {
    /// The task.
    pub(crate) id: TaskId,
    /// Its run.
    pub(crate) attempt: u32,
    /// Its function's tag (for listings).
    pub(crate) tag: Arc<str>,
    /// How to call it.
    pub(crate) runner: Runner,
    /// Its arguments, resolved.
    pub(crate) args: Vec<Blob>,
    /// What it holds while it runs.
    pub(crate) need: ResourceSet,
    /// Keep the result here, beside this read token.
    pub(crate) keep: Option<Token>,
    /// Set by a cancellation.
    pub(crate) cancel: Arc<AtomicBool>,
}

/// How a job ended.
pub(crate) enum Finish {
    /// It ran: its encoded result or failure.
    Ran(Result<Vec<u8>, Failure>),
    /// Cancelled before it started.
    Cancelled,
}

/// Ended tasks that wake the scheduler even while more are runnable.
const WAKE_BATCH: usize = 256;
/// A task this slow (microseconds) is reported at once.
const SLOW_MICROS: u32 = 200;

/// A job that ended, for the scheduler to report.
pub(crate) struct Ended {
    /// The task.
    pub(crate) id: TaskId,
    /// Its run.
    pub(crate) attempt: u32,
    /// Keep the result here, beside this read token.
    pub(crate) keep: Option<Token>,
    /// What happened.
    pub(crate) result: Finish,
    /// How long it ran, microseconds.
    pub(crate) micros: u32,
}

/// An async job admitted (its resources held), for the scheduler to start.
pub(crate) struct Admitted {
    /// The job.
    pub(crate) job: Job,
    /// The GPU ids it holds.
    pub(crate) gpus: Vec<u32>,
}

/// The queue and the threads; dropping it stops the threads once their
/// current task returns.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    /// The node the threads run tasks for, and how many threads to start.
    node: swarm_protocol::NodeId,
    threads: usize,
    /// Starts the threads with the first sync job: an idle node keeps no
    /// threads (stacks, allocator arenas) for tasks it may never run.
    started: std::sync::Once,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when a sync job may have become runnable.
    work: Condvar,
    /// Wakes the scheduler: jobs ended or async jobs were admitted.
    wake: Arc<Notify>,
}

/// Jobs that need the same resources and run the same way, oldest first.
struct Shape {
    need: ResourceSet,
    sync: bool,
    jobs: VecDeque<(u64, Job)>,
}

struct Running {
    tag: Arc<str>,
    need: ResourceSet,
    attempt: u32,
}

struct Queue {
    total: ResourceSet,
    free: ResourceSet,
    free_gpus: Vec<u32>,
    shapes: Vec<Shape>,
    queued: usize,
    /// Admission order, so the oldest runnable job goes first.
    next: u64,
    running: HashMap<TaskId, Running>,
    ended: Vec<Ended>,
    admitted: Vec<Admitted>,
    stopping: bool,
    /// Threads waiting for work (a notification costs a syscall: none is
    /// sent when nobody waits).
    idle: usize,
    /// The scheduler was woken and has not collected yet.
    woken: bool,
}

impl Pool {
    /// A pool of `threads` task threads (started with the first sync job)
    /// for a node offering `total`; `wake` is notified when the scheduler
    /// has something to collect.
    pub(crate) fn new(
        node: swarm_protocol::NodeId,
        total: ResourceSet,
        threads: usize,
        wake: Arc<Notify>,
    ) -> Pool {
        let queue = Queue {
            free_gpus: (0..total.gpus).rev().collect(),
            free: total.clone(),
            total,
            shapes: Vec::new(),
            queued: 0,
            next: 0,
            running: HashMap::new(),
            ended: Vec::new(),
            admitted: Vec::new(),
            stopping: false,
            idle: 0,
            woken: false,
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(queue),
            work: Condvar::new(),
            wake,
        });
        Pool {
            shared,
            node,
            threads: threads.max(1),
            started: std::sync::Once::new(),
        }
    }

    /// Starts the task threads, once.
    fn start_threads(&self) {
        self.started.call_once(|| {
            for i in 0..self.threads {
                let shared = Arc::clone(&self.shared);
                let node = self.node;
                let spawned = std::thread::Builder::new()
                    .name(format!("swarm-task-{i}"))
                    .spawn(move || work(&shared, node));
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "cannot start a task thread");
                }
            }
        });
    }

    /// Queues jobs; they start as soon as resources allow.
    pub(crate) fn push(&self, jobs: impl IntoIterator<Item = Job>) {
        let mut q = self.shared.lock();
        let mut sync = false;
        for job in jobs {
            sync |= matches!(job.runner, Runner::Sync(_));
            q.push(job);
        }
        q.admit_async();
        let wake = !q.admitted.is_empty() && !std::mem::replace(&mut q.woken, true);
        let idle = q.idle;
        drop(q);
        if sync {
            // New threads look at the queue before they wait.
            self.start_threads();
        }
        if sync && idle > 0 {
            self.shared.work.notify_all();
        }
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Jobs queued (not yet running).
    pub(crate) fn queued(&self) -> usize {
        self.shared.lock().queued
    }

    /// Takes what ended and the async jobs admitted since the last call.
    pub(crate) fn collect(&self) -> (Vec<Ended>, Vec<Admitted>) {
        let mut q = self.shared.lock();
        q.woken = false;
        (
            std::mem::take(&mut q.ended),
            std::mem::take(&mut q.admitted),
        )
    }

    /// A handle for async jobs to report their end with.
    pub(crate) fn handle(&self) -> PoolHandle {
        PoolHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Removes the queued jobs `which` selects; they end as cancelled.
    pub(crate) fn cancel_queued(&self, mut which: impl FnMut(&TaskId) -> bool) {
        let mut q = self.shared.lock();
        let mut cancelled = Vec::new();
        for shape in &mut q.shapes {
            shape.jobs.retain(|(_, job)| {
                if which(&job.id) {
                    cancelled.push(Ended {
                        id: job.id,
                        attempt: job.attempt,
                        keep: job.keep,
                        result: Finish::Cancelled,
                        micros: 0,
                    });
                    false
                } else {
                    true
                }
            });
        }
        q.queued -= cancelled.len();
        let wake = !cancelled.is_empty() && !std::mem::replace(&mut q.woken, true);
        q.ended.extend(cancelled);
        drop(q);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// What the node offers in all, and what is free now.
    pub(crate) fn resources(&self) -> (ResourceSet, ResourceSet) {
        let q = self.shared.lock();
        (q.total.clone(), q.free.clone())
    }

    /// Rows for the queued and running jobs, at most `limit`; and how many
    /// were left out.
    pub(crate) fn rows(&self, node: swarm_protocol::NodeId, limit: usize) -> (Vec<TaskRow>, usize) {
        let q = self.shared.lock();
        let mut rows = Vec::new();
        for (id, r) in &q.running {
            rows.push(TaskRow {
                id: *id,
                function: r.tag.to_string(),
                state: TaskState::Running,
                resources: r.need.clone(),
                node: Some(node),
                attempt: r.attempt,
                reason: None,
            });
        }
        for shape in &q.shapes {
            let waits = shape
                .need
                .missing(&q.free)
                .map(|s| format!("waiting for {s} here"));
            for (_, job) in &shape.jobs {
                rows.push(TaskRow {
                    id: job.id,
                    function: job.tag.to_string(),
                    state: TaskState::Queued,
                    resources: shape.need.clone(),
                    node: Some(node),
                    attempt: job.attempt,
                    reason: waits.clone(),
                });
            }
        }
        let omitted = rows.len().saturating_sub(limit);
        rows.truncate(limit);
        (rows, omitted)
    }
}

/// Where an async job reports its end, from its own future.
pub(crate) struct PoolHandle {
    shared: Arc<Shared>,
}

impl PoolHandle {
    /// Records that an async job ended and gives back what it held.
    pub(crate) fn finish(&self, ended: Ended, gpus: Vec<u32>) {
        self.shared.finish(ended, gpus);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.work.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic never happens while the lock is held (tasks run unlocked).
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finish(&self, ended: Ended, gpus: Vec<u32>) {
        let mut q = self.lock();
        q.release(&ended.id, gpus);
        let slow = ended.micros >= SLOW_MICROS;
        q.ended.push(ended);
        q.admit_async();
        let runnable = q.has_runnable_sync();
        // Small tasks are reported in batches: the scheduler is woken when
        // a batch is full, a task was slow, or this thread runs out of work.
        let due = slow || !runnable || q.ended.len() >= WAKE_BATCH || !q.admitted.is_empty();
        let wake = due && !std::mem::replace(&mut q.woken, true);
        let notify = runnable && q.idle > 0;
        drop(q);
        if notify {
            self.work.notify_one();
        }
        if wake {
            self.wake.notify_one();
        }
    }
}

impl Queue {
    fn push(&mut self, job: Job) {
        let sync = matches!(job.runner, Runner::Sync(_));
        let order = self.next;
        self.next += 1;
        self.queued += 1;
        match self
            .shapes
            .iter_mut()
            .find(|s| s.sync == sync && s.need == job.need)
        {
            Some(shape) => shape.jobs.push_back((order, job)),
            None => self.shapes.push(Shape {
                need: job.need.clone(),
                sync,
                jobs: VecDeque::from([(order, job)]),
            }),
        }
    }

    /// Takes the oldest runnable job of the given kind, holding its resources.
    fn admit(&mut self, sync: bool) -> Option<(Job, Vec<u32>)> {
        let free = &self.free;
        let index = self
            .shapes
            .iter()
            .enumerate()
            .filter(|(_, s)| s.sync == sync && s.need.fits_in(free))
            .filter_map(|(i, s)| s.jobs.front().map(|(order, _)| (*order, i)))
            .min()
            .map(|(_, i)| i)?;
        let shape = self.shapes.get_mut(index)?;
        let (_, job) = shape.jobs.pop_front()?;
        if shape.jobs.is_empty() && self.shapes.len() > 8 {
            self.shapes.swap_remove(index);
        }
        self.queued -= 1;
        self.free = self.free.minus(&job.need);
        let take = usize::try_from(job.need.gpus).unwrap_or(usize::MAX);
        let at = self.free_gpus.len().saturating_sub(take);
        let gpus = self.free_gpus.split_off(at);
        self.running.insert(
            job.id,
            Running {
                tag: Arc::clone(&job.tag),
                need: job.need.clone(),
                attempt: job.attempt,
            },
        );
        Some((job, gpus))
    }

    fn admit_async(&mut self) {
        while let Some((job, gpus)) = self.admit(false) {
            self.admitted.push(Admitted { job, gpus });
        }
    }

    fn has_runnable_sync(&self) -> bool {
        self.shapes
            .iter()
            .any(|s| s.sync && !s.jobs.is_empty() && s.need.fits_in(&self.free))
    }

    fn release(&mut self, id: &TaskId, gpus: Vec<u32>) {
        if let Some(running) = self.running.remove(id) {
            self.free = self.free.plus(&running.need);
            self.free_gpus.extend(gpus);
        }
    }
}

/// A task thread: runs the oldest runnable sync job, again and again.
fn work(shared: &Shared, node: swarm_protocol::NodeId) {
    let mut q = shared.lock();
    loop {
        if q.stopping {
            return;
        }
        let Some((job, gpus)) = q.admit(true) else {
            q.idle += 1;
            q = shared.work.wait(q).unwrap_or_else(PoisonError::into_inner);
            q.idle -= 1;
            continue;
        };
        drop(q);
        let ended = run(job, node, &gpus);
        shared.finish(ended, gpus);
        q = shared.lock();
    }
}

/// Runs a sync job on this thread, catching a panic.
fn run(job: Job, node: swarm_protocol::NodeId, gpus: &[u32]) -> Ended {
    let Job {
        id,
        attempt,
        runner,
        args,
        keep,
        cancel,
        ..
    } = job;
    let ended = |result, micros| Ended {
        id,
        attempt,
        keep,
        result,
        micros,
    };
    if cancel.load(std::sync::atomic::Ordering::Relaxed) {
        return ended(Finish::Cancelled, 0);
    }
    let Runner::Sync(call) = runner else {
        return ended(
            Finish::Ran(Err(Failure::Decode("not a sync task".into()))),
            0,
        );
    };
    let ctx = TaskContext::new(id, node, attempt, gpus.to_vec(), cancel);
    let started = Instant::now();
    let result = context::with_sync(ctx, || {
        std::panic::catch_unwind(AssertUnwindSafe(|| call(args)))
            .unwrap_or_else(|panic| Err(Failure::Panicked(panic_message(&*panic))))
    });
    ended(Finish::Ran(result), micros_since(started))
}

/// Microseconds since `started`, saturating.
pub(crate) fn micros_since(started: Instant) -> u32 {
    u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX)
}

/// The text of a panic payload.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic".to_owned())
}
