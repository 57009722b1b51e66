//! A node's host (`swarm.host`): starts registered types under local
//! supervision when the head (or an operator) asks, and fences what the
//! head placed.
//!
//! Fencing, the node's half: a head placement ([`HostSpawn::fence`] set)
//! starts only while the node holds a lease, and only if no newer grant
//! superseded it; when the lease runs out without a renewal, every
//! head-placed actor stops (the rules: [`super::fencing`]; a membership
//! verdict stops nothing). The lease keeper (`control::lease`) renews the
//! lease and hands each grant over ([`ApplyGrant`]): what to start and to
//! stop so the node runs exactly what the head's log places on it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::fencing::{Admission, Fencing};
use super::spawn::{
    ActorRow, Grant, HostLeave, HostRestart, HostSpawn, HostStop, ListActors, ListTypes, Registry,
    Running, SpawnError,
};
use super::{Supervised, SupervisedState};
use crate::directory::Directory;

#[path = "hosting/idle.rs"]
mod idle;

pub(crate) use idle::SetReporter;

/// What a node runs when asked to leave.
pub(crate) type Leave = Arc<dyn Fn() + Send + Sync>;

/// One actor a host started.
struct Started {
    type_name: String,
    epoch: u64,
    supervised: Supervised,
    /// Placed by the head: stops when the lease runs out.
    fenced: bool,
}

/// A node's host: starts registered types under local supervision.
pub struct Host {
    registry: Registry,
    directory: Directory,
    arbiter: ArbiterHandle,
    started: HashMap<String, Started>,
    /// Names an operator's spawn is starting now.
    starting: std::collections::HashSet<String>,
    /// Which head placements may start, run and must stop.
    fencing: Fencing,
    /// Names of head-placed incarnations this host stopped whose
    /// directory entries may still be on their way out: a new placement
    /// may take them over; any other exposed name is not the head's.
    retired: std::collections::HashSet<String>,
    leave: Option<Leave>,
    /// Head placements that passivate when idle.
    idle: HashMap<String, idle::Idle>,
    /// How passivations are reported to the head.
    report: Option<super::passivation::ReportPassive>,
    /// The look for idle actors, while there are some to watch (an idle
    /// node does not wake for it).
    watching: Option<SpawnHandle>,
}

impl Host {
    pub(crate) fn new(
        registry: Registry,
        directory: Directory,
        arbiter: ArbiterHandle,
        leave: Option<Leave>,
    ) -> Self {
        Self {
            registry,
            directory,
            arbiter,
            started: HashMap::new(),
            starting: std::collections::HashSet::new(),
            fencing: Fencing::default(),
            retired: std::collections::HashSet::new(),
            leave,
            idle: HashMap::new(),
            report: None,
            watching: None,
        }
    }

    /// Checks a head placement against the names this node exposes
    /// otherwise, then against fencing.
    fn admit(&mut self, request: &HostSpawn, from_grant: bool) -> Result<Admission, SpawnError> {
        // A name exposed otherwise on this node (by the node itself, or an
        // operator's spawn) is not the head's to take over.
        let operator_started = self.started.get(&request.name).is_some_and(|s| !s.fenced)
            || self.starting.contains(&request.name);
        let ours =
            self.fencing.epoch_of(&request.name).is_some() || self.retired.contains(&request.name);
        if operator_started || (!ours && self.directory.contains(&request.name)) {
            return Err(SpawnError::NameTaken {
                name: request.name.clone(),
            });
        }
        let fence = request.fence.unwrap_or(0);
        let admission = self.fencing.admit(
            &request.name,
            request.epoch,
            fence,
            from_grant,
            Instant::now(),
        )?;
        if let Admission::Start { .. } = admission {
            // An older incarnation of the name gives way.
            if let Some(old) = self.started.remove(&request.name) {
                tracing::info!(actor = %request.name, old = old.epoch, new = request.epoch, "replacing an older incarnation");
                old.supervised.stop();
            }
            self.retired.remove(&request.name);
        }
        Ok(admission)
    }

