//! [`Tasks`], the client of a node's scheduler (from
//! `Node::tasks`): registers functions, submits
//! tasks one by one ([`Tasks::submit`], [`TaskBuilder`]) or in batches
//! ([`Tasks::submit_many`]), and lists what runs.

use std::marker::PhantomData;
use std::sync::{Arc, PoisonError};

use actix::{Actor, Addr};
use swarm_protocol::NodeId;
use tokio::sync::{oneshot, Semaphore};

use super::error::TaskError;
use super::fetch::{FetchObject, Reader};
use super::handle::{TaskHandle, TaskRef, TaskStream};
use super::outcome::TasksDone;
use super::owner::Reply;
use super::policy::Policy;
use super::scheduler::{Parts, Registry, Scheduler, Stop};
use super::store::Store;
use super::submit::{Submitter, Template};
use super::task::{IntoArgs, Task};
use super::wire::{CancelTasks, FreeObjects, ListTasks, SubmitTasks, TaskTable, TASKS_ACTOR};
use crate::cluster::{Cluster, ClusterEvent};
use crate::directory::{Directory, Entry};
use crate::mesh::Mesh;
use crate::placement::{Placement, ResourceSet};

/// Tasks one node owns and has not seen end, at most; `submit` waits
/// beyond (backpressure on the submitter, not memory).
pub const MAX_OWNED: usize = 262_144;
/// Tasks of one [`TaskStream`] in flight at once.
const WINDOW: usize = 16_384;

/// The client of this node's scheduler. Cheap to clone.
#[derive(Clone)]
pub struct Tasks {
    me: NodeId,
    submitter: Submitter,
    reader: Reader,
    registry: Registry,
}

impl std::fmt::Debug for Tasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks")
            .field("node", &self.me)
            .finish_non_exhaustive()
    }
}

impl Tasks {
    /// Starts the node's scheduler on the current arbiter and exposes it.
    pub(crate) async fn start(mesh: Mesh, directory: Directory, cluster: Cluster) -> Tasks {
        let members = cluster.members().await.unwrap_or_default();
        let total = members
            .iter()
            .find(|m| m.node == mesh.id())
            .and_then(|m| m.meta.as_ref())
            .map(|meta| ResourceSet::from(&meta.resources))
            .unwrap_or_default();
        let registry: Registry = Arc::default();
        let store = Store::default();
        let permits = Arc::new(Semaphore::new(MAX_OWNED));
        let scheduler = Scheduler::new(Parts {
            mesh: mesh.clone(),
            total,
            registry: Arc::clone(&registry),
            store: store.clone(),
            permits: Arc::clone(&permits),
            policy: Policy::default(),
        })
        .start();
        let entry = Entry::declared(scheduler.clone())
            .stamped::<SubmitTasks>()
            .stamped::<TasksDone>()
            .stamped::<CancelTasks>()
            .stamped::<FreeObjects>()
            .stamped::<FetchObject>();
        let exposed = directory.insert(TASKS_ACTOR.to_owned(), Arc::new(entry));
        debug_assert!(exposed, "the scheduler is exposed once");
        if let Ok(known) = cluster.subscribe(scheduler.clone().recipient()).await {
            for member in known {
                scheduler.do_send(ClusterEvent::MemberUp(member));
            }
        }
        Tasks {
            me: mesh.id(),
            submitter: Submitter::new(scheduler, permits, mesh.max_message()),
            reader: Reader::new(mesh, store),
            registry,
        }
    }

    /// Stops the scheduler (node shutdown).
    pub(crate) fn shutdown(&self) {
        self.scheduler().do_send(Stop);
    }

    pub(crate) fn scheduler(&self) -> &Addr<Scheduler> {
        self.submitter.scheduler()
    }

    /// Lets this node run `task` (other nodes' submissions included).
    /// Returns false if a function with its tag was registered already.
    pub fn register<F: Task>(&self, task: F) -> bool {
        let _ = task;
        let mut registry = self
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if registry.contains_key(F::TAG) {
            return false;
        }
        registry.insert(F::TAG.to_owned(), F::runner());
        true
    }

    /// Submits `task(args)` with the defaults: 1 CPU, 3 retries, the
    /// node's policy. `args` is the argument itself for one parameter, a
    /// tuple for several; any of them may be a [`TaskRef`].
    ///
    /// # Errors
    ///
    /// [`TaskError::Unschedulable`] at once if no node could ever run it;
    /// [`TaskError::Codec`] if an argument does not encode;
    /// [`TaskError::TooLarge`] if the arguments exceed a message.
    pub async fn submit<F: Task, A: IntoArgs<F::Params>>(
        &self,
        task: F,
        args: A,
    ) -> Result<TaskHandle<F::Output>, TaskError> {
        self.task(task).submit(args).await
    }

    /// A task with options: resources, retries, placement, `keep`.
    pub fn task<F: Task>(&self, task: F) -> TaskBuilder<F> {
        let _ = task;
        TaskBuilder {
            tasks: self.clone(),
            template: Template {
                tag: F::TAG,
                need: ResourceSet::cpus(1.0),
                placement: None,
                retries: 3,
                retry_on_error: false,
            },
            _task: PhantomData,
        }
    }

