//! [`AtRestError`]: why a keyring or a sealed file could not be used.

use std::fmt;
use std::path::PathBuf;

use swarm_protocol::sealed::keyring::KeyringError;
use swarm_protocol::sealed::SealedError;

use super::MIN_PASSPHRASE;

/// Why a keyring or a sealed file could not be used. Each names the file.
///
/// The message holds the whole sentence, its cause included (the causes
/// are fragments of it: "keyring k: does not open with this passphrase",
/// "n1.key is truncated"); so `source()` is empty, and a reporter that
/// walks the chain (`{:#}` of anyhow) prints the cause once. Match the
/// `source` fields for the typed cause.
#[derive(Debug)]
#[non_exhaustive]
pub enum AtRestError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file could not be written.
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The keyring did not open.
    Keyring {
        /// The keyring file.
        path: PathBuf,
        /// Why.
        source: KeyringError,
    },
    /// A sealed file did not open.
    Sealed {
        /// The file.
        path: PathBuf,
        /// Why.
        source: SealedError,
    },
    /// A record of a sealed log did not open.
    Record {
        /// The file.
        path: PathBuf,
        /// The record's index (0 first).
        index: u64,
        /// Why.
        source: SealedError,
    },
    /// A sealed file opened, but what it holds is not what its kind
    /// should be.
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: &'static str,
    },
    /// A keyring exists already.
    Exists {
        /// The keyring file.
        path: PathBuf,
    },
    /// The unlock given is not the kind the keyring was wrapped with.
    WrongUnlock {
        /// The keyring file.
        path: PathBuf,
        /// "passphrase" or "key file".
        wrap: &'static str,
        /// What to pass instead.
        hint: &'static str,
    },
    /// A key file that is not 32 bytes of hex.
    KeyFile {
        /// The key file.
        path: PathBuf,
    },
    /// A new passphrase that is too short.
    ShortPassphrase,
}

impl fmt::Display for AtRestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Self::Write { path, source } => write!(f, "cannot write {}: {source}", path.display()),
            Self::Keyring { path, source } => write!(f, "keyring {}: {source}", path.display()),
            Self::Sealed { path, source } => write!(f, "{} {source}", path.display()),
            Self::Record {
                path,
                index,
                source,
            } => write!(f, "{} record {index} {source}", path.display()),
            Self::Malformed { path, problem } => write!(f, "{} {problem}", path.display()),
            Self::Exists { path } => write!(f, "keyring {} exists already", path.display()),
            Self::WrongUnlock { path, wrap, hint } => {
                write!(
                    f,
                    "keyring {} is wrapped by a {wrap}; {hint}",
                    path.display()
                )
            }
            Self::KeyFile { path } => {
                write!(
                    f,
                    "key file {} does not hold 32 bytes of hex",
                    path.display()
                )
            }
            Self::ShortPassphrase => write!(
                f,
                "a keyring passphrase needs at least {MIN_PASSPHRASE} characters"
            ),
        }
    }
}

/// The cause is in the message (see [`AtRestError`]), not a source.
impl std::error::Error for AtRestError {}
