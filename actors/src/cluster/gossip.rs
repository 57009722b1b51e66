//! The `Gossip` actor: drives a [`Membership`] from a UDP socket on the
//! mesh port, seals and opens every datagram, arms its timers on the
//! actor's context, and publishes membership changes as [`ClusterEvent`]s
//! (the service table applies each one first). It has no children; if it
//! stops (the node left), the `Cluster` handle's calls fail with `Stopped`.
//!
//! Datagrams to or from a node that UDP cannot reach (it is relayed, or
//! this node is) travel over mesh links instead: on a link to it, or
//! through a relay. Which members need that is known from their metadata
//! (`via`) and from where their datagrams came from (a member whose
//! datagrams arrived over the mesh is answered over the mesh).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use swarm_protocol::gossip::meta::Load;
use swarm_protocol::gossip::{
    GossipKey, KeyRing, MemberId, MetaError, NodeMeta, SealError, ServiceEntry,
};
use swarm_protocol::membership::{GossipStats, MemberEvent, MemberState, Membership};
use swarm_protocol::NodeId;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

mod changes;
mod transport;

use super::events::{ClusterEvents, EventBus};
use super::resources::{load_changed, Probe};
use super::rows::NodeCounters;
use super::services::table::ServiceTable;
use super::{
    ClusterConfig, ClusterEvent, InstanceRow, ListMembers, ListServices, Member, MemberRow,
    ServiceRow,
};
use crate::error::StartError;
use crate::mesh::Mesh;
use changes::{Change, ChangeLog};
use transport::{Datagrams, MeshDatagrams, DRAIN_IF_LATE, VIA_REFRESH};

/// The membership actor of one node (exposed as `swarm.cluster`, where it
/// answers [`ListMembers`] and [`ListServices`]).
pub struct Gossip {
    /// This node's id, name and address; its counters for `ListMembers`.
    mesh: Mesh,
    /// Applies every event before it is published.
    table: Arc<ServiceTable>,
    /// Where events are published.
    bus: EventBus,
    machine: Membership,
    /// Receives through tokio (read readiness from the reactor).
    socket: Arc<AsyncFd<std::net::UdpSocket>>,
    /// Sends directly: a non-blocking `sendto` needs no reactor readiness,
    /// so the first datagrams (sent before the reactor has polled the new
    /// socket once) are not lost to a spurious `WouldBlock`.
    sender: std::net::UdpSocket,
    epoch: Instant,
    seeds: Vec<SocketAddr>,
    members: HashMap<SocketAddr, Member>,
    probe: Probe,
    total_memory: u64,
    load_interval: Duration,
    /// When load was last gossiped (rate-limited with the cluster's size).
    load_gossiped_at: Option<Instant>,
    /// Armed timers the machine may cancel, by key.
    cancellable: HashMap<u64, SpawnHandle>,
    /// Members whose datagrams came over the mesh: their node, and the
    /// relay that forwarded them. They are answered the same way.
    /// Only from datagrams that opened with the gossip key and whose route
    /// may be that member's (`transport::learn_route`).
    mesh_routes: HashMap<SocketAddr, (NodeId, Option<NodeId>)>,
    /// Routes over the mesh refused since start (the first few logged).
    routes_refused: u64,
    /// Changes of other members, counted and summarised in the log.
    changes: ChangeLog,
    /// Where datagrams already queued on the socket are read into before
    /// a timer is handled (`transport`).
    drain_buf: Box<[u8]>,
    left: bool,
}

/// Per member, the least spacing of one node's load updates.
const LOAD_GOSSIP_SPACING: Duration = Duration::from_secs(2);

/// The parts `Node::start` hands over.
pub(crate) struct GossipParts {
    pub(crate) mesh: Mesh,
    pub(crate) table: Arc<ServiceTable>,
    pub(crate) bus: EventBus,
    /// Bound and non-blocking.
    pub(crate) socket: std::net::UdpSocket,
    pub(crate) config: ClusterConfig,
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(1)
        .max(1)
}

fn random_seed() -> u64 {
    let mut seed = [0u8; 8];
    // Without OS randomness, a time-based seed still spreads choices.
    if getrandom::fill(&mut seed).is_err() {
        return unix_millis();
    }
    u64::from_le_bytes(seed)
}

