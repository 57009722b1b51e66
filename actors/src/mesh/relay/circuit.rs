//! Circuit ends: the byte stream a relayed link runs over. The link reads
//! and writes a [`Circuit`] as it would a socket: writes become `Data`
//! frames queued on the link to the relay, and `Data` frames from the
//! relay are read from a bounded queue. No task and no copy sit between.
//!
//! ```text
//! Link writer → CircuitWrite → Data frames → relay link's outbox
//! Link reader ← CircuitRead  ← queue       ← relay link's reader
//! ```
//!
//! Both directions push back: a write waits for room on the relay link,
//! and the relay link's reader waits for room in the queue.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};

use actix::Addr;
use swarm_protocol::relay::{CircuitId, RelayFrame, RelayOp, RelayRefusal};
use swarm_protocol::NodeId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use super::close_frame;
use crate::error::DialError;
use crate::mesh::connect::handshake;
use crate::mesh::link::LinkHandle;
use crate::mesh::router::{InboundCircuit, Router};
use crate::mesh::Shared;

/// The largest Data frame body a write sends: a whole frame then fits one
/// Noise message of the relay link, which the relay and the far end read
/// in place instead of reassembling it from chunks.
const CHUNK: usize = swarm_protocol::record::MAX_RECORD - 128;
/// Data frames from the relay queued for one circuit's link reader.
const DOWN_QUEUE: usize = 64;
/// Bytes of Data frames queued for all circuits ending here together: a
/// relay that floods circuits nobody reads waits (its link stops being
/// read) instead of growing memory.
const DOWN_BUDGET: usize = 32 << 20;
/// The largest Data frame body accepted (what a well-behaved end sends).
pub(super) const MAX_DATA: usize = CHUNK;
/// Circuits ending at one node at once; more Opens are refused.
const MAX_ENDS: usize = 1024;

/// A Data frame queued for a circuit's reader, holding its share of the
/// budget until it is read.
pub(super) type Queued = (Vec<u8>, tokio::sync::OwnedSemaphorePermit);

/// A circuit, named from this end: the other endpoint and the circuit id.
pub(in crate::mesh) type EndKey = (NodeId, CircuitId);

/// One circuit ending here.
struct End {
    /// The relay it runs through.
    relay: NodeId,
    /// The link to the relay it runs over: if that link closes, bytes in
    /// flight on it are lost, so the circuit ends with it.
    link: u64,
    /// Feeds the link's reader; dropped, the reader sees the end of the stream.
    down: mpsc::Sender<Queued>,
}

/// The circuits ending at this node.
pub(in crate::mesh) struct CircuitEnds {
    ends: Mutex<HashMap<EndKey, End>>,
    next: AtomicU64,
    /// Why circuits this node opened were closed by the far side, until
    /// the opener reads it (bounded).
    refusals: Mutex<HashMap<EndKey, RelayRefusal>>,
    /// Circuits closed lately: frames still in flight for them are
    /// dropped quietly instead of counted as forged.
    closed: Mutex<std::collections::VecDeque<EndKey>>,
    /// Bytes that Data frames queued for readers may take, all circuits together.
    budget: Arc<tokio::sync::Semaphore>,
}

impl Default for CircuitEnds {
    fn default() -> Self {
        Self {
            ends: Mutex::default(),
            next: AtomicU64::default(),
            refusals: Mutex::default(),
            closed: Mutex::default(),
            budget: Arc::new(tokio::sync::Semaphore::new(DOWN_BUDGET)),
        }
    }
}

/// Closed circuits remembered.
const RECENTLY_CLOSED: usize = 256;

/// Refusals remembered for openers before the oldest are forgotten.
const MAX_REFUSALS: usize = 1024;

impl CircuitEnds {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EndKey, End>> {
        self.ends.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Circuits ending here now.
    pub(in crate::mesh) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Takes the budget for a Data frame of `len` bytes, waiting for room.
    pub(super) async fn reserve(&self, len: usize) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let permits = u32::try_from(len.max(1)).ok()?;
        Arc::clone(&self.budget)
            .acquire_many_owned(permits)
            .await
            .ok()
    }

    /// The down queue of a circuit, if it runs through `relay`.
    pub(super) fn downlink(&self, key: EndKey, relay: NodeId) -> Option<mpsc::Sender<Queued>> {
        self.lock()
            .get(&key)
            .filter(|end| end.relay == relay)
            .map(|end| end.down.clone())
    }

