//! Why a node's files (configuration, keys, certificates, the CA) could not
//! be read, written or used. The binary turns these into its messages; the
//! library never formats them into strings.
//!
//! A cause is printed once: either it is the `source()` (the OS error, the
//! TOML parser's), left out of the message, or it is part of the message
//! ([`AtRestError`](swarm_actors::at_rest::AtRestError)) with no source.

use std::path::PathBuf;

/// Why a configuration, key or certificate file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file (or its directory) could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configuration is not valid TOML for the node schema.
    #[error("invalid config {}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's explanation.
        source: toml::de::Error,
    },
    /// The file holds something else than expected.
    #[error("{} {problem}", path.display())]
    Content {
        /// The file.
        path: PathBuf,
        /// What is wrong, e.g. "does not hold 32 bytes".
        problem: &'static str,
    },
    /// A setting is out of range or malformed.
    #[error("{setting}: {problem}")]
    Setting {
        /// The setting, e.g. `membership.probe_rtt_ms`.
        setting: String,
        /// What is wrong.
        problem: String,
    },
    /// A keyring or a sealed file could not be used.
    #[error(transparent)]
    AtRest(#[from] swarm_actors::at_rest::AtRestError),
    /// A keyring wrapped by a passphrase, and none was given.
    #[error(
        "keyring {} is sealed with a passphrase: give it with --passphrase-file FILE or --passphrase-env VAR, or run on a terminal to be asked (or name a key file: keyring_key in the configuration)",
        keyring.display()
    )]
    NoPassphrase {
        /// The keyring.
        keyring: PathBuf,
    },
    /// The CA exists already and replacing it was not asked for.
    #[error(
        "{} exists already; pass --force to replace the CA (every certificate it issued becomes invalid)",
        path.display()
    )]
    CaExists {
        /// The CA key file.
        path: PathBuf,
    },
}
