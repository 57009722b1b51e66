//! The keyring file: a node's data keys, wrapped by a key from a
//! passphrase (argon2id) or from a key file. Vault's keyring model: the
//! data keys have terms; new values are sealed under the newest, and every
//! older term still opens what it sealed.
//!
//! ```text
//! keyring  = magic "SWKEYS" | format u8 (1) | wrap | check (8) | nonce (12) | root (32) | tag (16) | keys
//! wrap     = 1 | salt (16) | m_cost KiB u32 | t_cost u32 | p_cost u32    (argon2id passphrase)
//!          | 2                                                      (key file)
//! keys     = a sealed value (kind DataKeys, term 0) under the root key of:
//!            count u16 | (term u32 | key (32)) × count
//! ```
//!
//! All integers are big-endian. The wrapping key (KEK) comes from the
//! passphrase or the key file; it opens the root key (AES-256-GCM, the
//! header up to the nonce as associated data). The root key opens the data
//! keys. So changing the passphrase rewraps 32 bytes, and adding a data-key
//! term rewrites only the sealed key list. `check` is 8 bytes of
//! SHA-256 of the KEK: a wrong passphrase is told apart from a damaged file.
//!
//! Argon2 parameters read from a file are bounded ([`KdfParams::validate`])
//! so a forged keyring cannot make a node allocate gigabytes.

use std::collections::BTreeMap;

use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{DataKey, Kind, SealedError, NONCE_LEN, TAG_LEN};

/// The first bytes of a keyring file.
pub const MAGIC: &[u8; 6] = b"SWKEYS";
/// The keyring layout this build writes and reads.
pub const FORMAT: u8 = 1;
/// Salt length for the passphrase KDF.
pub const SALT_LEN: usize = 16;
/// Most data-key terms a keyring holds.
pub const MAX_TERMS: usize = 4096;
const CHECK_LEN: usize = 8;
const ROOT_LEN: usize = 32;

/// A 32-byte secret that is wiped when dropped.
pub type Secret = Zeroizing<[u8; 32]>;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory, KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KdfParams {
    /// What new keyrings use: 19 MiB, 2 passes, 1 lane (OWASP's minimum
    /// recommendation for argon2id, 2025); ~50-80 ms on one core here.
    pub const DEFAULT: KdfParams = KdfParams {
        m_kib: 19 * 1024,
        t: 2,
        p: 1,
    };

    /// The most memory a keyring may ask for: 1 GiB.
    pub const MAX_M_KIB: u32 = 1 << 20;

    /// Refuses parameters outside 8p KiB..=1 GiB, 1..=16 passes, 1..=16 lanes.
    ///
    /// # Errors
    ///
    /// A description of the parameter out of range.
    pub fn validate(&self) -> Result<(), KeyringError> {
        if !(1..=16).contains(&self.p) || !(1..=16).contains(&self.t) {
            return Err(KeyringError::Params(format!(
                "argon2id passes {} and lanes {} must be 1 to 16",
                self.t, self.p
            )));
        }
        if self.m_kib < 8 * self.p || self.m_kib > Self::MAX_M_KIB {
            return Err(KeyringError::Params(format!(
                "argon2id memory {} KiB must be {} KiB to 1 GiB",
                self.m_kib,
                8 * self.p
            )));
        }
        Ok(())
    }
}

/// How a keyring's root key is wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrap {
    /// By argon2id of a passphrase.
    Passphrase {
        /// The salt.
        salt: [u8; SALT_LEN],
        /// The cost.
        params: KdfParams,
    },
    /// By a key file's 32 bytes.
    KeyFile,
}

