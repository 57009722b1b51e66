//! Remote protocols and their dispatchers: [`RemoteMessage`] (a serde
//! message with a stable tag), [`RemoteActor`] and [`Accepts`] (the message
//! types an actor declares once with [`remote_actor!`](crate::remote_actor)),
//! and the typed [`Entry`] that decodes a tagged body into a message for the
//! actor's `Addr` and encodes the handler's result.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix::{Actor, Addr, Context, Handler, MailboxError, Message};
use serde::de::DeserializeOwned;
use serde::Serialize;
use swarm_protocol::RemoteError;

use super::{Access, Caller};
use crate::inspect::stats::{ActorStats, Sample, TraceNote};
use crate::inspect::{Probe, Timed};

/// A message that can cross the network: a serde type with a stable tag.
///
/// Implement it with [`remote_message!`](crate::remote_message); the tag
/// names the type on the wire, so it MUST stay the same across versions and
/// be unique in the cluster (e.g. `"example.Add"`).
pub trait RemoteMessage: Message + Serialize + DeserializeOwned + Send + 'static {
    /// The stable type tag.
    const TAG: &'static str;
    /// Who may send it by default ([`Access`]); user messages are
    /// [`Access::User`], system messages declare theirs with their tag.
    const ACCESS: Access = Access::User;
}

/// What a remote message's result must be: serde and sendable.
pub trait Wire: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> Wire for T {}

/// An actor with a remote protocol: the message types other nodes may send
/// it, declared once with [`remote_actor!`](crate::remote_actor). Exposing
/// the actor registers every one of them.
pub trait RemoteActor: Actor<Context = Context<Self>> + Handler<Probe> {
    /// Registers each declared message type. Written by `remote_actor!`.
    #[doc(hidden)]
    fn declare(protocol: &mut Protocol<'_, Self>);
}

/// `A: Accepts<M>` means `M` is part of `A`'s declared remote protocol,
/// so a `RemoteAddr<A>` may send it. Written by
/// [`remote_actor!`](crate::remote_actor).
pub trait Accepts<M>: RemoteActor + Handler<M> + Handler<Timed<M>>
where
    M: RemoteMessage,
    M::Result: Wire,
{
}

/// Declares a message type remote: `remote_message!(Add => "example.Add");`.
#[macro_export]
macro_rules! remote_message {
    ($($ty:ty => $tag:expr),+ $(,)?) => {
        $(impl $crate::RemoteMessage for $ty {
            const TAG: &'static str = $tag;
        })+
    };
}

/// Declares an actor's remote protocol once: `remote_actor!(Adder: Add, Count);`.
///
/// Every listed type must be a [`RemoteMessage`] the actor handles. A
/// `RemoteAddr<Adder>` then sends exactly these types
/// (anything else does not compile), and exposing an `Adder` registers all
/// of them. It also lets the runtime time a sample of the actor's messages
/// for operators ([`crate::inspect`]): each handler runs as written.
#[macro_export]
macro_rules! remote_actor {
    ($actor:ty : $($msg:ty),+ $(,)?) => {
        impl $crate::RemoteActor for $actor {
            fn declare(protocol: &mut $crate::Protocol<'_, Self>) {
                $(protocol.accept::<$msg>();)+
            }
        }
        impl $crate::__private::actix::Handler<$crate::__private::Probe> for $actor {
            type Result = ();
            fn handle(
                &mut self,
                probe: $crate::__private::Probe,
                _: &mut <Self as $crate::__private::actix::Actor>::Context,
            ) {
                probe.reached();
            }
        }
        $(
            impl $crate::Accepts<$msg> for $actor {}
            impl $crate::__private::actix::Handler<$crate::__private::Timed<$msg>> for $actor {
                type Result = $crate::__private::TimedResponse<
                    <Self as $crate::__private::actix::Handler<$msg>>::Result,
                >;
                fn handle(
                    &mut self,
                    timed: $crate::__private::Timed<$msg>,
                    ctx: &mut <Self as $crate::__private::actix::Actor>::Context,
                ) -> Self::Result {
                    timed.run(|msg| {
                        <Self as $crate::__private::actix::Handler<$msg>>::handle(self, msg, ctx)
                    })
                }
            }
        )+
    };
}

/// The message types of an actor being exposed; filled by
/// [`RemoteActor::declare`].
#[doc(hidden)]
pub struct Protocol<'a, A: Actor> {
    entry: &'a mut Entry<A>,
}

