//! [`RemoteAddr`]: a typed handle to an actor on any node, used like an
//! actix `Addr`. It sends only the message types the actor declared with
//! [`remote_actor!`](crate::remote_actor). A handle to an actor on the
//! caller's own node calls it directly, without serialization.
//!
//! # Delivery contract
//!
//! - Per sender-receiver pair (one node's traffic to one actor), messages
//!   arrive in the order they were sent, or not at all: a message may be
//!   lost when its link breaks, but never overtakes an earlier one and is
//!   never delivered twice.
//! - [`RemoteAddr::send`] waits for the handler's result. It fails with a
//!   typed [`AskError`]: `Timeout` after the node's default timeout (or the
//!   one given to [`RemoteAddr::send_timeout`]); `LinkDown` the moment the
//!   link to the target's node closes; `NodeDown` when membership declared
//!   it down; `Unreachable` if no link can be made; `TooLarge` (before
//!   anything is sent) when the message exceeds `max_message`;
//!   `NoSuchActor`, `UnknownMessage`, `Decode`/`Encode`, `ActorStopped`
//!   and `Refused` as reported by the target node. A node refuses asks
//!   beyond `max_inbound_asks` waiting on one link, so a slow actor cannot
//!   make it buffer without bound. Dropping the future of a `send` forgets
//!   the ask at once.
//! - [`RemoteAddr::tell`] waits for space in the link's bounded queue
//!   (backpressure) but not for the handler; [`RemoteAddr::try_tell`] never
//!   waits and hands the message back when the queue is full or no link is
//!   up yet (it starts one background dial, so a retry can succeed). Neither
//!   grows memory without bound.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Addr, MailboxError};
use swarm_protocol::envelope::encode_request;
use swarm_protocol::{NodeId, Target};
use tokio::sync::mpsc::error::TrySendError;

use crate::directory::dispatch::sampled;
use crate::directory::{Accepts, Caller, RemoteActor, RemoteMessage, Wire};
use crate::error::{AskError, TellError};
use crate::inspect::stats::ActorStats;
use crate::mesh::link::AskFailure;
use crate::mesh::Mesh;

pub(crate) mod behalf;
use behalf::Behalf;

/// How often a message moves on to a successor link when the link it was
/// given to handed its peer over first (once is the rule; twice is a race).
const HANDOVER_RETRIES: usize = 3;

/// A typed handle to an actor registered under a name on some node.
pub struct RemoteAddr<A: RemoteActor> {
    /// The local node's mesh, whose links carry the messages.
    mesh: Mesh,
    /// The node the actor lives on.
    target: NodeId,
    /// The name it is registered under there.
    name: Arc<str>,
    /// The size of the last message encoded through this handle.
    size_hint: Arc<AtomicUsize>,
    /// The operator its asks are made for, if any.
    behalf: Option<Arc<Behalf>>,
    _actor: PhantomData<fn() -> A>,
}

impl<A: RemoteActor> Clone for RemoteAddr<A> {
    fn clone(&self) -> Self {
        Self {
            mesh: self.mesh.clone(),
            target: self.target,
            name: Arc::clone(&self.name),
            size_hint: Arc::clone(&self.size_hint),
            behalf: self.behalf.clone(),
            _actor: PhantomData,
        }
    }
}

impl<A: RemoteActor> std::fmt::Debug for RemoteAddr<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteAddr({}@{})", self.name, self.target.short())
    }
}

/// Why an ask got no answer, and the message when no handler can have
/// run it: it never left this node (no route, no link, the node is down),
/// or the target node had no actor under the name. A caller may send such
/// a message elsewhere without running it twice.
pub(crate) struct Unanswered<M> {
    /// What failed.
    pub(crate) error: AskError,
    /// The message, when nothing ran it.
    pub(crate) unrun: Option<M>,
}

impl<M> Unanswered<M> {
    /// Failed before anything was sent.
    fn unsent(error: AskError, msg: M) -> Self {
        Self {
            error,
            unrun: Some(msg),
        }
    }

    /// What an ask that may have been delivered answered: only the target
    /// saying it has no such actor proves that nothing ran.
    fn after<T>(answer: Result<T, AskError>, msg: M) -> Result<T, Self> {
        answer.map_err(|error| {
            let unrun = matches!(error, AskError::NoSuchActor { .. }).then_some(msg);
            Self { error, unrun }
        })
    }
}