impl Gossip {
    pub(crate) fn new(parts: GossipParts) -> Result<Self, StartError> {
        let GossipParts {
            mesh,
            table,
            bus,
            socket,
            config,
        } = parts;
        let hs = mesh.handshake();
        let mut keys = config.gossip_keys.clone();
        if keys.is_empty() {
            keys.push(GossipKey::derive(&hs.join_secret, &hs.cluster));
        }
        let mut ring = KeyRing::new(keys.remove(0));
        for key in keys {
            if let Err(e) = ring.add(key) {
                tracing::warn!(error = %e, "gossip key ignored");
            }
        }
        let mut probe = Probe::new(config.resources.gpus);
        let resources = probe.resources(&config.resources);
        let total_memory = resources.memory;
        let meta = NodeMeta {
            name: mesh.name().to_owned(),
            roles: mesh.announced_roles(),
            resources,
            load: probe.load(),
            services: Vec::new(),
            leaving: false,
            relay: mesh.is_relay(),
            via: mesh.via(),
        };
        let me = MemberId {
            addr: mesh.advertised_addr(),
            node: mesh.id(),
            bump: unix_millis(),
        };
        let machine = Membership::new(config.gossip.clone(), me, meta, random_seed(), ring)?;
        let bind_error = |source| StartError::GossipBind {
            addr: mesh.listen_addr(),
            source,
        };
        let sender = socket.try_clone().map_err(bind_error)?;
        // The AsyncFd owns the socket, so its fd stays open for as long as
        // it is registered: the I/O-safety concern behind the deprecation
        // (tokio#8587) does not arise, and the replacement is `unsafe`,
        // which this workspace forbids.
        #[allow(deprecated)]
        let socket = AsyncFd::with_interest(socket, Interest::READABLE).map_err(bind_error)?;
        Ok(Self {
            mesh,
            table,
            bus,
            machine,
            socket: Arc::new(socket),
            sender,
            epoch: Instant::now(),
            seeds: config.seeds,
            members: HashMap::new(),
            probe,
            total_memory,
            load_interval: config.load_interval,
            // The first metadata carries the load at start.
            load_gossiped_at: Some(Instant::now()),
            cancellable: HashMap::new(),
            mesh_routes: HashMap::new(),
            routes_refused: 0,
            changes: ChangeLog::default(),
            drain_buf: vec![0u8; 65_536].into_boxed_slice(),
            left: false,
        })
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Sends what the machine queued, arms its timers and applies its events.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        let sent_at = unix_millis();
        while self.machine.wants_transmit() {
            let mut nonce = [0u8; 12];
            if getrandom::fill(&mut nonce).is_err() {
                tracing::error!("no OS randomness for a gossip nonce; datagrams held back");
                break;
            }
            let Some((to, sealed)) = self.machine.poll_transmit(nonce, sent_at) else {
                break;
            };
            self.send(to, &sealed);
        }
        while let Some((after, tick)) = self.machine.poll_timer() {
            let key = tick.key();
            let handle = ctx.run_later(after, move |act, ctx| {
                if let Some(key) = key {
                    act.cancellable.remove(&key);
                }
                if act.left {
                    return;
                }
                // What arrived before a late timer fired is applied first.
                // A node on time read it as it came (the socket's stream);
                // reading anyway costs a `recvfrom` that finds nothing on
                // most of an idle node's timer wake-ups.
                let mut now = act.now();
                if now.saturating_sub(tick.due()) > DRAIN_IF_LATE {
                    act.drain_socket();
                    now = act.now();
                }
                act.machine.handle_tick(tick, now);
                act.flush(ctx);
                if act.machine.has_left() {
                    // Nothing more to send or answer.
                    act.left = true;
                }
            });
            if let Some(key) = key {
                self.cancellable.insert(key, handle);
            }
        }
        while let Some(key) = self.machine.poll_cancel() {
            if let Some(handle) = self.cancellable.remove(&key) {
                ctx.cancel_future(handle);
            }
        }
        while let Some(event) = self.machine.poll_event() {
            self.apply(event);
        }
    }

    fn member_for(&mut self, id: &MemberId, state: MemberState) -> Member {
        let meta = self
            .machine
            .meta_of(&id.addr)
            .filter(|(published, _)| published.node == id.node)
            .map(|(_, meta)| meta);
        let member = self.members.entry(id.addr).or_insert_with(|| Member {
            node: id.node,
            addr: id.addr,
            bump: id.bump,
            state,
            meta: None,
        });
        member.node = id.node;
        member.bump = id.bump;
        member.state = state;
        if meta.is_some() {
            member.meta = meta;
        }
        member.clone()
    }