impl<A: Actor<Context = Context<A>>> Protocol<'_, A> {
    /// Accepts messages of type `M` from the network.
    pub fn accept<M>(&mut self)
    where
        A: Handler<M> + Handler<Timed<M>>,
        M: RemoteMessage,
        M::Result: Wire,
    {
        self.entry.accept::<M>();
    }
}

/// A future that waits for the actor's answer, already encoded.
pub(crate) type AskFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, RemoteError>> + Send>>;
/// A future that waits until a tell was accepted by a full mailbox.
pub(crate) type TellFuture = Pin<Box<dyn Future<Output = ()>>>;

/// A registered actor, seen without its type.
pub(crate) trait Dispatch: Send + Sync {
    /// Decodes and delivers a tell from `caller`. `Ok(Some(f))` means the
    /// mailbox was full: await `f` before delivering anything else, to keep
    /// order and to push back on the link.
    fn tell(
        &self,
        caller: &Caller,
        tag: &str,
        body: &[u8],
    ) -> Result<Option<TellFuture>, RemoteError>;

    /// Decodes and delivers an ask from `caller`; the message is in the
    /// mailbox once the returned future has been polled once.
    fn ask(&self, caller: &Caller, tag: &str, body: &[u8]) -> Result<AskFuture, RemoteError>;

    /// The typed `Addr<A>`, for local calls that skip serialization.
    fn addr(&self) -> &dyn Any;

    /// Whether a supervisor restarts it (its stopping mid-request is a failure).
    fn supervised(&self) -> bool;

    /// The access class `tag` declares, if the actor accepts it.
    fn access(&self, tag: &str) -> Option<Access>;

    /// Every tag it accepts, with its access class.
    fn protocol(&self) -> Vec<(&'static str, Access)>;

    /// Its counters.
    fn stats(&self) -> &Arc<ActorStats>;

    /// Puts a probe in its mailbox (see [`ActorStats::probe`]).
    fn probe(&self);

    /// The Rust type of the actor.
    fn type_name(&self) -> &'static str;
}

/// Decodes and delivers one message, counted in the stats.
type TellFn<A> =
    fn(&Addr<A>, &Caller, &[u8], &Arc<ActorStats>) -> Result<Option<TellFuture>, RemoteError>;
type AskFn<A> = fn(&Addr<A>, &Caller, &[u8], &Arc<ActorStats>) -> Result<AskFuture, RemoteError>;

/// A message that names its sender: the dispatcher overwrites what the
/// sender claimed with who the link authenticated (node, certificate
/// serial, name and roles, source address).
pub(crate) trait StampCaller {
    /// Sets the sender.
    fn stamp_caller(&mut self, caller: &Caller);
}

/// A typed directory entry: the actor's address and one pair of decoders
/// per accepted message tag.
pub(crate) struct Entry<A: Actor> {
    /// The actor.
    addr: Addr<A>,
    /// Tag -> (tell, ask) functions, monomorphized per message type, and
    /// the access class the type declares.
    handlers: HashMap<&'static str, (TellFn<A>, AskFn<A>, Access)>,
    /// Run by a supervisor: an actor that vanishes while holding a request
    /// failed (it is restarted), rather than stopped.
    supervised: bool,
    /// Its counters, for operators.
    stats: Arc<ActorStats>,
}

impl<A: Actor<Context = Context<A>>> Entry<A> {
    pub(crate) fn new(addr: Addr<A>) -> Self {
        Self {
            addr,
            handlers: HashMap::new(),
            supervised: false,
            stats: Arc::default(),
        }
    }

    /// Marks the entry as one of a supervised actor.
    pub(crate) fn supervised(mut self) -> Self {
        self.supervised = true;
        self
    }