/// Where a message to this handle goes.
enum Route<A: RemoteActor> {
    /// The typed actor on this node: no serialization (and whether it is
    /// supervised: its stopping mid-request is then a failure), counted
    /// in its stats as a dispatch would be.
    Direct(Addr<A>, bool, Arc<ActorStats>),
    /// Something on this node exposed under the name as another type: its
    /// dispatcher decides, exactly as for a remote caller.
    Dispatch(Arc<dyn crate::directory::Dispatch>),
    /// Another node.
    Remote,
}

/// A local ask on its way, plain or timed.
type LocalRequest<M> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<<M as actix::Message>::Result, MailboxError>>
            + Send,
    >,
>;

/// A local tell, counted (and timed when sampled) as a dispatched one.
fn try_send_counted<A, M>(
    addr: &Addr<A>,
    stats: &Arc<ActorStats>,
    me: NodeId,
    msg: M,
) -> Result<(), actix::dev::SendError<M>>
where
    A: Accepts<M>,
    M: RemoteMessage,
    M::Result: Wire,
{
    use actix::dev::SendError;
    let timed = |t: crate::inspect::Timed<M>| {
        addr.try_send(t).map_err(|e| match e {
            SendError::Full(t) => SendError::Full(t.into_inner()),
            SendError::Closed(t) => SendError::Closed(t.into_inner()),
        })
    };
    let sent = sampled(stats, me, false, 0, msg, |m| addr.try_send(m), timed);
    if matches!(sent, Err(SendError::Closed(_))) {
        stats.failed();
    }
    sent
}

impl<A: RemoteActor> RemoteAddr<A> {
    pub(crate) fn new(mesh: Mesh, target: NodeId, name: &str) -> Self {
        Self {
            mesh,
            target,
            name: name.into(),
            size_hint: Arc::new(AtomicUsize::new(0)),
            behalf: None,
            _actor: PhantomData,
        }
    }

    /// This handle making its asks for an operator who logged in through
    /// this node (see [`Behalf`]): the target decides and dispatches each
    /// as the operator's, and refuses it once the session ended. Tells
    /// through it are refused ([`TellError::Disconnected`] with
    /// [`AskError::Refused`]): what an operator does, it asks.
    #[must_use]
    pub fn on_behalf(mut self, behalf: Arc<Behalf>) -> Self {
        self.behalf = Some(behalf);
        self
    }

    /// The node the actor lives on.
    pub fn node_id(&self) -> NodeId {
        self.target
    }

    /// The name the actor is registered under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends `msg` and waits for the handler's result, up to the node's
    /// default ask timeout.
    ///
    /// # Errors
    ///
    /// See the delivery contract in the module docs.
    pub async fn send<M>(&self, msg: M) -> Result<M::Result, AskError>
    where
        A: Accepts<M>,
        M: RemoteMessage,
        M::Result: Wire,
    {
        self.send_timeout(msg, self.mesh.ask_timeout()).await
    }

    /// Like [`RemoteAddr::send`] with an explicit timeout.
    ///
    /// # Errors
    ///
    /// See the delivery contract in the module docs.
    pub async fn send_timeout<M>(&self, msg: M, timeout: Duration) -> Result<M::Result, AskError>
    where
        A: Accepts<M>,
        M: RemoteMessage,
        M::Result: Wire,
    {
        self.ask(msg, timeout).await.map_err(|u| u.error)
    }

