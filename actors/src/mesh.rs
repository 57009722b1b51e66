//! The mesh: TCP connections between nodes, each authenticated by the
//! Noise handshake and then owned by one [`Link`](link::Link) actor.
//!
//! ```text
//! Router (one per node; owns the link table, dials, resolves duplicates)
//! ├── Listener   accepts TCP, runs handshakes, hands links to the Router
//! └── Link × n   one per peer: reader task, writer task, heartbeat
//! ```
//!
//! When a Link dies (socket closed, bad input, heartbeat or idle timeout)
//! it tells the Router, which forgets it; the next send dials again. The
//! Listener and Router live as long as the node. All of them run on the
//! node's arbiter, so a message crosses no thread between socket and actor
//! when the target actor lives there too.

pub(crate) mod connect;
pub(crate) mod link;
pub(crate) mod listener;
pub(crate) mod router;

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, for certificate validity.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