    /// An entry accepting `A`'s whole declared protocol.
    pub(crate) fn declared(addr: Addr<A>) -> Self
    where
        A: RemoteActor,
    {
        let mut entry = Self::new(addr);
        A::declare(&mut Protocol { entry: &mut entry });
        entry
    }

    pub(crate) fn accept<M>(&mut self)
    where
        A: Handler<M> + Handler<Timed<M>>,
        M: RemoteMessage,
        M::Result: Wire,
    {
        self.handlers
            .insert(M::TAG, (tell_fn::<A, M>, ask_fn::<A, M>, M::ACCESS));
    }

    /// Accepts `M` with its sender set from the link's authenticated peer
    /// (replacing how [`Entry::declared`] accepted it).
    pub(crate) fn stamped<M>(mut self) -> Self
    where
        A: Handler<M> + Handler<Timed<M>>,
        M: RemoteMessage + StampCaller,
        M::Result: Wire,
    {
        self.handlers.insert(
            M::TAG,
            (tell_stamped_fn::<A, M>, ask_stamped_fn::<A, M>, M::ACCESS),
        );
        self
    }
}

impl<A: RemoteActor> Dispatch for Entry<A> {
    fn tell(
        &self,
        caller: &Caller,
        tag: &str,
        body: &[u8],
    ) -> Result<Option<TellFuture>, RemoteError> {
        let delivered = self
            .handler(tag)
            .and_then(|(tell, _, _)| tell(&self.addr, caller, body, &self.stats));
        if delivered.is_err() {
            self.stats.failed();
        }
        delivered
    }

    fn ask(&self, caller: &Caller, tag: &str, body: &[u8]) -> Result<AskFuture, RemoteError> {
        let answer = match self
            .handler(tag)
            .and_then(|(_, ask, _)| ask(&self.addr, caller, body, &self.stats))
        {
            Ok(answer) => answer,
            Err(e) => {
                self.stats.failed();
                return Err(e);
            }
        };
        let supervised = self.supervised;
        let stats = Arc::clone(&self.stats);
        Ok(Box::pin(async move {
            answer.await.map_err(|e| {
                stats.failed();
                match e {
                    RemoteError::ActorStopped if supervised => RemoteError::ActorFailed,
                    other => other,
                }
            })
        }))
    }

    fn addr(&self) -> &dyn Any {
        &self.addr
    }

    fn supervised(&self) -> bool {
        self.supervised
    }

    fn access(&self, tag: &str) -> Option<Access> {
        self.handlers.get(tag).map(|(_, _, access)| *access)
    }

    fn protocol(&self) -> Vec<(&'static str, Access)> {
        let mut tags: Vec<_> = self
            .handlers
            .iter()
            .map(|(tag, (_, _, access))| (*tag, *access))
            .collect();
        tags.sort_unstable_by_key(|(tag, _)| *tag);
        tags
    }

    fn stats(&self) -> &Arc<ActorStats> {
        &self.stats
    }

