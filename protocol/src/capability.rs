//! Operator capabilities: what the head group signs after an operator's
//! login (certificate and TOTP code, or password and code). A capability
//! binds the operator's certificate (name, serial, node id, roles), where
//! it logged in from, the Raft term that issued it and a short validity
//! window, and optionally the one node allowed to act for the operator
//! with it (the node serving the admin API it logged in to).
//!
//! ```text
//! capability = version u8 (1) | claims length u16 BE | claims (MessagePack)
//!            | ed25519 signature (64 bytes) over everything before it
//! ```
//!
//! The signing key is the head group's ([`CapabilityKey`]); nodes verify
//! with its public half and take an operator's identity only from claims
//! that verified. Checking the serial against revocations is the caller's.

use std::net::IpAddr;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::identity::{NodeId, MAX_CERT_NAME, MAX_ROLES};

/// The longest encoded capability accepted.
pub const MAX_CAPABILITY_LEN: usize = 2048;
/// The longest validity a capability may claim, milliseconds (15 min).
pub const MAX_LIFETIME_MS: u64 = 15 * 60 * 1000;
/// How far in the future an issue time may lie (clock skew), milliseconds.
pub const MAX_SKEW_MS: u64 = 60 * 1000;
/// The encoding's version.
const VERSION: u8 = 1;
/// Version byte and claims length.
const HEADER: usize = 3;
/// An ed25519 signature.
const SIGNATURE: usize = 64;

/// Who a capability is for and what it allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The operator certificate's name.
    pub name: String,
    /// Its serial (checked against revocations on every use).
    pub serial: u64,
    /// Its node id (the certificate's static key).
    pub node: NodeId,
    /// Its roles.
    pub roles: Vec<String>,
    /// Where it logged in from.
    pub source: IpAddr,
    /// The Raft term of the leader that issued it.
    pub term: u64,
    /// When it was issued, Unix milliseconds.
    pub issued_ms: u64,
    /// When it ends, Unix milliseconds.
    pub expires_ms: u64,
    /// The node allowed to act for the operator with it (its admin API);
    /// `None`: only the operator's own links may present it.
    pub delegate: Option<NodeId>,
}

/// Why a capability was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapabilityError {
    /// Not a capability: too long, truncated, trailing bytes, bad claims.
    #[error("malformed capability: {0}")]
    Malformed(&'static str),
    /// The signature is not the head group's.
    #[error("the capability is not signed by the head group")]
    BadSignature,
    /// It ended.
    #[error("the capability expired: log in again")]
    Expired,
    /// Its window is longer than [`MAX_LIFETIME_MS`] or starts in the future.
    #[error("the capability's validity window is not acceptable")]
    BadWindow,
}

/// The head group's signing key (an ed25519 key). Held by heads only.
pub struct CapabilityKey(SigningKey);

impl std::fmt::Debug for CapabilityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CapabilityKey(..)")
    }
}

impl CapabilityKey {
    /// The key from a 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// Its public half, which nodes verify with.
    pub fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// Signs `claims`.
    ///
    /// # Errors
    ///
    /// [`CapabilityError::Malformed`] if the claims do not fit
    /// [`MAX_CAPABILITY_LEN`] or break the certificate limits.
    pub fn sign(&self, claims: &Claims) -> Result<Capability, CapabilityError> {
        check_claims(claims)?;
        let body = rmp_serde::to_vec(claims).map_err(|_| CapabilityError::Malformed("claims"))?;
        let len = u16::try_from(body.len()).map_err(|_| CapabilityError::Malformed("too long"))?;
        let mut bytes = Vec::with_capacity(HEADER + body.len() + SIGNATURE);
        bytes.push(VERSION);
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(&body);
        let signature = self.0.sign(&bytes);
        bytes.extend_from_slice(&signature.to_bytes());
        if bytes.len() > MAX_CAPABILITY_LEN {
            return Err(CapabilityError::Malformed("too long"));
        }
        Ok(Capability(bytes))
    }
}

/// A signed capability, as it travels. Its bytes are only trusted once
/// [`Capability::open`] verified them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability(#[serde(with = "serde_bytes")] Vec<u8>);

impl std::fmt::Debug for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Capability({} bytes)", self.0.len())
    }
}

impl Capability {
    /// A capability from its bytes (not verified yet).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// Its bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The claims as written, **not verified**: for the holder of its own
    /// capability to see when it ends (never to decide anything on).
    pub fn unverified_claims(&self) -> Option<Claims> {
        let body = self.0.get(HEADER..self.0.len().checked_sub(SIGNATURE)?)?;
        decode_claims(body).ok()
    }

    /// Verifies the signature with the head group's public key `key` and
    /// the validity window at `now_ms`, and answers the claims.
    ///
    /// # Errors
    ///
    /// [`CapabilityError`]: malformed, not signed with `key`, expired, or
    /// a window that is too long or starts in the future.
    pub fn open(&self, key: &[u8; 32], now_ms: u64) -> Result<Claims, CapabilityError> {
        let claims = self.verify(key)?;
        if now_ms >= claims.expires_ms {
            return Err(CapabilityError::Expired);
        }
        Ok(claims)
    }

