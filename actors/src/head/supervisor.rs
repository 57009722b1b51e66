//! The placement supervisor: an actor on every head, acting only while its
//! head is the Raft leader. It places named actors by the resources
//! membership gossips minus what the head reserved, records each decision
//! in the log (a new epoch), then asks the chosen node's host to start it.
//! It grants leases, reconciles what nodes run with what the log says, and
//! moves the actors of nodes whose lease ran out (or that crashed), that
//! escalate failures, or that drain.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use openraft::error::{ClientWriteError, RaftError};
use openraft::ServerState;
use swarm_protocol::membership::MemberState;
use swarm_protocol::NodeId;

use super::leases::Leases;
use super::state::{ActorRecord, Applied, Command, RecordState};
use super::store::Machine;
use super::types::{HeadId, Raft};
use super::wire::{
    ActorSpec, ControlError, DrainNode, HeadRow, HeadStatus, ListPlaced, Located, PlaceActor,
    PlacedRow, ReleaseGroup, Renew, ReserveGroup, Resolve, StopActor,
};
use crate::cluster::{ClusterEvent, Member};
use crate::mesh::Mesh;
use crate::placement::{self, NodeView, PlacementError, ResourceSet};
use crate::remote::RemoteAddr;
use crate::supervision::{Grant, Host, HostLeave, HostSpawn, HostStop, HOST_ACTOR};

/// How long a write waits for a quorum before it fails with `NoQuorum`.
const QUORUM_WAIT: Duration = Duration::from_secs(3);

/// How often the leader looks for placements to move.
const TICK: Duration = Duration::from_millis(50);

/// The placement supervisor of one head.
pub(crate) struct Supervisor {
    id: NodeId,
    raft: Raft,
    machine: Arc<RwLock<Machine>>,
    mesh: Mesh,
    members: HashMap<NodeId, Member>,
    /// Reservations decided but not yet in the log.
    pending: HashMap<NodeId, ResourceSet>,
    leases: Leases,
    /// The actor types each node reported it may start.
    types: HashMap<NodeId, Vec<String>>,
    /// Names being moved now.
    moving: HashSet<String>,
}

impl Supervisor {
    pub(crate) fn new(
        id: NodeId,
        raft: Raft,
        machine: Arc<RwLock<Machine>>,
        mesh: Mesh,
        lease: Duration,
    ) -> Self {
        Self {
            id,
            raft,
            machine,
            mesh,
            members: HashMap::new(),
            pending: HashMap::new(),
            leases: Leases::new(lease),
            types: HashMap::new(),
            moving: HashSet::new(),
        }
    }

    fn read<T>(&self, f: impl FnOnce(&Machine) -> T) -> T {
        f(&self.machine.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// `Ok` while this head leads; else who does.
    fn leading(&self) -> Result<(), ControlError> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        if metrics.state == ServerState::Leader && self.leases.is_leading() {
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
            Some((
                m.node,
                ResourceSet::from(&meta.resources),
                meta.roles.clone(),
                healthy,
            ))
        });
        let mut views = self.read(|m| m.state.views(nodes));
        for view in &mut views {
            if let Some(extra) = self.pending.get(&view.node) {
                view.reserved = view.reserved.plus(extra);
            }
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
                .ok_or_else(|| ControlError::Refused {
                    reason: format!("placement group {group:?} has no bundle {index}"),
                });
        }
        let views = self.views(exclude, Some(&spec.type_name));
        if views.is_empty() {
            if !self.leases.settled(Instant::now()) {
                return Err(ControlError::NoCapacity {
                    reason: "no node has renewed its lease with the new head leader yet".into(),
                });
            }
            return Err(ControlError::UnknownType {
                type_name: spec.type_name.clone(),
            });
        }
        placement::place(&spec.resources, &spec.placement, &views).map_err(placed)
    }

    fn hold(&mut self, node: NodeId, spec: &ActorSpec) {
        if spec.bundle.is_none() {
            let entry = self.pending.entry(node).or_default();
            *entry = entry.plus(&spec.resources);
        }
    }

