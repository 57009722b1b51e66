//! Records: what one decrypted Noise transport message holds. A record is a
//! welcome (the responder's confirmation that the handshake was accepted),
//! one envelope (possibly a batch), or the first chunk of an envelope too
//! large for one Noise message, announcing its total length. Until that
//! total is reached, every following message is raw continuation data with
//! no header, so large envelopes are sealed from, and opened into, their
//! final buffers without extra copies. [`Packer`] builds records on the sending side and
//! [`Reassembler`] turns them back into envelopes, with a bound on the size
//! of a reassembled envelope that is checked before anything is allocated.

use crate::envelope::{begin_batch, finish_batch, BATCH_HEADER_LEN};
use crate::noise::RecvCipher;

/// The largest Noise transport message (the Noise limit).
pub const MAX_NOISE_MESSAGE: usize = 65_535;
/// The AEAD tag added by encryption.
pub const TAG_LEN: usize = 16;
/// The largest plaintext of one record.
pub const MAX_RECORD: usize = MAX_NOISE_MESSAGE - TAG_LEN;

const KIND_WELCOME: u8 = 0;
const KIND_ENVELOPE: u8 = 1;
const KIND_CHUNK_FIRST: u8 = 2;
/// Bytes before the data of a first chunk: kind and u32 total length.
const CHUNK_FIRST_HEADER: usize = 5;

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The record was empty or its kind byte unknown.
    #[error("unknown record kind {kind:?}")]
    UnknownKind {
        /// The kind byte, if there was one.
        kind: Option<u8>,
    },
    /// A chunked envelope announced more bytes than the configured limit.
    #[error("chunked envelope of {total} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The announced total.
        total: usize,
        /// The configured limit.
        max: usize,
    },
    /// Chunks did not follow the rules: more data than announced, an empty
    /// continuation, or a first chunk too short to need chunking.
    #[error("chunk sequence violated: {reason}")]
    Sequence {
        /// Which rule was broken.
        reason: &'static str,
    },
    /// A transport message failed authentication.
    #[error("transport message failed authentication")]
    Decrypt,
}

/// A decoded record.
#[derive(Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// The responder accepted the handshake.
    Welcome,
    /// One whole envelope.
    Envelope(&'a [u8]),
    /// The first part of a chunked envelope.
    ChunkFirst {
        /// The whole envelope's length.
        total: usize,
        /// This chunk's data.
        data: &'a [u8],
    },
}

impl<'a> Record<'a> {
    /// Decodes one record from a decrypted transport message (outside a
    /// chunked envelope; inside one, messages are raw data).
    ///
    /// # Errors
    ///
    /// [`RecordError::UnknownKind`] for an empty record or unknown kind.
    pub fn decode(plain: &'a [u8]) -> Result<Self, RecordError> {
        let Some((&kind, rest)) = plain.split_first() else {
            return Err(RecordError::UnknownKind { kind: None });
        };
        match kind {
            KIND_WELCOME if rest.is_empty() => Ok(Record::Welcome),
            KIND_ENVELOPE => Ok(Record::Envelope(rest)),
            KIND_CHUNK_FIRST => {
                let (Some(len), Some(data)) = (rest.get(..4), rest.get(4..)) else {
                    return Err(RecordError::Sequence {
                        reason: "first chunk shorter than its header",
                    });
                };
                let mut total = [0u8; 4];
                total.copy_from_slice(len);
                Ok(Record::ChunkFirst {
                    total: u32::from_be_bytes(total) as usize,
                    data,
                })
            }
            kind => Err(RecordError::UnknownKind { kind: Some(kind) }),
        }
    }

    /// The plaintext of a welcome record.
    pub fn welcome() -> &'static [u8] {
        &[KIND_WELCOME]
    }
}

/// An envelope handed back by [`Reassembler::handle_record`].
#[derive(Debug, PartialEq, Eq)]
pub enum Assembled<'a> {
    /// The envelope was in one record; it borrows from it.
    Borrowed(&'a [u8]),
    /// The envelope was reassembled from chunks.
    Owned(Vec<u8>),
}

impl Assembled<'_> {
    /// The envelope's bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Assembled::Borrowed(b) => b,
            Assembled::Owned(v) => v,
        }
    }
}

