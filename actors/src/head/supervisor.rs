//! The placement supervisor: an actor on every head, acting only while its
//! head is the Raft leader. It places named actors by the resources
//! membership gossips minus what the head reserved, records each decision
//! in the log (a new epoch), then asks the chosen node's host to start it.
//! It grants leases, reconciles what nodes run with what the log says, and
//! moves the actors of nodes whose lease ran out (or that crashed), that
//! escalate failures, or that drain.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use openraft::ServerState;
use swarm_protocol::membership::MemberState;
use swarm_protocol::NodeId;

use super::batch::Writes;
use super::leases::Leases;
use super::reconcile::Deliveries;
use super::state::{ActorRecord, Applied, Command, RecordState};
use super::store::Machine;
use super::types::{HeadId, Raft};
use super::wire::{
    ActorSpec, ControlError, DrainNode, GroupRefusal, HeadRow, HeadStatus, ListPlaced, ListRevoked,
    Located, PlaceActor, PlacedPage, PlacedRow, ReleaseGroup, Renew, ReserveGroup, Resolve,
    RevokeCert, StopActor, MAX_PLACED_PAGE,
};
use super::HeadConfig;
use crate::cluster::{ClusterEvent, Member};
use crate::head::wire::operators::VerifyLogin;
use crate::mesh::Mesh;
use crate::placement::{self, NodeView, PlacementError, ResourceSet, Shortage};
use crate::remote::RemoteAddr;
use crate::supervision::{Grant, Host, HostLeave, HostSpawn, HostStop, HOST_ACTOR};

/// How long a quorum check waits before it fails with `NoQuorum`.
const QUORUM_WAIT: Duration = Duration::from_secs(3);

/// The role a head shows that leads by its own Raft state but that no
/// quorum confirmed just now (cut off; likely deposed unawares).
const UNCONFIRMED: &str = "unconfirmed";

/// How soon the leader looks again for placements to move while it has
/// work (a leadership to confirm, moves to retry, a node whose lease ran
/// out) or after the state changed; idle, it looks only when a lease may
/// run out or a crash probe is due (`wakes`).
const TICK: Duration = Duration::from_millis(50);

/// How long a placement that found no node to move to waits before the
/// next try.
const RETRY_MOVE: Duration = Duration::from_secs(1);

/// Moves of a failed node's actors in flight at once: a node with
/// thousands of actors must not crowd lease renewals out of the log.
const MOVES_IN_FLIGHT: usize = 256;

mod activation;
mod groups;
mod journal;
mod keys;
mod logins;
mod migrate;
mod moves;
mod placing;
mod reads;
mod renewals;
mod revocations;
mod wakes;

use moves::{Escalated, Relocate};
use reads::Reads;
use renewals::Confirmed;

/// The placement supervisor of one head.
pub(crate) struct Supervisor {
    id: NodeId,
    raft: Raft,
    writes: Writes,
    machine: Arc<RwLock<Machine>>,
    /// Told when the machine changed.
    applied: Arc<tokio::sync::Notify>,
    /// When the next tick runs, and its timer.
    next_tick: Option<(Instant, SpawnHandle)>,
    mesh: Mesh,
    /// This node's operator sessions (a rotated key goes there).
    sessions: crate::operators::sessions::Sessions,
    /// Where logins are audited.
    audit: crate::audit::Trail,
    /// The node's event log, for operators.
    events: crate::inspect::events::EventLog,
    members: HashMap<NodeId, Member>,
    /// Reservations decided but not yet in the log.
    pending: HashMap<NodeId, ResourceSet>,
    /// Placements decided and not yet delivered, per node: actors that
    /// ask for no resources are placed by count, and each spawn of a
    /// burst must see the ones decided before it is in the log.
    placing: HashMap<NodeId, usize>,
    leases: Leases,
    /// The actor types each node reported it may start.
    types: HashMap<NodeId, Vec<String>>,
    /// What each node last reported running (renewals carry deltas).
    reported: super::reported::Reported,
    /// Each renewing node's certificate roles (placement labels; gossiped
    /// roles that disagree are refused and counted).
    certified: HashMap<NodeId, Vec<String>>,
    /// Names being moved or restarted now (queued or in flight).
    moving: HashSet<String>,
    /// Passive names being activated, and who waits for them.
    activating: activation::Waiting,
    /// What this leader delivered to hosts, so that an epoch is never
    /// started twice (shared with its writes' futures; never held across
    /// an await).
    deliveries: Arc<std::sync::Mutex<Deliveries>>,
    /// Names restarted under a new epoch in a row (until reported running),
    /// and when the next restart may go.
    restarted: HashMap<String, (u32, Instant)>,
    /// Placements that found no node to move to, and when to try again.
    retry_after: HashMap<String, Instant>,
    /// Moves waiting for a slot, and how many run.
    queued: VecDeque<Relocate>,
    in_flight: usize,
    /// A new leadership is being confirmed with a quorum.
    confirming: bool,
    /// Reads waiting for a quorum to confirm that this head still leads.
    reads: Reads,
    /// Probe silent nodes for crash evidence.
    crash_evidence: bool,
    /// The cluster's TOTP secret: operators' seeds.
    totp: Option<Arc<zeroize::Zeroizing<[u8; 32]>>>,
    /// The capability key's public half and its generation, once derived.
    group_public: std::cell::Cell<Option<(u64, [u8; 32])>>,

