//! Relay frames: how a node that cannot accept connections (behind NAT or
//! a firewall) is reached through a relay-capable node it keeps a link to.
//!
//! Two kinds of traffic cross a relay:
//!
//! - **Circuits**: a byte stream between two endpoints, opened with
//!   [`RelayOp::Open`], carried by [`RelayOp::Data`] and ended by
//!   [`RelayOp::Close`]. The endpoints run their own Noise handshake and
//!   session inside it, so the relay forwards ciphertext it can neither
//!   read nor alter undetected, and each endpoint authenticates the
//!   other's certificate as on a direct link.
//! - **Datagrams** ([`RelayOp::Datagram`]): sealed membership datagrams
//!   for (or from) a node that UDP cannot reach.
//!
//! A frame names its final destination and its origin. The origin sends it
//! to the relay with `origin` set to itself; the relay checks that the
//! origin is the authenticated peer of the link it came on (one hop: a
//! relay never forwards what another node forwarded, so frames cannot
//! loop), and sends the same frame on its link to the destination.
//!
//! Wire form (inside an envelope, kind 5):
//! `[5, op, dest(bin 16), origin(bin 16), circuit, flags, addr(str), body(bin)]`.

use std::net::SocketAddr;

use crate::codec::{self, Reader};
use crate::envelope::EnvelopeError;
use crate::identity::NodeId;

/// The envelope kind of relay frames.
pub(crate) const KIND_RELAY: u64 = 5;
/// Fields of a relay envelope, the kind included.
pub(crate) const RELAY_FIELDS: usize = 8;
/// The longest socket address string accepted.
const MAX_ADDR_LEN: usize = 64;
/// Flag bit: the circuit was opened by the frame's origin.
const FLAG_OPENED_BY_ORIGIN: u64 = 1;

/// What a relay frame does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RelayOp {
    /// Opens a circuit from `origin` to `dest`.
    Open,
    /// Bytes of an open circuit (Noise ciphertext of the endpoints' session).
    Data,
    /// Ends a circuit; the body says why ([`RelayRefusal`]).
    Close,
    /// A sealed membership datagram; `addr` is the origin's member address.
    Datagram,
}

impl RelayOp {
    fn code(self) -> u64 {
        match self {
            RelayOp::Open => 0,
            RelayOp::Data => 1,
            RelayOp::Close => 2,
            RelayOp::Datagram => 3,
        }
    }

    fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            0 => RelayOp::Open,
            1 => RelayOp::Data,
            2 => RelayOp::Close,
            3 => RelayOp::Datagram,
            _ => return None,
        })
    }
}

/// Names one circuit between two endpoints: its number, chosen by the
/// endpoint that opened it, and which of the two that was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CircuitId {
    /// Unique among the circuits its opener opened.
    pub number: u64,
    /// The node that opened it.
    pub opener: NodeId,
}

/// Why a circuit closed or a frame was refused; sent in a
/// [`RelayOp::Close`] body so the origin learns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum RelayRefusal {
    /// An endpoint ended the circuit.
    #[error("the circuit was closed by an endpoint")]
    Closed,
    /// The relay has no link to the destination.
    #[error("the relay has no link to the destination")]
    NoRoute,
    /// The node asked to forward is not a relay.
    #[error("the node is not a relay")]
    NotARelay,
    /// The frame would have taken a second relay hop, or named the relay
    /// itself or the sender as its destination.
    #[error("relay loop refused")]
    Loop,
    /// The frame's origin is not the peer it came from, or it names a
    /// circuit that was never opened.
    #[error("forged relay frame refused")]
    Forged,
    /// The relay carries as many circuits for this peer as it allows.
    #[error("too many circuits through the relay")]
    TooMany,
    /// The link to one endpoint closed.
    #[error("the relay lost its link to an endpoint")]
    LinkLost,
}

impl RelayRefusal {
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            RelayRefusal::Closed => 0,
            RelayRefusal::NoRoute => 1,
            RelayRefusal::NotARelay => 2,
            RelayRefusal::Loop => 3,
            RelayRefusal::Forged => 4,
            RelayRefusal::TooMany => 5,
            RelayRefusal::LinkLost => 6,
        }
    }

    /// The refusal a wire code stands for; unknown codes read as `Closed`.
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => RelayRefusal::NoRoute,
            2 => RelayRefusal::NotARelay,
            3 => RelayRefusal::Loop,
            4 => RelayRefusal::Forged,
            5 => RelayRefusal::TooMany,
            6 => RelayRefusal::LinkLost,
            _ => RelayRefusal::Closed,
        }
    }
}

/// One relay frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayFrame<'a> {
    /// What it does.
    pub op: RelayOp,
    /// The node it is for.
    pub dest: NodeId,
    /// The node that sent it first.
    pub origin: NodeId,
    /// The circuit (unused by datagrams: number 0, opened by the origin).
    pub circuit: CircuitId,
    /// Datagrams: the origin's member address, where answers go.
    pub addr: Option<SocketAddr>,
    /// Data: ciphertext; Datagram: a sealed datagram; Close: one refusal
    /// code byte; Open: empty.
    pub body: &'a [u8],
}