/// Rebuilds envelopes from records, one chunked envelope at a time.
#[derive(Debug)]
pub struct Reassembler {
    /// The largest envelope accepted, so a peer cannot make us buffer without bound.
    max_envelope: usize,
    /// The envelope being reassembled and its announced total.
    partial: Option<(Vec<u8>, usize)>,
}

impl Reassembler {
    /// A reassembler that refuses envelopes larger than `max_envelope` bytes.
    pub fn new(max_envelope: usize) -> Self {
        Self {
            max_envelope,
            partial: None,
        }
    }

    /// True while a chunked envelope is incomplete: the next message is
    /// continuation data.
    pub fn in_chunk(&self) -> bool {
        self.partial.is_some()
    }

    /// Decrypts one frame payload with `cipher` and returns an envelope
    /// when one is complete. Continuation data is decrypted straight into
    /// the envelope's buffer; other records go through `scratch`.
    ///
    /// # Errors
    ///
    /// [`RecordError::Decrypt`] if authentication fails, otherwise as
    /// [`Reassembler::handle_record`]. The link MUST be closed after an error.
    pub fn handle_frame<'s>(
        &mut self,
        cipher: &mut RecvCipher,
        payload: &[u8],
        scratch: &'s mut Vec<u8>,
    ) -> Result<Option<Assembled<'s>>, RecordError> {
        let Some((buf, total)) = self.partial.as_mut() else {
            let plain = cipher
                .open(payload, scratch)
                .map_err(|_| RecordError::Decrypt)?;
            return self.handle_record(plain);
        };
        let len = payload.len().saturating_sub(TAG_LEN);
        check_continuation(len, *total - buf.len())?;
        let start = buf.len();
        // Room for the tag too, so the cipher decrypts in place without a copy.
        buf.resize(start + payload.len(), 0);
        let opened = cipher.open_into(payload, buf.get_mut(start..).unwrap_or_default());
        match opened {
            Ok(n) => buf.truncate(start + n),
            Err(_) => return Err(RecordError::Decrypt),
        }
        Ok(self.take_if_complete())
    }

    /// Takes one record's plaintext (or continuation data, inside a chunked
    /// envelope); returns an envelope when one is complete.
    ///
    /// # Errors
    ///
    /// [`RecordError`] when the record is malformed, breaks the chunk
    /// rules, or announces an envelope over the limit. The link MUST be
    /// closed after an error.
    pub fn handle_record<'a>(
        &mut self,
        plain: &'a [u8],
    ) -> Result<Option<Assembled<'a>>, RecordError> {
        if let Some((buf, total)) = self.partial.as_mut() {
            check_continuation(plain.len(), *total - buf.len())?;
            buf.extend_from_slice(plain);
            return Ok(self.take_if_complete());
        }
        match Record::decode(plain)? {
            Record::Welcome => Err(RecordError::Sequence {
                reason: "welcome after the handshake",
            }),
            Record::Envelope(bytes) => Ok(Some(Assembled::Borrowed(bytes))),
            Record::ChunkFirst { total, data } => {
                if total > self.max_envelope {
                    return Err(RecordError::TooLarge {
                        total,
                        max: self.max_envelope,
                    });
                }
                if total + PACK_START <= MAX_RECORD || data.len() > total {
                    return Err(RecordError::Sequence {
                        reason: "first chunk inconsistent with its total",
                    });
                }
                // Grow with the data actually received, not with the announcement.
                let mut buf = Vec::with_capacity(total.min(1 << 20));
                buf.extend_from_slice(data);
                self.partial = Some((buf, total));
                Ok(self.take_if_complete())
            }
        }
    }

    fn take_if_complete<'a>(&mut self) -> Option<Assembled<'a>> {
        match &self.partial {
            Some((buf, total)) if buf.len() == *total => {
                self.partial.take().map(|(buf, _)| Assembled::Owned(buf))
            }
            _ => None,
        }
    }
}

fn check_continuation(len: usize, room: usize) -> Result<(), RecordError> {
    if len == 0 {
        return Err(RecordError::Sequence {
            reason: "empty continuation",
        });
    }
    if len > room {
        return Err(RecordError::Sequence {
            reason: "more data than announced",
        });
    }
    Ok(())
}

