//! Envelopes: the unit of traffic between nodes once a link is up. An
//! envelope names its target actor and its message by a stable type tag and
//! carries the message as opaque MessagePack bytes; what the bytes mean is
//! left to the receiving node's dispatcher.
//!
//! Wire form (MessagePack array, first element the kind):
//! `Tell [0, target, tag, body]`, `Ask [1, correlation, target, tag, body]`,
//! `Reply [2, correlation, status, body]`, `Control [3, body]`,
//! `Batch [4, [envelope, …]]`, `Relay [5, …]` ([`crate::relay`]). A target is an unsigned integer (local actor
//! id) or a string (registered name). Decoding borrows from the input.

use serde::{Deserialize, Serialize};

use crate::codec::{self, Reader};
use crate::relay::{self, RelayFrame, KIND_RELAY, RELAY_FIELDS};

mod error;
pub use error::{EnvelopeError, RemoteError};

/// The longest registered name or type tag accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// The most envelopes one batch may hold.
pub const MAX_BATCH_LEN: usize = 65_536;

/// Which actor on the receiving node an envelope is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target<'a> {
    /// A node-local actor id.
    Id(u64),
    /// A name the actor was registered under.
    Name(&'a str),
}

/// One unit of traffic on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope<'a> {
    /// A one-way message.
    Tell {
        /// The receiving actor.
        to: Target<'a>,
        /// The stable type tag of the message (e.g. `"example.Add"`).
        tag: &'a str,
        /// The message, MessagePack encoded.
        body: &'a [u8],
    },
    /// A request that expects exactly one [`Envelope::Reply`].
    Ask {
        /// Chosen by the asking side to match the reply; unique per link direction.
        correlation: u64,
        /// The receiving actor.
        to: Target<'a>,
        /// The stable type tag of the message.
        tag: &'a str,
        /// The message, MessagePack encoded.
        body: &'a [u8],
    },
    /// The answer to an [`Envelope::Ask`].
    Reply {
        /// The correlation of the ask this answers.
        correlation: u64,
        /// The handler's result (MessagePack) or why there is none.
        result: Result<&'a [u8], RemoteError>,
    },
    /// Link-level control traffic that never reaches a user actor.
    Control(Control),
    /// Several envelopes coalesced by a writer; never nested.
    Batch(Vec<Envelope<'a>>),
    /// Traffic a relay forwards between two other nodes ([`crate::relay`]).
    Relay(RelayFrame<'a>),
}

/// Link-level control messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Control {
    /// A heartbeat; the peer answers with [`Control::Pong`].
    Ping {
        /// Echoed in the pong.
        nonce: u64,
    },
    /// The answer to a [`Control::Ping`].
    Pong {
        /// The nonce of the ping.
        nonce: u64,
    },
    /// The sender is closing the link on purpose.
    Goodbye {
        /// Why, for the peer's log.
        reason: String,
    },
    /// Sent by the accepting side of a new link: the address the dialer's
    /// connection came from, as seen here (its public address, or its
    /// NAT's), so a node bound to a wildcard address can learn what to
    /// announce.
    Observed {
        /// A socket address, `ip:port`.
        addr: String,
    },
    /// Asks the peer to dial this address (on the IP the link comes from)
    /// and complete a handshake, to prove that other nodes can dial it.
    DialBack {
        /// A socket address, `ip:port`.
        addr: String,
    },
}

const KIND_TELL: u64 = 0;
const KIND_ASK: u64 = 1;
const KIND_REPLY: u64 = 2;
const KIND_CONTROL: u64 = 3;
const KIND_BATCH: u64 = 4;
/// Bytes of the batch header written by [`begin_batch`]: fixarray(2), kind, array32 + count.
pub const BATCH_HEADER_LEN: usize = 7;

