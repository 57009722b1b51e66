//! Sealing gossip datagrams with AES-256-GCM under the cluster's gossip key.
//!
//! ```text
//! datagram = version u8 (2) | nonce (12 random bytes) | ciphertext | tag (16)
//! plaintext = sent_at u64 (Unix milliseconds, big-endian) | message
//! ```
//!
//! The associated data binds the version. The sender's clock reading and
//! the nonce let a receiver refuse replayed datagrams ([`super::replay`]). A [`KeyRing`] holds up to
//! [`KeyRing::MAX_KEYS`] keys: datagrams are sealed with the primary key and
//! opened with any key in the ring, so an operator rotates a key by adding
//! the new key everywhere, then making it primary everywhere, then removing
//! the old one, without downtime (as memberlist does).
//!
//! The caller draws the nonce: this crate draws no randomness of its own.
//! Random 96-bit nonces stay far from collision for the number of datagrams
//! a gossip key seals before it is rotated.

use std::fmt;

use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};

/// The version byte of a sealed datagram.
pub const SEAL_VERSION: u8 = 2;
/// Nonce length.
pub const NONCE_LEN: usize = 12;
/// Tag length.
pub const TAG_LEN: usize = 16;
/// Length of the sending time inside the ciphertext.
pub const SENT_AT_LEN: usize = 8;
/// Bytes a sealed datagram carries beyond its message.
pub const SEAL_OVERHEAD: usize = 1 + NONCE_LEN + SENT_AT_LEN + TAG_LEN;

const AAD: &[u8] = b"swarm-gossip\x02";
const HKDF_SALT: &[u8] = b"swarm gossip key v1";

/// Why a datagram was not opened. Every case is dropped and counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Shorter than version, nonce and tag.
    #[error("datagram of {0} bytes is shorter than the seal overhead")]
    Truncated(usize),
    /// An unknown version byte.
    #[error("unknown gossip datagram version {0}")]
    Version(u8),
    /// No key in the ring opens it: tampered, or sealed under another key.
    #[error("no key in the ring opens the datagram")]
    Unauthentic,
    /// Larger than the configured maximum.
    #[error("datagram of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A key ring already holds [`KeyRing::MAX_KEYS`] keys.
    #[error("a key ring holds at most {0} keys")]
    RingFull(usize),
    /// The primary key cannot be removed; make another key primary first.
    #[error("the primary key cannot be removed")]
    RemovePrimary,
    /// Sent too long ago or too far in the future for the replay window
    /// (or the clocks of sender and receiver disagree by more than it).
    #[error("datagram sent {skew_ms} ms away from now, outside the replay window")]
    Stale {
        /// How far its sending time is from the receiver's clock, ms.
        skew_ms: u64,
    },
    /// Seen before within the replay window.
    #[error("replayed datagram")]
    Replayed,
}

/// An opened datagram: its message, when it was sent and its nonce.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    /// The message.
    pub message: &'a [u8],
    /// The sender's clock when it sealed the datagram, Unix milliseconds.
    pub sent_at_ms: u64,
    /// The datagram's nonce (unique per datagram).
    pub nonce: [u8; NONCE_LEN],
}

/// A 256-bit gossip key.
#[derive(Clone, PartialEq, Eq)]
pub struct GossipKey([u8; 32]);

impl GossipKey {
    /// The key derived from the cluster's join secret (HKDF-SHA256 with its
    /// own salt, the cluster name as info), so a cluster has one secret to
    /// hand out.
    pub fn derive(join_secret: &[u8; 32], cluster: &str) -> Self {
        let hkdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), join_secret);
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte output limit.
        if hkdf.expand(cluster.as_bytes(), &mut key).is_err() {
            unreachable!("HKDF output of 32 bytes is always valid");
        }
        Self(key)
    }

    /// A key from its raw bytes (a configured key).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A short, non-secret fingerprint for logs and listings.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::new()
            .chain_update(b"swarm-gossip-key-id\0")
            .chain_update(self.0)
            .finalize();
        crate::identity::hex(digest.get(..4).unwrap_or_default())
    }
}

impl fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GossipKey({})", self.fingerprint())
    }
}