impl RelayFrame<'_> {
    /// Appends the wire form (a whole envelope) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        codec::write_array_len(out, RELAY_FIELDS as u32);
        codec::write_u64(out, KIND_RELAY);
        codec::write_u64(out, self.op.code());
        codec::write_bin(out, self.dest.as_bytes());
        codec::write_bin(out, self.origin.as_bytes());
        codec::write_u64(out, self.circuit.number);
        let flags = if self.circuit.opener == self.origin {
            FLAG_OPENED_BY_ORIGIN
        } else {
            0
        };
        codec::write_u64(out, flags);
        match self.addr {
            Some(addr) => codec::write_str(out, &addr.to_string()),
            None => codec::write_str(out, ""),
        }
        codec::write_bin(out, self.body);
    }

    /// The refusal a `Close` frame carries.
    pub fn refusal(&self) -> RelayRefusal {
        RelayRefusal::from_code(self.body.first().copied().unwrap_or(0))
    }

    /// A frame's encoded size, for a body of `body` bytes (an upper bound).
    pub fn encoded_len(body: usize) -> usize {
        // Array, kind, op, two 18-byte ids, two u64s, address, body header.
        1 + 1 + 1 + 2 * 18 + 2 * 9 + 2 + MAX_ADDR_LEN + 5 + body
    }
}

/// Decodes the fields after the kind (the array header and kind are read).
pub(crate) fn decode_fields<'a>(r: &mut Reader<'a>) -> Result<RelayFrame<'a>, EnvelopeError> {
    let malformed = || EnvelopeError::Body { what: "relay" };
    let op = RelayOp::from_code(r.read_u64()?).ok_or_else(malformed)?;
    let dest = read_node(r)?;
    let origin = read_node(r)?;
    let number = r.read_u64()?;
    let flags = r.read_u64()?;
    let addr = match r.read_str(MAX_ADDR_LEN)? {
        "" => None,
        text => Some(text.parse().map_err(|_| malformed())?),
    };
    let body = r.read_bin()?;
    let opener = if flags & FLAG_OPENED_BY_ORIGIN != 0 {
        origin
    } else {
        dest
    };
    Ok(RelayFrame {
        op,
        dest,
        origin,
        circuit: CircuitId { number, opener },
        addr,
        body,
    })
}

fn read_node(r: &mut Reader<'_>) -> Result<NodeId, EnvelopeError> {
    let bytes = r.read_bin()?;
    let bytes: [u8; 16] = bytes
        .try_into()
        .map_err(|_| EnvelopeError::Body { what: "relay" })?;
    Ok(NodeId::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;

    fn node(b: u8) -> NodeId {
        NodeId::from_bytes([b; 16])
    }

    #[test]
    fn frames_round_trip_as_envelopes() {
        let frames = [
            RelayFrame {
                op: RelayOp::Open,
                dest: node(1),
                origin: node(2),
                circuit: CircuitId {
                    number: 7,
                    opener: node(2),
                },
                addr: None,
                body: &[],
            },
            RelayFrame {
                op: RelayOp::Data,
                dest: node(2),
                origin: node(1),
                circuit: CircuitId {
                    number: u64::MAX,
                    opener: node(2),
                },
                addr: None,
                body: &[9; 300],
            },
            RelayFrame {
                op: RelayOp::Datagram,
                dest: node(3),
                origin: node(4),
                circuit: CircuitId {
                    number: 0,
                    opener: node(4),
                },
                addr: Some("[::1]:7001".parse().unwrap()),
                body: &[1, 2, 3],
            },
        ];
        for frame in frames {
            let mut out = Vec::new();
            frame.encode(&mut out);
            assert!(out.len() <= RelayFrame::encoded_len(frame.body.len()));
            assert_eq!(Envelope::decode(&out).unwrap(), Envelope::Relay(frame));
        }
    }

    #[test]
    fn bad_fields_are_errors() {
        let good = RelayFrame {
            op: RelayOp::Close,
            dest: node(1),
            origin: node(2),
            circuit: CircuitId {
                number: 1,
                opener: node(1),
            },
            addr: None,
            body: &[RelayRefusal::NoRoute.code()],
        };
        let mut out = Vec::new();
        good.encode(&mut out);
        let Envelope::Relay(back) = Envelope::decode(&out).unwrap() else {
            panic!("not a relay frame");
        };
        assert_eq!(back.refusal(), RelayRefusal::NoRoute);
        // A short node id.
        let mut short = out.clone();
        short[4] = 15;
        assert!(Envelope::decode(&short).is_err());
        // An unknown op.
        let mut op = out.clone();
        op[2] = 9;
        assert!(Envelope::decode(&op).is_err());
        // Every truncation fails cleanly.
        for cut in 0..out.len() {
            assert!(Envelope::decode(&out[..cut]).is_err());
        }
    }
}
