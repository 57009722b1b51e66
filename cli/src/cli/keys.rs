//! `swarm keys rotate`, `swarm keys passwd` and `swarm keys status`: a
//! keyring's data-key terms and what wraps them.

use std::path::Path;

use anyhow::{Context as _, Result};
use swarm::credentials::Keyring;
use swarm_protocol::sealed::keyring::KdfParams;
use swarm_protocol::sealed::{self, Kind};

use super::secrets;
use super::KeysCommand;

/// The sealed kinds a directory holds as whole files (the Raft store and
/// the audit log re-seal as they write).
const FILE_KINDS: [Kind; 4] = [
    Kind::CaKey,
    Kind::JoinSecret,
    Kind::NodeKey,
    Kind::TotpSecret,
];

/// Runs `swarm keys COMMAND`; `rotate --capabilities` asks the cluster
/// (`control.rs`).
pub(crate) fn run(command: KeysCommand) -> Result<()> {
    match command {
        KeysCommand::Rotate {
            capabilities: true,
            config: Some(config),
            node: Some(node),
            totp,
            ..
        } => {
            totp.install();
            super::control::rotate_capabilities(&config, node)
        }
        KeysCommand::Rotate {
            keyring, reseal, ..
        } => rotate(&keyring, reseal),
        KeysCommand::Passwd {
            keyring,
            new_root,
            new_key_file,
            new_passphrase_file,
            new_passphrase_env,
        } => passwd(
            &keyring,
            &NewSecret {
                key_file: new_key_file.as_deref(),
                passphrase_file: new_passphrase_file.as_deref(),
                passphrase_env: new_passphrase_env.as_deref(),
            },
            new_root,
        ),
        KeysCommand::Status { keyring } => status(&keyring),
    }
}

pub(crate) fn rotate(keyring: &Path, reseal: bool) -> Result<()> {
    let ring = Keyring::open(keyring, &secrets::unlock_existing(keyring)?)?;
    let term = ring.rotate()?;
    println!(
        "keyring {}: new data-key term {term}; new values are sealed under it, terms 1 to {} still open",
        keyring.display(),
        term - 1
    );
    if reseal {
        let dir = match keyring.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut count = 0;
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let path = entry
                .with_context(|| format!("cannot list {}", dir.display()))?
                .path();
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let Ok(header) = sealed::parse(&bytes) else {
                continue;
            };
            if FILE_KINDS.contains(&header.kind) && ring.reseal_file(&path, header.kind)? {
                count += 1;
            }
        }
        println!(
            "  re-sealed {count} files of {} under term {term}",
            dir.display()
        );
    }
    Ok(())
}

/// Where the new passphrase or key file comes from.
pub(crate) struct NewSecret<'a> {
    pub(crate) key_file: Option<&'a Path>,
    pub(crate) passphrase_file: Option<&'a Path>,
    pub(crate) passphrase_env: Option<&'a str>,
}

/// Rewraps the keyring under the new secret; with `new_root`, under a
/// freshly generated root key too.
pub(crate) fn passwd(keyring: &Path, new: &NewSecret<'_>, new_root: bool) -> Result<()> {
    let old = secrets::unlock_existing(keyring)?;
    let new = secrets::unlock_new(
        &format!("keyring {}", keyring.display()),
        new.key_file,
        new.passphrase_file,
        new.passphrase_env,
    )?;
    if new_root {
        Keyring::passwd_new_root(keyring, &old, &new, KdfParams::DEFAULT)?;
    } else {
        Keyring::passwd(keyring, &old, &new, KdfParams::DEFAULT)?;
    }
    println!(
        "keyring {}: rewrapped{}; the old {} no longer opens it",
        keyring.display(),
        if new_root {
            " under a new root key (restart running nodes to see later rotations)"
        } else {
            ""
        },
        match old {
            swarm::credentials::Unlock::Passphrase(_) => "passphrase",
            swarm::credentials::Unlock::KeyFile(_) => "key file",
        }
    );
    Ok(())
}

pub(crate) fn status(keyring: &Path) -> Result<()> {
    let wrap = Keyring::wrapped_by(keyring)?;
    let ring = Keyring::open(keyring, &secrets::unlock_existing(keyring)?)?;
    let terms = ring.terms();
    println!(
        "keyring {}: wrapped by a {wrap}; data-key terms {:?}, new values sealed under term {}",
        keyring.display(),
        terms,
        ring.newest()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use swarm::config::NodeFile;
    use swarm::credentials::Unlock;
    use swarm::FileError;

    use super::*;

    /// An error as `main` prints it: anyhow's `{:#}`, the message and each
    /// source after it.
    fn as_printed(e: impl Into<anyhow::Error>) -> String {
        format!("{:#}", e.into())
    }

    fn pass(p: &str) -> Unlock {
        Unlock::Passphrase(zeroize::Zeroizing::new(p.to_owned()))
    }

    #[test]
    fn a_wrong_passphrase_or_a_missing_file_is_printed_with_its_cause_once() {
        let dir = std::env::temp_dir().join(format!("swarm-cli-keys-once-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keyring");
        let cheap = KdfParams {
            m_kib: 64,
            t: 1,
            p: 1,
        };
        Keyring::create(&path, &pass("a good passphrase"), cheap).unwrap();
        let wrong = || Keyring::open(&path, &pass("not the passphrase")).unwrap_err();
        // As `swarm keys status` meets it, and as a node's config does.
        for printed in [as_printed(wrong()), as_printed(FileError::from(wrong()))] {
            assert_eq!(
                printed,
                format!(
                    "keyring {}: does not open with this passphrase",
                    path.display()
                )
            );
        }
        let missing = dir.join("missing.toml");
        let printed = as_printed(NodeFile::load(&missing).unwrap_err());
        assert!(
            printed.starts_with(&format!("cannot read {}: ", missing.display())),
            "{printed}"
        );
        let cause = std::fs::read(&missing).unwrap_err().to_string();
        assert_eq!(printed.matches(&cause).count(), 1, "{printed}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