    /// Verifies the signature and the window's shape, not its end.
    ///
    /// # Errors
    ///
    /// As [`Capability::open`], but never [`CapabilityError::Expired`].
    pub fn verify(&self, key: &[u8; 32]) -> Result<Claims, CapabilityError> {
        let bytes = &self.0;
        if bytes.len() > MAX_CAPABILITY_LEN {
            return Err(CapabilityError::Malformed("too long"));
        }
        let (signed, signature) = bytes
            .split_at_checked(bytes.len().saturating_sub(SIGNATURE))
            .ok_or(CapabilityError::Malformed("truncated"))?;
        let (header, body) = signed
            .split_at_checked(HEADER)
            .ok_or(CapabilityError::Malformed("truncated"))?;
        let [version, hi, lo] = header else {
            return Err(CapabilityError::Malformed("truncated"));
        };
        if *version != VERSION {
            return Err(CapabilityError::Malformed("unknown version"));
        }
        if usize::from(u16::from_be_bytes([*hi, *lo])) != body.len() {
            return Err(CapabilityError::Malformed("length does not match"));
        }
        let signature: [u8; SIGNATURE] = signature
            .try_into()
            .map_err(|_| CapabilityError::Malformed("truncated"))?;
        let key = VerifyingKey::from_bytes(key).map_err(|_| CapabilityError::BadSignature)?;
        key.verify(signed, &Signature::from_bytes(&signature))
            .map_err(|_| CapabilityError::BadSignature)?;
        let claims = decode_claims(body)?;
        if claims.expires_ms <= claims.issued_ms
            || claims.expires_ms - claims.issued_ms > MAX_LIFETIME_MS
        {
            return Err(CapabilityError::BadWindow);
        }
        Ok(claims)
    }

    /// Verifies as [`Capability::open`] and also refuses an issue time
    /// more than [`MAX_SKEW_MS`] after `now_ms`.
    ///
    /// # Errors
    ///
    /// As [`Capability::open`].
    pub fn open_checked(&self, key: &[u8; 32], now_ms: u64) -> Result<Claims, CapabilityError> {
        let claims = self.open(key, now_ms)?;
        if claims.issued_ms > now_ms.saturating_add(MAX_SKEW_MS) {
            return Err(CapabilityError::BadWindow);
        }
        Ok(claims)
    }
}

/// Decodes and checks a capability's claims (after its signature verified).
pub(crate) fn decode_claims(body: &[u8]) -> Result<Claims, CapabilityError> {
    if body.len() > MAX_CAPABILITY_LEN {
        return Err(CapabilityError::Malformed("too long"));
    }
    let claims: Claims =
        rmp_serde::from_slice(body).map_err(|_| CapabilityError::Malformed("claims"))?;
    check_claims(&claims)?;
    Ok(claims)
}

fn check_claims(claims: &Claims) -> Result<(), CapabilityError> {
    if claims.name.is_empty() || claims.name.len() > MAX_CERT_NAME {
        return Err(CapabilityError::Malformed("name"));
    }
    if claims.roles.len() > MAX_ROLES || claims.roles.iter().any(|r| r.len() > MAX_CERT_NAME) {
        return Err(CapabilityError::Malformed("roles"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            name: "alice".into(),
            serial: 7,
            node: NodeId::from_bytes([3; 16]),
            roles: vec!["operator".into(), "admin".into()],
            source: IpAddr::from([127, 0, 0, 1]),
            term: 2,
            issued_ms: 1_000_000,
            expires_ms: 1_000_000 + MAX_LIFETIME_MS,
            delegate: None,
        }
    }

    #[test]
    fn a_signed_capability_opens_with_the_group_key_only() {
        let key = CapabilityKey::from_seed(&[1; 32]);
        let other = CapabilityKey::from_seed(&[2; 32]);
        let cap = key.sign(&claims()).unwrap();
        assert_eq!(cap.open(&key.public(), 1_000_001).unwrap(), claims());
        assert_eq!(
            cap.open(&other.public(), 1_000_001),
            Err(CapabilityError::BadSignature)
        );
        assert_eq!(
            cap.open(&key.public(), 1_000_000 + MAX_LIFETIME_MS),
            Err(CapabilityError::Expired)
        );
        assert_eq!(
            cap.open_checked(&key.public(), 1_000_000 - MAX_SKEW_MS - 1),
            Err(CapabilityError::BadWindow)
        );
    }

    #[test]
    fn every_flipped_byte_and_every_cut_is_refused() {
        let key = CapabilityKey::from_seed(&[1; 32]);
        let cap = key.sign(&claims()).unwrap();
        let bytes = cap.as_bytes().to_vec();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1 << (i % 8);
            assert!(Capability::from_bytes(b)
                .open(&key.public(), 1_000_001)
                .is_err());
        }
        for n in 0..bytes.len() {
            let cut = Capability::from_bytes(bytes[..n].to_vec());
            assert!(cut.open(&key.public(), 1_000_001).is_err());
        }
    }

    #[test]
    fn a_window_longer_than_the_limit_is_refused_even_if_signed() {
        let key = CapabilityKey::from_seed(&[1; 32]);
        let mut long = claims();
        long.expires_ms += 1;
        let cap = key.sign(&long).unwrap();
        assert_eq!(
            cap.open(&key.public(), 1_000_001),
            Err(CapabilityError::BadWindow)
        );
    }
}