    fn unhold(&mut self, node: NodeId, spec: &ActorSpec) {
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

    /// Follows leadership changes; moves what must move.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        let leads = self.raft.metrics().borrow().state == ServerState::Leader;
        match (leads, self.leases.is_leading()) {
            (true, false) => {
                tracing::info!(head = %self.id.short(), "head leader: placement supervisor active");
                self.leases.became_leader(Instant::now());
            }
            (false, true) => {
                tracing::info!(head = %self.id.short(), "no longer the head leader");
                self.leases.lost_leadership();
                self.pending.clear();
                self.moving.clear();
            }
            _ => {}
        }
        if !leads {
            return;
        }
        let now = Instant::now();
        let mut by_node: HashMap<NodeId, Vec<(String, u64)>> = HashMap::new();
        self.read(|m| {
            for (name, record) in m.state.actors() {
                if record.state == RecordState::Placed {
                    by_node
                        .entry(record.node)
                        .or_default()
                        .push((name.clone(), record.epoch));
                }
            }
        });
        for (node, actors) in by_node {
            if self.leases.expired(node, now) {
                for (name, epoch) in actors {
                    if self.moving.insert(name.clone()) {
                        tracing::warn!(actor = %name, node = %node.short(), "lease of its node ran out: moving it");
                        ctx.notify(Relocate {
                            name,
                            epoch,
                            from: node,
                            stop_first: false,
                        });
                    }
                }
            } else if self.leases.probe_due(node, now) {
                self.probe(node, ctx);
            }
        }
    }

    /// Looks for crash evidence: `node`'s address refusing connections
    /// while it holds no link to us.
    fn probe(&self, node: NodeId, ctx: &mut Context<Self>) {
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

/// Maps a placement failure to what the caller sees.
fn placed(e: PlacementError) -> ControlError {
    match e {
        PlacementError::Unschedulable { reason } => ControlError::Unschedulable { reason },
        PlacementError::NoCapacity { reason } => ControlError::NoCapacity { reason },
    }
}

/// Writes `command` through Raft: its log index and what applying it did.
async fn write(raft: Raft, command: Command) -> Result<(u64, Applied), ControlError> {
    match tokio::time::timeout(QUORUM_WAIT, raft.client_write(command)).await {
        Err(_) => Err(ControlError::NoQuorum {
            reason: format!("no quorum acknowledged the write within {QUORUM_WAIT:?}"),
        }),
        Ok(Ok(response)) => Ok((response.log_id.index, response.data)),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            Err(ControlError::NotLeader {
                leader: f.leader_id.map(|l| l.0),
            })
        }
        Ok(Err(e)) => Err(ControlError::NoQuorum {
            reason: e.to_string(),
        }),
    }
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
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(TICK, Self::tick);
    }
}

impl Handler<ClusterEvent> for Supervisor {
    type Result = ();

    fn handle(&mut self, event: ClusterEvent, _: &mut Context<Self>) {
        let member = event.member().clone();
        self.members.insert(member.node, member);
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

    fn handle(&mut self, Evidence { node }: Evidence, _: &mut Context<Self>) {
        if self.mesh.live_link(node).is_none() {
            tracing::warn!(node = %node.short(), "crash evidence: renewals stopped and its address refuses connections");
            self.leases.mark_dead(node);
        }
    }
}

impl Handler<PlaceActor> for Supervisor {
    type Result = ResponseActFuture<Self, Result<Located, ControlError>>;

