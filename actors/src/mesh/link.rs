//! A `Link` owns one authenticated connection to one peer: a reader task
//! (frames in, decrypt, reassemble, dispatch to local actors or to waiting
//! asks), a writer task (coalesces every queued envelope into as few Noise
//! messages and syscalls as possible), and a heartbeat. It makes no routing
//! decisions; the Router owns the table of links.
//!
//! If the reader or writer fails, or the heartbeat or idle timer fires, the
//! Link logs the reason, fails every ask still waiting on it, tells the
//! Router, and stops. It has no children to restart: the next send dials a
//! new link.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use dashmap::DashMap;
use swarm_protocol::envelope::encode_request;
use swarm_protocol::record::MAX_NOISE_MESSAGE;
use swarm_protocol::{
    decode_frame, Control, Decoded, Envelope, NodeId, Packer, Reassembler, RecvCipher, RemoteError,
    SendCipher, Target,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;

use crate::directory::Dispatch;
use crate::error::{AskError, CloseReason};
use crate::mesh::router::{LinkClosed, Router};
use crate::node::Core;

/// A reply on its way to the asking caller.
type ReplySender = oneshot::Sender<Result<Vec<u8>, RemoteError>>;

/// What callers on any thread hold to use a link.
#[derive(Clone)]
pub(crate) struct LinkHandle {
    pub(crate) shared: Arc<LinkShared>,
}

/// The part of a link that other threads may touch.
pub(crate) struct LinkShared {
    /// Unique per node, to tell two links to the same peer apart.
    pub(crate) id: u64,
    /// The authenticated peer.
    pub(crate) peer: NodeId,
    /// The peer's certificate name.
    pub(crate) peer_name: String,
    /// The peer's roles from its certificate.
    pub(crate) peer_roles: Vec<String>,
    /// The node that dialed this link; decides duplicate links.
    pub(crate) initiator: NodeId,
    /// When the handshake finished.
    pub(crate) established_at: Instant,
    /// The socket's remote address.
    pub(crate) remote_addr: std::net::SocketAddr,
    /// Encoded envelopes for the writer, bounded in bytes so tells push back.
    outbox: Outbox,
    /// Asks waiting for their reply, by correlation.
    pending: DashMap<u64, ReplySender>,
    /// The next correlation id.
    next_correlation: AtomicU64,
    /// Set once the link is closing: nothing more is dispatched or awaited.
    pub(crate) closed: AtomicBool,
    /// Set before the link closes because membership declared the peer
    /// down: asks waiting on it fail with `NodeDown` instead of `LinkDown`.
    pub(crate) member_down: AtomicBool,
}

impl LinkHandle {
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Sends an ask whose body `write_body` encodes (`size_hint` bytes
    /// expected) and waits for its reply until `deadline`.
    pub(crate) async fn ask(
        &self,
        to: &str,
        tag: &str,
        size_hint: usize,
        write_body: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<Vec<u8>, AskError> {
        let s = &self.shared;
        let correlation = s.next_correlation.fetch_add(1, Ordering::Relaxed);
        let (reply_tx, reply_rx) = oneshot::channel();
        s.pending.insert(correlation, reply_tx);
        let mut buf = Vec::with_capacity(size_hint.max(64) + to.len() + tag.len() + 24);
        if let Err(reason) = encode_request(
            &mut buf,
            Some(correlation),
            Target::Name(to),
            tag,
            write_body,
        ) {
            s.pending.remove(&correlation);
            return Err(AskError::Encode { reason });
        }
        let down = || {
            if s.member_down.load(Ordering::Acquire) {
                AskError::NodeDown { node: s.peer }
            } else {
                AskError::LinkDown { node: s.peer }
            }
        };
        // Only a full queue needs a timer for the wait.
        let queued = match s.outbox.try_send(buf) {
            Ok(()) => Ok(Ok(())),
            Err(mpsc::error::TrySendError::Full(buf)) => {
                tokio::time::timeout_at(deadline, s.outbox.send(buf)).await
            }
            Err(mpsc::error::TrySendError::Closed(buf)) => Ok(Err(buf)),
        };
        match queued {
            Ok(Ok(())) if !self.is_closed() => {}
            Ok(_) => {
                s.pending.remove(&correlation);
                return Err(down());
            }
            Err(_) => {
                s.pending.remove(&correlation);
                return Err(AskError::Timeout { after: timeout });
            }
        }
        match tokio::time::timeout_at(deadline, reply_rx).await {
            Ok(Ok(Ok(bytes))) => Ok(bytes),
            Ok(Ok(Err(remote))) => Err(remote.into()),
            Ok(Err(_)) => Err(down()),
            Err(_) => {
                s.pending.remove(&correlation);
                Err(AskError::Timeout { after: timeout })
            }
        }
    }

    /// Queues an encoded envelope, waiting for space.
    pub(crate) async fn send(&self, envelope: Vec<u8>) -> Result<(), Vec<u8>> {
        if self.is_closed() {
            return Err(envelope);
        }
        self.shared.outbox.send(envelope).await
    }

    /// Queues an encoded envelope if there is space.
    pub(crate) fn try_send(
        &self,
        envelope: Vec<u8>,
    ) -> Result<(), mpsc::error::TrySendError<Vec<u8>>> {
        if self.is_closed() {
            return Err(mpsc::error::TrySendError::Closed(envelope));
        }
        self.shared.outbox.try_send(envelope)
    }
}

/// The writer's queue: unbounded in count but bounded in bytes by a
/// semaphore whose permits the writer returns once bytes reach the socket.
pub(crate) struct Outbox {
    /// Envelopes for the writer.
    tx: mpsc::UnboundedSender<Vec<u8>>,
    /// Permits = bytes that may still be queued.
    budget: Arc<Semaphore>,
    /// The budget's size; an envelope costs at most this much.
    limit: usize,
}

impl Outbox {
    fn new(limit: usize) -> (Self, mpsc::UnboundedReceiver<Vec<u8>>, Budget) {
        let (tx, rx) = mpsc::unbounded_channel();
        let limit = limit.clamp(1, u32::MAX as usize);
        let budget = Arc::new(Semaphore::new(limit));
        let returns = Budget {
            budget: Arc::clone(&budget),
            limit,
        };
        (Self { tx, budget, limit }, rx, returns)
    }

    fn cost(&self, envelope: &[u8]) -> u32 {
        cost(envelope.len(), self.limit)
    }

    /// Queues, waiting for budget.
    async fn send(&self, envelope: Vec<u8>) -> Result<(), Vec<u8>> {
        let cost = self.cost(&envelope);
        match self.budget.acquire_many(cost).await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(envelope),
        }
        self.tx.send(envelope).map_err(|e| {
            self.budget.add_permits(cost as usize);
            e.0
        })
    }

    /// Queues if the budget allows it now.
    fn try_send(&self, envelope: Vec<u8>) -> Result<(), mpsc::error::TrySendError<Vec<u8>>> {
        let cost = self.cost(&envelope);
        match self.budget.try_acquire_many(cost) {
            Ok(permit) => permit.forget(),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                return Err(mpsc::error::TrySendError::Full(envelope))
            }
            Err(tokio::sync::TryAcquireError::Closed) => {
                return Err(mpsc::error::TrySendError::Closed(envelope))
            }
        }
        self.tx.send(envelope).map_err(|e| {
            self.budget.add_permits(cost as usize);
            mpsc::error::TrySendError::Closed(e.0)
        })
    }

    /// Wakes every waiting sender with an error.
    fn close(&self) {
        self.budget.close();
    }
}

/// The writer's side of the budget: returns permits for written bytes.
struct Budget {
    budget: Arc<Semaphore>,
    limit: usize,
}

impl Budget {
    fn cost(&self, envelope: &[u8]) -> usize {
        cost(envelope.len(), self.limit) as usize
    }

    fn release(&self, permits: usize) {
        if permits > 0 {
            self.budget.add_permits(permits);
        }
    }
}

fn cost(len: usize, limit: usize) -> u32 {
    // Every envelope costs at least one permit; one larger than the whole
    // budget takes all of it (and so travels alone).
    len.clamp(1, limit) as u32
}

/// Everything needed to start a link once its handshake is done.
pub(crate) struct LinkParts {
    pub(crate) stream: TcpStream,
    pub(crate) sender: SendCipher,
    pub(crate) receiver: RecvCipher,
    /// Bytes read past the handshake.
    pub(crate) leftover: Vec<u8>,
}

/// Builds the shared half and the writer's queue.
pub(crate) fn new_handle(
    id: u64,
    peer: NodeId,
    peer_name: String,
    peer_roles: Vec<String>,
    initiator: NodeId,
    remote_addr: std::net::SocketAddr,
    queue_bytes: usize,
) -> (LinkHandle, Queue) {
    let (outbox, rx, budget) = Outbox::new(queue_bytes);
    let shared = Arc::new(LinkShared {
        id,
        peer,
        peer_name,
        peer_roles,
        initiator,
        established_at: Instant::now(),
        remote_addr,
        outbox,
        pending: DashMap::new(),
        member_down: AtomicBool::new(false),
        next_correlation: AtomicU64::new(1),
        closed: AtomicBool::new(false),
    });
    (LinkHandle { shared }, Queue { rx, budget })
}

/// The receiving end of a link's outbox, for its writer.
pub(crate) struct Queue {
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    budget: Budget,
}

/// The actor owning one connection.
pub(crate) struct Link {
    /// The state other threads see.
    handle: LinkHandle,
    /// Node-wide state: directory, config, counters.
    core: Arc<Core>,
    /// Told when this link stops.
    router: Addr<Router>,
    /// Consumed by `started`.
    parts: Option<(LinkParts, Queue)>,
    /// The reader and writer tasks, aborted when the link stops.
    tasks: Vec<JoinHandle<()>>,
    /// Timestamps the tasks update and the heartbeat reads.
    activity: Rc<Activity>,
    /// The first reason given for closing.
    reason: Option<CloseReason>,
}

/// When traffic last moved, for heartbeat and idle checks.
struct Activity {
    last_rx: Cell<Instant>,
    last_tx: Cell<Instant>,
    last_user: Cell<Instant>,
    /// True while the reader waits for a full local mailbox: silence from
    /// the peer is then our doing, not a sign that the peer is gone.
    reader_waiting: Cell<bool>,
}

/// Closes a link with a reason.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Close(pub(crate) CloseReason);

impl Link {
    pub(crate) fn new(
        handle: LinkHandle,
        rx: Queue,
        parts: LinkParts,
        core: Arc<Core>,
        router: Addr<Router>,
    ) -> Self {
        let now = Instant::now();
        Self {
            handle,
            core,
            router,
            parts: Some((parts, rx)),
            tasks: Vec::new(),
            activity: Rc::new(Activity {
                last_rx: Cell::new(now),
                last_tx: Cell::new(now),
                last_user: Cell::new(now),
                reader_waiting: Cell::new(false),
            }),
            reason: None,
        }
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let config = &self.core.config;
        let now = Instant::now();
        let silent = now.duration_since(self.activity.last_rx.get());
        if silent > config.heartbeat_timeout && !self.activity.reader_waiting.get() {
            self.close(CloseReason::HeartbeatTimeout(silent), ctx);
            return;
        }
        let idle = now.duration_since(self.activity.last_user.get());
        if idle > config.idle_timeout {
            self.close(CloseReason::Idle(idle), ctx);
            return;
        }
        if now.duration_since(self.activity.last_tx.get()) >= config.heartbeat_interval {
            let buf = encoded(Control::Ping { nonce: 0 });
            // A full queue means traffic is flowing; no ping is needed.
            let _ = self.handle.try_send(buf);
        }
    }

    fn close(&mut self, reason: CloseReason, ctx: &mut Context<Self>) {
        if self.reason.is_none() {
            self.reason = Some(reason);
        }
        ctx.stop();
    }
}

impl Actor for Link {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some((parts, rx)) = self.parts.take() else {
            ctx.stop();
            return;
        };
        let (read, write) = parts.stream.into_split();
        let me = ctx.address();
        let reader = Reader {
            shared: Arc::clone(&self.handle.shared),
            core: Arc::clone(&self.core),
            activity: Rc::clone(&self.activity),
            cipher: parts.receiver,
            reassembler: Reassembler::new(self.core.config.max_message),
            cache: None,
            inbound_asks: Rc::new(Cell::new(0)),
        };
        let on_exit = me.clone();
        self.tasks.push(actix_rt::spawn(async move {
            let reason = reader.run(read, parts.leftover).await;
            on_exit.do_send(Close(reason));
        }));
        let activity = Rc::clone(&self.activity);
        self.tasks.push(actix_rt::spawn(async move {
            let reason = write_loop(write, parts.sender, rx, activity).await;
            me.do_send(Close(reason));
        }));
        let tick = (self.core.config.heartbeat_interval / 2).max(Duration::from_millis(10));
        ctx.run_interval(tick, Self::heartbeat);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        let s = &self.handle.shared;
        // Order matters: mark closed first, so an ask registered after the
        // clear sees the flag and fails instead of waiting for its timeout.
        s.closed.store(true, Ordering::Release);
        s.outbox.close();
        s.pending.clear();
        for task in self.tasks.drain(..) {
            task.abort();
        }
        let reason = self
            .reason
            .take()
            .unwrap_or(CloseReason::Local("stopped".into()));
        match &reason {
            CloseReason::PeerClosed
            | CloseReason::Idle(_)
            | CloseReason::Replaced
            | CloseReason::Local(_)
            | CloseReason::MemberDown
            | CloseReason::Goodbye(_) => {
                tracing::info!(peer = %s.peer.short(), name = %s.peer_name, %reason, "link closed")
            }
            _ => {
                self.core.stats.links_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %s.peer.short(), name = %s.peer_name, %reason, "link closed")
            }
        }
        self.router.do_send(LinkClosed {
            peer: s.peer,
            id: s.id,
        });
    }
}

