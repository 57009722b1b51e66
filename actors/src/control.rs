//! The control plane as a user sees it: [`Control`] (from
//! `Node::control`) spawns, looks up and stops
//! named actors, reserves placement groups and drains nodes, from any node
//! of the cluster; [`Named`] is a handle that follows a named actor
//! wherever the head places it.
//!
//! ```no_run
//! # use std::time::Duration;
//! # use actix::prelude::*;
//! # use serde::{Deserialize, Serialize};
//! # use swarm_actors::control::Spawn;
//! # use swarm_actors::placement::Placement;
//! # use swarm_actors::supervision::{Incarnation, Restart, Spawnable};
//! # #[derive(Serialize, Deserialize, Message)]
//! # #[rtype(result = "u64")]
//! # struct Add(u64);
//! # swarm_actors::remote_message!(Add => "doc.Add");
//! # struct Counter(u64);
//! # impl Actor for Counter { type Context = Context<Self>; }
//! # impl Handler<Add> for Counter {
//! #     type Result = u64;
//! #     fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) -> u64 { self.0 += n; self.0 }
//! # }
//! # swarm_actors::remote_actor!(Counter: Add);
//! # #[derive(Serialize, Deserialize)]
//! # struct CounterArgs { start: u64 }
//! # impl Spawnable for Counter {
//! #     const TYPE: &'static str = "doc.Counter";
//! #     type Args = CounterArgs;
//! #     fn build(args: &CounterArgs, _: &Incarnation) -> Self { Counter(args.start) }
//! # }
//! # async fn run(node: swarm_actors::Node) -> Result<(), Box<dyn std::error::Error>> {
//! let control = node.control().expect("a node with membership");
//! let counter = control
//!     .spawn(
//!         Spawn::<Counter>::named("counter")
//!             .args(CounterArgs { start: 0 })
//!             .cpus(1.0)
//!             .placement(Placement::Spread)
//!             .restart(Restart::on_failure().max(5).within(Duration::from_secs(60))),
//!     )
//!     .await?;
//! counter.send(Add(1)).await?;
//! let same = control.lookup::<Counter>("counter").await?;
//! control.stop("counter").await?;
//! # Ok(()) }
//! ```

mod heads;
mod holder;
pub(crate) mod lease;
mod named;
mod operators;
mod pages;
pub(crate) mod session;
mod spawn;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use swarm_protocol::NodeId;

pub use crate::head::wire::{
    ActorSpec, ControlError, DrainOutcome, DrainReport, DrainedActor, GroupRefusal, HeadRow,
    Located, LoginRefusal, PlacedPage, PlacedRow, CONTROL_ACTOR, MAX_REPORTED,
};
pub use crate::head::{HeadConfig, Plain, Seal, DEFAULT_LOGIN_POOL};
#[doc(hidden)]
pub use holder::LeaseHolder;
pub use named::Named;
pub use operators::LoginError;
pub use spawn::Spawn;

use crate::cluster::{Cluster, ClusterAgent};
use crate::directory::{Accepts, RemoteMessage, Wire};
use crate::error::AskError;
use crate::head::supervisor::Supervisor;
use crate::head::wire::{
    DrainNode, HeadStatus, ListPlaced, PlaceActor, ReleaseGroup, ReserveGroup, Resolve, StopActor,
    MAX_PLACED_PAGE,
};
use crate::mesh::Mesh;
use crate::operators::sessions::Sessions;
use crate::placement::{GroupStrategy, ResourceSet};
use crate::remote::RemoteAddr;
use crate::supervision::Spawnable;

/// How long a control call keeps looking for the leader.
pub(crate) const CALL_WITHIN: Duration = Duration::from_secs(10);

/// How long a drain may take, moves included.
const DRAIN_WITHIN: Duration = Duration::from_secs(120);

/// How long a migration may take, its hand-over included.
const MIGRATE_WITHIN: Duration = Duration::from_secs(30);

/// Where a client learns which nodes are heads.
#[derive(Clone)]
enum Heads {
    /// This node's own membership.
    Members(Cluster),
    /// A member's list, asked over a link (clients without membership,
    /// like the `swarm` CLI).
    Agent(RemoteAddr<ClusterAgent>),
    /// Heads a member named (an operator logging in, before it may list
    /// members).
    Fixed(Vec<NodeId>),
}

