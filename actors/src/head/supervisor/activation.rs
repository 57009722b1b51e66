//! Passivation and activation: a node reports an idle actor it drained
//! ([`Passivated`]): the head records it passive (no node, no capacity,
//! not moved). The first resolve of a passive name places it again
//! ([`Activate`]: a normal placement, a new epoch, delivered to the chosen
//! node's host before the resolve answers), once however many callers ask
//! at the same time.

use tokio::sync::oneshot;

use crate::supervision::SpawnError;

use super::*;
use crate::head::wire::passivation::Passivated;

/// Callers waiting for the activation of a name (the first started it).
pub(super) type Waiting = HashMap<String, Vec<oneshot::Sender<Result<Located, ControlError>>>>;

impl Handler<Passivated> for Supervisor {
    type Result = ResponseFuture<Result<(), ControlError>>;

    fn handle(&mut self, report: Passivated, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.leading() {
            return Box::pin(async move { Err(e) });
        }
        // Checked on this leader's state first (a forged or replayed report
        // costs no log entry); the apply checks again, authoritatively.
        let record = self.read(|m| {
            m.state
                .actor(&report.name)
                .map(|r| (r.node, r.epoch, r.state == RecordState::Placed))
        });
        let refused = match record {
            None => Some(ControlError::NoSuchName {
                name: report.name.clone(),
            }),
            Some((_, epoch, _)) if epoch != report.epoch => Some(stale(&report)),
            Some((node, _, placed)) if node != report.node || !placed => Some(not_owner(&report)),
            Some(_) if self.moving.contains(&report.name) => Some(ControlError::Refused {
                reason: format!("{:?} is being moved", report.name),
            }),
            Some(_) => None,
        };
        if let Some(e) = refused {
            tracing::warn!(actor = %report.name, epoch = report.epoch, node = %report.node.short(), error = %e, "a passivation report refused");
            return Box::pin(async move { Err(e) });
        }
        let writes = self.writes.clone();
        let events = self.events.clone();
        Box::pin(async move {
            let command = Command::Passivate {
                name: report.name.clone(),
                epoch: report.epoch,
                node: report.node,
            };
            match writes.write(command).await? {
                (_, Applied::Done) => {
                    tracing::info!(actor = %report.name, epoch = report.epoch, node = %report.node.short(), "passivated");
                    let detail =
                        format!("idle on {} (epoch {})", report.node.short(), report.epoch);
                    events.record("passivated", report.name.as_str(), detail);
                    Ok(())
                }
                (_, Applied::Unknown) => Err(ControlError::NoSuchName { name: report.name }),
                (_, Applied::Stale) => Err(stale(&report)),
                (_, _) => Err(not_owner(&report)),
            }
        })
    }
}

fn stale(report: &Passivated) -> ControlError {
    ControlError::Refused {
        reason: format!(
            "{:?} is not placed under epoch {} any more",
            report.name, report.epoch
        ),
    }
}

fn not_owner(report: &Passivated) -> ControlError {
    ControlError::Forbidden {
        reason: format!(
            "{:?} epoch {} does not run on {}",
            report.name,
            report.epoch,
            report.node.short()
        ),
    }
}

/// Places a passive name again (answers where it runs; a name that is
/// not passive is answered as a resolve would).
#[derive(Message)]
#[rtype(result = "Result<Located, ControlError>")]
pub(super) struct Activate {
    pub(super) name: String,
}

impl Handler<Activate> for Supervisor {
    type Result = ResponseFuture<Result<Located, ControlError>>;

    fn handle(&mut self, Activate { name }: Activate, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.leading() {
            return Box::pin(async move { Err(e) });
        }
        let (tx, rx) = oneshot::channel();
        let waiting = self.activating.entry(name.clone()).or_default();
        waiting.push(tx);
        if waiting.len() == 1 {
            self.activate(name, ctx);
        }
        Box::pin(async move {
            // Dropped when this head stopped leading meanwhile.
            rx.await
                .unwrap_or(Err(ControlError::NotLeader { leader: None }))
        })
    }
}

impl Supervisor {
    /// Answers everyone waiting for `name`'s activation.
    fn activated(&mut self, name: &str, result: &Result<Located, ControlError>) {
        for waiter in self.activating.remove(name).unwrap_or_default() {
            let _ = waiter.send(result.clone());
        }
    }

    /// Places passive `name` on a node and starts it there.
    fn activate(&mut self, name: String, ctx: &mut Context<Self>) {
        let record = self.read(|m| m.state.actor(&name).cloned());
        let record = match record {
            None => {
                return self.activated(&name, &Err(ControlError::NoSuchName { name: name.clone() }))
            }
            Some(r) => r,
        };
        match &record.state {
            RecordState::Passive => {}
            RecordState::Placed => return self.activated(&name, &located(&record)),
            RecordState::Failed { reason } => {
                let failed = ControlError::Failed {
                    name: name.clone(),
                    reason: reason.clone(),
                };
                return self.activated(&name, &Err(failed));
            }
        }
        let node = match self.choose(&record.spec, None) {
            Ok(node) => node,
            Err(e) => {
                tracing::warn!(actor = %name, error = %e, "cannot activate it: no node takes it now");
                return self.activated(&name, &Err(e));
            }
        };
        self.hold(node, &record.spec);
        let writes = self.writes.clone();
        let host = self.host(node);
        let events = self.events.clone();
        let deliveries = Arc::clone(&self.deliveries);
        let generation = lock(&deliveries).writing(&name);
        let spec = record.spec.clone();
        let command = Command::Place {
            name: name.clone(),
            spec: spec.clone(),
            node,
            expect: Some(record.epoch),
        };
        let written = name.clone();
        let placing = async move {
            let (index, applied) = match writes.write(command).await {
                Ok(done) => done,
                Err(e) => {
                    lock(&deliveries).abandoned(&name, generation);
                    return Err(e);
                }
            };
            let epoch = match applied {
                Applied::Placed { epoch } => {
                    lock(&deliveries).committed(&name, epoch, generation);
                    epoch
                }
                other => {
                    lock(&deliveries).abandoned(&name, generation);
                    return Err(ControlError::Refused {
                        reason: format!("{name:?} changed while activating ({other:?}); try again"),
                    });
                }
            };
            tracing::info!(actor = %name, node = %node.short(), epoch, "activated");
            let detail = format!("on {} (epoch {epoch})", node.short());
            events.record("activated", name.as_str(), detail);
            let located = Located {
                node,
                epoch,
                type_name: spec.type_name.clone(),
            };
            if !lock(&deliveries).deliver(&name, epoch, index, generation) {
                return Ok(located);
            }
            match host.send(spawn_request(&name, &spec, epoch, index)).await {
                Ok(Err(e @ (SpawnError::Stale | SpawnError::NoLease))) => {
                    lock(&deliveries).refused(&name, epoch, generation);
                    tracing::info!(actor = %name, node = %node.short(), error = %e, "the push did not start it: the next grant delivers it, or a move will");
                }
                // Its state is in its journal: the placement stays (the
                // node's next renewal starts it again, or a move does).
                Ok(Err(e)) => {
                    tracing::warn!(actor = %name, node = %node.short(), error = %e, "the chosen node refused the activation");
                    return Err(ControlError::Spawn(e));
                }
                Ok(Ok(())) | Err(_) => {}
            }
            Ok(located)
        };
        let held = record.spec;
        ctx.spawn(placing.into_actor(self).map(move |result, act, _| {
            act.unhold(node, &held);
            act.deliveries().abandoned(&written, generation);
            act.activated(&written, &result);
        }));
    }
}
