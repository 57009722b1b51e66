//! Lease renewals: the leadership confirmed once for every renewal that
//! waits for it (the reads' quorum round, or their read lease), the node's
//! report rebuilt from its delta, then a grant with what the node must
//! start and stop; and confirming a new leadership.

use super::reads::confirmed;
use super::*;
use crate::head::reconcile;
use crate::head::reported::Refusal;
use crate::supervision::Running;

/// A renewal is granted only once this head's leadership is confirmed
/// after the renewal arrived: by a quorum round begun after it (one round
/// serves every renewal and read waiting), or within the read lease of
/// such a round, during which no other leader can exist
/// (`super::reads`). The grant is recorded when it goes out, so the
/// fencing bound of `crate::head::leases` counts from a moment at which
/// this head still led.
impl Handler<Renew> for Supervisor {
    type Result = ResponseActFuture<Self, Result<Grant, ControlError>>;

    fn handle(&mut self, renew: Renew, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.leading() {
            return Box::pin(fut::ready(Err(e)));
        }
        // Within the read lease the leadership is confirmed now: the grant
        // is made in this handler (no oneshot, no actor future per
        // renewal, the common case under load).
        if self.leased() {
            return Box::pin(fut::ready(self.renewed(&renew, ctx)));
        }
        let confirmation = self.confirm(ctx);
        Box::pin(
            confirmed(confirmation)
                .into_actor(self)
                .map(move |confirmed, act, ctx| {
                    confirmed?;
                    act.leading()?;
                    act.renewed(&renew, ctx)
                }),
        )
    }
}

impl Supervisor {
    /// The grant for `renew`, once this head's leadership is confirmed
    /// after it arrived.
    fn renewed(&mut self, renew: &Renew, ctx: &mut Context<Self>) -> Result<Grant, ControlError> {
        // `renew.node` is the link's authenticated peer (`StampCaller`): a
        // node reports only for itself.
        let running = match self.reported.take(renew.node, &renew.report) {
            Ok(running) => Some(running),
            Err(Refusal::Resync) => None,
            Err(Refusal::Stale) => return Err(ControlError::StaleRenewal),
            Err(Refusal::TooMany { limit }) => {
                tracing::warn!(node = %renew.node.short(), limit, "a renewal reported too many running actors: refused");
                return Err(ControlError::TooManyRunning { limit });
            }
        };
        self.leases.granted(renew.node, Instant::now());
        if renew.report.base.is_none() {
            self.types.insert(renew.node, renew.report.types.clone());
        }
        self.certify(renew);
        Ok(match running {
            Some(running) => self.grant(renew, &running, ctx),
            None => self.lease_only(renew),
        })
    }

    /// Keeps `renew`'s certificate roles, and refuses (counts, logs once)
    /// gossiped roles that disagree with them.
    fn certify(&mut self, renew: &Renew) {
        if self.certified.get(&renew.node) == Some(&renew.roles) {
            // Kept already, and checked against gossip when it changed.
            return;
        }
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

    /// What `renew.node` must start and stop; escalations it reports move,
    /// and placements it lost restart under a new epoch.
    fn grant(&mut self, renew: &Renew, running: &[Running], ctx: &mut Context<Self>) -> Grant {
        // What runs where and as the log places it needs no more restarting
        // (only names waiting for a restart are looked up: usually none).
        let restarted = &self.restarted;
        let placed_here: Vec<String> = self.read(|m| {
            running
                .iter()
                .filter(|r| {
                    restarted.contains_key(&r.name)
                        && m.state
                            .actor(&r.name)
                            .is_some_and(|rec| rec.node == renew.node && rec.epoch == r.epoch)
                })
                .map(|r| r.name.clone())
                .collect()
        });
        for name in placed_here {
            self.restarted.remove(&name);
        }
        let now = Instant::now();
        let moving = &self.moving;
        let restarted = &self.restarted;
        let busy = |name: &str| {
            moving.contains(name) || restarted.get(name).is_some_and(|(_, next)| now < *next)
        };
        let mut deliveries = lock(&self.deliveries);
        let (index, plan, start, revoked) = self.read(|m| {
            let index = m.last_applied.map_or(0, |l| l.index);
            let revoked = revoked_since(&m.state, renew.revoked_known);
            let plan = reconcile::plan(
                &m.state,
                renew.node,
                running,
                renew.seen_index,
                index,
                &mut deliveries,
                busy,
            );
            let start: Vec<HostSpawn> = plan
                .start
                .iter()
                .filter_map(|(name, epoch)| {
                    let record = m.state.actor(name)?;
                    Some(spawn_request(name, &record.spec, *epoch, index))
                })
                .collect();
            (index, plan, start, revoked)
        });
        drop(deliveries);
        for (name, epoch) in plan.escalated {
            if self.moving.insert(name.clone()) {
                tracing::warn!(actor = %name, node = %renew.node.short(), "escalated past its restart policy");
                ctx.notify(Escalated {
                    name,
                    epoch,
                    from: renew.node,
                });
            }
        }
        for (name, epoch) in plan.restart {
            // A node that keeps refusing a placement (its own actor holds
            // the name) costs a write per renewal at most once a backoff.
            let (count, _) = self.restarted.get(&name).copied().unwrap_or((0, now));
            let wait = RESTART_BACKOFF
                .0
                .saturating_mul(1 << count.min(5))
                .min(RESTART_BACKOFF.1);
            self.restarted.insert(name.clone(), (count + 1, now + wait));
            if !self.moving.insert(name.clone()) {
                continue;
            }
            if count + 1 >= RESTARTS_BEFORE_MOVING {
                // Its node keeps losing or refusing it: another node may not.
                tracing::warn!(actor = %name, node = %renew.node.short(), epoch, restarts = count, "its node keeps losing or refusing it: moving it to another node");
                self.queued.push_back(Relocate {
                    name,
                    epoch,
                    from: renew.node,
                    stop_first: false,
                    queued: true,
                });
                self.pump(ctx);
                continue;
            }
            tracing::warn!(actor = %name, node = %renew.node.short(), epoch, "its node renewed without running it (the node restarted, rejoined or refused it): restarting it under a new epoch");
            ctx.notify(Reincarnate {
                name,
                epoch,
                node: renew.node,
            });
        }
        Grant {
            lease_ms: u64::try_from(self.leases.lease().as_millis()).unwrap_or(u64::MAX),
            index,
            start,
            stop: plan.stop,
            revoked,
            capability_key: self.group_public(),
            resync: false,
        }
    }

    /// The lease alone, for a renewal whose delta landed on a report this
    /// leader does not hold: nothing planned, the full list asked for
    /// (and the revocations the node lacks, the capability key).
    fn lease_only(&self, renew: &Renew) -> Grant {
        let (index, revoked) = self.read(|m| {
            let revoked = revoked_since(&m.state, renew.revoked_known);
            (m.last_applied.map_or(0, |l| l.index), revoked)
        });
        Grant {
            lease_ms: u64::try_from(self.leases.lease().as_millis()).unwrap_or(u64::MAX),
            index,
            start: Vec::new(),
            stop: Vec::new(),
            revoked,
            capability_key: self.group_public(),
            resync: true,
        }
    }
}

/// Restarts of one name in a row wait from the first to the second
/// duration, doubling, until it is reported running.
const RESTART_BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(15));

