//! Node configuration: a TOML file (paths relative to the file) plus
//! command-line overrides, turned into the mesh's [`MeshConfig`].
//!
//! ```toml
//! cluster = "demo"                 # peers of another cluster are refused
//! listen = "127.0.0.1:7001"
//! key = "n1.key"                   # from `swarm cert issue`
//! cert = "n1.cert"
//! ca = "ca.pub"                    # from `swarm ca init`
//! secret = "join.secret"
//! peers = ["127.0.0.1:7002"]       # dialed at start
//! suite = "aesgcm"                 # or "chachapoly"; the same on every node
//! revoked = []                     # certificate serials to refuse
//! ask_timeout_ms = 5000
//! heartbeat_ms = 1000
//! heartbeat_timeout_ms = 10000
//! idle_timeout_s = 300
//! max_message_mib = 64
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde::Deserialize;
use swarm_actors::MeshConfig;
use swarm_protocol::{CipherSuite, HandshakeConfig, NodeKey, TrustStore, PROTOCOL_VERSION};

use crate::credentials::{read_array, read_cert};

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
    /// The join secret file.
    pub secret: PathBuf,
    /// Peers to dial at start.
    #[serde(default)]
    pub peers: Vec<SocketAddr>,
    /// The Noise cipher suite.
    #[serde(default = "default_suite")]
    pub suite: String,
    /// Revoked certificate serials.
    #[serde(default)]
    pub revoked: Vec<u64>,
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
fn default_heartbeat_ms() -> u64 {
    1_000
}
fn default_heartbeat_timeout_ms() -> u64 {
    10_000
}
fn default_idle_s() -> u64 {
    300
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
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let mut file: NodeFile =
            toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut file.key,
            &mut file.cert,
            &mut file.ca,
            &mut file.secret,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(file)
    }

    /// Loads the key material and builds the mesh configuration.
    ///
    /// # Errors
    ///
    /// If a key file is missing or invalid, or the suite is unknown.
    pub fn mesh_config(&self) -> Result<MeshConfig> {
        let key = NodeKey::from_secret(read_array(&self.key)?);
        let cert = read_cert(&self.cert)?;
        let mut trust = TrustStore::new(read_array(&self.ca)?)
            .with_context(|| format!("{} is not a CA public key", self.ca.display()))?;
        trust.revoke(self.revoked.iter().copied());
        let suite: CipherSuite = self.suite.parse().map_err(anyhow::Error::msg)?;
        let handshake = HandshakeConfig {
            cluster: self.cluster.clone(),
            join_secret: read_array(&self.secret)?,
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
        Ok(mesh)
    }

    /// A configuration file's text for a node of a local cluster.
    pub fn render(cluster: &str, name: &str, listen: SocketAddr, peers: &[SocketAddr]) -> String {
        let peers: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
        format!(
            "cluster = \"{cluster}\"\nlisten = \"{listen}\"\nkey = \"{name}.key\"\ncert = \"{name}.cert\"\n\
             ca = \"ca.pub\"\nsecret = \"join.secret\"\npeers = [{}]\n",
            peers.join(", ")
        )
    }
}
