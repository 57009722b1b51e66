//! Node configuration: a TOML file (paths relative to the file) plus
//! command-line overrides, turned into the mesh's [`MeshConfig`].
//!
//! ```toml
//! cluster = "demo"                 # peers of another cluster are refused
//! listen = "127.0.0.1:7001"        # or "0.0.0.0:7001" with `advertise`
//! advertise = "203.0.113.7:7001"   # what other nodes dial (default: listen)
//! relay = false                    # forward relayed traffic for nodes behind NAT
//! relayed = false                  # behind NAT: reached through relays
//! relays = ["203.0.113.7:7001"]    # relays to keep links to (also learned from members)
//! relay_links = 2                  # how many relays a relayed node keeps links to
//! upgrade_ms = 5000                # relayed links try a direct path this often (backing off)
//! key = "n1.key"                   # from `swarm cert issue` (sealed)
//! cert = "n1.cert"
//! ca = "ca.pub"                    # from `swarm ca init`
//! secret = "join.secret"           # sealed
//! keyring = "keyring"              # opens the sealed files and seals the head's data
//! keyring_key = "keyring.key"      # a key file that opens it (default: a passphrase)
//! policy = "policy.toml"           # who may send what to this node's actors (default: the defaults)
//! audit = "n1.audit"               # sealed audit log (default: NAME.audit beside the keyring)
//! counters = true                  # per-actor counters for the console (false: none)
//! peers = ["127.0.0.1:7002"]       # dialed at start
//! suite = "aesgcm"                 # or "chachapoly"; the same on every node
//! revoked = []                     # certificate serials to refuse
//! revocations = "n1.revoked"       # sealed: serials the head group revoked (default: NAME.revoked beside the keyring)
//! ask_timeout_ms = 5000
//! heartbeat_ms = 700               # a ping when nothing was sent for this long (above lease_ms / 5)
//! heartbeat_timeout_ms = 2000      # below lease_ms x 1.1: a cut-off peer is noticed before its actors move
//! idle_timeout_s = 300
//! max_message_mib = 64
//! max_handshakes_per_source = 16   # handshakes in progress from one IP address
//! first_byte_ms = 2000             # a connection silent this long is closed
//! summary_s = 10                   # refusal summaries and the counters log line
//!
//! [membership]                     # SWIM over UDP on the listen port; on by default
//! enabled = true
//! seeds = ["127.0.0.1:7001"]       # any member's address; none: start a new cluster
//! probe_ms = 1000                  # each member probes one other per period
//! probe_rtt_ms = 500               # direct probe timeout before indirect probes
//! suspect_ms = 0                   # 0: 4 × max(1, log10 N) probe periods
//! gossip_ms = 200
//! gossip_keys = []                 # hex keys, first seals; empty: derived from the secret
//! cpus = 4.0                       # declared resources (override detection)
//! gpus = 0
//! memory_mib = 8192
//! resources = { tpu = 4.0 }        # custom resources
//!
//! [head]                           # only on nodes whose certificate has the head role
//! dir = "n1-head"                  # the control plane's log and snapshots (redb)
//! voters = 3                       # 1, 3 or 5 heads; the group forms once that many are members
//! lease_ms = 3000                  # nodes stop head-placed actors this long after their last renewal
//! election_ms = 300                # Raft election timeout (lower bound)
//! crash_evidence = true            # move a killed node's actors at once (off behind tcp-reset firewalls)
//! totp = "totp.secret"             # operators' TOTP logins (sealed; from `swarm cert issue --roles head`)
//! login_pool = 2                   # admin-API password checks at once on the leader (more: refused as busy)
//!
//! [admin]                          # the admin API, dashboard and /metrics over HTTPS (off without this section)
//! listen = "127.0.0.1:9443"
//! cert = "n1.admin.crt"            # from `swarm admin tls n1` (PEM chain under admin-ca.crt)
//! key = "n1.admin.key"             # sealed
//! refresh_ms = 1000                # how often the dashboard's stream refreshes
//! ```
//!
//! The failure-detection bound with these settings is
//! `suspect + (4 + log10 N) × probe` (10.5 s for 20 members with the
//! defaults); see `swarm_protocol::membership`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use crate::files::FileError;