    /// Submits `task` once per item of `args`, lazily: at most a window of
    /// them are in flight, the rest wait in the iterator.
    ///
    /// # Errors
    ///
    /// As [`Tasks::submit`] when the first of them fails at submission
    /// (the others report theirs through the stream).
    pub async fn submit_many<F, A, I>(
        &self,
        task: F,
        args: I,
    ) -> Result<TaskStream<F::Output>, TaskError>
    where
        F: Task,
        A: IntoArgs<F::Params> + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.task(task).submit_many(args).await
    }

    /// What this node's scheduler runs, queues and owns.
    ///
    /// # Errors
    ///
    /// [`TaskError::Stopped`] if the scheduler stopped.
    pub async fn list(&self, recent: usize) -> Result<TaskTable, TaskError> {
        self.scheduler()
            .send(ListTasks { recent })
            .await
            .map_err(|_| TaskError::Stopped)
    }
}

/// A task being configured; [`TaskBuilder::submit`] sends it.
pub struct TaskBuilder<F: Task> {
    tasks: Tasks,
    template: Template,
    _task: PhantomData<F>,
}

impl<F: Task> TaskBuilder<F> {
    /// CPUs it holds while it runs (default 1; fractions allowed).
    pub fn cpus(mut self, cpus: f64) -> Self {
        self.template.need.cpus = cpus;
        self
    }

    /// GPUs it holds (it learns their ids from its context).
    pub fn gpus(mut self, gpus: u32) -> Self {
        self.template.need.gpus = gpus;
        self
    }

    /// Memory it holds, bytes.
    pub fn memory(mut self, bytes: u64) -> Self {
        self.template.need.memory = bytes;
        self
    }

    /// An amount of a custom resource (`--resource NAME=AMOUNT` on nodes).
    pub fn resource(mut self, name: &str, amount: f64) -> Self {
        self.template.need = std::mem::take(&mut self.template.need).with(name, amount);
        self
    }

    /// Runs after the first if its node dies (default 3).
    pub fn retries(mut self, retries: u32) -> Self {
        self.template.retries = retries;
        self
    }

    /// Retries on the task's own error (or panic) too, within `retries`.
    pub fn retry_on_error(mut self, retry: bool) -> Self {
        self.template.retry_on_error = retry;
        self
    }

    /// Where it may run (default: the node's policy, hybrid).
    pub fn placement(mut self, placement: Placement) -> Self {
        self.template.placement = Some(placement);
        self
    }

    /// Keeps the result on the node that makes it: submitting answers a
    /// [`TaskRef`] instead of a handle.
    pub fn keep(self) -> KeepBuilder<F> {
        KeepBuilder { inner: self }
    }

    /// Submits it.
    ///
    /// # Errors
    ///
    /// As [`Tasks::submit`].
    pub async fn submit<A: IntoArgs<F::Params>>(
        self,
        args: A,
    ) -> Result<TaskHandle<F::Output>, TaskError> {
        let args = args
            .into_args()
            .map_err(|reason| TaskError::Codec { reason })?;
        let (tx, rx) = oneshot::channel();
        let id = self
            .tasks
            .submitter
            .submit_one(&self.template, args, Reply::One(tx))
            .await?;
        Ok(TaskHandle::new(id, rx, self.tasks.scheduler().clone()))
    }

    /// Submits one task per item of `args` (see [`Tasks::submit_many`]).
    ///
    /// # Errors
    ///
    /// As [`Tasks::submit_many`].
    pub async fn submit_many<A, I>(self, args: I) -> Result<TaskStream<F::Output>, TaskError>
    where
        A: IntoArgs<F::Params> + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        let feed = Box::new(args.into_iter().map(IntoArgs::into_args));
        let mut stream = TaskStream::new(self.tasks.submitter, self.template, feed, WINDOW);
        stream.fill().await?;
        if let Some(Err(e)) = stream.first_refused() {
            return Err(e);
        }
        Ok(stream)
    }
}

/// A task whose result stays where it is made.
pub struct KeepBuilder<F: Task> {
    inner: TaskBuilder<F>,
}

impl<F: Task> KeepBuilder<F> {
    /// Submits it; the [`TaskRef`] names the result before it exists.
    ///
    /// # Errors
    ///
    /// As [`Tasks::submit`].
    pub async fn submit<A: IntoArgs<F::Params>>(
        self,
        args: A,
    ) -> Result<TaskRef<F::Output>, TaskError> {
        let tasks = self.inner.tasks;
        let args = args
            .into_args()
            .map_err(|reason| TaskError::Codec { reason })?;
        let id = tasks
            .submitter
            .submit_one(&self.inner.template, args, Reply::Keep)
            .await?;
        Ok(TaskRef::new(id, tasks.scheduler().clone(), tasks.reader))
    }
}