    fn apply(&mut self, event: MemberEvent) {
        let out = match event {
            MemberEvent::Up(id) => {
                let member = self.member_for(&id, MemberState::Alive);
                // Without its metadata yet, the member is logged when it
                // arrives (below), under its name.
                if member.meta.is_some() && self.changes.note(Change::Up) {
                    tracing::info!(node = %id.node.short(), addr = %id.addr, name = member.name(), "member up");
                }
                ClusterEvent::MemberUp(member)
            }
            MemberEvent::Suspect(id) => {
                let member = self.member_for(&id, MemberState::Suspect);
                if self.changes.note(Change::Suspect) {
                    tracing::info!(node = %id.node.short(), addr = %id.addr, "member suspect");
                }
                ClusterEvent::Suspect(member)
            }
            MemberEvent::Down(id) => {
                let member = self.member_for(&id, MemberState::Down);
                // Info, not a warning: every member logs every other's
                // fall, and the summary counts what is not listed.
                if self.changes.note(Change::Down) {
                    tracing::info!(node = %id.node.short(), addr = %id.addr, "member down");
                }
                ClusterEvent::MemberDown(member)
            }
            MemberEvent::Left(id) => {
                let member = self.member_for(&id, MemberState::Left);
                if self.changes.note(Change::Left) {
                    tracing::info!(node = %id.node.short(), addr = %id.addr, "member left");
                }
                ClusterEvent::MemberLeft(member)
            }
            MemberEvent::MetadataChanged(id, meta) => {
                let state = self
                    .members
                    .get(&id.addr)
                    .map_or(MemberState::Alive, |m| m.state);
                let first = self.members.get(&id.addr).is_some_and(|m| m.meta.is_none());
                let mut member = self.member_for(&id, state);
                member.meta = Some(meta);
                if first && state == MemberState::Alive && self.changes.note(Change::Up) {
                    tracing::info!(node = %id.node.short(), addr = %id.addr, name = member.name(), "member up");
                }
                self.members.insert(id.addr, member.clone());
                ClusterEvent::MetadataChanged(member)
            }
            MemberEvent::Rejoined(id) => {
                tracing::warn!(
                    bump = id.bump,
                    health = self.machine.health_multiplier(),
                    "the cluster declared this node down; rejoined under a renewed identity"
                );
                ClusterEvent::Rejoined(self.own_member())
            }
        };
        self.table.apply(&out);
        self.bus.publish(out);
    }

    /// The `membership changes` summary, when one is due.
    fn log_changes(&mut self) {
        let Some(s) = self.changes.due(Instant::now()) else {
            return;
        };
        let (mut alive, mut suspect, mut down) = (0, 0, 0);
        for member in self.members.values() {
            match member.state {
                MemberState::Alive => alive += 1,
                MemberState::Suspect => suspect += 1,
                MemberState::Down => down += 1,
                MemberState::Left => {}
            }
        }
        let stats = self.machine.stats();
        tracing::info!(
            up = s.up,
            suspect = s.suspect,
            down = s.down,
            left = s.left,
            not_listed = s.unlisted,
            over_s = s.over.as_secs(),
            members_alive = alive,
            members_suspect = suspect,
            members_down = down,
            health = self.machine.health_multiplier(),
            rejoins = stats.rejoins,
            "membership changes"
        );
    }

    fn own_member(&self) -> Member {
        Member {
            node: self.mesh.id(),
            addr: self.mesh.advertised_addr(),
            bump: self.machine.me().bump,
            state: MemberState::Alive,
            meta: Some(Arc::new(self.machine.own_meta().clone())),
        }
    }

    fn members_list(&self) -> Vec<Member> {
        let mut list = vec![self.own_member()];
        let mut others: Vec<Member> = self.members.values().cloned().collect();
        others.sort_by(|a, b| a.name().cmp(b.name()).then(a.addr.cmp(&b.addr)));
        list.extend(others);
        list
    }

    fn set_services(&mut self, services: Vec<ServiceEntry>) -> Result<(), MetaError> {
        let mut meta = self.machine.own_meta().clone();
        meta.services = services;
        let now = self.now();
        self.machine.set_meta(meta, now)?;
        self.table.publish(&self.own_member());
        Ok(())
    }

