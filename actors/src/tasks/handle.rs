//! What a submitter holds: [`TaskHandle`] (await the result, or cancel),
//! [`TaskRef`] (a result kept where it was made, passed to other tasks by
//! reference, freed when the last clone is dropped) and [`TaskStream`]
//! (the results of a batch, submitted lazily within a window).

use std::collections::BTreeMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix::Addr;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

use super::error::TaskError;
use super::fetch::Reader;
use super::scheduler::{Cancel, Release, Scheduler, WaitObject};
use super::submit::{Submitter, Template};
use super::task::{decode, Blob, Bytes, IntoArg};
use super::wire::{Arg, ObjectId, TaskId, Token};

/// A submitted task; await it for its result.
///
/// Dropping the handle does not cancel the task (it runs, and its result
/// is dropped); [`TaskHandle::cancel`] does.
pub struct TaskHandle<T> {
    id: TaskId,
    rx: oneshot::Receiver<Result<Blob, TaskError>>,
    scheduler: Addr<Scheduler>,
    _out: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for TaskHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskHandle({})", self.id)
    }
}

impl<T> TaskHandle<T> {
    pub(crate) fn new(
        id: TaskId,
        rx: oneshot::Receiver<Result<Blob, TaskError>>,
        scheduler: Addr<Scheduler>,
    ) -> Self {
        Self {
            id,
            rx,
            scheduler,
            _out: PhantomData,
        }
    }

    /// The task.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// A way to cancel the task that outlives this handle being awaited.
    pub fn canceller(&self) -> Canceller {
        Canceller {
            seq: self.id.seq,
            scheduler: self.scheduler.clone(),
        }
    }

    /// Cancels the task: if it has not started it never runs; if it runs,
    /// it sees [`TaskContext::is_cancelled`](super::TaskContext::is_cancelled)
    /// (an async task is dropped). It is never retried; awaiting it gives
    /// [`TaskError::Cancelled`] (unless it had ended already).
    ///
    /// # Errors
    ///
    /// [`TaskError::Stopped`] if this node's scheduler stopped.
    pub async fn cancel(&self) -> Result<(), TaskError> {
        self.canceller().cancel().await
    }
}

impl<T: DeserializeOwned> Future for TaskHandle<T> {
    type Output = Result<T, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_)) => Poll::Ready(Err(TaskError::Stopped)),
            Poll::Ready(Ok(Err(e))) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(Ok(bytes))) => {
                Poll::Ready(decode(&bytes).map_err(|reason| TaskError::Codec { reason }))
            }
        }
    }
}

/// Cancels one task (see [`TaskHandle::cancel`]).
#[derive(Debug, Clone)]
pub struct Canceller {
    seq: u64,
    scheduler: Addr<Scheduler>,
}

impl Canceller {
    /// Cancels the task.
    ///
    /// # Errors
    ///
    /// [`TaskError::Stopped`] if this node's scheduler stopped.
    pub async fn cancel(&self) -> Result<(), TaskError> {
        self.scheduler
            .send(Cancel { seq: self.seq })
            .await
            .map(|_| ())
            .map_err(|_| TaskError::Stopped)
    }
}

/// A result kept on the node that made it. Pass it (or a clone) as an
/// argument to other tasks: they run near it or fetch it from its node
/// directly. When the last clone is dropped, or this node dies, the
/// value is freed.
pub struct TaskRef<T> {
    id: TaskId,
    guard: Arc<RefGuard>,
    /// Reads the value here ([`TaskRef::get`]).
    reader: Reader,
    _out: PhantomData<fn() -> T>,
}