    /// As [`RemoteAddr::send_timeout`], for a caller that may send the
    /// message elsewhere when no handler can have run it: then it comes
    /// back with the error ([`Unanswered::unrun`]).
    pub(crate) async fn ask<M>(&self, msg: M, timeout: Duration) -> Result<M::Result, Unanswered<M>>
    where
        A: Accepts<M>,
        M: RemoteMessage,
        M::Result: Wire,
    {
        if let Some(behalf) = &self.behalf {
            let body = match self.encode_body(&msg) {
                Ok(body) => body,
                Err(error) => return Err(Unanswered::unsent(error, msg)),
            };
            let wrapped = behalf::wrap(behalf, &self.name, M::TAG, body);
            let reply = delegated(self.mesh.clone(), self.target, wrapped, timeout).await;
            return Unanswered::after(reply.and_then(|r| decode_reply(&r)), msg);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = AskError::Timeout { after: timeout };
        let route = match self.route() {
            Ok(route) => route,
            Err(error) => return Err(Unanswered::unsent(error, msg)),
        };
        match route {
            Route::Direct(addr, supervised, stats) => {
                let me = self.mesh.id();
                let request = sampled(
                    &stats,
                    me,
                    true,
                    0,
                    msg,
                    |m| Box::pin(addr.send(m)) as LocalRequest<M>,
                    |t| Box::pin(addr.send(t)) as LocalRequest<M>,
                );
                let answer = tokio::time::timeout_at(deadline, request).await;
                if !matches!(answer, Ok(Ok(_))) {
                    stats.failed();
                }
                let error = match answer {
                    Ok(Ok(result)) => return Ok(result),
                    Ok(Err(MailboxError::Closed)) if supervised => AskError::ActorFailed,
                    Ok(Err(MailboxError::Closed)) => AskError::ActorStopped,
                    Ok(Err(MailboxError::Timeout)) | Err(_) => timed_out,
                };
                return Err(Unanswered { error, unrun: None });
            }
            Route::Dispatch(dispatch) => {
                let answer = self
                    .encode_body(&msg)
                    .and_then(|body| Ok(dispatch.ask(&self.own_caller(), M::TAG, &body)?));
                let answer = match answer {
                    Ok(answer) => answer,
                    Err(error) => return Err(Unanswered::unsent(error, msg)),
                };
                let reply = match tokio::time::timeout_at(deadline, answer).await {
                    Ok(reply) => reply.map_err(AskError::from),
                    Err(_) => Err(timed_out),
                };
                return Unanswered::after(reply.and_then(|r| decode_reply(&r)), msg);
            }
            Route::Remote => {}
        }
        // A link that hands its peer over to a successor (a relayed link
        // becoming direct) refuses asks it did not queue: ask the successor.
        for _ in 0..HANDOVER_RETRIES {
            let down = AskError::NodeDown { node: self.target };
            if self.mesh.is_down(self.target) {
                return Err(Unanswered::unsent(down, msg));
            }
            let link = match self.mesh.live_link(self.target) {
                Some(link) => link,
                None => {
                    match tokio::time::timeout_at(deadline, self.mesh.link(self.target)).await {
                        Ok(Ok(link)) => link,
                        Ok(Err(error)) => return Err(Unanswered::unsent(error, msg)),
                        Err(_) => return Err(Unanswered::unsent(timed_out, msg)),
                    }
                }
            };
            // Membership may have declared the node down while the link was dialed.
            if self.mesh.is_down(self.target) {
                return Err(Unanswered::unsent(down, msg));
            }
            let hint = self.size_hint.load(Ordering::Relaxed);
            let hints = &self.size_hint;
            let asked = link
                .ask(
                    &self.name,
                    M::TAG,
                    hint,
                    |out| write_body(out, &msg, hints),
                    deadline,
                    timeout,
                )
                .await;
            match asked {
                Ok(reply) => return Unanswered::after(decode_reply(&reply), msg),
                Err(AskFailure::Failed(e)) => return Unanswered::after(Err(e), msg),
                Err(AskFailure::HandedOver) => {}
            }
        }
        Err(Unanswered::unsent(
            AskError::LinkDown { node: self.target },
            msg,
        ))
    }

    /// Queues `msg` without waiting for the handler, waiting for queue
    /// space if the link is busy (and for the link, if it must be dialed).
    ///
    /// # Errors
    ///
    /// [`TellError::Disconnected`] if no link can be made, there is no such
    /// actor or it stopped; [`TellError::Encode`] if `msg` does not
    /// serialize; [`TellError::TooLarge`] if it exceeds `max_message`. The
    /// message comes back in the error.
    pub async fn tell<M>(&self, msg: M) -> Result<(), TellError<M>>
    where
        A: Accepts<M>,
        M: RemoteMessage,
        M::Result: Wire,
    {
        let msg = self.unless_delegated(msg)?;
        match self.route() {
            Err(cause) => return Err(TellError::Disconnected { msg, cause }),
            Ok(Route::Direct(addr, _, stats)) => {
                return match try_send_counted(&addr, &stats, self.mesh.id(), msg) {
                    Ok(()) => Ok(()),
                    Err(actix::dev::SendError::Full(msg)) => {
                        // Wait for the mailbox (backpressure), as a remote tell would.
                        let _ = addr.send(msg).await;
                        Ok(())
                    }
                    Err(actix::dev::SendError::Closed(msg)) => Err(TellError::Disconnected {
                        msg,
                        cause: AskError::ActorStopped,
                    }),
                };
            }
            Ok(Route::Dispatch(dispatch)) => {
                return match self.local_tell(dispatch.as_ref(), &msg) {
                    Ok(Some(wait)) => {
                        wait.await;
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(cause) => Err(TellError::Disconnected { msg, cause }),
                };
            }
            Ok(Route::Remote) => {}
        }
        let msg = self.unless_down(msg)?;
        let link = match self.mesh.link(self.target).await {
            Ok(link) => link,
            Err(cause) => return Err(TellError::Disconnected { msg, cause }),
        };
        let envelope = match self.encode_tell(&msg) {
            Ok(envelope) => envelope,
            Err(reason) => return Err(TellError::Encode { msg, reason }),
        };
        if let Err((size, max)) = link.check_size(&envelope) {
            return Err(TellError::TooLarge { msg, size, max });
        }
        let mut link = link;
        let mut envelope = envelope;
        for _ in 0..HANDOVER_RETRIES {
            match link.send(envelope).await {
                Ok(()) => return Ok(()),
                // Refused by a link that handed over: the successor takes it,
                // after everything the old link carries (order kept).
                Err(back) if link.handed_over() => {
                    envelope = back;
                    link = match self.mesh.link(self.target).await {
                        Ok(link) => link,
                        Err(cause) => return Err(TellError::Disconnected { msg, cause }),
                    };
                }
                Err(_) => break,
            }
        }
        Err(TellError::Disconnected {
            msg,
            cause: AskError::LinkDown { node: self.target },
        })
    }

    /// Queues `msg` if there is room right now.
    ///
    /// # Errors
    ///
    /// [`TellError::Full`] when the queue or mailbox is full;
    /// [`TellError::Disconnected`] when no link is up (one background dial
    /// starts, so a later retry may succeed), there is no such actor or it
    /// stopped; `Encode` and `TooLarge` as for [`RemoteAddr::tell`]. The
    /// message comes back in the error.
    pub fn try_tell<M>(&self, msg: M) -> Result<(), TellError<M>>
    where
        A: Accepts<M>,
        M: RemoteMessage,
        M::Result: Wire,
    {
        let msg = self.unless_delegated(msg)?;
        match self.route() {
            Err(cause) => return Err(TellError::Disconnected { msg, cause }),
            Ok(Route::Direct(addr, _, stats)) => {
                let me = self.mesh.id();
                return try_send_counted(&addr, &stats, me, msg).map_err(|e| match e {
                    actix::dev::SendError::Full(msg) => TellError::Full(msg),
                    actix::dev::SendError::Closed(msg) => TellError::Disconnected {
                        msg,
                        cause: AskError::ActorStopped,
                    },
                });
            }
            Ok(Route::Dispatch(dispatch)) => {
                return match self.local_tell(dispatch.as_ref(), &msg) {
                    Ok(None) => Ok(()),
                    // Delivered once the mailbox has room; nothing to wait for here.
                    Ok(Some(wait)) => {
                        actix_rt::spawn(wait);
                        Ok(())
                    }
                    Err(cause) => Err(TellError::Disconnected { msg, cause }),
                };
            }
            Ok(Route::Remote) => {}
        }
        let msg = self.unless_down(msg)?;
        let Some(link) = self.mesh.link_now(self.target) else {
            return Err(TellError::Disconnected {
                msg,
                cause: AskError::LinkDown { node: self.target },
            });
        };
        let envelope = match self.encode_tell(&msg) {
            Ok(envelope) => envelope,
            Err(reason) => return Err(TellError::Encode { msg, reason }),
        };
        if let Err((size, max)) = link.check_size(&envelope) {
            return Err(TellError::TooLarge { msg, size, max });
        }
        let (link, envelope) = match link.try_send(envelope) {
            Err(TrySendError::Closed(back)) if link.handed_over() => {
                match self.mesh.live_link(self.target) {
                    Some(successor) => (successor, back),
                    None => (link, back),
                }
            }
            Err(TrySendError::Full(_)) => return Err(TellError::Full(msg)),
            Err(TrySendError::Closed(_)) => {
                return Err(TellError::Disconnected {
                    msg,
                    cause: AskError::LinkDown { node: self.target },
                })
            }
            Ok(()) => return Ok(()),
        };
        link.try_send(envelope).map_err(|e| match e {
            TrySendError::Full(_) => TellError::Full(msg),
            TrySendError::Closed(_) => TellError::Disconnected {
                msg,
                cause: AskError::LinkDown { node: self.target },
            },
        })
    }

    /// Where messages go; an actor missing on this node is `NoSuchActor`.
    fn route(&self) -> Result<Route<A>, AskError> {
        if self.target != self.mesh.id() {
            return Ok(Route::Remote);
        }
        let Some(dispatch) = self.mesh.local(&self.name) else {
            return Err(self.no_such_actor());
        };
        match dispatch.addr().downcast_ref::<Addr<A>>() {
            Some(addr) => Ok(Route::Direct(
                addr.clone(),
                dispatch.supervised(),
                Arc::clone(dispatch.stats()),
            )),
            None => Ok(Route::Dispatch(dispatch)),
        }
    }

    fn no_such_actor(&self) -> AskError {
        AskError::NoSuchActor {
            name: self.name.to_string(),
        }
    }

    /// This node as the caller of a local dispatch.
    fn own_caller(&self) -> Caller {
        self.mesh.own_caller()
    }

    fn local_tell<M: RemoteMessage>(
        &self,
        dispatch: &dyn crate::directory::Dispatch,
        msg: &M,
    ) -> Result<Option<crate::directory::dispatch::TellFuture>, AskError> {
        let body = self.encode_body(msg)?;
        Ok(dispatch.tell(&self.own_caller(), M::TAG, &body)?)
    }

    fn encode_body<M: RemoteMessage>(&self, msg: &M) -> Result<Vec<u8>, AskError> {
        let mut body = Vec::new();
        write_body(&mut body, msg, &self.size_hint)
            .map_err(|reason| AskError::Encode { reason })?;
        Ok(body)
    }

    /// Hands `msg` back in an error when this handle acts for an operator
    /// (only asks are delegated).
    fn unless_delegated<M>(&self, msg: M) -> Result<M, TellError<M>> {
        if self.behalf.is_some() {
            return Err(TellError::Disconnected {
                msg,
                cause: AskError::Refused {
                    reason: "a handle acting for an operator only asks".into(),
                },
            });
        }
        Ok(msg)
    }

    /// Hands `msg` back in an error when membership holds the target down.
    fn unless_down<M>(&self, msg: M) -> Result<M, TellError<M>> {
        if self.mesh.is_down(self.target) {
            return Err(TellError::Disconnected {
                msg,
                cause: AskError::NodeDown { node: self.target },
            });
        }
        Ok(msg)
    }

    fn encode_tell<M: RemoteMessage>(&self, msg: &M) -> Result<Vec<u8>, String> {
        let hint = self.size_hint.load(Ordering::Relaxed);
        let mut envelope = Vec::with_capacity(hint.max(64) + self.name.len() + M::TAG.len() + 16);
        encode_request(
            &mut envelope,
            None,
            Target::Name(&self.name),
            M::TAG,
            |out| write_body(out, msg, &self.size_hint),
        )?;
        Ok(envelope)
    }
}

/// Asks `target`'s session actor to dispatch `wrapped` for its operator
/// (boxed: it is itself an ask through a handle).
fn delegated(
    mesh: Mesh,
    target: NodeId,
    wrapped: behalf::Delegated,
    timeout: Duration,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, AskError>> + Send>> {
    Box::pin(async move {
        let session = RemoteAddr::<behalf::SessionDoor>::new(mesh, target, behalf::SESSION_ACTOR);
        match session.send_timeout(wrapped, timeout).await? {
            Ok(reply) => Ok(reply.into_vec()),
            Err(e) => Err(e.into()),
        }
    })
}

fn decode_reply<T: Wire>(reply: &[u8]) -> Result<T, AskError> {
    rmp_serde::from_slice(reply).map_err(|e| AskError::Decode {
        reason: e.to_string(),
    })
}

/// Serializes `msg` at the end of `out` and remembers its size, so the
/// next buffer of this handle is allocated once at the right size.
fn write_body<M: RemoteMessage>(
    out: &mut Vec<u8>,
    msg: &M,
    hint: &AtomicUsize,
) -> Result<(), String> {
    let start = out.len();
    rmp_serde::encode::write(out, msg).map_err(|e| e.to_string())?;
    hint.store(out.len() - start, Ordering::Relaxed);
    Ok(())
}
