//! Why gossip datagrams are dropped, the counters of gossip traffic, and
//! the event queue that counts the verdicts it carries.

use std::collections::VecDeque;

use super::MemberEvent;

/// Why a datagram was dropped (counted in [`GossipStats`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GossipError {
    /// Larger than the configured maximum.
    #[error("gossip datagram of {0} bytes is too large")]
    TooLarge(usize),
    /// Empty, an unknown kind, or not decodable.
    #[error("malformed gossip datagram: {0}")]
    Malformed(String),
    /// Refused by foca (a message from ourselves, a probe for ourselves, ...).
    #[error("gossip message refused: {0}")]
    Refused(String),
    /// Not sealed under a key of the ring, tampered, stale or replayed.
    #[error("gossip datagram dropped: {0}")]
    Unsealed(crate::gossip::SealError),
}

/// The cause is printed in the message, so it is not also the `source()`.
impl From<crate::gossip::SealError> for GossipError {
    fn from(e: crate::gossip::SealError) -> Self {
        GossipError::Unsealed(e)
    }
}

/// Counters of gossip traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GossipStats {
    /// Datagrams handed to `poll_transmit`'s caller.
    pub sent: u64,
    /// Their plaintext bytes.
    pub sent_bytes: u64,
    /// Datagrams accepted.
    pub received: u64,
    /// Their plaintext bytes.
    pub received_bytes: u64,
    /// Datagrams that did not open (wrong key, tampered).
    pub dropped_unsealed: u64,
    /// Datagrams replayed, or sent outside the clock-skew window.
    pub dropped_replayed: u64,
    /// Datagrams over the size limit.
    pub dropped_oversized: u64,
    /// Datagrams that did not decode or were refused.
    pub dropped_malformed: u64,
    /// Members this node reported down (each identity once; a member
    /// that rejoined under a renewed identity counts its old one). On a
    /// cluster where nothing crashed, every one is a false down.
    pub members_down: u64,
    /// Members this node reported suspect.
    pub members_suspected: u64,
    /// Times the cluster declared this node down and it rejoined under a
    /// renewed identity.
    pub rejoins: u64,
    /// Pulls of the member list made one probe period after the last,
    /// because it taught this node at least 1/32 of what it knows (young
    /// nodes, mass joins; see `sync`).
    pub fast_pulls: u64,
    /// Timers that fired more than `late_tick` late (this node was starved).
    pub late_ticks: u64,
}

/// Events waiting for `poll_event`, counting the verdicts among them.
#[derive(Debug, Default)]
pub(super) struct Events {
    queue: VecDeque<MemberEvent>,
    pub(super) down: u64,
    pub(super) suspected: u64,
}

impl Events {
    pub(super) fn push_back(&mut self, event: MemberEvent) {
        match event {
            MemberEvent::Down(_) => self.down += 1,
            MemberEvent::Suspect(_) => self.suspected += 1,
            _ => {}
        }
        self.queue.push_back(event);
    }

    pub(super) fn extend(&mut self, events: impl IntoIterator<Item = MemberEvent>) {
        for event in events {
            self.push_back(event);
        }
    }

    pub(super) fn pop_front(&mut self) -> Option<MemberEvent> {
        self.queue.pop_front()
    }
}