/// Restarts on one node in a row (never reported running) after which the
/// next one goes to another node.
const RESTARTS_BEFORE_MOVING: u32 = 3;

/// Starts `name` again on `node`, which lost its incarnation `epoch`,
/// under a new epoch committed for that start.
#[derive(Message)]
#[rtype(result = "()")]
struct Reincarnate {
    name: String,
    epoch: u64,
    node: NodeId,
}

impl Handler<Reincarnate> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, r: Reincarnate, _: &mut Context<Self>) -> Self::Result {
        let spec = self.read(|m| {
            m.state
                .actor(&r.name)
                .filter(|rec| rec.epoch == r.epoch && rec.node == r.node)
                .map(|rec| rec.spec.clone())
        });
        let name = r.name.clone();
        let Some(spec) = spec else {
            self.moving.remove(&name);
            return Box::pin(fut::ready(()));
        };
        let writes = self.writes.clone();
        let deliveries = Arc::clone(&self.deliveries);
        let host = self.host(r.node);
        let events = self.events.clone();
        let generation = lock(&deliveries).writing(&r.name);
        Box::pin(
            async move {
                let command = Command::Place {
                    name: r.name.clone(),
                    spec: spec.clone(),
                    node: r.node,
                    expect: Some(r.epoch),
                };
                let Ok((index, Applied::Placed { epoch })) = writes.write(command).await else {
                    return;
                };
                lock(&deliveries).committed(&r.name, epoch, generation);
                let detail = format!(
                    "on {}: epoch {} -> {epoch} (its node no longer ran it)",
                    r.node.short(),
                    r.epoch
                );
                events.record("restarted", r.name.as_str(), detail);
                if lock(&deliveries).deliver(&r.name, epoch, index, generation) {
                    let answer = host.send(spawn_request(&r.name, &spec, epoch, index)).await;
                    if matches!(
                        answer,
                        Ok(Err(crate::supervision::SpawnError::Stale
                            | crate::supervision::SpawnError::NoLease))
                    ) {
                        lock(&deliveries).refused(&r.name, epoch, generation);
                    }
                }
            }
            .into_actor(self)
            .map(move |(), act, _| {
                act.moving.remove(&name);
                act.deliveries().abandoned(&name, generation);
            }),
        )
    }
}

/// A write of this leader committed (so it applied everything committed
/// before), or did not.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Confirmed(pub(super) bool);

impl Handler<Confirmed> for Supervisor {
    type Result = ();

    fn handle(&mut self, Confirmed(confirmed): Confirmed, ctx: &mut Context<Self>) {
        self.confirming = false;
        if confirmed && caught_up_leader(&self.raft.metrics().borrow()) {
            tracing::info!(head = %self.id.short(), "head leader: placement supervisor active");
            self.leases.became_leader(Instant::now());
            self.reported.clear();
            self.deliveries().clear();
        }
        self.schedule(ctx);
    }
}

/// The serials revoked after the first `known` the node already has.
fn revoked_since(state: &crate::head::state::ControlState, known: usize) -> Vec<u64> {
    state
        .revoked()
        .iter()
        .skip(known)
        .map(|(serial, _)| *serial)
        .collect()
}
