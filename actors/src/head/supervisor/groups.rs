//! Placement groups: reserving every bundle at once, or none, and releasing.

use super::*;

impl Handler<ReserveGroup> for Supervisor {
    type Result = ResponseActFuture<Self, Result<Vec<NodeId>, ControlError>>;

    fn handle(&mut self, request: ReserveGroup, _: &mut Context<Self>) -> Self::Result {
        let chosen = self.leading().and_then(|()| {
            if self.read(|m| m.state.group(&request.name).is_some()) {
                return Err(ControlError::Group(GroupRefusal::Exists {
                    group: request.name.clone(),
                }));
            }
            placement::place_group(&request.bundles, request.strategy, &self.views(None, None))
                .map_err(ControlError::from)
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
        let writes = self.writes.clone();
        Box::pin(
            async move { writes.write(command).await }
                .into_actor(self)
                .map(move |written, act, _| {
                    for (node, bundle) in &held {
                        if let Some(entry) = act.pending.get_mut(node) {
                            *entry = entry.minus(bundle);
                        }
                    }
                    match written? {
                        (_, Applied::Done) => Ok(nodes),
                        (_, Applied::Refused { reason }) => Err(ControlError::Group(reason)),
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
        let writes = self.writes.clone();
        Box::pin(async move {
            leading?;
            match writes
                .write(Command::RemoveGroup { name: name.clone() })
                .await?
            {
                (_, Applied::Done) => Ok(()),
                (_, Applied::Unknown) => Err(ControlError::NoSuchName { name }),
                (_, Applied::Refused { reason }) => Err(ControlError::Group(reason)),
                (_, other) => Err(ControlError::Refused {
                    reason: format!("unexpected answer {other:?}"),
                }),
            }
        })
    }
}
