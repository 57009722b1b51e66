//! The supervisor of one actor: a task on the node's arbiter that starts
//! each incarnation from the factory, publishes it under the actor's name,
//! waits for it to end, and restarts it or gives up by the policy.
//!
//! An incarnation carries a guard future in its own context: the guard is
//! dropped with the context (a panic drops it too), which tells the
//! supervisor the incarnation ended; and it stops the actor when the
//! supervisor asks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use actix::{Actor, ActorContext, ActorFutureExt, ArbiterHandle, AsyncContext, Context};
use tokio::sync::{oneshot, Notify};

use super::{Decision, Restart, RestartTracker};
use crate::directory::{Directory, Dispatch, Entry, RemoteActor};

/// Where a supervised actor stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SupervisedState {
    /// An incarnation is running.
    Running,
    /// The last incarnation failed; the next starts after the backoff.
    Restarting,
    /// Past its restarts: escalated, no longer exposed.
    Failed,
    /// Stopped on request.
    Stopped,
}

/// The handle to a supervised actor. Cheap to clone.
#[derive(Clone)]
pub struct Supervised {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    restarts: AtomicU64,
    state: Mutex<SupervisedState>,
    stop: Notify,
    restart: Notify,
    policy: Restart,
    /// The latest restarts, oldest first.
    history: Mutex<std::collections::VecDeque<super::RestartRecord>>,
    /// The running incarnation's entry and its marker, for a hand-over.
    current: Mutex<Option<Current>>,
}

/// The running incarnation, as a hand-over needs it.
#[derive(Clone)]
struct Current {
    directory: Directory,
    entry: Arc<dyn Dispatch>,
    /// Puts a marker in its mailbox: answered once it reached it.
    mark: Arc<dyn Fn() -> oneshot::Receiver<()> + Send + Sync>,
}

/// Restarts an actor's history keeps.
const HISTORY: usize = 16;

impl Supervised {
    /// The name it is exposed under.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Restarts since it was started.
    pub fn restarts(&self) -> u64 {
        self.shared.restarts.load(Ordering::Acquire)
    }

    /// Where it stands.
    pub fn state(&self) -> SupervisedState {
        *self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops it for good (it is not restarted) and unexposes its name.
    pub fn stop(&self) {
        self.shared.stop.notify_one();
    }

    /// Its restart policy.
    pub fn policy(&self) -> &Restart {
        &self.shared.policy
    }

    /// Its latest restarts (at most 16), oldest first.
    pub fn history(&self) -> Vec<super::RestartRecord> {
        let history = self
            .shared
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        history.iter().cloned().collect()
    }

    fn remember(&self, reason: String) {
        let mut history = self
            .shared
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(super::RestartRecord {
            at_ms: crate::mesh::unix_now_ms(),
            reason,
        });
    }

    /// Stops the running incarnation and starts the next at once, without
    /// backoff; counted as a restart.
    pub fn restart(&self) {
        self.shared.restart.notify_one();
    }

    /// Hands the running incarnation over (see `handover`): its name
    /// leaves the directory, the messages already in its mailbox are
    /// handled (by `within`), what incarnation `epoch` registered for its
    /// hand-over on `node` runs (a durable actor's final snapshot), and it
    /// stops. If it does not reach the marker in time,
    /// it gets its name back and keeps running: the answer says why.
    pub(crate) async fn hand_over(
        &self,
        within: std::time::Duration,
        node: swarm_protocol::NodeId,
        epoch: u64,
    ) -> Result<(), String> {
        let current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let name = self.name().to_owned();
        let Some(current) = current.filter(|_| self.state() == SupervisedState::Running) else {
            // Not running (restarting, stopped): nothing to hand over.
            self.stop();
            return Ok(());
        };
        // What arrives from now on never runs here: `NoSuchActor`.
        let exposed = current.directory.remove_entry(&name, &current.entry);
        let reached = tokio::time::timeout(within, (current.mark)()).await;
        match reached {
            Ok(_) => {}
            Err(_) => {
                if exposed && self.state() == SupervisedState::Running {
                    current
                        .directory
                        .replace(name.clone(), Arc::clone(&current.entry));
                }
                tracing::warn!(actor = %name, ?within, "a hand-over gave up: the actor is still handling a message; it keeps running here");
                return Err(format!(
                    "{name:?} did not finish the messages in its mailbox within {within:?} (stuck in a handler?): it keeps running there"
                ));
            }
        }
        // Taken now: an incarnation still recovering when the hand-over
        // began registered it only once it recovered.
        if let Some(saved) = super::passivation::save(node, &name, epoch) {
            let saved = tokio::time::timeout(within, saved).await;
            let error = match saved {
                Ok(Ok(Ok(()))) => None,
                Ok(Ok(Err(e))) => Some(e),
                Ok(Err(_)) => Some("it stopped while saving".to_owned()),
                Err(_) => Some(format!("not saved within {within:?}")),
            };
            if let Some(e) = error {
                tracing::warn!(actor = %name, error = %e, "no final snapshot before the hand-over (the journal keeps every event)");
            }
        }
        self.stop();
        Ok(())
    }

    /// Remembers the running incarnation for a hand-over.
    fn current<A: RemoteActor>(&self, directory: &Directory, entry: &Arc<dyn Dispatch>) {
        let Some(addr) = entry.addr().downcast_ref::<actix::Addr<A>>().cloned() else {
            return;
        };
        let mark = Arc::new(move || {
            let (reached, marked) = oneshot::channel();
            addr.do_send(crate::inspect::Probe::marker(reached));
            marked
        });
        *self
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Current {
            directory: directory.clone(),
            entry: Arc::clone(entry),
            mark,
        });
    }

