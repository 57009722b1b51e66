//! [`Named`]: a handle that follows a named actor wherever the head group
//! places it, re-resolving by itself when an incarnation fails or is cut
//! off. Where the actor runs is the head's; how its node is reached is the
//! mesh's.

mod gate;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use swarm_protocol::NodeId;

use super::{Control, ControlError, Located, Patience};
use crate::directory::{Accepts, RemoteMessage, Wire};
use crate::error::AskError;
use crate::head::wire::Resolve;
use crate::remote::{RemoteAddr, Unanswered};
use crate::supervision::Spawnable;

/// A handle to a named actor that follows it wherever the head places it.
/// Cheap to clone; clones share what they learn.
///
/// # Failover
///
/// Each ask goes to where the actor ran last. When that fails in a way
/// that says the incarnation may be gone, the handle asks the head group
/// where the name lives now, by itself:
///
/// - `LinkDown`, `NodeDown`, `Unreachable` (the way to its node failed)
///   and `NoSuchActor` (its node runs no such actor): while the head still
///   names the incarnation that failed, the handle asks it again every
///   50 ms (and, for a failed way, dials the node once: a new link means
///   the node is back), until the head names a new incarnation or the ask's
///   time is up;
/// - `Timeout` and `ActorStopped`: the next ask asks the head first, and
///   goes back to the same node if the head says so (a slow handler is not
///   a failover).
///
/// # What is retried (at most once delivery)
///
/// An ask is sent again, within its own timeout, only when no handler can
/// have run it: it never left this node (no route or link to the old
/// node: `Unreachable`, or `NodeDown` before sending), or the old node
/// answered `NoSuchActor`. An ask that may have reached the old
/// incarnation (`LinkDown` or `Timeout` after it was sent, `NodeDown`
/// while it waited) is never sent again: a node cut off from the heads
/// keeps running its actors until its lease runs out, so the old
/// incarnation may have run it once, and a retry would run it twice. Such
/// an ask fails with its error; the handle has re-resolved meanwhile, so
/// the caller's next ask reaches the new incarnation.
///
/// # How long failover takes (defaults: 3 s lease, 2 s heartbeat timeout)
///
/// From the failure to the first answer of the new incarnation, for a
/// caller that asks again after an error:
///
/// - the host process crashes: about 1 s or less. Its sockets close, so asks
///   in flight fail at once, and the leader moves its actors on that
///   crash evidence without waiting for the lease.
/// - the host is cut off (partition, not crash): at most
///   `lease × 1.1 + 100 ms` after its last lease grant (so after the cut)
///   plus the start of the new incarnation and one 50 ms poll. An ask in
///   flight at the cut fails with `LinkDown` within the heartbeat timeout
///   (2 s), before the leader may move the actor (3.4 s); `swarm bench
///   control` measures this as `failover_partition_s_*`.
/// - the head leader is lost: asks to a live incarnation never go through
///   the head and are not affected. Resolving waits for a new leader
///   (two election timeouts, 600 ms, after the followers last heard the
///   old one); a host that fails as well is moved `lease × 1.1 + 100 ms`
///   after the new leader took over, since it knows no earlier grants.
///
/// # Moves (drain, migrate)
///
/// A drain or [`Control::migrate`] hands the actor over: its old node
/// takes its name out of its directory first, so what arrives from then
/// on is answered `NoSuchActor` (it never ran: sent again, as above),
/// while what was already in its mailbox is handled there and answered.
/// The handle then asks the head every 10 ms (not 50: the hand-over is
/// short) until it names the new incarnation. Callers see no error, and
/// the asks of one handle keep their order: once one of its asks met the
/// actor gone, the handle's asks wait at a gate and go out one after the
/// other, in the order they were issued, each once the one before was
/// answered; the first answer reopens the gate. (Asks issued from
/// different handles, or by callers that did not await each other, have
/// no order to keep.) The pause callers see is the hand-over plus the new
/// incarnation's start and recovery: `migration_pause_ms` in
/// `swarm bench durable`.
///
/// On a side of a partition without a head quorum, resolving fails with
/// [`AskError::NoQuorum`]: a deposed leader says so once its quorum check
/// fails, and the handle says so as soon as more than half of the heads
/// proved unreachable. It is never answered from a cut-off head's stale
/// state and is not waited out.
pub struct Named<A: Spawnable> {
    control: Control,
    name: Arc<str>,
    state: Arc<Mutex<Whereabouts<A>>>,
    /// The order of its asks across a move.
    gate: Arc<gate::Gate>,
}

/// What a handle's clones know about where the actor runs.
struct Whereabouts<A: Spawnable> {
    /// Where it ran last and that incarnation's epoch; `None`: ask the head.
    current: Option<(RemoteAddr<A>, u64)>,
    /// The incarnation whose last ask failed, and how: the head naming it
    /// again is not taken as a reason to go straight back.
    failed: Option<Failure>,
}