    /// Forgets a circuit (through `relay`, if given); true if it was known.
    pub(super) fn remove(&self, key: EndKey, relay: Option<NodeId>) -> bool {
        let mut ends = self.lock();
        if relay.is_some_and(|r| ends.get(&key).is_some_and(|e| e.relay != r)) {
            return false;
        }
        let end = ends.remove(&key);
        drop(ends);
        if end.is_some() {
            let mut closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
            if closed.len() >= RECENTLY_CLOSED {
                closed.pop_front();
            }
            closed.push_back(key);
        }
        end.is_some()
    }

    /// Whether the circuit closed lately.
    pub(super) fn closed_lately(&self, key: EndKey) -> bool {
        self.closed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&key)
    }

    /// Remembers why the far side closed a circuit, for its opener.
    pub(super) fn refused(&self, key: EndKey, why: RelayRefusal) {
        let mut refusals = self.refusals.lock().unwrap_or_else(PoisonError::into_inner);
        if refusals.len() >= MAX_REFUSALS {
            refusals.clear();
        }
        refusals.insert(key, why);
    }

    /// Why the far side closed a circuit this node opened, if it said.
    pub(in crate::mesh) fn take_refusal(&self, key: EndKey) -> Option<RelayRefusal> {
        self.refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key)
    }

    /// The link `link` to a relay closed: every circuit over it ends.
    pub(super) fn link_lost(&self, link: u64) {
        let mut ends = self.lock();
        let gone: Vec<EndKey> = ends
            .iter()
            .filter(|(_, e)| e.link == link)
            .map(|(k, _)| *k)
            .collect();
        let dropped: Vec<End> = gone.iter().filter_map(|k| ends.remove(k)).collect();
        drop(ends);
        drop(dropped);
    }

    /// Records a new end; returns the stream the link runs over.
    fn start(
        self: &Arc<Self>,
        me: NodeId,
        key: EndKey,
        relay: &LinkHandle,
    ) -> Result<Circuit, RelayRefusal> {
        let mut ends = self.lock();
        if ends.len() >= MAX_ENDS {
            return Err(RelayRefusal::TooMany);
        }
        if ends.contains_key(&key) {
            return Err(RelayRefusal::Forged);
        }
        let (down, queue) = mpsc::channel(DOWN_QUEUE);
        ends.insert(
            key,
            End {
                relay: relay.peer(),
                link: relay.id(),
                down,
            },
        );
        let (peer, circuit) = key;
        Ok(Circuit {
            read: CircuitRead {
                queue,
                chunk: Vec::new(),
                at: 0,
                permit: None,
            },
            write: CircuitWrite {
                relay: relay.clone(),
                header: Header { me, peer, circuit },
                ends: Arc::clone(self),
                pending: None,
                closed: false,
            },
        })
    }
}

/// Who a circuit end's frames are from and for.
#[derive(Clone, Copy)]
struct Header {
    me: NodeId,
    peer: NodeId,
    circuit: CircuitId,
}

/// One end of a circuit, as a byte stream (for the handshake), split into
/// its halves for the link's reader and writer.
pub(in crate::mesh) struct Circuit {
    read: CircuitRead,
    write: CircuitWrite,
}

impl Circuit {
    pub(in crate::mesh) fn into_split(self) -> (CircuitRead, CircuitWrite) {
        (self.read, self.write)
    }
}

/// The reading half: Data frames from the relay, in order.
pub(in crate::mesh) struct CircuitRead {
    queue: mpsc::Receiver<Queued>,
    /// The frame being read, and how far.
    chunk: Vec<u8>,
    at: usize,
    /// Its share of the budget.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// A write waiting for room on the relay link.
type Pending = Pin<Box<dyn Future<Output = Result<(), Vec<u8>>> + Send>>;

/// The writing half: each write becomes Data frames on the relay link.
/// Dropped, it closes the circuit and tells the other end.
pub(in crate::mesh) struct CircuitWrite {
    relay: LinkHandle,
    header: Header,
    ends: Arc<CircuitEnds>,
    /// A frame that found the relay link's queue full, waiting for room;
    /// the next write waits for it first, so frames stay in order.
    pending: Option<Pending>,
    closed: bool,
}

fn broken() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the relay link closed")
}

impl AsyncRead for CircuitRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at >= this.chunk.len() {
            match ready!(this.queue.poll_recv(cx)) {
                Some((chunk, permit)) => {
                    // The previous frame's budget returns as this one is taken.
                    this.chunk = chunk;
                    this.permit = Some(permit);
                    this.at = 0;
                }
                // The circuit was closed: the end of the stream.
                None => return Poll::Ready(Ok(())),
            }
        }
        let rest = this.chunk.get(this.at..).unwrap_or_default();
        let n = rest.len().min(buf.remaining());
        buf.put_slice(rest.get(..n).unwrap_or_default());
        this.at += n;
        Poll::Ready(Ok(()))
    }
}

