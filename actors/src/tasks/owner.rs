//! The owner's book: every task this node submitted until it ends, where
//! each was sent, what this node has in flight on every other node, and
//! the kept results it owns ([`objects`]). It decides where tasks go
//! (`placing`, with [`policy`](super::policy)), retries them when their
//! node dies, and completes their handles. No actor, no I/O: each call
//! returns what to send in an [`Effects`]; the scheduler sends it.

pub(crate) mod objects;
mod placing;

use std::collections::{HashMap, VecDeque};

use swarm_protocol::NodeId;
use tokio::sync::{mpsc, oneshot};

use self::objects::{ObjectState, Objects};
use super::error::TaskError;
use super::outcome::{Bounce, Done, Outcome, RunError};
use super::policy::{self, Candidate, Choice, Policy, Request};
use super::task::Blob;
use super::wire::{Arg, Spec, TaskId, TaskRow, TaskState, Token};
use crate::placement::{Infeasible, Placement, ResourceSet};

/// Work queued per node beyond what fits there, in microseconds of the
/// function's observed run time: enough to keep it busy for a round trip.
const PIPELINE_MICROS: f64 = 2_000.0;
/// At most this many tasks wait in one node's queue for one owner.
const MAX_PIPELINE: usize = 4_096;
/// Ended tasks kept for listings.
const RECENT: usize = 256;

/// Where a task's result goes.
pub(crate) enum Reply {
    /// One handle.
    One(oneshot::Sender<Result<Blob, TaskError>>),
    /// A stream of a batch: its index there.
    Many {
        /// The batch's channel (bounded by its window of tasks in flight).
        tx: mpsc::UnboundedSender<(usize, Result<Blob, TaskError>)>,
        /// The task's index in the batch.
        index: usize,
    },
    /// Kept where it was made: the owner's object table tracks it.
    Keep,
}

/// A task as a client hands it to its node's scheduler.
pub(crate) struct NewTask {
    /// The function's tag.
    pub(crate) tag: String,
    /// The arguments.
    pub(crate) args: Vec<Arg>,
    /// What it holds while it runs.
    pub(crate) need: ResourceSet,
    /// Where it may go (`None`: the node's policy).
    pub(crate) placement: Option<Placement>,
    /// Runs after the first, if its node dies (or it fails and
    /// `retry_on_error`).
    pub(crate) retries: u32,
    /// Retry on the task's own error too.
    pub(crate) retry_on_error: bool,
    /// Where the result goes.
    pub(crate) reply: Reply,
}

/// What the scheduler must send after a call.
#[derive(Default)]
pub(crate) struct Effects {
    /// Tasks to run, by node (this node included).
    pub(crate) run: HashMap<NodeId, Vec<Spec>>,
    /// Tasks to cancel, by node.
    pub(crate) cancel: HashMap<NodeId, Vec<u64>>,
    /// Kept results to drop, by node.
    pub(crate) free: HashMap<NodeId, Vec<u64>>,
}

impl Effects {
    /// Whether there is nothing to send.
    pub(crate) fn is_empty(&self) -> bool {
        self.run.is_empty() && self.cancel.is_empty() && self.free.is_empty()
    }
}

/// A task this node owns, until it ends.
struct Owned {
    spec: Spec,
    placement: Option<Placement>,
    retries: u32,
    retry_on_error: bool,
    reply: Option<Reply>,
    state: Stage,
    /// Nodes that handed it back (no function, never enough resources).
    skip: Vec<NodeId>,
    /// Cancelled: never retried; its reply was answered already.
    cancelled: bool,
}

/// Where an owned task is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    /// Waiting for this many kept results it takes.
    Inputs(usize),
    /// Waiting for a node.
    Pending,
    /// Sent to a node; `ahead`: queued there beyond what fits.
    Sent { node: NodeId, ahead: bool },
}

/// Tasks that wait for a node, grouped so one that must wait does not
/// block different ones behind it.
struct Class {
    need: ResourceSet,
    placement: Option<Placement>,
    queue: VecDeque<u64>,
    /// Why its first task waits.
    reason: Option<String>,
}