    fn set(&self, state: SupervisedState) {
        *self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = state;
    }
}

impl std::fmt::Debug for Supervised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervised")
            .field("name", &self.shared.name)
            .field("state", &self.state())
            .field("restarts", &self.restarts())
            .finish()
    }
}

/// Starts supervising `name` on `arbiter`: the first incarnation is
/// published when this returns. The caller checked the name is free.
pub(crate) async fn start<A, F>(
    directory: Directory,
    arbiter: &ArbiterHandle,
    name: String,
    policy: Restart,
    factory: F,
) -> Supervised
where
    A: RemoteActor + Actor<Context = Context<A>>,
    F: Fn() -> A + Send + Sync + 'static,
{
    let handle = Supervised {
        shared: Arc::new(Shared {
            name,
            restarts: AtomicU64::new(0),
            state: Mutex::new(SupervisedState::Running),
            stop: Notify::new(),
            restart: Notify::new(),
            policy: policy.clone(),
            history: Mutex::default(),
            current: Mutex::default(),
        }),
    };
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let supervisor = handle.clone();
    let factory = Arc::new(factory);
    arbiter.spawn(async move {
        let origin = Instant::now();
        let mut tracker = RestartTracker::new(policy);
        let mut started = Some(started_tx);
        let name = supervisor.shared.name.clone();
        loop {
            let (ended, stop, entry) = incarnate::<A, F>(&directory, &name, &factory);
            supervisor.current::<A>(&directory, &entry);
            supervisor.set(SupervisedState::Running);
            if let Some(tx) = started.take() {
                let _ = tx.send(());
            }
            tokio::select! {
                _ = ended => {}
                () = supervisor.shared.restart.notified() => {
                    let _ = stop.send(());
                    let n = supervisor.shared.restarts.fetch_add(1, Ordering::AcqRel) + 1;
                    tracing::info!(actor = %name, "supervised actor restarted on request");
                    let detail = format!("restart {n}, on an operator's request");
                    supervisor.remember("on an operator's request".to_owned());
                    directory.events().record("restart", name.as_str(), detail);
                    // The next incarnation replaces this one's entry.
                    continue;
                }
                () = supervisor.shared.stop.notified() => {
                    let _ = stop.send(());
                    directory.remove_entry(&name, &entry);
                    supervisor.set(SupervisedState::Stopped);
                    tracing::info!(actor = %name, "supervised actor stopped");
                    return;
                }
            }
            match tracker.on_failure(origin.elapsed()) {
                Decision::RestartAfter(wait) => {
                    let n = supervisor.shared.restarts.fetch_add(1, Ordering::AcqRel) + 1;
                    supervisor.set(SupervisedState::Restarting);
                    tracing::warn!(actor = %name, ?wait, restarts = tracker.restarts(), "supervised actor failed; restarting");
                    let detail = format!("failed; restart {n} in {wait:?}");
                    supervisor.remember(format!("failed; restarted after {wait:?}"));
                    directory.events().record("restart", name.as_str(), detail);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = supervisor.shared.stop.notified() => {
                            directory.remove_entry(&name, &entry);
                            supervisor.set(SupervisedState::Stopped);
                            return;
                        }
                    }
                }
                Decision::Escalate => {
                    directory.remove_entry(&name, &entry);
                    supervisor.set(SupervisedState::Failed);
                    tracing::error!(actor = %name, restarts = tracker.restarts(), "supervised actor failed past its restart policy; escalated");
                    let detail = format!("past its restart policy after {} restarts", tracker.restarts());
                    supervisor.remember(format!("failed again: escalated ({})", supervisor.policy()));
                    directory.events().record("failed", name.as_str(), detail);
                    return;
                }
            }
        }
    });
    // Published once the arbiter ran the first start (an arbiter that
    // stopped drops the sender: nothing to wait for then).
    let _ = started_rx.await;
    handle
}

/// Starts one incarnation and publishes it; returns what resolves when it
/// ends, what stops it, and its directory entry.
fn incarnate<A, F>(
    directory: &Directory,
    name: &str,
    factory: &Arc<F>,
) -> (
    oneshot::Receiver<()>,
    oneshot::Sender<()>,
    Arc<dyn Dispatch>,
)
where
    A: RemoteActor + Actor<Context = Context<A>>,
    F: Fn() -> A + Send + Sync + 'static,
{
    let (alive, ended) = oneshot::channel::<()>();
    let (stop, stopped) = oneshot::channel::<()>();
    let make = Arc::clone(factory);
    let addr = A::create(move |ctx: &mut Context<A>| {
        // Dropped with the context, however it ends; stops it on request.
        let guard = async move {
            let _alive = alive;
            let _ = stopped.await;
        };
        ctx.spawn(actix::fut::wrap_future::<_, A>(guard).map(|(), _, ctx| ctx.stop()));
        make()
    });
    let entry: Arc<dyn Dispatch> = Arc::new(Entry::declared(addr).supervised());
    directory.replace(name.to_owned(), Arc::clone(&entry));
    (ended, stop, entry)
}
