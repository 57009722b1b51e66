//! The `Scheduler` actor, one per node, exposed as `swarm.tasks`. It is
//! both sides of a task:
//!
//! - as **owner** of what this node's clients submit, it keeps the
//!   [`Owner`] book: places tasks (here first, else spilled by the policy),
//!   retries them when their node dies, completes their handles;
//! - as **runner** of what owners send it, it admits tasks to its bounded
//!   [`Pool`] (refusing with backpressure past [`MAX_QUEUED`]), fetches
//!   kept arguments from their holders, keeps results in its [`Store`] or
//!   batches them back to their owners.
//!
//! ```text
//! Scheduler ── Pool (task threads from the first sync task on; stop when
//!     │              the pool is dropped)
//!     │
//!     ├── waker task: turns pool notifications into `Collect` messages
//!     └── fetches and tells: spawned futures, reporting back by message
//! ```
//!
//! Its clients' requests are in `requests`; what it sends other nodes, in
//! `send`.
//!
//! If the scheduler stops (node shutdown), its pool's threads end after
//! their current task, pending handles fail with `Stopped`, and owners on
//! other nodes see this node leave through membership.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use actix::{Actor, AsyncContext, Context, Handler, Message, MessageResult, SpawnHandle};
use swarm_protocol::NodeId;
use tokio::sync::{Notify, Semaphore};

use super::context::{self, TaskContext};
use super::error::TaskError;
use super::fetch::{self, Chunk, ChunkBytes, FetchObject};
use super::outcome::{Bounce, Done, Outcome, RunError, TasksDone};
use super::owner::{Effects, Owner};
use super::policy::Policy;
use super::pool::{micros_since, panic_message, Admitted, Ended, Finish, Job, Pool};
use super::store::Store;
use super::task::{Blob, Failure, Runner};
use super::wire::{Arg, CancelTasks, FreeObjects, ListTasks, Spec, SubmitTasks, TaskId, TaskTable};
use crate::mesh::Mesh;
use crate::placement::ResourceSet;

mod members;
mod requests;
mod send;

pub(crate) use requests::{Cancel, Release, Stop, Submit, WaitObject};
use send::Flush;

/// Tasks a node holds queued (or fetching arguments) before it answers
/// new ones with backpressure.
pub(crate) const MAX_QUEUED: usize = 65_536;
/// How often nodes running this node's tasks are checked for crash
/// evidence (only while some do).
const CRASH_CHECK: std::time::Duration = std::time::Duration::from_millis(50);
/// How long a crash probe waits for a connection.
const CRASH_PROBE: std::time::Duration = std::time::Duration::from_millis(500);

/// Registered functions by tag, shared with the [`Tasks`](super::Tasks) handle.
pub(crate) type Registry = Arc<RwLock<HashMap<String, Runner>>>;

/// The parts a scheduler starts from.
pub(crate) struct Parts {
    pub(crate) mesh: Mesh,
    pub(crate) total: ResourceSet,
    pub(crate) registry: Registry,
    pub(crate) store: Store,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) policy: Policy,
}

/// The node's scheduler.
pub struct Scheduler {
    me: NodeId,
    mesh: Mesh,
    owner: Owner,
    pool: Pool,
    wake: Arc<Notify>,
    registry: Registry,
    store: Store,
    /// Returned to clients as owned tasks end (the owner's bound).
    permits: Arc<Semaphore>,
    /// Cancellation flags of tasks admitted here, until they end.
    flags: HashMap<TaskId, Arc<AtomicBool>>,
    /// Stops a running async task.
    stops: HashMap<TaskId, Arc<Notify>>,
    /// Tasks fetching their arguments.
    fetching: usize,
    /// Outcomes for owners on other nodes, sent at the next flush.
    outbox: HashMap<NodeId, Vec<Outcome>>,
    /// Owner effects for other nodes, sent at the next flush.
    pending: Effects,
    flush_queued: bool,
    /// Runs ended here since start, and those that failed.
    ran: u64,
    failed: u64,
    /// Largest result sent back by value.
    max_result: usize,
    /// Members' addresses, to look for crash evidence.
    addrs: HashMap<NodeId, std::net::SocketAddr>,
    /// Nodes being probed now.
    probing: HashSet<NodeId>,
    /// The crash-evidence timer, armed only while other nodes run this
    /// node's tasks: an idle scheduler does not wake up.
    crash_check: Option<SpawnHandle>,
    /// One ordered queue of batches per other node.
    senders: HashMap<NodeId, tokio::sync::mpsc::UnboundedSender<send::Outgoing>>,
    /// Fetches of kept results refused here (the first few are logged at
    /// warn level, the rest at debug).
    fetches_refused: u64,
}

