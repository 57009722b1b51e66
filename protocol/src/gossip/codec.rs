//! The binary codec foca uses for headers and member updates.
//!
//! ```text
//! member id   family u8 (4 | 6) | ip (4 | 16) | port u16 | node id (16) | bump u64
//! member      member id | incarnation u16 | state u8 (0 alive, 1 suspect, 2 down)
//! header      src member id | src incarnation u16 | dst member id | message
//! message     tag u8, then: ping/ack: probe u8;
//!             ping-req, indirect-ping, indirect-ack, forwarded-ack: member id | probe u8;
//!             announce, feed, gossip, broadcast, turn-undead: nothing
//! ```
//!
//! All integers are big-endian. Decoding reads only what the input holds
//! and allocates nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Buf, BufMut};
use foca::{Header, Incarnation, Member, Message, State};

use super::MemberId;
use crate::identity::NodeId;

/// The longest encoded member id (IPv6).
pub const MAX_MEMBER_ID_LEN: usize = 1 + 16 + 2 + 16 + 8;

/// Why a gossip message could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GossipCodecError {
    /// The input ended inside a value.
    #[error("gossip message truncated")]
    Truncated,
    /// The output buffer is full.
    #[error("gossip output buffer full")]
    BufferFull,
    /// An address family other than 4 or 6.
    #[error("unknown address family {0}")]
    Family(u8),
    /// An unknown member state.
    #[error("unknown member state {0}")]
    State(u8),
    /// An unknown message tag.
    #[error("unknown message tag {0}")]
    Message(u8),
}

/// Member updates the codec decoded that may change a member's
/// suspicion (a suspect update, or an alive update with an incarnation
/// above zero that may refute one). Membership reads them after each call
/// into foca, which does not report suspicion itself.
pub type Observed = Arc<Mutex<Vec<Member<MemberId>>>>;

/// foca's [`foca::Codec`] for [`MemberId`].
#[derive(Debug, Default)]
pub struct GossipCodec {
    observed: Option<Observed>,
}

impl GossipCodec {
    /// A codec that records decoded updates which may change suspicion.
    pub fn observing(observed: Observed) -> Self {
        Self {
            observed: Some(observed),
        }
    }

    fn observe(&self, member: &Member<MemberId>) {
        let interesting = match member.state() {
            State::Suspect => true,
            State::Alive => member.incarnation() > 0,
            State::Down => false,
        };
        if let (true, Some(observed)) = (interesting, &self.observed) {
            observed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(member.clone());
        }
    }
}

fn need(buf: &impl Buf, len: usize) -> Result<(), GossipCodecError> {
    if buf.remaining() < len {
        Err(GossipCodecError::Truncated)
    } else {
        Ok(())
    }
}

fn room(buf: &impl BufMut, len: usize) -> Result<(), GossipCodecError> {
    if buf.remaining_mut() < len {
        Err(GossipCodecError::BufferFull)
    } else {
        Ok(())
    }
}

/// The encoded length of `id`.
pub fn member_id_len(id: &MemberId) -> usize {
    match id.addr {
        SocketAddr::V4(_) => 1 + 4 + 2 + 16 + 8,
        SocketAddr::V6(_) => MAX_MEMBER_ID_LEN,
    }
}

/// Writes `id`.
pub fn put_member_id(id: &MemberId, mut buf: impl BufMut) -> Result<(), GossipCodecError> {
    room(&buf, member_id_len(id))?;
    match id.addr.ip() {
        IpAddr::V4(ip) => {
            buf.put_u8(4);
            buf.put_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            buf.put_u8(6);
            buf.put_slice(&ip.octets());
        }
    }
    buf.put_u16(id.addr.port());
    buf.put_slice(id.node.as_bytes());
    buf.put_u64(id.bump);
    Ok(())
}