    fn refresh_load(&mut self, ctx: &mut Context<Self>) {
        self.log_changes();
        // Members membership has forgotten (down or gone for long) go too.
        let machine = &self.machine;
        self.members
            .retain(|addr, _| machine.member(addr).is_some());
        // Each load update is an item every member receives and relays: at
        // most one every two seconds cluster-wide, whatever the cluster's
        // size, so that an idle cluster's gossip falls silent. The gossiped
        // load is a coarse hint; whoever needs it fresh asks the node.
        let members = self.machine.active_count() as u32 + 1;
        let spacing = self.load_interval.max(LOAD_GOSSIP_SPACING * members);
        if self
            .load_gossiped_at
            .is_some_and(|at| at.elapsed() < spacing)
        {
            return;
        }
        let load: Load = self.probe.load();
        if load_changed(&self.machine.own_meta().load, &load, self.total_memory) {
            let mut meta = self.machine.own_meta().clone();
            meta.load = load;
            let now = self.now();
            if let Err(e) = self.machine.set_meta(meta, now) {
                tracing::warn!(error = %e, "load not gossiped");
            }
            self.load_gossiped_at = Some(Instant::now());
            self.flush(ctx);
        }
    }
}

impl Actor for Gossip {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.add_stream(Datagrams {
            socket: Arc::clone(&self.socket),
            buf: vec![0u8; 65_536].into_boxed_slice(),
        });
        let now = self.now();
        let seeds = self.seeds.clone();
        self.machine.join(&seeds, now);
        self.table.publish(&self.own_member());
        self.flush(ctx);
        ctx.run_interval(self.load_interval, |act, ctx| act.refresh_load(ctx));
        ctx.add_stream(MeshDatagrams(self.mesh.subscribe_datagrams()));
        if self.mesh.is_relayed() {
            ctx.run_interval(VIA_REFRESH, |act, ctx| act.refresh_via(ctx));
        }
        let keys = self.machine.keys().map(KeyRing::fingerprints);
        tracing::info!(seeds = ?self.seeds, ?keys, "gossip started");
    }
}

impl StreamHandler<(Vec<u8>, SocketAddr)> for Gossip {
    fn handle(&mut self, (mut datagram, from): (Vec<u8>, SocketAddr), ctx: &mut Context<Self>) {
        if self.left {
            return;
        }
        let now = self.epoch.elapsed();
        // Counted by reason in the machine's stats; logged at debug only,
        // so a flood of bad datagrams cannot flood the log.
        match self
            .machine
            .handle_datagram(from, &mut datagram, now, unix_millis())
        {
            Ok(()) => self.flush(ctx),
            Err(e) => {
                tracing::debug!(%from, error = %e, "gossip datagram dropped");
                // foca may have queued an answer before refusing.
                self.flush(ctx);
            }
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        tracing::warn!("gossip socket closed");
    }
}

/// Subscribes to [`ClusterEvent`]s; returns the members known now and the
/// stream of later events.
#[derive(Message)]
#[rtype(result = "(Vec<Member>, ClusterEvents)")]
pub(crate) struct Subscribe;

impl Handler<Subscribe> for Gossip {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, _: Subscribe, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult((self.members_list(), self.bus.subscribe()))
    }
}

/// Every member, this node first.
#[derive(Message)]
#[rtype(result = "Vec<Member>")]
pub(crate) struct GetMembers;

impl Handler<GetMembers> for Gossip {
    type Result = MessageResult<GetMembers>;

    fn handle(&mut self, _: GetMembers, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.members_list())
    }
}

/// Adds or removes a local service instance.
#[derive(Message)]
#[rtype(result = "Result<bool, MetaError>")]
pub(crate) struct SetService {
    pub(crate) entry: ServiceEntry,
    pub(crate) present: bool,
}

impl Handler<SetService> for Gossip {
    type Result = Result<bool, MetaError>;

    fn handle(&mut self, msg: SetService, ctx: &mut Context<Self>) -> Self::Result {
        let mut services = self.machine.own_meta().services.clone();
        let held = services.contains(&msg.entry);
        if held == msg.present {
            return Ok(false);
        }
        if msg.present {
            services.push(msg.entry);
            services.sort();
        } else {
            services.retain(|e| e != &msg.entry);
        }
        self.set_services(services)?;
        self.flush(ctx);
        Ok(true)
    }
}

/// Leaves the cluster cleanly and stops gossiping.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Leave;

impl Handler<Leave> for Gossip {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Leave, ctx: &mut Context<Self>) -> Self::Result {
        if !self.left && !self.machine.has_left() {
            let now = self.now();
            self.machine.leave(now);
            self.flush(ctx);
        }
        // The machine finishes leaving on a timer; answer once it has.
        let wait = self.machine.config().leave_delay + Duration::from_millis(20);
        Box::pin(
            tokio::time::sleep(wait)
                .into_actor(self)
                .map(|_, act, ctx| {
                    act.left = true;
                    tracing::info!("left the cluster");
                    ctx.stop();
                }),
        )
    }
}

