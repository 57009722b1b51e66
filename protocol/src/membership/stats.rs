//! Why gossip datagrams are dropped, and the counters of gossip traffic.

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
}
