//! A link's read half: frames in, opened by the session's [`RecvHalf`]
//! (which answers pings and reports goodbyes); tells and asks dispatched to
//! local actors through the directory, replies handed to the asks waiting
//! for them, over-size envelopes refused one by one.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;

use actix::Addr;
use swarm_protocol::envelope::{peek, Peeked};
use swarm_protocol::record::MAX_NOISE_MESSAGE;
use swarm_protocol::session::{Inbound, RecvHalf};
use swarm_protocol::{decode_frame, Assembled, Control, Decoded, Envelope, RemoteError, Target};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::handle::{LinkHandle, LinkShared};
use super::Clock;
use super::{PeerHandedOver, HANDOVER};
use crate::audit::{AuditKind, AuditRecord};
use crate::directory::{Caller, Lookup};
use crate::error::CloseReason;
use crate::mesh::router::Router;
use crate::mesh::Shared as MeshShared;
use crate::mesh::Unchecked;
use crate::mesh::{detect, relay};
use crate::policy::{LinkPolicy, Refusal};

/// Bytes a read asks for on a quiet link.
const READ_SIZE: usize = 64 * 1024;
/// Bytes a read asks for once the link carries bulk traffic.
const BULK_READ_SIZE: usize = 256 * 1024;

/// The read half of one link.
pub(super) struct Reader {
    pub(super) shared: Arc<LinkShared>,
    pub(super) mesh: Arc<MeshShared>,
    pub(super) clock: Rc<Clock>,
    /// The session's receiving half.
    pub(super) session: RecvHalf,
    /// Gets links opened by relayed circuits.
    pub(super) router: Addr<Router>,
    /// This link, for relay frames.
    pub(super) handle: LinkHandle,
    /// Finds target actors, caching the last one.
    pub(super) lookup: Lookup,
    /// Decides what this peer may send, remembering decisions.
    pub(super) policy: LinkPolicy,
    /// The peer, as handed to every dispatch.
    pub(super) caller: Caller,
    /// Asks from this peer still waiting for a local actor.
    pub(super) inbound_asks: Rc<Cell<usize>>,
    /// The link's actor.
    pub(super) link: actix::Addr<super::Link>,
    /// An operator's session token that arrived before this node had the
    /// key to check it.
    pub(super) pending_present: Option<Vec<u8>>,
    /// Policy refusals this link logged at warn level.
    pub(super) refusals_logged: Cell<u32>,
    /// Closed once the link this one replaces delivered what it carried.
    pub(super) predecessor: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Counts one ask in flight for as long as its reply task lives.
struct InFlight(Rc<Cell<usize>>);

impl InFlight {
    fn new(count: &Rc<Cell<usize>>) -> Self {
        count.set(count.get() + 1);
        Self(Rc::clone(count))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

impl Reader {
    /// Reads until the peer closes, misbehaves or the socket fails.
    pub(super) async fn run<R: AsyncRead + ReadNow + Unpin>(
        mut self,
        mut read: R,
        mut buf: Vec<u8>,
    ) -> CloseReason {
        if let Some(mut predecessor) = self.predecessor.take() {
            // Order across a handover: nothing from this link before the
            // last message of the link it replaces (closed when it stops).
            while predecessor.changed().await.is_ok() {}
        }
        let mut plain = Vec::with_capacity(MAX_NOISE_MESSAGE);
        let mut start = 0;
        // Reads ask for 64 KiB; once a read fills what it asked for (bulk
        // traffic), for 256 KiB: fewer wake-ups per byte on a busy link,
        // little memory on a quiet one.
        let mut read_size = READ_SIZE;
        // Whether the last read filled what it asked for (more may wait).
        let mut filled = false;
        loop {
            let mut dispatched = false;
            // Handle every whole frame already buffered.
            loop {
                let rest = buf.get(start..).unwrap_or_default();
                match decode_frame(rest, MAX_NOISE_MESSAGE) {
                    Ok(Decoded::Frame { payload, consumed }) => {
                        if let Err(reason) = self.on_frame(payload, &mut plain).await {
                            return reason;
                        }
                        start += consumed;
                        dispatched = true;
                    }
                    Ok(Decoded::Incomplete { needed }) => {
                        buf.drain(..start);
                        start = 0;
                        buf.reserve(needed.max(read_size).saturating_sub(buf.len()));
                        break;
                    }
                    Err(e) => return e.into(),
                }
            }
            if dispatched && filled {
                // Let the actors, reply tasks and writer run before the next
                // read: after a read that filled its buffer that is a
                // syscall, which then leaves the round trip's critical path.
                // After a short read the reactor knows the socket is
                // drained, so the next read waits without one, and the
                // yield would only cost this thread another turn (and the
                // runtime a poll of the reactor): one per renewal on a
                // head leader with thousands of holders.
                tokio::task::yield_now().await;
            }
            filled = false;
            let room = buf.capacity() - buf.len();
            let got = match self.read_or_look(&mut read, &mut buf).await {
                Ok(got) => got,
                Err(look) => {
                    // The link is about to call the peer silent: read what
                    // waits in the socket, whether or not the reactor said
                    // so yet, then let it judge.
                    let got = read_now(&read, &mut buf);
                    self.link.do_send(super::Looked(look));
                    match got {
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        got => got,
                    }
                }
            };
            match got {
                Ok(0) => return CloseReason::PeerClosed,
                Ok(_) if self.blocked() => {
                    // An injected fault: these bytes "never arrived". A
                    // frame cut in two cannot be resumed: the link is lost.
                    buf.clear();
                    start = 0;
                }
                Ok(n) => {
                    if n == room {
                        read_size = BULK_READ_SIZE;
                        filled = true;
                    }
                    self.clock.received(false);
                    self.shared
                        .bytes_in
                        .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => return CloseReason::Io(e.kind()),
            }
        }
    }

    /// Reads more into `buf`, or returns the number of the second look the
    /// link asked for while the reader waited.
    async fn read_or_look<R: AsyncRead + Unpin>(
        &self,
        read: &mut R,
        buf: &mut Vec<u8>,
    ) -> Result<std::io::Result<usize>, u64> {
        let held = self.shared.via.is_none() && self.mesh.reads_held(self.shared.peer);
        let mut more = std::pin::pin!(read.read_buf(buf));
        std::future::poll_fn(|cx| {
            if !held {
                if let Poll::Ready(got) = more.as_mut().poll(cx) {
                    return Poll::Ready(Ok(got));
                }
            }
            match self.clock.take_look() {
                Some(look) => Poll::Ready(Err(look)),
                None => {
                    self.clock.reader_parked(cx.waker());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Whether a test blocked this direct link's path.
    fn blocked(&self) -> bool {
        self.shared.via.is_none() && self.mesh.blocked(self.shared.peer)
    }

    async fn on_frame(&mut self, payload: &[u8], plain: &mut Vec<u8>) -> Result<(), CloseReason> {
        for mut crossed in self.shared.take_held() {
            // A crossed dial's other link still delivers what the peer
            // sent there first (bounded by its drain timeout).
            while crossed.changed().await.is_ok() {}
        }
        let Some(assembled) = self.session.handle_frame(payload, plain)? else {
            return Ok(());
        };
        if let Assembled::Oversized { head, total } = &assembled {
            self.on_oversized(head, *total).await;
            return Ok(());
        }
        match Envelope::decode(assembled.bytes())? {
            Envelope::Batch(items) => {
                for item in items {
                    self.on_envelope(item).await?;
                }
            }
            single => self.on_envelope(single).await?,
        }
        // Pongs owed for pings in this frame; a full queue means traffic
        // flows, which is as good as a pong.
        while let Some(pong) = self.session.poll_pong() {
            let _ = self.shared.outbox.try_send(pong);
        }
        Ok(())
    }

    async fn on_envelope(&mut self, envelope: Envelope<'_>) -> Result<(), CloseReason> {
        if self.shared.is_closed() {
            // Replaced or closing: deliver nothing more, so order holds.
            return Err(CloseReason::Replaced);
        }
        let envelope = match self.session.classify(envelope) {
            None => return Ok(()),
            Some(Inbound::Goodbye(reason)) if reason == HANDOVER => {
                // The peer moved to a successor link; replies may still
                // come here, so read on.
                self.link.do_send(PeerHandedOver);
                return Ok(());
            }
            Some(Inbound::Goodbye(reason)) => return Err(CloseReason::Goodbye(reason)),
            Some(Inbound::Envelope(envelope)) => envelope,
        };
        if !matches!(envelope, Envelope::Control(_)) {
            self.shared
                .msgs_in
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        match envelope {
            Envelope::Tell { to, tag, body } if self.mesh.gate.presents(&to, tag) => {
                self.clock.received(true);
                let mesh = &self.mesh;
                let revoked = |s| mesh.handshake().trust.is_revoked(s);
                match mesh.gate.check(&self.caller, body, &revoked) {
                    Ok(until) => self.handle.set_session(until),
                    // This node's first lease grant (with the group's key)
                    // may still be on its way: check again on the next
                    // message.
                    Err(Unchecked::NotYet) => {
                        self.pending_present = Some(body.to_vec());
                    }
                    Err(Unchecked::Refused(reason)) => {
                        self.mesh.counters.forbidden();
                        tracing::warn!(peer = %self.shared.peer.short(), name = %self.caller.name, %reason, "operator capability refused");
                        let caller = &self.caller;
                        let target = target_name(&to);
                        self.mesh.audit(|| {
                            audit_record(caller, AuditKind::Forbidden, tag, &target, &reason)
                        });
                    }
                }
            }
            Envelope::Tell { to, tag, body } => {
                self.clock.received(true);
                let admitted = self.admit(&to, tag);
                let caller = &self.caller;
                let dispatched = admitted
                    .and_then(|()| self.lookup.find(&to))
                    .and_then(|d| d.tell(caller, tag, body));
                match dispatched {
                    Ok(None) => {}
                    Ok(Some(wait)) => {
                        self.clock.reader_waiting(true);
                        wait.await;
                        self.clock.reader_waiting(false);
                    }
                    Err(e) => {
                        self.mesh.counters.tell_dropped();
                        tracing::debug!(peer = %self.shared.peer.short(), error = %e, "tell dropped");
                    }
                }
            }
            Envelope::Ask {
                correlation,
                to,
                tag,
                body,
            } => {
                self.clock.received(true);
                let max = self.mesh.config.max_inbound_asks;
                if self.inbound_asks.get() >= max {
                    let reason = format!("more than {max} requests in flight on this link");
                    reply(
                        &self.shared,
                        correlation,
                        Err(RemoteError::Refused { reason }),
                    )
                    .await;
                    return Ok(());
                }
                let admitted = self.admit(&to, tag);
                let caller = &self.caller;
                let dispatched = admitted
                    .and_then(|()| self.lookup.find(&to))
                    .and_then(|d| d.ask(caller, tag, body));
                match dispatched {
                    Ok(mut answer) => {
                        // Poll once now: that puts the message in the mailbox
                        // before the next envelope is dispatched (order).
                        let first = std::future::poll_fn(|cx| {
                            std::task::Poll::Ready(answer.as_mut().poll(cx))
                        })
                        .await;
                        let shared = Arc::clone(&self.shared);
                        match first {
                            std::task::Poll::Ready(result) => {
                                reply(&shared, correlation, result).await
                            }
                            std::task::Poll::Pending => {
                                let in_flight = InFlight::new(&self.inbound_asks);
                                actix_rt::spawn(async move {
                                    let _in_flight = in_flight;
                                    let result = answer.await;
                                    reply(&shared, correlation, result).await;
                                });
                            }
                        }
                    }
                    Err(e) => reply(&self.shared, correlation, Err(e)).await,
                }
            }
            Envelope::Reply {
                correlation,
                result,
            } => {
                self.clock.received(true);
                if let Some((_, waiter)) = self.shared.pending.remove(&correlation) {
                    let _ = waiter.send(result.map(<[u8]>::to_vec));
                }
            }
            Envelope::Relay(frame) => {
                self.clock.received(true);
                // The same checks as a message: the class the mesh declares
                // for relay frames, decided by the policy from the link's
                // certificate (operator roles only with a login).
                if self.admit_relay().is_ok() {
                    relay::on_frame(&self.mesh, &self.router, &self.handle, frame).await;
                }
            }
            Envelope::Control(Control::Pong { .. }) => {
                if let Some(rtt) = self.clock.pong() {
                    let ns = u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX);
                    self.shared
                        .rtt_ns
                        .store(ns, std::sync::atomic::Ordering::Relaxed);
                }
            }
            Envelope::Control(Control::Observed { addr }) => {
                let me = self.mesh.id;
                self.mesh.detection.observed(&self.handle, me, &addr);
            }
            Envelope::Control(Control::DialBack { addr }) => {
                detect::dial_back(&self.mesh, &self.handle, &addr);
            }
            // The session keeps other controls and batches to itself.
            Envelope::Control(_) | Envelope::Batch(_) => {}
        }
        Ok(())
    }
}

/// A read half that can read what already waits without waiting for the
/// reactor to report it (a link's second look before calling its peer
/// silent; a plain non-blocking read).
pub(in crate::mesh) trait ReadNow {
    /// What waits, up to `buf.len()`; `WouldBlock` if nothing does.
    fn read_now(&self, buf: &mut [u8]) -> std::io::Result<usize>;
}

impl ReadNow for tokio::net::tcp::OwnedReadHalf {
    /// Through a duplicate of the socket's descriptor (the same open
    /// socket, non-blocking): tokio reads only once its reactor said so.
    /// Two more syscalls, once per silence verdict.
    #[cfg(unix)]
    fn read_now(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::Read;
        use std::os::fd::AsFd;
        let fd = self.as_ref().as_fd().try_clone_to_owned()?;
        std::net::TcpStream::from(fd).read(buf)
    }

    #[cfg(not(unix))]
    fn read_now(&self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::WouldBlock.into())
    }
}

impl ReadNow for crate::mesh::relay::CircuitRead {
    /// A circuit's bytes come through its relay link's reader, which looks
    /// for itself.
    fn read_now(&self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::WouldBlock.into())
    }
}

/// Appends what waits in `read` to `buf` (into its spare capacity).
fn read_now(read: &impl ReadNow, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let len = buf.len();
    buf.resize(buf.capacity().max(len + READ_SIZE), 0);
    let got = read.read_now(buf.get_mut(len..).unwrap_or_default());
    buf.truncate(len + got.as_ref().map_or(0, |n| *n));
    got
}

/// Refusals a link logs at warn level; the rest at debug.
const LOGGED_REFUSALS: u32 = 64;

fn audit_record(
    caller: &Caller,
    kind: AuditKind,
    tag: &str,
    target: &str,
    detail: &str,
) -> AuditRecord {
    AuditRecord {
        at_ms: crate::mesh::unix_now_ms(),
        kind,
        who: caller.name.to_string(),
        serial: caller.serial,
        roles: caller.roles.to_vec(),
        source: caller.addr.to_string(),
        tag: tag.to_owned(),
        target: target.to_owned(),
        detail: detail.to_owned(),
    }
}

fn target_name(to: &Target<'_>) -> String {
    match to {
        Target::Name(name) => (*name).to_owned(),
        Target::Id(id) => format!("#{id}"),
    }
}

impl Reader {
    /// Whether a message `tag` to `to` may be dispatched, before anything
    /// of it is decoded: the policy, from the class the message declares
    /// and the peer's certificate (its operator roles only with a login).
    /// An operator's audited command is audited; a refusal is counted,
    /// logged and audited.
    fn admit(&mut self, to: &Target<'_>, tag: &str) -> Result<(), RemoteError> {
        let logged_in = self.logged_in();
        match self.policy.authorize(to, tag, &self.caller, logged_in) {
            Ok(access) => {
                if logged_in && access.audited() {
                    let target = target_name(to);
                    let caller = &self.caller;
                    self.mesh.audit(|| {
                        audit_record(caller, AuditKind::Command, tag, &target, "allowed")
                    });
                }
                Ok(())
            }
            Err(mut refusal) => {
                // A capability presented before this node learnt the head
                // group's key is checked on a later message: say so.
                if self.pending_present.is_some() {
                    refusal.error = RemoteError::Forbidden {
                        reason: format!("{tag}: this node cannot check operator logins yet (no lease grant from a head): try again in a moment"),
                    };
                }
                Err(self.refused(refusal, to, tag))
            }
        }
    }

    /// Whether this peer may hand this node relay frames (open or feed
    /// circuits, send or forward membership datagrams): the policy, from
    /// the class [`relay::ACCESS`] and the peer's certificate. A refusal
    /// is counted as a refused relay frame and logged like any other.
    fn admit_relay(&mut self) -> Result<(), RemoteError> {
        let logged_in = self.logged_in();
        match self.policy.authorize_mesh(
            relay::TARGET,
            relay::TAG,
            relay::ACCESS,
            &self.caller,
            logged_in,
        ) {
            Ok(_) => Ok(()),
            Err(refusal) => {
                self.mesh.counters.relay_refused();
                Err(self.refused(refusal, &Target::Name(relay::TARGET), relay::TAG))
            }
        }
    }

    /// Whether an operator certificate's link holds a live login (its
    /// operator roles count); false for every other certificate.
    fn logged_in(&mut self) -> bool {
        if !self.caller.operator {
            return false;
        }
        if let Some(body) = &self.pending_present {
            let mesh = &self.mesh;
            let revoked = |s| mesh.handshake().trust.is_revoked(s);
            match mesh.gate.check(&self.caller, body, &revoked) {
                Ok(until) => {
                    self.handle.set_session(until);
                    self.pending_present = None;
                }
                Err(Unchecked::NotYet) => {}
                Err(Unchecked::Refused(_)) => self.pending_present = None,
            }
        }
        let until = self
            .shared
            .session_until_ms
            .load(std::sync::atomic::Ordering::Acquire);
        until > crate::mesh::unix_now_ms()
    }

    /// Counts a message the policy refused, and logs it when decided now
    /// (a link logs a refusal once per target and tag).
    fn refused(&self, refusal: Refusal, to: &Target<'_>, tag: &str) -> RemoteError {
        if let RemoteError::Forbidden { reason } = &refusal.error {
            self.mesh.counters.forbidden();
            if refusal.fresh {
                let target = target_name(to);
                // A peer cycling through targets or tags would be decided
                // afresh each time: past a few, its refusals log at debug
                // (they are still counted and audited).
                let logged = self.refusals_logged.get();
                self.refusals_logged.set(logged.saturating_add(1));
                if logged < LOGGED_REFUSALS {
                    tracing::warn!(
                        peer = %self.shared.peer.short(),
                        roles = ?self.caller.roles,
                        %target,
                        tag,
                        %reason,
                        "message refused by policy"
                    );
                } else {
                    tracing::debug!(peer = %self.shared.peer.short(), %target, tag, %reason, "message refused by policy");
                }
                self.mesh.directory.events().record(
                    "refused",
                    format!("{tag} to {target}"),
                    format!(
                        "from {} ({}): {reason}",
                        self.caller.name,
                        self.shared.peer.short()
                    ),
                );
                let caller = &self.caller;
                self.mesh
                    .audit(|| audit_record(caller, AuditKind::Forbidden, tag, &target, reason));
            }
        }
        refusal.error
    }

    /// An envelope over the message limit arrived (the peer's limit is
    /// larger than ours): refuse that message alone and keep the link.
    async fn on_oversized(&mut self, head: &[u8], total: usize) {
        let max = self.shared.max_message;
        let error = RemoteError::TooLarge {
            size: total as u64,
            max: max as u64,
        };
        let peer = self.shared.peer.short();
        match peek(head) {
            Ok(Peeked::Ask { correlation }) => {
                tracing::debug!(%peer, total, "oversized ask refused");
                reply(&self.shared, correlation, Err(error)).await;
            }
            Ok(Peeked::Reply { correlation }) => {
                tracing::debug!(%peer, total, "oversized reply refused");
                if let Some((_, waiter)) = self.shared.pending.remove(&correlation) {
                    let _ = waiter.send(Err(error));
                }
            }
            _ => {
                self.mesh.counters.tell_dropped();
                tracing::debug!(%peer, total, "oversized envelope dropped");
            }
        }
    }
}

/// Queues the reply to an ask (waiting for queue space). A reply larger
/// than the message limit is replaced by a `TooLarge` error for that ask
/// alone: sent anyway, it would make the peer close the whole link.
async fn reply(shared: &LinkShared, correlation: u64, result: Result<Vec<u8>, RemoteError>) {
    let mut buf = Vec::with_capacity(result.as_ref().map_or(64, |b| b.len() + 16));
    Envelope::Reply {
        correlation,
        result: result.as_deref().map_err(Clone::clone),
    }
    .encode(&mut buf);
    if buf.len() > shared.max_message {
        let error = RemoteError::TooLarge {
            size: buf.len() as u64,
            max: shared.max_message as u64,
        };
        buf.clear();
        Envelope::Reply {
            correlation,
            result: Err(error),
        }
        .encode(&mut buf);
    }
    let _ = shared.outbox.send(buf).await;
}
