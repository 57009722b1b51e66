//! Relays: how nodes that cannot accept connections are reached.
//!
//! Every link's reader hands [`RelayFrame`]s here once the policy admitted
//! them (class [`ACCESS`]: node certificates only). A frame for this node
//! ends here: it opens, feeds or closes a circuit end ([`circuit`]), or it
//! is a membership datagram for the cluster. A frame for another node is
//! forwarded when this node is a relay ([`forward`]).
//!
//! ```text
//! A ── link A–R ── R (relay) ── link R–B ── B
//!   └──────── circuit: A and B's own Noise session ─────┘
//! ```
//!
//! A circuit end is a byte stream ([`Circuit`]: writes become Data frames
//! on the relay link, Data frames from it are read in order); the
//! endpoints run the same handshake and link over it as over TCP, so a
//! relay sees ciphertext only, and a relayed link behaves like any other
//! (order, asks, limits).

mod circuit;
mod forward;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use actix::Addr;
use swarm_protocol::relay::{CircuitId, RelayFrame, RelayOp, RelayRefusal};
use swarm_protocol::NodeId;
use tokio::sync::mpsc;

use super::link::LinkHandle;
use super::router::Router;
use super::Shared;
pub(super) use circuit::{open as open_circuit, Circuit, CircuitEnds, CircuitRead};
pub(super) use forward::Forwarded;

/// The name relay frames are decided under by the policy (no actor has it).
pub(crate) const TARGET: &str = "swarm.relay";
/// The tag relay frames are decided under (a policy rule may name it).
pub(crate) const TAG: &str = "swarm.Relay";
/// Who may hand a node relay frames: node certificates only (`head`,
/// `worker`), whatever a rule allows. An operator's certificate, with or
/// without a login, opens no circuit and carries no datagram.
pub(crate) const ACCESS: crate::directory::Access = crate::directory::Access::Nodes;

/// A membership datagram that arrived over the mesh.
#[derive(Debug)]
pub(crate) struct InboundDatagram {
    /// The sender's member address, where answers go.
    pub(crate) from: SocketAddr,
    /// The sender.
    pub(crate) origin: NodeId,
    /// The relay that forwarded it, if one did.
    pub(crate) via: Option<NodeId>,
    /// The sealed datagram.
    pub(crate) bytes: Vec<u8>,
}

/// Inbound datagrams queued for the cluster before more are dropped.
const DATAGRAM_QUEUE: usize = 1024;

/// Where datagrams for this node go, once the cluster subscribed.
#[derive(Default)]
pub(super) struct DatagramSink(Mutex<Option<mpsc::Sender<InboundDatagram>>>);

impl DatagramSink {
    pub(super) fn subscribe(&self) -> mpsc::Receiver<InboundDatagram> {
        let (tx, rx) = mpsc::channel(DATAGRAM_QUEUE);
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
        rx
    }

    fn deliver(&self, datagram: InboundDatagram) -> bool {
        let sink = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        sink.as_ref()
            .is_some_and(|tx| tx.try_send(datagram).is_ok())
    }
}

/// Encodes a close for the circuit `circuit` between `origin` and `dest`.
pub(super) fn close_frame(
    dest: NodeId,
    origin: NodeId,
    circuit: CircuitId,
    why: RelayRefusal,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(RelayFrame::encoded_len(1));
    RelayFrame {
        op: RelayOp::Close,
        dest,
        origin,
        circuit,
        addr: None,
        body: &[why.code()],
    }
    .encode(&mut out);
    out
}

/// Handles one relay frame that arrived on `link`.
pub(super) async fn on_frame(
    mesh: &Arc<Shared>,
    router: &Addr<Router>,
    link: &LinkHandle,
    frame: RelayFrame<'_>,
) {
    if frame.dest != mesh.id {
        forward::forward(mesh, router, link, &frame).await;
        return;
    }
    let from = link.peer();
    // A frame for this node came from its origin (a direct datagram) or
    // from a relay the origin used.
    let relayed = from != frame.origin;
    match frame.op {
        RelayOp::Datagram => {
            let Some(addr) = frame.addr else {
                mesh.counters.relay_refused();
                return;
            };
            let datagram = InboundDatagram {
                from: addr,
                origin: frame.origin,
                via: relayed.then_some(from),
                bytes: frame.body.to_vec(),
            };
            if mesh.datagrams.deliver(datagram) {
                mesh.counters.datagram_relayed();
            } else {
                mesh.counters.datagram_dropped();
            }
        }
        // Circuits run through a relay over a direct link to it: anything
        // else (from the origin itself, or over another circuit) is refused.
        _ if !relayed || link.via().is_some() => {
            mesh.counters.relay_refused();
            if frame.op != RelayOp::Close {
                let _ = link.try_send(close_frame(
                    frame.origin,
                    mesh.id,
                    frame.circuit,
                    RelayRefusal::Loop,
                ));
            }
        }
        RelayOp::Open => circuit::accept(mesh, router, link, &frame),
        RelayOp::Data => {
            let key = (frame.origin, frame.circuit);
            match mesh.circuits.downlink(key, from) {
                Some(_) if frame.body.len() > circuit::MAX_DATA => {
                    // Larger than any end sends: the circuit is broken.
                    mesh.counters.relay_refused();
                    mesh.circuits.remove(key, Some(from));
                    let _ = link.try_send(close_frame(
                        frame.origin,
                        mesh.id,
                        frame.circuit,
                        RelayRefusal::Forged,
                    ));
                }
                Some(down) => {
                    // Waits when the circuit's reader, or all of them
                    // together, are behind: the relay link then stops being
                    // read too (backpressure).
                    if let Some(permit) = mesh.circuits.reserve(frame.body.len()).await {
                        let _ = down.send((frame.body.to_vec(), permit)).await;
                    }
                }
                None if mesh.circuits.closed_lately(key) => {}
                None => {
                    mesh.counters.relay_refused();
                    let _ = link.try_send(close_frame(
                        frame.origin,
                        mesh.id,
                        frame.circuit,
                        RelayRefusal::Forged,
                    ));
                }
            }
        }
        RelayOp::Close => {
            let why = frame.refusal();
            let key = (frame.origin, frame.circuit);
            if mesh.circuits.remove(key, Some(from)) {
                tracing::debug!(peer = %frame.origin.short(), %why, "relayed circuit closed");
                if frame.circuit.opener == mesh.id && why != RelayRefusal::Closed {
                    mesh.circuits.refused(key, why);
                }
            }
        }
        _ => mesh.counters.relay_refused(),
    }
}

/// A direct link closed: circuits over it end (bytes in flight on it are
/// lost, even if another link to the same peer replaced it), and a relay
/// tells the other endpoint of each circuit it forwarded over it.
pub(super) fn link_closed(mesh: &Arc<Shared>, peer: NodeId, link: u64) {
    mesh.circuits.link_lost(link);
    for (other, circuit) in mesh.forwarded.link_lost(link) {
        if let Some(to) = mesh.links.live(other).filter(|l| l.via().is_none()) {
            let _ = to.try_send(close_frame(other, peer, circuit, RelayRefusal::LinkLost));
        }
    }
}
