//! Moving named actors: off a crashed or lease-expired node (queued, a
//! bounded number in flight), after an escalation, and when a node drains.
//! An actor with nowhere to go is recorded failed after a crash or an
//! escalation; a drain leaves it running and stops (or, forced, stops it
//! and records it failed), and says why, actor by actor.

use super::*;
use crate::head::wire::{DrainOutcome, DrainReport, DrainedActor};
use crate::placement::{Infeasible, Placement};

/// Moves a named actor off `from` (its placement `epoch`).
#[derive(Message)]
#[rtype(result = "Result<Relocated, ControlError>")]
pub(super) struct Relocate {
    pub(super) name: String,
    pub(super) epoch: u64,
    pub(super) from: NodeId,
    /// Stop the old incarnation before starting the new (drain); after a
    /// crash or lease expiry there is nothing to stop.
    pub(super) stop_first: bool,
    /// Took one of the move slots.
    pub(super) queued: bool,
}

/// What became of a move that did not fail outright.
pub(super) enum Relocated {
    /// It runs on `node` under `epoch`.
    Moved { node: NodeId, epoch: u64 },
    /// Nowhere to go, for `reason`; handled as its [`Stuck`] said.
    Stuck { reason: ControlError },
}

/// What to do with an actor that has nowhere to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stuck {
    /// Record it failed: its node crashed, its lease ran out or it
    /// escalated, and nothing runs it.
    Fail,
    /// Leave it running where it is (a drain that stops).
    Keep,
    /// Record it failed, then stop it where it runs (a forced drain).
    StopAndFail,
}

impl Handler<Relocate> for Supervisor {
    type Result = ResponseActFuture<Self, Result<Relocated, ControlError>>;

    fn handle(&mut self, r: Relocate, ctx: &mut Context<Self>) -> Self::Result {
        self.relocate(r, Stuck::Fail, ctx)
    }
}

/// Moves one actor off a draining node: stopped, then started elsewhere;
/// with nowhere to go, left running (or stopped and recorded failed when
/// `force`).
#[derive(Message)]
#[rtype(result = "Result<Relocated, ControlError>")]
struct MoveOff {
    name: String,
    epoch: u64,
    from: NodeId,
    force: bool,
}

impl Handler<MoveOff> for Supervisor {
    type Result = ResponseActFuture<Self, Result<Relocated, ControlError>>;

    fn handle(&mut self, m: MoveOff, ctx: &mut Context<Self>) -> Self::Result {
        // One decision about a name at a time: a lease move or a restart
        // under way finishes first.
        if !self.moving.insert(m.name.clone()) {
            let reason = ControlError::Refused {
                reason: "a move or restart of it is under way: drain again once it settled".into(),
            };
            return Box::pin(fut::ready(Ok(Relocated::Stuck { reason })));
        }
        let stuck = if m.force {
            Stuck::StopAndFail
        } else {
            Stuck::Keep
        };
        let r = Relocate {
            name: m.name,
            epoch: m.epoch,
            from: m.from,
            stop_first: true,
            queued: false,
        };
        self.relocate(r, stuck, ctx)
    }
}

