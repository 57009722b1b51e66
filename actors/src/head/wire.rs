//! What nodes and operators ask the head (`swarm.control` on every head
//! node; only the Raft leader acts, the others answer `NotLeader` with the
//! leader they know), and what it answers.

use actix::Message;
use serde::{Deserialize, Serialize};
use swarm_protocol::NodeId;

use crate::placement::{GroupStrategy, Placement, PlacementError, ResourceSet};
use crate::supervision::{Grant, Report, Restart, SpawnError};

mod drain;
pub(crate) mod journal;
mod migrate;
pub(crate) mod operators;
pub(crate) mod passivation;

pub(crate) use drain::DrainNode;
pub use drain::{DrainOutcome, DrainReport, DrainedActor, MAX_REPORTED};
pub(crate) use migrate::MigrateActor;

/// The name each head's control actor is exposed under.
pub const CONTROL_ACTOR: &str = "swarm.control";

/// What a named actor is: the head records it and starts it from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActorSpec {
    /// The registered type ([`crate::supervision::Spawnable::TYPE`]).
    pub type_name: String,
    /// Its arguments, MessagePack.
    pub args: Vec<u8>,
    /// What it needs.
    pub resources: ResourceSet,
    /// Where it may go.
    pub placement: Placement,
    /// Its local restart policy.
    pub restart: Restart,
    /// The placement-group bundle it runs in (group name, bundle index):
    /// its resources come from the bundle, and it runs on the bundle's node.
    pub bundle: Option<(String, usize)>,
    /// Past its restarts on one node: re-place it on another node (true)
    /// or mark it failed (false).
    pub replace_on_escalation: bool,
    /// Passivate it after this long without a message, ms: its node stops
    /// it (a durable actor saves a snapshot first), the head records it
    /// passive, and the next call places it again. `None`: never.
    #[serde(default)]
    pub idle_after_ms: Option<u64>,
}

#[cfg(test)]
impl ActorSpec {
    /// A spec of `type_name` needing nothing, placed anywhere.
    pub(crate) fn for_tests(type_name: &str) -> Self {
        Self {
            type_name: type_name.to_owned(),
            args: Vec::new(),
            resources: ResourceSet::default(),
            placement: Placement::Pack,
            restart: Restart::never(),
            bundle: None,
            replace_on_escalation: true,
            idle_after_ms: None,
        }
    }
}

