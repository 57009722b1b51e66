//! Identities and trust: a node's static X25519 key and the [`NodeId`]
//! derived from it, the cluster CA (ed25519) that signs [`Certificate`]s, and
//! the [`TrustStore`] that verifies them. Key material comes in as bytes
//! from the caller (this crate draws no randomness); files are left to
//! others.

use std::collections::HashSet;
use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::codec::{self, CodecError, Reader};

/// The longest node name accepted in a certificate, in bytes.
pub const MAX_CERT_NAME: usize = 128;
/// The most roles one certificate may carry.
pub const MAX_ROLES: usize = 16;
/// The largest encoded certificate accepted.
pub const MAX_CERT_LEN: usize = 4096;

const CERT_VERSION: u64 = 1;
const SIGNING_CONTEXT: &[u8] = b"swarm-cert-v1\0";

/// A node's identity: derived from its static Noise public key, so it
/// cannot be claimed without the matching private key.
///
/// Serde: 16 bytes in binary formats (the wire, the Raft store), a hex
/// string in human-readable ones (JSON for operators), which also accept
/// the 16 numbers older JSON holds.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId([u8; 16]);

/// The binary form, exactly what a derived `NodeId` encodes to.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename = "NodeId")]
struct RawNodeId([u8; 16]);

impl serde::Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex(&self.0))
        } else {
            serde::Serialize::serialize(&RawNodeId(self.0), serializer)
        }
    }
}

impl<'de> serde::Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !deserializer.is_human_readable() {
            return <RawNodeId as serde::Deserialize>::deserialize(deserializer)
                .map(|raw| Self(raw.0));
        }
        /// Hex, or the 16 numbers of the derived form.
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Text {
            Hex(String),
            Bytes([u8; 16]),
        }
        match <Text as serde::Deserialize>::deserialize(deserializer)? {
            Text::Hex(text) => text.parse().map_err(|_| {
                serde::de::Error::custom(format_args!("node id {text:?} is not 32 hex digits"))
            }),
            Text::Bytes(bytes) => Ok(Self(bytes)),
        }
    }
}

impl NodeId {
    /// The id of the node whose static X25519 public key is `key`.
    pub fn from_static_key(key: &[u8; 32]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"swarm-node-id\0")
            .chain_update(key)
            .finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
        Self(id)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Rebuilds an id from raw bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The first eight hex digits, for logs.
    pub fn short(&self) -> String {
        hex(self.0.get(..4).unwrap_or_default())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

impl std::str::FromStr for NodeId {
    type Err = CertError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = unhex(s).ok_or(CertError::Malformed {
            reason: "node id is not hex",
        })?;
        let id: [u8; 16] = bytes.try_into().map_err(|_| CertError::Malformed {
            reason: "node id is not 16 bytes",
        })?;
        Ok(Self(id))
    }
}

/// A node's static X25519 key pair: its Noise identity.
#[derive(Clone)]
pub struct NodeKey {
    /// The private scalar; handed to the Noise handshake.
    secret: [u8; 32],
    /// The public key; bound into the certificate.
    public: [u8; 32],
}

impl NodeKey {
    /// The key pair whose private key is `secret` (32 random bytes from the caller).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        let public = curve25519_dalek::MontgomeryPoint::mul_base_clamped(secret).to_bytes();
        Self { secret, public }
    }

    /// The private key bytes.
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The public key bytes.
    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }

    /// The node id this key proves.
    pub fn node_id(&self) -> NodeId {
        NodeId::from_static_key(&self.public)
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey({})", self.node_id().short())
    }
}

/// What a certificate binds: who the node is and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertBody {
    /// Unique per CA; the revocation list names serials.
    pub serial: u64,
    /// The node id; MUST be derived from `static_key`.
    pub node_id: NodeId,
    /// A human name for logs and lookups (e.g. `n1`).
    pub name: String,
    /// The node's static X25519 public key, checked against the handshake.
    pub static_key: [u8; 32],
    /// Roles such as `head`, `worker`, `operator`.
    pub roles: Vec<String>,
    /// Start of validity, seconds since the Unix epoch.
    pub not_before: u64,
    /// End of validity (exclusive), seconds since the Unix epoch.
    pub not_after: u64,
    /// The public key of the CA that signed it, to tell "foreign CA" from "forged".
    pub issuer: [u8; 32],
}

/// A certificate: a body and the CA's signature over its encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The decoded body.
    body: CertBody,
    /// The exact bytes that were signed.
    signed: Vec<u8>,
    /// The ed25519 signature.
    signature: [u8; 64],
}