impl Supervisor {
    /// Moves `r.name` off `r.from`; `stuck` says what happens if it has
    /// nowhere to go.
    fn relocate(
        &mut self,
        r: Relocate,
        stuck: Stuck,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Result<Relocated, ControlError>> {
        self.relocate_to(r, stuck, None, ctx)
    }

    /// As `relocate`, to `to` if given (a migration, checked by its
    /// caller) rather than where placement chooses.
    pub(super) fn relocate_to(
        &mut self,
        r: Relocate,
        stuck: Stuck,
        to: Option<NodeId>,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Result<Relocated, ControlError>> {
        let record = self.read(|m| m.state.actor(&r.name).cloned());
        let Some(record) = record.filter(|rec| rec.epoch == r.epoch) else {
            self.moving.remove(&r.name);
            if r.queued {
                self.in_flight -= 1;
                ctx.notify(Pump);
            }
            return Box::pin(fut::ready(Err(ControlError::NoSuchName { name: r.name })));
        };
        let mut target = match to {
            Some(node) => Ok(node),
            None => self.choose(&record.spec, Some(r.from)),
        };
        if stuck != Stuck::Fail {
            // A drain: the node it runs on is going away.
            if let Some(reason) = self.pinned(&record.spec, r.from, &target) {
                target = Err(PlacementError::Unschedulable(reason).into());
            }
        }
        let writes = self.writes.clone();
        let old = self.host(r.from);
        let new = target.as_ref().ok().map(|n| self.host(*n));
        let held = target.as_ref().ok().copied();
        if let Some(node) = held {
            self.hold(node, &record.spec);
        }
        let name = r.name.clone();
        let spec = record.spec.clone();
        let events = self.events.clone();
        let deliveries = Arc::clone(&self.deliveries);
        let from = self.node_name(r.from);
        Box::pin(
            async move {
                let node = match target {
                    Ok(node) => node,
                    // Off a crashed or lease-expired node: the placement
                    // stays, acknowledged, until a node can take it (the
                    // tick asks again); nothing is lost to a moment without
                    // capacity (a partition, a restart of every worker).
                    Err(e) if r.queued => return Err(e),
                    Err(e) => {
                        if stuck == Stuck::Keep {
                            tracing::warn!(actor = %name, node = %from, reason = %e, "cannot move it off the draining node: it keeps running there");
                            let detail = format!("cannot move off {from}, keeps running there: {e}");
                            events.record("drain refused", name.as_str(), detail);
                            return Ok(Relocated::Stuck { reason: e });
                        }
                        let reason = if stuck == Stuck::StopAndFail {
                            format!("stopped by a forced drain of {from}, nowhere to move it: {e}")
                        } else {
                            format!("no node to move it to: {e}")
                        };
                        tracing::error!(actor = %name, %reason, "marking it failed");
                        let fail = Command::Fail {
                            name: name.clone(),
                            epoch: r.epoch,
                            reason: reason.clone(),
                        };
                        writes.write(fail).await?;
                        events.record("failed", name.as_str(), reason);
                        if stuck == Stuck::StopAndFail {
                            let stop = HostStop {
                                name,
                                epoch: r.epoch,
                            };
                            let _ = old.send(stop).await;
                        }
                        return Ok(Relocated::Stuck { reason: e });
                    }
                };
                if r.stop_first {
                    // A drain or a migration hands the actor over (its
                    // mailbox handled, a final snapshot); an escalated one
                    // runs no more: a plain stop.
                    let stopped = if stuck == Stuck::Fail {
                        let stop = HostStop {
                            name: name.clone(),
                            epoch: r.epoch,
                        };
                        old.send(stop).await.map_err(|e| e.to_string())
                    } else {
                        super::migrate::hand_over(&old, &name, r.epoch).await
                    };
                    // A drain moves an actor only once its node confirmed
                    // the stop: a node cut off from this head keeps running
                    // it until its lease runs out, and two incarnations
                    // must never run at once. (An escalated actor runs no
                    // more: its move goes on.)
                    if let (Err(e), true) = (stopped, stuck != Stuck::Fail) {
                        let reason = ControlError::Refused {
                            reason: format!("its node did not confirm the stop ({e}): not moved; it runs there still, or (if it stopped and the answer was lost) its node's next renewal restarts it there under a new epoch"),
                        };
                        tracing::warn!(actor = %name, node = %from, error = %e, "a drain could not stop it: not moved");
                        let detail = format!("cannot move off {from}: the stop was not confirmed ({e})");
                        events.record("drain refused", name.as_str(), detail);
                        return Ok(Relocated::Stuck { reason });
                    }
                }
                let command = Command::Place {
                    name: name.clone(),
                    spec: spec.clone(),
                    node,
                    expect: Some(r.epoch),
                };
                let generation = lock(&deliveries).writing(&name);
                let written = writes.write(command).await;
                let (index, epoch) = match written {
                    Ok((index, Applied::Placed { epoch })) => {
                        lock(&deliveries).committed(&name, epoch, generation);
                        (index, epoch)
                    }
                    Err(e) => {
                        lock(&deliveries).abandoned(&name, generation);
                        return Err(e);
                    }
                    Ok((_, other)) => {
                        lock(&deliveries).abandoned(&name, generation);
                        return Err(ControlError::Refused {
                            reason: format!("changed while moving ({other:?})"),
                        });
                    }
                };
                tracing::info!(actor = %name, from = %r.from.short(), to = %node.short(), epoch, "moved");
                let detail = format!("{} -> {} (epoch {epoch})", r.from.short(), node.short());
                events.record("moved", name.as_str(), detail);
                let push = lock(&deliveries).deliver(&name, epoch, index, generation);
                if let Some(new) = new.filter(|_| push) {
                    let answer = new.send(spawn_request(&name, &spec, epoch, index)).await;
                    if matches!(answer, Ok(Err(crate::supervision::SpawnError::Stale | crate::supervision::SpawnError::NoLease))) {
                        lock(&deliveries).refused(&name, epoch, generation);
                    }
                }
                Ok(Relocated::Moved { node, epoch })
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                act.moving.remove(&r.name);
                if r.queued {
                    act.waiting(&r.name, result.as_ref().err());
                    act.schedule(ctx);
                }
                if let Some(node) = held {
                    act.unhold(node, &record.spec);
                }
                if r.queued {
                    act.in_flight -= 1;
                    act.pump(ctx);
                }
                result
            }),
        )
    }

    /// Why `spec` cannot leave `from` whatever is free elsewhere: a hard
    /// placement on `from`, or a placement-group bundle there (`target`
    /// is then `from` itself). `None` if neither holds.
    fn pinned(
        &self,
        spec: &ActorSpec,
        from: NodeId,
        target: &Result<NodeId, ControlError>,
    ) -> Option<Infeasible> {
        if let Placement::Node { node, hard: true } = &spec.placement {
            if *node == from {
                return Some(Infeasible::Pinned {
                    node: from,
                    name: self.node_name(from),
                });
            }
        }
        match (&spec.bundle, target) {
            (Some((group, index)), Ok(node)) if *node == from => Some(Infeasible::BundlePinned {
                group: group.clone(),
                index: *index,
                node: from,
                name: self.node_name(from),
            }),
            _ => None,
        }
    }

    /// A node's certificate name as membership knows it (its short id
    /// before its metadata arrives).
    fn node_name(&self, node: NodeId) -> String {
        self.members
            .get(&node)
            .filter(|m| m.meta.is_some())
            .map_or_else(|| node.short(), |m| m.name().to_owned())
    }
}

/// Starts queued moves (a slot freed).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Pump;

impl Handler<Pump> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: Pump, ctx: &mut Context<Self>) {
        self.pump(ctx);
    }
}

