//! Faults a test injects into a node's own mesh: the direct path to a
//! blocked peer behaves as if a firewall dropped its packets. Dials to it
//! fail, and a direct link to it neither sends nor receives anything, so
//! its heartbeat times out as it would across a real network; links
//! through a relay are not affected. This is how routing is checked in one
//! process where network namespaces are unavailable.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use swarm_protocol::NodeId;

/// The faults of one node (`MeshConfig::faults`).
#[derive(Debug, Default)]
pub struct Faults {
    blocked: Mutex<HashSet<NodeId>>,
    /// Fast path: nothing is blocked.
    any: AtomicBool,
}

impl Faults {
    /// Drops everything on the direct path to `peer` from now on.
    pub fn block_direct(&self, peer: NodeId) {
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        blocked.insert(peer);
        self.any.store(true, Ordering::Release);
    }

    /// Lets the direct path to `peer` work again.
    pub fn unblock_direct(&self, peer: NodeId) {
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        blocked.remove(&peer);
        self.any.store(!blocked.is_empty(), Ordering::Release);
    }

    /// Whether the direct path to `peer` is blocked.
    pub fn blocks(&self, peer: NodeId) -> bool {
        self.any.load(Ordering::Acquire)
            && self
                .blocked
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&peer)
    }
}
