//! Starting registered actor types on request: the hands of the control
//! plane. A node registers the types the cluster may start on it
//! ([`Spawnable`], declared once next to the remote protocol); its `Host`
//! actor (`swarm.host`) starts one under local supervision when a peer
//! with the `head` or `operator` role asks ([`HostSpawn`]).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use actix::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use swarm_protocol::NodeId;

use super::{Restart, Supervised};
use crate::directory::{Caller, Directory, RemoteActor, StampCaller};
use crate::error::AskError;

/// The name every node's host actor is exposed under.
pub const HOST_ACTOR: &str = "swarm.host";

/// Who an incarnation is: its name and its placement epoch, a fencing
/// token for side effects outside the cluster.
///
/// # What the epoch guarantees
///
/// For a head-placed (named) actor:
///
/// - **one epoch, one life**: every start of the name, whatever the reason
///   (first placement, a move off a crashed, lease-expired or drained
///   node, a restart after its host restarted or lost it), runs under an
///   epoch the head group committed for that start; no host starts an
///   epoch twice, and the leader never hands an epoch out twice. So two
///   answers carrying the same epoch come from the same in-memory state
///   (local restarts after a panic, counted in `restarts`, keep the epoch:
///   they run on the same node, one after the other, and start from the
///   actor's arguments);
/// - **newer is larger**: epochs come from one counter in the head
///   group's log, so a later incarnation of any name has a larger epoch;
/// - **at most one active**: an incarnation runs only while its node holds
///   a lease, and the leader starts the next one elsewhere only after that
///   lease ran out by the leader's clock with the drift allowed for
///   (lease × 1.1 + 100 ms), or on crash evidence. Within that clock bound,
///   no two epochs of one name are active at the same instant.
///
/// An external system that remembers the largest epoch it has seen per name
/// and refuses writes that carry a smaller one is fenced against any stale
/// incarnation, even one whose lease assumption broke (a frozen VM that
/// wakes up). The control-plane simulator (`head::sim` in this crate)
/// checks these over hundreds of seeds of partitions, crashes and skew.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incarnation {
    /// The name it is exposed under.
    pub name: String,
    /// Its placement's epoch.
    pub epoch: u64,
    /// The node it runs on.
    pub node: NodeId,
    /// The head group placed it (its epoch is one the group committed);
    /// false for an operator's spawn or the node's own, whose epoch is
    /// whatever the sender said. Durable actors run only when placed.
    #[serde(default)]
    pub placed: bool,
}

/// An actor type the cluster may start: a stable type name, serde
/// arguments, and how an incarnation is built from them.
pub trait Spawnable: RemoteActor {
    /// The type's name on the wire (stable, like message tags).
    const TYPE: &'static str;
    /// What each incarnation is built from.
    type Args: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// Builds an incarnation.
    fn build(args: &Self::Args, incarnation: &Incarnation) -> Self;
}

/// Asks a node's host to start a registered type (answered by `swarm.host`).
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<(), SpawnError>")]
pub struct HostSpawn {
    /// The registered type ([`Spawnable::TYPE`]).
    pub type_name: String,
    /// The name to expose it under.
    pub name: String,
    /// Its arguments, MessagePack.
    pub args: Vec<u8>,
    /// The placement's epoch.
    pub epoch: u64,
    /// Its restart policy.
    pub restart: Restart,
    /// Set by the head: the log index of the placement. The host starts it
    /// only while it holds a lease, and not if a newer grant superseded it.
    #[serde(default)]
    pub fence: Option<u64>,
}

/// Asks a node's host to stop a head-placed actor's incarnation `epoch`.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
pub struct HostStop {
    /// The name.
    pub name: String,
    /// The incarnation's epoch (a newer one is left running).
    pub epoch: u64,
}

/// Asks a node's host to restart an actor it supervises now: its
/// incarnation stops and the next starts at once (counted as a restart).
/// An operator's action (admin certificates; audited).
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<u64, String>")]
pub struct HostRestart {
    /// The name.
    pub name: String,
}

/// Asks a node to leave the cluster (after a drain moved its actors).
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
pub struct HostLeave;