    /// Failed logins and lockouts.
    guard: crate::operators::guard::Guard,
    /// How many of the state's revocations this head's own mesh refuses
    /// already: a head learns them from its state each tick, not only from
    /// its lease grants.
    revoked_applied: usize,
    /// Password checks running now: at most its permits (the rest are
    /// refused as busy), so a flood costs a bounded amount of memory.
    login_pool: crate::operators::checks::PasswordChecks,
    /// Password logins by forwarding node and source, before any check.
    login_buckets: crate::operators::bucket::Buckets<(NodeId, std::net::IpAddr)>,
}

impl Supervisor {
    pub(crate) fn new(
        id: NodeId,
        raft: Raft,
        (machine, applied): (Arc<RwLock<Machine>>, Arc<tokio::sync::Notify>),
        doors: super::Doors,
        config: &HeadConfig,
    ) -> Self {
        let super::Doors {
            mesh,
            sessions,
            directory,
            audit,
        } = doors;
        let events = directory.events().clone();
        Self {
            id,
            writes: Writes::start(raft.clone(), config.message_bytes()),
            raft,
            machine,
            applied,
            next_tick: None,
            mesh,
            sessions,
            audit,
            events,
            members: HashMap::new(),
            pending: HashMap::new(),
            placing: HashMap::new(),
            leases: Leases::new(config.lease),
            crash_evidence: config.crash_evidence,
            totp: config.totp.clone(),
            group_public: std::cell::Cell::new(None),
            guard: crate::operators::guard::Guard::default(),
            login_pool: crate::operators::checks::PasswordChecks::new(config.login_pool),
            login_buckets: crate::operators::bucket::Buckets::logins(),
            types: HashMap::new(),
            reported: super::reported::Reported::default(),
            certified: HashMap::new(),
            moving: HashSet::new(),
            activating: HashMap::new(),
            deliveries: Arc::default(),
            retry_after: HashMap::new(),
            restarted: HashMap::new(),
            queued: VecDeque::new(),
            in_flight: 0,
            confirming: false,
            reads: Reads::new(config.read_lease.min(config.election_timeout)),
            revoked_applied: 0,
        }
    }

    fn read<T>(&self, f: impl FnOnce(&Machine) -> T) -> T {
        f(&self.machine.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// This leader's deliveries.
    fn deliveries(&self) -> std::sync::MutexGuard<'_, Deliveries> {
        lock(&self.deliveries)
    }

    /// `Ok` while this head leads; else who does.
    fn leading(&self) -> Result<(), ControlError> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        if caught_up_leader(&metrics) && self.leases.is_leading() {
            return Ok(());
        }
        Err(ControlError::NotLeader {
            leader: metrics
                .current_leader
                .filter(|l| l.0 != self.id)
                .map(|l| l.0),
        })
    }

    /// Placement's view: members that can start `type_name` (any type if
    /// `None`), schedulable while alive and holding a lease, with the log's
    /// reservations plus decisions still in flight.
    fn views(&self, exclude: Option<NodeId>, type_name: Option<&str>) -> Vec<NodeView> {
        let now = Instant::now();
        let nodes = self.members.values().filter_map(|m| {
            let meta = m.meta.as_ref()?;
            if let Some(t) = type_name {
                if !self
                    .types
                    .get(&m.node)
                    .is_some_and(|ts| ts.iter().any(|x| x == t))
                {
                    return None;
                }
            }
            if m.state == MemberState::Down || m.state == MemberState::Left {
                return None;
            }
            let healthy = m.state == MemberState::Alive
                && self.leases.holds(m.node, now)
                && Some(m.node) != exclude
                && !meta.leaving;
            // Labels are the certificate's roles, as the node's renewal
            // proved them; a node that never renewed holds no lease.
            let labels = self.certified.get(&m.node).cloned().unwrap_or_default();
            Some((m.node, ResourceSet::from(&meta.resources), labels, healthy))
        });
        let mut views = self.read(|m| m.state.views(nodes));
        for view in &mut views {
            if let Some(extra) = self.pending.get(&view.node) {
                view.reserved = view.reserved.plus(extra);
            }
            let placing = self.placing.get(&view.node).copied().unwrap_or(0);
            view.placed = view.placed.saturating_add(placing);
        }
        views.sort_by_key(|v| v.node);
        views
    }

