//! Circuit ends: the byte stream a relayed link runs over. Each end is an
//! in-memory duplex pipe: the link reads and writes one side as it would a
//! socket; two pump tasks move the other side's bytes to and from the
//! relay link as `Data` frames.
//!
//! ```text
//! Link ⇄ duplex ⇄ up pump   → Data frames → relay link
//!              ⇠ down pump ← Data frames ← relay link's reader
//! ```
//!
//! Both pumps push back: the up pump waits for room on the relay link,
//! the down queue is bounded (the relay link's reader waits for room).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use actix::Addr;
use swarm_protocol::relay::{CircuitId, RelayFrame, RelayOp, RelayRefusal};
use swarm_protocol::NodeId;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::close_frame;
use crate::error::DialError;
use crate::mesh::connect::handshake;
use crate::mesh::link::LinkHandle;
use crate::mesh::router::{InboundCircuit, Router};
use crate::mesh::Shared;

/// Bytes buffered in each direction of a circuit's pipe.
const PIPE_BYTES: usize = 256 * 1024;
/// The largest Data frame body an up pump sends.
const CHUNK: usize = 64 * 1024;
/// Data frames queued for a circuit's down pump.
const DOWN_QUEUE: usize = 64;
/// Circuits ending at one node at once; more Opens are refused.
const MAX_ENDS: usize = 4096;

/// A circuit, named from this end: the other endpoint and the circuit id.
pub(in crate::mesh) type EndKey = (NodeId, CircuitId);

/// One circuit ending here.
struct End {
    /// The relay it runs through.
    relay: NodeId,
    /// The link to the relay it runs over: if that link closes, bytes in
    /// flight on it are lost, so the circuit ends with it.
    link: u64,
    /// Feeds the down pump.
    down: mpsc::Sender<Vec<u8>>,
    /// The up pump, stopped when the end is dropped.
    up: AbortHandle,
}

impl Drop for End {
    fn drop(&mut self) {
        self.up.abort();
    }
}

/// The circuits ending at this node.
#[derive(Default)]
pub(in crate::mesh) struct CircuitEnds {
    ends: Mutex<HashMap<EndKey, End>>,
    next: AtomicU64,
    /// Why circuits this node opened were closed by the far side, until
    /// the opener reads it (bounded).
    refusals: Mutex<HashMap<EndKey, RelayRefusal>>,
    /// Circuits closed lately: frames still in flight for them are
    /// dropped quietly instead of counted as forged.
    closed: Mutex<std::collections::VecDeque<EndKey>>,
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

    /// The down queue of a circuit, if it runs through `relay`.
    pub(super) fn downlink(&self, key: EndKey, relay: NodeId) -> Option<mpsc::Sender<Vec<u8>>> {
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
        // Dropped outside the lock: the drop aborts a task.
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

    /// Starts the pumps of a new end and records it; returns the link's
    /// side of the pipe.
    fn start(
        self: &Arc<Self>,
        me: NodeId,
        key: EndKey,
        relay: &LinkHandle,
    ) -> Result<DuplexStream, RelayRefusal> {
        let mut ends = self.lock();
        if ends.len() >= MAX_ENDS {
            return Err(RelayRefusal::TooMany);
        }
        if ends.contains_key(&key) {
            return Err(RelayRefusal::Forged);
        }
        let (inner, outer) = tokio::io::duplex(PIPE_BYTES);
        let (read, write) = tokio::io::split(outer);
        let (down_tx, down_rx) = mpsc::channel(DOWN_QUEUE);
        let (peer, circuit) = key;
        let up = actix_rt::spawn(up_pump(
            read,
            relay.clone(),
            Header { me, peer, circuit },
            Arc::clone(self),
        ));
        actix_rt::spawn(down_pump(write, down_rx));
        ends.insert(
            key,
            End {
                relay: relay.peer(),
                link: relay.id(),
                down: down_tx,
                up: up.abort_handle(),
            },
        );
        Ok(inner)
    }
}

/// Who a circuit end's frames are from and for.
#[derive(Clone, Copy)]
struct Header {
    me: NodeId,
    peer: NodeId,
    circuit: CircuitId,
}

/// Moves what the link writes into Data frames on the relay link, until
/// the link closes its side or the relay link fails; then tells the other
/// end and forgets the circuit.
async fn up_pump(
    mut read: tokio::io::ReadHalf<DuplexStream>,
    relay: LinkHandle,
    h: Header,
    ends: Arc<CircuitEnds>,
) {
    let head = RelayFrame::encoded_len(0);
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = match read.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let body = chunk.get(..n).unwrap_or_default();
        let mut frame = Vec::with_capacity(head + n);
        RelayFrame {
            op: RelayOp::Data,
            dest: h.peer,
            origin: h.me,
            circuit: h.circuit,
            addr: None,
            body,
        }
        .encode(&mut frame);
        if relay.send(frame).await.is_err() {
            break;
        }
    }
    let _ = relay.try_send(close_frame(h.peer, h.me, h.circuit, RelayRefusal::Closed));
    ends.remove((h.peer, h.circuit), None);
}

/// Writes Data frames from the relay into the pipe until the circuit is
/// forgotten (its queue closes) or the link's side is gone.
async fn down_pump(
    mut write: tokio::io::WriteHalf<DuplexStream>,
    mut queue: mpsc::Receiver<Vec<u8>>,
) {
    while let Some(bytes) = queue.recv().await {
        if write.write_all(&bytes).await.is_err() {
            break;
        }
    }
    let _ = write.shutdown().await;
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
) -> Result<(DuplexStream, EndKey), DialError> {
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
    let config = Arc::clone(&mesh.handshake);
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
