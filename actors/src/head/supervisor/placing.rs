//! Placing a named actor: choose a node, commit the placement (a new
//! epoch), deliver it to the node's host once; a name that exists answers
//! its record once a quorum confirms this head still leads.

use super::*;
use crate::supervision::SpawnError;

impl Handler<PlaceActor> for Supervisor {
    type Result = ResponseActFuture<Self, Result<Located, ControlError>>;

    fn handle(&mut self, request: PlaceActor, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.leading() {
            return Box::pin(fut::ready(Err(e)));
        }
        if self.read(|m| m.state.actor(&request.name).is_some()) {
            // Answered from the state machine: only once a quorum confirms
            // this head still leads (it may have been deposed unawares).
            let answer = self.confirmed_read(ctx, move |m| {
                let Some(existing) = m.state.actor(&request.name) else {
                    return Err(ControlError::Refused {
                        reason: format!("{:?} was stopped meanwhile; try again", request.name),
                    });
                };
                let answer = exists(&request, existing);
                if let Err(e) = &answer {
                    tracing::info!(actor = %request.name, error = %e, "spawn refused");
                }
                answer
            });
            return Box::pin(fut::wrap_future(answer));
        }
        let node = match self.choose(&request.spec, None) {
            Ok(node) => node,
            Err(e) => {
                // A refusal is an answer from the state too: only once a
                // quorum confirms this head still leads (a deposed leader
                // cut off from the others sees no node renewing with it,
                // and would answer "no capacity" for the whole cluster).
                let answer = self.confirmed_read(ctx, move |_| {
                    tracing::warn!(actor = %request.name, type_name = %request.spec.type_name, error = %e, "spawn refused");
                    Err(e)
                });
                return Box::pin(fut::wrap_future(answer));
            }
        };
        self.hold(node, &request.spec);
        let writes = self.writes.clone();
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
        let events = self.events.clone();
        let deliveries = Arc::clone(&self.deliveries);
        let generation = lock(&deliveries).writing(&name);
        let written = name.clone();
        Box::pin(
            async move {
                let (index, applied) = writes.write(command).await?;
                let epoch = match applied {
                    Applied::Placed { epoch } => {
                        lock(&deliveries).committed(&name, epoch, generation);
                        epoch
                    }
                    Applied::Exists(existing) => {
                        let request = PlaceActor {
                            name,
                            spec,
                            get_if_exists,
                        };
                        return exists(&request, &existing);
                    }
                    Applied::Refused { reason } => return Err(ControlError::Group(reason)),
                    other => {
                        return Err(ControlError::Refused {
                            reason: format!("unexpected answer {other:?}"),
                        })
                    }
                };
                let detail = format!("on {} (epoch {epoch})", node.short());
                events.record("placed", name.as_str(), detail);
                let push = lock(&deliveries).deliver(&name, epoch, index, generation);
                if !push {
                    // A grant delivered it already (epochs go out once).
                    return Ok(Located {
                        node,
                        epoch,
                        type_name: spec.type_name,
                    });
                }
                match host.send(spawn_request(&name, &spec, epoch, index)).await {
                    // Not the actor's fault: a grant overtook the push, or
                    // the node's lease lapsed a moment. The placement is
                    // acknowledged and stays: the node's next renewal
                    // restarts it under a new epoch, or its lease moves it.
                    Ok(Err(e @ (SpawnError::Stale | SpawnError::NoLease))) => {
                        lock(&deliveries).refused(&name, epoch, generation);
                        tracing::info!(actor = %name, node = %node.short(), error = %e, "the push did not start it: the next grant delivers it, or a move will");
                        Ok(Located {
                            node,
                            epoch,
                            type_name: spec.type_name,
                        })
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(actor = %name, node = %node.short(), error = %e, "the chosen node refused the actor: forgetting it");
                        let _ = writes.write(Command::Remove {
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
                act.deliveries().abandoned(&written, generation);
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
        // Placed again by the next call (a resolve activates it).
        RecordState::Placed | RecordState::Passive => located(existing),
        RecordState::Failed { reason } => Err(ControlError::Failed {
            name: request.name.clone(),
            reason: reason.clone(),
        }),
    }
}
