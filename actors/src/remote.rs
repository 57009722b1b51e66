//! [`RemoteAddr`]: a typed handle to an actor on any node, used like an
//! actix `Addr`. A handle to an actor on the caller's own node calls it
//! directly, without serialization.
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
//!   link to the target's node closes; `Unreachable` if no link can be made;
//!   `NoSuchActor`, `UnknownMessage`, `Decode`/`Encode`, `ActorStopped`
//!   and `Refused` as reported by the target node. A node refuses asks
//!   beyond `max_inbound_asks` waiting on one link, so a slow actor cannot
//!   make it buffer without bound.
//! - [`RemoteAddr::tell`] waits for space in the link's bounded queue
//!   (backpressure) but not for the handler; [`RemoteAddr::try_tell`] never
//!   waits and hands the message back when the queue is full or no link is
//!   up yet (it starts dialing, so a retry can succeed). Neither grows memory
//!   without bound.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, Context, Handler, MailboxError};
use swarm_protocol::envelope::encode_request;
use swarm_protocol::{NodeId, Target};
use tokio::sync::mpsc::error::TrySendError;

use crate::directory::{RemoteMessage, Wire};
use crate::error::{AskError, TellError};
use crate::node::Node;

/// A typed handle to an actor registered under a name on some node.
pub struct RemoteAddr<A: Actor> {
    /// The local node, whose links carry the messages.
    node: Node,
    /// The node the actor lives on.
    target: NodeId,
    /// The name it is registered under there.
    name: Arc<str>,
    /// The actor itself when it lives on this node (no serialization).
    local: Option<Addr<A>>,
    /// The size of the last message encoded through this handle.
    size_hint: Arc<AtomicUsize>,
    _actor: PhantomData<fn() -> A>,
}

impl<A: Actor> Clone for RemoteAddr<A> {
    fn clone(&self) -> Self {
        Self {
            node: self.node.clone(),
            target: self.target,
            name: Arc::clone(&self.name),
            local: self.local.clone(),
            size_hint: Arc::clone(&self.size_hint),
            _actor: PhantomData,
        }
    }
}

impl<A: Actor> std::fmt::Debug for RemoteAddr<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteAddr({}@{})", self.name, self.target.short())
    }
}

impl<A: Actor<Context = Context<A>>> RemoteAddr<A> {
    pub(crate) fn new(node: Node, target: NodeId, name: &str) -> Self {
        let local = (target == node.id())
            .then(|| node.directory_addr::<A>(name))
            .flatten();
        Self {
            node,
            target,
            name: name.into(),
            local,
            size_hint: Arc::new(AtomicUsize::new(0)),
            _actor: PhantomData,
        }
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
        A: Handler<M>,
        M: RemoteMessage,
        M::Result: Wire,
    {
        self.send_timeout(msg, self.node.ask_timeout()).await
    }

    /// Like [`RemoteAddr::send`] with an explicit timeout.
    ///
    /// # Errors
    ///
    /// See the delivery contract in the module docs.
    pub async fn send_timeout<M>(&self, msg: M, timeout: Duration) -> Result<M::Result, AskError>
    where
        A: Handler<M>,
        M: RemoteMessage,
        M::Result: Wire,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        if let Some(addr) = self.local_addr() {
            return match tokio::time::timeout_at(deadline, addr.send(msg)).await {
                Ok(Ok(result)) => Ok(result),
                Ok(Err(MailboxError::Closed)) => Err(AskError::ActorStopped),
                Ok(Err(MailboxError::Timeout)) | Err(_) => {
                    Err(AskError::Timeout { after: timeout })
                }
            };
        }
        if self.node.is_down(self.target) {
            return Err(AskError::NodeDown { node: self.target });
        }
        let link = match self.node.live_link(self.target) {
            Some(link) => link,
            None => match tokio::time::timeout_at(deadline, self.node.link(self.target)).await {
                Ok(link) => link?,
                Err(_) => return Err(AskError::Timeout { after: timeout }),
            },
        };
        // Membership may have declared the node down while the link was dialed.
        if self.node.is_down(self.target) {
            return Err(AskError::NodeDown { node: self.target });
        }
        let hint = self.size_hint.load(Ordering::Relaxed);
        let hints = &self.size_hint;
        let reply = link
            .ask(
                &self.name,
                M::TAG,
                hint,
                |out| write_body(out, &msg, hints),
                deadline,
                timeout,
            )
            .await?;
        rmp_serde::from_slice(&reply).map_err(|e| AskError::Decode {
            reason: e.to_string(),
        })
    }