/// The keys a node opens datagrams with; the first is the one it seals with.
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<(GossipKey, Aes256Gcm)>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|(key, _)| key.fingerprint()))
            .finish()
    }
}

impl KeyRing {
    /// The most keys a ring holds (each failed open costs one tag check per key).
    pub const MAX_KEYS: usize = 8;

    /// A ring holding only `primary`.
    pub fn new(primary: GossipKey) -> Self {
        let cipher = Aes256Gcm::new(GenericArray::from_slice(&primary.0));
        Self {
            keys: vec![(primary, cipher)],
        }
    }

    /// Accepts datagrams sealed with `key` too. Adding a key already held
    /// changes nothing.
    pub fn add(&mut self, key: GossipKey) -> Result<(), SealError> {
        if self.keys.iter().any(|(held, _)| held == &key) {
            return Ok(());
        }
        if self.keys.len() >= Self::MAX_KEYS {
            return Err(SealError::RingFull(Self::MAX_KEYS));
        }
        let cipher = Aes256Gcm::new(GenericArray::from_slice(&key.0));
        self.keys.push((key, cipher));
        Ok(())
    }

    /// Seals with `key` from now on (adding it if needed).
    pub fn use_key(&mut self, key: GossipKey) -> Result<(), SealError> {
        self.add(key.clone())?;
        if let Some(position) = self.keys.iter().position(|(held, _)| held == &key) {
            self.keys.swap(0, position);
        }
        Ok(())
    }