impl Scheduler {
    pub(crate) fn new(parts: Parts) -> Self {
        let wake = Arc::new(Notify::new());
        let threads = parts.total.cpus.ceil().max(1.0) as usize;
        let me = parts.mesh.id();
        let pool = Pool::new(me, parts.total.clone(), threads, Arc::clone(&wake));
        Self {
            me,
            owner: Owner::new(me, parts.policy),
            max_result: parts.mesh.max_message().saturating_sub(64 << 10),
            mesh: parts.mesh,
            pool,
            wake,
            registry: parts.registry,
            store: parts.store,
            permits: parts.permits,
            flags: HashMap::new(),
            stops: HashMap::new(),
            fetching: 0,
            outbox: HashMap::new(),
            pending: Effects::default(),
            flush_queued: false,
            ran: 0,
            failed: 0,
            addrs: HashMap::new(),
            probing: HashSet::new(),
            crash_check: None,
            senders: HashMap::new(),
            fetches_refused: 0,
        }
    }

    /// Looks for crash evidence on nodes running this node's tasks: no
    /// link to them, and their address refuses connections. A SIGKILLed
    /// node is found so in tens of milliseconds, long before membership
    /// declares it down. (Wrongly taken for dead, a node's tasks run
    /// twice, which retries allow; its late outcomes are ignored.)
    fn look_for_crashes(&mut self, ctx: &mut Context<Self>) {
        if self.owner.busy_nodes().next().is_none() {
            if let Some(timer) = self.crash_check.take() {
                ctx.cancel_future(timer);
            }
            return;
        }
        let suspects: Vec<NodeId> = self
            .owner
            .busy_nodes()
            .filter(|n| !self.probing.contains(n) && self.mesh.live_link(*n).is_none())
            .collect();
        for node in suspects {
            let Some(addr) = self.addrs.get(&node).copied() else {
                continue;
            };
            self.probing.insert(node);
            let me = ctx.address();
            actix::spawn(async move {
                let connect = tokio::net::TcpStream::connect(addr);
                let refused = matches!(
                    tokio::time::timeout(CRASH_PROBE, connect).await,
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
                );
                me.do_send(Probed { node, refused });
            });
        }
    }

