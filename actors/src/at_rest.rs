//! Secrets and control-plane data at rest: a node's [`Keyring`] file and
//! the sealed files it reads and writes (`swarm_protocol::sealed` has the
//! formats). One keyring serves every file kind of a directory: private
//! keys, the join secret, the operators' TOTP secret, the head's Raft log
//! and snapshots, the audit log and the revocation list
//! ([`RevocationFile`]).
//!
//! The keyring opens with a passphrase (argon2id, [`KdfParams::DEFAULT`])
//! or a key file ([`Unlock`]). [`Keyring::rotate`] adds a data-key term
//! while nodes run: a running node notices the file changed (checked at
//! most once a second, and whenever a value names a term it lacks) and
//! seals new values under the new term; every older term still opens.
//! [`Keyring::passwd`] rewraps the root key under a new passphrase;
//! [`Keyring::passwd_new_root`] also replaces the root key itself.
//!
//! Secrets are wiped from memory when dropped where the crates allow it
//! (`Zeroizing` buffers, aes-gcm's key schedule).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use swarm_protocol::sealed::keyring::{self, KdfParams, Locked, Nonces, Opened, Secret, Wrap};
use swarm_protocol::sealed::{self, DataKey, Kind, SealedError, NONCE_LEN};
use zeroize::Zeroizing;

mod error;
mod files;
mod revocations;

pub use error::AtRestError;
pub use files::{create_private_dir, create_private_file};
use files::{read, write_private};

pub use revocations::RevocationFile;

/// What opens a keyring.
#[derive(Clone)]
pub enum Unlock {
    /// A passphrase (argon2id derives the wrapping key).
    Passphrase(Zeroizing<String>),
    /// A key file of 32 random bytes ([`create_key_file`]).
    KeyFile(PathBuf),
}

impl std::fmt::Debug for Unlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unlock::Passphrase(_) => f.write_str("Passphrase(..)"),
            Unlock::KeyFile(path) => f.debug_tuple("KeyFile").field(path).finish(),
        }
    }
}

/// The shortest passphrase a new keyring accepts.
pub const MIN_PASSPHRASE: usize = 8;

type Result<T> = std::result::Result<T, AtRestError>;

/// 32 fresh random bytes.
fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the OS random source failed");
    bytes
}

/// Writes a new key file of 32 random bytes (mode 0600).
///
/// # Errors
///
/// If it exists or cannot be written.
pub fn create_key_file(path: &Path) -> Result<()> {
    let key = Zeroizing::new(random::<32>());
    let text = Zeroizing::new(format!(
        "# swarm keyring key file: whoever holds it opens the keyring\n{}\n",
        swarm_protocol::identity::hex(&key[..])
    ));
    write_private(path, text.as_bytes(), true)
}

fn read_key_file(path: &Path) -> Result<Secret> {
    let text = Zeroizing::new(
        fs::read_to_string(path).map_err(|source| AtRestError::Read {
            path: path.to_owned(),
            source,
        })?,
    );
    let body: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<String>();
    let body = Zeroizing::new(body);
    let bytes = Zeroizing::new(swarm_protocol::identity::unhex(body.trim()).ok_or_else(|| {
        AtRestError::KeyFile {
            path: path.to_owned(),
        }
    })?);
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(AtRestError::KeyFile {
            path: path.to_owned(),
        });
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// A node's data keys, open. Cheap to clone; shared by everything that
/// seals on the node.
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("path", &self.inner.path)
            .field("newest", &self.newest())
            .finish_non_exhaustive()
    }
}

struct Inner {
    path: PathBuf,
    root: Secret,
    keys: RwLock<Keys>,
    /// When the file was last looked at, and its (mtime, length) then.
    seen: Mutex<(Instant, Option<(SystemTime, u64)>)>,
}

struct Keys {
    by_term: BTreeMap<u32, DataKey>,
    newest: u32,
}

impl Keys {
    fn of(keys: &BTreeMap<u32, Secret>) -> Self {
        Self {
            by_term: keys.iter().map(|(t, k)| (*t, DataKey::new(k))).collect(),
            newest: keys.keys().next_back().copied().unwrap_or(0),
        }
    }
}