/// The control plane's client. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    mesh: Mesh,
    /// This node's operator sessions: lease grants carry the head group's
    /// key, and logins through this node are checked with it.
    sessions: Sessions,
    heads: Heads,
    /// The head that answered last.
    leader: Arc<Mutex<Option<NodeId>>>,
    /// Why the member refused to list its members, if its policy did.
    forbidden: Arc<Mutex<Option<String>>>,
    /// The operator its calls are made for, if any.
    behalf: Option<Arc<crate::operators::Behalf>>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("leader", &self.leader_hint())
            .finish()
    }
}

impl Control {
    pub(crate) fn new(mesh: Mesh, sessions: Sessions, cluster: Cluster) -> Self {
        Self {
            mesh,
            sessions,
            heads: Heads::Members(cluster),
            leader: Arc::new(Mutex::new(None)),
            forbidden: Arc::default(),
            behalf: None,
        }
    }

    /// A client that learns the heads from `agent`, a member's cluster
    /// actor (for nodes without membership).
    pub(crate) fn through(mesh: Mesh, sessions: Sessions, agent: RemoteAddr<ClusterAgent>) -> Self {
        Self {
            mesh,
            sessions,
            heads: Heads::Agent(agent),
            leader: Arc::new(Mutex::new(None)),
            forbidden: Arc::default(),
            behalf: None,
        }
    }

    /// A client that asks the heads `heads` (whose addresses the mesh
    /// knows): an operator's login.
    pub(crate) fn with_heads(mesh: Mesh, sessions: Sessions, heads: Vec<NodeId>) -> Self {
        Self {
            mesh,
            sessions,
            heads: Heads::Fixed(heads),
            leader: Arc::new(Mutex::new(None)),
            forbidden: Arc::default(),
            behalf: None,
        }
    }