mod durable;
mod membership;
pub use durable::{DurableFile, DurableFileError};
pub use membership::MembershipFile;

fn yes() -> bool {
    true
}

type Result<T> = std::result::Result<T, FileError>;
use serde::Deserialize;
use swarm_actors::policy::{Policy, PolicyFile};
use swarm_actors::{ClusterConfig, MeshConfig, ResourceOverrides};
use swarm_protocol::gossip::GossipKey;
use swarm_protocol::identity::unhex;
use swarm_protocol::{CipherSuite, HandshakeConfig, NodeKey, TrustStore, PROTOCOL_VERSION};

use crate::credentials::{read_array, read_cert, read_secret, Keyring, Unlock};
use swarm_protocol::sealed::Kind;

/// The node configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// The cluster name.
    pub cluster: String,
    /// Where the mesh listens.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The node key file.
    pub key: PathBuf,
    /// The node certificate file.
    pub cert: PathBuf,
    /// The CA public key file.
    pub ca: PathBuf,
    /// The join secret file (sealed).
    pub secret: PathBuf,
    /// The keyring that opens the sealed files and seals the head's data.
    #[serde(default = "default_keyring")]
    pub keyring: PathBuf,
    /// A key file that opens the keyring (without it: a passphrase).
    #[serde(default)]
    pub keyring_key: Option<PathBuf>,
    /// The policy file: allow and deny rules (`swarm::policy`).
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// The sealed audit log (default: `NAME.audit` beside the keyring).
    #[serde(default)]
    pub audit: Option<PathBuf>,
    /// A passphrase for the keyring, from the command line's sources.
    #[serde(skip)]
    pub passphrase: Option<Unlock>,
    /// Peers to dial at start.
    #[serde(default)]
    pub peers: Vec<SocketAddr>,
    /// The Noise cipher suite.
    #[serde(default = "default_suite")]
    pub suite: String,
    /// Revoked certificate serials.
    #[serde(default)]
    pub revoked: Vec<u64>,
    /// The sealed revocation list: the serials the head group revoked,
    /// loaded before the node's first handshake (default: `NAME.revoked`
    /// beside the keyring).
    #[serde(default)]
    pub revocations: Option<PathBuf>,
    /// Default ask timeout, milliseconds.
    #[serde(default = "default_ask_ms")]
    pub ask_timeout_ms: u64,
    /// Heartbeat interval, milliseconds.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// Heartbeat timeout, milliseconds.
    #[serde(default = "default_heartbeat_timeout_ms")]
    pub heartbeat_timeout_ms: u64,
    /// Idle link timeout, seconds.
    #[serde(default = "default_idle_s")]
    pub idle_timeout_s: u64,
    /// Largest message, MiB.
    #[serde(default = "default_max_message_mib")]
    pub max_message_mib: usize,
    /// Handshakes in progress from one IP address at once.
    #[serde(default = "default_per_source")]
    pub max_handshakes_per_source: usize,
    /// A connection that sends nothing for this long is closed, milliseconds.
    #[serde(default = "default_first_byte_ms")]
    pub first_byte_ms: u64,
    /// How often refusals are summarised and counters logged, seconds.
    #[serde(default = "default_summary_s")]
    pub summary_s: u64,
    /// Per-actor counters for the debug console (on by default).
    #[serde(default = "default_counters")]
    pub counters: bool,
    /// The address other nodes dial and gossip reaches (default: `listen`);
    /// needed when `listen` is a wildcard address.
    #[serde(default)]
    pub advertise: Option<SocketAddr>,
    /// Forward relayed traffic for nodes that cannot accept connections.
    #[serde(default)]
    pub relay: bool,
    /// This node cannot accept connections (behind NAT or a firewall): it
    /// keeps links to relays and is reached through them.
    #[serde(default)]
    pub relayed: bool,
    /// Relays a relayed node dials (relay-capable members are used too).
    #[serde(default)]
    pub relays: Vec<SocketAddr>,
    /// How many relays a relayed node keeps links to.
    #[serde(default = "default_relay_links")]
    pub relay_links: usize,
    /// How often a relayed link tries a direct path, at most, milliseconds.
    #[serde(default = "default_upgrade_ms")]
    pub upgrade_ms: u64,
    /// Membership settings.
    #[serde(default)]
    pub membership: MembershipFile,
    /// The control plane's head, on head nodes.
    #[serde(default)]
    pub head: Option<HeadFile>,
    /// The admin API, on nodes that serve it.
    #[serde(default)]
    pub admin: Option<AdminFile>,
    /// Where hosted durable actors keep their journals (default: the
    /// embedded store, in the head group's log).
    #[serde(default)]
    pub durable: Option<DurableFile>,
}