    fn probe(&self) {
        if let Some(probe) = self.stats.probe() {
            self.addr.do_send(probe);
        }
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<A>()
    }
}

impl<A: Actor> Entry<A> {
    fn handler(&self, tag: &str) -> Result<(TellFn<A>, AskFn<A>, Access), RemoteError> {
        self.handlers
            .get(tag)
            .copied()
            .ok_or_else(|| RemoteError::UnknownMessage {
                tag: tag.to_owned(),
            })
    }
}

fn decode<M: DeserializeOwned>(body: &[u8]) -> Result<M, RemoteError> {
    rmp_serde::from_slice(body).map_err(|e| RemoteError::Decode {
        reason: e.to_string(),
    })
}

/// Counts a message from `from` and delivers it, timed if it is sampled
/// (the local shortcut of `RemoteAddr` counts this way too).
pub(crate) fn sampled<M: RemoteMessage, R>(
    stats: &Arc<ActorStats>,
    from: swarm_protocol::NodeId,
    ask: bool,
    bytes: usize,
    msg: M,
    plain: impl FnOnce(M) -> R,
    timed: impl FnOnce(Timed<M>) -> R,
) -> R {
    let note = || TraceNote {
        tag: M::TAG,
        from,
        bytes,
        ask,
    };
    match stats.dispatched(ask, note) {
        Sample::Plain => plain(msg),
        Sample::Timed(clock) => timed(Timed::new(msg, clock)),
    }
}

fn tell_fn<A, M>(
    addr: &Addr<A>,
    caller: &Caller,
    body: &[u8],
    stats: &Arc<ActorStats>,
) -> Result<Option<TellFuture>, RemoteError>
where
    A: Actor<Context = Context<A>> + Handler<M> + Handler<Timed<M>>,
    M: RemoteMessage,
    M::Result: Wire,
{
    let msg = decode::<M>(body)?;
    let (plain, timed) = (|m| tell_msg(addr, m), |t| tell_msg(addr, t));
    sampled(stats, caller.node, false, body.len(), msg, plain, timed)
}

fn tell_stamped_fn<A, M>(
    addr: &Addr<A>,
    caller: &Caller,
    body: &[u8],
    stats: &Arc<ActorStats>,
) -> Result<Option<TellFuture>, RemoteError>
where
    A: Actor<Context = Context<A>> + Handler<M> + Handler<Timed<M>>,
    M: RemoteMessage + StampCaller,
    M::Result: Wire,
{
    let mut msg: M = decode(body)?;
    msg.stamp_caller(caller);
    let (plain, timed) = (|m| tell_msg(addr, m), |t| tell_msg(addr, t));
    sampled(stats, caller.node, false, body.len(), msg, plain, timed)
}

fn ask_stamped_fn<A, M>(
    addr: &Addr<A>,
    caller: &Caller,
    body: &[u8],
    stats: &Arc<ActorStats>,
) -> Result<AskFuture, RemoteError>
where
    A: Actor<Context = Context<A>> + Handler<M> + Handler<Timed<M>>,
    M: RemoteMessage + StampCaller,
    M::Result: Wire,
{
    let mut msg: M = decode(body)?;
    msg.stamp_caller(caller);
    let (plain, timed) = (|m| ask_msg(addr, m), |t| ask_msg(addr, t));
    sampled(stats, caller.node, true, body.len(), msg, plain, timed)
}

fn tell_msg<A, M>(addr: &Addr<A>, msg: M) -> Result<Option<TellFuture>, RemoteError>
where
    A: Actor<Context = Context<A>> + Handler<M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    match addr.try_send(msg) {
        Ok(()) => Ok(None),
        Err(actix::dev::SendError::Full(msg)) => {
            let request = addr.send(msg);
            Ok(Some(Box::pin(async move {
                let _ = request.await;
            })))
        }
        Err(actix::dev::SendError::Closed(_)) => Err(RemoteError::ActorStopped),
    }
}

fn ask_fn<A, M>(
    addr: &Addr<A>,
    caller: &Caller,
    body: &[u8],
    stats: &Arc<ActorStats>,
) -> Result<AskFuture, RemoteError>
where
    A: Actor<Context = Context<A>> + Handler<M> + Handler<Timed<M>>,
    M: RemoteMessage,
    M::Result: Wire,
{
    let msg = decode::<M>(body)?;
    let (plain, timed) = (|m| ask_msg(addr, m), |t| ask_msg(addr, t));
    sampled(stats, caller.node, true, body.len(), msg, plain, timed)
}

fn ask_msg<A, M>(addr: &Addr<A>, msg: M) -> Result<AskFuture, RemoteError>
where
    A: Actor<Context = Context<A>> + Handler<M>,
    M: Message + Send + 'static,
    M::Result: Wire,
{
    let request = addr.send(msg);
    Ok(Box::pin(async move {
        match request.await {
            Ok(result) => rmp_serde::to_vec(&result).map_err(|e| RemoteError::Encode {
                reason: e.to_string(),
            }),
            Err(MailboxError::Closed) => Err(RemoteError::ActorStopped),
            Err(MailboxError::Timeout) => Err(RemoteError::Refused {
                reason: "mailbox timeout".into(),
            }),
        }
    }))
}
