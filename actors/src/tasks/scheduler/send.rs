//! How a scheduler talks to other nodes' schedulers: what its handlers
//! decided is batched per node at the next `Flush` and sent through one
//! ordered sender per node; tasks that cannot be delivered go back to the
//! owner's book (`Undelivered`).

use actix::{AsyncContext, Context, Handler, Message};
use swarm_protocol::NodeId;

use super::Scheduler;
use crate::remote::RemoteAddr;
use crate::tasks::outcome::{Done, Outcome, TasksDone};
use crate::tasks::wire::{Arg, CancelTasks, FreeObjects, Spec, SubmitTasks, TASKS_ACTOR};

/// Outcomes or tasks per batch message.
const BATCH: usize = 4_096;
/// Encoded bytes per batch message (results and arguments).
const BATCH_BYTES: usize = 4 << 20;

/// Sends what was batched for other nodes.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Flush;

impl Handler<Flush> for Scheduler {
    type Result = ();
    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) {
        self.flush_queued = false;
        for (node, outcomes) in std::mem::take(&mut self.outbox) {
            for batch in batches(outcomes, outcome_size) {
                self.send(node, Outgoing::Done(batch), ctx);
            }
        }
        let fx = std::mem::take(&mut self.pending);
        for (node, specs) in fx.run {
            for batch in batches(specs, spec_size) {
                self.send(node, Outgoing::Run(batch), ctx);
            }
        }
        for (node, seqs) in fx.cancel {
            self.send(node, Outgoing::Cancel(seqs), ctx);
        }
        for (node, seqs) in fx.free {
            self.send(node, Outgoing::Free(seqs), ctx);
        }
    }
}

/// A batch for another node's scheduler.
pub(super) enum Outgoing {
    Run(Vec<Spec>),
    Done(Vec<Outcome>),
    Cancel(Vec<u64>),
    Free(Vec<u64>),
}

impl Scheduler {
    /// Queues `batch` for `node`: one sender per node keeps them in order
    /// (a long task sent first is not overtaken by a short one sent next).
    fn send(&mut self, node: NodeId, batch: Outgoing, ctx: &mut Context<Self>) {
        let tx = self.senders.entry(node).or_insert_with(|| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let to = RemoteAddr::new(self.mesh.clone(), node, TASKS_ACTOR);
            actix::spawn(deliver(to, node, rx, ctx.address()));
            tx
        });
        if let Err(back) = tx.send(batch) {
            // The sender stopped (its node went away): start over next time.
            self.senders.remove(&node);
            if let Outgoing::Run(specs) = back.0 {
                let seqs = specs.iter().map(|s| s.seq).collect();
                ctx.address().do_send(Undelivered { node, seqs });
            }
        }
    }
}

/// Sends batches to `node` in order until the scheduler drops the queue.
/// Tasks that cannot be delivered go back to the owner's book. (The
/// queue holds what the owner's bounds allow in flight, no more.)
async fn deliver(
    to: RemoteAddr<Scheduler>,
    node: NodeId,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Outgoing>,
    me: actix::Addr<Scheduler>,
) {
    // The sender is stamped by the receiving node; what is claimed here is ignored.
    let anyone = NodeId::from_bytes([0; 16]);
    while let Some(batch) = rx.recv().await {
        match batch {
            Outgoing::Run(tasks) => {
                let seqs: Vec<u64> = tasks.iter().map(|s| s.seq).collect();
                let sent = to
                    .tell(SubmitTasks {
                        owner: anyone,
                        tasks,
                    })
                    .await;
                if sent.is_err() {
                    me.do_send(Undelivered { node, seqs });
                }
            }
            // An owner that died or left wants nothing any more.
            Outgoing::Done(outcomes) => {
                let _ = to
                    .tell(TasksDone {
                        from: anyone,
                        outcomes,
                    })
                    .await;
            }
            Outgoing::Cancel(seqs) => {
                let _ = to
                    .tell(CancelTasks {
                        owner: anyone,
                        seqs,
                    })
                    .await;
            }
            Outgoing::Free(seqs) => {
                let _ = to
                    .tell(FreeObjects {
                        owner: anyone,
                        seqs,
                    })
                    .await;
            }
        }
    }
}

/// Splits `items` into messages of at most [`BATCH`] items and about
/// [`BATCH_BYTES`] bytes.
fn batches<T>(items: Vec<T>, size: fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for item in items {
        let s = size(&item);
        if !current.is_empty() && (current.len() >= BATCH || bytes + s > BATCH_BYTES) {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += s;
        current.push(item);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn outcome_size(o: &Outcome) -> usize {
    match &o.result {
        Ok(Done::Value(bytes)) => bytes.len() + 16,
        _ => 32,
    }
}

fn spec_size(s: &Spec) -> usize {
    s.tag.len()
        + 32
        + s.args
            .iter()
            .map(|a| match a {
                Arg::Value(bytes) => bytes.len() + 4,
                Arg::Ref(_) => 48,
            })
            .sum::<usize>()
}

/// Tasks sent to `node` that never got there.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Undelivered {
    pub(super) node: NodeId,
    pub(super) seqs: Vec<u64>,
}

impl Handler<Undelivered> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: Undelivered, ctx: &mut Context<Self>) {
        self.own(0, ctx, |o, fx| o.undelivered(msg.node, &msg.seqs, fx));
    }
}
