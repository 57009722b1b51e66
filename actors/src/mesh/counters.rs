//! The mesh's counters of refused and dropped traffic, kept with relaxed
//! atomics by the listener, links and router, and read as a [`MeshStats`]
//! snapshot by operators and tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters updated by the mesh's actors.
#[derive(Debug, Default)]
pub(super) struct Counters {
    handshakes_refused: AtomicU64,
    links_failed: AtomicU64,
    tells_dropped: AtomicU64,
    background_dials: AtomicU64,
}

impl Counters {
    pub(super) fn handshake_refused(&self) {
        self.handshakes_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn link_failed(&self) {
        self.links_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn tell_dropped(&self) {
        self.tells_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn background_dial(&self) {
        self.background_dials.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self, links: usize) -> MeshStats {
        MeshStats {
            links,
            handshakes_refused: self.handshakes_refused.load(Ordering::Relaxed),
            links_failed: self.links_failed.load(Ordering::Relaxed),
            tells_dropped: self.tells_dropped.load(Ordering::Relaxed),
            background_dials: self.background_dials.load(Ordering::Relaxed),
        }
    }
}

/// A snapshot of a node's mesh counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct MeshStats {
    /// Live links now.
    pub links: usize,
    /// Connections refused before or during the handshake.
    pub handshakes_refused: u64,
    /// Links closed because of an error (bad input, timeout, i/o).
    pub links_failed: u64,
    /// Tells that found no actor or did not decode.
    pub tells_dropped: u64,
    /// Dials started in the background (by `try_tell` or ejection probes);
    /// at most one is under way per peer.
    pub background_dials: u64,
}