/// The owner's book.
pub(crate) struct Owner {
    me: NodeId,
    policy: Policy,
    next_seq: u64,
    tasks: HashMap<u64, Owned>,
    classes: Vec<Class>,
    /// Every node that runs tasks, as the policy sees it.
    nodes: Vec<Candidate>,
    /// Tasks in flight per node.
    outstanding: HashMap<NodeId, usize>,
    objects: Objects,
    /// Observed run time per function, microseconds (moving average).
    runtime: HashMap<String, f64>,
    recent: VecDeque<TaskRow>,
    /// The last needs and placement found feasible, until the view changes.
    feasible: Option<(ResourceSet, Option<Placement>)>,
    roll: u64,
    submitted: u64,
}

impl Owner {
    pub(crate) fn new(me: NodeId, policy: Policy) -> Self {
        Self {
            me,
            policy,
            next_seq: 0,
            tasks: HashMap::new(),
            classes: Vec::new(),
            nodes: Vec::new(),
            outstanding: HashMap::new(),
            objects: Objects::new(me),
            runtime: HashMap::new(),
            recent: VecDeque::new(),
            feasible: None,
            roll: u64::from_le_bytes(*b"swarmtsk") ^ u64::from(me.as_bytes()[0]),
            submitted: 0,
        }
    }

