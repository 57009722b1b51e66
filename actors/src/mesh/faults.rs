//! Faults a test injects into a node's own mesh: the direct path to a
//! blocked peer behaves as if a firewall dropped its packets. Dials to it
//! fail, and a direct link to it neither sends nor receives anything, so
//! its heartbeat times out as it would across a real network; links
//! through a relay are not affected. This is how routing is checked in one
//! process where network namespaces are unavailable. A test may also make
//! a node lie in gossip about its roles (a hostile member).

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
    /// Roles to announce in gossip instead of the certificate's.
    claimed: Mutex<Option<Vec<String>>>,
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

    /// Announces `roles` in gossip instead of the certificate's (set before
    /// the node starts): a hostile member, for tests that check nobody
    /// believes it.
    pub fn claim_roles(&self, roles: &[&str]) {
        *self.claimed.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(roles.iter().map(|r| (*r).to_owned()).collect());
    }

    /// The roles to announce instead of the certificate's, if any.
    pub fn claimed_roles(&self) -> Option<Vec<String>> {
        self.claimed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
