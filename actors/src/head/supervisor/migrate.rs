//! Live migration (`swarm.MigrateActor`): an admin moves a named actor to a
//! node it names. The move is a drain's (`moves`), with a required target:
//! the old incarnation is handed over (`HostHandOver`: its mailbox
//! handled, a final snapshot if durable, then stopped, confirmed), then
//! the placement moves under a new epoch and the new node starts it. A
//! stop the old node does not confirm refuses the move: the actor keeps
//! running there, or, if the node stopped it and only the answer was lost,
//! the node's next renewal has it restarted there under a new epoch
//! (`reconcile`: a delivered placement not reported running).

use super::moves::{Relocated, Stuck};
use super::*;
use crate::error::AskError;
use crate::head::wire::MigrateActor;
use crate::placement::Placement;
use crate::supervision::HostHandOver;

/// How long an old incarnation may take to handle what is in its mailbox
/// (and save its final snapshot) before the hand-over gives up.
const HAND_OVER_WITHIN: Duration = Duration::from_secs(5);

/// Hands `name`'s incarnation `epoch` over on `old`'s node; `Err` says why
/// it was not confirmed (the actor then keeps running there).
pub(super) async fn hand_over(
    old: &RemoteAddr<Host>,
    name: &str,
    epoch: u64,
) -> Result<(), String> {
    let request = HostHandOver {
        name: name.to_owned(),
        epoch,
        within_ms: u64::try_from(HAND_OVER_WITHIN.as_millis()).unwrap_or(u64::MAX),
    };
    let answer = old
        .send_timeout(request, HAND_OVER_WITHIN + Duration::from_secs(2))
        .await;
    match answer {
        Ok(handed) => handed,
        // A node of an older version: a plain stop, confirmed.
        Err(AskError::UnknownMessage { .. }) => {
            let stop = HostStop {
                name: name.to_owned(),
                epoch,
            };
            old.send(stop).await.map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

impl Handler<MigrateActor> for Supervisor {
    type Result = ResponseActFuture<Self, Result<(NodeId, u64), ControlError>>;

    fn handle(&mut self, m: MigrateActor, ctx: &mut Context<Self>) -> Self::Result {
        let checked = self.leading().and_then(|()| self.migration(&m));
        let (from, epoch) = match checked {
            Ok(found) => found,
            Err(e) => {
                tracing::info!(actor = %m.name, to = %m.node.short(), error = %e, "migration refused");
                return Box::pin(fut::ready(Err(e)));
            }
        };
        // One decision about a name at a time.
        if !self.moving.insert(m.name.clone()) {
            return Box::pin(fut::ready(Err(ControlError::Refused {
                reason: format!(
                    "a move or restart of {:?} is under way: migrate it once it settled",
                    m.name
                ),
            })));
        }
        let events = self.events.clone();
        let detail = format!("{} -> {} asked", from.short(), m.node.short());
        events.record("migrate", m.name.as_str(), detail);
        let r = Relocate {
            name: m.name,
            epoch,
            from,
            stop_first: true,
            queued: false,
        };
        Box::pin(self.relocate_to(r, Stuck::Keep, Some(m.node), ctx).map(
            |moved, _, _| match moved {
                Ok(Relocated::Moved { node, epoch }) => Ok((node, epoch)),
                Ok(Relocated::Stuck { reason }) | Err(reason) => Err(reason),
            },
        ))
    }
}

impl Supervisor {
    /// Where `m.name` runs now and its epoch, if it may move to `m.node`;
    /// else why not.
    fn migration(&self, m: &MigrateActor) -> Result<(NodeId, u64), ControlError> {
        let refused = |reason: String| Err(ControlError::Refused { reason });
        let to = m.node;
        let Some(record) = self.read(|s| s.state.actor(&m.name).cloned()) else {
            return Err(ControlError::NoSuchName {
                name: m.name.clone(),
            });
        };
        if let RecordState::Failed { reason } = &record.state {
            return Err(ControlError::Failed {
                name: m.name.clone(),
                reason: reason.clone(),
            });
        }
        let target = self.node_label(to);
        if record.node == to {
            return refused(format!("{:?} runs on {target} already", m.name));
        }
        if let Some((group, index)) = &record.spec.bundle {
            return refused(format!(
                "{:?} runs in bundle {index} of the placement group {group:?}, on that bundle's node",
                m.name
            ));
        }
        if let Placement::Node { node, hard: true } = &record.spec.placement {
            return refused(format!(
                "{:?} is placed on {} only (a hard placement)",
                m.name,
                self.node_label(*node)
            ));
        }
        let Some(member) = self.members.get(&to) else {
            return refused(format!("no member {to} in the cluster"));
        };
        if member.state == MemberState::Down || member.state == MemberState::Left {
            return refused(format!("{target} is {:?}", member.state).to_lowercase());
        }
        if self.read(|s| s.state.is_draining(to)) || member.meta.as_ref().is_some_and(|m| m.leaving)
        {
            return refused(format!("{target} is draining or leaving"));
        }
        if !self.leases.holds(to, Instant::now()) {
            return refused(format!(
                "{target} holds no lease from the head group (not renewing)"
            ));
        }
        let views: Vec<NodeView> = self
            .views(None, Some(&record.spec.type_name))
            .into_iter()
            .filter(|v| v.node == to)
            .collect();
        if views.is_empty() {
            return refused(format!(
                "{target} cannot start a {} (not registered there)",
                record.spec.type_name
            ));
        }
        let only = Placement::Node {
            node: to,
            hard: true,
        };
        placement::place(&record.spec.resources, &only, &views)?;
        Ok((record.node, record.epoch))
    }

    /// A node as operators know it: its name and short id.
    fn node_label(&self, node: NodeId) -> String {
        match self.members.get(&node).filter(|m| m.meta.is_some()) {
            Some(m) => format!("{} ({})", m.name(), node.short()),
            None => node.short(),
        }
    }
}