/// Why the control plane did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// This head is not the Raft leader (the leader it knows, if any).
    #[error("not the head leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this head knows.
        leader: Option<NodeId>,
    },
    /// No head quorum answered: nothing can be placed or changed now.
    #[error("no head quorum: {reason}")]
    NoQuorum {
        /// What failed.
        reason: String,
    },
    /// The name belongs to another actor.
    #[error("the name {name:?} is taken by a {type_name} on {node}")]
    NameTaken {
        /// The name.
        name: String,
        /// Its type.
        type_name: String,
        /// Where it runs.
        node: NodeId,
    },
    /// It was not placed: no node could ever hold it
    /// ([`PlacementError::Unschedulable`]), or none can now
    /// ([`PlacementError::NoCapacity`]), with the cause.
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// No named actor (or placement group) has this name.
    #[error("no named actor or group {name:?}")]
    NoSuchName {
        /// The name.
        name: String,
    },
    /// The name is of another type than asked for.
    #[error("{name:?} is a {actual}, not a {expected}")]
    WrongType {
        /// The name.
        name: String,
        /// The type asked for.
        expected: String,
        /// Its type.
        actual: String,
    },
    /// The actor failed past its restart policy and was not re-placed.
    #[error("{name:?} failed: {reason}")]
    Failed {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// No node registered this actor type: nothing can start it.
    #[error("no node registered the actor type {type_name:?}")]
    UnknownType {
        /// The type asked for.
        type_name: String,
    },
    /// The node chosen for it refused to start it (unknown type,
    /// arguments that do not decode); nothing runs, nothing is recorded.
    #[error("the node refused to start it: {0}")]
    Spawn(SpawnError),
    /// A placement group refused the request (it exists, actors run in
    /// it, no such bundle, a bundle on another node).
    #[error("refused: {0}")]
    Group(GroupRefusal),
    /// A page of the named actors did not continue after the name asked
    /// for (a head answering out of order): the listing stops.
    #[error("the head's listing did not continue after {after:?}")]
    PageOutOfOrder {
        /// The name the page was asked to continue after.
        after: Option<String>,
    },
    /// Refused for another reason (a race with another change: try again).
    #[error("refused: {reason}")]
    Refused {
        /// Why.
        reason: String,
    },
    /// No head is known (membership shows no node with the `head` role), or
    /// none answered.
    #[error("no head answered: {reason}")]
    NoHead {
        /// What was tried.
        reason: String,
    },
    /// The head's policy does not let this certificate send this request
    /// (an operator without `admin` asking for a change, say).
    #[error("forbidden: {reason}")]
    Forbidden {
        /// Which rule or default refused it.
        reason: String,
    },
    /// Too many requests of this kind now (password logins: every check
    /// of the pool busy, or this source over its rate): ask again after
    /// `retry_after_ms`. Nothing was checked.
    #[error("busy: try again in {retry_after_ms} ms")]
    Busy {
        /// How long to wait before asking again, milliseconds.
        retry_after_ms: u64,
    },
    /// A drain without `force` of a head: its Raft replica would leave
    /// with it (drain it with `force` to take it out anyway).
    #[error(
        "{name} is a head (a Raft voter of the control plane): a drained node leaves \
         and stops; drain it with --force to take it out anyway"
    )]
    IsHead {
        /// The node.
        node: NodeId,
        /// Its certificate name (its short id before membership knows it).
        name: String,
    },
    /// Asked over a link proven by a node's certificate, for what only an
    /// operator does (log in with a second factor, delegate, hold a
    /// password): a node is proven by its certificate alone.
    #[error(
        "only operator certificates log in, delegate or have passwords; \
         a node is proven by its certificate alone"
    )]
    NotAnOperator,
    /// A lease renewal not newer than one the leader already took from
    /// this node (replayed, or overtaken by a later one): nothing changed
    /// and no lease was granted for it.
    #[error("a stale lease renewal: the leader holds a newer report of this node")]
    StaleRenewal,
    /// A lease renewal reported more head-placed actors than a node may
    /// run; the leader forgot the node's report (the next must be full).
    #[error("a lease renewal reported more than {limit} running actors")]
    TooManyRunning {
        /// The most a node may report.
        limit: usize,
    },
    /// The head leader refused an operator's login, and why (as much as
    /// an operator may know: a password login never says which part was
    /// wrong).
    #[error("login refused: {0}")]
    Login(LoginRefusal),
}

/// Why the head leader refused an operator's login: what a caller
/// branches on (try the next code, wait out a lockout, log in again
/// later, configure the heads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum LoginRefusal {
    /// Not the operator's code of any step within the skew window.
    #[error("wrong TOTP code ({left} more before a lockout)")]
    WrongCode {
        /// Failures left before a lockout.
        left: u32,
    },
    /// The code's step was used already (each code logs in once).
    #[error("this TOTP code was used already: wait for the next one")]
    CodeUsed,
    /// Locked out after too many failures: nothing is checked until then.
    #[error("locked out after too many failed logins: try again in {retry_after_s} s")]
    LockedOut {
        /// Seconds until the lockout ends (at least 1).
        retry_after_s: u64,
    },
    /// The operator's certificate is revoked.
    #[error("this operator's certificate is revoked")]
    Revoked,
    /// The head leader holds no TOTP secret: nobody can log in.
    #[error(
        "the head leader holds no TOTP secret (`totp` in its [head] configuration): \
         operators cannot log in"
    )]
    NoSecret,
    /// A password login failed: wrong name, password or code, or a
    /// lockout (which one is audited, never answered).
    #[error("wrong name, password or TOTP code, or too many attempts (try again later)")]
    Password,
}