/// An actor failed past its restart policy on `from`.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Escalated {
    pub(super) name: String,
    pub(super) epoch: u64,
    pub(super) from: NodeId,
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
                            queued: false,
                        })
                        .await;
                }
                .into_actor(self),
            );
        }
        let writes = self.writes.clone();
        let name = e.name.clone();
        Box::pin(
            async move {
                let fail = Command::Fail {
                    name: e.name,
                    epoch: e.epoch,
                    reason: "failed past its restart policy".to_owned(),
                };
                let _ = writes.write(fail).await;
            }
            .into_actor(self)
            .map(move |(), act, _| {
                act.moving.remove(&name);
            }),
        )
    }
}

/// The drain: marks the node (no new placements), moves its actors one by
/// one, then asks it to leave if nothing of the head's runs there any
/// more (or the drain is forced); else clears the mark. Records the
/// outcome among the leader's events and answers it actor by actor.
impl Handler<DrainNode> for Supervisor {
    type Result = ResponseActFuture<Self, Result<DrainReport, ControlError>>;

    fn handle(&mut self, drain: DrainNode, ctx: &mut Context<Self>) -> Self::Result {
        let DrainNode { node, force } = drain;
        // A drained node leaves and its process ends: a head would take its
        // Raft replica with it, and the group one voter closer to losing
        // its quorum.
        let head = self
            .certified
            .get(&node)
            .is_some_and(|roles| roles.iter().any(|r| r == "head"));
        if head && !force {
            return Box::pin(fut::ready(Err(ControlError::IsHead {
                node,
                name: self.node_name(node),
            })));
        }
        let leading = self.leading();
        let writes = self.writes.clone();
        let me = ctx.address();
        let machine = Arc::clone(&self.machine);
        let host = self.host(node);
        let events = self.events.clone();
        let node_name = self.node_name(node);
        Box::pin(
            async move {
                leading?;
                writes.write(Command::Drain { node, on: true }).await?;
                let placed: Vec<(String, u64, String)> = machine
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .state
                    .placed_on(node)
                    .map(|(n, r)| (n.clone(), r.epoch, r.spec.type_name.clone()))
                    .collect();
                let mut actors = Vec::with_capacity(placed.len());
                for (name, epoch, type_name) in placed {
                    let moved = me
                        .send(MoveOff {
                            name: name.clone(),
                            epoch,
                            from: node,
                            force,
                        })
                        .await;
                    let outcome = match moved {
                        Ok(Ok(Relocated::Moved { node, epoch })) => {
                            DrainOutcome::Moved { node, epoch }
                        }
                        Ok(Ok(Relocated::Stuck { reason })) if force => {
                            DrainOutcome::Stopped { reason }
                        }
                        Ok(Ok(Relocated::Stuck { reason })) | Ok(Err(reason)) => {
                            if matches!(reason, ControlError::NoSuchName { .. }) {
                                DrainOutcome::Gone
                            } else {
                                DrainOutcome::Stayed { reason }
                            }
                        }
                        Err(e) => DrainOutcome::Stayed {
                            reason: ControlError::Refused {
                                reason: format!("the supervisor did not answer: {e}"),
                            },
                        },
                    };
                    actors.push(DrainedActor {
                        name,
                        type_name,
                        outcome,
                    });
                }
                let stays = actors
                    .iter()
                    .any(|a| matches!(a.outcome, DrainOutcome::Stayed { .. }));
                let report = DrainReport::new(node, !stays, actors);
                if report.left {
                    // Nothing of the head's runs there now: let it go.
                    let _ = host.send(HostLeave).await;
                } else if let Err(e) = writes.write(Command::Drain { node, on: false }).await {
                    tracing::warn!(node = %node_name, error = %e, "the drain stopped, but the node's drain mark stays: it takes no new placements");
                }
                let summary = report.summary(|n| if n == node { node_name.clone() } else { n.short() });
                if report.left {
                    tracing::info!(node = %node_name, "{summary}");
                } else {
                    tracing::warn!(node = %node_name, "{summary}");
                }
                events.record("drain", node_name.as_str(), summary);
                Ok(report)
            }
            .into_actor(self),
        )
    }
}
