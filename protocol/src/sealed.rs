//! Sealed files: how Swarm keeps secrets and control-plane data at rest.
//!
//! Every sealed value, whatever it holds (a private key, the join secret,
//! the operators' TOTP secret, a Raft log entry or snapshot, an audit
//! record), has the same layout:
//!
//! ```text
//! sealed = magic "SWSEAL" | format u8 (1) | kind u8 | term u32 BE | nonce (12) | ciphertext | tag (16)
//! ```
//!
//! It is AES-256-GCM under the data key of `term` from a [`keyring`]; the
//! associated data is the 24-byte header followed by a context the caller
//! names (an audit record's index, say), so a value cannot be passed off as
//! another kind or moved to another place. A flipped byte anywhere fails
//! the tag; a truncated value, an unknown format, kind or term each have
//! their own error. The header says which term sealed a value, so old
//! values still open after a rotation and can be re-sealed under the new
//! term; the format byte lets a later version change the layout.
//!
//! Like the rest of this crate it draws no randomness and touches no file:
//! callers hand in nonces and keys ([`keyring`] has the file format of the
//! keys themselves).

pub mod keyring;

use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit};
use zeroize::Zeroizing;

/// The first bytes of every sealed value.
pub const MAGIC: &[u8; 6] = b"SWSEAL";
/// The layout this build writes and reads.
pub const FORMAT: u8 = 1;
/// Nonce length.
pub const NONCE_LEN: usize = 12;
/// Tag length.
pub const TAG_LEN: usize = 16;
/// Header length: magic, format, kind, term, nonce.
pub const HEADER_LEN: usize = MAGIC.len() + 1 + 1 + 4 + NONCE_LEN;
/// Bytes a sealed value carries beyond its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// What a sealed value holds. The kind is in the authenticated header: a
/// node key cannot be read back as a join secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// The CA's private key.
    CaKey,
    /// The cluster's join secret.
    JoinSecret,
    /// A node's (or operator's) private key.
    NodeKey,
    /// The secret operators' TOTP seeds derive from.
    TotpSecret,
    /// A Raft log entry, vote or snapshot of the control plane.
    Raft,
    /// An audit log record.
    Audit,
    /// The data keys inside a keyring, sealed under its root key.
    DataKeys,
    /// A TLS private key (the admin API's, or its CA's).
    TlsKey,
    /// An operator's capability from its last login (`swarm login`).
    Capability,
    /// The certificate serials a node refuses (revoked by the head
    /// group), kept so that a restarted node refuses them at once.
    Revocations,
}

impl Kind {
    /// Its byte in the header.
    pub fn byte(self) -> u8 {
        match self {
            Kind::CaKey => 1,
            Kind::JoinSecret => 2,
            Kind::NodeKey => 3,
            Kind::TotpSecret => 4,
            Kind::Raft => 5,
            Kind::Audit => 6,
            Kind::DataKeys => 7,
            Kind::TlsKey => 8,
            Kind::Capability => 9,
            Kind::Revocations => 10,
        }
    }

    /// The kind of a header byte.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => Kind::CaKey,
            2 => Kind::JoinSecret,
            3 => Kind::NodeKey,
            4 => Kind::TotpSecret,
            5 => Kind::Raft,
            6 => Kind::Audit,
            7 => Kind::DataKeys,
            8 => Kind::TlsKey,
            9 => Kind::Capability,
            10 => Kind::Revocations,
            _ => return None,
        })
    }

    /// What it is, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::CaKey => "a CA private key",
            Kind::JoinSecret => "a join secret",
            Kind::NodeKey => "a node private key",
            Kind::TotpSecret => "an operator TOTP secret",
            Kind::Raft => "control-plane (Raft) data",
            Kind::Audit => "an audit record",
            Kind::DataKeys => "keyring data keys",
            Kind::TlsKey => "a TLS private key",
            Kind::Capability => "an operator's login capability",
            Kind::Revocations => "a revocation list",
        }
    }
}

/// Why a sealed value did not open. Nothing of it is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealedError {
    /// Shorter than a header and a tag.
    #[error("is truncated: {len} bytes, a sealed value has at least {OVERHEAD}")]
    Truncated {
        /// Its length.
        len: usize,
    },
    /// It does not start with the magic bytes.
    #[error("is not a sealed swarm file (it lacks the SWSEAL header)")]
    NotSealed,
    /// A layout this build does not know.
    #[error("uses sealed format {found}; this build reads format {FORMAT}")]
    Format {
        /// The format byte.
        found: u8,
    },
    /// An unknown kind byte.
    #[error("holds an unknown kind of sealed value ({0})")]
    UnknownKind(u8),
    /// Another kind than the reader expected.
    #[error("holds {}, not {}", found.describe(), expected.describe())]
    WrongKind {
        /// What the reader expected.
        expected: Kind,
        /// What the header says.
        found: Kind,
    },
    /// Sealed under a data-key term the keyring does not hold.
    #[error("is sealed with data-key term {term}, which this keyring does not hold (it has terms 1 to {newest})")]
    UnknownTerm {
        /// The term in the header.
        term: u32,
        /// The keyring's newest term.
        newest: u32,
    },
    /// The tag did not verify: altered, damaged, or sealed by another keyring.
    #[error("failed authentication: it was altered or damaged, or another keyring sealed it")]
    Damaged,
}

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the value holds.
    pub kind: Kind,
    /// The data-key term that sealed it.
    pub term: u32,
    /// The nonce.
    pub nonce: [u8; NONCE_LEN],
}