/// Why a host did not start an actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The node has no such type registered.
    #[error("no actor type {type_name:?} is registered on the node")]
    UnknownType {
        /// The type asked for.
        type_name: String,
    },
    /// The arguments do not decode as the type's arguments.
    #[error("the arguments do not decode: {reason}")]
    BadArgs {
        /// The decoder's words.
        reason: String,
    },
    /// The name is taken on the node.
    #[error("an actor named {name:?} is already registered")]
    NameTaken {
        /// The name.
        name: String,
    },
    /// A head placement reached a node that holds no lease.
    #[error("the node holds no lease from the head")]
    NoLease,
    /// A newer grant or placement superseded this placement.
    #[error("a newer placement superseded this one")]
    Stale,
    /// The arguments could not be encoded by the caller.
    #[error("the arguments do not encode: {reason}")]
    Encode {
        /// The encoder's words.
        reason: String,
    },
}

/// Why `Node::spawn_on` did not start an actor.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteSpawnError {
    /// The host refused it (its reason is printed in the message, not
    /// again as the source).
    #[error("spawn refused: {0}")]
    Refused(SpawnError),
    /// The request got no answer, or the host's node refused the caller.
    #[error(transparent)]
    Ask(#[from] AskError),
}

impl From<SpawnError> for RemoteSpawnError {
    fn from(e: SpawnError) -> Self {
        RemoteSpawnError::Refused(e)
    }
}

pub(crate) type StartFuture = Pin<Box<dyn Future<Output = Result<Supervised, SpawnError>>>>;
pub(crate) type Starter =
    Arc<dyn Fn(&Directory, &ArbiterHandle, HostSpawn) -> StartFuture + Send + Sync>;

/// The types a node may start, by type name. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Registry {
    node: NodeId,
    types: Arc<RwLock<HashMap<&'static str, Starter>>>,
}

impl Registry {
    /// No types yet, on `node`.
    pub(crate) fn new(node: NodeId) -> Self {
        Self {
            node,
            types: Arc::default(),
        }
    }

    /// Registers `A`; true if it was not registered yet.
    pub(crate) fn register<A: Spawnable>(&self) -> bool {
        let node = self.node;
        let start: Starter = Arc::new(move |directory, arbiter, request| {
            let args: A::Args = match rmp_serde::from_slice(&request.args) {
                Ok(args) => args,
                Err(e) => {
                    let reason = e.to_string();
                    return Box::pin(async move { Err(SpawnError::BadArgs { reason }) });
                }
            };
            let incarnation = Incarnation {
                name: request.name.clone(),
                epoch: request.epoch,
                node,
                // Only a head's placement keeps its fence (see the
                // HostSpawn's StampCaller).
                placed: request.fence.is_some(),
            };
            let factory = move || A::build(&args, &incarnation);
            let directory = directory.clone();
            let arbiter = arbiter.clone();
            Box::pin(async move {
                Ok(super::start(directory, &arbiter, request.name, request.restart, factory).await)
            })
        });
        self.types
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(A::TYPE, start)
            .is_none()
    }

    /// The node it starts actors on.
    pub(crate) fn node(&self) -> NodeId {
        self.node
    }

    /// The registered type names, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .types
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .map(|t| (*t).to_owned())
            .collect();
        names.sort();
        names
    }

    pub(crate) fn starter(&self, type_name: &str) -> Option<Starter> {
        self.types
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(type_name)
            .cloned()
    }
}

/// One actor a host started, as `swarm actors` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorRow {
    /// The name it is exposed under.
    pub name: String,
    /// Its registered type.
    pub type_name: String,
    /// running, restarting, failed or stopped.
    pub state: String,
    /// Restarts since it was started.
    pub restarts: u64,
    /// Its placement's epoch.
    pub epoch: u64,
    /// Who supervises it and by which policy.
    #[serde(default)]
    pub supervisor: String,
    /// Placed by the head (it moves if this node fails), rather than
    /// started by this node alone.
    #[serde(default)]
    pub placed: bool,
    /// Its latest restarts, oldest first.
    #[serde(default)]
    pub history: Vec<super::RestartRecord>,
}