    /// Chooses a node for `spec` (its bundle's node, if it has one).
    fn choose(&self, spec: &ActorSpec, exclude: Option<NodeId>) -> Result<NodeId, ControlError> {
        if let Some((group, index)) = &spec.bundle {
            return self
                .read(|m| {
                    m.state
                        .group(group)
                        .and_then(|g| g.nodes.get(*index).copied())
                })
                .ok_or_else(|| {
                    ControlError::Group(GroupRefusal::NoBundle {
                        group: group.clone(),
                        index: *index,
                    })
                });
        }
        let views = self.views(exclude, Some(&spec.type_name));
        if views.is_empty() {
            if !self.leases.settled(Instant::now()) {
                return Err(PlacementError::NoCapacity(Shortage::LeasesUnsettled).into());
            }
            return Err(ControlError::UnknownType {
                type_name: spec.type_name.clone(),
            });
        }
        Ok(placement::place(&spec.resources, &spec.placement, &views)?)
    }

    fn hold(&mut self, node: NodeId, spec: &ActorSpec) {
        *self.placing.entry(node).or_default() += 1;
        if spec.bundle.is_none() {
            let entry = self.pending.entry(node).or_default();
            *entry = entry.plus(&spec.resources);
        }
    }

    fn unhold(&mut self, node: NodeId, spec: &ActorSpec) {
        if let Some(count) = self.placing.get_mut(&node) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.placing.remove(&node);
            }
        }
        if spec.bundle.is_none() {
            if let Some(entry) = self.pending.get_mut(&node) {
                *entry = entry.minus(&spec.resources);
                if entry.is_empty() {
                    self.pending.remove(&node);
                }
            }
        }
    }

    fn host(&self, node: NodeId) -> RemoteAddr<Host> {
        RemoteAddr::new(self.mesh.clone(), node, HOST_ACTOR)
    }

    /// Follows leadership changes; moves what must move; then sets the
    /// next tick (`wakes`).
    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.check(ctx);
        self.schedule(ctx);
    }

    /// What a tick does.
    ///
    /// A new leader acts only once a write of its own committed: it then
    /// applied everything committed before it (a restarted leader may
    /// resume its term with a state machine that has not caught up).
    fn check(&mut self, ctx: &mut Context<Self>) {
        self.apply_revocations();
        let leads = caught_up_leader(&self.raft.metrics().borrow());
        match (leads, self.leases.is_leading()) {
            (true, false) => {
                if !self.confirming {
                    self.confirming = true;
                    let raft = self.raft.clone();
                    let me = ctx.address();
                    actix::spawn(async move {
                        let noop = raft.client_write(Command::Batch(Vec::new()));
                        let confirmed = tokio::time::timeout(QUORUM_WAIT, noop)
                            .await
                            .is_ok_and(|r| r.is_ok());
                        me.do_send(Confirmed(confirmed));
                    });
                }
                return;
            }
            (false, true) => {
                tracing::info!(head = %self.id.short(), "no longer the head leader");
                self.leases.lost_leadership();
                self.reported.clear();
                self.deliveries().clear();
                self.retry_after.clear();
                self.restarted.clear();
                self.pending.clear();
                self.placing.clear();
                self.moving.clear();
                self.activating.clear();
                self.queued.clear();
            }
            _ => {}
        }
        if !leads {
            return;
        }
        let now = Instant::now();
        let nodes: Vec<NodeId> = self.read(|m| m.state.nodes_with_placements().collect());
        for node in nodes {
            if !self.leases.expired(node, now) {
                if self.leases.probe_due(node, now) {
                    self.probe(node, ctx);
                }
                continue;
            }
            let actors: Vec<(String, u64)> = self.read(|m| {
                m.state
                    .placed_on(node)
                    .filter(|(name, _)| {
                        !self.moving.contains(*name)
                            && self.retry_after.get(*name).is_none_or(|at| now >= *at)
                    })
                    .map(|(name, r)| (name.clone(), r.epoch))
                    .collect()
            });
            for (name, epoch) in actors {
                self.moving.insert(name.clone());
                if self.retry_after.contains_key(&name) {
                    tracing::debug!(actor = %name, node = %node.short(), "trying again to move it");
                } else {
                    tracing::warn!(actor = %name, node = %node.short(), "its node crashed or its lease ran out: moving it");
                }
                self.queued.push_back(Relocate {
                    name,
                    epoch,
                    from: node,
                    stop_first: false,
                    queued: true,
                });
            }
        }
        self.pump(ctx);
    }

    /// A crash or lease move of `name` ended: moved, or no node could take
    /// it (`failed`): it waits [`RETRY_MOVE`] before the next try (logged
    /// once while it waits).
    fn waiting(&mut self, name: &str, failed: Option<&ControlError>) {
        let Some(e) = failed else {
            self.retry_after.remove(name);
            return;
        };
        let again = Instant::now() + RETRY_MOVE;
        if self.retry_after.insert(name.to_owned(), again).is_none() {
            tracing::warn!(actor = %name, error = %e, "no node can take it now: it stays placed where it was and is moved once a node can");
            let detail = format!("waits for a node: {e}");
            self.events.record("waiting", name, detail);
        }
    }

    /// Starts queued moves while slots are free.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        while self.in_flight < MOVES_IN_FLIGHT {
            let Some(relocate) = self.queued.pop_front() else {
                return;
            };
            self.in_flight += 1;
            ctx.notify(relocate);
        }
    }

    /// Looks for crash evidence: `node`'s address refusing connections
    /// while it holds no link to us.
    fn probe(&self, node: NodeId, ctx: &mut Context<Self>) {
        if !self.crash_evidence {
            return;
        }
        let Some(addr) = self.members.get(&node).map(|m| m.addr) else {
            return;
        };
        if self.mesh.live_link(node).is_some() {
            return;
        }
        let me = ctx.address();
        actix::spawn(async move {
            let refused = matches!(
                tokio::time::timeout(Duration::from_millis(500), tokio::net::TcpStream::connect(addr)).await,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
            );
            if refused {
                me.do_send(Evidence { node });
            }
        });
    }
}