    /// Runs `f` on the owner book, returning permits for tasks that ended
    /// and sending what it decided.
    fn own<R>(
        &mut self,
        arriving: usize,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&mut Owner, &mut Effects) -> R,
    ) -> R {
        let before = self.owner.len() + arriving;
        let mut fx = Effects::default();
        let r = f(&mut self.owner, &mut fx);
        let ended = before.saturating_sub(self.owner.len());
        if ended > 0 {
            self.permits.add_permits(ended);
        }
        self.apply(fx, ctx);
        // Tasks out on other nodes: look for crash evidence until none is.
        if self.crash_check.is_none() && self.owner.busy_nodes().next().is_some() {
            let timer = ctx.run_interval(CRASH_CHECK, |act, ctx| act.look_for_crashes(ctx));
            self.crash_check = Some(timer);
        }
        r
    }

    /// Acts on owner effects: this node's part now, other nodes' at the flush.
    fn apply(&mut self, mut fx: Effects, ctx: &mut Context<Self>) {
        if let Some(specs) = fx.run.remove(&self.me) {
            let me = self.me;
            self.accept(me, specs, ctx);
        }
        if let Some(seqs) = fx.cancel.remove(&self.me) {
            let me = self.me;
            self.cancel_here(me, &seqs);
        }
        if let Some(seqs) = fx.free.remove(&self.me) {
            for seq in seqs {
                self.store.remove(&TaskId {
                    owner: self.me,
                    seq,
                });
            }
        }
        if fx.is_empty() {
            return;
        }
        for (node, specs) in fx.run {
            self.pending.run.entry(node).or_default().extend(specs);
        }
        for (node, seqs) in fx.cancel {
            self.pending.cancel.entry(node).or_default().extend(seqs);
        }
        for (node, seqs) in fx.free {
            self.pending.free.entry(node).or_default().extend(seqs);
        }
        self.queue_flush(ctx);
    }

    fn queue_flush(&mut self, ctx: &mut Context<Self>) {
        if !self.flush_queued {
            self.flush_queued = true;
            ctx.notify(Flush);
        }
    }

    /// Admits tasks from `owner`: bounces what cannot run here, fetches kept
    /// arguments, queues the rest in the pool.
    fn accept(&mut self, owner: NodeId, specs: Vec<Spec>, ctx: &mut Context<Self>) {
        let (total, _) = self.pool.resources();
        let mut room = MAX_QUEUED.saturating_sub(self.pool.queued() + self.fetching);
        let mut bounced = Vec::new();
        let mut jobs = Vec::with_capacity(specs.len());
        let registry = self
            .registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for spec in specs {
            let bounce = |reason| Outcome {
                seq: spec.seq,
                attempt: spec.attempt,
                result: Err(RunError::Bounced { reason }),
                micros: 0,
            };
            let Some(runner) = registry.get(&spec.tag).copied() else {
                bounced.push(bounce(Bounce::Unregistered));
                continue;
            };
            if !spec.need.is_valid() || !spec.need.fits_in(&total) {
                bounced.push(bounce(Bounce::TooBig));
                continue;
            }
            if room == 0 {
                bounced.push(bounce(Bounce::Busy));
                continue;
            }
            room -= 1;
            let id = TaskId {
                owner,
                seq: spec.seq,
            };
            let cancel = Arc::new(AtomicBool::new(false));
            self.flags.insert(id, Arc::clone(&cancel));
            // Values, and kept results held here, are at hand; others are
            // fetched from their holders first.
            let at_hand: Option<Vec<Blob>> = spec
                .args
                .iter()
                .map(|a| match a {
                    Arg::Value(bytes) => Some(Arc::new(bytes.to_vec())),
                    Arg::Ref(object) if object.node == self.me => self
                        .store
                        .read(&object.task, self.me, owner, &object.token)
                        .ok(),
                    Arg::Ref(_) => None,
                })
                .collect();
            let mut job = Job {
                id,
                attempt: spec.attempt,
                tag: Arc::from(spec.tag.as_str()),
                runner,
                args: Vec::new(),
                need: spec.need,
                keep: spec.keep.then_some(spec.token),
                cancel,
            };
            match at_hand {
                Some(args) => {
                    job.args = args;
                    jobs.push(job);
                }
                None => {
                    self.fetching += 1;
                    let (mesh, store, me) = (self.mesh.clone(), self.store.clone(), ctx.address());
                    actix::spawn(async move {
                        let failed =
                            match fetch::resolve::<Scheduler>(&mesh, &store, owner, &spec.args)
                                .await
                            {
                                Ok(args) => {
                                    job.args = args;
                                    None
                                }
                                Err(e) => Some(e),
                            };
                        me.do_send(Fetched { job, failed });
                    });
                }
            }
        }
        drop(registry);
        self.pool.push(jobs);
        if !bounced.is_empty() {
            self.report(owner, bounced, ctx);
        }
    }

    /// Routes outcomes to their owner: this node's book now, others at the flush.
    fn report(&mut self, owner: NodeId, outcomes: Vec<Outcome>, ctx: &mut Context<Self>) {
        if owner == self.me {
            let me = self.me;
            self.own(0, ctx, |o, fx| o.outcomes(me, outcomes, fx));
        } else {
            self.outbox.entry(owner).or_default().extend(outcomes);
            self.queue_flush(ctx);
        }
    }

    /// Cancels tasks of `owner` admitted here.
    fn cancel_here(&mut self, owner: NodeId, seqs: &[u64]) {
        let ids: HashSet<TaskId> = seqs.iter().map(|&seq| TaskId { owner, seq }).collect();
        for id in &ids {
            if let Some(flag) = self.flags.get(id) {
                flag.store(true, Ordering::Relaxed);
            }
            if let Some(stop) = self.stops.get(id) {
                stop.notify_one();
            }
        }
        self.pool.cancel_queued(|id| ids.contains(id));
    }

    /// Takes what the pool finished and starts admitted async tasks.
    fn collect(&mut self, ctx: &mut Context<Self>) {
        let (ended, admitted) = self.pool.collect();
        for a in admitted {
            self.start_async(a, ctx);
        }
        if ended.is_empty() {
            return;
        }
        let mut by_owner: HashMap<NodeId, Vec<Outcome>> = HashMap::new();
        for e in ended {
            self.flags.remove(&e.id);
            self.stops.remove(&e.id);
            let owner = e.id.owner;
            let outcome = self.outcome_of(e);
            by_owner.entry(owner).or_default().push(outcome);
        }
        for (owner, outcomes) in by_owner {
            self.report(owner, outcomes, ctx);
        }
    }

    /// What an ended run reports; a kept result goes to the store.
    fn outcome_of(&mut self, e: Ended) -> Outcome {
        self.ran += 1;
        let result = match e.result {
            Finish::Cancelled => Err(RunError::Cancelled),
            Finish::Ran(Ok(bytes)) if e.keep.is_some() => {
                let size = bytes.len() as u64;
                let token = e.keep.unwrap_or_default();
                self.store.insert(e.id, Arc::new(bytes), token);
                Ok(Done::Kept { size })
            }
            Finish::Ran(Ok(bytes)) if bytes.len() > self.max_result => Err(RunError::Argument {
                error: TaskError::TooLarge {
                    size: bytes.len() as u64,
                    max: self.max_result as u64,
                },
            }),
            Finish::Ran(Ok(bytes)) => Ok(Done::Value(serde_bytes::ByteBuf::from(bytes))),
            Finish::Ran(Err(failure)) => Err(match failure {
                Failure::Error(message) => RunError::Failed {
                    message,
                    panicked: false,
                },
                Failure::Panicked(message) => RunError::Failed {
                    message,
                    panicked: true,
                },
                Failure::Decode(reason) | Failure::Encode(reason) => RunError::Argument {
                    error: TaskError::Codec { reason },
                },
            }),
        };
        if result.is_err() {
            self.failed += 1;
        }
        Outcome {
            seq: e.id.seq,
            attempt: e.attempt,
            result,
            micros: e.micros,
        }
    }

    /// Runs an admitted async task on this arbiter until it ends or is stopped.
    fn start_async(&mut self, admitted: Admitted, _ctx: &mut Context<Self>) {
        let Admitted { job, gpus } = admitted;
        let Runner::Async(call) = job.runner else {
            return;
        };
        let stop = Arc::new(Notify::new());
        self.stops.insert(job.id, Arc::clone(&stop));
        let pool = self.pool.handle();
        let (id, attempt, keep) = (job.id, job.attempt, job.keep);
        let task_ctx =
            TaskContext::new(id, self.me, attempt, gpus.clone(), Arc::clone(&job.cancel));
        let cancelled = job.cancel.load(Ordering::Relaxed);
        let args = job.args;
        actix::spawn(async move {
            let started = std::time::Instant::now();
            let result = if cancelled {
                Finish::Cancelled
            } else {
                let run = std::panic::AssertUnwindSafe(context::with_async(task_ctx, call(args)));
                tokio::select! {
                    ran = catch(run) => Finish::Ran(ran),
                    () = stop.notified() => Finish::Cancelled,
                }
            };
            let ended = Ended {
                id,
                attempt,
                keep,
                result,
                micros: micros_since(started),
            };
            pool.finish(ended, gpus);
        });
    }

    fn table(&self, recent: usize) -> TaskTable {
        let limit = 1_000;
        let (mut rows, mut omitted) = self.pool.rows(self.me, limit);
        let (owned, owned_omitted) = self.owner.rows(limit.saturating_sub(rows.len()), recent);
        rows.extend(owned);
        omitted += owned_omitted;
        let (total, free) = self.pool.resources();
        TaskTable {
            node: Some(self.me),
            total,
            free,
            rows,
            omitted,
            finished: self.ran - self.failed,
            failed: self.failed,
            submitted: self.owner.submitted(),
            objects: self.store.stats(),
            nodes: self.owner.schedulable(),
        }
    }
}

