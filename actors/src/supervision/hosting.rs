//! A node's host (`swarm.host`): starts registered types under local
//! supervision when the head (or an operator) asks, and fences what the
//! head placed.
//!
//! Fencing, the node's half: a head placement ([`HostSpawn::fence`] set)
//! starts only while the node holds a lease, and only if no newer grant
//! superseded it; when the lease runs out without a renewal, every
//! head-placed actor stops. The lease keeper (`control::lease`) renews the
//! lease and hands each grant over ([`ApplyGrant`]): what to start and to
//! stop so the node runs exactly what the head's log places on it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::spawn::{
    ActorRow, Grant, HostLeave, HostRestart, HostSpawn, HostStop, ListActors, Registry, Running,
    SpawnError,
};
use super::{Supervised, SupervisedState};
use crate::directory::Directory;

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
    /// Names being started now, with the epoch.
    starting: HashMap<String, u64>,
    /// Until when the node holds a lease.
    lease_until: Option<Instant>,
    /// The log index of the newest grant applied.
    granted_index: u64,
    /// Names of head-placed incarnations this host stopped whose
    /// directory entries may still be on their way out: a new placement
    /// may take them over; any other exposed name is not the head's.
    retired: std::collections::HashSet<String>,
    leave: Option<Leave>,
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
            starting: HashMap::new(),
            lease_until: None,
            granted_index: 0,
            retired: std::collections::HashSet::new(),
            leave,
        }
    }

    fn holds_lease(&self) -> bool {
        self.lease_until.is_some_and(|until| Instant::now() < until)
    }

    /// Checks a head placement; `Ok(true)` if it runs already.
    fn admit(&mut self, request: &HostSpawn, from_grant: bool) -> Result<bool, SpawnError> {
        let running = self
            .started
            .get(&request.name)
            .map(|s| s.epoch)
            .or_else(|| self.starting.get(&request.name).copied());
        if running == Some(request.epoch) {
            return Ok(true);
        }
        // A name exposed otherwise on this node (by the node itself, or an
        // operator's spawn) is not the head's to take over.
        let operator_started = self.started.get(&request.name).is_some_and(|s| !s.fenced);
        let ours = running.is_some() || self.retired.contains(&request.name);
        if operator_started || (!ours && self.directory.contains(&request.name)) {
            return Err(SpawnError::NameTaken {
                name: request.name.clone(),
            });
        }
        if !self.holds_lease() {
            return Err(SpawnError::NoLease);
        }
        let superseded = request.fence.is_some_and(|i| i <= self.granted_index) && !from_grant;
        if superseded || running.is_some_and(|e| e > request.epoch) {
            return Err(SpawnError::Stale);
        }
        // An older incarnation of the name gives way.
        if let Some(old) = self.started.remove(&request.name) {
            tracing::info!(actor = %request.name, old = old.epoch, new = request.epoch, "replacing an older incarnation");
            old.supervised.stop();
        }
        self.retired.remove(&request.name);
        Ok(false)
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
                Ok(true) => return Box::pin(fut::ready(Ok(()))),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(actor = %request.name, epoch = request.epoch, error = %e, "head placement refused");
                    return Box::pin(fut::ready(Err(e)));
                }
            }
        } else if self.directory.contains(&request.name)
            || self.starting.contains_key(&request.name)
        {
            let name = request.name;
            return Box::pin(fut::ready(Err(SpawnError::NameTaken { name })));
        }
        let (type_name, name, epoch) = (
            request.type_name.clone(),
            request.name.clone(),
            request.epoch,
        );
        self.starting.insert(name.clone(), epoch);
        let starting = start(&self.directory, &self.arbiter, request);
        Box::pin(starting.into_actor(self).map(move |result, act, _| {
            if act.starting.get(&name) == Some(&epoch) {
                act.starting.remove(&name);
            }
            match result {
                Ok(supervised) => {
                    // The lease may have run out, or a newer placement
                    // arrived, while it started.
                    let newer = act.started.get(&name).is_some_and(|s| s.epoch > epoch);
                    if fenced && (!act.holds_lease() || newer) {
                        supervised.stop();
                        if !newer {
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
                    if let Some(old) = act.started.insert(name, started) {
                        old.supervised.stop();
                    }
                    Ok(())
                }
                Err(e) => {
                    tracing::warn!(%type_name, %name, error = %e, "spawn refused");
                    Err(e)
                }
            }
        }))
    }

    fn stop(&mut self, name: &str, epoch: u64) {
        if self.started.get(name).is_some_and(|s| s.epoch <= epoch) {
            if let Some(old) = self.started.remove(name) {
                tracing::info!(actor = %name, epoch = old.epoch, "stopped on the head's request");
                if old.fenced {
                    self.retired.insert(name.to_owned());
                }
                old.supervised.stop();
            }
        }
    }

    /// The lease ran out: stop everything the head placed here.
    fn check_lease(&mut self) {
        if self.lease_until.is_none() || self.holds_lease() {
            return;
        }
        self.fence("lease from the head ran out");
    }

    /// Gives up the lease and stops every head-placed actor.
    fn fence(&mut self, why: &str) {
        self.lease_until = None;
        let fenced: Vec<String> = self
            .started
            .iter()
            .filter(|(_, s)| s.fenced)
            .map(|(n, _)| n.clone())
            .collect();
        if !fenced.is_empty() {
            tracing::warn!(actors = fenced.len(), "{why}: stopping head-placed actors");
        }
        for name in fenced {
            if let Some(old) = self.started.remove(&name) {
                old.supervised.stop();
                self.retired.insert(name);
            }
        }
    }
}

impl Actor for Host {
    type Context = Context<Self>;
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
            })
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        MessageResult(rows)
    }
}

/// The head-placed actors this node runs and the types it may start (for
/// a lease renewal).
#[derive(Message)]
#[rtype(result = "(Vec<Running>, Vec<String>)")]
pub(crate) struct LeaseRunning;

impl Handler<LeaseRunning> for Host {
    type Result = MessageResult<LeaseRunning>;

    fn handle(&mut self, _: LeaseRunning, _: &mut Context<Self>) -> Self::Result {
        // Retired names whose entries are gone need no more remembering.
        let directory = &self.directory;
        self.retired.retain(|name| directory.contains(name));
        let mut running: Vec<Running> = self
            .started
            .iter()
            .filter(|(_, s)| s.fenced && s.supervised.state() != SupervisedState::Stopped)
            .map(|(name, s)| Running {
                name: name.clone(),
                epoch: s.epoch,
                failed: s.supervised.state() == SupervisedState::Failed,
            })
            .collect();
        // Being started counts as running: the grant must not start it twice.
        running.extend(self.starting.iter().map(|(name, epoch)| Running {
            name: name.clone(),
            epoch: *epoch,
            failed: false,
        }));
        MessageResult((running, self.registry.names()))
    }
}

/// The cluster declared this node down: give up the lease and stop what
/// the head placed here (the next grant lists what is still placed here).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Fence;

impl Handler<Fence> for Host {
    type Result = ();

    fn handle(&mut self, _: Fence, _: &mut Context<Self>) {
        self.fence("the cluster declared this node down");
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
        if self.lease_until.is_none_or(|u| u < until) {
            self.lease_until = Some(until);
        }
        self.granted_index = self.granted_index.max(grant.index);
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

crate::remote_actor!(Host: HostSpawn, HostStop, HostRestart, HostLeave, ListActors);
