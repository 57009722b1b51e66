//! Operators with two factors: the operator certificate proven in the
//! Noise handshake, and a TOTP code (RFC 6238: SHA-1, 6 digits, 30 s).
//!
//! - **Seeds.** An operator's TOTP seed is derived from the cluster's TOTP
//!   secret (`totp.secret`, sealed; held by the CA and the heads) and the
//!   operator certificate's serial and name ([`seed`]): `swarm operator add`
//!   prints it as an `otpauth://` URI and a QR code; the heads derive it
//!   again to check a code. Nothing per operator is stored, and a new
//!   certificate is a new seed.
//! - **Login.** An operator sends `Login { code }` to any member
//!   ([`SESSION_ACTOR`]); the member forwards it to the head leader, which
//!   accepts a code within ±1 step once (the step used is committed in
//!   the Raft log, so a new leader refuses it too) and locks an operator,
//!   and a source address, out after five failures in a row, for 30 s
//!   doubling up to an hour ([`guard`]). It answers a session token
//!   (HMAC-SHA256 under a key derived from the TOTP secret, bound to the
//!   operator's node id and serial, valid for [`SESSION`]).
//! - **Sessions.** Every node learns the session key with its lease grants
//!   (node certificates only). An operator node presents its token as the
//!   first message on every new link; until a link has a valid session,
//!   the receiving node refuses everything from an operator certificate
//!   (`operator` or `admin` without a node role) but `Login` and `Present`.

pub mod delegate;
pub mod guard;
pub mod password;
pub(crate) mod session;
pub(crate) mod wire;

use std::time::Duration;

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use swarm_protocol::NodeId;
use zeroize::Zeroizing;

pub use delegate::Behalf;
pub use session::SESSION_ACTOR;

/// How long a session lasts after a login.
pub const SESSION: Duration = Duration::from_secs(15 * 60);
/// TOTP step, seconds.
pub const STEP: u64 = 30;
/// TOTP digits.
pub const DIGITS: usize = 6;
/// Steps accepted either side of the current one.
pub const SKEW: u64 = 1;

/// An operator's TOTP seed: 20 bytes (the SHA-1 key size authenticator
/// apps expect) from the cluster's TOTP secret, the certificate's serial
/// and its name.
pub fn seed(totp_secret: &[u8; 32], serial: u64, name: &str) -> Zeroizing<[u8; 20]> {
    let mut out = Zeroizing::new([0u8; 20]);
    let hk = Hkdf::<Sha256>::new(Some(b"swarm operator totp v1"), totp_secret);
    let mut info = serial.to_be_bytes().to_vec();
    info.extend_from_slice(name.as_bytes());
    // 20 bytes is within HKDF-SHA256's limit.
    let _ = hk.expand(&info, &mut out[..]);
    out
}

fn totp(seed: &[u8; 20]) -> Option<totp_rs::TOTP> {
    totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, DIGITS, 0, STEP, seed.to_vec()).ok()
}

/// The code for `seed` at Unix time `unix` (seconds).
pub fn code_at(seed: &[u8; 20], unix: u64) -> String {
    totp(seed).map(|t| t.generate(unix)).unwrap_or_default()
}