    fn start(
        &mut self,
        request: HostSpawn,
        from_grant: bool,
    ) -> ResponseActFuture<Self, Result<(), SpawnError>> {
        let Some(start) = self.registry.starter(&request.type_name) else {
            tracing::warn!(type_name = %request.type_name, name = %request.name, "spawn refused: unknown type");
            let type_name = request.type_name;
            return Box::pin(fut::ready(Err(SpawnError::UnknownType { type_name })));
        };
        let fenced = request.fence.is_some();
        if fenced {
            match self.admit(&request, from_grant) {
                Ok(Admission::Running) => return Box::pin(fut::ready(Ok(()))),
                Ok(Admission::Start { .. }) => {}
                Err(e) => {
                    tracing::warn!(actor = %request.name, epoch = request.epoch, error = %e, "head placement refused");
                    return Box::pin(fut::ready(Err(e)));
                }
            }
        } else if self.directory.contains(&request.name)
            || self.starting.contains(&request.name)
            || self.fencing.epoch_of(&request.name).is_some()
        {
            let name = request.name;
            return Box::pin(fut::ready(Err(SpawnError::NameTaken { name })));
        } else {
            self.starting.insert(request.name.clone());
        }
        let (type_name, name, epoch) = (
            request.type_name.clone(),
            request.name.clone(),
            request.epoch,
        );
        let idle_after = request.idle_after_ms.filter(|_| fenced);
        let starting = start(&self.directory, &self.arbiter, request);
        Box::pin(starting.into_actor(self).map(move |result, act, ctx| {
            if !fenced {
                act.starting.remove(&name);
            }
            let supervised = match result {
                Ok(supervised) => supervised,
                Err(e) => {
                    if fenced {
                        act.fencing.not_started(&name, epoch);
                    }
                    tracing::warn!(%type_name, %name, error = %e, "spawn refused");
                    return Err(e);
                }
            };
            // The lease may have run out, or a newer placement arrived,
            // while it started.
            if fenced && !act.fencing.started(&name, epoch, Instant::now()) {
                supervised.stop();
                if act.fencing.epoch_of(&name).is_none() {
                    act.retired.insert(name);
                }
                return Err(SpawnError::Stale);
            }
            tracing::info!(%type_name, %name, epoch, "actor started on request");
            let started = Started {
                type_name,
                epoch,
                supervised,
                fenced,
            };
            if let Some(after) = idle_after {
                act.idle.insert(name.clone(), idle::Idle::new(epoch, after));
                act.watch_idle(ctx);
            }
            if let Some(old) = act.started.insert(name, started) {
                old.supervised.stop();
            }
            Ok(())
        }))
    }

    /// Stops a head placement's incarnation `epoch` (or older).
    fn stop(&mut self, name: &str, epoch: u64) {
        if self.fencing.stop(name, epoch).is_none() {
            return;
        }
        if let Some(old) = self.started.remove(name) {
            tracing::info!(actor = %name, epoch = old.epoch, "stopped on the head's request");
            self.retired.insert(name.to_owned());
            old.supervised.stop();
        }
    }

    /// The lease ran out without a renewal: stop everything the head
    /// placed here.
    fn check_lease(&mut self) {
        let fenced = self.fencing.expire(Instant::now());
        if !fenced.is_empty() {
            tracing::warn!(
                actors = fenced.len(),
                "lease from the head ran out: stopping head-placed actors"
            );
        }
        for (name, _) in fenced {
            if let Some(old) = self.started.remove(&name) {
                old.supervised.stop();
            }
            self.retired.insert(name);
        }
    }
}

impl Actor for Host {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let host = ctx.address().downgrade();
        let wake = move || {
            if let Some(host) = host.upgrade() {
                host.do_send(idle::WatchIdle);
            }
        };
        super::passivation::on_idle_default(self.registry.node(), Box::new(wake));
    }
}

impl Handler<HostSpawn> for Host {
    type Result = ResponseActFuture<Self, Result<(), SpawnError>>;

    fn handle(&mut self, request: HostSpawn, _: &mut Context<Self>) -> Self::Result {
        self.start(request, false)
    }
}

impl Handler<HostStop> for Host {
    type Result = ();

    fn handle(&mut self, HostStop { name, epoch }: HostStop, _: &mut Context<Self>) {
        self.stop(&name, epoch);
    }
}

impl Handler<super::HostHandOver> for Host {
    type Result = ResponseActFuture<Self, Result<(), String>>;

    fn handle(&mut self, h: super::HostHandOver, _: &mut Context<Self>) -> Self::Result {
        let super::HostHandOver {
            name,
            epoch,
            within_ms,
        } = h;
        let ours = self.fencing.epoch_of(&name).is_some_and(|e| e <= epoch);
        let running = self
            .started
            .get(&name)
            .filter(|s| s.fenced && s.epoch <= epoch && ours)
            .map(|s| (s.supervised.clone(), s.epoch));
        let Some((supervised, running_epoch)) = running else {
            self.stop(&name, epoch);
            return Box::pin(fut::ready(Ok(())));
        };
        let within = Duration::from_millis(within_ms).min(super::MAX_HAND_OVER);
        let node = self.registry.node();
        tracing::info!(actor = %name, epoch, "handing over");
        Box::pin(
            async move { supervised.hand_over(within, node, running_epoch).await }
                .into_actor(self)
                .map(move |handed, act, _| {
                    if handed.is_ok() {
                        act.stop(&name, epoch);
                    }
                    handed
                }),
        )
    }
}

