//! Forwarding: what a relay does with a frame for another node. It checks
//! the frame (this node is a relay, the frame comes from its origin over
//! a direct link, it names a circuit that was opened), and sends it on its
//! direct link to the destination, dialing a destination that accepts
//! connections when it has no link to it yet. Refused frames are counted,
//! and the origin of a refused circuit is told why.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use actix::Addr;
use swarm_protocol::relay::{CircuitId, RelayFrame, RelayOp, RelayRefusal};
use swarm_protocol::NodeId;

use super::close_frame;
use crate::mesh::link::LinkHandle;
use crate::mesh::router::{DialNode, Router};
use crate::mesh::Shared;

/// Circuits one endpoint may hold through this relay at once.
const MAX_PER_ENDPOINT: usize = 1024;
/// Bytes of Data frames held for a circuit whose destination is being dialed.
const MAX_HELD_BYTES: usize = 256 * 1024;

/// A forwarded circuit: its id and its two endpoints, lower id first.
type Key = (CircuitId, NodeId, NodeId);

fn key(circuit: CircuitId, a: NodeId, b: NodeId) -> Key {
    (circuit, a.min(b), a.max(b))
}

/// What the relay knows about one forwarded circuit.
enum State {
    /// Frames flow.
    Open,
    /// The destination is being dialed; frames wait here, in order.
    Dialing {
        held: VecDeque<Vec<u8>>,
        bytes: usize,
    },
}

/// The circuits this relay forwards.
#[derive(Default)]
pub(in crate::mesh) struct Forwarded {
    circuits: Mutex<HashMap<Key, State>>,
}

impl Forwarded {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, State>> {
        self.circuits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Circuits forwarded now.
    pub(in crate::mesh) fn len(&self) -> usize {
        self.lock().len()
    }