/// Polls an async task, turning a panic into a failure.
async fn catch<F>(run: std::panic::AssertUnwindSafe<F>) -> Result<Vec<u8>, Failure>
where
    F: std::future::Future<Output = Result<Vec<u8>, Failure>>,
{
    use std::future::Future as _;
    let mut run = std::pin::pin!(run);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(panic) => std::task::Poll::Ready(Err(Failure::Panicked(panic_message(&*panic)))),
        }
    })
    .await
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let wake = Arc::clone(&self.wake);
        let me = ctx.address().downgrade();
        actix::spawn(async move {
            loop {
                wake.notified().await;
                let Some(me) = me.upgrade() else { return };
                me.do_send(Collect);
            }
        });
    }
}

/// The pool has ended tasks or admitted async ones.
#[derive(Message)]
#[rtype(result = "()")]
struct Collect;

impl Handler<Collect> for Scheduler {
    type Result = ();
    fn handle(&mut self, _: Collect, ctx: &mut Context<Self>) {
        self.collect(ctx);
    }
}

/// A crash probe's answer.
#[derive(Message)]
#[rtype(result = "()")]
struct Probed {
    node: NodeId,
    refused: bool,
}

impl Handler<Probed> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: Probed, ctx: &mut Context<Self>) {
        self.probing.remove(&msg.node);
        if msg.refused && self.mesh.live_link(msg.node).is_none() {
            tracing::info!(node = %msg.node.short(), "crash evidence: its tasks run again elsewhere");
            let node = msg.node;
            self.own(0, ctx, |o, fx| o.node_gone(node, fx));
        }
    }
}