/// Asks a node's host for the actors it started.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Vec<ActorRow>")]
pub struct ListActors;

/// Asks a node's host which registered types it can start, sorted (what
/// `swarm types` lists and `swarm spawn --type` takes).
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Vec<String>")]
pub struct ListTypes;

/// One head-placed actor a node runs, as its lease renewal reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    /// The name.
    pub name: String,
    /// The epoch it runs under.
    pub epoch: u64,
    /// Failed past its restart policy (escalated).
    pub failed: bool,
}

/// A lease, and what the node must start and stop to match the head.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grant {
    /// How long the lease lasts, from when the renewal was sent, ms.
    pub lease_ms: u64,
    /// The head's log index this grant reflects: pushes older than it are stale.
    pub index: u64,
    /// Placements of this node it does not run.
    pub start: Vec<HostSpawn>,
    /// What it runs that is not (or no longer) placed on it: (name, epoch).
    pub stop: Vec<(String, u64)>,
    /// Revoked certificate serials the node did not hold yet (the head's
    /// list from the node's `revoked_known` on).
    #[serde(default)]
    pub revoked: Vec<u64>,
    /// The head group's public key operators' capabilities verify with
    /// (when the head holds the TOTP secret).
    #[serde(default)]
    pub capability_key: Option<[u8; 32]>,
    /// The renewal's report was a delta onto one the leader does not hold
    /// (a lost grant, a new leader): the lease holds, nothing was planned
    /// (`start` and `stop` are empty), and the next renewal, at once,
    /// carries the full list.
    #[serde(default)]
    pub resync: bool,
}

/// Only a head places: a `fence` (the head's log index, which makes the
/// host treat the spawn as a head placement under `epoch`) from any other
/// sender is dropped, so an operator's spawn, admin or not, is an operator
/// spawn. Without this an admin could start a name under an epoch the head
/// group never handed out, stop the head's incarnation for it, and have
/// every later placement of the name refused as older.
impl StampCaller for HostSpawn {
    fn stamp_caller(&mut self, caller: &Caller) {
        let head = !caller.operator && caller.roles.iter().any(|r| r == "head");
        if !head && self.fence.take().is_some() {
            tracing::warn!(actor = %self.name, epoch = self.epoch, from = %caller.name, "a fence from a sender that is not a head dropped");
        }
    }
}

crate::system_message! {
    HostSpawn => "swarm.HostSpawn", Admin;
    HostStop => "swarm.HostStop", Admin;
    HostRestart => "swarm.HostRestart", Admin;
    HostLeave => "swarm.HostLeave", Heads;
    ListActors => "swarm.ListActors", Read;
    ListTypes => "swarm.ListTypes", Read;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(roles: &[&str], operator: bool) -> Caller {
        Caller {
            node: NodeId::from_bytes([7; 16]),
            roles: roles
                .iter()
                .map(|r| (*r).to_owned())
                .collect::<Vec<_>>()
                .into(),
            serial: 1,
            name: Arc::from("sender"),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
            operator,
        }
    }

    fn placement() -> HostSpawn {
        HostSpawn {
            type_name: "demo.Ledger".into(),
            name: "ledger".into(),
            args: Vec::new(),
            epoch: u64::MAX,
            restart: Restart::default(),
            fence: Some(u64::MAX),
        }
    }

    #[test]
    fn only_a_head_link_keeps_a_fence() {
        let mut from_head = placement();
        from_head.stamp_caller(&caller(&["head"], false));
        assert_eq!(from_head.fence, Some(u64::MAX));
        // An admin operator (through its session), a worker, and an
        // operator certificate that also claims `head`: an operator spawn.
        for (roles, operator) in [
            (&["operator", "admin"][..], true),
            (&["worker"][..], false),
            (&["head", "admin"][..], true),
        ] {
            let mut forged = placement();
            forged.stamp_caller(&caller(roles, operator));
            assert_eq!(forged.fence, None, "{roles:?}");
            assert_eq!(forged.epoch, u64::MAX, "the rest is left as sent");
        }
    }
}