/// An incarnation's failed ask.
#[derive(Debug, Clone)]
struct Failure {
    node: NodeId,
    epoch: u64,
    /// When it failed: only a link made after this shows its node is back.
    at: Instant,
    kind: Kind,
    /// Answered when the head never names another incarnation in time.
    error: AskError,
}

/// How an incarnation failed, as far as finding it again goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The way to its node failed (`LinkDown`, `NodeDown`, `Unreachable`).
    Path,
    /// Its node runs no such actor (`NoSuchActor`): stopped by fencing,
    /// moved, or not started yet.
    Absent,
    /// No answer in time, or it stopped (`Timeout`, `ActorStopped`): it may
    /// just be slow, so the head's word decides.
    Stale,
}

impl Kind {
    /// How `error` bears on where the actor runs; `None`: it does not
    /// (the request itself failed).
    fn of(error: &AskError) -> Option<Self> {
        match error {
            AskError::LinkDown { .. }
            | AskError::NodeDown { .. }
            | AskError::Unreachable { .. } => Some(Kind::Path),
            AskError::NoSuchActor { .. } => Some(Kind::Absent),
            AskError::Timeout { .. } | AskError::ActorStopped => Some(Kind::Stale),
            _ => None,
        }
    }
}

impl<A: Spawnable> Clone for Named<A> {
    fn clone(&self) -> Self {
        Self {
            control: self.control.clone(),
            name: Arc::clone(&self.name),
            state: Arc::clone(&self.state),
            gate: Arc::clone(&self.gate),
        }
    }
}

impl<A: Spawnable> std::fmt::Debug for Named<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Named({}: {:?})", self.name, self.location())
    }
}