/// Reads a member id.
pub fn get_member_id(mut buf: impl Buf) -> Result<MemberId, GossipCodecError> {
    need(&buf, 1)?;
    let ip = match buf.get_u8() {
        4 => {
            need(&buf, 4)?;
            let mut octets = [0u8; 4];
            buf.copy_to_slice(&mut octets);
            IpAddr::V4(Ipv4Addr::from(octets))
        }
        6 => {
            need(&buf, 16)?;
            let mut octets = [0u8; 16];
            buf.copy_to_slice(&mut octets);
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        other => return Err(GossipCodecError::Family(other)),
    };
    need(&buf, 2 + 16 + 8)?;
    let port = buf.get_u16();
    let mut node = [0u8; 16];
    buf.copy_to_slice(&mut node);
    let bump = buf.get_u64();
    Ok(MemberId {
        addr: SocketAddr::new(ip, port),
        node: NodeId::from_bytes(node),
        bump,
    })
}

fn state_byte(state: State) -> u8 {
    match state {
        State::Alive => 0,
        State::Suspect => 1,
        State::Down => 2,
    }
}

fn probe_target(message: &Message<MemberId>) -> Option<(u8, &MemberId, u8)> {
    match message {
        Message::PingReq {
            target,
            probe_number,
        } => Some((2, target, *probe_number)),
        Message::IndirectPing {
            origin,
            probe_number,
        } => Some((3, origin, *probe_number)),
        Message::IndirectAck {
            target,
            probe_number,
        } => Some((4, target, *probe_number)),
        Message::ForwardedAck {
            origin,
            probe_number,
        } => Some((5, origin, *probe_number)),
        _ => None,
    }
}

impl foca::Codec<MemberId> for GossipCodec {
    type Error = GossipCodecError;

    fn encode_header(
        &mut self,
        header: &Header<MemberId>,
        mut buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        put_member_id(&header.src, &mut buf)?;
        room(&buf, 2)?;
        buf.put_u16(header.src_incarnation);
        put_member_id(&header.dst, &mut buf)?;
        if let Some((tag, id, probe)) = probe_target(&header.message) {
            room(&buf, 1)?;
            buf.put_u8(tag);
            put_member_id(id, &mut buf)?;
            room(&buf, 1)?;
            buf.put_u8(probe);
            return Ok(());
        }
        let (tag, probe) = match header.message {
            Message::Ping(probe) => (0, Some(probe)),
            Message::Ack(probe) => (1, Some(probe)),
            Message::Announce => (6, None),
            Message::Feed => (7, None),
            Message::Gossip => (8, None),
            Message::Broadcast => (9, None),
            Message::TurnUndead => (10, None),
            // The four probe messages were written above.
            _ => return Err(GossipCodecError::Message(u8::MAX)),
        };
        room(&buf, 2)?;
        buf.put_u8(tag);
        if let Some(probe) = probe {
            buf.put_u8(probe);
        }
        Ok(())
    }

    fn decode_header(&mut self, mut buf: impl Buf) -> Result<Header<MemberId>, Self::Error> {
        let src = get_member_id(&mut buf)?;
        need(&buf, 2)?;
        let src_incarnation: Incarnation = buf.get_u16();
        let dst = get_member_id(&mut buf)?;
        need(&buf, 1)?;
        let tag = buf.get_u8();
        let message = match tag {
            0 | 1 => {
                need(&buf, 1)?;
                let probe = buf.get_u8();
                if tag == 0 {
                    Message::Ping(probe)
                } else {
                    Message::Ack(probe)
                }
            }
            2..=5 => {
                let id = get_member_id(&mut buf)?;
                need(&buf, 1)?;
                let probe_number = buf.get_u8();
                match tag {
                    2 => Message::PingReq {
                        target: id,
                        probe_number,
                    },
                    3 => Message::IndirectPing {
                        origin: id,
                        probe_number,
                    },
                    4 => Message::IndirectAck {
                        target: id,
                        probe_number,
                    },
                    _ => Message::ForwardedAck {
                        origin: id,
                        probe_number,
                    },
                }
            }
            6 => Message::Announce,
            7 => Message::Feed,
            8 => Message::Gossip,
            9 => Message::Broadcast,
            10 => Message::TurnUndead,
            other => return Err(GossipCodecError::Message(other)),
        };
        if src_incarnation > 0 {
            self.observe(&Member::new(src, src_incarnation, State::Alive));
        }
        Ok(Header {
            src,
            src_incarnation,
            dst,
            message,
        })
    }

    fn encode_member(
        &mut self,
        member: &Member<MemberId>,
        mut buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        room(&buf, member_id_len(member.id()) + 3)?;
        put_member_id(member.id(), &mut buf)?;
        buf.put_u16(member.incarnation());
        buf.put_u8(state_byte(member.state()));
        Ok(())
    }

    fn decode_member(&mut self, mut buf: impl Buf) -> Result<Member<MemberId>, Self::Error> {
        let id = get_member_id(&mut buf)?;
        need(&buf, 3)?;
        let incarnation = buf.get_u16();
        let state = match buf.get_u8() {
            0 => State::Alive,
            1 => State::Suspect,
            2 => State::Down,
            other => return Err(GossipCodecError::State(other)),
        };
        let member = Member::new(id, incarnation, state);
        self.observe(&member);
        Ok(member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Codec;
    use proptest::prelude::*;

    fn id(seed: u8, v6: bool) -> MemberId {
        let addr = if v6 {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 7000 + u16::from(seed))
        } else {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, seed)), 7000)
        };
        MemberId {
            addr,
            node: NodeId::from_bytes([seed; 16]),
            bump: u64::from(seed) << 40,
        }
    }

    fn messages() -> Vec<Message<MemberId>> {
        let t = id(9, true);
        vec![
            Message::Ping(1),
            Message::Ack(2),
            Message::PingReq {
                target: t,
                probe_number: 3,
            },
            Message::IndirectPing {
                origin: t,
                probe_number: 4,
            },
            Message::IndirectAck {
                target: t,
                probe_number: 5,
            },
            Message::ForwardedAck {
                origin: t,
                probe_number: 6,
            },
            Message::Announce,
            Message::Feed,
            Message::Gossip,
            Message::Broadcast,
            Message::TurnUndead,
        ]
    }

    #[test]
    fn every_header_round_trips_and_every_truncation_is_refused() {
        for message in messages() {
            let header = Header {
                src: id(1, false),
                src_incarnation: 7,
                dst: id(2, true),
                message,
            };
            let mut out = Vec::new();
            GossipCodec::default()
                .encode_header(&header, &mut out)
                .unwrap();
            let mut input = &out[..];
            let back = GossipCodec::default().decode_header(&mut input).unwrap();
            assert_eq!(back, header);
            assert!(input.is_empty());
            for cut in 0..out.len() {
                assert!(GossipCodec::default().decode_header(&out[..cut]).is_err());
            }
        }
    }

    #[test]
    fn encoding_into_a_full_buffer_fails_cleanly() {
        let member = Member::new(id(3, false), 1, State::Suspect);
        let mut small = [0u8; 10];
        let err = GossipCodec::default()
            .encode_member(&member, &mut small[..])
            .unwrap_err();
        assert_eq!(err, GossipCodecError::BufferFull);
    }

    #[test]
    fn the_observer_sees_suspicion_and_refutation_only() {
        let observed = Observed::default();
        let mut codec = GossipCodec::observing(observed.clone());
        for (state, inc) in [
            (State::Alive, 0),
            (State::Suspect, 0),
            (State::Alive, 1),
            (State::Down, 3),
        ] {
            let mut out = Vec::new();
            codec
                .encode_member(&Member::new(id(4, false), inc, state), &mut out)
                .unwrap();
            codec.decode_member(&out[..]).unwrap();
        }
        let seen = observed.lock().unwrap();
        let seen: Vec<_> = seen.iter().map(|m| (m.state(), m.incarnation())).collect();
        assert_eq!(seen, vec![(State::Suspect, 0), (State::Alive, 1)]);
    }

    proptest! {
        #[test]
        fn members_round_trip(seed in any::<u8>(), v6 in any::<bool>(), inc in any::<u16>(), s in 0u8..3) {
            let state = [State::Alive, State::Suspect, State::Down][usize::from(s)];
            let member = Member::new(id(seed, v6), inc, state);
            let mut out = Vec::new();
            GossipCodec::default().encode_member(&member, &mut out).unwrap();
            let mut input = &out[..];
            prop_assert_eq!(GossipCodec::default().decode_member(&mut input).unwrap(), member);
            prop_assert!(input.is_empty());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = GossipCodec::default().decode_header(&bytes[..]);
            let _ = GossipCodec::default().decode_member(&bytes[..]);
        }
    }
}