/// The `[admin]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// Where the admin API listens (HTTPS).
    pub listen: SocketAddr,
    /// Its certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (sealed, or PEM).
    pub key: PathBuf,
    /// How often the dashboard's stream refreshes, milliseconds.
    #[serde(default = "default_refresh_ms")]
    pub refresh_ms: u64,
}

fn default_refresh_ms() -> u64 {
    1_000
}

/// The `[head]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadFile {
    /// Where the log and snapshots live (relative to the file).
    pub dir: PathBuf,
    /// How many heads vote: 1, 3 or 5.
    #[serde(default = "one")]
    pub voters: usize,
    /// Lease length, milliseconds.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// Raft election timeout, lower bound, milliseconds.
    #[serde(default = "default_election_ms")]
    pub election_ms: u64,
    /// Use crash evidence (refused connections) to move actors before the
    /// lease runs out.
    #[serde(default = "yes")]
    pub crash_evidence: bool,
    /// The cluster's TOTP secret (sealed): operators log in through this head.
    #[serde(default)]
    pub totp: Option<PathBuf>,
    /// Admin-API password checks the leader runs at once.
    #[serde(default = "default_login_pool")]
    pub login_pool: usize,
}

fn default_login_pool() -> usize {
    swarm_actors::control::DEFAULT_LOGIN_POOL
}

fn one() -> usize {
    1
}
fn default_lease_ms() -> u64 {
    3_000
}
fn default_election_ms() -> u64 {
    300
}

/// Reads and compiles a policy file.
///
/// # Errors
///
/// If it cannot be read, is not valid TOML for the schema, or a rule is
/// malformed.
pub fn load_policy(path: &Path) -> Result<Policy> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let file: PolicyFile = toml::from_str(&text).map_err(|source| FileError::Toml {
        path: path.to_owned(),
        source,
    })?;
    Policy::new(&file).map_err(|e| FileError::Setting {
        setting: path.display().to_string(),
        problem: e.to_string(),
    })
}

fn default_keyring() -> PathBuf {
    PathBuf::from("keyring")
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7001))
}
fn default_suite() -> String {
    "aesgcm".into()
}
fn default_ask_ms() -> u64 {
    5_000
}
/// Above the default renewal period (`lease_ms` / 5 = 600 ms): see
/// `MeshConfig::heartbeat_interval`.
fn default_heartbeat_ms() -> u64 {
    700
}
/// Below the default lease bound (`lease_ms` × 1.1 + 100 ms = 3.4 s): see
/// `MeshConfig::heartbeat_timeout`.
fn default_heartbeat_timeout_ms() -> u64 {
    2_000
}
fn default_idle_s() -> u64 {
    300
}
fn default_per_source() -> usize {
    16
}

fn default_first_byte_ms() -> u64 {
    2000
}

fn default_relay_links() -> usize {
    2
}

fn default_upgrade_ms() -> u64 {
    5000
}

fn default_counters() -> bool {
    true
}

fn default_summary_s() -> u64 {
    10
}

fn default_max_message_mib() -> usize {
    64
}

