//! The identity and security subcommands: `swarm ca`, `swarm cert`,
//! `swarm keys` and `swarm operator`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Subcommand;

use super::secrets::Totp;

#[derive(Debug, Subcommand)]
pub(crate) enum CaCommand {
    /// Create a CA key pair and a join secret.
    Init {
        /// Where to write the keyring, ca.key, ca.pub, join.secret and totp.secret.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Replace an existing CA (invalidates every certificate it issued).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum OperatorCommand {
    /// Issue an operator certificate and enroll its TOTP second factor:
    /// prints an otpauth:// URI and a QR code for an authenticator app.
    Add {
        /// The operator's name.
        name: String,
        /// Comma-separated roles: operator (reads) and admin (changes).
        #[arg(long, value_delimiter = ',', default_value = "operator")]
        roles: Vec<String>,
        /// The directory holding the CA (ca.key, totp.secret, keyring).
        #[arg(long, default_value = ".")]
        ca_dir: PathBuf,
        /// Where to write NAME.key and NAME.cert.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = swarm::credentials::DEFAULT_DAYS)]
        days: u64,
        /// The issuer the authenticator app shows (e.g. the cluster's name).
        #[arg(long, default_value = "swarm")]
        issuer: String,
    },
    /// Set your own password for the admin API and dashboard (logged in
    /// with your certificate and TOTP code; the heads keep only an
    /// argon2id hash made here).
    Passwd {
        /// Your operator configuration (certificate and key).
        #[arg(long)]
        config: PathBuf,
        /// Any member's mesh address.
        #[arg(long)]
        node: SocketAddr,
        /// Read the new password from this environment variable instead
        /// of asking twice on the terminal.
        #[arg(long)]
        password_env: Option<String>,
        #[command(flatten)]
        totp: Totp,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Log in to a node's admin API with your certificate and TOTP code
    /// (over the mesh): prints a bearer token for `Authorization: Bearer`
    /// (curl, scripts) and the API's address.
    Login {
        /// Your operator configuration (certificate and key).
        #[arg(long)]
        config: PathBuf,
        /// The mesh address of the node whose admin API to use.
        #[arg(long)]
        node: SocketAddr,
        /// Print JSON (token, url, expires_ms).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        totp: Totp,
    },
    /// Issue a node's admin-API TLS certificate (ECDSA P-256, which
    /// browsers accept) under the admin CA, creating the CA
    /// (admin-ca.crt, admin-ca.key) on first use. Operators trust
    /// admin-ca.crt in their browser (or with `curl --cacert`).
    Tls {
        /// The node's name: writes NAME.admin.crt and NAME.admin.key (sealed).
        name: String,
        /// Host names and addresses the certificate is valid for.
        #[arg(long = "host", default_values_t = ["127.0.0.1".to_owned(), "localhost".to_owned()])]
        hosts: Vec<String>,
        /// The directory holding the CA and its keyring.
        #[arg(long, default_value = ".")]
        ca_dir: PathBuf,
        /// Where to write the certificate and key (sealed under that
        /// directory's keyring).
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// The cluster's name, for the CA's subject when it is created.
        #[arg(long, default_value = "swarm")]
        cluster: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Add a data-key term: new values are sealed under it (running nodes
    /// pick it up within a second), every older term still opens.
    Rotate {
        /// The keyring file.
        #[arg(long, default_value = "keyring")]
        keyring: PathBuf,
        /// Also re-seal the key files next to the keyring under the new term.
        #[arg(long)]
        reseal: bool,
        /// Rotate the head group's capability key instead (an admin
        /// operator, with --config and --node): every operator's login ends
        /// on each node with its next lease grant.
        #[arg(long, requires_all = ["config", "node"])]
        capabilities: bool,
        /// Your admin operator configuration (with --capabilities).
        #[arg(long)]
        config: Option<PathBuf>,
        /// A member to ask through (with --capabilities).
        #[arg(long)]
        node: Option<SocketAddr>,
        #[command(flatten)]
        totp: Totp,
    },
    /// Rewrap the keyring under a new passphrase or key file (the data keys
    /// stay; the old passphrase comes from the usual options).
    Passwd {
        /// Also replace the root key with a freshly generated one (the data
        /// keys are re-wrapped under it): a copy of the old keyring file
        /// together with the old passphrase or root key opens nothing new.
        /// Restart running nodes afterwards so they see later rotations.
        #[arg(long)]
        new_root: bool,
        /// The keyring file.
        #[arg(long, default_value = "keyring")]
        keyring: PathBuf,
        /// Wrap it with this key file instead (created if missing).
        #[arg(long)]
        new_key_file: Option<PathBuf>,
        /// Read the new passphrase from this file.
        #[arg(long)]
        new_passphrase_file: Option<PathBuf>,
        /// Read the new passphrase from this environment variable.
        #[arg(long)]
        new_passphrase_env: Option<String>,
    },
    /// Show what wraps a keyring and which terms it holds.
    Status {
        /// The keyring file.
        #[arg(long, default_value = "keyring")]
        keyring: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CertCommand {
    /// Issue a new certificate (new serial and validity, same roles) for a
    /// node's existing key: the running node switches to it within a
    /// second without dropping links or actors.
    Renew {
        /// The node's name (NAME.key and NAME.cert in --out).
        #[arg(long)]
        name: String,
        /// The directory holding ca.key.
        #[arg(long, default_value = ".")]
        ca_dir: PathBuf,
        /// Where NAME.key and NAME.cert are.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Validity in days from now.
        #[arg(long, default_value_t = swarm::credentials::DEFAULT_DAYS)]
        days: u64,
    },
    /// Revoke a certificate cluster-wide, without restarts: every node
    /// closes its holder's links within a lease renewal and refuses its
    /// handshakes from then on (admin operators only).
    Revoke {
        /// The certificate's serial, or the name of a NAME.cert in --ca-dir.
        target: String,
        /// Where NAME.cert is.
        #[arg(long, default_value = ".")]
        ca_dir: PathBuf,
        /// A configuration with an admin operator certificate.
        #[arg(long)]
        config: PathBuf,
        /// A member to ask through (its mesh address).
        #[arg(long)]
        node: SocketAddr,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        totp: Totp,
    },
    /// Create a node key and a certificate for it, signed by the CA.
    Issue {
        /// The node's name (e.g. n1).
        #[arg(long)]
        name: String,
        /// Comma-separated roles (head, worker, operator).
        #[arg(long, value_delimiter = ',', default_value = "worker")]
        roles: Vec<String>,
        /// The directory holding ca.key.
        #[arg(long, default_value = ".")]
        ca_dir: PathBuf,
        /// Where to write NAME.key and NAME.cert (and, in another directory
        /// than the CA's, its own keyring, ca.pub, join.secret and for heads
        /// totp.secret).
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Validity in days, counted from the start of validity.
        #[arg(long, default_value_t = swarm::credentials::DEFAULT_DAYS)]
        days: u64,
        /// Start of validity, to pre-issue certificates: a date
        /// (`2027-01-01`), a UTC time (`2027-01-01T08:00:00Z`) or Unix
        /// seconds. Default: now, less five minutes of clock skew.
        #[arg(long, value_parser = swarm::credentials::parse_time)]
        not_before: Option<u64>,
        /// Certificate serial (random by default); revocation lists name serials.
        #[arg(long)]
        serial: Option<u64>,
    },
}