impl Handler<Close> for Link {
    type Result = ();

    fn handle(&mut self, msg: Close, ctx: &mut Context<Self>) {
        self.close(msg.0, ctx);
    }
}

/// The read half: frames in, envelopes dispatched.
struct Reader {
    shared: Arc<LinkShared>,
    core: Arc<Core>,
    activity: Rc<Activity>,
    cipher: RecvCipher,
    reassembler: Reassembler,
    /// The last target looked up: (directory generation, name, dispatcher).
    cache: Option<(u64, String, Arc<dyn Dispatch>)>,
    /// Asks from this peer still waiting for a local actor.
    inbound_asks: Rc<Cell<usize>>,
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
    async fn run(mut self, mut read: OwnedReadHalf, mut buf: Vec<u8>) -> CloseReason {
        let mut plain = Vec::with_capacity(MAX_NOISE_MESSAGE);
        let mut start = 0;
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
                        buf.reserve(needed.max(64 * 1024).saturating_sub(buf.len()));
                        break;
                    }
                    Err(e) => return e.into(),
                }
            }
            if dispatched {
                // Let the actors, reply tasks and writer run before the next
                // read (which usually returns EAGAIN): that syscall is then
                // off the round trip's critical path.
                tokio::task::yield_now().await;
            }
            match read.read_buf(&mut buf).await {
                Ok(0) => return CloseReason::PeerClosed,
                Ok(_) => self.activity.last_rx.set(Instant::now()),
                Err(e) => return CloseReason::Io(e.to_string()),
            }
        }
    }

    async fn on_frame(&mut self, payload: &[u8], plain: &mut Vec<u8>) -> Result<(), CloseReason> {
        let Some(assembled) = self
            .reassembler
            .handle_frame(&mut self.cipher, payload, plain)?
        else {
            return Ok(());
        };
        match Envelope::decode(assembled.bytes())? {
            Envelope::Batch(items) => {
                for item in items {
                    self.on_envelope(item).await?;
                }
                Ok(())
            }
            single => self.on_envelope(single).await,
        }
    }

    async fn on_envelope(&mut self, envelope: Envelope<'_>) -> Result<(), CloseReason> {
        if self.shared.closed.load(Ordering::Acquire) {
            // Replaced or closing: deliver nothing more, so order holds.
            return Err(CloseReason::Replaced);
        }
        match envelope {
            Envelope::Tell { to, tag, body } => {
                self.activity.last_user.set(Instant::now());
                match self.lookup(&to).and_then(|d| d.tell(tag, body)) {
                    Ok(None) => {}
                    Ok(Some(wait)) => {
                        self.activity.reader_waiting.set(true);
                        wait.await;
                        self.activity.reader_waiting.set(false);
                        self.activity.last_rx.set(Instant::now());
                    }
                    Err(e) => {
                        self.core
                            .stats
                            .tells_dropped
                            .fetch_add(1, Ordering::Relaxed);
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
                self.activity.last_user.set(Instant::now());
                let max = self.core.config.max_inbound_asks;
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
                match self.lookup(&to).and_then(|d| d.ask(tag, body)) {
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
                self.activity.last_user.set(Instant::now());
                if let Some((_, waiter)) = self.shared.pending.remove(&correlation) {
                    let _ = waiter.send(result.map(<[u8]>::to_vec));
                }
            }
            Envelope::Control(Control::Ping { nonce }) => {
                let _ = self
                    .shared
                    .outbox
                    .try_send(encoded(Control::Pong { nonce }));
            }
            Envelope::Control(Control::Goodbye { reason }) => {
                return Err(CloseReason::Goodbye(reason));
            }
            Envelope::Control(_) => {}
            Envelope::Batch(_) => {
                // The decoder rejects nested batches; nothing to do here.
            }
        }
        Ok(())
    }

    /// Finds the target's dispatcher, from the cache while the directory
    /// has not changed (a stream of messages usually has one target).
    fn lookup(&mut self, to: &Target<'_>) -> Result<&dyn Dispatch, RemoteError> {
        let name = match to {
            Target::Name(name) => *name,
            Target::Id(id) => {
                return Err(RemoteError::NoSuchActor {
                    name: format!("#{id}"),
                })
            }
        };
        let generation = self.core.generation.load(Ordering::Acquire);
        let hit = matches!(&self.cache, Some((g, n, _)) if *g == generation && n == name);
        if !hit {
            let dispatch = self
                .core
                .directory
                .get(name)
                .map(|d| Arc::clone(d.value()))
                .ok_or_else(|| RemoteError::NoSuchActor {
                    name: name.to_owned(),
                })?;
            self.cache = Some((generation, name.to_owned(), dispatch));
        }
        match &self.cache {
            Some((_, _, dispatch)) => Ok(dispatch.as_ref()),
            None => Err(RemoteError::NoSuchActor {
                name: name.to_owned(),
            }),
        }
    }
}

/// Queues the reply to an ask (waiting for queue space).
async fn reply(shared: &LinkShared, correlation: u64, result: Result<Vec<u8>, RemoteError>) {
    let mut buf = Vec::with_capacity(result.as_ref().map_or(64, |b| b.len() + 16));
    Envelope::Reply {
        correlation,
        result: result.as_deref().map_err(Clone::clone),
    }
    .encode(&mut buf);
    let _ = shared.outbox.send(buf).await;
}

/// Bytes sealed before they are written, so a burst of large envelopes is
/// written (and its budget returned) piece by piece.
const WRITE_CHUNK: usize = 256 * 1024;

/// The write half: drains the queue, packs, seals, writes once per batch
/// (or per [`WRITE_CHUNK`] for large ones).
async fn write_loop(
    mut write: OwnedWriteHalf,
    mut cipher: SendCipher,
    queue: Queue,
    activity: Rc<Activity>,
) -> CloseReason {
    let Queue { mut rx, budget } = queue;
    let mut packer = Packer::new();
    let heartbeats = [
        encoded(Control::Ping { nonce: 0 }),
        encoded(Control::Pong { nonce: 0 }),
    ];
    let mut queued = Vec::with_capacity(1024);
    let mut out = Vec::with_capacity(WRITE_CHUNK + MAX_NOISE_MESSAGE);
    loop {
        if rx.recv_many(&mut queued, 1024).await == 0 {
            return CloseReason::Local("link handle dropped".into());
        }
        if queued.iter().any(|e| !heartbeats.contains(e)) {
            activity.last_user.set(Instant::now());
        }
        let mut unreleased = 0;
        for envelope in queued.drain(..) {
            unreleased += budget.cost(&envelope);
            if let Err(e) = packer.push(&envelope, &mut |r| cipher.seal_frame(r, &mut out)) {
                return CloseReason::Local(format!("cannot seal: {e}"));
            }
            if out.len() >= WRITE_CHUNK {
                if let Err(e) = write.write_all(&out).await {
                    return CloseReason::Io(e.to_string());
                }
                out.clear();
                budget.release(std::mem::take(&mut unreleased));
            }
        }
        if let Err(e) = packer.flush(&mut |r| cipher.seal_frame(r, &mut out)) {
            return CloseReason::Local(format!("cannot seal: {e}"));
        }
        if !out.is_empty() {
            if let Err(e) = write.write_all(&out).await {
                return CloseReason::Io(e.to_string());
            }
            out.clear();
        }
        budget.release(unreleased);
        activity.last_tx.set(Instant::now());
        if out.capacity() > 4 * WRITE_CHUNK {
            out.shrink_to(WRITE_CHUNK + MAX_NOISE_MESSAGE);
        }
    }
}

fn encoded(control: Control) -> Vec<u8> {
    let mut buf = Vec::with_capacity(16);
    Envelope::Control(control).encode(&mut buf);
    buf
}