    fn handle(&mut self, request: PlaceActor, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.leading() {
            return Box::pin(fut::ready(Err(e)));
        }
        if let Some(existing) = self.read(|m| m.state.actor(&request.name).cloned()) {
            return Box::pin(fut::ready(exists(&request, &existing)));
        }
        let node = match self.choose(&request.spec, None) {
            Ok(node) => node,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        self.hold(node, &request.spec);
        let raft = self.raft.clone();
        let host = self.host(node);
        let PlaceActor {
            name,
            spec,
            get_if_exists,
        } = request;
        let command = Command::Place {
            name: name.clone(),
            spec: spec.clone(),
            node,
            expect: None,
        };
        let held = spec.clone();
        Box::pin(
            async move {
                let (index, applied) = write(raft.clone(), command).await?;
                let epoch = match applied {
                    Applied::Placed { epoch } => epoch,
                    Applied::Exists(existing) => {
                        let request = PlaceActor {
                            name,
                            spec,
                            get_if_exists,
                        };
                        return exists(&request, &existing);
                    }
                    Applied::Refused { reason } => return Err(ControlError::Refused { reason }),
                    other => {
                        return Err(ControlError::Refused {
                            reason: format!("unexpected answer {other:?}"),
                        })
                    }
                };
                match host.send(spawn_request(&name, &spec, epoch, index)).await {
                    Ok(Err(e)) => {
                        tracing::warn!(actor = %name, node = %node.short(), error = %e, "the chosen node refused the actor: forgetting it");
                        let _ = write(
                            raft,
                            Command::Remove {
                                name,
                                epoch: Some(epoch),
                            },
                        )
                        .await;
                        Err(ControlError::Spawn(e))
                    }
                    // Started; or the node did not answer, and its next lease
                    // renewal starts it, or its actors move if it is gone.
                    Ok(Ok(())) | Err(_) => Ok(Located {
                        node,
                        epoch,
                        type_name: spec.type_name,
                    }),
                }
            }
            .into_actor(self)
            .map(move |result, act, _| {
                act.unhold(node, &held);
                result
            }),
        )
    }
}

/// The answer to a spawn of a name that exists.
fn exists(request: &PlaceActor, existing: &ActorRecord) -> Result<Located, ControlError> {
    if existing.spec.type_name != request.spec.type_name || !request.get_if_exists {
        return Err(ControlError::NameTaken {
            name: request.name.clone(),
            type_name: existing.spec.type_name.clone(),
            node: existing.node,
        });
    }
    match &existing.state {
        RecordState::Placed => located(existing),
        RecordState::Failed { reason } => Err(ControlError::Failed {
            name: request.name.clone(),
            reason: reason.clone(),
        }),
    }
}

impl Handler<Resolve> for Supervisor {
    type Result = Result<Located, ControlError>;

    fn handle(&mut self, Resolve { name }: Resolve, _: &mut Context<Self>) -> Self::Result {
        self.leading()?;
        let record = self
            .read(|m| m.state.actor(&name).cloned())
            .ok_or_else(|| ControlError::NoSuchName { name: name.clone() })?;
        match &record.state {
            RecordState::Placed => located(&record),
            RecordState::Failed { reason } => Err(ControlError::Failed {
                name,
                reason: reason.clone(),
            }),
        }
    }
}

impl Handler<StopActor> for Supervisor {
    type Result = ResponseFuture<Result<(), ControlError>>;

    fn handle(&mut self, StopActor { name }: StopActor, _: &mut Context<Self>) -> Self::Result {
        let record = self.leading().and_then(|()| {
            self.read(|m| m.state.actor(&name).cloned())
                .ok_or_else(|| ControlError::NoSuchName { name: name.clone() })
        });
        let raft = self.raft.clone();
        let host = record.as_ref().ok().map(|r| self.host(r.node));
        Box::pin(async move {
            let record = record?;
            let command = Command::Remove {
                name: name.clone(),
                epoch: Some(record.epoch),
            };
            match write(raft, command).await? {
                (_, Applied::Done) => {}
                (_, Applied::Unknown) => return Err(ControlError::NoSuchName { name }),
                (_, other) => {
                    return Err(ControlError::Refused {
                        reason: format!("changed while stopping ({other:?}); try again"),
                    })
                }
            }
            // A node that misses this stops it on its next renewal.
            if let Some(host) = host {
                let _ = host
                    .send(HostStop {
                        name,
                        epoch: record.epoch,
                    })
                    .await;
            }
            Ok(())
        })
    }
}

impl Handler<ReserveGroup> for Supervisor {
    type Result = ResponseActFuture<Self, Result<Vec<NodeId>, ControlError>>;