    /// Queues `msg` without waiting for the handler, waiting for queue
    /// space if the link is busy (and for the link, if it must be dialed).
    ///
    /// # Errors
    ///
    /// [`TellError::Disconnected`] if no link can be made or the actor
    /// stopped, [`TellError::Encode`] if `msg` does not serialize; the
    /// message comes back in the error.
    pub async fn tell<M>(&self, msg: M) -> Result<(), TellError<M>>
    where
        A: Handler<M>,
        M: RemoteMessage,
        M::Result: Wire,
    {
        if let Some(addr) = self.local_addr() {
            return match addr.try_send(msg) {
                Ok(()) => Ok(()),
                Err(actix::dev::SendError::Full(msg)) => {
                    // Wait for the mailbox (backpressure), as a remote tell would.
                    let _ = addr.send(msg).await;
                    Ok(())
                }
                Err(actix::dev::SendError::Closed(msg)) => Err(TellError::Disconnected {
                    msg,
                    reason: "the actor stopped".into(),
                }),
            };
        }
        let msg = self.unless_down(msg)?;
        let link = match self.node.link(self.target).await {
            Ok(link) => link,
            Err(e) => {
                return Err(TellError::Disconnected {
                    msg,
                    reason: e.to_string(),
                })
            }
        };
        let envelope = match self.encode_tell(&msg) {
            Ok(envelope) => envelope,
            Err(reason) => return Err(TellError::Encode { msg, reason }),
        };
        link.send(envelope)
            .await
            .map_err(|_| TellError::Disconnected {
                msg,
                reason: format!("link to node {} is down", self.target),
            })
    }

    /// Queues `msg` if there is room right now.
    ///
    /// # Errors
    ///
    /// [`TellError::Full`] when the queue or mailbox is full;
    /// [`TellError::Disconnected`] when no link is up (dialing starts, so
    /// a later retry may succeed) or the actor stopped; the message comes
    /// back in the error.
    pub fn try_tell<M>(&self, msg: M) -> Result<(), TellError<M>>
    where
        A: Handler<M>,
        M: RemoteMessage,
        M::Result: Wire,
    {
        if let Some(addr) = self.local_addr() {
            return addr.try_send(msg).map_err(|e| match e {
                actix::dev::SendError::Full(msg) => TellError::Full(msg),
                actix::dev::SendError::Closed(msg) => TellError::Disconnected {
                    msg,
                    reason: "the actor stopped".into(),
                },
            });
        }
        let msg = self.unless_down(msg)?;
        let Some(link) = self.node.link_now(self.target) else {
            return Err(TellError::Disconnected {
                msg,
                reason: format!("no link to node {} yet; dialing", self.target),
            });
        };
        let envelope = match self.encode_tell(&msg) {
            Ok(envelope) => envelope,
            Err(reason) => return Err(TellError::Encode { msg, reason }),
        };
        link.try_send(envelope).map_err(|e| match e {
            TrySendError::Full(_) => TellError::Full(msg),
            TrySendError::Closed(_) => TellError::Disconnected {
                msg,
                reason: format!("link to node {} is down", self.target),
            },
        })
    }

    /// Hands `msg` back in an error when membership holds the target down.
    fn unless_down<M>(&self, msg: M) -> Result<M, TellError<M>> {
        if self.node.is_down(self.target) {
            return Err(TellError::Disconnected {
                msg,
                reason: format!("node {} is down", self.target),
            });
        }
        Ok(msg)
    }

    fn local_addr(&self) -> Option<Addr<A>> {
        if self.target != self.node.id() {
            return None;
        }
        self.local
            .clone()
            .or_else(|| self.node.directory_addr::<A>(&self.name))
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
