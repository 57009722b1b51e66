//! Forwarding: what a relay does with a frame for another node. It checks
//! the frame (this node is a relay, the frame comes from its origin over
//! a direct link, it names a circuit that was opened), and sends it on its
//! direct link to the destination, dialing a destination that accepts
//! connections when it has no link to it yet. Refused frames are counted,
//! and the origin of a refused circuit is told why.
//!
//! A circuit is pinned to the two links it was opened over: if either
//! closes, bytes in flight on it are lost, so the circuit ends (both
//! endpoints are told) even when a new link to the same peer replaced it.

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
/// Bytes of frames held for a circuit whose destination is being dialed
/// (the opener's first handshake message fits many times over).
const MAX_HELD_BYTES: usize = 16 * 1024;
/// Closed circuits remembered, so frames still in flight for them are
/// dropped quietly instead of refused as forged.
const RECENTLY_CLOSED: usize = 1024;

/// A forwarded circuit: its id and its two endpoints, lower id first.
type Key = (CircuitId, NodeId, NodeId);

fn key(circuit: CircuitId, a: NodeId, b: NodeId) -> Key {
    (circuit, a.min(b), a.max(b))
}

/// What the relay knows about one forwarded circuit.
struct Circuit {
    /// Each endpoint and the id of the link to it the circuit runs over
    /// (0 while the destination is being dialed).
    links: [(NodeId, u64); 2],
    phase: Phase,
}

impl Circuit {
    fn link_of(&self, node: NodeId) -> u64 {
        self.links
            .iter()
            .find(|(n, _)| *n == node)
            .map_or(0, |(_, id)| *id)
    }
}

enum Phase {
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
    circuits: Mutex<HashMap<Key, Circuit>>,
    closed: Mutex<VecDeque<Key>>,
}

impl Forwarded {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Circuit>> {
        self.circuits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets a circuit; true if it was known.
    fn remove(&self, k: &Key) -> bool {
        let known = self.lock().remove(k).is_some();
        if known {
            let mut closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
            if closed.len() >= RECENTLY_CLOSED {
                closed.pop_front();
            }
            closed.push_back(*k);
        }
        known
    }

    fn closed_lately(&self, k: &Key) -> bool {
        self.closed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(k)
    }

    /// Circuits forwarded now.
    pub(in crate::mesh) fn len(&self) -> usize {
        self.lock().len()
    }

    /// The link `link` closed: forgets the circuits over it; returns, for
    /// each, the endpoint on the other link and the circuit, so it can be told.
    pub(in crate::mesh) fn link_lost(&self, link: u64) -> Vec<(NodeId, CircuitId)> {
        let gone: Vec<(Key, NodeId)> = self
            .lock()
            .iter()
            .filter_map(|(k, c)| {
                let [(a, la), (b, lb)] = c.links;
                if la == link {
                    Some((*k, b))
                } else if lb == link {
                    Some((*k, a))
                } else {
                    None
                }
            })
            .collect();
        gone.into_iter()
            .filter(|(k, _)| self.remove(k))
            .map(|((circuit, _, _), other)| (other, circuit))
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
            if let Err(why) = open(mesh, from, frame, k, to.as_ref(), &out) {
                return refuse(why);
            }
            match to {
                Some(to) => send(mesh, &to, out, frame.body.len()).await,
                None => open_after_dial(mesh, router, from.clone(), frame, k),
            }
        }
        RelayOp::Data => {
            {
                let mut circuits = mesh.forwarded.lock();
                let Some(circuit) = circuits.get_mut(&k) else {
                    drop(circuits);
                    if !mesh.forwarded.closed_lately(&k) {
                        refuse(RelayRefusal::Forged);
                    }
                    return;
                };
                if circuit.link_of(frame.origin) != from.id() {
                    // Opened over another link to the origin, since closed.
                    drop(circuits);
                    mesh.forwarded.remove(&k);
                    return refuse(RelayRefusal::LinkLost);
                }
                if let Phase::Dialing { held, bytes } = &mut circuit.phase {
                    if *bytes + out.len() > MAX_HELD_BYTES {
                        drop(circuits);
                        mesh.forwarded.remove(&k);
                        return refuse(RelayRefusal::TooMany);
                    }
                    *bytes += out.len();
                    held.push_back(out);
                    return;
                }
                let pinned = circuit.link_of(frame.dest);
                if to.as_ref().is_none_or(|to| to.id() != pinned) {
                    // The link the circuit ran over is gone: bytes were lost.
                    drop(circuits);
                    mesh.forwarded.remove(&k);
                    return refuse(RelayRefusal::LinkLost);
                }
            }
            if let Some(to) = to {
                send(mesh, &to, out, frame.body.len()).await;
            }
        }
        RelayOp::Close => {
            if mesh.forwarded.remove(&k) {
                if let Some(to) = to {
                    let _ = to.try_send(out);
                }
            }
        }
        _ => refuse(RelayRefusal::Forged),
    }
}

/// Records a circuit being opened, unless the origin holds too many or it
/// exists already.
fn open(
    mesh: &Shared,
    from: &LinkHandle,
    frame: &RelayFrame<'_>,
    k: Key,
    to: Option<&LinkHandle>,
    out: &[u8],
) -> Result<(), RelayRefusal> {
    let mut circuits = mesh.forwarded.lock();
    let held = circuits
        .keys()
        .filter(|(_, a, b)| *a == frame.origin || *b == frame.origin)
        .count();
    if held >= MAX_PER_ENDPOINT {
        return Err(RelayRefusal::TooMany);
    }
    if circuits.contains_key(&k) {
        return Err(RelayRefusal::Forged);
    }
    let phase = match to {
        Some(_) => Phase::Open,
        None => Phase::Dialing {
            held: VecDeque::from([out.to_vec()]),
            bytes: out.len(),
        },
    };
    circuits.insert(
        k,
        Circuit {
            links: [
                (frame.origin, from.id()),
                (frame.dest, to.map_or(0, LinkHandle::id)),
            ],
            phase,
        },
    );
    Ok(())
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
        let Phase::Dialing { held, .. } = std::mem::replace(&mut state.phase, Phase::Open) else {
            return;
        };
        if let Some(link) = &link {
            state.links[1].1 = link.id();
        }
        // Sent in order before any later frame of the circuit, which
        // finds the circuit open only once the lock is released.
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
        drop(circuits);
        if !sent {
            mesh.forwarded.remove(&k);
            mesh.counters.relay_refused();
            let _ = from.try_send(close_frame(origin, dest, circuit, RelayRefusal::NoRoute));
        }
    });
}