/// Why a placement group refused a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum GroupRefusal {
    /// A group of this name exists.
    #[error("placement group {group:?} exists")]
    Exists {
        /// The group.
        group: String,
    },
    /// Actors run in the group: it is not released.
    #[error("actors run in placement group {group:?}: {}", .actors.join(", "))]
    InUse {
        /// The group.
        group: String,
        /// The named actors running in it.
        actors: Vec<String>,
    },
    /// The group has no such bundle.
    #[error("placement group {group:?} has no bundle {index}")]
    NoBundle {
        /// The group.
        group: String,
        /// The bundle asked for.
        index: usize,
    },
    /// The bundle is on another node than the one asked for.
    #[error("bundle {index} of {group:?} is on another node")]
    BundleElsewhere {
        /// The group.
        group: String,
        /// The bundle.
        index: usize,
    },
    /// A reservation without one node per bundle (an internal bug).
    #[error("a reservation of {bundles} bundles names {nodes} nodes")]
    NodeCount {
        /// Its bundles.
        bundles: usize,
        /// The nodes it names.
        nodes: usize,
    },
}

/// Where a named actor runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Located {
    /// Its node.
    pub node: NodeId,
    /// Its placement's epoch (the fencing token).
    pub epoch: u64,
    /// Its registered type.
    pub type_name: String,
}

/// Places and starts a named actor (or answers where it runs, with
/// `get_if_exists`, if it exists with the same type).
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<Located, ControlError>")]
pub(crate) struct PlaceActor {
    /// The name.
    pub(crate) name: String,
    /// What it is.
    pub(crate) spec: ActorSpec,
    /// Answer the existing actor instead of `NameTaken`.
    pub(crate) get_if_exists: bool,
}

/// Where does this named actor run now?
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<Located, ControlError>")]
pub(crate) struct Resolve {
    /// The name.
    pub(crate) name: String,
}

/// Stops a named actor for good and forgets it.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<(), ControlError>")]
pub(crate) struct StopActor {
    /// The name.
    pub(crate) name: String,
}

/// Reserves a placement group: every bundle, or none.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<Vec<NodeId>, ControlError>")]
pub(crate) struct ReserveGroup {
    /// The group's name.
    pub(crate) name: String,
    /// How its bundles spread.
    pub(crate) strategy: GroupStrategy,
    /// The bundles.
    pub(crate) bundles: Vec<ResourceSet>,
}

/// Releases a placement group (refused while actors run in it).
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<(), ControlError>")]
pub(crate) struct ReleaseGroup {
    /// The group's name.
    pub(crate) name: String,
}

/// One named actor, as `swarm actors` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacedRow {
    /// The name.
    pub name: String,
    /// Its type.
    pub type_name: String,
    /// Its node.
    pub node: NodeId,
    /// placed or failed.
    pub state: String,
    /// Its epoch.
    pub epoch: u64,
    /// How often the head placed it.
    pub placements: u64,
    /// What it reserves.
    pub resources: ResourceSet,
    /// Its placement group bundle, if any.
    pub bundle: Option<(String, usize)>,
    /// A durable actor's last journal sequence number in the embedded
    /// store (the head's own record of it; `None` for another store or an
    /// actor that never wrote one).
    #[serde(default)]
    pub journal_seq: Option<u64>,
}

/// Lists the named actors the head records, a page at a time, by name:
/// at most `limit` (and never more than [`MAX_PLACED_PAGE`]) of the names
/// after `after` (from the first without). Every reply stays far below the
/// message bound however many actors there are; pages are read one after
/// another, so a listing is not one instant's state.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<PlacedPage, ControlError>")]
pub(crate) struct ListPlaced {
    /// List the names after this one.
    pub(crate) after: Option<String>,
    /// At most this many (clamped to 1..=[`MAX_PLACED_PAGE`]).
    pub(crate) limit: usize,
}

/// One page of the head's named actors, by name (a reply to `ListPlaced`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacedPage {
    /// The rows, by name.
    pub rows: Vec<PlacedRow>,
    /// Whether names follow the last row.
    pub more: bool,
}