    fn handle(&mut self, request: ReserveGroup, _: &mut Context<Self>) -> Self::Result {
        let chosen = self.leading().and_then(|()| {
            if self.read(|m| m.state.group(&request.name).is_some()) {
                return Err(ControlError::Refused {
                    reason: format!("placement group {:?} exists", request.name),
                });
            }
            placement::place_group(&request.bundles, request.strategy, &self.views(None, None))
                .map_err(placed)
        });
        let nodes = match chosen {
            Ok(nodes) => nodes,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        for (node, bundle) in nodes.iter().zip(&request.bundles) {
            let entry = self.pending.entry(*node).or_default();
            *entry = entry.plus(bundle);
        }
        let held: Vec<(NodeId, ResourceSet)> =
            nodes.iter().copied().zip(request.bundles.clone()).collect();
        let command = Command::ReserveGroup {
            name: request.name,
            strategy: request.strategy,
            bundles: request.bundles,
            nodes: nodes.clone(),
        };
        Box::pin(
            write(self.raft.clone(), command)
                .into_actor(self)
                .map(move |written, act, _| {
                    for (node, bundle) in &held {
                        if let Some(entry) = act.pending.get_mut(node) {
                            *entry = entry.minus(bundle);
                        }
                    }
                    match written? {
                        (_, Applied::Done) => Ok(nodes),
                        (_, Applied::Refused { reason }) => Err(ControlError::Refused { reason }),
                        (_, other) => Err(ControlError::Refused {
                            reason: format!("unexpected answer {other:?}"),
                        }),
                    }
                }),
        )
    }
}

impl Handler<ReleaseGroup> for Supervisor {
    type Result = ResponseFuture<Result<(), ControlError>>;

    fn handle(
        &mut self,
        ReleaseGroup { name }: ReleaseGroup,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let leading = self.leading();
        let raft = self.raft.clone();
        Box::pin(async move {
            leading?;
            match write(raft, Command::RemoveGroup { name: name.clone() }).await? {
                (_, Applied::Done) => Ok(()),
                (_, Applied::Unknown) => Err(ControlError::NoSuchName { name }),
                (_, Applied::Refused { reason }) => Err(ControlError::Refused { reason }),
                (_, other) => Err(ControlError::Refused {
                    reason: format!("unexpected answer {other:?}"),
                }),
            }
        })
    }
}

impl Handler<ListPlaced> for Supervisor {
    type Result = Result<Vec<PlacedRow>, ControlError>;

    fn handle(&mut self, _: ListPlaced, _: &mut Context<Self>) -> Self::Result {
        self.leading()?;
        Ok(self.read(|m| {
            m.state
                .actors()
                .map(|(name, r)| PlacedRow {
                    name: name.clone(),
                    type_name: r.spec.type_name.clone(),
                    node: r.node,
                    state: match &r.state {
                        RecordState::Placed => "placed".to_owned(),
                        RecordState::Failed { reason } => format!("failed: {reason}"),
                    },
                    epoch: r.epoch,
                    placements: r.placements,
                    resources: r.spec.resources.clone(),
                    bundle: r.spec.bundle.clone(),
                })
                .collect()
        }))
    }
}

impl Handler<HeadStatus> for Supervisor {
    type Result = MessageResult<HeadStatus>;