impl NodeFile {
    /// Reads and parses a configuration file; relative paths in it are
    /// resolved against the file's directory.
    ///
    /// # Errors
    ///
    /// If the file is missing or not valid TOML for this schema.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut file: NodeFile = toml::from_str(&text).map_err(|source| FileError::Toml {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let (head_dir, head_totp) = match file.head.as_mut() {
            Some(h) => (Some(&mut h.dir), h.totp.as_mut()),
            None => (None, None),
        };
        let (durable_password, durable_ca) = match file.durable.as_mut() {
            Some(d) => (d.password_file.as_mut(), d.ca_file.as_mut()),
            None => (None, None),
        };
        let (admin_cert, admin_key) = match file.admin.as_mut() {
            Some(a) => (Some(&mut a.cert), Some(&mut a.key)),
            None => (None, None),
        };
        for p in [
            Some(&mut file.key),
            Some(&mut file.cert),
            Some(&mut file.ca),
            Some(&mut file.secret),
            Some(&mut file.keyring),
            file.keyring_key.as_mut(),
            file.policy.as_mut(),
            file.audit.as_mut(),
            file.revocations.as_mut(),
            head_dir,
            head_totp,
            admin_cert,
            admin_key,
            durable_password,
            durable_ca,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(file)
    }

    /// How the keyring opens: its key file if the configuration names
    /// one, else the passphrase given ([`NodeFile::passphrase`]).
    ///
    /// # Errors
    ///
    /// [`FileError::NoPassphrase`] when neither is there.
    pub fn unlock(&self) -> Result<Unlock> {
        if let Some(key) = &self.keyring_key {
            return Ok(Unlock::KeyFile(key.clone()));
        }
        self.passphrase
            .clone()
            .ok_or_else(|| FileError::NoPassphrase {
                keyring: self.keyring.clone(),
            })
    }

    /// Opens the keyring.
    ///
    /// # Errors
    ///
    /// If there is no way to open it, or it does not open.
    pub fn open_keyring(&self) -> Result<Keyring> {
        Ok(Keyring::open(&self.keyring, &self.unlock()?)?)
    }

    /// Where the audit log is: `audit`, or `NAME.audit` beside the keyring.
    ///
    /// # Errors
    ///
    /// If the certificate cannot be read (for its name).
    pub fn audit_path(&self) -> Result<PathBuf> {
        if let Some(path) = &self.audit {
            return Ok(path.clone());
        }
        let name = read_cert(&self.cert)?.body().name.clone();
        let dir = self.keyring.parent().unwrap_or(Path::new("."));
        Ok(dir.join(format!("{name}.audit")))
    }

    /// Where the revocation list is: `revocations`, or `NAME.revoked`
    /// beside the keyring.
    ///
    /// # Errors
    ///
    /// If the certificate cannot be read (for its name).
    pub fn revocations_path(&self) -> Result<PathBuf> {
        if let Some(path) = &self.revocations {
            return Ok(path.clone());
        }
        let name = read_cert(&self.cert)?.body().name.clone();
        let dir = self.keyring.parent().unwrap_or(Path::new("."));
        Ok(dir.join(format!("{name}.revoked")))
    }

    /// The mesh configuration of a node this file runs: as
    /// [`NodeFile::mesh_config`], with its audit log open and its
    /// revocation list loaded into the trust store (so the node refuses
    /// those certificates from its first handshake) and kept up to date.
    ///
    /// # Errors
    ///
    /// As [`NodeFile::mesh_config`]; if the audit log or the revocation
    /// list does not open (the error names the file).
    pub fn node_config(&self) -> Result<MeshConfig> {
        let keyring = self.open_keyring()?;
        let mut mesh = self.build(&keyring)?;
        let (revocations, revoked) = swarm_actors::at_rest::RevocationFile::open(
            &self.revocations_path()?,
            keyring.clone(),
        )?;
        mesh.handshake.trust.revoke(revoked);
        mesh.revocations = Some(revocations);
        mesh.audit = Some(swarm_actors::audit::Audit::open(
            &self.audit_path()?,
            keyring,
        )?);
        Ok(mesh)
    }

    /// Opens the keyring, loads the key material and builds the mesh
    /// configuration (without an audit log: for clients and tools).
    ///
    /// # Errors
    ///
    /// If the keyring does not open, a key file is missing or does not
    /// open, or the suite is unknown.
    pub fn mesh_config(&self) -> Result<MeshConfig> {
        let keyring = self.open_keyring()?;
        self.build(&keyring)
    }

    fn build(&self, keyring: &Keyring) -> Result<MeshConfig> {
        let key = NodeKey::from_secret(read_secret(keyring, &self.key, Kind::NodeKey)?);
        let cert = read_cert(&self.cert)?;
        let trust = TrustStore::new(read_array(&self.ca)?).map_err(|_| FileError::Content {
            path: self.ca.clone(),
            problem: "is not a CA public key",
        })?;
        trust.revoke(self.revoked.iter().copied());
        let suite: CipherSuite =
            self.suite
                .parse()
                .map_err(|problem: String| FileError::Setting {
                    setting: "suite".into(),
                    problem,
                })?;
        let handshake = HandshakeConfig {
            cluster: self.cluster.clone(),
            join_secret: read_secret(keyring, &self.secret, Kind::JoinSecret)?,
            key,
            cert,
            trust: Arc::new(trust),
            suite,
            listen: String::new(),
            version: PROTOCOL_VERSION,
        };
        let mut mesh = MeshConfig::new(self.listen, handshake);
        mesh.ask_timeout = Duration::from_millis(self.ask_timeout_ms);
        mesh.heartbeat_interval = Duration::from_millis(self.heartbeat_ms);
        mesh.heartbeat_timeout = Duration::from_millis(self.heartbeat_timeout_ms);
        mesh.idle_timeout = Duration::from_secs(self.idle_timeout_s);
        mesh.max_message = self.max_message_mib << 20;
        mesh.max_handshakes_per_source = self.max_handshakes_per_source.max(1);
        mesh.first_byte_timeout = Duration::from_millis(self.first_byte_ms.max(1));
        mesh.summary_interval = Duration::from_secs(self.summary_s.max(1));
        mesh.counters = self.counters;
        mesh.advertise = self.advertise;
        mesh.relay = self.relay;
        mesh.relayed = self.relayed;
        mesh.relays = self.relays.clone();
        mesh.relay_links = self.relay_links.max(1);
        mesh.upgrade_interval = Duration::from_millis(self.upgrade_ms.max(10));
        if self.relay && self.relayed {
            return Err(FileError::Setting {
                setting: "relay".into(),
                problem: "a relayed node cannot be a relay: relays must accept connections".into(),
            });
        }
        mesh.cluster = self.membership.cluster_config()?;
        if let Some(path) = &self.policy {
            mesh.policy = Arc::new(load_policy(path)?);
        }
        if let Some(head) = &self.head {
            if head.lease_ms < 100 || head.election_ms < 50 {
                return Err(FileError::Setting {
                    setting: "head".into(),
                    problem: "lease_ms must be at least 100 and election_ms at least 50".into(),
                });
            }
            let mut config = swarm_actors::control::HeadConfig::new(&head.dir);
            config.voters = head.voters;
            config.lease = Duration::from_millis(head.lease_ms);
            config.election_timeout = Duration::from_millis(head.election_ms);
            config.crash_evidence = head.crash_evidence;
            config.login_pool = head.login_pool.max(1);
            config.seal = Arc::new(keyring.clone());
            if let Some(path) = &head.totp {
                let secret = read_secret(keyring, path, Kind::TotpSecret)?;
                config.totp = Some(Arc::new(zeroize::Zeroizing::new(secret)));
            }
            mesh.head = Some(config);
        }
        Ok(mesh)
    }

    /// A configuration file's text for a node of a local cluster: it
    /// dials `peers` at start and joins membership through `seeds`; its
    /// keyring opens with the throw-away key file next to it.
    pub fn render(
        cluster: &str,
        name: &str,
        listen: SocketAddr,
        peers: &[SocketAddr],
        seeds: &[SocketAddr],
    ) -> String {
        let list = |addrs: &[SocketAddr]| {
            addrs
                .iter()
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "cluster = \"{cluster}\"\nlisten = \"{listen}\"\nkey = \"{name}.key\"\ncert = \"{name}.cert\"\n\
             ca = \"ca.pub\"\nsecret = \"join.secret\"\nkeyring = \"keyring\"\nkeyring_key = \"{}\"\n\
             peers = [{}]\n\n[membership]\nseeds = [{}]\n",
            crate::credentials::THROWAWAY_KEY_FILE,
            list(peers),
            list(seeds)
        )
    }

    /// The `[head]` section of a local cluster's head node `name`, with
    /// `voters` heads in all.
    pub fn render_head(name: &str, voters: usize) -> String {
        format!("\n[head]\ndir = \"{name}-head\"\nvoters = {voters}\ntotp = \"totp.secret\"\n")
    }
}
