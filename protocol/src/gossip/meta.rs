//! Node metadata: roles, resources, load and service entries, gossiped as
//! foca custom broadcasts and answered on request.
//!
//! ```text
//! meta item = member id (see codec) | seq u32 | NodeMeta as MessagePack
//! ```
//!
//! Items about one address are ordered by `(bump, seq)`: `bump` is the
//! member's incarnation bump (a restarted node starts higher), `seq` counts
//! changes within one incarnation. A whole item is at most [`MAX_META_LEN`] bytes so
//! that it fits one datagram with a header; a node whose metadata would not
//! fit gets a clear error when it registers one service too many.

use serde::{Deserialize, Serialize};

use super::codec::{get_member_id, put_member_id};
use super::MemberId;

/// The largest encoded meta item.
pub const MAX_META_LEN: usize = 1024;
/// The most roles, custom resources or service entries one node announces.
pub const MAX_ENTRIES: usize = 64;
/// The longest name (role, resource, service, actor).
pub const MAX_NAME_LEN: usize = 128;

/// Why metadata was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    /// The encoded item would exceed [`MAX_META_LEN`].
    #[error(
        "node metadata of {len} bytes exceeds the limit of {max} (fewer services or shorter names)"
    )]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Too many entries in a list.
    #[error("{what}: {count} entries exceed the limit of {max}")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// How many.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A name is empty or too long.
    #[error("{what} name of {len} bytes is empty or longer than {max}")]
    BadName {
        /// Which kind of name.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A resource amount is negative or not a number.
    #[error("resource {name} has invalid amount {amount}")]
    BadAmount {
        /// The resource.
        name: String,
        /// The amount.
        amount: f64,
    },
    /// The bytes are not a meta item.
    #[error("malformed meta item: {0}")]
    Malformed(String),
}

/// What a node offers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Logical CPUs.
    pub cpus: f64,
    /// Memory in bytes.
    pub memory: u64,
    /// GPUs.
    pub gpus: u32,
    /// GPU memory in bytes, summed over GPUs.
    pub gpu_memory: u64,
    /// Custom resources (`--resource NAME=AMOUNT`), sorted by name.
    pub custom: Vec<(String, f64)>,
}

/// How busy a node is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// CPU use over all CPUs, 0–100.
    pub cpu_percent: f32,
    /// Memory in use, bytes.
    pub memory_used: u64,
    /// Mean GPU utilisation, 0–100 (0 without GPUs).
    pub gpu_percent: f32,
}

/// One instance of a named service: an actor registered on the node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceEntry {
    /// The service name clients look up.
    pub service: String,
    /// The registered actor name that serves it on this node.
    pub actor: String,
}

/// Everything a node announces about itself besides its member id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeMeta {
    /// The node's name (from its certificate).
    pub name: String,
    /// Roles from its certificate.
    pub roles: Vec<String>,
    /// Resources it offers.
    pub resources: Resources,
    /// Its load when the item was made.
    pub load: Load,
    /// Service instances it hosts, sorted.
    pub services: Vec<ServiceEntry>,
    /// Set in the last item a node sends before it leaves cleanly.
    #[serde(default)]
    pub leaving: bool,
    /// The node forwards relayed traffic for nodes that cannot accept
    /// connections.
    #[serde(default)]
    pub relay: bool,
    /// The node cannot accept connections: it is reached through these
    /// relays (empty: dial it directly).
    #[serde(default)]
    pub via: Vec<crate::identity::NodeId>,
}

/// The most relays a node announces it is reached through.
pub const MAX_VIA: usize = 4;

fn check_name(what: &'static str, name: &str) -> Result<(), MetaError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(MetaError::BadName {
            what,
            len: name.len(),
            max: MAX_NAME_LEN,
        });
    }
    Ok(())
}

fn check_count(what: &'static str, count: usize) -> Result<(), MetaError> {
    if count > MAX_ENTRIES {
        return Err(MetaError::TooMany {
            what,
            count,
            max: MAX_ENTRIES,
        });
    }
    Ok(())
}

impl NodeMeta {
    /// Checks every bound a receiver enforces.
    pub fn validate(&self) -> Result<(), MetaError> {
        if self.name.len() > MAX_NAME_LEN {
            return Err(MetaError::BadName {
                what: "node",
                len: self.name.len(),
                max: MAX_NAME_LEN,
            });
        }
        check_count("roles", self.roles.len())?;
        check_count("custom resources", self.resources.custom.len())?;
        check_count("services", self.services.len())?;
        if self.via.len() > MAX_VIA {
            return Err(MetaError::TooMany {
                what: "relays",
                count: self.via.len(),
                max: MAX_VIA,
            });
        }
        for role in &self.roles {
            check_name("role", role)?;
        }
        let amounts = self
            .resources
            .custom
            .iter()
            .map(|(name, amount)| (name.as_str(), *amount))
            .chain([("cpus", self.resources.cpus)]);
        for (name, amount) in amounts {
            check_name("resource", name)?;
            if !amount.is_finite() || amount < 0.0 {
                return Err(MetaError::BadAmount {
                    name: name.to_owned(),
                    amount,
                });
            }
        }
        for entry in &self.services {
            check_name("service", &entry.service)?;
            check_name("actor", &entry.actor)?;
        }
        Ok(())
    }
}

