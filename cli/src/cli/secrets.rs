//! Where a keyring's passphrase or key file comes from: `--key-file`,
//! `--passphrase-file`, `--passphrase-env`, a configuration's
//! `keyring_key`, or a prompt on the terminal (never echoed). The options
//! are global: every command that opens a keyring reads them. Also the
//! operator's login: `--totp` (on the commands that log in) and the login
//! kept between commands.

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
}

static SECRETS: OnceLock<Secrets> = OnceLock::new();

/// The second factor of an operator certificate: only the commands that
/// log in through a member take it (`swarm node start`, `swarm ca init`
/// and the like do not offer it).
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct Totp {
    /// The current TOTP code of an operator certificate (else the
    /// SWARM_TOTP environment variable, else asked for on the terminal).
    #[arg(long, value_name = "CODE")]
    totp: Option<String>,
}

static TOTP: OnceLock<String> = OnceLock::new();

impl Totp {
    /// Keeps the code for this process's login, if one was given.
    pub(crate) fn install(self) {
        if let Some(code) = self.totp {
            let _ = TOTP.set(code);
        }
    }
}

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

/// The TOTP code from `--totp`, else from [`TOTP_ENV`], if either is given.
fn given_code() -> Option<String> {
    TOTP.get().cloned().or_else(|| {
        std::env::var(TOTP_ENV)
            .ok()
            .filter(|c| !c.trim().is_empty())
    })
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
/// operator's, presents the capability of its last login (kept by
/// [`SessionFile`]) or logs it in through `member` with the TOTP code from
/// `--totp` or the terminal (and keeps the capability for the next
/// commands).
///
/// # Errors
///
/// If the node does not start, no code is at hand, or the login is refused.
pub(crate) async fn start_client(
    mesh: swarm::MeshConfig,
    member: std::net::SocketAddr,
) -> Result<swarm::Node> {
    Ok(start_client_session(mesh, member, false).await?.0)
}

/// As [`start_client`], also answering the operator's capability (`None`
/// for a node certificate); `fresh` logs in even if a capability is kept,
/// and waits for a cluster that is still starting (see
/// [`login_when_ready`]).
pub(crate) async fn start_client_session(
    mesh: swarm::MeshConfig,
    member: std::net::SocketAddr,
    fresh: bool,
) -> Result<(swarm::Node, Option<swarm::operators::Capability>)> {
    let body = mesh.handshake.cert.body().clone();
    let node = swarm::Node::start(mesh)
        .await
        .context("cannot start the local node")?;
    if !swarm::operators::is_operator(&body.roles) {
        return Ok((node, None));
    }
    let name = &body.name;
    let kept = SESSION_FILE.get();
    if !fresh {
        if let Some(capability) = kept.and_then(|f| f.load(&body)) {
            node.use_capability(&capability);
            return Ok((node, Some(capability)));
        }
    }
    // A certificate with a node role as well works as that node without a
    // login (its operator roles then count for nothing): it logs in only
    // when given a code.
    let node_too = body
        .roles
        .iter()
        .any(|r| swarm::policy::NODE_ROLES.contains(&r.as_str()));
    let code = match given_code() {
        Some(code) => code,
        None if node_too => return Ok((node, None)),
        None if interactive() => {
            match rpassword::prompt_password(format!("TOTP code for {name}: ")) {
                Ok(code) => code,
                Err(e) => {
                    node.close().await;
                    return Err(e).context("cannot read the code from the terminal");
                }
            }
        }
        None => {
            node.close().await;
            bail!("{name} is an operator certificate and has no login kept: run `swarm login --config CONFIG --node ADDR` (or give --totp CODE)");
        }
    };
    let login = if fresh {
        login_when_ready(&node, member, code.trim()).await
    } else {
        node.login(member, code.trim()).await
    };
    match login {
        Ok(capability) => {
            if let Some(file) = kept {
                if let Err(e) = file.store(&capability) {
                    eprintln!("swarm: the login is not kept for later commands: {e:#}");
                }
            }
            if fresh {
                accepted_by(&node, member).await;
            }
            Ok((node, Some(capability)))
        }
        Err(e) => {
            node.close().await;
            Err(e).context(format!("{name} could not log in through {member}"))
        }
    }
}

/// Logs `node` in through `member` as [`swarm::Node::login`] does, and
/// waits (up to [`LOGIN_WAIT`]) for a cluster that is still starting: it
/// tries again while the member refuses connections or no head leads yet.
/// A refused code, certificate or anything else ends it at once (the
/// code is used up only by a login that succeeds).
async fn login_when_ready(
    node: &swarm::Node,
    member: std::net::SocketAddr,
    code: &str,
) -> Result<swarm::operators::Capability, swarm::LoginError> {
    use swarm::control::ControlError;
    use swarm::{DialError, LoginError};
    let deadline = tokio::time::Instant::now() + LOGIN_WAIT;
    let mut told = false;
    loop {
        let e = match node.login(member, code).await {
            Ok(capability) => return Ok(capability),
            Err(e) => e,
        };
        let starting = match &e {
            LoginError::Connect(c) => {
                matches!(c.cause, DialError::Connect(_) | DialError::Timeout(_))
            }
            LoginError::Ask(a) => {
                a.is_node_failure() || matches!(a, swarm::AskError::Timeout { .. })
            }
            LoginError::Refused(
                ControlError::NoHead { .. }
                | ControlError::NoQuorum { .. }
                | ControlError::NotLeader { .. },
            ) => true,
            _ => false,
        };
        if !starting || tokio::time::Instant::now() >= deadline {
            return Err(e);
        }
        if !told {
            eprintln!("swarm: waiting for the cluster at {member} ({e})");
            told = true;
        }
        tokio::time::sleep(LOGIN_RETRY).await;
    }
}

/// After a login: waits (up to [`LOGIN_WAIT`]) until `member` takes it,
/// which it does once it knows the head group's key (from its first lease
/// grant), so the next command is not refused. Gives up silently: that
/// command then says what is wrong.
async fn accepted_by(node: &swarm::Node, member: std::net::SocketAddr) {
    use swarm::cluster::{ClusterAgent, ListMembers, CLUSTER_ACTOR};
    let Ok(peer) = node.connect(member).await else {
        return;
    };
    let agent = node.remote::<ClusterAgent>(peer.id, CLUSTER_ACTOR);
    let deadline = tokio::time::Instant::now() + LOGIN_WAIT;
    while let Err(swarm::AskError::Forbidden { .. }) = agent.send(ListMembers).await {
        if tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(LOGIN_RETRY).await;
    }
}

/// Where an operator's capability is kept between commands, like `vault
/// login`'s token: `NAME.session` beside its keyring, sealed under it,
/// mode 0600. Commands present it until it expires (or a node refuses it:
/// revoked); `swarm logout` removes it.
pub(crate) struct SessionFile {
    path: PathBuf,
    keyring: Keyring,
}

static SESSION_FILE: OnceLock<SessionFile> = OnceLock::new();

/// A kept capability is used only while it has this long left.
const KEPT_MARGIN_MS: u64 = 10_000;

impl SessionFile {
    /// The session file of the operator `name` whose keyring is `keyring`.
    pub(crate) fn new(keyring: Keyring, name: &str) -> Self {
        let dir = keyring
            .path()
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_owned);
        Self {
            path: dir.join(format!("{name}.session")),
            keyring,
        }
    }

    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Makes it the one the client commands of this process use.
    pub(crate) fn install(self) {
        let _ = SESSION_FILE.set(self);
    }

    /// The kept capability, if there is one for this certificate with more
    /// than [`KEPT_MARGIN_MS`] left (anything else is ignored: the command
    /// logs in again).
    fn load(&self, cert: &swarm::protocol::CertBody) -> Option<swarm::operators::Capability> {
        if !self.path.exists() {
            return None;
        }
        let plain = match self
            .keyring
            .read_file(&self.path, swarm::protocol::sealed::Kind::Capability)
        {
            Ok(plain) => plain,
            Err(e) => {
                eprintln!("swarm: ignoring the kept login: {e}");
                return None;
            }
        };
        let capability = swarm::operators::Capability::from_bytes(plain.to_vec());
        let claims = capability.unverified_claims()?;
        let now = swarm::credentials::unix_now().saturating_mul(1000);
        (claims.serial == cert.serial
            && claims.node == cert.node_id
            && claims.delegate.is_none()
            && claims.expires_ms > now.saturating_add(KEPT_MARGIN_MS))
        .then_some(capability)
    }

    /// Keeps `capability` (sealed, 0600).
    fn store(&self, capability: &swarm::operators::Capability) -> Result<()> {
        self.keyring.write_file(
            &self.path,
            swarm::protocol::sealed::Kind::Capability,
            capability.as_bytes(),
        )?;
        Ok(())
    }

    /// Removes it; whether there was one.
    pub(crate) fn remove(&self) -> Result<bool> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", self.path.display())),
        }
    }
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

/// How long `swarm login` waits for a cluster that is still starting.
const LOGIN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How often it asks again meanwhile.
const LOGIN_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// The environment variable an operator's current TOTP code may come from
/// (for scripts: a code is good for one login within a minute).
const TOTP_ENV: &str = "SWARM_TOTP";