    fn handle(&mut self, _: HeadStatus, _: &mut Context<Self>) -> Self::Result {
        let metrics = self.raft.metrics().borrow().clone();
        let last_log = metrics.last_log_index.unwrap_or(0);
        let lag = metrics
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .filter(|(id, _)| id.0 != self.id)
                    .map(|(id, matched)| {
                        (
                            id.0,
                            last_log.saturating_sub(matched.map_or(0, |l| l.index)),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        MessageResult(HeadRow {
            node: self.id,
            role: format!("{:?}", metrics.state).to_lowercase(),
            leader: metrics.current_leader.map(|l| l.0),
            term: metrics.current_term,
            voters: metrics
                .membership_config
                .membership()
                .voter_ids()
                .map(|v: HeadId| v.0)
                .collect(),
            last_log,
            applied: metrics.last_applied.map_or(0, |l| l.index),
            lag,
        })
    }
}

impl Handler<Renew> for Supervisor {
    type Result = ResponseActFuture<Self, Result<Grant, ControlError>>;

    fn handle(&mut self, renew: Renew, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.leading() {
            return Box::pin(fut::ready(Err(e)));
        }
        let raft = self.raft.clone();
        Box::pin(
            async move {
                match tokio::time::timeout(QUORUM_WAIT, raft.ensure_linearizable()).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(ControlError::NoQuorum {
                        reason: e.to_string(),
                    }),
                    Err(_) => Err(ControlError::NoQuorum {
                        reason: "no quorum confirmed the leader".to_owned(),
                    }),
                }
            }
            .into_actor(self)
            .map(move |confirmed, act, ctx| {
                confirmed?;
                act.leading()?;
                act.leases.granted(renew.node, Instant::now());
                act.types.insert(renew.node, renew.types.clone());
                Ok(act.grant(&renew, ctx))
            }),
        )
    }
}

impl Supervisor {
    /// What `renew.node` must start and stop; escalations it reports move.
    fn grant(&mut self, renew: &Renew, ctx: &mut Context<Self>) -> Grant {
        let (index, expected) = self.read(|m| {
            (
                m.last_applied.map_or(0, |l| l.index),
                m.state
                    .placed_on(renew.node)
                    .map(|(n, r)| (n.clone(), r.clone()))
                    .collect::<Vec<_>>(),
            )
        });
        let mut start = Vec::new();
        for (name, record) in &expected {
            let reported = renew
                .running
                .iter()
                .find(|r| r.name == *name && r.epoch == record.epoch);
            match reported {
                None => start.push(spawn_request(name, &record.spec, record.epoch, index)),
                Some(r) if r.failed && self.moving.insert(name.clone()) => {
                    tracing::warn!(actor = %name, node = %renew.node.short(), "escalated past its restart policy");
                    ctx.notify(Escalated {
                        name: name.clone(),
                        epoch: record.epoch,
                        from: renew.node,
                    });
                }
                Some(_) => {}
            }
        }
        let stop = renew
            .running
            .iter()
            .filter(|r| {
                !expected
                    .iter()
                    .any(|(n, rec)| *n == r.name && rec.epoch == r.epoch)
            })
            .map(|r| (r.name.clone(), r.epoch))
            .collect();
        Grant {
            lease_ms: u64::try_from(self.leases.lease().as_millis()).unwrap_or(u64::MAX),
            index,
            start,
            stop,
        }
    }
}

/// Moves a named actor off `from` (its placement `epoch`).
#[derive(Message)]
#[rtype(result = "Result<NodeId, ControlError>")]
struct Relocate {
    name: String,
    epoch: u64,
    from: NodeId,
    /// Stop the old incarnation before starting the new (drain); after a
    /// crash or lease expiry there is nothing to stop.
    stop_first: bool,
}

impl Handler<Relocate> for Supervisor {
    type Result = ResponseActFuture<Self, Result<NodeId, ControlError>>;

    fn handle(&mut self, r: Relocate, _: &mut Context<Self>) -> Self::Result {
        let record = self.read(|m| m.state.actor(&r.name).cloned());
        let Some(record) = record.filter(|rec| rec.epoch == r.epoch) else {
            self.moving.remove(&r.name);
            return Box::pin(fut::ready(Err(ControlError::NoSuchName { name: r.name })));
        };
        let target = self.choose(&record.spec, Some(r.from));
        let raft = self.raft.clone();
        let old = self.host(r.from);
        let new = target.as_ref().ok().map(|n| self.host(*n));
        let held = target.as_ref().ok().copied();
        if let Some(node) = held {
            self.hold(node, &record.spec);
        }
        let name = r.name.clone();
        let spec = record.spec.clone();
        Box::pin(
            async move {
                let node = match target {
                    Ok(node) => node,
                    Err(e) => {
                        let reason = format!("no node to move it to: {e}");
                        tracing::error!(actor = %name, %reason, "marking it failed");
                        let fail = Command::Fail {
                            name,
                            epoch: r.epoch,
                            reason,
                        };
                        write(raft, fail).await?;
                        return Err(e);
                    }
                };
                if r.stop_first {
                    let stop = HostStop {
                        name: name.clone(),
                        epoch: r.epoch,
                    };
                    let _ = old.send(stop).await;
                }
                let command = Command::Place {
                    name: name.clone(),
                    spec: spec.clone(),
                    node,
                    expect: Some(r.epoch),
                };
                let (index, epoch) = match write(raft, command).await? {
                    (index, Applied::Placed { epoch }) => (index, epoch),
                    (_, other) => {
                        return Err(ControlError::Refused {
                            reason: format!("changed while moving ({other:?})"),
                        })
                    }
                };
                tracing::info!(actor = %name, from = %r.from.short(), to = %node.short(), epoch, "moved");
                if let Some(new) = new {
                    let _ = new.send(spawn_request(&name, &spec, epoch, index)).await;
                }
                Ok(node)
            }
            .into_actor(self)
            .map(move |result, act, _| {
                act.moving.remove(&r.name);
                if let Some(node) = held {
                    act.unhold(node, &record.spec);
                }
                result
            }),
        )
    }
}

/// An actor failed past its restart policy on `from`.
#[derive(Message)]
#[rtype(result = "()")]
struct Escalated {
    name: String,
    epoch: u64,
    from: NodeId,
}

impl Handler<Escalated> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, e: Escalated, ctx: &mut Context<Self>) -> Self::Result {
        let replace = self.read(|m| {
            m.state
                .actor(&e.name)
                .is_some_and(|r| r.spec.replace_on_escalation)
        });
        if replace {
            let me = ctx.address();
            return Box::pin(
                async move {
                    let _ = me
                        .send(Relocate {
                            name: e.name,
                            epoch: e.epoch,
                            from: e.from,
                            stop_first: true,
                        })
                        .await;
                }
                .into_actor(self),
            );
        }
        let raft = self.raft.clone();
        let name = e.name.clone();
        Box::pin(
            async move {
                let fail = Command::Fail {
                    name: e.name,
                    epoch: e.epoch,
                    reason: "failed past its restart policy".to_owned(),
                };
                let _ = write(raft, fail).await;
            }
            .into_actor(self)
            .map(move |(), act, _| {
                act.moving.remove(&name);
            }),
        )
    }
}

impl Handler<DrainNode> for Supervisor {
    type Result = ResponseActFuture<Self, Result<usize, ControlError>>;

    fn handle(&mut self, DrainNode { node }: DrainNode, ctx: &mut Context<Self>) -> Self::Result {
        let leading = self.leading();
        let raft = self.raft.clone();
        let me = ctx.address();
        let machine = Arc::clone(&self.machine);
        let host = self.host(node);
        Box::pin(
            async move {
                leading?;
                write(raft, Command::Drain { node, on: true }).await?;
                let placed: Vec<(String, u64)> = machine
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .state
                    .placed_on(node)
                    .map(|(n, r)| (n.clone(), r.epoch))
                    .collect();
                let mut moved = 0;
                for (name, epoch) in placed {
                    let relocate = Relocate {
                        name,
                        epoch,
                        from: node,
                        stop_first: true,
                    };
                    if let Ok(Ok(_)) = me.send(relocate).await {
                        moved += 1;
                    }
                }
                // Its actors run elsewhere: let it go.
                let _ = host.send(HostLeave).await;
                Ok(moved)
            }
            .into_actor(self),
        )
    }
}

crate::remote_actor!(
    Supervisor: PlaceActor,
    Resolve,
    StopActor,
    ReserveGroup,
    ReleaseGroup,
    DrainNode,
    ListPlaced,
    HeadStatus,
    Renew
);