    fn leader_hint(&self) -> Option<NodeId> {
        *self.leader.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_leader(&self, leader: Option<NodeId>) {
        *self.leader.lock().unwrap_or_else(PoisonError::into_inner) = leader;
    }

    /// Sends `message` to the leader, following `NotLeader` answers and
    /// trying each head in turn, for up to `within`. A head that cannot
    /// be reached (or is no longer one) is forgotten as the leader; a
    /// failure of the call itself (too large, does not encode, a reply
    /// that does not decode) is answered at once as
    /// [`ControlError::Refused`], and the leader stays known.
    pub(crate) async fn call<M, T>(&self, message: M, within: Duration) -> Result<T, ControlError>
    where
        M: RemoteMessage<Result = Result<T, ControlError>> + Clone,
        Supervisor: Accepts<M>,
        Result<T, ControlError>: Wire,
    {
        self.call_until(message, within, Patience::Within, QUORUM_PLUS)
            .await
    }

    /// As [`Control::call`]; each try waits `per_try` at most; with
    /// [`Patience::WhileQuorumReachable`] it answers
    /// [`ControlError::NoQuorum`] as soon as more than half of the heads
    /// could not be reached from this node in this call (no quorum can
    /// answer here, however long it waits).
    pub(crate) async fn call_until<M, T>(
        &self,
        message: M,
        within: Duration,
        patience: Patience,
        per_try: Duration,
    ) -> Result<T, ControlError>
    where
        M: RemoteMessage<Result = Result<T, ControlError>> + Clone,
        Supervisor: Accepts<M>,
        Result<T, ControlError>: Wire,
    {
        let deadline = tokio::time::Instant::now() + within;
        let mut last = "membership shows no node with the head role".to_owned();
        let mut tried = 0usize;
        let mut redirects = 0usize;
        // Heads this call could not reach (no link, down, no answer).
        let mut unreachable: Vec<NodeId> = Vec::new();
        let mut head_count: Option<usize> = None;
        loop {
            if patience == Patience::WhileQuorumReachable && !unreachable.is_empty() {
                let heads = match head_count {
                    Some(n) => n,
                    None => *head_count.insert(self.heads().await.len()),
                };
                if unreachable.len() > heads / 2 {
                    return Err(ControlError::NoQuorum {
                        reason: format!(
                            "{} of {heads} heads are unreachable from this node ({last})",
                            unreachable.len()
                        ),
                    });
                }
            }
            // The member list is asked for only when no leader is known.
            let target = match self.leader_hint() {
                Some(leader) => Some(leader),
                None => {
                    let heads = self.heads().await;
                    heads.get(tried % heads.len().max(1)).copied()
                }
            };
            if target.is_none() {
                let forbidden = self
                    .forbidden
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                if let Some(reason) = forbidden {
                    return Err(ControlError::Forbidden { reason });
                }
            }
            // Only a node whose certificate has the head role answers as a
            // head: a member gossiping itself as one is never asked (its
            // grants, verdicts and revocation lists would be its own).
            let target = match target {
                Some(head) => match certified(&self.mesh, head, deadline).await {
                    Ok(true) => Some(head),
                    Ok(false) => {
                        tracing::warn!(node = %head.short(), "a member claims the head role its certificate lacks: not asking it");
                        last = format!(
                            "node {} claims the head role its certificate lacks",
                            head.short()
                        );
                        self.set_leader(None);
                        tried += 1;
                        None
                    }
                    Err(e) => {
                        last = format!("head {}: {e}", head.short());
                        self.set_leader(None);
                        tried += 1;
                        if !unreachable.contains(&head) {
                            unreachable.push(head);
                        }
                        None
                    }
                },
                None => None,
            };
            if let Some(head) = target {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let mut peer =
                    RemoteAddr::<Supervisor>::new(self.mesh.clone(), head, CONTROL_ACTOR);
                if let Some(behalf) = &self.behalf {
                    peer = peer.on_behalf(Arc::clone(behalf));
                }
                let answer = peer.send_timeout(message.clone(), left.min(per_try)).await;
                match &answer {
                    Ok(_) => unreachable.retain(|h| *h != head),
                    Err(
                        AskError::Unreachable { .. }
                        | AskError::NodeDown { .. }
                        | AskError::Timeout { .. },
                    ) if !unreachable.contains(&head) => unreachable.push(head),
                    Err(_) => {}
                }
                match answer {
                    Ok(Err(ControlError::NotLeader { leader })) => {
                        last = format!("head {} is not the leader", head.short());
                        self.set_leader(leader);
                        redirects += 1;
                        // Follow a redirect at once, unless heads keep
                        // pointing at each other (views still settling).
                        if leader.is_none() {
                            tried += 1;
                        } else if !redirects.is_multiple_of(4) {
                            continue;
                        }
                    }
                    Ok(answer) => {
                        self.set_leader(Some(head));
                        return answer;
                    }
                    // The head refused this node (its certificate's roles).
                    Err(AskError::Refused { reason }) => {
                        return Err(ControlError::Refused { reason });
                    }
                    Err(AskError::Forbidden { reason }) => {
                        return Err(ControlError::Forbidden { reason });
                    }
                    // The head may be gone, or no longer a head: ask another.
                    Err(e) if leader_may_have_changed(&e) => {
                        last = format!("head {}: {e}", head.short());
                        self.set_leader(None);
                        tried += 1;
                    }
                    // The call itself cannot be made (too large, does not
                    // encode, a type or reply the head does not know): no
                    // other head would take it, and the leader stays known.
                    Err(e) => {
                        return Err(ControlError::Refused {
                            reason: format!("head {}: {e}", head.short()),
                        });
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(if target.is_none() {
                    ControlError::NoHead { reason: last }
                } else {
                    ControlError::NoQuorum { reason: last }
                });
            }
            // An election may be under way.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Places and starts a named actor; answers a handle that follows it.
    ///
    /// # Errors
    ///
    /// [`ControlError::NameTaken`] (unless [`Spawn::get_if_exists`]),
    /// [`ControlError::Placement`] when no node could ever hold it
    /// (`Unschedulable`) or none can now (`NoCapacity`), with the cause;
    /// [`ControlError::Spawn`] when the node
    /// refused it (unknown type, arguments that do not decode), and
    /// [`ControlError::NoQuorum`] / [`ControlError::NoHead`].
    pub async fn spawn<A: Spawnable>(&self, spawn: Spawn<A>) -> Result<Named<A>, ControlError> {
        let Spawn {
            name,
            args,
            spec,
            get_if_exists,
            ..
        } = spawn;
        let args = args?;
        let spec = ActorSpec { args, ..spec };
        let request = PlaceActor {
            name: name.clone(),
            spec,
            get_if_exists,
        };
        let located = self.call(request, CALL_WITHIN).await?;
        Ok(Named::new(self.clone(), &name, Some(located)))
    }

    /// Places and starts a named actor from a spec (the type by name, the
    /// arguments already encoded): for tools that do not link the type.
    ///
    /// # Errors
    ///
    /// As [`Control::spawn`].
    pub async fn spawn_spec(
        &self,
        name: &str,
        spec: ActorSpec,
        get_if_exists: bool,
    ) -> Result<Located, ControlError> {
        let request = PlaceActor {
            name: name.to_owned(),
            spec,
            get_if_exists,
        };
        self.call(request, CALL_WITHIN).await
    }

    /// A handle to the named actor `name`, if it exists and is an `A` (a
    /// passive one is placed again: see [`Spawn::passivate_after`]).
    ///
    /// # Errors
    ///
    /// [`ControlError::NoSuchName`], [`ControlError::WrongType`],
    /// [`ControlError::Failed`], or no quorum.
    pub async fn lookup<A: Spawnable>(&self, name: &str) -> Result<Named<A>, ControlError> {
        let located = self.resolve(name).await?;
        if located.type_name != A::TYPE {
            return Err(ControlError::WrongType {
                name: name.to_owned(),
                expected: A::TYPE.to_owned(),
                actual: located.type_name,
            });
        }
        Ok(Named::new(self.clone(), name, Some(located)))
    }

    /// A handle to the named actor `spawn` names: the running one, the
    /// passive one placed again (its first call activates it: a resolve
    /// of a passive name places it), or, if the head has no record of the
    /// name, a new one placed from `spawn` (kameo's `lookup_or_spawn`;
    /// two callers racing both get the one placed first).
    ///
    /// # Errors
    ///
    /// As [`Control::lookup`] and [`Control::spawn`].
    pub async fn lookup_or_spawn<A: Spawnable>(
        &self,
        spawn: Spawn<A>,
    ) -> Result<Named<A>, ControlError> {
        match self.lookup::<A>(&spawn.name).await {
            Err(ControlError::NoSuchName { .. }) => self.spawn(spawn.get_if_exists()).await,
            other => other,
        }
    }

    /// Where `name` runs now (a passive actor is placed again first).
    ///
    /// # Errors
    ///
    /// As [`Control::lookup`].
    pub async fn resolve(&self, name: &str) -> Result<Located, ControlError> {
        let request = Resolve {
            name: name.to_owned(),
        };
        self.call(request, CALL_WITHIN).await
    }

    /// Stops the named actor for good and forgets its name.
    ///
    /// # Errors
    ///
    /// [`ControlError::NoSuchName`], or no quorum.
    pub async fn stop(&self, name: &str) -> Result<(), ControlError> {
        let request = StopActor {
            name: name.to_owned(),
        };
        self.call(request, CALL_WITHIN).await
    }

    /// Reserves a placement group: every bundle on a node, or none.
    /// Answers the node of each bundle.
    ///
    /// # Errors
    ///
    /// [`ControlError::Placement`] (`Unschedulable` or `NoCapacity`),
    /// [`ControlError::Group`] ([`GroupRefusal::Exists`]) if the name
    /// exists, or no quorum.
    pub async fn reserve_group(
        &self,
        name: &str,
        strategy: GroupStrategy,
        bundles: Vec<ResourceSet>,
    ) -> Result<Vec<NodeId>, ControlError> {
        let request = ReserveGroup {
            name: name.to_owned(),
            strategy,
            bundles,
        };
        self.call(request, CALL_WITHIN).await
    }

    /// Releases a placement group.
    ///
    /// # Errors
    ///
    /// [`ControlError::Group`] ([`GroupRefusal::InUse`]) while actors run in it; `NoSuchName`.
    pub async fn release_group(&self, name: &str) -> Result<(), ControlError> {
        let request = ReleaseGroup {
            name: name.to_owned(),
        };
        self.call(request, CALL_WITHIN).await
    }

    /// Drains `node`: no new placements there; its named actors move one
    /// by one (each stopped before it starts elsewhere). If every one
    /// moved, the node is asked to leave (it leaves membership and shuts
    /// down). An actor with nowhere to go (a hard placement on `node`, no
    /// capacity elsewhere) keeps running there and the drain stops: the
    /// node stays and takes placements again. With `force` such actors are
    /// stopped and recorded failed with the reason, and the node leaves
    /// anyway. Answers what became of each actor ([`DrainReport::left`]
    /// says whether the node was let go).
    ///
    /// # Errors
    ///
    /// No quorum; `Forbidden` unless sent by a head or an `admin` operator.
    pub async fn drain(&self, node: NodeId, force: bool) -> Result<DrainReport, ControlError> {
        // One try may take as long as the moves do: a retry would drain
        // what the first try is still moving.
        self.call_until(
            DrainNode { node, force },
            DRAIN_WITHIN,
            Patience::Within,
            DRAIN_WITHIN,
        )
        .await
    }

    /// Moves the named actor `name` to `node`, live: its incarnation stops
    /// taking messages (what arrives meanwhile is answered `NoSuchActor`,
    /// which a [`Named`] handle sends again to the new one, in the order
    /// it issued them), handles what is in its mailbox, saves a final
    /// snapshot if it is durable, and stops; then it starts on `node` under
    /// a new epoch (a durable actor recovering from that snapshot). Answers
    /// where it runs and its epoch.
    ///
    /// # Errors
    ///
    /// `NoSuchName`; `Failed`; `Refused` when `node` is where it runs, is
    /// not a live member holding a lease, drains, cannot start its type,
    /// or the actor is pinned elsewhere (a hard placement, a group
    /// bundle), when a move of it is under way, or when its node did not
    /// confirm the hand-over (it keeps running there); `Placement` when
    /// `node` lacks the resources; `Forbidden` unless sent by a head or an
    /// `admin` operator; no quorum.
    pub async fn migrate(&self, name: &str, node: NodeId) -> Result<(NodeId, u64), ControlError> {
        // One try may take as long as the hand-over does: a retry would
        // move what the first try is still moving.
        let request = crate::head::wire::MigrateActor {
            name: name.to_owned(),
            node,
        };
        self.call_until(request, MIGRATE_WITHIN, Patience::Within, MIGRATE_WITHIN)
            .await
    }

    /// The named actors the head records.
    ///
    /// # Errors
    ///
    /// No quorum.
    pub async fn placed(&self) -> Result<Vec<PlacedRow>, ControlError> {
        let mut rows: Vec<PlacedRow> = Vec::new();
        loop {
            let list = ListPlaced {
                after: rows.last().map(|r| r.name.clone()),
                limit: MAX_PLACED_PAGE,
            };
            let page: PlacedPage = self.call(list, CALL_WITHIN).await?;
            if !pages::add(&mut rows, page)? {
                return Ok(rows);
            }
        }
    }

    /// Each head's view of the group, as it answers for itself.
    pub async fn head_status(&self) -> Vec<(NodeId, Result<HeadRow, AskError>)> {
        let mut rows = Vec::new();
        for head in self.heads().await {
            let peer = RemoteAddr::<Supervisor>::new(self.mesh.clone(), head, CONTROL_ACTOR);
            rows.push((head, peer.send(HeadStatus).await));
        }
        rows
    }
}

/// How long a control call keeps trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Patience {
    /// Until its time is up: an election or a restart may end meanwhile.
    Within,
    /// Until its time is up or more than half of the heads proved
    /// unreachable from this node: a caller on the minority side of a
    /// partition hears `NoQuorum` at once instead of waiting.
    WhileQuorumReachable,
}

/// Whether an ask's failure says the head asked may be gone, or no longer
/// the leader (or no longer a head): then the next try asks another. The
/// other failures are the call's own and would fail the same anywhere.
fn leader_may_have_changed(e: &AskError) -> bool {
    // No wildcard: a new kind of failure needs a decision here.
    match e {
        AskError::Timeout { .. }
        | AskError::LinkDown { .. }
        | AskError::NodeDown { .. }
        | AskError::Unreachable { .. }
        | AskError::NoSuchActor { .. }
        | AskError::ActorStopped
        | AskError::ActorFailed
        | AskError::NoInstance { .. }
        | AskError::NotPlaced { .. }
        | AskError::NoQuorum { .. } => true,
        AskError::TooLarge { .. }
        | AskError::Encode { .. }
        | AskError::Decode { .. }
        | AskError::UnknownMessage { .. }
        | AskError::Refused { .. }
        | AskError::Forbidden { .. } => false,
    }
}

/// Whether `head`'s certificate has the head role (asked of a link to it,
/// dialed if need be, by `deadline` at the latest).
async fn certified(
    mesh: &Mesh,
    head: NodeId,
    deadline: tokio::time::Instant,
) -> Result<bool, AskError> {
    let within = deadline
        .saturating_duration_since(tokio::time::Instant::now())
        .min(QUORUM_PLUS);
    match tokio::time::timeout(within, mesh.certified_head(head)).await {
        Ok(answer) => answer,
        Err(_) => Err(AskError::Timeout { after: within }),
    }
}

/// Longest single try of a control call (a write waits up to 3 s for a
/// quorum on the leader).
const QUORUM_PLUS: Duration = Duration::from_secs(4);