impl Header {
    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let mut at = 0;
        for chunk in [
            &MAGIC[..],
            &[FORMAT, self.kind.byte()],
            &self.term.to_be_bytes(),
            &self.nonce,
        ] {
            for byte in chunk {
                if let Some(slot) = out.get_mut(at) {
                    *slot = *byte;
                }
                at += 1;
            }
        }
        out
    }
}

/// Reads the header of a sealed value without opening it.
///
/// # Errors
///
/// If it is truncated, not sealed, or of an unknown format or kind.
pub fn parse(sealed: &[u8]) -> Result<Header, SealedError> {
    if sealed.len() < MAGIC.len() || !sealed.starts_with(MAGIC) {
        return Err(if sealed.len() < OVERHEAD && MAGIC.starts_with(sealed) {
            SealedError::Truncated { len: sealed.len() }
        } else {
            SealedError::NotSealed
        });
    }
    let Some(head) = sealed.get(MAGIC.len()..HEADER_LEN) else {
        return Err(SealedError::Truncated { len: sealed.len() });
    };
    if sealed.len() < OVERHEAD {
        return Err(SealedError::Truncated { len: sealed.len() });
    }
    let (&format, rest) = head.split_first().ok_or(SealedError::NotSealed)?;
    if format != FORMAT {
        return Err(SealedError::Format { found: format });
    }
    let (&kind, rest) = rest.split_first().ok_or(SealedError::NotSealed)?;
    let kind = Kind::from_byte(kind).ok_or(SealedError::UnknownKind(kind))?;
    let (term, nonce) = rest.split_at_checked(4).ok_or(SealedError::NotSealed)?;
    Ok(Header {
        kind,
        term: u32::from_be_bytes(term.try_into().map_err(|_| SealedError::NotSealed)?),
        nonce: nonce.try_into().map_err(|_| SealedError::NotSealed)?,
    })
}

/// One AES-256-GCM data key. The key bytes are wiped when it is dropped.
#[derive(Clone)]
pub struct DataKey {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A data key from its 32 bytes.
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(GenericArray::from_slice(key)),
        }
    }

    /// Seals `plain` as `kind` under this key, which the keyring knows as
    /// `term`, bound to `context`.
    pub fn seal(
        &self,
        kind: Kind,
        term: u32,
        nonce: [u8; NONCE_LEN],
        context: &[u8],
        plain: &[u8],
    ) -> Vec<u8> {
        let header = Header { kind, term, nonce }.to_bytes();
        let mut out = Vec::with_capacity(OVERHEAD + plain.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(plain);
        let aad = associated(&header, context);
        let mut body = out.split_off(HEADER_LEN);
        // Encryption fails only past GCM's length limit (64 GiB).
        if let Ok(tag) =
            self.cipher
                .encrypt_in_place_detached(GenericArray::from_slice(&nonce), &aad, &mut body)
        {
            out.extend_from_slice(&body);
            out.extend_from_slice(&tag);
        }
        out
    }

    /// Opens a sealed value whose header was read with [`parse`] and whose
    /// term is this key's.
    ///
    /// # Errors
    ///
    /// [`SealedError::Damaged`] if the tag does not verify (and the
    /// header errors of [`parse`]).
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealedError> {
        let header = parse(sealed)?;
        let header_bytes = sealed.get(..HEADER_LEN).ok_or(SealedError::NotSealed)?;
        let body = sealed
            .get(HEADER_LEN..sealed.len() - TAG_LEN)
            .ok_or(SealedError::Truncated { len: sealed.len() })?;
        let tag = sealed
            .get(sealed.len() - TAG_LEN..)
            .ok_or(SealedError::Truncated { len: sealed.len() })?;
        let aad = associated(header_bytes, context);
        let mut plain = Zeroizing::new(body.to_vec());
        self.cipher
            .decrypt_in_place_detached(
                GenericArray::from_slice(&header.nonce),
                &aad,
                &mut plain,
                GenericArray::from_slice(tag),
            )
            .map_err(|_| SealedError::Damaged)?;
        Ok(plain)
    }
}

fn associated(header: &[u8], context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + context.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(context);
    aad
}

#[cfg(test)]
mod tests;