impl<T> Clone for TaskRef<T> {
    fn clone(&self) -> Self {
        Self {
            id: self.id,
            guard: Arc::clone(&self.guard),
            reader: self.reader.clone(),
            _out: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for TaskRef<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskRef({})", self.id)
    }
}

/// Tells the owner when the last clone of a [`TaskRef`] goes.
struct RefGuard {
    seq: u64,
    scheduler: Addr<Scheduler>,
}

impl Drop for RefGuard {
    fn drop(&mut self) {
        self.scheduler.do_send(Release { seq: self.seq });
    }
}

impl<T> TaskRef<T> {
    /// A reference to the result of `id`, a task this node owns through
    /// `scheduler`.
    pub(crate) fn new(id: TaskId, scheduler: Addr<Scheduler>, reader: Reader) -> Self {
        Self {
            id,
            guard: Arc::new(RefGuard {
                seq: id.seq,
                scheduler,
            }),
            reader,
            _out: PhantomData,
        }
    }

    /// The task that makes the value.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// As an argument (the holder is filled in when the task is sent).
    pub(crate) fn object(&self) -> ObjectId {
        ObjectId {
            task: self.id,
            node: self.id.owner,
            // The owner fills it in when it sends the task.
            token: Token::default(),
        }
    }

    /// Waits until the value exists; answers the node holding it and its
    /// encoded size.
    ///
    /// # Errors
    ///
    /// The task's error, [`TaskError::ObjectLost`] if its node died.
    pub async fn ready(&self) -> Result<(swarm_protocol::NodeId, u64), TaskError> {
        let (tx, rx) = oneshot::channel();
        self.guard
            .scheduler
            .send(WaitObject {
                seq: self.id.seq,
                waiter: tx,
            })
            .await
            .map_err(|_| TaskError::Stopped)?;
        let (object, size) = rx.await.map_err(|_| TaskError::Stopped)??;
        Ok((object.node, size))
    }

    /// Fetches the value here from the node that holds it.
    ///
    /// # Errors
    ///
    /// As [`TaskRef::ready`]; [`TaskError::Codec`] if it does not decode.
    pub async fn get(&self) -> Result<T, TaskError>
    where
        T: DeserializeOwned,
    {
        let (node, _) = self.ready().await?;
        let blob = self
            .reader
            .owned::<Scheduler>(ObjectId {
                task: self.id,
                node,
                // The owner reads its own: the holder knows it by its link.
                token: Token::default(),
            })
            .await?;
        decode(&blob).map_err(|reason| TaskError::Codec { reason })
    }
}

// A kept result passes to a task by reference.
impl<T> IntoArg<T> for TaskRef<T> {
    fn into_arg(self) -> Result<Arg, String> {
        Ok(Arg::Ref(self.object()))
    }
}

impl<T> IntoArg<T> for &TaskRef<T> {
    fn into_arg(self) -> Result<Arg, String> {
        Ok(Arg::Ref(self.object()))
    }
}

impl IntoArg<Bytes> for TaskRef<serde_bytes::ByteBuf> {
    fn into_arg(self) -> Result<Arg, String> {
        Ok(Arg::Ref(self.object()))
    }
}

impl IntoArg<Bytes> for &TaskRef<serde_bytes::ByteBuf> {
    fn into_arg(self) -> Result<Arg, String> {
        Ok(Arg::Ref(self.object()))
    }
}

impl IntoArg<Bytes> for TaskRef<Vec<u8>> {
    fn into_arg(self) -> Result<Arg, String> {
        Ok(Arg::Ref(self.object()))
    }
}

impl IntoArg<Bytes> for &TaskRef<Vec<u8>> {
    fn into_arg(self) -> Result<Arg, String> {
        Ok(Arg::Ref(self.object()))
    }
}

/// The results of [`Tasks::submit_many`](super::Tasks::submit_many): tasks are submitted as results
/// are taken, never more than a window of them in flight, so a batch of
/// millions holds bounded memory.
pub struct TaskStream<T> {
    submitter: Submitter,
    template: Template,
    feed: Box<dyn Iterator<Item = Result<Vec<Arg>, String>> + Send>,
    tx: mpsc::UnboundedSender<(usize, Result<Blob, TaskError>)>,
    rx: mpsc::UnboundedReceiver<(usize, Result<Blob, TaskError>)>,
    /// Results that arrived ahead of the next in order.
    early: BTreeMap<usize, Result<Blob, TaskError>>,
    /// Tasks submitted so far; the next index.
    submitted: usize,
    /// Results handed out so far.
    taken: usize,
    /// The next index in order.
    next: usize,
    window: usize,
    _out: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> TaskStream<T> {
    pub(crate) fn new(
        submitter: Submitter,
        template: Template,
        feed: Box<dyn Iterator<Item = Result<Vec<Arg>, String>> + Send>,
        window: usize,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            submitter,
            template,
            feed,
            tx,
            rx,
            early: BTreeMap::new(),
            submitted: 0,
            taken: 0,
            next: 0,
            window,
            _out: PhantomData,
        }
    }