/// A task's kept arguments arrived (or could not be had).
#[derive(Message)]
#[rtype(result = "()")]
struct Fetched {
    job: Job,
    failed: Option<TaskError>,
}

impl Handler<Fetched> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: Fetched, ctx: &mut Context<Self>) {
        self.fetching = self.fetching.saturating_sub(1);
        let Fetched { job, failed } = msg;
        if let Some(error) = failed {
            self.flags.remove(&job.id);
            let outcome = Outcome {
                seq: job.id.seq,
                attempt: job.attempt,
                result: Err(RunError::Argument { error }),
                micros: 0,
            };
            self.report(job.id.owner, vec![outcome], ctx);
            return;
        }
        self.pool.push([job]);
    }
}

impl Handler<SubmitTasks> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: SubmitTasks, ctx: &mut Context<Self>) {
        self.accept(msg.owner, msg.tasks, ctx);
    }
}

impl Handler<TasksDone> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: TasksDone, ctx: &mut Context<Self>) {
        self.own(0, ctx, |o, fx| o.outcomes(msg.from, msg.outcomes, fx));
    }
}

impl Handler<CancelTasks> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: CancelTasks, _: &mut Context<Self>) {
        self.cancel_here(msg.owner, &msg.seqs);
    }
}

impl Handler<FreeObjects> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: FreeObjects, _: &mut Context<Self>) {
        for seq in msg.seqs {
            self.store.remove(&TaskId {
                owner: msg.owner,
                seq,
            });
        }
    }
}

impl Handler<FetchObject> for Scheduler {
    type Result = MessageResult<FetchObject>;
    fn handle(&mut self, msg: FetchObject, _: &mut Context<Self>) -> Self::Result {
        // `from` was stamped from the link: the reader proved who it is.
        let value = match self.store.read(&msg.task, self.me, msg.from, &msg.token) {
            Ok(value) => value,
            Err(error) => {
                if matches!(error, TaskError::Forbidden { .. }) {
                    self.fetch_refused(msg.task, msg.from);
                }
                return MessageResult(Err(error));
            }
        };
        let size = value.len() as u64;
        let start = usize::try_from(msg.offset)
            .unwrap_or(usize::MAX)
            .min(value.len());
        let len = (msg.len.min(fetch::CHUNK)) as usize;
        let end = start.saturating_add(len).min(value.len());
        MessageResult(Ok(Chunk {
            size,
            bytes: ChunkBytes::Shared(value, start..end),
        }))
    }
}

impl Scheduler {
    /// Counts and logs a fetch of a kept result the reader may not read.
    fn fetch_refused(&mut self, task: TaskId, reader: NodeId) {
        self.fetches_refused += 1;
        self.mesh.count_forbidden();
        if self.fetches_refused <= LOGGED_FETCH_REFUSALS {
            tracing::warn!(%task, reader = %reader.short(), "kept result refused: the reader is not its owner and holds no token for it");
        } else {
            tracing::debug!(%task, reader = %reader.short(), "kept result refused");
        }
    }
}

/// Refused fetches logged at warn level; the rest at debug.
const LOGGED_FETCH_REFUSALS: u64 = 64;

impl Handler<ListTasks> for Scheduler {
    type Result = MessageResult<ListTasks>;
    fn handle(&mut self, msg: ListTasks, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.table(msg.recent.min(1_000)))
    }
}

crate::remote_actor!(
    Scheduler: SubmitTasks,
    TasksDone,
    CancelTasks,
    FreeObjects,
    FetchObject,
    ListTasks
);