impl CircuitWrite {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(pending) = &mut self.pending {
            let sent = ready!(pending.as_mut().poll(cx));
            self.pending = None;
            if sent.is_err() {
                return Poll::Ready(Err(broken()));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for CircuitWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.closed {
            return Poll::Ready(Err(broken()));
        }
        ready!(this.poll_pending(cx))?;
        let body = buf.get(..buf.len().min(CHUNK)).unwrap_or_default();
        let h = this.header;
        let mut frame = Vec::with_capacity(RelayFrame::encoded_len(body.len()));
        RelayFrame {
            op: RelayOp::Data,
            dest: h.peer,
            origin: h.me,
            circuit: h.circuit,
            addr: None,
            body,
        }
        .encode(&mut frame);
        match this.relay.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(frame)) => {
                // Accepted now, sent when there is room; the next write
                // (or flush) waits for it.
                let relay = this.relay.clone();
                this.pending = Some(Box::pin(async move { relay.send(frame).await }));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Poll::Ready(Err(broken())),
        }
        Poll::Ready(Ok(body.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_pending(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        this.close();
        Poll::Ready(Ok(()))
    }
}

impl CircuitWrite {
    /// Forgets the circuit and tells the other end, once.
    fn close(&mut self) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        let h = self.header;
        if self.ends.remove((h.peer, h.circuit), None) {
            let _ = self
                .relay
                .try_send(close_frame(h.peer, h.me, h.circuit, RelayRefusal::Closed));
        }
    }
}

impl Drop for CircuitWrite {
    fn drop(&mut self) {
        self.close();
    }
}

impl AsyncRead for Circuit {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().read).poll_read(cx, buf)
    }
}

impl AsyncWrite for Circuit {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().write).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().write).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().write).poll_shutdown(cx)
    }
}

/// Opens a circuit to `dest` through the relay at the other end of
/// `relay`; returns the stream to run the handshake and link over, and
/// the circuit's name (to ask why it closed, if it does).
///
/// # Errors
///
/// [`DialError::Relay`] if the relay link is gone or too many circuits end here.
pub(in crate::mesh) async fn open(
    mesh: &Arc<Shared>,
    relay: &LinkHandle,
    dest: NodeId,
) -> Result<(Circuit, EndKey), DialError> {
    let circuit = CircuitId {
        number: mesh.circuits.next.fetch_add(1, Ordering::Relaxed),
        opener: mesh.id,
    };
    let mut open = Vec::with_capacity(RelayFrame::encoded_len(0));
    RelayFrame {
        op: RelayOp::Open,
        dest,
        origin: mesh.id,
        circuit,
        addr: None,
        body: &[],
    }
    .encode(&mut open);
    // Queued before the pump can send any Data frame of the circuit.
    relay
        .send(open)
        .await
        .map_err(|_| DialError::Relay(RelayRefusal::LinkLost))?;
    let key = (dest, circuit);
    let stream = mesh
        .circuits
        .start(mesh.id, key, relay)
        .map_err(DialError::Relay)?;
    Ok((stream, key))
}

/// A relay opened a circuit to this node: starts its end and the
/// responder's handshake, and hands the authenticated link to the Router.
pub(super) fn accept(
    mesh: &Arc<Shared>,
    router: &Addr<Router>,
    relay: &LinkHandle,
    frame: &RelayFrame<'_>,
) {
    let origin = frame.origin;
    let key = (origin, frame.circuit);
    let mut stream = match mesh.circuits.start(mesh.id, key, relay) {
        Ok(stream) => stream,
        Err(why) => {
            mesh.counters.relay_refused();
            let _ = relay.try_send(close_frame(origin, mesh.id, frame.circuit, why));
            return;
        }
    };
    let config = mesh.handshake();
    let timeout = mesh.config.handshake_timeout;
    let mesh = Arc::clone(mesh);
    let router = router.clone();
    let via = relay.clone();
    actix_rt::spawn(async move {
        match handshake(&mut stream, config, false, timeout).await {
            Ok((est, leftover)) if est.peer.node_id == origin => router.do_send(InboundCircuit {
                stream,
                est,
                leftover,
                relay: via,
            }),
            Ok((est, _)) => {
                // The relay named one origin, the certificate proves another.
                mesh.counters.relay_refused();
                tracing::warn!(claimed = %origin.short(), proven = %est.peer.node_id.short(), "relayed circuit refused: forged origin");
                mesh.circuits.remove(key, None);
            }
            Err(e) => {
                mesh.counters.handshake_refused();
                tracing::debug!(peer = %origin.short(), error = %e, "relayed handshake failed");
                mesh.circuits.remove(key, None);
            }
        }
    });
}
