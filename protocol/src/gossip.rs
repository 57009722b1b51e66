//! What membership puts on the wire: member identities and foca's messages
//! in a compact binary codec ([`codec`]), node metadata ([`meta`]), and the
//! AES-256-GCM sealing of every datagram under the cluster's gossip key
//! ([`seal`]), and the refusal of replayed datagrams ([`replay`]).
//!
//! A gossip datagram is `seal(foca message)`; a foca message is a header,
//! piggybacked member updates and custom broadcast items, which carry
//! metadata. Membership says where a node is; the Noise handshake on the
//! mesh link is still what proves who it is.

pub mod codec;
pub mod meta;
pub mod replay;
pub mod seal;

use std::fmt;
use std::net::SocketAddr;

use crate::identity::NodeId;

pub use codec::{GossipCodec, GossipCodecError, MAX_MEMBER_ID_LEN};
pub use meta::{MetaError, MetaItem, NodeMeta, Resources, ServiceEntry, MAX_META_LEN};
pub use replay::ReplayGuard;
pub use seal::{GossipKey, KeyRing, Opened, SealError, SEAL_OVERHEAD};

/// One member's identity in the gossip protocol: where it listens, which
/// node it claims to be, and a `bump` that orders incarnations of the same
/// address (a restarted process starts with a larger bump and replaces the
/// old one; foca renews it when the cluster wrongly declared it down).
///
/// `addr` is both the UDP gossip address and the TCP mesh address (one port
/// number serves both). Two identities with the same `addr` are the same
/// member; the larger `bump` wins.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MemberId {
    /// Gossip (UDP) and mesh (TCP) address.
    pub addr: SocketAddr,
    /// The node id the member claims; proven only by the mesh handshake.
    pub node: NodeId,
    /// Orders incarnations of the same address; larger is newer.
    pub bump: u64,
}

impl MemberId {
    /// A placeholder for a seed whose identity is not known yet: only its
    /// address counts (foca accepts an announce addressed to any identity
    /// with the receiver's address).
    pub fn seed(addr: SocketAddr) -> Self {
        Self {
            addr,
            node: NodeId::from_bytes([0; 16]),
            bump: 0,
        }
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.node.short(), self.addr, self.bump)
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl foca::Identity for MemberId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            bump: self.bump.wrapping_add(1).max(1),
            ..*self
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.bump, self.node) > (adversary.bump, adversary.node)
    }
}
