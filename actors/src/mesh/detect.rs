//! Address detection, for a node bound to a wildcard address without an
//! `advertise` setting: it dials a seed, which tells it the address the
//! connection came from ([`Control::Observed`]); it asks the seed to dial
//! that IP on its listen port ([`Control::DialBack`]); when that dial
//! arrives and authenticates as the seed, the address is confirmed and
//! announced. The dial-back goes only to the IP the request came from, so
//! a node cannot be used to dial third parties.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use swarm_protocol::session::SendHalf;
use swarm_protocol::{Control, NodeId};

use super::connect::dial;
use super::link::LinkHandle;
use super::{Mesh, Shared};

/// Dial-backs this node runs for others at once; more requests are ignored.
const MAX_PROBES: usize = 4;

/// What detection knows.
#[derive(Default)]
pub(super) struct Detection {
    /// Where peers saw this node's connections come from.
    observed: Mutex<HashMap<NodeId, SocketAddr>>,
    /// Dial-backs asked for: the peer and the address it should dial.
    expected: Mutex<HashMap<NodeId, SocketAddr>>,
    /// The address a dial-back reached.
    confirmed: Mutex<Option<SocketAddr>>,
    /// Dial-backs under way for others.
    probing: Arc<AtomicUsize>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Detection {
    /// A peer this node dialed says where the connection came from.
    pub(super) fn observed(&self, link: &LinkHandle, me: NodeId, addr: &str) {
        // Only the side that was dialed knows; anything else is ignored.
        if link.initiator() != me || link.via().is_some() {
            return;
        }
        if let Ok(addr) = addr.parse() {
            lock(&self.observed).insert(link.peer(), addr);
        }
    }

    /// An inbound handshake from `peer` arrived at `local`: true if it is
    /// the dial-back this node asked `peer` for (then it is confirmed, and
    /// the connection is not kept).
    pub(super) fn dialed_back(&self, peer: NodeId, local: SocketAddr) -> bool {
        let Some(candidate) = lock(&self.expected).get(&peer).copied() else {
            return false;
        };
        if candidate.port() != local.port() {
            return false;
        }
        lock(&self.expected).remove(&peer);
        *lock(&self.confirmed) = Some(candidate);
        true
    }
}

/// A peer asks this node to dial `addr` back. Only its own IP is dialed,
/// a few at a time; the connection is dropped once the handshake proves
/// the peer answered.
pub(super) fn dial_back(mesh: &Arc<Shared>, link: &LinkHandle, addr: &str) {
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        return;
    };
    if link.via().is_some() || addr.ip() != link.remote_addr().ip() {
        tracing::debug!(peer = %link.peer().short(), %addr, "dial-back to another address refused");
        return;
    }
    let probing = Arc::clone(&mesh.detection.probing);
    if probing.fetch_add(1, Ordering::AcqRel) >= MAX_PROBES {
        probing.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let config = mesh.handshake();
    let timeout = mesh.config.handshake_timeout;
    let peer = link.peer();
    actix_rt::spawn(async move {
        match dial(addr, config, timeout).await {
            Ok((_stream, est, _)) if est.peer.node_id == peer => {
                tracing::debug!(peer = %peer.short(), %addr, "dialed back");
            }
            Ok(_) => tracing::debug!(%addr, "dial-back answered by another node"),
            Err(e) => tracing::debug!(%addr, error = %e, "dial-back failed"),
        }
        probing.fetch_sub(1, Ordering::AcqRel);
    });
}

/// The outcome of detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detected {
    /// A seed dialed this address back: others can dial it.
    Confirmed(SocketAddr),
    /// A seed saw this address, but no dial-back reached it (behind NAT).
    Unconfirmed(SocketAddr),
    /// No seed answered.
    Nothing,
}

impl Mesh {
    /// Finds the address other nodes can dial this node at, through the
    /// first of `seeds` that answers, within `within` per seed.
    pub(crate) async fn detect_address(&self, seeds: &[SocketAddr], within: Duration) -> Detected {
        let port = self.listen_addr().port();
        let mut seen = None;
        for &seed in seeds {
            let Ok(peer) = self.connect(seed).await else {
                continue;
            };
            let Some(link) = self.live_link(peer.id) else {
                continue;
            };
            let observed = poll(within, || {
                lock(&self.shared.detection.observed).get(&peer.id).copied()
            })
            .await;
            let Some(observed) = observed else {
                continue;
            };
            let candidate = SocketAddr::new(observed.ip(), port);
            seen.get_or_insert(candidate);
            lock(&self.shared.detection.expected).insert(peer.id, candidate);
            let ask = SendHalf::control(&Control::DialBack {
                addr: candidate.to_string(),
            });
            if link.try_send(ask).is_err() {
                continue;
            }
            let confirmed = poll(within, || *lock(&self.shared.detection.confirmed)).await;
            lock(&self.shared.detection.expected).remove(&peer.id);
            if let Some(addr) = confirmed {
                return Detected::Confirmed(addr);
            }
        }
        seen.map_or(Detected::Nothing, Detected::Unconfirmed)
    }
}

/// Polls `check` every 10 ms until it gives a value or `within` passes.
async fn poll<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + within;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        tick.tick().await;
        if let Some(value) = check() {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
    }
}