/// Locks `deliveries` (a poisoned lock still holds the right bookkeeping).
fn lock(deliveries: &std::sync::Mutex<Deliveries>) -> std::sync::MutexGuard<'_, Deliveries> {
    deliveries.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether this head leads and applied an entry of its own term.
fn caught_up_leader(metrics: &openraft::RaftMetrics<HeadId, openraft::BasicNode>) -> bool {
    metrics.state == ServerState::Leader
        && metrics
            .last_applied
            .is_some_and(|l| l.leader_id.term == metrics.current_term)
}

fn located(record: &ActorRecord) -> Result<Located, ControlError> {
    Ok(Located {
        node: record.node,
        epoch: record.epoch,
        type_name: record.spec.type_name.clone(),
    })
}

fn spawn_request(name: &str, spec: &ActorSpec, epoch: u64, index: u64) -> HostSpawn {
    HostSpawn {
        type_name: spec.type_name.clone(),
        name: name.to_owned(),
        args: spec.args.clone(),
        epoch,
        restart: spec.restart.clone(),
        fence: Some(index),
        idle_after_ms: spec.idle_after_ms,
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.watch(ctx);
        self.tick(ctx);
    }
}

impl Handler<ClusterEvent> for Supervisor {
    type Result = ();

    fn handle(&mut self, event: ClusterEvent, _: &mut Context<Self>) {
        let member = event.member().clone();
        self.members.insert(member.node, member);
    }
}

/// Stops the supervisor (the node shuts down).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Stop;

impl Handler<Stop> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// The members membership knew when the supervisor subscribed.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Members(pub(crate) Vec<Member>);

impl Handler<Members> for Supervisor {
    type Result = ();

    fn handle(&mut self, Members(members): Members, _: &mut Context<Self>) {
        for member in members {
            self.members.entry(member.node).or_insert(member);
        }
    }
}

/// A probe found a node's address refusing connections.
#[derive(Message)]
#[rtype(result = "()")]
struct Evidence {
    node: NodeId,
}

impl Handler<Evidence> for Supervisor {
    type Result = ();

    fn handle(&mut self, Evidence { node }: Evidence, ctx: &mut Context<Self>) {
        if self.mesh.live_link(node).is_none() {
            tracing::warn!(node = %node.short(), "crash evidence: renewals stopped and its address refuses connections");
            self.leases.mark_dead(node);
            self.tick_at(Instant::now(), ctx);
        }
    }
}

