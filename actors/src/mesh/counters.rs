//! The mesh's counters of refused and dropped traffic, kept with relaxed
//! atomics by the listener, links and router, and read as a [`MeshStats`]
//! snapshot by operators and tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters updated by the mesh's actors.
#[derive(Debug, Default)]
pub(super) struct Counters {
    handshakes_refused: AtomicU64,
    silent_dropped: AtomicU64,
    links_failed: AtomicU64,
    tells_dropped: AtomicU64,
    background_dials: AtomicU64,
    relay_frames: AtomicU64,
    relay_bytes: AtomicU64,
    relay_refused: AtomicU64,
    datagrams_relayed: AtomicU64,
    datagrams_dropped: AtomicU64,
    forbidden: AtomicU64,
    false_claims: AtomicU64,
}

impl Counters {
    pub(super) fn handshake_refused(&self) {
        self.handshakes_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// The listener closed a connection that had sent nothing (its
    /// deadline passed, or a newer one pushed it out of a full pool).
    pub(super) fn silent_dropped(&self) {
        self.silent_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn link_failed(&self) {
        self.links_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn tell_dropped(&self) {
        self.tells_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The policy refused a message.
    pub(super) fn forbidden(&self) {
        self.forbidden.fetch_add(1, Ordering::Relaxed);
    }

    /// A peer claimed a role its certificate lacks (a gossiped head, a
    /// head's answer from a certificate without `head`).
    pub(super) fn false_claim(&self) {
        self.false_claims.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn background_dial(&self) {
        self.background_dials.fetch_add(1, Ordering::Relaxed);
    }

    /// This relay forwarded a frame with `bytes` of body.
    pub(super) fn relayed(&self, bytes: usize) {
        self.relay_frames.fetch_add(1, Ordering::Relaxed);
        self.relay_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A relay frame was refused (forged, looping, no route, not a relay).
    pub(super) fn relay_refused(&self) {
        self.relay_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A membership datagram was sent over the mesh or forwarded.
    pub(super) fn datagram_relayed(&self) {
        self.datagrams_relayed.fetch_add(1, Ordering::Relaxed);
    }

    /// A membership datagram found no route or no room and was dropped.
    pub(super) fn datagram_dropped(&self) {
        self.datagrams_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self, links: usize, circuits: usize) -> MeshStats {
        MeshStats {
            links,
            circuits,
            relay_frames: self.relay_frames.load(Ordering::Relaxed),
            relay_bytes: self.relay_bytes.load(Ordering::Relaxed),
            relay_refused: self.relay_refused.load(Ordering::Relaxed),
            datagrams_relayed: self.datagrams_relayed.load(Ordering::Relaxed),
            datagrams_dropped: self.datagrams_dropped.load(Ordering::Relaxed),
            handshakes_refused: self.handshakes_refused.load(Ordering::Relaxed),
            silent_dropped: self.silent_dropped.load(Ordering::Relaxed),
            links_failed: self.links_failed.load(Ordering::Relaxed),
            tells_dropped: self.tells_dropped.load(Ordering::Relaxed),
            background_dials: self.background_dials.load(Ordering::Relaxed),
            forbidden: self.forbidden.load(Ordering::Relaxed),
            false_claims: self.false_claims.load(Ordering::Relaxed),
        }
    }
}

/// A snapshot of a node's mesh counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct MeshStats {
    /// Live links now (direct and relayed).
    pub links: usize,
    /// Relayed circuits now: those this node forwards and those ending here.
    pub circuits: usize,
    /// Frames this node forwarded as a relay (circuit bytes and datagrams).
    pub relay_frames: u64,
    /// Body bytes of those frames: ciphertext the relay cannot read.
    pub relay_bytes: u64,
    /// Relay frames refused: forged, looping, for an unknown node, or sent
    /// to a node that is not a relay.
    pub relay_refused: u64,
    /// Membership datagrams sent, received or forwarded over mesh links
    /// (for nodes that UDP cannot reach).
    pub datagrams_relayed: u64,
    /// Membership datagrams over the mesh dropped: no route or no room.
    pub datagrams_dropped: u64,
    /// Connections refused before or during the handshake.
    pub handshakes_refused: u64,
    /// Of those, connections closed because they had sent nothing: their
    /// deadline passed, or a newer one pushed them out of the full pool of
    /// silent connections.
    #[serde(default)]
    pub silent_dropped: u64,
    /// Links closed because of an error (bad input, timeout, i/o).
    pub links_failed: u64,
    /// Tells that found no actor or did not decode.
    pub tells_dropped: u64,
    /// Dials started in the background (by `try_tell` or ejection probes);
    /// at most one is under way per peer.
    pub background_dials: u64,
    /// Tells and asks the policy refused ([`crate::policy`]).
    pub forbidden: u64,
    /// Claims refused because a certificate does not back them: a member
    /// gossiping a role its certificate lacks, a node answering as a head
    /// without a `head` certificate.
    #[serde(default)]
    pub false_claims: u64,
}
