//! The two halves of a session: [`SendHalf`] packs and seals envelopes
//! into frames; [`RecvHalf`] opens frames into envelopes, answers pings and
//! turns a goodbye into a close, so the driver only dispatches tells, asks
//! and replies.

use crate::envelope::{Control, Envelope};
use crate::noise::{CipherError, RecvCipher, SendCipher};
use crate::record::{Assembled, Packer, Reassembler, RecordError};

/// The sending half of a session.
pub struct SendHalf {
    cipher: SendCipher,
    packer: Packer,
}

impl std::fmt::Debug for SendHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendHalf").finish_non_exhaustive()
    }
}

impl SendHalf {
    /// The half sealing with `cipher`.
    pub fn new(cipher: SendCipher) -> Self {
        Self {
            cipher,
            packer: Packer::new(),
        }
    }

    /// Queues one encoded envelope; sealed frames are appended to `out`
    /// as records fill up (call [`SendHalf::flush`] when the batch ends).
    ///
    /// # Errors
    ///
    /// [`CipherError`] if the cipher cannot seal (nonces exhausted): the
    /// link MUST close.
    pub fn push(&mut self, envelope: &[u8], out: &mut Vec<u8>) -> Result<(), CipherError> {
        let cipher = &mut self.cipher;
        self.packer
            .push(envelope, &mut |r| cipher.seal_frame(r, out))
    }

    /// Seals what is still packed into `out`.
    ///
    /// # Errors
    ///
    /// As [`SendHalf::push`].
    pub fn flush(&mut self, out: &mut Vec<u8>) -> Result<(), CipherError> {
        let cipher = &mut self.cipher;
        self.packer.flush(&mut |r| cipher.seal_frame(r, out))
    }

    /// An encoded ping, pong or goodbye.
    pub fn control(control: &Control) -> Vec<u8> {
        let mut buf = Vec::with_capacity(16);
        Envelope::Control(control.clone()).encode(&mut buf);
        buf
    }
}

/// A tell, ask or reply to dispatch, or a goodbye; see [`RecvHalf::classify`].
#[derive(Debug, PartialEq)]
pub enum Inbound<'a> {
    /// A tell, ask or reply to dispatch (never a control or a batch).
    Envelope(Envelope<'a>),
    /// The peer said goodbye: close the link, with its reason.
    Goodbye(String),
}

/// The receiving half of a session.
pub struct RecvHalf {
    cipher: RecvCipher,
    reassembler: Reassembler,
    /// Pongs owed to the peer, by nonce, for the driver to send.
    pongs: Vec<u64>,
}

impl std::fmt::Debug for RecvHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvHalf")
            .field("pongs", &self.pongs.len())
            .finish_non_exhaustive()
    }
}

impl RecvHalf {
    /// The half opening with `cipher`, keeping envelopes up to `max_message` bytes.
    pub fn new(cipher: RecvCipher, max_message: usize) -> Self {
        Self {
            cipher,
            reassembler: Reassembler::new(max_message),
            pongs: Vec::new(),
        }
    }

    /// Opens one frame payload; returns an envelope (or a batch, or an
    /// [`Assembled::Oversized`] one: see [`crate::envelope::peek`]) when
    /// one is complete. Decode it with [`Envelope::decode`] and pass each
    /// envelope (each item of a batch) to [`RecvHalf::classify`].
    ///
    /// # Errors
    ///
    /// [`RecordError`]: the peer broke the protocol; the link MUST close.
    pub fn handle_frame<'s>(
        &mut self,
        payload: &[u8],
        scratch: &'s mut Vec<u8>,
    ) -> Result<Option<Assembled<'s>>, RecordError> {
        self.reassembler
            .handle_frame(&mut self.cipher, payload, scratch)
    }

    /// Absorbs what is the session's business (pings are answered through
    /// [`RecvHalf::poll_pong`], unknown controls dropped) and hands back
    /// what is the driver's (pongs among them, to time round trips).
    pub fn classify<'a>(&mut self, envelope: Envelope<'a>) -> Option<Inbound<'a>> {
        match envelope {
            Envelope::Control(Control::Ping { nonce }) => {
                // Bounded: a peer pinging faster than we answer is owed
                // no more than a few pongs.
                if self.pongs.len() < 16 {
                    self.pongs.push(nonce);
                }
                None
            }
            Envelope::Control(Control::Goodbye { reason }) => Some(Inbound::Goodbye(reason)),
            // Address discovery and round trips are the driver's business.
            control @ Envelope::Control(
                Control::Observed { .. } | Control::DialBack { .. } | Control::Pong { .. },
            ) => Some(Inbound::Envelope(control)),
            Envelope::Batch(_) => None,
            other => Some(Inbound::Envelope(other)),
        }
    }

    /// The next pong owed to the peer, encoded.
    pub fn poll_pong(&mut self) -> Option<Vec<u8>> {
        let nonce = self.pongs.pop()?;
        Some(SendHalf::control(&Control::Pong { nonce }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Target;
    use crate::frame::{decode_frame, Decoded};
    use crate::record::MAX_NOISE_MESSAGE;

    /// A connected pair of halves (a's sender, b's receiver).
    fn pair() -> (SendHalf, RecvHalf) {
        let (a, b) = crate::noise::tests::established_pair();
        (SendHalf::new(a.sender), RecvHalf::new(b.receiver, 1 << 20))
    }

    fn deliver(frames: &[u8], rx: &mut RecvHalf) -> Vec<String> {
        let mut seen = Vec::new();
        let mut rest = frames;
        let mut scratch = Vec::new();
        while let Ok(Decoded::Frame { payload, consumed }) = decode_frame(rest, MAX_NOISE_MESSAGE) {
            if let Some(assembled) = rx.handle_frame(payload, &mut scratch).unwrap() {
                let items = match Envelope::decode(assembled.bytes()).unwrap() {
                    Envelope::Batch(items) => items,
                    one => vec![one],
                };
                for item in items {
                    if let Some(inbound) = rx.classify(item) {
                        seen.push(format!("{inbound:?}"));
                    }
                }
            }
            rest = &rest[consumed..];
        }
        seen
    }

    #[test]
    fn pings_are_answered_by_the_half_and_user_envelopes_reach_the_driver() {
        let (mut tx, mut rx) = pair();
        let mut out = Vec::new();
        tx.push(&SendHalf::control(&Control::Ping { nonce: 5 }), &mut out)
            .unwrap();
        let mut tell = Vec::new();
        Envelope::Tell {
            to: Target::Name("a"),
            tag: "t",
            body: b"x",
        }
        .encode(&mut tell);
        tx.push(&tell, &mut out).unwrap();
        tx.flush(&mut out).unwrap();
        let seen = deliver(&out, &mut rx);
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(seen[0].contains("Tell"), "{seen:?}");
        let pong = rx.poll_pong().unwrap();
        assert_eq!(
            Envelope::decode(&pong).unwrap(),
            Envelope::Control(Control::Pong { nonce: 5 })
        );
        assert_eq!(rx.poll_pong(), None);
    }

    #[test]
    fn a_goodbye_reaches_the_driver_with_its_reason() {
        let (mut tx, mut rx) = pair();
        let mut out = Vec::new();
        let bye = SendHalf::control(&Control::Goodbye {
            reason: "idle".into(),
        });
        tx.push(&bye, &mut out).unwrap();
        tx.flush(&mut out).unwrap();
        assert_eq!(
            deliver(&out, &mut rx),
            vec!["Goodbye(\"idle\")".to_string()]
        );
    }
}