impl<A: Spawnable> Named<A> {
    pub(super) fn new(control: Control, name: &str, located: Option<Located>) -> Self {
        let named = Self {
            control,
            name: name.into(),
            state: Arc::new(Mutex::new(Whereabouts {
                current: None,
                failed: None,
            })),
            gate: Arc::default(),
        };
        if let Some(located) = located {
            named.remember(&located);
        }
        named
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it ran when last resolved: its node and epoch (the fencing
    /// token of that incarnation).
    pub fn location(&self) -> Option<(NodeId, u64)> {
        self.lock()
            .current
            .as_ref()
            .map(|(addr, epoch)| (addr.node_id(), *epoch))
    }

    /// Forgets where it ran: the next ask asks the head.
    pub fn invalidate(&self) {
        self.lock().current = None;
    }

    /// Sends `message` to the actor and waits for its result, up to the
    /// node's default ask timeout (`MeshConfig::ask_timeout`), which bounds
    /// the whole ask: finding the actor, following it, and its answer.
    ///
    /// # Errors
    ///
    /// As [`RemoteAddr::send`] (see the type's docs for which of them are
    /// retried), [`AskError::NoQuorum`] when no head quorum answers this
    /// node, and [`AskError::NotPlaced`] when the head says it does not
    /// run (no such name, or it failed).
    pub async fn send<M>(&self, message: M) -> Result<M::Result, AskError>
    where
        A: Accepts<M>,
        M: RemoteMessage,
        M::Result: Wire,
    {
        self.send_timeout(message, self.control.mesh.ask_timeout())
            .await
    }

    /// As [`Named::send`], with its own timeout.
    ///
    /// # Errors
    ///
    /// As [`Named::send`].
    pub async fn send_timeout<M>(
        &self,
        message: M,
        timeout: Duration,
    ) -> Result<M::Result, AskError>
    where
        A: Accepts<M>,
        M: RemoteMessage,
        M::Result: Wire,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut message = message;
        let ticket = self.gate.issue();
        loop {
            if !self.ready() {
                self.gate.unknown();
            }
            if !self.gate.turn(&ticket, deadline).await {
                return Err(AskError::Timeout { after: timeout });
            }
            let (addr, epoch) = self.target(deadline).await?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Unanswered { error, unrun } = match addr.ask(message, left).await {
                Ok(answer) => {
                    self.gate.answered();
                    return Ok(answer);
                }
                Err(unanswered) => unanswered,
            };
            let Some(kind) = Kind::of(&error) else {
                return Err(error);
            };
            if kind == Kind::Absent {
                // Handed over (or not started yet): keep the order.
                self.gate.moving(addr.node_id(), epoch);
            }
            self.failed(Failure {
                node: addr.node_id(),
                epoch,
                at: Instant::now(),
                kind,
                error: error.clone(),
            });
            match unrun {
                // Nothing ran it: it may go to wherever the head says now.
                Some(again) if tokio::time::Instant::now() < deadline => message = again,
                _ => return Err(error),
            }
        }
    }

    /// Whether an ask goes out as soon as it is made: the handle knows
    /// where the actor runs, and a link to its node is up (or it runs
    /// here). Otherwise concurrent asks would each wait for the head's
    /// answer or the dial, and go out in whatever order those end.
    fn ready(&self) -> bool {
        let node = self.location().map(|(node, _)| node);
        let mesh = &self.control.mesh;
        node.is_some_and(|node| node == mesh.id() || mesh.live_link(node).is_some())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Whereabouts<A>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers where the head says it runs (and forgets an older failure).
    fn remember(&self, located: &Located) -> (RemoteAddr<A>, u64) {
        let addr = RemoteAddr::new(self.control.mesh.clone(), located.node, &self.name);
        let mut state = self.lock();
        state.current = Some((addr.clone(), located.epoch));
        state.failed = None;
        (addr, located.epoch)
    }

    /// The incarnation at `failure` failed: the next ask asks the head.
    fn failed(&self, failure: Failure) {
        let mut state = self.lock();
        let same = |(addr, epoch): &(RemoteAddr<A>, u64)| {
            addr.node_id() == failure.node && *epoch == failure.epoch
        };
        if state.current.as_ref().is_some_and(same) {
            state.current = None;
        }
        state.failed = Some(failure);
    }

    /// Where to send: where it ran last, or where the head says it runs,
    /// waiting (by `deadline`) for the head to name another incarnation
    /// while it names one that just failed.
    async fn target(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<(RemoteAddr<A>, u64), AskError> {
        let failed = {
            let state = self.lock();
            if let Some(current) = &state.current {
                return Ok(current.clone());
            }
            state.failed.clone()
        };
        let located = self.resolve(deadline).await?;
        match failed {
            Some(failure) if (located.node, located.epoch) == (failure.node, failure.epoch) => {
                self.follow(failure, located, deadline).await
            }
            _ => Ok(self.remember(&located)),
        }
    }

    /// The head names the incarnation that failed: asks it again every
    /// [`POLL`] until it names another, or (for a failed way to the node)
    /// a new link to that node shows it is back.
    async fn follow(
        &self,
        failure: Failure,
        located: Located,
        deadline: tokio::time::Instant,
    ) -> Result<(RemoteAddr<A>, u64), AskError> {
        if failure.kind == Kind::Stale {
            return Ok(self.remember(&located));
        }
        let mesh = self.control.mesh.clone();
        let node = failure.node;
        // One dial for the whole wait: it ends with a link or an error.
        let mut dial = (failure.kind == Kind::Path).then(|| Box::pin(mesh.link(node)));
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                // Give the node another chance on the next ask.
                self.lock().failed = None;
                return Err(failure.error);
            }
            let every = if failure.kind == Kind::Absent {
                ABSENT_POLL
            } else {
                POLL
            };
            let pause = tokio::time::sleep_until((now + every).min(deadline));
            match dial.as_mut() {
                Some(linking) => {
                    tokio::select! {
                        linked = linking => {
                            dial = None;
                            if linked.is_ok_and(|l| l.established_at() > failure.at) {
                                return Ok(self.remember(&located));
                            }
                        }
                        () = pause => {}
                    }
                }
                None => pause.await,
            }
            let now = self.resolve(deadline).await?;
            if (now.node, now.epoch) != (failure.node, failure.epoch)
                || failure.kind == Kind::Absent
            {
                // Another incarnation, or the same one's node to ask again
                // after a pause (it may be starting there).
                return Ok(self.remember(&now));
            }
        }
    }

    /// Where the head says it runs now.
    async fn resolve(&self, deadline: tokio::time::Instant) -> Result<Located, AskError> {
        let within = deadline.saturating_duration_since(tokio::time::Instant::now());
        let request = Resolve {
            name: self.name.to_string(),
        };
        let answer = self
            .control
            .call_until(
                request,
                within,
                Patience::WhileQuorumReachable,
                super::QUORUM_PLUS,
            )
            .await;
        answer.map_err(|e| match e {
            ControlError::NoQuorum { reason } | ControlError::NoHead { reason } => {
                AskError::NoQuorum {
                    name: self.name.to_string(),
                    reason,
                }
            }
            other => AskError::NotPlaced {
                name: self.name.to_string(),
                reason: other.to_string(),
            },
        })
    }
}

/// How often a handle asks the head again while it names an incarnation
/// that just failed: the leader looks for placements to move as often.
const POLL: Duration = Duration::from_millis(50);

/// As [`POLL`], while its node runs no such actor: a move's hand-over (or
/// a start) is under way, and ends in a few milliseconds.
const ABSENT_POLL: Duration = Duration::from_millis(10);
