//! Operators' passwords for the admin API: an argon2id hash made where the
//! operator types the password (`swarm operator passwd`), stored by the
//! heads (committed in the Raft log, so every head checks it), never the
//! password itself. The hash's cost is bounded on arrival, so a forged
//! one cannot make the head leader spend seconds or gigabytes per login.

use serde::{Deserialize, Serialize};
use swarm_protocol::sealed::keyring::{
    passphrase_kek, passphrase_kek_in, KdfParams, KdfScratch, SALT_LEN,
};

/// Fewest characters of a password.
pub const MIN_LEN: usize = 12;
/// Most bytes of a password.
pub const MAX_LEN: usize = 1024;
/// Most characters of a TOTP code typed with a password.
const MAX_CODE_LEN: usize = 16;

/// Whether a password login's fields fit what any login can be: a name
/// of a certificate, a password of at most [`MAX_LEN`] bytes, a short
/// code. One that does not is refused before anything is checked or
/// remembered (a megabyte-long name must not become a lockout key).
#[must_use]
pub fn login_fits(name: &str, password: &str, code: &str) -> bool {
    !name.is_empty()
        && name.len() <= swarm_protocol::identity::MAX_CERT_NAME
        && password.len() <= MAX_LEN
        && code.len() <= MAX_CODE_LEN
}

/// Most memory a stored hash may cost to check, KiB (64 MiB).
const MAX_M_KIB: u32 = 64 * 1024;
/// Most passes.
const MAX_T: u32 = 8;
/// Most lanes.
const MAX_P: u32 = 4;

/// A password's argon2id hash with its salt and cost.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordHash {
    m_kib: u32,
    t: u32,
    p: u32,
    #[serde(with = "serde_bytes")]
    salt: Vec<u8>,
    #[serde(with = "serde_bytes")]
    hash: Vec<u8>,
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PasswordHash(argon2id m={} t={} p={})",
            self.m_kib, self.t, self.p
        )
    }
}

impl PasswordHash {
    /// Hashes `password` with a fresh salt (argon2id, 19 MiB, 2 passes).
    ///
    /// # Errors
    ///
    /// If the password is shorter than [`MIN_LEN`] characters or longer
    /// than [`MAX_LEN`] bytes, or no randomness is available.
    pub fn new(password: &str) -> Result<Self, String> {
        if password.chars().count() < MIN_LEN {
            return Err(format!("a password needs at least {MIN_LEN} characters"));
        }
        if password.len() > MAX_LEN {
            return Err(format!("a password has at most {MAX_LEN} bytes"));
        }
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt).map_err(|e| format!("no randomness: {e}"))?;
        let params = KdfParams::DEFAULT;
        let hash = passphrase_kek(password.as_bytes(), &salt, params).map_err(|e| e.to_string())?;
        Ok(Self {
            m_kib: params.m_kib,
            t: params.t,
            p: params.p,
            salt: salt.to_vec(),
            hash: hash.to_vec(),
        })
    }

    /// A hash nobody knows a password of (random salt and bytes) at the
    /// default cost, made once per process: what a login for a name that
    /// has no password is checked against, so that it takes as long as
    /// one for a name that has.
    pub fn dummy() -> &'static Self {
        static DUMMY: std::sync::OnceLock<PasswordHash> = std::sync::OnceLock::new();
        DUMMY.get_or_init(|| {
            let mut salt = vec![0; SALT_LEN];
            let mut hash = vec![0; 32];
            // Without randomness the bytes are still no password's hash in
            // practice; the cost is what matters.
            let _ = getrandom::fill(&mut salt);
            let _ = getrandom::fill(&mut hash);
            Self {
                m_kib: KdfParams::DEFAULT.m_kib,
                t: KdfParams::DEFAULT.t,
                p: KdfParams::DEFAULT.p,
                salt,
                hash,
            }
        })
    }

    /// Why a hash that arrived is not acceptable: its cost out of bounds,
    /// or a salt or hash of the wrong size.
    ///
    /// # Errors
    ///
    /// The reason.
    pub fn check(&self) -> Result<(), String> {
        if self.m_kib > MAX_M_KIB || self.t > MAX_T || self.p > MAX_P {
            return Err(format!(
                "the password hash costs too much to check (at most {MAX_M_KIB} KiB, {MAX_T} passes, {MAX_P} lanes)"
            ));
        }
        if self.salt.len() != SALT_LEN || self.hash.len() != 32 {
            return Err("the password hash is malformed".into());
        }
        Ok(())
    }

    /// Whether `password` is the one hashed (constant time in the hash).
    /// Costs one argon2id derivation (~60 ms at the defaults): call it off
    /// an actor's thread.
    pub fn verify(&self, password: &str) -> bool {
        self.verify_in(password, &mut KdfScratch::default())
    }

    /// As [`PasswordHash::verify`], in `scratch`'s memory (a thread that
    /// checks passwords again and again keeps one).
    pub fn verify_in(&self, password: &str, scratch: &mut KdfScratch) -> bool {
        if self.check().is_err() || password.len() > MAX_LEN {
            return false;
        }
        let Ok(salt) = <[u8; SALT_LEN]>::try_from(&self.salt[..]) else {
            return false;
        };
        let params = KdfParams {
            m_kib: self.m_kib,
            t: self.t,
            p: self.p,
        };
        match passphrase_kek_in(password.as_bytes(), &salt, params, scratch) {
            Ok(derived) => {
                derived
                    .iter()
                    .zip(&self.hash)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_and_another_does_not() {
        let hash = PasswordHash::new("correct horse battery").unwrap();
        assert!(hash.verify("correct horse battery"));
        assert!(!hash.verify("correct horse battery!"));
        assert!(!hash.verify(""));
    }

    #[test]
    fn short_passwords_and_costly_hashes_are_refused() {
        assert!(PasswordHash::new("short").unwrap_err().contains("at least"));
        let mut hash = PasswordHash::new("correct horse battery").unwrap();
        hash.m_kib = 1024 * 1024;
        assert!(hash.check().unwrap_err().contains("costs too much"));
        assert!(!hash.verify("correct horse battery"));
        let mut hash = PasswordHash::new("correct horse battery").unwrap();
        hash.salt.pop();
        assert!(hash.check().is_err());
    }

    #[test]
    fn overlong_login_fields_do_not_fit() {
        assert!(login_fits("alice", "correct horse battery", "123456"));
        assert!(!login_fits("", "correct horse battery", "123456"));
        assert!(!login_fits(&"a".repeat(129), "x", "123456"));
        assert!(!login_fits("alice", &"x".repeat(MAX_LEN + 1), "123456"));
        assert!(!login_fits("alice", "x", &"1".repeat(17)));
    }

    #[test]
    fn the_dummy_costs_what_a_real_hash_costs_and_verifies_nothing() {
        let real = PasswordHash::new("correct horse battery").unwrap();
        let dummy = PasswordHash::dummy();
        assert_eq!(
            (dummy.m_kib, dummy.t, dummy.p),
            (real.m_kib, real.t, real.p)
        );
        assert!(dummy.check().is_ok());
        assert!(!dummy.verify("correct horse battery"));
        assert!(!dummy.verify(""));
    }
}