/// The step a code belongs to, if it is the code of a step within
/// ±[`SKEW`] of `unix`'s.
pub(crate) fn matching_step(seed: &[u8; 20], code: &str, unix: u64) -> Option<u64> {
    let now = unix / STEP;
    let t = totp(seed)?;
    (now.saturating_sub(SKEW)..=now + SKEW).find(|step| {
        let expected = t.generate(step * STEP);
        // Constant-time comparison of equal-length codes.
        expected.len() == code.len()
            && expected
                .bytes()
                .zip(code.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

/// The `otpauth://` URI an authenticator app enrolls from.
pub fn otpauth_uri(seed: &[u8; 20], issuer: &str, name: &str) -> String {
    let secret = totp_rs::Secret::Raw(seed.to_vec()).to_encoded();
    let secret = match &secret {
        totp_rs::Secret::Encoded(s) => s.clone(),
        totp_rs::Secret::Raw(_) => String::new(),
    };
    format!(
        "otpauth://totp/{}:{}?secret={secret}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP}",
        escape(issuer),
        escape(name),
        escape(issuer)
    )
}

/// Percent-encodes all but unreserved URI characters.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The key session tokens are signed with, from the TOTP secret.
pub(crate) fn session_key(totp_secret: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    let hk = Hkdf::<Sha256>::new(Some(b"swarm operator session v1"), totp_secret);
    let _ = hk.expand(b"session key", &mut out[..]);
    out
}

/// A session key as a lease grant carries it (never printed).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionKey(#[serde(with = "serde_bytes")] Vec<u8>);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    pub(crate) fn of(key: &[u8; 32]) -> Self {
        Self(key.to_vec())
    }

    /// The key, if it has 32 bytes.
    pub(crate) fn bytes(&self) -> Option<[u8; 32]> {
        self.0[..].try_into().ok()
    }
}

impl Drop for SessionKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// Proof that an operator logged in: bound to its node id and certificate
/// serial, valid until `expires_ms` (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionToken {
    /// The operator's node id.
    pub node: NodeId,
    /// Its certificate serial.
    pub serial: u64,
    /// When it ends, Unix milliseconds.
    pub expires_ms: u64,
    /// HMAC-SHA256 of the above under the session key.
    #[serde(with = "serde_bytes")]
    pub mac: Vec<u8>,
}

fn mac_of(key: &[u8; 32], node: NodeId, serial: u64, expires_ms: u64) -> Option<Hmac<Sha256>> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    mac.update(b"swarm session v1");
    mac.update(node.as_bytes());
    mac.update(&serial.to_be_bytes());
    mac.update(&expires_ms.to_be_bytes());
    Some(mac)
}

impl SessionToken {
    /// A token for `node` with `serial`, until `expires_ms`.
    pub(crate) fn sign(key: &[u8; 32], node: NodeId, serial: u64, expires_ms: u64) -> Self {
        let mac = mac_of(key, node, serial, expires_ms)
            .map(|m| m.finalize().into_bytes().to_vec())
            .unwrap_or_default();
        Self {
            node,
            serial,
            expires_ms,
            mac,
        }
    }

    /// Whether it is genuine, for `node` with `serial`, and not expired at
    /// `now_ms`.
    pub(crate) fn verify(&self, key: &[u8; 32], node: NodeId, serial: u64, now_ms: u64) -> bool {
        self.node == node
            && self.serial == serial
            && now_ms < self.expires_ms
            && mac_of(key, self.node, self.serial, self.expires_ms)
                .is_some_and(|m| m.verify_slice(&self.mac).is_ok())
    }
}

/// A session of a node's admin API, opened for an operator who proved its
/// certificate and TOTP code over the mesh ([`crate::Node::admin_login`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminSession {
    /// The bearer token (`Authorization: Bearer TOKEN`).
    pub token: String,
    /// Where the admin API listens (`https://...`).
    pub url: String,
    /// When the session ends, Unix milliseconds.
    pub expires_ms: u64,
}

/// What a node's admin API registers ([`crate::Node::serve_admin_sessions`])
/// to open sessions for operators proven over the mesh.
#[derive(Debug, actix::Message)]
#[rtype(result = "Result<AdminSession, String>")]
pub struct OpenAdminSession {
    /// The operator.
    pub behalf: Behalf,
}

/// Unix milliseconds now.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether certificate `roles` include an operator role (`operator` or
/// `admin`): those count only after a login, whatever other roles the
/// certificate has.
pub fn is_operator(roles: &[String]) -> bool {
    roles
        .iter()
        .any(|r| crate::policy::OPERATOR_ROLES.contains(&r.as_str()))
}

#[cfg(test)]
mod tests;