/// Answered once a quorum confirms that this head still leads: a leader
/// cut off from the quorum answers `NoQuorum`, never a stale location.
impl Handler<Resolve> for Supervisor {
    type Result = ResponseFuture<Result<Located, ControlError>>;

    fn handle(&mut self, Resolve { name }: Resolve, ctx: &mut Context<Self>) -> Self::Result {
        let me = ctx.address();
        let asked = name.clone();
        let read = self.confirmed_read(ctx, move |m| {
            let Some(record) = m.state.actor(&name) else {
                return Err(ControlError::NoSuchName { name });
            };
            match &record.state {
                RecordState::Placed => located(record).map(Some),
                RecordState::Failed { reason } => Err(ControlError::Failed {
                    name,
                    reason: reason.clone(),
                }),
                RecordState::Passive => Ok(None),
            }
        });
        // A passive name is placed again: the first call activates it.
        Box::pin(async move {
            match read.await? {
                Some(located) => Ok(located),
                None => me
                    .send(activation::Activate { name: asked })
                    .await
                    .unwrap_or(Err(ControlError::NotLeader { leader: None })),
            }
        })
    }
}

impl Handler<StopActor> for Supervisor {
    type Result = ResponseFuture<Result<(), ControlError>>;

    fn handle(&mut self, StopActor { name }: StopActor, ctx: &mut Context<Self>) -> Self::Result {
        // A name the state machine lacks is unknown only if this head
        // still leads (the write below confirms it for a name it has).
        let record = {
            let name = name.clone();
            self.confirmed_read(ctx, move |m| {
                m.state
                    .actor(&name)
                    .cloned()
                    .ok_or(ControlError::NoSuchName { name })
            })
        };
        let writes = self.writes.clone();
        let mesh = self.mesh.clone();
        Box::pin(async move {
            let record = record.await?;
            let host = RemoteAddr::<Host>::new(mesh, record.node, HOST_ACTOR);
            let command = Command::Remove {
                name: name.clone(),
                epoch: Some(record.epoch),
            };
            match writes.write(command).await? {
                (_, Applied::Done) => {}
                (_, Applied::Unknown) => return Err(ControlError::NoSuchName { name }),
                (_, other) => {
                    return Err(ControlError::Refused {
                        reason: format!("changed while stopping ({other:?}); try again"),
                    })
                }
            }
            // A node that misses this stops it on its next renewal.
            let _ = host
                .send(HostStop {
                    name,
                    epoch: record.epoch,
                })
                .await;
            Ok(())
        })
    }
}

impl Handler<ListPlaced> for Supervisor {
    type Result = ResponseFuture<Result<PlacedPage, ControlError>>;

    fn handle(&mut self, list: ListPlaced, ctx: &mut Context<Self>) -> Self::Result {
        let limit = list.limit.clamp(1, MAX_PLACED_PAGE);
        self.confirmed_read(ctx, move |m| {
            let (page, more) = m.state.actors_page(list.after.as_deref(), limit);
            let rows = page
                .into_iter()
                .map(|(name, r)| PlacedRow {
                    name: name.clone(),
                    type_name: r.spec.type_name.clone(),
                    node: r.node,
                    state: match &r.state {
                        RecordState::Placed => "placed".to_owned(),
                        RecordState::Failed { reason } => format!("failed: {reason}"),
                        RecordState::Passive => "passive".to_owned(),
                    },
                    epoch: r.epoch,
                    placements: r.placements,
                    resources: r.spec.resources.clone(),
                    bundle: r.spec.bundle.clone(),
                    journal_seq: m.state.journals().last_seq(name),
                })
                .collect();
            Ok(PlacedPage { rows, more })
        })
    }
}

crate::remote_actor!(
    Supervisor: VerifyLogin,
    crate::head::wire::operators::Delegate,
    crate::head::wire::operators::SetPassword,
    crate::head::wire::operators::VerifyPassword,
    RevokeCert,
    crate::head::wire::RotateCapabilityKey,
    ListRevoked,
    PlaceActor,
    Resolve,
    StopActor,
    ReserveGroup,
    ReleaseGroup,
    DrainNode,
    ListPlaced,
    HeadStatus,
    Renew,
    crate::head::wire::journal::ClaimJournal,
    crate::head::wire::journal::AppendJournal,
    crate::head::wire::journal::AppendJournals,
    crate::head::wire::journal::SnapshotJournal,
    crate::head::wire::passivation::Passivated,
    crate::head::wire::MigrateActor
);
