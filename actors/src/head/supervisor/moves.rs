//! Moving named actors: off a crashed or lease-expired node (queued, a
//! bounded number in flight), after an escalation, and when a node drains.

use super::*;

/// Moves a named actor off `from` (its placement `epoch`).
#[derive(Message)]
#[rtype(result = "Result<NodeId, ControlError>")]
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

impl Handler<Relocate> for Supervisor {
    type Result = ResponseActFuture<Self, Result<NodeId, ControlError>>;

    fn handle(&mut self, r: Relocate, ctx: &mut Context<Self>) -> Self::Result {
        let record = self.read(|m| m.state.actor(&r.name).cloned());
        let Some(record) = record.filter(|rec| rec.epoch == r.epoch) else {
            self.moving.remove(&r.name);
            if r.queued {
                self.in_flight -= 1;
                ctx.notify(Pump);
            }
            return Box::pin(fut::ready(Err(ControlError::NoSuchName { name: r.name })));
        };
        let target = self.choose(&record.spec, Some(r.from));
        let writes = self.writes.clone();
        let old = self.host(r.from);
        let new = target.as_ref().ok().map(|n| self.host(*n));
        let held = target.as_ref().ok().copied();
        if let Some(node) = held {
            self.hold(node, &record.spec);
        }
        let name = r.name.clone();
        let spec = record.spec.clone();
        let events = self.mesh.directory().events().clone();
        let deliveries = Arc::clone(&self.deliveries);
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
                        let reason = format!("no node to move it to: {e}");
                        tracing::error!(actor = %name, %reason, "marking it failed");
                        let fail = Command::Fail {
                            name,
                            epoch: r.epoch,
                            reason,
                        };
                        writes.write(fail).await?;
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
                lock(&deliveries).writing(&name);
                let written = writes.write(command).await;
                let (index, epoch) = match written {
                    Ok((index, Applied::Placed { epoch })) => {
                        lock(&deliveries).committed(&name, epoch);
                        (index, epoch)
                    }
                    Err(e) => {
                        lock(&deliveries).abandoned(&name);
                        return Err(e);
                    }
                    Ok((_, other)) => {
                        lock(&deliveries).abandoned(&name);
                        return Err(ControlError::Refused {
                            reason: format!("changed while moving ({other:?})"),
                        });
                    }
                };
                tracing::info!(actor = %name, from = %r.from.short(), to = %node.short(), epoch, "moved");
                let detail = format!("{} -> {} (epoch {epoch})", r.from.short(), node.short());
                events.record("moved", name.as_str(), detail);
                let push = lock(&deliveries).deliver(&name, epoch, index);
                if let Some(new) = new.filter(|_| push) {
                    let _ = new.send(spawn_request(&name, &spec, epoch, index)).await;
                }
                Ok(node)
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                act.moving.remove(&r.name);
                if r.queued {
                    act.waiting(&r.name, result.as_ref().err());
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

impl Handler<DrainNode> for Supervisor {
    type Result = ResponseActFuture<Self, Result<usize, ControlError>>;

    fn handle(&mut self, DrainNode { node }: DrainNode, ctx: &mut Context<Self>) -> Self::Result {
        let leading = self.leading();
        let writes = self.writes.clone();
        let me = ctx.address();
        let machine = Arc::clone(&self.machine);
        let host = self.host(node);
        Box::pin(
            async move {
                leading?;
                writes.write(Command::Drain { node, on: true }).await?;
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
                        queued: false,
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