    /// Submits up to the window. Errors at submission (unschedulable, a
    /// bad argument) become that task's result.
    pub(crate) async fn fill(&mut self) -> Result<(), TaskError> {
        const CHUNK: usize = 2_048;
        // Refill in chunks once a chunk's worth has ended (one task per
        // taken result would be one message per task).
        if self.submitted - self.taken + CHUNK.min(self.window / 2) > self.window {
            return Ok(());
        }
        loop {
            let in_flight = self.submitted - self.taken;
            if in_flight >= self.window {
                return Ok(());
            }
            let room = (self.window - in_flight).min(CHUNK);
            let mut batch = Vec::with_capacity(room);
            for args in self.feed.by_ref().take(room) {
                batch.push(args);
            }
            if batch.is_empty() {
                return Ok(());
            }
            let first = self.submitted;
            self.submitted += batch.len();
            let rejected = self
                .submitter
                .submit_batch(&self.template, batch, first, &self.tx)
                .await?;
            for (index, error) in rejected {
                self.early.insert(index, Err(error));
            }
        }
    }

    /// The next result in submission order; `None` after the last.
    pub async fn next(&mut self) -> Option<Result<T, TaskError>> {
        loop {
            if let Some(result) = self.early.remove(&self.next) {
                self.next += 1;
                self.taken += 1;
                return Some(decoded(result));
            }
            if let Err(e) = self.fill().await {
                return Some(Err(e));
            }
            if self.next >= self.submitted {
                return None;
            }
            let (index, result) = self.rx.recv().await?;
            self.early.insert(index, result);
        }
    }

    /// The next result to end, with its index in the batch; `None` after
    /// the last. (Do not mix with [`TaskStream::next`].)
    pub async fn next_completed(&mut self) -> Option<(usize, Result<T, TaskError>)> {
        if let Some((index, result)) = self.early.pop_first() {
            self.taken += 1;
            return Some((index, decoded(result)));
        }
        if let Err(e) = self.fill().await {
            return Some((self.submitted, Err(e)));
        }
        if self.taken >= self.submitted {
            return None;
        }
        let (index, result) = self.rx.recv().await?;
        self.taken += 1;
        Some((index, decoded(result)))
    }

    /// Every result in order, or the first error.
    ///
    /// # Errors
    ///
    /// The first task's error (the others still run).
    pub async fn collect(mut self) -> Result<Vec<T>, TaskError> {
        let mut all = Vec::new();
        while let Some(next) = self.next().await {
            all.push(next?);
        }
        Ok(all)
    }

    /// The submission error of the first task, if it was refused.
    pub(crate) fn first_refused(&mut self) -> Option<Result<(), TaskError>> {
        if matches!(self.early.get(&0), Some(Err(_))) && self.next == 0 {
            if let Some(Err(e)) = self.early.remove(&0) {
                return Some(Err(e));
            }
        }
        None
    }

    /// Tasks submitted so far.
    pub fn submitted(&self) -> usize {
        self.submitted
    }
}

fn decoded<T: DeserializeOwned>(result: Result<Blob, TaskError>) -> Result<T, TaskError> {
    result.and_then(|bytes| decode(&bytes).map_err(|reason| TaskError::Codec { reason }))
}
