//! Operators with two factors: the operator certificate proven in the
//! Noise handshake, and a TOTP code (RFC 6238: SHA-1, 6 digits, 30 s).
//!
//! - **Seeds.** An operator's TOTP seed is derived from the cluster's TOTP
//!   secret (`totp.secret`, sealed; held by the CA and the heads) and the
//!   operator certificate's serial and name ([`seed`]): `swarm operator add`
//!   prints it as an `otpauth://` URI and a QR code; the heads derive it
//!   again to check a code. Nothing per operator is stored, and a new
//!   certificate is a new seed.
//! - **Login.** An operator asks any member ([`SESSION_ACTOR`]) where the
//!   heads are, then sends its code to the head leader over its own link
//!   (only to a node whose certificate has the head role), so who logs in
//!   is that link's certificate and only its holder can try (or fail) its
//!   codes. The leader accepts a code within ±1 step once (the step used is committed in
//!   the Raft log, so a new leader refuses it too) and locks an operator,
//!   and a source address, out after five failures in a row, for 30 s
//!   doubling up to an hour ([`guard`]). It answers a [`Capability`]: the
//!   operator's name, serial, node id and roles, the issuing term and a
//!   window of [`SESSION`], signed by the head group's ed25519 key
//!   ([`capability_key`], derived from the TOTP secret: heads hold it,
//!   workers never do).
//! - **Sessions.** Every node learns the group's public key with its lease
//!   grants, from head certificates only. An operator node presents its
//!   capability as the first message on every new link; until a link
//!   holds one that verifies (for that certificate, not revoked), the
//!   receiving node counts none of its operator roles
//!   ([`crate::policy`]).
//! - **Delegation.** A login through a node's admin API yields a
//!   capability naming that node as its delegate: only that node may act
//!   for the operator with it ([`delegate`]), and receivers take the
//!   operator's identity from the verified claims alone.

pub mod bucket;
pub mod checks;
pub mod delegate;
pub mod guard;
pub mod password;
pub(crate) mod sessions;

use std::time::Duration;

use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use swarm_protocol::capability::CapabilityKey;
use zeroize::Zeroizing;

pub use swarm_protocol::capability::{Capability, Claims};

pub use crate::remote::behalf::SESSION_ACTOR;
pub use delegate::Behalf;

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

/// The head group's capability signing key of `generation`, from the TOTP
/// secret (every head holds it; workers never do, and learn only its
/// public half). `swarm keys rotate --capabilities` moves the group to the
/// next generation (a Raft command), which ends every capability signed
/// before.
pub fn capability_key(totp_secret: &[u8; 32], generation: u64) -> CapabilityKey {
    let mut seed = Zeroizing::new([0u8; 32]);
    let hk = Hkdf::<Sha256>::new(Some(b"swarm operator capability v1"), totp_secret);
    let mut info = b"ed25519 seed".to_vec();
    info.extend_from_slice(&generation.to_be_bytes());
    let _ = hk.expand(&info, &mut seed[..]);
    CapabilityKey::from_seed(&seed)
}

/// Opens a capability as a node receiving it must: signed by the head
/// group (`key`, learnt from lease grants), not expired, a window of at
/// most 15 minutes, an operator's roles, and a serial that is not
/// revoked (`revoked`).
///
/// # Errors
///
/// The reason, for the sender.
pub(crate) fn open_capability(
    capability: &Capability,
    key: Option<[u8; 32]>,
    revoked: impl Fn(u64) -> bool,
) -> Result<Claims, String> {
    let key = key.ok_or_else(|| {
        "this node cannot check operator logins yet (no lease grant from a head): try again in a moment".to_owned()
    })?;
    let claims = capability
        .open_checked(&key, unix_ms())
        .map_err(|e| e.to_string())?;
    if !is_operator(&claims.roles) {
        return Err("the capability is not an operator's".into());
    }
    if revoked(claims.serial) {
        return Err(format!(
            "the certificate of {} (serial {}) is revoked",
            claims.name, claims.serial
        ));
    }
    Ok(claims)
}

/// A session of a node's admin API, opened for an operator who proved its
/// certificate and TOTP code over the mesh (`Node::admin_login`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminSession {
    /// The bearer token (`Authorization: Bearer TOKEN`).
    pub token: String,
    /// Where the admin API listens (`https://...`).
    pub url: String,
    /// When the session ends, Unix milliseconds.
    pub expires_ms: u64,
}

/// What a node's admin API registers (`Node::serve_admin_sessions`)
/// to open sessions for operators proven over the mesh.
#[derive(Debug, actix::Message)]
#[rtype(result = "Result<AdminSession, String>")]
pub struct OpenAdminSession {
    /// The operator.
    pub behalf: Behalf,
}

/// Unix milliseconds now.
pub(crate) use crate::inspect::unix_now_ms as unix_ms;

pub use crate::policy::is_operator;

#[cfg(test)]
mod tests;