/// Whether a rewrap keeps the root key or draws a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    Keep,
    Fresh,
}

/// How often a running node looks at its keyring file for a new term.
const REFRESH: Duration = Duration::from_secs(1);

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn kek_for(path: &Path, locked: &Locked, unlock: &Unlock) -> Result<Secret> {
    match (&locked.wrap, unlock) {
        (Wrap::Passphrase { salt, params }, Unlock::Passphrase(pass)) => {
            keyring::passphrase_kek(pass.as_bytes(), salt, *params).map_err(|source| {
                AtRestError::Keyring {
                    path: path.to_owned(),
                    source,
                }
            })
        }
        (Wrap::KeyFile, Unlock::KeyFile(file)) => Ok(keyring::key_file_kek(&*read_key_file(file)?)),
        (Wrap::Passphrase { .. }, Unlock::KeyFile(_)) => Err(AtRestError::WrongUnlock {
            path: path.to_owned(),
            wrap: "passphrase",
            hint: "give the passphrase (a terminal prompt, --passphrase-file or --passphrase-env)",
        }),
        (Wrap::KeyFile, Unlock::Passphrase(_)) => Err(AtRestError::WrongUnlock {
            path: path.to_owned(),
            wrap: "key file",
            hint: "give the key file (keyring_key in the configuration, or --key-file)",
        }),
    }
}

fn wrap_for(unlock: &Unlock, params: KdfParams) -> Result<(Wrap, Secret)> {
    match unlock {
        Unlock::Passphrase(pass) => {
            if pass.chars().count() < MIN_PASSPHRASE {
                return Err(AtRestError::ShortPassphrase);
            }
            let salt = random();
            let kek =
                keyring::passphrase_kek(pass.as_bytes(), &salt, params).map_err(|source| {
                    AtRestError::Keyring {
                        path: PathBuf::new(),
                        source,
                    }
                })?;
            Ok((Wrap::Passphrase { salt, params }, kek))
        }
        Unlock::KeyFile(file) => Ok((Wrap::KeyFile, keyring::key_file_kek(&*read_key_file(file)?))),
    }
}

fn nonces() -> Nonces {
    Nonces {
        root: random(),
        keys: random(),
    }
}

impl Keyring {
    /// Creates a keyring at `path` with one data-key term.
    ///
    /// # Errors
    ///
    /// If it exists, the passphrase is too short, the key file is not one,
    /// or the file cannot be written.
    pub fn create(path: &Path, unlock: &Unlock, params: KdfParams) -> Result<Self> {
        if path.exists() {
            return Err(AtRestError::Exists {
                path: path.to_owned(),
            });
        }
        let (wrap, kek) = wrap_for(unlock, params)?;
        let opened = Opened {
            root: Zeroizing::new(random()),
            keys: BTreeMap::from([(1, Zeroizing::new(random()))]),
        };
        let bytes = keyring::encode(&wrap, &kek, &opened, nonces());
        write_private(path, &bytes, true)?;
        Ok(Self::from_opened(path, opened))
    }

    /// Opens the keyring at `path`.
    ///
    /// # Errors
    ///
    /// If it cannot be read, is damaged, or `unlock` does not open it.
    pub fn open(path: &Path, unlock: &Unlock) -> Result<Self> {
        let (locked, _) = Self::locked(path)?;
        let kek = kek_for(path, &locked, unlock)?;
        let opened = locked.open(&kek).map_err(|source| AtRestError::Keyring {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self::from_opened(path, opened))
    }

    /// Opens the keyring at `path`, creating it first if there is none.
    ///
    /// # Errors
    ///
    /// As [`Keyring::open`] and [`Keyring::create`].
    pub fn open_or_create(path: &Path, unlock: &Unlock, params: KdfParams) -> Result<Self> {
        if path.exists() {
            Self::open(path, unlock)
        } else {
            Self::create(path, unlock, params)
        }
    }

    /// How a keyring file is wrapped, without opening it: "passphrase" or
    /// "key file".
    ///
    /// # Errors
    ///
    /// If it cannot be read or is not a keyring.
    pub fn wrapped_by(path: &Path) -> Result<&'static str> {
        Ok(Self::locked(path)?.0.secret_name())
    }

