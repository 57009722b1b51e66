//! The `[membership]` section of a node file: SWIM timers and gossip
//! keys, turned into the node's `ClusterConfig`.

use super::*;

/// The `[membership]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipFile {
    /// Run membership (gossip over UDP on the listen port).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Addresses to join through.
    #[serde(default)]
    pub seeds: Vec<SocketAddr>,
    /// Probe period, milliseconds.
    #[serde(default = "default_probe_ms")]
    pub probe_ms: u64,
    /// Direct probe timeout, milliseconds.
    #[serde(default = "default_probe_rtt_ms")]
    pub probe_rtt_ms: u64,
    /// Suspicion timeout, milliseconds (0: scaled with the cluster).
    #[serde(default)]
    pub suspect_ms: u64,
    /// Gossip interval, milliseconds.
    #[serde(default = "default_gossip_ms")]
    pub gossip_ms: u64,
    /// Gossip keys in hex, the sealing key first.
    #[serde(default)]
    pub gossip_keys: Vec<String>,
    /// Declared CPUs.
    pub cpus: Option<f64>,
    /// Declared GPUs.
    pub gpus: Option<u32>,
    /// Declared memory, MiB.
    pub memory_mib: Option<u64>,
    /// Custom resources.
    #[serde(default)]
    pub resources: BTreeMap<String, f64>,
}

impl Default for MembershipFile {
    fn default() -> Self {
        Self {
            enabled: true,
            seeds: Vec::new(),
            probe_ms: default_probe_ms(),
            probe_rtt_ms: default_probe_rtt_ms(),
            suspect_ms: 0,
            gossip_ms: default_gossip_ms(),
            gossip_keys: Vec::new(),
            cpus: None,
            gpus: None,
            memory_mib: None,
            resources: BTreeMap::new(),
        }
    }
}

fn default_probe_ms() -> u64 {
    1_000
}
fn default_probe_rtt_ms() -> u64 {
    500
}
fn default_gossip_ms() -> u64 {
    200
}

impl MembershipFile {
    /// The cluster configuration, or `None` when disabled.
    ///
    /// # Errors
    ///
    /// If a gossip key is not 32 bytes of hex or a timer is zero.
    pub fn cluster_config(&self) -> Result<Option<ClusterConfig>> {
        if !self.enabled {
            return Ok(None);
        }
        if self.probe_ms == 0 || self.probe_rtt_ms == 0 || self.gossip_ms == 0 {
            return Err(FileError::Setting {
                setting: "membership".into(),
                problem: "timers must be above zero".into(),
            });
        }
        if self.probe_rtt_ms >= self.probe_ms {
            return Err(FileError::Setting {
                setting: "membership.probe_rtt_ms".into(),
                problem: format!(
                    "{} must be below probe_ms ({})",
                    self.probe_rtt_ms, self.probe_ms
                ),
            });
        }
        let mut keys = Vec::new();
        for (i, hex) in self.gossip_keys.iter().enumerate() {
            let bytes: [u8; 32] = unhex(hex.trim())
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| FileError::Setting {
                    setting: format!("membership.gossip_keys[{i}]"),
                    problem: "is not 64 hex digits".into(),
                })?;
            keys.push(GossipKey::from_bytes(bytes));
        }
        let mut config = ClusterConfig {
            seeds: self.seeds.clone(),
            gossip_keys: keys,
            resources: ResourceOverrides {
                cpus: self.cpus,
                gpus: self.gpus,
                memory: self.memory_mib.map(|m| m << 20),
                custom: self
                    .resources
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect(),
            },
            ..ClusterConfig::default()
        };
        let gossip = &mut config.gossip;
        gossip.probe_period = Duration::from_millis(self.probe_ms);
        gossip.probe_rtt = Duration::from_millis(self.probe_rtt_ms);
        gossip.gossip_interval = Duration::from_millis(self.gossip_ms);
        if self.suspect_ms > 0 {
            gossip.suspect_timeout = Some(Duration::from_millis(self.suspect_ms));
        }
        Ok(Some(config))
    }
}