/// Gossip counters.
#[derive(Message)]
#[rtype(result = "GossipStats")]
pub(crate) struct Stats;

impl Handler<Stats> for Gossip {
    type Result = MessageResult<Stats>;

    fn handle(&mut self, _: Stats, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.machine.stats())
    }
}

/// Changes the gossip key ring.
#[derive(Message)]
#[rtype(result = "Result<Vec<String>, SealError>")]
pub(crate) enum KeyOp {
    /// Accept datagrams sealed with this key too.
    Add(GossipKey),
    /// Seal with this key from now on.
    Use(GossipKey),
    /// Stop accepting this key.
    Remove(GossipKey),
}

impl Handler<KeyOp> for Gossip {
    type Result = Result<Vec<String>, SealError>;

    fn handle(&mut self, op: KeyOp, _ctx: &mut Context<Self>) -> Self::Result {
        let Some(ring) = self.machine.keys_mut() else {
            return Ok(Vec::new());
        };
        match op {
            KeyOp::Add(key) => ring.add(key)?,
            KeyOp::Use(key) => ring.use_key(key)?,
            KeyOp::Remove(key) => {
                ring.remove(&key)?;
            }
        }
        Ok(ring.fingerprints())
    }
}

impl Handler<ListMembers> for Gossip {
    type Result = MessageResult<ListMembers>;

    fn handle(&mut self, _: ListMembers, _ctx: &mut Context<Self>) -> Self::Result {
        let members = self.members_list();
        let names: HashMap<NodeId, &str> = members.iter().map(|m| (m.node, m.name())).collect();
        let name = |id: &NodeId| {
            names
                .get(id)
                .map_or_else(|| id.short(), |n| (*n).to_owned())
        };
        // One lookup per member, not a copy of every link: a head holds
        // thousands of links (nodes, tools) and answers this often.
        let links: HashMap<NodeId, Option<NodeId>> = members
            .iter()
            .filter_map(|m| self.mesh.live_link(m.node).map(|l| (m.node, l.via())))
            .collect();
        let mut rows: Vec<MemberRow> = members
            .iter()
            .map(|member| {
                let mut row = MemberRow::from_member(member);
                let via = member
                    .meta
                    .as_ref()
                    .map(|m| m.via.clone())
                    .unwrap_or_default();
                row.reach = match links.get(&member.node) {
                    _ if member.node == self.mesh.id() => "self".to_owned(),
                    Some(None) => "direct".to_owned(),
                    Some(Some(relay)) => format!("relayed via {}", name(relay)),
                    None if via.is_empty() => "direct".to_owned(),
                    None => format!(
                        "via {}",
                        via.iter().map(&name).collect::<Vec<_>>().join(",")
                    ),
                };
                row
            })
            .collect();
        let stats = self.machine.stats();
        if let Some(own) = rows.first_mut() {
            own.counters = Some(NodeCounters {
                mesh: self.mesh.stats(),
                gossip_unsealed: stats.dropped_unsealed,
                gossip_oversized: stats.dropped_oversized,
                gossip_malformed: stats.dropped_malformed,
                gossip_replayed: stats.dropped_replayed,
                events_lost: self.bus.lost(),
                members_down: stats.members_down,
                rejoins: stats.rejoins,
                late_ticks: stats.late_ticks,
            });
        }
        MessageResult(rows)
    }
}

impl Handler<ListServices> for Gossip {
    type Result = MessageResult<ListServices>;

    fn handle(&mut self, _: ListServices, _ctx: &mut Context<Self>) -> Self::Result {
        let names: HashMap<NodeId, String> = self
            .members_list()
            .into_iter()
            .map(|m| (m.node, m.name().to_owned()))
            .collect();
        let rows = self
            .table
            .list()
            .into_iter()
            .map(|(service, instances)| ServiceRow {
                service,
                instances: instances
                    .into_iter()
                    .map(|i| InstanceRow {
                        node: i.node.to_string(),
                        name: names.get(&i.node).cloned().unwrap_or_else(|| "?".into()),
                        addr: i.addr.to_string(),
                        actor: i.actor,
                    })
                    .collect(),
            })
            .collect();
        MessageResult(rows)
    }
}

crate::remote_actor!(Gossip: ListMembers, ListServices);