    /// `peer`'s link closed: forgets its circuits; returns, for each, the
    /// other endpoint and the circuit, so it can be told.
    pub(in crate::mesh) fn endpoint_lost(&self, peer: NodeId) -> Vec<(NodeId, CircuitId)> {
        let mut circuits = self.lock();
        let gone: Vec<Key> = circuits
            .keys()
            .filter(|(_, a, b)| *a == peer || *b == peer)
            .copied()
            .collect();
        gone.into_iter()
            .map(|k| {
                circuits.remove(&k);
                let (circuit, a, b) = k;
                (if a == peer { b } else { a }, circuit)
            })
            .collect()
    }
}

/// Handles a frame for another node.
pub(super) async fn forward(
    mesh: &Arc<Shared>,
    router: &Addr<Router>,
    from: &LinkHandle,
    frame: &RelayFrame<'_>,
) {
    let refuse = |why: RelayRefusal| {
        mesh.counters.relay_refused();
        tracing::debug!(peer = %from.peer().short(), dest = %frame.dest.short(), %why, "relay frame refused");
        if matches!(frame.op, RelayOp::Open | RelayOp::Data) {
            let _ = from.try_send(close_frame(frame.origin, frame.dest, frame.circuit, why));
        }
    };
    if !mesh.config.relay {
        return refuse(RelayRefusal::NotARelay);
    }
    // One hop only: the origin itself hands the frame to the relay, over a
    // direct link, and names another node.
    if from.via().is_some() || frame.origin != from.peer() {
        return refuse(RelayRefusal::Forged);
    }
    if frame.dest == from.peer() {
        return refuse(RelayRefusal::Loop);
    }
    let mut out = Vec::with_capacity(RelayFrame::encoded_len(frame.body.len()));
    frame.encode(&mut out);
    let to = mesh.links.live(frame.dest).filter(|l| l.via().is_none());
    let k = key(frame.circuit, frame.origin, frame.dest);
    match frame.op {
        RelayOp::Datagram => {
            let Some(to) = to else {
                // Datagrams are not held: dial for the next one.
                mesh.counters.datagram_dropped();
                dial(mesh, router, frame.dest);
                return;
            };
            if to.try_send(out).is_ok() {
                mesh.counters.relayed(frame.body.len());
                mesh.counters.datagram_relayed();
            } else {
                mesh.counters.datagram_dropped();
            }
        }
        RelayOp::Open => {
            {
                let mut circuits = mesh.forwarded.lock();
                let held = circuits
                    .keys()
                    .filter(|(_, a, b)| *a == frame.origin || *b == frame.origin)
                    .count();
                if held >= MAX_PER_ENDPOINT {
                    drop(circuits);
                    return refuse(RelayRefusal::TooMany);
                }
                if circuits.contains_key(&k) {
                    drop(circuits);
                    return refuse(RelayRefusal::Forged);
                }
                let state = if to.is_some() {
                    State::Open
                } else {
                    State::Dialing {
                        held: VecDeque::from([out.clone()]),
                        bytes: out.len(),
                    }
                };
                circuits.insert(k, state);
            }
            match to {
                Some(to) => send(mesh, &to, out, frame.body.len()).await,
                None => open_after_dial(mesh, router, from.clone(), frame, k),
            }
        }
        RelayOp::Data => {
            {
                let mut circuits = mesh.forwarded.lock();
                match circuits.get_mut(&k) {
                    None => {
                        drop(circuits);
                        return refuse(RelayRefusal::Forged);
                    }
                    Some(State::Dialing { held, bytes }) => {
                        if *bytes + out.len() > MAX_HELD_BYTES {
                            circuits.remove(&k);
                            drop(circuits);
                            return refuse(RelayRefusal::TooMany);
                        }
                        *bytes += out.len();
                        held.push_back(out);
                        return;
                    }
                    Some(State::Open) => {}
                }
            }
            match to {
                Some(to) => send(mesh, &to, out, frame.body.len()).await,
                None => {
                    mesh.forwarded.lock().remove(&k);
                    refuse(RelayRefusal::NoRoute);
                }
            }
        }
        RelayOp::Close => {
            if mesh.forwarded.lock().remove(&k).is_some() {
                if let Some(to) = to {
                    let _ = to.try_send(out);
                }
            }
        }
        _ => refuse(RelayRefusal::Forged),
    }
}

/// Sends a checked frame on, waiting for room (the origin's link then
/// waits too: backpressure end to end).
async fn send(mesh: &Shared, to: &LinkHandle, frame: Vec<u8>, body: usize) {
    if to.send(frame).await.is_ok() {
        mesh.counters.relayed(body);
    }
}

/// Starts a background dial to `node` (at most one at a time).
fn dial(mesh: &Shared, router: &Addr<Router>, node: NodeId) {
    if mesh.links.begin_background_dial(node) {
        mesh.counters.background_dial();
        router.do_send(DialNode::background(node).direct_only());
    }
}

/// Dials the destination of an Open, then sends the frames held for it;
/// or tells the origin there is no route.
fn open_after_dial(
    mesh: &Arc<Shared>,
    router: &Addr<Router>,
    from: LinkHandle,
    frame: &RelayFrame<'_>,
    k: Key,
) {
    let mesh = Arc::clone(mesh);
    let router = router.clone();
    let (dest, origin, circuit) = (frame.dest, frame.origin, frame.circuit);
    actix_rt::spawn(async move {
        let link = router.send(DialNode::new(dest).direct_only()).await;
        let link = match link {
            Ok(Ok(link)) if link.via().is_none() => Some(link),
            _ => None,
        };
        let mut circuits = mesh.forwarded.lock();
        let Some(state) = circuits.get_mut(&k) else {
            return;
        };
        let State::Dialing { held, .. } = std::mem::replace(state, State::Open) else {
            return;
        };
        // Sent in order before any later frame of the circuit, which
        // finds the state Open only once the lock is released.
        let sent = link.is_some_and(|link| {
            held.into_iter().all(|frame| {
                let body = frame.len();
                let queued = link.try_send(frame).is_ok();
                if queued {
                    mesh.counters.relayed(body);
                }
                queued
            })
        });
        if !sent {
            circuits.remove(&k);
            drop(circuits);
            mesh.counters.relay_refused();
            let _ = from.try_send(close_frame(origin, dest, circuit, RelayRefusal::NoRoute));
        }
    });
}
