//! The door of this node's clients (the `Tasks` handle and its handles):
//! submit, cancel, release a kept result, wait for one, stop. Local
//! messages only; other nodes use the wire messages.

use actix::{ActorContext, Context, Handler, Message, MessageResult};

use super::Scheduler;
use crate::tasks::error::TaskError;
use crate::tasks::owner::objects::Waiter;
use crate::tasks::owner::NewTask;
use crate::tasks::wire::TaskId;

/// A client's tasks, into this node's book.
#[derive(Message)]
#[rtype(result = "Vec<Result<TaskId, TaskError>>")]
pub(crate) struct Submit {
    pub(crate) tasks: Vec<NewTask>,
}

impl Handler<Submit> for Scheduler {
    type Result = MessageResult<Submit>;
    fn handle(&mut self, msg: Submit, ctx: &mut Context<Self>) -> Self::Result {
        let n = msg.tasks.len();
        MessageResult(self.own(n, ctx, |o, fx| {
            msg.tasks.into_iter().map(|t| o.submit(t, fx)).collect()
        }))
    }
}

/// A client cancels one of its tasks.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct Cancel {
    pub(crate) seq: u64,
}

impl Handler<Cancel> for Scheduler {
    type Result = bool;
    fn handle(&mut self, msg: Cancel, ctx: &mut Context<Self>) -> bool {
        self.own(0, ctx, |o, fx| o.cancel(msg.seq, fx))
    }
}

/// The last handle to a kept result was dropped.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Release {
    pub(crate) seq: u64,
}

impl Handler<Release> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: Release, ctx: &mut Context<Self>) {
        self.own(0, ctx, |o, fx| o.release(msg.seq, fx));
    }
}

/// Waits until a kept result is ready.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct WaitObject {
    pub(crate) seq: u64,
    pub(crate) waiter: Waiter,
}

impl Handler<WaitObject> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: WaitObject, _: &mut Context<Self>) {
        self.owner.objects().wait(msg.seq, msg.waiter);
    }
}

/// Stops the scheduler (node shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Stop;

impl Handler<Stop> for Scheduler {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