    fn locked(path: &Path) -> Result<(Locked, Option<(SystemTime, u64)>)> {
        let stamp = stamp(path);
        let bytes = read(path)?;
        let locked = keyring::parse(&bytes).map_err(|source| AtRestError::Keyring {
            path: path.to_owned(),
            source,
        })?;
        Ok((locked, stamp))
    }

    fn from_opened(path: &Path, opened: Opened) -> Self {
        Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                keys: RwLock::new(Keys::of(&opened.keys)),
                root: opened.root,
                seen: Mutex::new((Instant::now(), stamp(path))),
            }),
        }
    }

    /// The keyring file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The newest data-key term: what new values are sealed under.
    pub fn newest(&self) -> u32 {
        self.inner
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .newest
    }

    /// The terms this keyring holds.
    pub fn terms(&self) -> Vec<u32> {
        let keys = self
            .inner
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        keys.by_term.keys().copied().collect()
    }

    /// Adds a data-key term and writes the file; returns the new term.
    /// Running nodes with this keyring pick it up within a second.
    ///
    /// # Errors
    ///
    /// If the file cannot be read, opened or written.
    pub fn rotate(&self) -> Result<u32> {
        let path = &self.inner.path;
        let (locked, _) = Self::locked(path)?;
        let mut keys =
            locked
                .keys_with_root(&self.inner.root)
                .map_err(|source| AtRestError::Keyring {
                    path: path.clone(),
                    source,
                })?;
        let term = keys.keys().next_back().copied().unwrap_or(0) + 1;
        keys.insert(term, Zeroizing::new(random()));
        let opened = Opened {
            root: self.inner.root.clone(),
            keys,
        };
        write_private(path, &locked.with_keys(&opened, random()), false)?;
        self.install(&opened.keys, stamp(path));
        Ok(term)
    }

    /// Rewraps the keyring at `path` under `new` (a new passphrase or key
    /// file); the data keys stay the same.
    ///
    /// # Errors
    ///
    /// If `old` does not open it, `new` is too short or not a key file,
    /// or the file cannot be written.
    pub fn passwd(path: &Path, old: &Unlock, new: &Unlock, params: KdfParams) -> Result<()> {
        Self::rewrap(path, old, new, params, Root::Keep)
    }

    /// Rewraps the keyring at `path` under `new` with a freshly generated
    /// root key: the data keys (and so every file and value sealed under
    /// them) stay the same, but neither the old passphrase or key file nor
    /// the old root key opens the keyring any more, so a leaked copy of
    /// either is worthless against the new file.
    ///
    /// Running nodes keep their data keys in memory and go on sealing and
    /// opening; they no longer see later rotations of this file until they
    /// restart (the new root key is not theirs).
    ///
    /// # Errors
    ///
    /// As [`Keyring::passwd`].
    pub fn passwd_new_root(
        path: &Path,
        old: &Unlock,
        new: &Unlock,
        params: KdfParams,
    ) -> Result<()> {
        Self::rewrap(path, old, new, params, Root::Fresh)
    }

    fn rewrap(
        path: &Path,
        old: &Unlock,
        new: &Unlock,
        params: KdfParams,
        root: Root,
    ) -> Result<()> {
        let (locked, _) = Self::locked(path)?;
        let kek = kek_for(path, &locked, old)?;
        let mut opened = locked.open(&kek).map_err(|source| AtRestError::Keyring {
            path: path.to_owned(),
            source,
        })?;
        if root == Root::Fresh {
            opened.root = Zeroizing::new(random());
        }
        let (wrap, kek) = wrap_for(new, params)?;
        write_private(
            path,
            &keyring::encode(&wrap, &kek, &opened, nonces()),
            false,
        )
    }

    fn install(&self, keys: &BTreeMap<u32, Secret>, seen: Option<(SystemTime, u64)>) {
        *self
            .inner
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Keys::of(keys);
        *self
            .inner
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = (Instant::now(), seen);
    }

    /// Re-reads the file if it changed since last looked at (at most once
    /// a second unless `now`).
    fn refresh(&self, now: bool) {
        let previous = {
            let mut seen = self
                .inner
                .seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !now && seen.0.elapsed() < REFRESH {
                return;
            }
            seen.0 = Instant::now();
            seen.1
        };
        let current = stamp(&self.inner.path);
        if current == previous {
            return;
        }
        let keys = Self::locked(&self.inner.path).and_then(|(locked, _)| {
            locked
                .keys_with_root(&self.inner.root)
                .map_err(|source| AtRestError::Keyring {
                    path: self.inner.path.clone(),
                    source,
                })
        });
        match keys {
            Ok(keys) => self.install(&keys, current),
            Err(e) => {
                tracing::warn!(error = %e, "keyring changed on disk but does not open with this node's root key; keeping the terms in memory")
            }
        }
    }

    /// Seals `plain` as `kind` under the newest term, bound to `context`.
    pub fn seal(&self, kind: Kind, context: &[u8], plain: &[u8]) -> Vec<u8> {
        self.refresh(false);
        let keys = self
            .inner
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let term = keys.newest;
        match keys.by_term.get(&term) {
            Some(key) => key.seal(kind, term, random::<NONCE_LEN>(), context, plain),
            // Unreachable: `create` writes a term and the decoder refuses a
            // keyring without one.
            None => Vec::new(),
        }
    }

    /// Opens a sealed value of `kind` bound to `context`.
    ///
    /// # Errors
    ///
    /// If it is truncated, of another kind or format, sealed under a term
    /// this keyring lacks, or altered.
    pub fn open_value(
        &self,
        kind: Kind,
        context: &[u8],
        sealed: &[u8],
    ) -> std::result::Result<Zeroizing<Vec<u8>>, SealedError> {
        let header = sealed::parse(sealed)?;
        if header.kind != kind {
            return Err(SealedError::WrongKind {
                expected: kind,
                found: header.kind,
            });
        }
        let known = |ring: &Self| {
            ring.inner
                .keys
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .by_term
                .contains_key(&header.term)
        };
        if !known(self) {
            self.refresh(true);
        }
        let keys = self
            .inner
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let key = keys
            .by_term
            .get(&header.term)
            .ok_or(SealedError::UnknownTerm {
                term: header.term,
                newest: keys.newest,
            })?;
        key.open(context, sealed)
    }

    /// Writes `plain` sealed as `kind` to `path` (mode 0600, through a
    /// temporary file and a rename).
    ///
    /// # Errors
    ///
    /// If it cannot be written.
    pub fn write_file(&self, path: &Path, kind: Kind, plain: &[u8]) -> Result<()> {
        write_private(path, &self.seal(kind, b"", plain), false)
    }

    /// Reads and opens a sealed file of `kind`.
    ///
    /// # Errors
    ///
    /// If it cannot be read or does not open; the error names the file.
    pub fn read_file(&self, path: &Path, kind: Kind) -> Result<Zeroizing<Vec<u8>>> {
        let bytes = read(path)?;
        self.open_value(kind, b"", &bytes)
            .map_err(|source| AtRestError::Sealed {
                path: path.to_owned(),
                source,
            })
    }

    /// Re-seals a sealed file under the newest term (after a rotation).
    /// Returns whether it changed.
    ///
    /// # Errors
    ///
    /// If it does not open or cannot be written.
    pub fn reseal_file(&self, path: &Path, kind: Kind) -> Result<bool> {
        let bytes = read(path)?;
        let header = sealed::parse(&bytes).map_err(|source| AtRestError::Sealed {
            path: path.to_owned(),
            source,
        })?;
        if header.term == self.newest() {
            return Ok(false);
        }
        let plain = self.read_file(path, kind)?;
        self.write_file(path, kind, &plain)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