impl<'a> Envelope<'a> {
    /// Appends the wire form of this envelope to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Envelope::Tell { to, tag, body } => {
                codec::write_array_len(out, 4);
                codec::write_u64(out, KIND_TELL);
                write_target(out, to);
                codec::write_str(out, tag);
                codec::write_bin(out, body);
            }
            Envelope::Ask {
                correlation,
                to,
                tag,
                body,
            } => {
                codec::write_array_len(out, 5);
                codec::write_u64(out, KIND_ASK);
                codec::write_u64(out, *correlation);
                write_target(out, to);
                codec::write_str(out, tag);
                codec::write_bin(out, body);
            }
            Envelope::Reply {
                correlation,
                result,
            } => {
                codec::write_array_len(out, 4);
                codec::write_u64(out, KIND_REPLY);
                codec::write_u64(out, *correlation);
                match result {
                    Ok(body) => {
                        codec::write_u64(out, 0);
                        codec::write_bin(out, body);
                    }
                    Err(e) => {
                        codec::write_u64(out, 1);
                        codec::write_bin(out, &encode_body(e));
                    }
                }
            }
            Envelope::Control(c) => {
                codec::write_array_len(out, 2);
                codec::write_u64(out, KIND_CONTROL);
                codec::write_bin(out, &encode_body(c));
            }
            Envelope::Batch(items) => {
                let start = begin_batch(out);
                for item in items {
                    item.encode(out);
                }
                finish_batch(out, start, items.len());
            }
            Envelope::Relay(frame) => frame.encode(out),
        }
    }

    /// Decodes exactly one envelope from `input`, borrowing tags and bodies.
    ///
    /// # Errors
    ///
    /// [`EnvelopeError`] for anything but one well-formed envelope, including
    /// trailing bytes.
    pub fn decode(input: &'a [u8]) -> Result<Self, EnvelopeError> {
        let mut r = Reader::new(input);
        let env = decode_one(&mut r, true)?;
        r.finish()?;
        Ok(env)
    }
}

/// What the first bytes of an envelope say about it: enough to refuse an
/// envelope that was too large to keep ([`crate::Assembled::Oversized`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Peeked {
    /// A tell.
    Tell,
    /// An ask, to be answered under `correlation`.
    Ask {
        /// The ask's correlation id.
        correlation: u64,
    },
    /// A reply to the ask sent under `correlation`.
    Reply {
        /// The ask's correlation id.
        correlation: u64,
    },
    /// A control envelope.
    Control,
    /// A batch.
    Batch,
    /// A relay frame.
    Relay,
}

/// Reads the kind (and for asks and replies the correlation) from the first
/// bytes of an envelope; the rest may be missing.
///
/// # Errors
///
/// [`EnvelopeError`] if even those bytes are malformed or missing.
pub fn peek(head: &[u8]) -> Result<Peeked, EnvelopeError> {
    let mut r = Reader::new(head);
    r.read_array_len(8)?;
    match r.read_u64()? {
        KIND_TELL => Ok(Peeked::Tell),
        KIND_ASK => Ok(Peeked::Ask {
            correlation: r.read_u64()?,
        }),
        KIND_REPLY => Ok(Peeked::Reply {
            correlation: r.read_u64()?,
        }),
        KIND_CONTROL => Ok(Peeked::Control),
        KIND_BATCH => Ok(Peeked::Batch),
        KIND_RELAY => Ok(Peeked::Relay),
        kind => Err(EnvelopeError::UnknownKind { kind }),
    }
}

