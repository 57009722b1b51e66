//! Faults a test injects into a node's own mesh: the direct path to a
//! blocked peer behaves as if a firewall dropped its packets. Dials to it
//! fail, and a direct link to it neither sends nor receives anything, so
//! its heartbeat times out as it would across a real network; links
//! through a relay are not affected. This is how routing is checked in one
//! process where network namespaces are unavailable. A path may also lose
//! only what this node sends (`mute_direct`: a one-way loss). A test may
//! also make a node lie in gossip about its roles (a hostile member), or
//! hand the connections it accepts to its router late, or starve its
//! links' readers of the reactor's word that bytes wait (`hold_reads`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use swarm_protocol::NodeId;

/// The faults of one node (`MeshConfig::faults`).
#[derive(Debug, Default)]
pub struct Faults {
    blocked: Mutex<HashSet<NodeId>>,
    /// Peers whose direct links carry nothing from this node.
    muted: Mutex<HashSet<NodeId>>,
    /// Peers whose direct links' readers never hear that bytes wait.
    held: Mutex<HashSet<NodeId>>,
    /// Fast path: nothing is blocked, muted or held.
    any: AtomicBool,
    /// Roles to announce in gossip instead of the certificate's.
    claimed: Mutex<Option<Vec<String>>>,
    /// Milliseconds an accepted connection waits, its handshake done,
    /// before the router gets it.
    accept_delay_ms: std::sync::atomic::AtomicU64,
}

impl Faults {
    /// Drops everything on the direct path to `peer` from now on.
    pub fn block_direct(&self, peer: NodeId) {
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        blocked.insert(peer);
        self.any.store(true, Ordering::Release);
    }

    /// Lets the direct path to `peer` work again (blocked, muted or held).
    pub fn unblock_direct(&self, peer: NodeId) {
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        let mut muted = self.muted.lock().unwrap_or_else(PoisonError::into_inner);
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        blocked.remove(&peer);
        muted.remove(&peer);
        held.remove(&peer);
        self.any.store(
            !blocked.is_empty() || !muted.is_empty() || !held.is_empty(),
            Ordering::Release,
        );
    }

    /// From now on the readers of this node's direct links to `peer` act
    /// as if the reactor never reported their sockets readable: the bytes
    /// `peer` sends wait in the socket, as they do for a starved process
    /// whose reactor has not yet handed out every readiness event. Only a
    /// link's second look before a silence verdict reads them.
    pub fn hold_reads(&self, peer: NodeId) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.insert(peer);
        self.any.store(true, Ordering::Release);
    }

    /// Drops what this node writes on its direct links to `peer` from now
    /// on, while what `peer` sends still arrives: a one-way loss (an
    /// answer that never comes back). Dials still complete (the handshake
    /// is not a link's writing); their links then send nothing either.
    pub fn mute_direct(&self, peer: NodeId) {
        let mut muted = self.muted.lock().unwrap_or_else(PoisonError::into_inner);
        muted.insert(peer);
        self.any.store(true, Ordering::Release);
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

    /// Connections accepted from now on reach the router `delay` after
    /// their handshake (a slow accept path): orders the two links of a
    /// crossed dial differently on the two sides.
    pub fn delay_accepts(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.accept_delay_ms.store(ms, Ordering::Release);
    }

    /// How long an accepted connection waits before the router gets it.
    pub(super) fn accept_delay(&self) -> Option<std::time::Duration> {
        match self.accept_delay_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(std::time::Duration::from_millis(ms)),
        }
    }

    /// Whether what this node writes to `peer` on a direct link is
    /// dropped (the path is blocked or muted).
    pub fn mutes(&self, peer: NodeId) -> bool {
        self.blocks(peer) || self.lists(&self.muted, peer)
    }

    /// Whether the readers of direct links to `peer` are held.
    pub fn holds_reads(&self, peer: NodeId) -> bool {
        self.lists(&self.held, peer)
    }

    /// Whether the direct path to `peer` is blocked.
    pub fn blocks(&self, peer: NodeId) -> bool {
        self.lists(&self.blocked, peer)
    }

    /// Whether `peer` is in `set` (no lock while nothing is listed).
    fn lists(&self, set: &Mutex<HashSet<NodeId>>, peer: NodeId) -> bool {
        self.any.load(Ordering::Acquire)
            && set
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&peer)
    }
}
