//! Where a keyring's passphrase or key file comes from: `--key-file`,
//! `--passphrase-file`, `--passphrase-env`, a configuration's
//! `keyring_key`, or a prompt on the terminal (never echoed). The options
//! are global: every command that opens a keyring reads them.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context as _, Result};
use swarm::config::NodeFile;
use swarm::credentials::{create_key_file, Keyring, Unlock};
use zeroize::Zeroizing;

/// The keyring options every command takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct Secrets {
    /// Read the keyring passphrase from this file (its first line).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) passphrase_file: Option<PathBuf>,
    /// Read the keyring passphrase from this environment variable.
    #[arg(long, global = true, value_name = "VAR")]
    pub(crate) passphrase_env: Option<String>,
    /// Open the keyring with this key file instead of a passphrase (a new
    /// keyring: created with 32 random bytes if it does not exist).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) key_file: Option<PathBuf>,
    /// The current TOTP code of an operator certificate (else asked for
    /// on the terminal).
    #[arg(long, global = true, value_name = "CODE")]
    pub(crate) totp: Option<String>,
}

static SECRETS: OnceLock<Secrets> = OnceLock::new();

/// Keeps the command line's keyring options for the commands.
pub(crate) fn install(secrets: Secrets) {
    let _ = SECRETS.set(secrets);
}

fn given() -> Secrets {
    SECRETS.get().cloned().unwrap_or_default()
}

/// A passphrase from a file or a variable, if one was given.
fn given_passphrase(s: &Secrets) -> Result<Option<Zeroizing<String>>> {
    if let Some(file) = &s.passphrase_file {
        let text = Zeroizing::new(
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the passphrase file {}", file.display()))?,
        );
        let line = text.lines().next().unwrap_or_default();
        return Ok(Some(Zeroizing::new(line.to_owned())));
    }
    if let Some(var) = &s.passphrase_env {
        let value = std::env::var(var).with_context(|| {
            format!("the environment variable {var} (--passphrase-env) is not set")
        })?;
        return Ok(Some(Zeroizing::new(value)));
    }
    Ok(None)
}

fn prompt(text: &str) -> Result<Zeroizing<String>> {
    Ok(Zeroizing::new(
        rpassword::prompt_password(text).context("cannot read the passphrase from the terminal")?,
    ))
}

fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// How to open the existing keyring at `keyring`.
///
/// # Errors
///
/// If nothing was given and there is no terminal to ask on.
pub(crate) fn unlock_existing(keyring: &Path) -> Result<Unlock> {
    let s = given();
    if let Some(file) = s.key_file {
        return Ok(Unlock::KeyFile(file));
    }
    if let Some(pass) = given_passphrase(&s)? {
        return Ok(Unlock::Passphrase(pass));
    }
    if Keyring::wrapped_by(keyring)? == "key file" {
        bail!(
            "keyring {} is wrapped by a key file: name it with --key-file FILE (or keyring_key in the configuration)",
            keyring.display()
        );
    }
    if interactive() {
        return Ok(Unlock::Passphrase(prompt(&format!(
            "Passphrase for keyring {}: ",
            keyring.display()
        ))?));
    }
    Err(swarm::FileError::NoPassphrase {
        keyring: keyring.to_owned(),
    }
    .into())
}

/// How to wrap a new keyring (or a keyring's new passphrase): `key_file`
/// (created if missing), a passphrase from `file` or `env`, or one typed
/// twice on the terminal.
pub(crate) fn unlock_new(
    what: &str,
    key_file: Option<&Path>,
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<Unlock> {
    if let Some(key_file) = key_file {
        if !key_file.exists() {
            create_key_file(key_file)?;
            eprintln!(
                "wrote a new key file {} (keep it apart from the keyring)",
                key_file.display()
            );
        }
        return Ok(Unlock::KeyFile(key_file.to_owned()));
    }
    let s = Secrets {
        passphrase_file: file.map(Path::to_owned),
        passphrase_env: env.map(str::to_owned),
        key_file: None,
        totp: None,
    };
    if let Some(pass) = given_passphrase(&s)? {
        return Ok(Unlock::Passphrase(pass));
    }
    if interactive() {
        let first = prompt(&format!("New passphrase for {what}: "))?;
        let second = prompt("Again: ")?;
        if *first != *second {
            bail!("the two passphrases differ");
        }
        return Ok(Unlock::Passphrase(first));
    }
    bail!(
        "{what} needs a passphrase or a key file: --passphrase-file FILE, --passphrase-env VAR, --key-file FILE, or a terminal to type it on"
    )
}

/// How to wrap a new keyring from the global options.
pub(crate) fn unlock_new_global(what: &str) -> Result<Unlock> {
    let s = given();
    unlock_new(
        what,
        s.key_file.as_deref(),
        s.passphrase_file.as_deref(),
        s.passphrase_env.as_deref(),
    )
}

/// Starts a client node with `mesh` and, if its certificate is an
/// operator's, logs it in through `member` with the TOTP code from
/// `--totp` or the terminal.
///
/// # Errors
///
/// If the node does not start, no code is at hand, or the login is refused.
pub(crate) async fn start_client(
    mesh: swarm::MeshConfig,
    member: std::net::SocketAddr,
) -> Result<swarm::Node> {
    Ok(start_client_session(mesh, member).await?.0)
}

/// As [`start_client`], also answering the session token of an operator's login.
pub(crate) async fn start_client_session(
    mesh: swarm::MeshConfig,
    member: std::net::SocketAddr,
) -> Result<(swarm::Node, Option<swarm::operators::SessionToken>)> {
    let roles = mesh.handshake.cert.body().roles.clone();
    let name = mesh.handshake.cert.body().name.clone();
    let node = swarm::Node::start(mesh)
        .await
        .context("cannot start the local node")?;
    if swarm::operators::is_operator(&roles) {
        let code = match given().totp {
            Some(code) => code,
            None if interactive() => rpassword::prompt_password(format!("TOTP code for {name}: "))
                .context("cannot read the code from the terminal")?,
            None => {
                node.shutdown();
                bail!("{name} is an operator certificate: give its current TOTP code with --totp CODE (or run on a terminal)");
            }
        };
        return match node.login(member, code.trim()).await {
            Ok(token) => Ok((node, Some(token))),
            Err(e) => {
                node.shutdown();
                Err(e).context(format!("{name} could not log in through {member}"))
            }
        };
    }
    Ok((node, None))
}

/// Loads a node configuration and how to open its keyring (its
/// `keyring_key`, or the global options, or a prompt).
///
/// # Errors
///
/// If the file does not load or there is no way to open the keyring.
pub(crate) fn load(config: &Path) -> Result<NodeFile> {
    let mut file = NodeFile::load(config)?;
    if file.keyring_key.is_none() {
        file.passphrase = Some(unlock_existing(&file.keyring)?);
    }
    Ok(file)
}
