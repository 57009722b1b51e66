//! Records: what one decrypted Noise transport message holds. A record is a
//! welcome (the responder's confirmation that the handshake was accepted),
//! one envelope (possibly a batch), or the first chunk of an envelope too
//! large for one Noise message, announcing its total length. Until that
//! total is reached, every following message is raw continuation data with
//! no header, so large envelopes are sealed from, and opened into, their
//! final buffers without extra copies. [`Packer`] builds records on the sending side and
//! [`Reassembler`] turns them back into envelopes, with a bound on the size
//! of a reassembled envelope that is checked before anything is allocated.
//! An envelope over the bound is authenticated and counted but not kept:
//! only its first [`OVERSIZED_HEAD`] bytes come back
//! ([`Assembled::Oversized`]), so the receiver can refuse that message alone
//! (for example, answer an ask with an error) and keep the link.

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
/// Bytes kept of an envelope over the limit: enough for its kind and
/// correlation ([`crate::envelope::peek`]).
pub const OVERSIZED_HEAD: usize = 64;

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
    /// The envelope was larger than the limit: it was authenticated and
    /// dropped. Its first bytes identify it ([`crate::envelope::peek`]).
    Oversized {
        /// Its first [`OVERSIZED_HEAD`] bytes (fewer if it was shorter).
        head: Vec<u8>,
        /// Its whole length.
        total: usize,
    },
}

impl Assembled<'_> {
    /// The envelope's bytes; for an oversized one, the head kept of it.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Assembled::Borrowed(b) => b,
            Assembled::Owned(v) => v,
            Assembled::Oversized { head, .. } => head,
        }
    }
}

/// A chunked envelope in progress.
#[derive(Debug)]
enum Partial {
    /// Within the limit: kept in full.
    Collect {
        /// The data so far.
        buf: Vec<u8>,
        /// The announced total.
        total: usize,
    },
    /// Over the limit: authenticated and counted, only the head kept.
    Discard {
        /// The first bytes.
        head: Vec<u8>,
        /// Bytes received so far.
        received: usize,
        /// The announced total.
        total: usize,
    },
}

impl Partial {
    /// Bytes still to come.
    fn room(&self) -> usize {
        match self {
            Partial::Collect { buf, total } => total.saturating_sub(buf.len()),
            Partial::Discard {
                received, total, ..
            } => total.saturating_sub(*received),
        }
    }
}

/// Rebuilds envelopes from records, one chunked envelope at a time.
#[derive(Debug)]
pub struct Reassembler {
    /// The largest envelope accepted, so a peer cannot make us buffer without bound.
    max_envelope: usize,
    /// The envelope being reassembled.
    partial: Option<Partial>,
}

impl Reassembler {
    /// A reassembler that keeps envelopes up to `max_envelope` bytes (larger
    /// ones come back as [`Assembled::Oversized`]).
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
        let Some(partial) = self.partial.as_mut() else {
            let plain = cipher
                .open(payload, scratch)
                .map_err(|_| RecordError::Decrypt)?;
            return self.handle_record(plain);
        };
        let len = payload.len().saturating_sub(TAG_LEN);
        check_continuation(len, partial.room())?;
        match partial {
            Partial::Collect { buf, .. } => {
                let start = buf.len();
                // Room for the tag too, so the cipher decrypts in place without a copy.
                buf.resize(start + payload.len(), 0);
                let opened = cipher.open_into(payload, buf.get_mut(start..).unwrap_or_default());
                match opened {
                    Ok(n) => buf.truncate(start + n),
                    Err(_) => return Err(RecordError::Decrypt),
                }
            }
            Partial::Discard { received, .. } => {
                // Authenticated like any other message, then dropped.
                let plain = cipher
                    .open(payload, scratch)
                    .map_err(|_| RecordError::Decrypt)?;
                *received += plain.len();
            }
        }
        Ok(self.take_if_complete())
    }

    /// Takes one record's plaintext (or continuation data, inside a chunked
    /// envelope); returns an envelope when one is complete.
    ///
    /// # Errors
    ///
    /// [`RecordError`] when the record is malformed or breaks the chunk
    /// rules. The link MUST be closed after an error.
    pub fn handle_record<'a>(
        &mut self,
        plain: &'a [u8],
    ) -> Result<Option<Assembled<'a>>, RecordError> {
        if let Some(partial) = self.partial.as_mut() {
            check_continuation(plain.len(), partial.room())?;
            match partial {
                Partial::Collect { buf, .. } => buf.extend_from_slice(plain),
                Partial::Discard { received, .. } => *received += plain.len(),
            }
            return Ok(self.take_if_complete());
        }
        match Record::decode(plain)? {
            Record::Welcome => Err(RecordError::Sequence {
                reason: "welcome after the handshake",
            }),
            Record::Envelope(bytes) if bytes.len() > self.max_envelope => {
                Ok(Some(Assembled::Oversized {
                    head: head_of(bytes),
                    total: bytes.len(),
                }))
            }
            Record::Envelope(bytes) => Ok(Some(Assembled::Borrowed(bytes))),
            Record::ChunkFirst { total, data } => {
                if total + PACK_START <= MAX_RECORD || data.len() > total {
                    return Err(RecordError::Sequence {
                        reason: "first chunk inconsistent with its total",
                    });
                }
                self.partial = Some(if total > self.max_envelope {
                    Partial::Discard {
                        head: head_of(data),
                        received: data.len(),
                        total,
                    }
                } else {
                    // Grow with the data actually received, not with the announcement.
                    let mut buf = Vec::with_capacity(total.min(1 << 20));
                    buf.extend_from_slice(data);
                    Partial::Collect { buf, total }
                });
                Ok(self.take_if_complete())
            }
        }
    }

    fn take_if_complete<'a>(&mut self) -> Option<Assembled<'a>> {
        if self.partial.as_ref()?.room() > 0 {
            return None;
        }
        match self.partial.take()? {
            Partial::Collect { buf, .. } => Some(Assembled::Owned(buf)),
            Partial::Discard { head, total, .. } => Some(Assembled::Oversized { head, total }),
        }
    }
}