/// Packs encoded envelopes into records: queued envelopes share one record
/// as a batch while they fit, and an envelope too large for one record is
/// split into chunks.
///
/// Call [`Packer::push`] for each envelope, then [`Packer::flush`]; every
/// finished record is handed to `emit` (which typically encrypts it).
#[derive(Debug)]
pub struct Packer {
    /// The record being built: kind byte, batch header, envelopes.
    buf: Vec<u8>,
    /// Envelopes in `buf`.
    count: usize,
    /// Scratch space for chunk records.
    scratch: Vec<u8>,
}

/// Where envelopes start in `Packer::buf`.
const PACK_START: usize = 1 + BATCH_HEADER_LEN;

impl Default for Packer {
    fn default() -> Self {
        Self::new()
    }
}

impl Packer {
    /// An empty packer.
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(MAX_RECORD);
        Self::reset(&mut buf);
        Self {
            buf,
            count: 0,
            scratch: Vec::new(),
        }
    }

    /// Adds one encoded envelope.
    ///
    /// # Errors
    ///
    /// Whatever `emit` returns; the packer is then empty.
    pub fn push<E>(
        &mut self,
        envelope: &[u8],
        emit: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.buf.len() + envelope.len() <= MAX_RECORD {
            self.buf.extend_from_slice(envelope);
            self.count += 1;
            return Ok(());
        }
        self.flush(emit)?;
        if PACK_START + envelope.len() <= MAX_RECORD {
            self.buf.extend_from_slice(envelope);
            self.count = 1;
            return Ok(());
        }
        self.emit_chunks(envelope, emit)
    }

    /// Emits the record being built, if any.
    ///
    /// # Errors
    ///
    /// Whatever `emit` returns; the packer is then empty.
    pub fn flush<E>(&mut self, emit: &mut impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        let result = match self.count {
            0 => Ok(()),
            1 => {
                // A lone envelope goes without a batch header: put the kind
                // byte just before it.
                let start = PACK_START - 1;
                if let Some(kind) = self.buf.get_mut(start) {
                    *kind = KIND_ENVELOPE;
                }
                emit(self.buf.get(start..).unwrap_or_default())
            }
            n => {
                finish_batch(&mut self.buf, 1, n);
                emit(&self.buf)
            }
        };
        Self::reset(&mut self.buf);
        self.count = 0;
        result
    }

    fn emit_chunks<E>(
        &mut self,
        envelope: &[u8],
        emit: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let total = u32::try_from(envelope.len()).unwrap_or(u32::MAX);
        let (first, mut rest) =
            envelope.split_at(envelope.len().min(MAX_RECORD - CHUNK_FIRST_HEADER));
        self.scratch.clear();
        self.scratch.push(KIND_CHUNK_FIRST);
        self.scratch.extend_from_slice(&total.to_be_bytes());
        self.scratch.extend_from_slice(first);
        emit(&self.scratch)?;
        // Continuations are raw data: sealed straight from the envelope.
        while !rest.is_empty() {
            let (part, tail) = rest.split_at(rest.len().min(MAX_RECORD));
            emit(part)?;
            rest = tail;
        }
        Ok(())
    }

    fn reset(buf: &mut Vec<u8>) {
        buf.clear();
        buf.push(KIND_ENVELOPE);
        begin_batch(buf);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::envelope::{Envelope, Target};

    fn pack_all(envelopes: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut records = Vec::new();
        let mut emit = |r: &[u8]| -> Result<(), ()> {
            records.push(r.to_vec());
            Ok(())
        };
        let mut packer = Packer::new();
        for e in envelopes {
            packer.push(e, &mut emit).unwrap();
        }
        packer.flush(&mut emit).unwrap();
        records
    }

    fn unpack_all(records: &[Vec<u8>], max: usize) -> Result<Vec<Vec<u8>>, RecordError> {
        let mut r = Reassembler::new(max);
        let mut out = Vec::new();
        for rec in records {
            assert!(rec.len() <= MAX_RECORD);
            if let Some(env) = r.handle_record(rec)? {
                match Envelope::decode(env.bytes()).unwrap() {
                    Envelope::Batch(items) => {
                        for item in items {
                            let mut v = Vec::new();
                            item.encode(&mut v);
                            out.push(v);
                        }
                    }
                    _ => out.push(env.bytes().to_vec()),
                }
            }
        }
        Ok(out)
    }

    fn tell(body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        Envelope::Tell {
            to: Target::Id(1),
            tag: "t",
            body,
        }
        .encode(&mut v);
        v
    }

    #[test]
    fn queued_envelopes_share_one_record() {
        let envs: Vec<_> = (0..100u8).map(|i| tell(&[i; 64])).collect();
        let records = pack_all(&envs);
        assert_eq!(records.len(), 1);
        assert_eq!(unpack_all(&records, 1 << 20).unwrap(), envs);
    }

    #[test]
    fn lone_envelope_goes_without_batch_header() {
        let env = tell(&[7; 10]);
        let records = pack_all(std::slice::from_ref(&env));
        assert_eq!(records, vec![[&[KIND_ENVELOPE][..], &env].concat()]);
    }

    #[test]
    fn ten_mib_envelope_is_chunked_and_reassembled() {
        let env = tell(&vec![0xab; 10 << 20]);
        let records = pack_all(std::slice::from_ref(&env));
        assert!(records.len() > 160);
        assert_eq!(unpack_all(&records, 16 << 20).unwrap(), vec![env]);
    }

    #[test]
    fn chunked_envelope_over_limit_is_rejected_at_first_chunk() {
        let env = tell(&vec![0; 200_000]);
        let records = pack_all(std::slice::from_ref(&env));
        let mut r = Reassembler::new(100_000);
        assert!(matches!(
            r.handle_record(&records[0]),
            Err(RecordError::TooLarge { max: 100_000, .. })
        ));
    }

    #[test]
    fn announced_total_is_not_allocated_up_front() {
        let mut rec = vec![KIND_CHUNK_FIRST];
        rec.extend_from_slice(&u32::MAX.to_be_bytes());
        rec.extend_from_slice(&[0; 10]);
        let mut r = Reassembler::new(usize::MAX);
        assert_eq!(r.handle_record(&rec), Ok(None));
        let (buf, _) = r.partial.as_ref().unwrap();
        assert!(buf.capacity() <= 1 << 20);
    }

    #[test]
    fn continuation_beyond_announced_total_is_rejected() {
        let env = tell(&vec![0; 100_000]);
        let records = pack_all(std::slice::from_ref(&env));
        let mut r = Reassembler::new(1 << 20);
        r.handle_record(&records[0]).unwrap();
        assert!(r.in_chunk());
        let too_much = vec![0u8; 100_001 - records[0].len() + 16];
        assert!(matches!(
            r.handle_record(&too_much),
            Err(RecordError::Sequence {
                reason: "more data than announced"
            })
        ));
    }

    #[test]
    fn empty_continuation_is_rejected() {
        let env = tell(&vec![0; 100_000]);
        let records = pack_all(std::slice::from_ref(&env));
        let mut r = Reassembler::new(1 << 20);
        r.handle_record(&records[0]).unwrap();
        assert!(matches!(
            r.handle_record(&[]),
            Err(RecordError::Sequence { .. })
        ));
    }

    #[test]
    fn empty_and_unknown_records_are_rejected() {
        let mut r = Reassembler::new(10);
        assert_eq!(
            r.handle_record(&[]),
            Err(RecordError::UnknownKind { kind: None })
        );
        assert_eq!(
            r.handle_record(&[9]),
            Err(RecordError::UnknownKind { kind: Some(9) })
        );
    }

    proptest! {
        #[test]
        fn any_mix_of_sizes_round_trips(sizes in proptest::collection::vec(prop_oneof![0usize..200, 65_480usize..65_530, 60_000usize..70_000, 130_000usize..140_000], 1..12)) {
            let envs: Vec<_> = sizes.iter().enumerate().map(|(i, n)| tell(&vec![i as u8; *n])).collect();
            let records = pack_all(&envs);
            prop_assert_eq!(unpack_all(&records, 1 << 20).unwrap(), envs);
        }
    }
}