/// Appends a tell (`correlation` is `None`) or an ask whose body
/// `write_body` writes straight into `out`, so a message is encoded once,
/// with no intermediate buffer. The body is framed as a 32-bit binary.
///
/// # Errors
///
/// Whatever `write_body` returns, or a message if the body exceeds 4 GiB;
/// `out` is then restored to its previous length.
pub fn encode_request(
    out: &mut Vec<u8>,
    correlation: Option<u64>,
    to: Target<'_>,
    tag: &str,
    write_body: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
) -> Result<(), String> {
    let start = out.len();
    match correlation {
        None => {
            codec::write_array_len(out, 4);
            codec::write_u64(out, KIND_TELL);
        }
        Some(correlation) => {
            codec::write_array_len(out, 5);
            codec::write_u64(out, KIND_ASK);
            codec::write_u64(out, correlation);
        }
    }
    write_target(out, &to);
    codec::write_str(out, tag);
    out.extend_from_slice(&[0xc6, 0, 0, 0, 0]);
    let body_start = out.len();
    let result = write_body(out).and_then(|()| {
        u32::try_from(out.len() - body_start).map_err(|_| "message body exceeds 4 GiB".to_owned())
    });
    match result {
        Ok(len) => {
            if let Some(slot) = out.get_mut(body_start - 4..body_start) {
                slot.copy_from_slice(&len.to_be_bytes());
            }
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Starts a batch in `out` whose elements the caller appends as encoded
/// envelopes; returns the position to pass to [`finish_batch`].
pub fn begin_batch(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    // fixarray(2), kind 4, array32 with a count patched by finish_batch.
    out.extend_from_slice(&[0x92, KIND_BATCH as u8, 0xdd, 0, 0, 0, 0]);
    start
}

/// Writes the element count into a batch begun at `start`. `start` MUST be a
/// position returned by [`begin_batch`] on this buffer; otherwise nothing is
/// written.
pub fn finish_batch(out: &mut [u8], start: usize, count: usize) {
    let count = u32::try_from(count).unwrap_or(u32::MAX);
    if let Some(slot) = out.get_mut(start + 3..start + BATCH_HEADER_LEN) {
        slot.copy_from_slice(&count.to_be_bytes());
    }
}

fn write_target(out: &mut Vec<u8>, to: &Target<'_>) {
    match to {
        Target::Id(id) => codec::write_u64(out, *id),
        Target::Name(name) => codec::write_str(out, name),
    }
}

fn encode_body<T: Serialize>(value: &T) -> Vec<u8> {
    // Control and RemoteError hold only strings and integers: encoding them
    // into a Vec cannot fail.
    rmp_serde::to_vec(value).unwrap_or_default()
}

fn decode_one<'a>(r: &mut Reader<'a>, allow_batch: bool) -> Result<Envelope<'a>, EnvelopeError> {
    let fields = r.read_array_len(8)?;
    let kind = r.read_u64()?;
    let expect = |expected: usize| {
        if fields == expected {
            Ok(())
        } else {
            Err(EnvelopeError::FieldCount {
                kind,
                expected,
                found: fields,
            })
        }
    };
    match kind {
        KIND_TELL => {
            expect(4)?;
            Ok(Envelope::Tell {
                to: read_target(r)?,
                tag: r.read_str(MAX_NAME_LEN)?,
                body: r.read_bin()?,
            })
        }
        KIND_ASK => {
            expect(5)?;
            Ok(Envelope::Ask {
                correlation: r.read_u64()?,
                to: read_target(r)?,
                tag: r.read_str(MAX_NAME_LEN)?,
                body: r.read_bin()?,
            })
        }
        KIND_REPLY => {
            expect(4)?;
            let correlation = r.read_u64()?;
            let status = r.read_u64()?;
            let body = r.read_bin()?;
            let result = match status {
                0 => Ok(body),
                1 => Err(rmp_serde::from_slice(body)
                    .map_err(|_| EnvelopeError::Body { what: "error" })?),
                status => return Err(EnvelopeError::UnknownStatus { status }),
            };
            Ok(Envelope::Reply {
                correlation,
                result,
            })
        }
        KIND_CONTROL => {
            expect(2)?;
            let body = r.read_bin()?;
            let control =
                rmp_serde::from_slice(body).map_err(|_| EnvelopeError::Body { what: "control" })?;
            Ok(Envelope::Control(control))
        }
        KIND_BATCH => {
            expect(2)?;
            if !allow_batch {
                return Err(EnvelopeError::NestedBatch);
            }
            // Every envelope takes at least 4 bytes: bound the allocation by the input.
            let max = MAX_BATCH_LEN.min(r.remaining() / 4);
            let count = r.read_array_len(max)?;
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                items.push(decode_one(r, false)?);
            }
            Ok(Envelope::Batch(items))
        }
        KIND_RELAY => {
            expect(RELAY_FIELDS)?;
            Ok(Envelope::Relay(relay::decode_fields(r)?))
        }
        kind => Err(EnvelopeError::UnknownKind { kind }),
    }
}