fn head_of(data: &[u8]) -> Vec<u8> {
    data.get(..OVERSIZED_HEAD).unwrap_or(data).to_vec()
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
    fn envelope_over_limit_is_dropped_whole_and_the_next_one_still_arrives() {
        let big = tell(&vec![0; 200_000]);
        let small = tell(b"next");
        let records = pack_all(&[big.clone(), small.clone()]);
        let mut r = Reassembler::new(100_000);
        let mut out = Vec::new();
        for rec in &records {
            match r.handle_record(rec).unwrap() {
                Some(Assembled::Oversized { head, total }) => {
                    assert_eq!(total, big.len());
                    assert_eq!(head, big[..OVERSIZED_HEAD]);
                    out.push(None);
                }
                Some(other) => out.push(Some(other.bytes().to_vec())),
                None => {}
            }
        }
        assert_eq!(out, vec![None, Some(small)]);
        // Nothing of the dropped envelope was kept beyond its head.
        assert!(r.partial.is_none());
    }

    #[test]
    fn single_record_envelope_over_a_small_limit_is_oversized() {
        let env = tell(&[1; 500]);
        let records = pack_all(std::slice::from_ref(&env));
        let mut r = Reassembler::new(100);
        match r.handle_record(&records[0]).unwrap() {
            Some(Assembled::Oversized { total, head }) => {
                assert_eq!(total, env.len());
                assert_eq!(head.len(), OVERSIZED_HEAD);
            }
            other => panic!("expected Oversized, got {other:?}"),
        }
    }

    #[test]
    fn oversized_envelope_is_not_allocated() {
        let mut rec = vec![KIND_CHUNK_FIRST];
        rec.extend_from_slice(&u32::MAX.to_be_bytes());
        rec.extend_from_slice(&[0; 70_000]);
        let mut r = Reassembler::new(1 << 20);
        assert_eq!(r.handle_record(&rec), Ok(None));
        match r.partial.as_ref().unwrap() {
            Partial::Discard { head, received, .. } => {
                assert_eq!(head.len(), OVERSIZED_HEAD);
                assert_eq!(*received, 70_000);
            }
            Partial::Collect { .. } => panic!("an oversized envelope is being collected"),
        }
    }

    #[test]
    fn announced_total_is_not_allocated_up_front() {
        let mut rec = vec![KIND_CHUNK_FIRST];
        rec.extend_from_slice(&u32::MAX.to_be_bytes());
        rec.extend_from_slice(&[0; 10]);
        let mut r = Reassembler::new(usize::MAX);
        assert_eq!(r.handle_record(&rec), Ok(None));
        let Some(Partial::Collect { buf, .. }) = r.partial.as_ref() else {
            panic!("not collecting");
        };
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
