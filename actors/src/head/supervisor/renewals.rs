//! Lease renewals (grants after a quorum confirms the leader, with what the
//! node must start and stop), and confirming a new leadership.

use super::*;

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
                act.certify(&renew);
                Ok(act.grant(&renew, ctx))
            }),
        )
    }
}

impl Supervisor {
    /// Keeps `renew`'s certificate roles, and refuses (counts, logs once)
    /// gossiped roles that disagree with them.
    fn certify(&mut self, renew: &Renew) {
        let gossiped = self
            .members
            .get(&renew.node)
            .and_then(|m| m.meta.as_ref())
            .map(|meta| {
                let mut roles = meta.roles.clone();
                roles.sort();
                roles
            });
        let mut certified = renew.roles.clone();
        certified.sort();
        if let Some(gossiped) = gossiped {
            if gossiped != certified && self.certified.get(&renew.node) != Some(&renew.roles) {
                self.mesh.count_false_claim();
                tracing::warn!(node = %renew.node.short(), ?gossiped, ?certified, "a member gossips roles its certificate does not grant: placement uses the certificate's");
            }
        }
        self.certified.insert(renew.node, renew.roles.clone());
    }

    /// What `renew.node` must start and stop; escalations it reports move.
    fn grant(&mut self, renew: &Renew, ctx: &mut Context<Self>) -> Grant {
        let reported: HashMap<&str, &Running> =
            renew.running.iter().map(|r| (r.name.as_str(), r)).collect();
        let mut escalated = Vec::new();
        let (index, start, stop, revoked) = self.read(|m| {
            let index = m.last_applied.map_or(0, |l| l.index);
            let revoked: Vec<u64> = m
                .state
                .revoked()
                .iter()
                .skip(renew.revoked_known)
                .map(|(serial, _)| *serial)
                .collect();
            let mut start = Vec::new();
            for (name, record) in m.state.placed_on(renew.node) {
                match reported.get(name.as_str()) {
                    Some(r) if r.epoch == record.epoch => {
                        if r.failed {
                            escalated.push((name.clone(), record.epoch));
                        }
                    }
                    _ => start.push(spawn_request(name, &record.spec, record.epoch, index)),
                }
            }
            // What it runs that the log does not place there under that epoch.
            let stop: Vec<(String, u64)> = renew
                .running
                .iter()
                .filter(|r| {
                    m.state.actor(&r.name).is_none_or(|rec| {
                        rec.node != renew.node
                            || rec.epoch != r.epoch
                            || rec.state != RecordState::Placed
                    })
                })
                .map(|r| (r.name.clone(), r.epoch))
                .collect();
            (index, start, stop, revoked)
        });
        for (name, epoch) in escalated {
            if self.moving.insert(name.clone()) {
                tracing::warn!(actor = %name, node = %renew.node.short(), "escalated past its restart policy");
                ctx.notify(Escalated {
                    name,
                    epoch,
                    from: renew.node,
                });
            }
        }
        Grant {
            lease_ms: u64::try_from(self.leases.lease().as_millis()).unwrap_or(u64::MAX),
            index,
            start,
            stop,
            revoked,
            capability_key: self.group_key().map(|k| k.public()),
        }
    }
}

/// A write of this leader committed (so it applied everything committed
/// before), or did not.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Confirmed(pub(super) bool);

impl Handler<Confirmed> for Supervisor {
    type Result = ();

    fn handle(&mut self, Confirmed(confirmed): Confirmed, _: &mut Context<Self>) {
        self.confirming = false;
        if confirmed && caught_up_leader(&self.raft.metrics().borrow()) {
            tracing::info!(head = %self.id.short(), "head leader: placement supervisor active");
            self.leases.became_leader(Instant::now());
        }
    }
}