/// Why a keyring did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// Not a keyring file.
    #[error("is not a swarm keyring (it lacks the SWKEYS header)")]
    NotKeyring,
    /// Shorter than its header says.
    #[error("is truncated")]
    Truncated,
    /// A layout this build does not know.
    #[error("uses keyring format {0}; this build reads format {FORMAT}")]
    Format(u8),
    /// An unknown wrap byte.
    #[error("is wrapped in an unknown way ({0})")]
    UnknownWrap(u8),
    /// KDF parameters out of range.
    #[error("{0}")]
    Params(String),
    /// The passphrase or key file is not the one that wrapped it.
    #[error("does not open with this {0}")]
    WrongSecret(&'static str),
    /// The check matched but the root key did not open: damaged.
    #[error("failed authentication: it was altered or damaged")]
    Damaged,
    /// The data keys did not open.
    #[error("data keys {0}")]
    Keys(SealedError),
    /// The key list is malformed or too long.
    #[error("holds a malformed data-key list")]
    BadKeys,
}

/// A parsed keyring, its root key still wrapped.
#[derive(Debug, Clone)]
pub struct Locked {
    /// How the root key is wrapped.
    pub wrap: Wrap,
    check: [u8; CHECK_LEN],
    header: Vec<u8>,
    nonce: [u8; NONCE_LEN],
    root: [u8; ROOT_LEN + TAG_LEN],
    keys: Vec<u8>,
}

/// An opened keyring: the root key and the data keys by term.
pub struct Opened {
    /// The root key (wraps the data keys).
    pub root: Secret,
    /// The data keys by term (1 and up).
    pub keys: BTreeMap<u32, Secret>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("terms", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Opened {
    /// The newest term, 0 if none.
    pub fn newest(&self) -> u32 {
        self.keys.keys().next_back().copied().unwrap_or(0)
    }
}

/// The wrapping key from a passphrase.
///
/// # Errors
///
/// If the parameters are out of range.
pub fn passphrase_kek(
    passphrase: &[u8],
    salt: &[u8; SALT_LEN],
    params: KdfParams,
) -> Result<Secret, KeyringError> {
    params.validate()?;
    let argon = argon2::Params::new(params.m_kib, params.t, params.p, Some(32))
        .map_err(|e| KeyringError::Params(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, argon);
    let mut kek = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase, salt, &mut kek[..])
        .map_err(|e| KeyringError::Params(e.to_string()))?;
    Ok(kek)
}

/// Working memory for [`passphrase_kek_in`], kept by a thread that derives
/// keys again and again (a head's password checks): each derivation
/// reuses it instead of allocating (and leaving) another block of
/// `m_kib` KiB.
#[derive(Default)]
pub struct KdfScratch(Vec<argon2::Block>);

impl std::fmt::Debug for KdfScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KdfScratch({} blocks)", self.0.len())
    }
}

/// As [`passphrase_kek`], in `scratch`'s memory.
///
/// # Errors
///
/// If the parameters are out of range.
pub fn passphrase_kek_in(
    passphrase: &[u8],
    salt: &[u8; SALT_LEN],
    params: KdfParams,
    scratch: &mut KdfScratch,
) -> Result<Secret, KeyringError> {
    params.validate()?;
    let argon = argon2::Params::new(params.m_kib, params.t, params.p, Some(32))
        .map_err(|e| KeyringError::Params(e.to_string()))?;
    let blocks = argon.block_count();
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, argon);
    scratch.0.resize(blocks, argon2::Block::default());
    let mut kek = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into_with_memory(passphrase, salt, &mut kek[..], &mut scratch.0)
        .map_err(|e| KeyringError::Params(e.to_string()))?;
    Ok(kek)
}

/// The wrapping key from a key file's bytes.
pub fn key_file_kek(bytes: &[u8; 32]) -> Secret {
    let mut kek = Zeroizing::new([0u8; 32]);
    let hk = Hkdf::<Sha256>::new(Some(b"swarm keyring key file v1"), bytes);
    // 32 bytes is within HKDF-SHA256's output limit.
    let _ = hk.expand(b"kek", &mut kek[..]);
    kek
}

fn check_of(kek: &[u8; 32]) -> [u8; CHECK_LEN] {
    let digest = Sha256::new()
        .chain_update(b"swarm keyring check v1")
        .chain_update(kek)
        .finalize();
    let mut check = [0u8; CHECK_LEN];
    check.copy_from_slice(digest.get(..CHECK_LEN).unwrap_or(&[0; CHECK_LEN]));
    check
}

