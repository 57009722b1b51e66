//! How tasks reach this node's scheduler: a [`Submitter`] checks that each
//! task's arguments fit a message, takes an owned-task permit for it (the
//! submitter waits past [`MAX_OWNED`](super::MAX_OWNED)) and sends the
//! batch; a [`Template`] is what every task of one submission shares.
//! [`Tasks`](super::Tasks) and the streams it hands out share one
//! submitter, so a stream refills without going back through its client.

use std::sync::Arc;

use actix::Addr;
use tokio::sync::{mpsc, Semaphore};

use super::error::TaskError;
use super::owner::{NewTask, Reply};
use super::scheduler::{Scheduler, Submit};
use super::task::Blob;
use super::wire::{Arg, TaskId};
use crate::placement::{Placement, ResourceSet};

/// What every task of a submission shares.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    /// The function's tag.
    pub(super) tag: &'static str,
    /// What each task holds while it runs.
    pub(super) need: ResourceSet,
    /// Where they may run (none: the node's policy).
    pub(super) placement: Option<Placement>,
    /// Runs after the first if a task's node dies.
    pub(super) retries: u32,
    /// Retries on the task's own error too.
    pub(super) retry_on_error: bool,
}

/// Sends submissions to this node's scheduler. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Submitter {
    scheduler: Addr<Scheduler>,
    /// One per owned task not seen to end: what bounds a node's book.
    permits: Arc<Semaphore>,
    /// The most argument bytes one task may carry: half a message.
    max_args: usize,
}

impl Submitter {
    /// Submits to `scheduler`, taking from `permits`, with arguments of at
    /// most half of `max_message`.
    pub(crate) fn new(
        scheduler: Addr<Scheduler>,
        permits: Arc<Semaphore>,
        max_message: usize,
    ) -> Self {
        Self {
            scheduler,
            permits,
            max_args: max_message / 2,
        }
    }

    /// The scheduler it submits to.
    pub(crate) fn scheduler(&self) -> &Addr<Scheduler> {
        &self.scheduler
    }

    /// Submits one task.
    ///
    /// # Errors
    ///
    /// [`TaskError::TooLarge`] if the arguments exceed a message;
    /// [`TaskError::Stopped`] if the scheduler stopped; the scheduler's
    /// refusal (unschedulable).
    pub(crate) async fn submit_one(
        &self,
        template: &Template,
        args: Vec<Arg>,
        reply: Reply,
    ) -> Result<TaskId, TaskError> {
        self.check_size(&args)?;
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| TaskError::Stopped)?;
        permit.forget();
        let new = new_task(template, args, reply);
        let mut answers = self
            .scheduler
            .send(Submit { tasks: vec![new] })
            .await
            .map_err(|_| TaskError::Stopped)?;
        answers.pop().unwrap_or(Err(TaskError::Stopped))
    }

    /// Submits a chunk of a batch, the first at index `first`, each
    /// answering on `tx`; returns the ones refused at submission.
    ///
    /// # Errors
    ///
    /// [`TaskError::Stopped`] if the scheduler stopped.
    pub(crate) async fn submit_batch(
        &self,
        template: &Template,
        batch: Vec<Result<Vec<Arg>, String>>,
        first: usize,
        tx: &mpsc::UnboundedSender<(usize, Result<Blob, TaskError>)>,
    ) -> Result<Vec<(usize, TaskError)>, TaskError> {
        let mut rejected = Vec::new();
        let mut news = Vec::with_capacity(batch.len());
        let mut indices = Vec::with_capacity(batch.len());
        for (i, args) in batch.into_iter().enumerate() {
            let index = first + i;
            let checked = args
                .map_err(|reason| TaskError::Codec { reason })
                .and_then(|args| self.check_size(&args).map(|()| args));
            match checked {
                Ok(args) => {
                    let reply = Reply::Many {
                        tx: tx.clone(),
                        index,
                    };
                    news.push(new_task(template, args, reply));
                    indices.push(index);
                }
                Err(e) => rejected.push((index, e)),
            }
        }
        if news.is_empty() {
            return Ok(rejected);
        }
        let n = u32::try_from(news.len()).unwrap_or(u32::MAX);
        let permits = self
            .permits
            .acquire_many(n)
            .await
            .map_err(|_| TaskError::Stopped)?;
        permits.forget();
        let answers = self
            .scheduler
            .send(Submit { tasks: news })
            .await
            .map_err(|_| TaskError::Stopped)?;
        for (index, answer) in indices.into_iter().zip(answers) {
            if let Err(e) = answer {
                rejected.push((index, e));
            }
        }
        Ok(rejected)
    }

    /// Checks the encoded arguments fit in a message.
    fn check_size(&self, args: &[Arg]) -> Result<(), TaskError> {
        let size: usize = args
            .iter()
            .map(|a| match a {
                Arg::Value(bytes) => bytes.len(),
                Arg::Ref(_) => 0,
            })
            .sum();
        if size > self.max_args {
            return Err(TaskError::TooLarge {
                size: size as u64,
                max: self.max_args as u64,
            });
        }
        Ok(())
    }
}

fn new_task(template: &Template, args: Vec<Arg>, reply: Reply) -> NewTask {
    NewTask {
        tag: template.tag.to_owned(),
        args,
        need: template.need.clone(),
        placement: template.placement.clone(),
        retries: template.retries,
        retry_on_error: template.retry_on_error,
        reply,
    }
}