impl Handler<HostRestart> for Host {
    type Result = Result<u64, String>;

    fn handle(&mut self, HostRestart { name }: HostRestart, _: &mut Context<Self>) -> Self::Result {
        let started = self
            .started
            .get(&name)
            .ok_or_else(|| format!("no supervised actor named {name} on this node"))?;
        started.supervised.restart();
        tracing::info!(actor = %name, "restart requested by an operator");
        Ok(started.supervised.restarts() + 1)
    }
}

impl Handler<HostLeave> for Host {
    type Result = ();

    fn handle(&mut self, _: HostLeave, ctx: &mut Context<Self>) {
        tracing::info!("asked to leave the cluster (drained)");
        if let Some(leave) = &self.leave {
            leave();
            // The lease keeper renews until the host stops: a node that
            // leaves must not renew (and re-link to the head) any more.
            ctx.stop();
        }
    }
}

impl Handler<ListActors> for Host {
    type Result = MessageResult<ListActors>;

    fn handle(&mut self, _: ListActors, _: &mut Context<Self>) -> Self::Result {
        let node = self.registry.node();
        let mut rows: Vec<ActorRow> = self
            .started
            .iter()
            .map(|(name, s)| ActorRow {
                name: name.clone(),
                type_name: s.type_name.clone(),
                state: format!("{:?}", s.supervised.state()).to_lowercase(),
                restarts: s.supervised.restarts(),
                epoch: s.epoch,
                supervisor: format!("this node's host: {}", s.supervised.policy()),
                placed: s.fenced,
                history: s.supervised.history(),
                journal: super::passivation::position(node, name, s.epoch)
                    .map(|(seq, backend)| (backend.to_owned(), seq)),
            })
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        MessageResult(rows)
    }
}

/// The head-placed actors this node runs, the types it may start and the
/// newest fence index it processed (for a lease renewal).
#[derive(Message)]
#[rtype(result = "LeaseReport")]
pub(crate) struct LeaseRunning;

/// What a lease renewal reports of the host.
pub(crate) struct LeaseReport {
    /// Head placements running or starting.
    pub(crate) running: Vec<Running>,
    /// Registered types.
    pub(crate) types: Vec<String>,
    /// The newest fence index processed (grants and pushed placements).
    pub(crate) seen_index: u64,
}

impl Handler<LeaseRunning> for Host {
    type Result = MessageResult<LeaseRunning>;

    fn handle(&mut self, _: LeaseRunning, _: &mut Context<Self>) -> Self::Result {
        // Retired names whose entries are gone need no more remembering.
        let directory = &self.directory;
        self.retired.retain(|name| directory.contains(name));
        // Being started counts as running: the grant must not start it twice.
        let started = &self.started;
        let running: Vec<Running> = self
            .fencing
            .placed()
            .filter_map(|(name, epoch)| {
                let state = started
                    .get(name)
                    .filter(|s| s.epoch == epoch)
                    .map(|s| s.supervised.state());
                (state != Some(SupervisedState::Stopped)).then(|| Running {
                    name: name.to_owned(),
                    epoch,
                    failed: state == Some(SupervisedState::Failed),
                })
            })
            .collect();
        MessageResult(LeaseReport {
            running,
            types: self.registry.names(),
            seen_index: self.fencing.seen_index(),
        })
    }
}

/// A lease grant, valid until `until`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ApplyGrant {
    pub(crate) until: Instant,
    pub(crate) grant: Grant,
}

impl Handler<ApplyGrant> for Host {
    type Result = ();

    fn handle(&mut self, ApplyGrant { until, grant }: ApplyGrant, ctx: &mut Context<Self>) {
        self.fencing.grant(until, grant.index);
        for (name, epoch) in grant.stop {
            self.stop(&name, epoch);
        }
        for request in grant.start {
            tracing::info!(actor = %request.name, epoch = request.epoch, "starting a placement the head's grant lists");
            ctx.spawn(self.start(request, true).map(|_, _, _| ()));
        }
        let left = until.saturating_duration_since(Instant::now()) + Duration::from_millis(1);
        ctx.run_later(left, |act, _| act.check_lease());
    }
}

impl Handler<ListTypes> for Host {
    type Result = MessageResult<ListTypes>;

    fn handle(&mut self, _: ListTypes, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.registry.names())
    }
}

crate::remote_actor!(
    Host: HostSpawn,
    HostStop,
    HostRestart,
    HostLeave,
    ListActors,
    ListTypes,
    super::HostHandOver
);