/// Why a certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The bytes are not a certificate.
    #[error("malformed certificate: {reason}")]
    Malformed {
        /// What was wrong.
        reason: &'static str,
    },
    /// The certificate was issued by another CA.
    #[error("certificate issued by a foreign CA")]
    ForeignCa,
    /// The signature does not verify under our CA.
    #[error("certificate signature is invalid")]
    BadSignature,
    /// The validity window has not started.
    #[error("certificate not valid before {not_before} (now {now})")]
    NotYetValid {
        /// Start of validity.
        not_before: u64,
        /// The time of the check.
        now: u64,
    },
    /// The validity window has ended.
    #[error("certificate expired at {not_after} (now {now})")]
    Expired {
        /// End of validity.
        not_after: u64,
        /// The time of the check.
        now: u64,
    },
    /// The serial is on the revocation list.
    #[error("certificate serial {serial} is revoked")]
    Revoked {
        /// The revoked serial.
        serial: u64,
    },
    /// The node id is not derived from the certificate's key.
    #[error("certificate node id does not match its key")]
    NodeIdMismatch,
    /// The certificate's key is not the key the handshake proved.
    #[error("certificate key differs from the key proven in the handshake")]
    KeyMismatch,
    /// The CA public key is not a valid ed25519 point.
    #[error("invalid CA public key")]
    InvalidCaKey,
}

impl From<CodecError> for CertError {
    fn from(_: CodecError) -> Self {
        CertError::Malformed {
            reason: "invalid encoding",
        }
    }
}

impl Certificate {
    /// The certified facts.
    pub fn body(&self) -> &CertBody {
        &self.body
    }

    /// The wire form: `[version, body, signature]`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.signed.len() + 80);
        codec::write_array_len(&mut out, 3);
        codec::write_u64(&mut out, CERT_VERSION);
        codec::write_bin(&mut out, &self.signed);
        codec::write_bin(&mut out, &self.signature);
        out
    }

    /// Decodes a certificate. Decoding checks structure only; trust is
    /// [`TrustStore::verify`]'s job.
    ///
    /// # Errors
    ///
    /// [`CertError::Malformed`] for anything but one well-formed certificate.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CertError> {
        if bytes.len() > MAX_CERT_LEN {
            return Err(CertError::Malformed {
                reason: "certificate too large",
            });
        }
        let mut r = Reader::new(bytes);
        if r.read_array_len(3)? != 3 || r.read_u64()? != CERT_VERSION {
            return Err(CertError::Malformed {
                reason: "unknown certificate version",
            });
        }
        let signed = r.read_bin()?;
        let signature: [u8; 64] = r.read_bin()?.try_into().map_err(|_| CertError::Malformed {
            reason: "signature is not 64 bytes",
        })?;
        r.finish()?;
        Ok(Self {
            body: decode_body(signed)?,
            signed: signed.to_vec(),
            signature,
        })
    }
}

/// The cluster certificate authority's signing key.
pub struct CaKey {
    /// The ed25519 signing key.
    signing: SigningKey,
}

impl CaKey {
    /// The CA whose private key is `seed` (32 random bytes from the caller).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The private seed, for storage.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public key that verifiers trust.
    pub fn public(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// Signs `body`, setting its issuer to this CA.
    pub fn issue(&self, mut body: CertBody) -> Certificate {
        body.issuer = self.public();
        let signed = encode_body(&body);
        let signature = self.signing.sign(&signing_input(&signed)).to_bytes();
        Certificate {
            body,
            signed,
            signature,
        }
    }
}

impl fmt::Debug for CaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CaKey({})",
            hex(self.public().get(..4).unwrap_or_default())
        )
    }
}

/// What a node trusts: one CA and a revocation list. The list can grow
/// while the store is shared (a running node learns revocations).
#[derive(Debug)]
pub struct TrustStore {
    /// The CA's verifying key.
    ca: VerifyingKey,
    /// Revoked serials.
    revoked: std::sync::RwLock<HashSet<u64>>,
}

impl Clone for TrustStore {
    fn clone(&self) -> Self {
        Self {
            ca: self.ca,
            revoked: std::sync::RwLock::new(self.revoked_serials()),
        }
    }
}

impl TrustStore {
    /// Trusts the CA with public key `ca`.
    ///
    /// # Errors
    ///
    /// [`CertError::InvalidCaKey`] if the bytes are not an ed25519 public key.
    pub fn new(ca: [u8; 32]) -> Result<Self, CertError> {
        Ok(Self {
            ca: VerifyingKey::from_bytes(&ca).map_err(|_| CertError::InvalidCaKey)?,
            revoked: std::sync::RwLock::new(HashSet::new()),
        })
    }