    /// Stops accepting `key`. Returns whether it was held.
    pub fn remove(&mut self, key: &GossipKey) -> Result<bool, SealError> {
        match self.keys.iter().position(|(held, _)| held == key) {
            Some(0) => Err(SealError::RemovePrimary),
            Some(position) => {
                self.keys.remove(position);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Fingerprints of the keys held, primary first.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys.iter().map(|(key, _)| key.fingerprint()).collect()
    }

    /// Writes the sealed form of `message` to `out` (cleared first), sent
    /// at `sent_at_ms` (the sender's clock, Unix milliseconds). `nonce` MUST
    /// be fresh (random) for every datagram.
    pub fn seal(&self, message: &[u8], nonce: [u8; NONCE_LEN], sent_at_ms: u64, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(message.len() + SEAL_OVERHEAD);
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sent_at_ms.to_be_bytes());
        out.extend_from_slice(message);
        let Some((_, cipher)) = self.keys.first() else {
            unreachable!("a key ring always holds its primary key");
        };
        let body = out.get_mut(1 + NONCE_LEN..).unwrap_or_default();
        match cipher.encrypt_in_place_detached(GenericArray::from_slice(&nonce), AAD, body) {
            Ok(tag) => out.extend_from_slice(&tag),
            // AES-GCM refuses only messages longer than 64 GiB.
            Err(_) => unreachable!("AES-GCM seals any datagram-sized input"),
        }
    }

    /// Opens `datagram` in place and returns what is inside it. Datagrams
    /// over `max_len` bytes are refused before any work. Whether it is
    /// fresh is for a [`super::replay::ReplayGuard`] to say.
    pub fn open<'a>(
        &self,
        datagram: &'a mut [u8],
        max_len: usize,
    ) -> Result<Opened<'a>, SealError> {
        let len = datagram.len();
        if len > max_len {
            return Err(SealError::TooLarge { len, max: max_len });
        }
        if len < SEAL_OVERHEAD {
            return Err(SealError::Truncated(len));
        }
        let (head, rest) = datagram.split_at_mut(1 + NONCE_LEN);
        let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let (version, nonce) = head.split_at(1);
        if version != [SEAL_VERSION] {
            return Err(SealError::Version(version.first().copied().unwrap_or(0)));
        }
        let mut nonce_bytes = [0u8; NONCE_LEN];
        nonce_bytes.copy_from_slice(nonce);
        let nonce = GenericArray::from_slice(nonce);
        let tag = GenericArray::from_slice(tag);
        // A failed tag check leaves `body` untouched, so every key sees the
        // original ciphertext.
        for (_, cipher) in &self.keys {
            if cipher
                .decrypt_in_place_detached(nonce, AAD, body, tag)
                .is_ok()
            {
                let Some((sent_at, message)) = body.split_first_chunk::<SENT_AT_LEN>() else {
                    // Authentic but shorter than the time: only a bug seals that.
                    return Err(SealError::Truncated(len));
                };
                return Ok(Opened {
                    message,
                    sent_at_ms: u64::from_be_bytes(*sent_at),
                    nonce: nonce_bytes,
                });
            }
        }
        Err(SealError::Unauthentic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> GossipKey {
        GossipKey::from_bytes([n; 32])
    }

    fn sealed(ring: &KeyRing, text: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        ring.seal(text, [7; NONCE_LEN], 1_000, &mut out);
        out
    }

    #[test]
    fn a_sealed_datagram_opens_and_hides_its_plaintext() {
        let ring = KeyRing::new(key(1));
        let text = b"member update: alive";
        let mut datagram = sealed(&ring, text);
        assert_eq!(datagram.len(), text.len() + SEAL_OVERHEAD);
        assert!(!datagram.windows(text.len()).any(|w| w == text));
        let opened = ring.open(&mut datagram, 2000).unwrap();
        assert_eq!(opened.message, text);
        assert_eq!((opened.sent_at_ms, opened.nonce), (1_000, [7; NONCE_LEN]));
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let ring = KeyRing::new(key(1));
        let clean = sealed(&ring, b"hello gossip");
        for byte in 0..clean.len() {
            let mut datagram = clean.clone();
            datagram[byte] ^= 0x01;
            assert!(ring.open(&mut datagram, 2000).is_err(), "byte {byte}");
        }
    }

    #[test]
    fn truncated_oversized_and_foreign_datagrams_are_refused() {
        let ring = KeyRing::new(key(1));
        let clean = sealed(&ring, b"payload");
        for cut in 0..clean.len() {
            assert!(ring.open(&mut clean[..cut].to_vec(), 2000).is_err());
        }
        assert_eq!(
            ring.open(&mut clean.clone(), 10),
            Err(SealError::TooLarge {
                len: clean.len(),
                max: 10
            })
        );
        let other = KeyRing::new(key(2));
        assert_eq!(
            other.open(&mut clean.clone(), 2000),
            Err(SealError::Unauthentic)
        );
    }

    #[test]
    fn keys_rotate_without_a_gap() {
        let mut old = KeyRing::new(key(1));
        let mut new = KeyRing::new(key(1));
        // Step 1: every node learns the new key; both still seal with the old.
        old.add(key(2)).unwrap();
        new.add(key(2)).unwrap();
        // Step 2: one node switches first; the other still opens its datagrams.
        new.use_key(key(2)).unwrap();
        assert!(old.open(&mut sealed(&new, b"x"), 100).is_ok());
        assert!(new.open(&mut sealed(&old, b"x"), 100).is_ok());
        // Step 3: both switched, the old key is removed everywhere.
        old.use_key(key(2)).unwrap();
        assert_eq!(old.remove(&key(1)), Ok(true));
        assert_eq!(old.remove(&key(2)), Err(SealError::RemovePrimary));
        let mut stale = KeyRing::new(key(1));
        assert_eq!(
            old.open(&mut sealed(&stale, b"x"), 100),
            Err(SealError::Unauthentic)
        );
        stale.use_key(key(2)).unwrap();
        assert!(old.open(&mut sealed(&stale, b"x"), 100).is_ok());
    }

    #[test]
    fn a_ring_is_bounded() {
        let mut ring = KeyRing::new(key(0));
        for n in 1..KeyRing::MAX_KEYS as u8 {
            ring.add(key(n)).unwrap();
        }
        assert_eq!(
            ring.add(key(99)),
            Err(SealError::RingFull(KeyRing::MAX_KEYS))
        );
        assert_eq!(ring.fingerprints().len(), KeyRing::MAX_KEYS);
    }

    #[test]
    fn the_derived_key_depends_on_secret_and_cluster() {
        let a = GossipKey::derive(&[1; 32], "prod");
        assert_eq!(a, GossipKey::derive(&[1; 32], "prod"));
        assert_ne!(a, GossipKey::derive(&[2; 32], "prod"));
        assert_ne!(a, GossipKey::derive(&[1; 32], "test"));
    }
}