fn read_target<'a>(r: &mut Reader<'a>) -> Result<Target<'a>, EnvelopeError> {
    Ok(match r.peek_marker()? {
        rmp::Marker::FixStr(_) | rmp::Marker::Str8 | rmp::Marker::Str16 | rmp::Marker::Str32 => {
            Target::Name(r.read_str(MAX_NAME_LEN)?)
        }
        _ => Target::Id(r.read_u64()?),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::codec::CodecError;

    #[test]
    fn peek_reads_kind_and_correlation_from_a_truncated_head() {
        let mut ask = Vec::new();
        Envelope::Ask {
            correlation: 77,
            to: Target::Name("x"),
            tag: "t",
            body: &[0; 300],
        }
        .encode(&mut ask);
        assert_eq!(peek(&ask[..16]), Ok(Peeked::Ask { correlation: 77 }));
        let mut reply = Vec::new();
        Envelope::Reply {
            correlation: 9,
            result: Ok(&[1; 300]),
        }
        .encode(&mut reply);
        assert_eq!(peek(&reply[..12]), Ok(Peeked::Reply { correlation: 9 }));
        let mut tell = Vec::new();
        Envelope::Tell {
            to: Target::Id(1),
            tag: "t",
            body: &[],
        }
        .encode(&mut tell);
        assert_eq!(peek(&tell[..2]), Ok(Peeked::Tell));
        assert!(
            peek(&ask[..2]).is_err(),
            "a correlation cut short is an error"
        );
        assert!(peek(&[]).is_err());
    }

    fn round_trip(env: &Envelope<'_>) {
        let mut out = Vec::new();
        env.encode(&mut out);
        assert_eq!(&Envelope::decode(&out).unwrap(), env);
    }

    #[test]
    fn every_kind_round_trips() {
        round_trip(&Envelope::Tell {
            to: Target::Name("adder"),
            tag: "example.Add",
            body: &[1, 2, 3],
        });
        round_trip(&Envelope::Ask {
            correlation: 7,
            to: Target::Id(42),
            tag: "t",
            body: &[],
        });
        round_trip(&Envelope::Reply {
            correlation: 7,
            result: Ok(&[9]),
        });
        round_trip(&Envelope::Reply {
            correlation: 8,
            result: Err(RemoteError::NoSuchActor { name: "x".into() }),
        });
        round_trip(&Envelope::Control(Control::Ping { nonce: 3 }));
        round_trip(&Envelope::Batch(vec![
            Envelope::Control(Control::Pong { nonce: 3 }),
            Envelope::Tell {
                to: Target::Id(1),
                tag: "a",
                body: &[0; 300],
            },
        ]));
    }

    #[test]
    fn known_tell_vector_decodes() {
        // [0, "a", "t", bin(1) 0xff]
        let wire = [0x94, 0x00, 0xa1, b'a', 0xa1, b't', 0xc4, 0x01, 0xff];
        assert_eq!(
            Envelope::decode(&wire).unwrap(),
            Envelope::Tell {
                to: Target::Name("a"),
                tag: "t",
                body: &[0xff]
            }
        );
    }

    #[test]
    fn request_encoded_in_place_decodes_like_a_normal_one() {
        let mut out = vec![0xee];
        encode_request(&mut out, Some(9), Target::Name("a"), "t", |out| {
            out.extend_from_slice(&[1, 2, 3]);
            Ok(())
        })
        .unwrap();
        assert_eq!(
            Envelope::decode(&out[1..]).unwrap(),
            Envelope::Ask {
                correlation: 9,
                to: Target::Name("a"),
                tag: "t",
                body: &[1, 2, 3]
            }
        );
        let mut out = vec![0xee];
        encode_request(&mut out, None, Target::Id(3), "t", |_| Err("no".into())).unwrap_err();
        assert_eq!(out, vec![0xee], "a failed body leaves the buffer as it was");
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut out = Vec::new();
        Envelope::Control(Control::Ping { nonce: 1 }).encode(&mut out);
        out.push(0);
        assert!(matches!(
            Envelope::decode(&out),
            Err(EnvelopeError::Codec(CodecError::TrailingBytes { count: 1 }))
        ));
    }

    #[test]
    fn nested_batch_is_rejected() {
        let mut out = Vec::new();
        Envelope::Batch(vec![Envelope::Batch(vec![])]).encode(&mut out);
        assert_eq!(Envelope::decode(&out), Err(EnvelopeError::NestedBatch));
    }

    #[test]
    fn batch_count_beyond_input_is_rejected_before_allocation() {
        // Batch announcing 4 billion envelopes in 7 bytes.
        let wire = [0x92, 0x04, 0xdd, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            Envelope::decode(&wire),
            Err(EnvelopeError::Codec(CodecError::TooLong { .. }))
        ));
    }

    #[test]
    fn unknown_kind_is_rejected() {
        assert_eq!(
            Envelope::decode(&[0x91, 0x09]),
            Err(EnvelopeError::UnknownKind { kind: 9 })
        );
    }

    fn arb_target() -> impl Strategy<Value = (Option<u64>, String)> {
        (proptest::option::of(any::<u64>()), "[a-z.]{0,40}")
    }

    proptest! {
        #[test]
        fn tells_and_asks_round_trip(
            (id, name) in arb_target(),
            tag in "[a-zA-Z.]{0,60}",
            body in proptest::collection::vec(any::<u8>(), 0..2000),
            correlation in any::<u64>(),
            ask in any::<bool>(),
        ) {
            let to = id.map_or(Target::Name(&name), Target::Id);
            let env = if ask {
                Envelope::Ask { correlation, to, tag: &tag, body: &body }
            } else {
                Envelope::Tell { to, tag: &tag, body: &body }
            };
            let mut out = Vec::new();
            env.encode(&mut out);
            prop_assert_eq!(Envelope::decode(&out).unwrap(), env);
        }

        #[test]
        fn replies_and_controls_round_trip(
            correlation in any::<u64>(),
            body in proptest::collection::vec(any::<u8>(), 0..100),
            reason in ".{0,40}",
            nonce in any::<u64>(),
        ) {
            let batch = Envelope::Batch(vec![
                Envelope::Reply { correlation, result: Ok(&body) },
                Envelope::Reply { correlation, result: Err(RemoteError::Refused { reason: reason.clone() }) },
                Envelope::Control(Control::Goodbye { reason }),
                Envelope::Control(Control::Ping { nonce }),
            ]);
            let mut out = Vec::new();
            batch.encode(&mut out);
            prop_assert_eq!(Envelope::decode(&out).unwrap(), batch);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Envelope::decode(&bytes);
        }
    }
}