    /// Tasks owned and not yet ended.
    pub(crate) fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Other nodes this node has tasks in flight on.
    pub(crate) fn busy_nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.outstanding
            .iter()
            .filter(|(node, n)| **n > 0 && **node != self.me)
            .map(|(node, _)| *node)
    }

    /// Nodes that take tasks now.
    pub(crate) fn schedulable(&self) -> usize {
        self.nodes.iter().filter(|c| c.schedulable).count()
    }

    /// Tasks submitted since start.
    pub(crate) fn submitted(&self) -> u64 {
        self.submitted
    }

    /// The kept results this node owns.
    pub(crate) fn objects(&mut self) -> &mut Objects {
        &mut self.objects
    }

    /// A node that runs tasks joined or changed.
    pub(crate) fn node_up(
        &mut self,
        node: NodeId,
        total: ResourceSet,
        labels: Vec<String>,
        schedulable: bool,
        fx: &mut Effects,
    ) {
        self.feasible = None;
        match self.nodes.iter_mut().find(|c| c.node == node) {
            Some(c) => {
                c.total = total;
                c.labels = labels;
                c.schedulable = schedulable;
            }
            None => self.nodes.push(Candidate {
                node,
                total,
                used: ResourceSet::default(),
                ahead: 0,
                labels,
                schedulable,
            }),
        }
        self.place_pending(fx);
    }

    /// A node died or left: its tasks run again elsewhere (retries
    /// allowing), its kept results are lost.
    pub(crate) fn node_gone(&mut self, node: NodeId, fx: &mut Effects) {
        self.feasible = None;
        self.nodes.retain(|c| c.node != node);
        self.outstanding.remove(&node);
        let on_it: Vec<u64> = self
            .tasks
            .iter()
            .filter(|(_, t)| matches!(t.state, Stage::Sent { node: n, .. } if n == node))
            .map(|(seq, _)| *seq)
            .collect();
        for seq in on_it {
            let Some(task) = self.tasks.get_mut(&seq) else {
                continue;
            };
            if task.cancelled {
                self.end(seq, Err(TaskError::Cancelled), fx);
            } else if task.retries > 0 {
                task.retries -= 1;
                task.spec.attempt += 1;
                task.state = Stage::Pending;
                self.enqueue(seq);
            } else {
                let attempts = task.spec.attempt + 1;
                self.end(seq, Err(TaskError::NodeDied { node, attempts }), fx);
            }
        }
        for (seq, error) in self.objects.lost_on(node) {
            self.fail_dependents(seq, &error, fx);
        }
        self.place_pending(fx);
    }

    /// Takes a new task: it waits for its inputs, waits for a node, or is
    /// sent. Fails at once if no node could ever run it.
    pub(crate) fn submit(&mut self, new: NewTask, fx: &mut Effects) -> Result<TaskId, TaskError> {
        let seq = self.next_seq;
        if !new.need.is_valid() {
            return Err(TaskError::Unschedulable {
                cause: Infeasible::BadAmounts {
                    need: format!("{:?}", new.need),
                },
            });
        }
        // A batch shares its needs: check them against the view once.
        let known = self
            .feasible
            .as_ref()
            .is_some_and(|(need, placement)| *need == new.need && *placement == new.placement);
        if !known {
            let request = Request {
                need: &new.need,
                placement: new.placement.as_ref(),
                local: self.me,
                near: None,
                skip: &[],
                pipeline: usize::MAX,
            };
            if let Choice::Unschedulable { cause } =
                policy::choose(&request, &self.nodes, self.policy, 0)
            {
                return Err(TaskError::Unschedulable { cause });
            }
            self.feasible = Some((new.need.clone(), new.placement.clone()));
        }
        let mut missing = 0;
        for object in super::task::refs(&new.args) {
            if object.task.owner != self.me {
                return Err(TaskError::Codec {
                    reason: format!(
                        "the kept result of task {} is owned by another node; pass it on its owner",
                        object.task
                    ),
                });
            }
            match self.objects.state(object.task.seq) {
                Some(ObjectState::Ready { .. }) => {}
                Some(ObjectState::Pending) => missing += 1,
                Some(ObjectState::Failed(error)) => return Err(error.clone()),
                None => {
                    return Err(TaskError::ObjectLost {
                        task: object.task,
                        node: object.node,
                    })
                }
            }
        }
        for object in super::task::refs(&new.args) {
            self.objects.use_by(object.task.seq, seq);
        }
        let token = if matches!(new.reply, Reply::Keep) {
            self.objects.create(seq)
        } else {
            Token::default()
        };
        self.next_seq += 1;
        self.submitted += 1;
        let spec = Spec {
            seq,
            attempt: 0,
            tag: new.tag,
            args: new.args,
            need: new.need,
            keep: matches!(new.reply, Reply::Keep),
            token,
        };
        let state = if missing > 0 {
            Stage::Inputs(missing)
        } else {
            Stage::Pending
        };
        self.tasks.insert(
            seq,
            Owned {
                spec,
                placement: new.placement,
                retries: new.retries,
                retry_on_error: new.retry_on_error,
                reply: Some(new.reply),
                state,
                skip: Vec::new(),
                cancelled: false,
            },
        );
        if state == Stage::Pending {
            self.enqueue(seq);
            self.place_class_of(seq, fx);
        }
        Ok(TaskId {
            owner: self.me,
            seq,
        })
    }

    /// Outcomes reported by `from` (this node included).
    pub(crate) fn outcomes(&mut self, from: NodeId, outcomes: Vec<Outcome>, fx: &mut Effects) {
        for outcome in outcomes {
            self.outcome(from, outcome, fx);
        }
        self.place_pending(fx);
    }

    /// Tasks that could not be delivered to `node` (its link is down): they
    /// never ran there; place them again elsewhere.
    pub(crate) fn undelivered(&mut self, node: NodeId, seqs: &[u64], fx: &mut Effects) {
        for seq in seqs {
            let Some(task) = self.tasks.get_mut(seq) else {
                continue;
            };
            let Stage::Sent {
                node: sent_to,
                ahead,
            } = task.state
            else {
                continue;
            };
            if sent_to != node {
                continue;
            }
            let need = task.spec.need.clone();
            task.skip.push(node);
            task.state = Stage::Pending;
            let cancelled = task.cancelled;
            self.returned(node, &need, ahead);
            if cancelled {
                self.end(*seq, Err(TaskError::Cancelled), fx);
            } else {
                self.enqueue(*seq);
            }
        }
        self.place_pending(fx);
    }

    /// Cancels a task: a waiting one never runs; a running one is told.
    /// Its reply is answered `Cancelled` at once.
    pub(crate) fn cancel(&mut self, seq: u64, fx: &mut Effects) -> bool {
        let Some(task) = self.tasks.get_mut(&seq) else {
            return false;
        };
        if task.cancelled {
            return true;
        }
        match task.state {
            Stage::Inputs(_) | Stage::Pending => {
                self.unqueue(seq);
                self.end(seq, Err(TaskError::Cancelled), fx);
            }
            Stage::Sent { node, .. } => {
                task.cancelled = true;
                let reply = task.reply.take();
                fx.cancel.entry(node).or_default().push(seq);
                if let Some(reply) = reply {
                    self.answer(seq, reply, Err(TaskError::Cancelled), fx);
                }
            }
        }
        true
    }

    /// The last handle to a kept result was dropped.
    pub(crate) fn release(&mut self, seq: u64, fx: &mut Effects) {
        self.objects.release(seq, fx);
    }

    /// Rows for pending tasks (at most `limit`) and the latest ended ones.
    pub(crate) fn rows(&self, limit: usize, recent: usize) -> (Vec<TaskRow>, usize) {
        let mut rows = Vec::new();
        let mut omitted = 0;
        for class in &self.classes {
            for seq in &class.queue {
                let Some(task) = self.tasks.get(seq) else {
                    continue;
                };
                if rows.len() >= limit {
                    omitted += 1;
                    continue;
                }
                rows.push(self.row(task, TaskState::Pending, None, class.reason.clone()));
            }
        }
        for task in self.tasks.values() {
            if let Stage::Inputs(n) = task.state {
                if rows.len() >= limit {
                    omitted += 1;
                    continue;
                }
                let reason = format!("waiting for {n} kept result(s) it takes");
                rows.push(self.row(task, TaskState::Pending, None, Some(reason)));
            }
        }
        rows.extend(self.recent.iter().rev().take(recent).cloned());
        (rows, omitted)
    }

    fn row(
        &self,
        task: &Owned,
        state: TaskState,
        node: Option<NodeId>,
        reason: Option<String>,
    ) -> TaskRow {
        TaskRow {
            id: TaskId {
                owner: self.me,
                seq: task.spec.seq,
            },
            function: task.spec.tag.clone(),
            state,
            resources: task.spec.need.clone(),
            node,
            attempt: task.spec.attempt,
            reason,
        }
    }

    fn outcome(&mut self, from: NodeId, outcome: Outcome, fx: &mut Effects) {
        let Some(task) = self.tasks.get_mut(&outcome.seq) else {
            return;
        };
        let Stage::Sent { node, ahead } = task.state else {
            return;
        };
        if node != from || task.spec.attempt != outcome.attempt {
            return;
        }
        let need = task.spec.need.clone();
        let seq = outcome.seq;
        // Runs that ran (not bounced or cancelled unstarted) teach the run time.
        if outcome.micros > 0 || outcome.result.is_ok() {
            let micros = f64::from(outcome.micros);
            match self.runtime.get_mut(&task.spec.tag) {
                Some(avg) => *avg = 0.9 * *avg + 0.1 * micros,
                None => {
                    self.runtime.insert(task.spec.tag.clone(), micros);
                }
            }
        }
        let retry = match &outcome.result {
            Err(RunError::Bounced { reason }) => {
                if *reason != Bounce::Busy {
                    task.skip.push(from);
                }
                true
            }
            Err(RunError::Failed { .. }) if task.retry_on_error && task.retries > 0 => {
                task.retries -= 1;
                task.spec.attempt += 1;
                true
            }
            _ => false,
        };
        let busy = matches!(
            &outcome.result,
            Err(RunError::Bounced {
                reason: Bounce::Busy
            })
        );
        let cancelled = task.cancelled;
        self.returned(from, &need, ahead);
        if busy {
            // The node's queue is full: send it nothing more until it reports.
            if let Some(c) = self.nodes.iter_mut().find(|c| c.node == from) {
                c.ahead = MAX_PIPELINE;
            }
        }
        if cancelled {
            self.end(seq, Err(TaskError::Cancelled), fx);
            return;
        }
        if retry {
            if let Some(task) = self.tasks.get_mut(&seq) {
                task.state = Stage::Pending;
            }
            self.enqueue(seq);
            return;
        }
        let result = match outcome.result {
            Ok(Done::Value(bytes)) => Ok(Some(std::sync::Arc::new(bytes.into_vec()))),
            Ok(Done::Kept { size }) => {
                self.objects.ready(seq, from, size, fx);
                for dependent in self.objects.take_dependents(seq) {
                    self.input_ready(dependent);
                }
                Ok(None)
            }
            Err(RunError::Failed { message, panicked }) => Err(if panicked {
                TaskError::Panicked { message }
            } else {
                TaskError::Failed { message }
            }),
            Err(RunError::Cancelled) => Err(TaskError::Cancelled),
            Err(RunError::Argument { error }) => Err(error),
            Err(RunError::Bounced { .. }) => Err(TaskError::Stopped),
        };
        match result {
            Ok(Some(value)) => self.end_with(seq, Ok(value), Some(from), fx),
            Ok(None) => self.end_with(seq, Ok(std::sync::Arc::new(Vec::new())), Some(from), fx),
            Err(e) => self.end_with(seq, Err(e), Some(from), fx),
        }
    }

    /// A kept result `dependent` takes became ready.
    fn input_ready(&mut self, dependent: u64) {
        let Some(task) = self.tasks.get_mut(&dependent) else {
            return;
        };
        if let Stage::Inputs(n) = task.state {
            if n <= 1 {
                task.state = Stage::Pending;
                self.enqueue(dependent);
            } else {
                task.state = Stage::Inputs(n - 1);
            }
        }
    }

    /// Fails the tasks waiting for the kept result of `seq`.
    fn fail_dependents(&mut self, seq: u64, error: &TaskError, fx: &mut Effects) {
        for dependent in self.objects.take_dependents(seq) {
            let error = TaskError::Dependency {
                task: TaskId {
                    owner: self.me,
                    seq,
                },
                reason: error.to_string(),
            };
            self.end(dependent, Err(error), fx);
        }
    }

    /// Ends a task that never ran to an outcome.
    fn end(&mut self, seq: u64, result: Result<Blob, TaskError>, fx: &mut Effects) {
        self.end_with(seq, result, None, fx);
    }

    fn end_with(
        &mut self,
        seq: u64,
        result: Result<Blob, TaskError>,
        node: Option<NodeId>,
        fx: &mut Effects,
    ) {
        let Some(mut task) = self.tasks.remove(&seq) else {
            return;
        };
        let state = match &result {
            Ok(_) => TaskState::Finished,
            Err(TaskError::Cancelled) => TaskState::Cancelled,
            Err(_) => TaskState::Failed,
        };
        let reason = result.as_ref().err().map(ToString::to_string);
        let row = self.row(&task, state, node, reason);
        if self.recent.len() >= RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(row);
        for object in super::task::refs(&task.spec.args) {
            self.objects.unuse(object.task.seq, fx);
        }
        if task.spec.keep {
            if let Err(error) = &result {
                self.objects.fail(seq, error.clone(), fx);
                self.fail_dependents(seq, error, fx);
            }
        }
        if let Some(reply) = task.reply.take() {
            self.answer(seq, reply, result, fx);
        }
    }

    fn answer(
        &mut self,
        _seq: u64,
        reply: Reply,
        result: Result<Blob, TaskError>,
        _fx: &mut Effects,
    ) {
        // A receiver that went away (a dropped handle) is not an error.
        match reply {
            Reply::One(tx) => {
                let _ = tx.send(result);
            }
            Reply::Many { tx, index } => {
                let _ = tx.send((index, result));
            }
            Reply::Keep => {}
        }
    }
}

/// A book with a worker and a few tasks on it (one kept), for the fuzz hook.
#[cfg(any(fuzzing, test))]
pub(crate) fn seeded() -> (Owner, NodeId) {
    let me = NodeId::from_bytes([1; 16]);
    let worker = NodeId::from_bytes([2; 16]);
    let mut owner = Owner::new(me, Policy::default());
    let mut fx = Effects::default();
    owner.node_up(worker, ResourceSet::cpus(4.0), Vec::new(), true, &mut fx);
    for keep in [false, true, false] {
        let reply = if keep {
            Reply::Keep
        } else {
            Reply::One(oneshot::channel().0)
        };
        let _ = owner.submit(
            NewTask {
                tag: "t".to_owned(),
                args: Vec::new(),
                need: ResourceSet::cpus(1.0),
                placement: None,
                retries: 1,
                retry_on_error: true,
                reply,
            },
            &mut fx,
        );
    }
    (owner, worker)
}