/// Most rows in one page of [`ListPlaced`] (about 1.5 MB).
pub(crate) const MAX_PLACED_PAGE: usize = 10_000;

/// One head, as `swarm heads` lists it (each head answers for itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadRow {
    /// The head.
    pub node: NodeId,
    /// leader, follower, candidate or learner; or `unconfirmed`: a leader
    /// by its own Raft state that no quorum confirmed when asked (cut off
    /// from the other heads, likely deposed without knowing it).
    pub role: String,
    /// The leader it knows (none when its own leadership is unconfirmed).
    pub leader: Option<NodeId>,
    /// Its current term.
    pub term: u64,
    /// The voters.
    pub voters: Vec<NodeId>,
    /// Its last log index.
    pub last_log: u64,
    /// The last index it applied.
    pub applied: u64,
    /// On the leader: how far each follower lags, entries.
    pub lag: Vec<(NodeId, u64)>,
}

/// Asks a head about itself.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "HeadRow")]
pub(crate) struct HeadStatus;

/// A node renews its lease and reports what it runs.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<Grant, ControlError>")]
pub(crate) struct Renew {
    /// The node renewing (set from the link's authenticated peer when it
    /// arrives over the network).
    pub(crate) node: NodeId,
    /// The head-placed actors it runs and the types it may start: the
    /// whole lists, or what changed since the last report the leader
    /// answered (`crate::head::reported`).
    pub(crate) report: Report,
    /// The log index of the newest grant its host applied: a placement
    /// the leader delivered at a fence this old or older that the node
    /// does not run was lost (the host restarted, or refused it; a later
    /// push is refused as superseded), and restarts under a new epoch.
    #[serde(default)]
    pub(crate) seen_index: u64,
    /// How many of the head's revocations it holds (the list only grows).
    #[serde(default)]
    pub(crate) revoked_known: usize,
    /// Its certificate's roles (set from the link; placement labels come
    /// from these, never from gossip).
    #[serde(default)]
    pub(crate) roles: Vec<String>,
}

/// The renewing node is the link's authenticated peer, with its
/// certificate's roles, whatever it claims.
impl crate::directory::StampCaller for Renew {
    fn stamp_caller(&mut self, caller: &crate::directory::Caller) {
        self.node = caller.node;
        self.roles = caller.roles.to_vec();
    }
}

/// Revokes a certificate (admin operators only): every node closes its
/// holder's links within a lease renewal and refuses its handshakes.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<bool, ControlError>")]
pub(crate) struct RevokeCert {
    /// The certificate's serial.
    pub(crate) serial: u64,
    /// Its holder's name, for listings (as the operator gave it).
    pub(crate) name: String,
}

/// Moves the head group's capability key to its next generation (admin
/// operators only): every capability signed before stops verifying once
/// nodes take the new key with their next lease grant. Answers the new
/// generation.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Message)]
#[rtype(result = "Result<u64, ControlError>")]
pub(crate) struct RotateCapabilityKey;

/// The revoked certificates the head group records: (serial, name).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Message)]
#[rtype(result = "Result<Vec<(u64, String)>, ControlError>")]
pub(crate) struct ListRevoked;

crate::system_message! {
    RevokeCert => "swarm.RevokeCert", Admin;
    RotateCapabilityKey => "swarm.RotateCapabilityKey", Admin;
    ListRevoked => "swarm.ListRevoked", Read;
    PlaceActor => "swarm.PlaceActor", Command;
    Resolve => "swarm.Resolve", Read;
    StopActor => "swarm.StopActor", Command;
    ReserveGroup => "swarm.ReserveGroup", Admin;
    ReleaseGroup => "swarm.ReleaseGroup", Admin;
    DrainNode => "swarm.DrainNode", Admin;
    ListPlaced => "swarm.ListPlaced", Read;
    HeadStatus => "swarm.HeadStatus", Read;
    Renew => "swarm.Renew", Nodes;
}