/// One node's metadata at one version, as gossiped.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaItem {
    /// Whose metadata (its member id when it made the item).
    pub id: MemberId,
    /// Change counter within that incarnation.
    pub seq: u32,
    /// The metadata.
    pub meta: NodeMeta,
}

impl MetaItem {
    /// The order of items about one address: larger is newer.
    pub fn version(&self) -> (u64, u32) {
        (self.id.bump, self.seq)
    }

    /// Encodes the item, refusing one that breaks a bound.
    pub fn encode(&self) -> Result<Vec<u8>, MetaError> {
        self.meta.validate()?;
        let mut out = Vec::with_capacity(256);
        put_member_id(&self.id, &mut out).map_err(|e| MetaError::Malformed(e.to_string()))?;
        out.extend_from_slice(&self.seq.to_be_bytes());
        rmp_serde::encode::write_named(&mut out, &self.meta)
            .map_err(|e| MetaError::Malformed(e.to_string()))?;
        if out.len() > MAX_META_LEN {
            return Err(MetaError::TooLarge {
                len: out.len(),
                max: MAX_META_LEN,
            });
        }
        Ok(out)
    }

    /// Reads only the member id and sequence number, without decoding the
    /// metadata; returns them and the rest.
    pub fn peek(bytes: &[u8]) -> Result<(MemberId, u32, &[u8]), MetaError> {
        let mut input = bytes;
        let id = get_member_id(&mut input).map_err(|e| MetaError::Malformed(e.to_string()))?;
        let (seq, rest) = input
            .split_first_chunk::<4>()
            .ok_or_else(|| MetaError::Malformed("truncated sequence number".into()))?;
        Ok((id, u32::from_be_bytes(*seq), rest))
    }

    /// Decodes and validates an item.
    pub fn decode(bytes: &[u8]) -> Result<Self, MetaError> {
        if bytes.len() > MAX_META_LEN {
            return Err(MetaError::TooLarge {
                len: bytes.len(),
                max: MAX_META_LEN,
            });
        }
        let (id, seq, body) = Self::peek(bytes)?;
        let mut reader = body;
        let meta: NodeMeta =
            rmp_serde::from_read(&mut reader).map_err(|e| MetaError::Malformed(e.to_string()))?;
        if !reader.is_empty() {
            return Err(MetaError::Malformed(format!(
                "{} trailing bytes",
                reader.len()
            )));
        }
        meta.validate()?;
        Ok(Self { id, seq, meta })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(services: usize) -> NodeMeta {
        NodeMeta {
            name: "node-1".into(),
            roles: vec!["worker".into()],
            resources: Resources {
                cpus: 2.0,
                memory: 24 << 30,
                gpus: 0,
                gpu_memory: 0,
                custom: vec![("tpu".into(), 4.0)],
            },
            load: Load {
                cpu_percent: 12.5,
                memory_used: 1 << 30,
                gpu_percent: 0.0,
            },
            leaving: false,
            services: (0..services)
                .map(|i| ServiceEntry {
                    service: format!("svc-{i}"),
                    actor: format!("actor-{i}"),
                })
                .collect(),
            relay: true,
            via: vec![crate::NodeId::from_bytes([7; 16])],
        }
    }

    fn item(meta: NodeMeta) -> MetaItem {
        MetaItem {
            id: MemberId {
                addr: "127.0.0.1:7001".parse().unwrap(),
                node: crate::identity::NodeId::from_bytes([3; 16]),
                bump: 1_700_000_000_000,
            },
            seq: 4,
            meta,
        }
    }

    #[test]
    fn an_item_round_trips_and_peeks() {
        let it = item(meta(3));
        let bytes = it.encode().unwrap();
        assert_eq!(MetaItem::decode(&bytes).unwrap(), it);
        let (id, seq, _) = MetaItem::peek(&bytes).unwrap();
        assert_eq!((id, seq), (it.id, it.seq));
        for cut in 0..bytes.len() {
            assert!(MetaItem::decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(MetaItem::decode(&long).is_err());
    }

    #[test]
    fn bounds_are_enforced_with_clear_errors() {
        let err = item(meta(40)).encode().unwrap_err();
        assert!(matches!(err, MetaError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("fewer services"));
        let mut bad = meta(0);
        bad.resources.custom.push(("x".into(), f64::NAN));
        assert!(matches!(
            item(bad).encode(),
            Err(MetaError::BadAmount { .. })
        ));
        let mut bad = meta(0);
        bad.roles.push(String::new());
        assert!(matches!(item(bad).encode(), Err(MetaError::BadName { .. })));
    }
}