    /// Adds serials to the revocation list; returns how many were new.
    pub fn revoke(&self, serials: impl IntoIterator<Item = u64>) -> usize {
        let mut revoked = self
            .revoked
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        serials.into_iter().filter(|s| revoked.insert(*s)).count()
    }

    /// Whether `serial` is revoked.
    pub fn is_revoked(&self, serial: u64) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&serial)
    }

    /// The revoked serials.
    pub fn revoked_serials(&self) -> HashSet<u64> {
        self.revoked
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Checks `cert` at time `now` (Unix seconds): issuer, signature,
    /// validity, revocation, id derivation, and, when the handshake proved a
    /// static key, that it is the certificate's key.
    ///
    /// # Errors
    ///
    /// The first failed check, as a [`CertError`].
    pub fn verify(
        &self,
        cert: &Certificate,
        now: u64,
        proven_key: Option<&[u8]>,
    ) -> Result<(), CertError> {
        let body = &cert.body;
        if body.issuer != self.ca.to_bytes() {
            return Err(CertError::ForeignCa);
        }
        let signature = ed25519_dalek::Signature::from_bytes(&cert.signature);
        self.ca
            .verify_strict(&signing_input(&cert.signed), &signature)
            .map_err(|_| CertError::BadSignature)?;
        if now < body.not_before {
            return Err(CertError::NotYetValid {
                not_before: body.not_before,
                now,
            });
        }
        if now >= body.not_after {
            return Err(CertError::Expired {
                not_after: body.not_after,
                now,
            });
        }
        if self.is_revoked(body.serial) {
            return Err(CertError::Revoked {
                serial: body.serial,
            });
        }
        if NodeId::from_static_key(&body.static_key) != body.node_id {
            return Err(CertError::NodeIdMismatch);
        }
        if proven_key.is_some_and(|k| k != body.static_key) {
            return Err(CertError::KeyMismatch);
        }
        Ok(())
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing into a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Bytes from hex (either case); `None` if `s` is not hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}

fn signing_input(signed: &[u8]) -> Vec<u8> {
    [SIGNING_CONTEXT, signed].concat()
}

fn encode_body(body: &CertBody) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    codec::write_array_len(&mut out, 8);
    codec::write_u64(&mut out, body.serial);
    codec::write_bin(&mut out, body.node_id.as_bytes());
    codec::write_str(&mut out, &body.name);
    codec::write_bin(&mut out, &body.static_key);
    codec::write_array_len(&mut out, u32::try_from(body.roles.len()).unwrap_or(0));
    for role in &body.roles {
        codec::write_str(&mut out, role);
    }
    codec::write_u64(&mut out, body.not_before);
    codec::write_u64(&mut out, body.not_after);
    codec::write_bin(&mut out, &body.issuer);
    out
}

fn decode_body(bytes: &[u8]) -> Result<CertBody, CertError> {
    let mut r = Reader::new(bytes);
    if r.read_array_len(8)? != 8 {
        return Err(CertError::Malformed {
            reason: "wrong number of fields",
        });
    }
    let serial = r.read_u64()?;
    let node_id = NodeId(fixed(r.read_bin()?, "node id is not 16 bytes")?);
    let name = r.read_str(MAX_CERT_NAME)?.to_owned();
    let static_key = fixed(r.read_bin()?, "static key is not 32 bytes")?;
    let count = r.read_array_len(MAX_ROLES)?;
    let mut roles = Vec::with_capacity(count);
    for _ in 0..count {
        roles.push(r.read_str(MAX_CERT_NAME)?.to_owned());
    }
    let not_before = r.read_u64()?;
    let not_after = r.read_u64()?;
    let issuer = fixed(r.read_bin()?, "issuer is not 32 bytes")?;
    r.finish()?;
    Ok(CertBody {
        serial,
        node_id,
        name,
        static_key,
        roles,
        not_before,
        not_after,
        issuer,
    })
}