fn header(wrap: &Wrap, check: &[u8; CHECK_LEN]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT);
    match wrap {
        Wrap::Passphrase { salt, params } => {
            out.push(1);
            out.extend_from_slice(salt);
            for n in [params.m_kib, params.t, params.p] {
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
        Wrap::KeyFile => out.push(2),
    }
    out.extend_from_slice(check);
    out
}

/// Nonces a keyring write needs: one for the root key, one for the keys.
#[derive(Debug, Clone, Copy)]
pub struct Nonces {
    /// Seals the root key.
    pub root: [u8; NONCE_LEN],
    /// Seals the data keys.
    pub keys: [u8; NONCE_LEN],
}

/// Encodes a keyring: `root` wrapped under `kek`, `keys` sealed under `root`.
pub fn encode(wrap: &Wrap, kek: &[u8; 32], opened: &Opened, nonces: Nonces) -> Vec<u8> {
    let mut out = header(wrap, &check_of(kek));
    let cipher = Aes256Gcm::new(GenericArray::from_slice(kek));
    let mut root = opened.root.to_vec();
    let aad = out.clone();
    out.extend_from_slice(&nonces.root);
    if let Ok(tag) =
        cipher.encrypt_in_place_detached(GenericArray::from_slice(&nonces.root), &aad, &mut root)
    {
        out.extend_from_slice(&root);
        out.extend_from_slice(&tag);
    }
    out.extend_from_slice(&seal_keys(opened, nonces.keys));
    out
}

fn seal_keys(opened: &Opened, nonce: [u8; NONCE_LEN]) -> Vec<u8> {
    let mut list = Zeroizing::new(Vec::with_capacity(2 + opened.keys.len() * 36));
    let count = u16::try_from(opened.keys.len().min(MAX_TERMS)).unwrap_or(0);
    list.extend_from_slice(&count.to_be_bytes());
    for (term, key) in opened.keys.iter().take(MAX_TERMS) {
        list.extend_from_slice(&term.to_be_bytes());
        list.extend_from_slice(&key[..]);
    }
    DataKey::new(&opened.root).seal(Kind::DataKeys, 0, nonce, MAGIC, &list)
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], KeyringError> {
    let (head, rest) = bytes.split_at_checked(n).ok_or(KeyringError::Truncated)?;
    *bytes = rest;
    Ok(head)
}

fn u32_of(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes.try_into().unwrap_or([0; 4]))
}

/// Parses a keyring file without opening it.
///
/// # Errors
///
/// If it is not a keyring, truncated, of an unknown format or wrap, or its
/// KDF parameters are out of range.
pub fn parse(bytes: &[u8]) -> Result<Locked, KeyringError> {
    if !bytes.starts_with(MAGIC) {
        return Err(if MAGIC.starts_with(bytes) {
            KeyringError::Truncated
        } else {
            KeyringError::NotKeyring
        });
    }
    let mut rest = bytes;
    take(&mut rest, MAGIC.len())?;
    let format = *take(&mut rest, 1)?.first().ok_or(KeyringError::Truncated)?;
    if format != FORMAT {
        return Err(KeyringError::Format(format));
    }
    let wrap = match *take(&mut rest, 1)?.first().ok_or(KeyringError::Truncated)? {
        1 => {
            let salt: [u8; SALT_LEN] = take(&mut rest, SALT_LEN)?
                .try_into()
                .map_err(|_| KeyringError::Truncated)?;
            let params = KdfParams {
                m_kib: u32_of(take(&mut rest, 4)?),
                t: u32_of(take(&mut rest, 4)?),
                p: u32_of(take(&mut rest, 4)?),
            };
            params.validate()?;
            Wrap::Passphrase { salt, params }
        }
        2 => Wrap::KeyFile,
        other => return Err(KeyringError::UnknownWrap(other)),
    };
    let check: [u8; CHECK_LEN] = take(&mut rest, CHECK_LEN)?
        .try_into()
        .map_err(|_| KeyringError::Truncated)?;
    let header_len = bytes.len() - rest.len();
    let nonce = take(&mut rest, NONCE_LEN)?
        .try_into()
        .map_err(|_| KeyringError::Truncated)?;
    let root = take(&mut rest, ROOT_LEN + TAG_LEN)?
        .try_into()
        .map_err(|_| KeyringError::Truncated)?;
    Ok(Locked {
        wrap,
        check,
        header: bytes.get(..header_len).unwrap_or_default().to_vec(),
        nonce,
        root,
        keys: rest.to_vec(),
    })
}