fn fixed<const N: usize>(bytes: &[u8], reason: &'static str) -> Result<[u8; N], CertError> {
    bytes
        .try_into()
        .map_err(|_| CertError::Malformed { reason })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    pub(crate) fn body_for(key: &NodeKey, name: &str) -> CertBody {
        CertBody {
            serial: 1,
            node_id: key.node_id(),
            name: name.into(),
            static_key: *key.public(),
            roles: vec!["worker".into()],
            not_before: 1_000,
            not_after: 2_000,
            issuer: [0; 32],
        }
    }

    #[test]
    fn node_id_encodes_as_its_16_bytes_on_the_wire_and_reads_back() {
        let id = NodeId([0xab; 16]);
        let wire = rmp_serde::to_vec(&id).unwrap();
        assert_eq!(wire, rmp_serde::to_vec(&[0xabu8; 16]).unwrap());
        assert_eq!(rmp_serde::from_slice::<NodeId>(&wire).unwrap(), id);
    }

    #[test]
    fn node_id_reads_from_hex_or_old_numbers_in_human_readable_formats() {
        use serde::de::value::{Error, SeqDeserializer, StrDeserializer};
        use serde::Deserialize as _;

        let id = NodeKey::from_secret([2; 32]).node_id();
        let text = id.to_string();
        let hex = StrDeserializer::<Error>::new(&text);
        assert_eq!(NodeId::deserialize(hex).unwrap(), id);
        let numbers = SeqDeserializer::<_, Error>::new(id.as_bytes().iter().copied());
        assert_eq!(NodeId::deserialize(numbers).unwrap(), id);
        let bad = StrDeserializer::<Error>::new("not hex");
        assert!(NodeId::deserialize(bad).is_err());
    }

    #[test]
    fn issued_certificate_verifies_and_round_trips() {
        let ca = CaKey::from_seed([1; 32]);
        let key = NodeKey::from_secret([2; 32]);
        let cert = ca.issue(body_for(&key, "n1"));
        let decoded = Certificate::from_bytes(&cert.to_bytes()).unwrap();
        assert_eq!(decoded, cert);
        let trust = TrustStore::new(ca.public()).unwrap();
        trust.verify(&decoded, 1_500, Some(key.public())).unwrap();
    }

    #[test]
    fn each_refusal_has_its_own_error() {
        let ca = CaKey::from_seed([1; 32]);
        let key = NodeKey::from_secret([2; 32]);
        let cert = ca.issue(body_for(&key, "n1"));
        let trust = TrustStore::new(ca.public()).unwrap();

        let foreign = CaKey::from_seed([3; 32]).issue(body_for(&key, "n1"));
        assert_eq!(
            trust.verify(&foreign, 1_500, None),
            Err(CertError::ForeignCa)
        );
        assert!(matches!(
            trust.verify(&cert, 999, None),
            Err(CertError::NotYetValid { .. })
        ));
        assert!(matches!(
            trust.verify(&cert, 2_000, None),
            Err(CertError::Expired { .. })
        ));
        assert_eq!(
            trust.verify(&cert, 1_500, Some(NodeKey::from_secret([4; 32]).public())),
            Err(CertError::KeyMismatch)
        );
        let mut wrong_id = body_for(&key, "n1");
        wrong_id.node_id = NodeKey::from_secret([5; 32]).node_id();
        assert_eq!(
            trust.verify(&ca.issue(wrong_id), 1_500, None),
            Err(CertError::NodeIdMismatch)
        );
        trust.revoke([1]);
        assert_eq!(
            trust.verify(&cert, 1_500, None),
            Err(CertError::Revoked { serial: 1 })
        );
    }

    #[test]
    fn tampered_body_fails_signature() {
        let ca = CaKey::from_seed([1; 32]);
        let key = NodeKey::from_secret([2; 32]);
        let mut body = body_for(&key, "n1");
        let cert = ca.issue(body.clone());
        // Re-encode a body with another name under the original signature.
        body.name = "evil".into();
        body.issuer = ca.public();
        let forged = Certificate {
            signed: encode_body(&body),
            body,
            signature: cert.signature,
        };
        let trust = TrustStore::new(ca.public()).unwrap();
        assert_eq!(
            trust.verify(&forged, 1_500, None),
            Err(CertError::BadSignature)
        );
    }

    #[test]
    fn node_id_hex_round_trips() {
        let id = NodeKey::from_secret([9; 32]).node_id();
        assert_eq!(id.to_string().parse::<NodeId>().unwrap(), id);
        assert_eq!(id.short().len(), 8);
    }

    #[test]
    fn oversized_certificate_is_rejected_unread() {
        assert!(matches!(
            Certificate::from_bytes(&vec![0; MAX_CERT_LEN + 1]),
            Err(CertError::Malformed { .. })
        ));
    }

    proptest! {
        #[test]
        fn certificates_round_trip(serial in any::<u64>(), name in ".{0,40}", roles in proptest::collection::vec("[a-z]{1,10}", 0..5), nb in any::<u64>(), na in any::<u64>()) {
            let ca = CaKey::from_seed([7; 32]);
            let key = NodeKey::from_secret([8; 32]);
            let cert = ca.issue(CertBody { serial, node_id: key.node_id(), name, static_key: *key.public(), roles, not_before: nb, not_after: na, issuer: [0; 32] });
            prop_assert_eq!(Certificate::from_bytes(&cert.to_bytes()).unwrap(), cert);
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_certificate_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Certificate::from_bytes(&bytes);
        }
    }
}