impl Locked {
    /// The same file with another list of data keys, sealed under `root`
    /// (which must be the root key this file wraps): how a term is added
    /// without the passphrase.
    pub fn with_keys(&self, opened: &Opened, nonce: [u8; NONCE_LEN]) -> Vec<u8> {
        let mut out = self.header.clone();
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.root);
        out.extend_from_slice(&seal_keys(opened, nonce));
        out
    }

    /// Opens only the data keys, with a root key already known (a running
    /// node re-reading its keyring after a rotation).
    ///
    /// # Errors
    ///
    /// As [`Locked::open`], for the key list.
    pub fn keys_with_root(&self, root: &Secret) -> Result<BTreeMap<u32, Secret>, KeyringError> {
        let header = super::parse(&self.keys).map_err(KeyringError::Keys)?;
        if header.kind != Kind::DataKeys || header.term != 0 {
            return Err(KeyringError::BadKeys);
        }
        let list = DataKey::new(root)
            .open(MAGIC, &self.keys)
            .map_err(KeyringError::Keys)?;
        let mut rest: &[u8] = &list;
        let count = usize::from(u16::from_be_bytes(
            take(&mut rest, 2)
                .map_err(|_| KeyringError::BadKeys)?
                .try_into()
                .map_err(|_| KeyringError::BadKeys)?,
        ));
        // A keyring always holds a term to seal under.
        if count == 0 || count > MAX_TERMS || rest.len() != count * 36 {
            return Err(KeyringError::BadKeys);
        }
        let mut keys = BTreeMap::new();
        for _ in 0..count {
            let term = u32_of(take(&mut rest, 4).map_err(|_| KeyringError::BadKeys)?);
            let mut key = Zeroizing::new([0u8; 32]);
            key.copy_from_slice(take(&mut rest, 32).map_err(|_| KeyringError::BadKeys)?);
            if term == 0 || keys.insert(term, key).is_some() {
                return Err(KeyringError::BadKeys);
            }
        }
        Ok(keys)
    }

    /// What opens it, for messages: "passphrase" or "key file".
    pub fn secret_name(&self) -> &'static str {
        match self.wrap {
            Wrap::Passphrase { .. } => "passphrase",
            Wrap::KeyFile => "key file",
        }
    }

    /// Opens the keyring with its wrapping key.
    ///
    /// # Errors
    ///
    /// [`KeyringError::WrongSecret`] if `kek` is not the wrapping key,
    /// [`KeyringError::Damaged`] or [`KeyringError::Keys`] if a byte was
    /// altered, [`KeyringError::BadKeys`] if the key list is malformed.
    pub fn open(&self, kek: &[u8; 32]) -> Result<Opened, KeyringError> {
        if check_of(kek) != self.check {
            return Err(KeyringError::WrongSecret(self.secret_name()));
        }
        let cipher = Aes256Gcm::new(GenericArray::from_slice(kek));
        let (ct, tag) = self.root.split_at(ROOT_LEN);
        let mut root = Zeroizing::new([0u8; 32]);
        root.copy_from_slice(ct);
        cipher
            .decrypt_in_place_detached(
                GenericArray::from_slice(&self.nonce),
                &self.header,
                &mut root[..],
                GenericArray::from_slice(tag),
            )
            .map_err(|_| KeyringError::Damaged)?;
        let keys = self.keys_with_root(&root)?;
        Ok(Opened { root, keys })
    }
}

#[cfg(test)]
mod tests;
