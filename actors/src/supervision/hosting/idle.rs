//! Passivation, the host's half: a head placement spawned with
//! `idle_after_ms` that handled no message for that long is passivated:
//!
//! 1. unexposed (asks get `NoSuchActor`, which callers' handles retry:
//!    nothing ran them);
//! 2. drained: everything already in its mailbox is handled (a probe);
//! 3. a durable actor saves a final snapshot through its journal;
//! 4. the head is told ([`ReportPassive`]), which records it passive only
//!    if it places this epoch on this node;
//! 5. stopped.
//!
//! A step failing before the report (a handler that does not finish, the
//! store unreachable), or the head refusing the report, exposes it again
//! and it counts as busy: the next idle period tries again. A report left
//! unanswered (no quorum, a cut link) stops it all the same: the head
//! either recorded it passive, or sees the node's next lease renewal
//! without it and starts it again under a new epoch (its state is in its
//! journal either way); exposed again, it would answer callers while the
//! head may have activated another incarnation.

use std::time::{Duration, Instant};

use actix::prelude::*;

use super::Host;
use crate::supervision::passivation::{self, NotPassive, ReportPassive};

/// How often the host looks for idle actors.
const EVERY: Duration = Duration::from_millis(100);

/// How long draining may take before passivation is given up.
const DRAIN_WITHIN: Duration = Duration::from_secs(5);

/// How long a final snapshot may take.
const SAVE_WITHIN: Duration = Duration::from_secs(15);

/// An actor that passivates when idle.
pub(super) struct Idle {
    epoch: u64,
    after: Duration,
    /// Messages handed to it when last looked at, and since when.
    seen: u64,
    since: Instant,
    /// Being passivated now.
    passivating: bool,
}

impl Idle {
    pub(super) fn new(epoch: u64, after_ms: u64) -> Self {
        Self {
            epoch,
            after: Duration::from_millis(after_ms.max(1)),
            seen: 0,
            since: Instant::now(),
            passivating: false,
        }
    }
}

/// Sets how the host tells the head it passivated an actor.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SetReporter(pub(crate) ReportPassive);

impl Handler<SetReporter> for Host {
    type Result = ();

    fn handle(&mut self, SetReporter(report): SetReporter, _: &mut Context<Self>) {
        self.report = Some(report);
    }
}

/// Starts the look for idle actors (a type's default idle time arrived).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct WatchIdle;

impl Handler<WatchIdle> for Host {
    type Result = ();

    fn handle(&mut self, _: WatchIdle, ctx: &mut Context<Self>) {
        self.watch_idle(ctx);
    }
}

impl Host {
    /// Looks for idle actors every [`EVERY`] while there are some to
    /// watch; an idle node without any does not wake for it.
    pub(super) fn watch_idle(&mut self, ctx: &mut Context<Self>) {
        if self.watching.is_none() {
            self.watching = Some(ctx.run_interval(EVERY, |act, ctx| act.look_for_idle(ctx)));
        }
    }

    fn look_for_idle(&mut self, ctx: &mut Context<Self>) {
        // Types that passivate by default, for spawns that set no time.
        let mut pending = false;
        for (name, epoch, ms) in passivation::take_idle_defaults(self.registry.node()) {
            let placed = self
                .started
                .get(&name)
                .is_some_and(|s| s.fenced && s.epoch == epoch);
            if placed {
                if self.idle.get(&name).is_none_or(|i| i.epoch != epoch) {
                    self.idle.insert(name, Idle::new(epoch, ms));
                }
            } else if self.fencing.epoch_of(&name) == Some(epoch) {
                // Recovered before its start was recorded: next time.
                passivation::idle_by_default(self.registry.node(), &name, epoch, ms);
                pending = true;
            }
        }
        if self.idle.is_empty() && !pending {
            if let Some(watching) = self.watching.take() {
                ctx.cancel_future(watching);
            }
            return;
        }
        if self.idle.is_empty() || self.report.is_none() {
            return;
        }
        let now = Instant::now();
        let started = &self.started;
        self.idle.retain(|name, idle| {
            started
                .get(name)
                .is_some_and(|s| s.fenced && s.epoch == idle.epoch)
        });
        let mut due = Vec::new();
        for (name, idle) in &mut self.idle {
            if idle.passivating {
                continue;
            }
            let Some(entry) = self.directory.dispatcher(name) else {
                // Restarting (or unexposed otherwise): not idle.
                idle.since = now;
                continue;
            };
            // Counting off: idleness cannot be told; never passivated.
            let Some((messages, _)) = entry.stats().activity() else {
                idle.since = now;
                continue;
            };
            if messages != idle.seen {
                idle.seen = messages;
                idle.since = now;
            } else if now.duration_since(idle.since) >= idle.after {
                idle.passivating = true;
                due.push((name.clone(), idle.epoch, entry));
            }
        }
        for (name, epoch, entry) in due {
            self.passivate(name, epoch, entry, ctx);
        }
    }

    /// Passivates `name`'s incarnation `epoch` (see the module's steps).
    fn passivate(
        &mut self,
        name: String,
        epoch: u64,
        entry: std::sync::Arc<dyn crate::directory::Dispatch>,
        ctx: &mut Context<Self>,
    ) {
        let Some(report) = self.report.clone() else {
            return;
        };
        let node = self.registry.node();
        if !self.directory.remove_entry(&name, &entry) {
            if let Some(idle) = self.idle.get_mut(&name) {
                idle.passivating = false;
            }
            return;
        }
        tracing::debug!(actor = %name, epoch, "idle: passivating");
        let stats = std::sync::Arc::clone(entry.stats());
        let probe = std::sync::Arc::clone(&entry);
        let asked = name.clone();
        let steps = async move {
            // Drained: everything handed to its mailbox was handled.
            let deadline = Instant::now() + DRAIN_WITHIN;
            loop {
                match stats.activity() {
                    Some((_, true)) => break,
                    Some(_) if Instant::now() < deadline => {
                        probe.probe();
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    _ => return Err(refused("its mailbox did not drain")),
                }
            }
            if let Some(saved) = passivation::save(node, &asked, epoch) {
                match tokio::time::timeout(SAVE_WITHIN, saved).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(e))) => {
                        return Err(refused(&format!("its final snapshot failed: {e}")))
                    }
                    Ok(Err(_)) => return Err(refused("it stopped while saving")),
                    Err(_) => return Err(refused("its final snapshot took too long")),
                }
            }
            report(asked, epoch).await
        };
        ctx.spawn(steps.into_actor(self).map(move |done, act, _| {
            match done {
                Ok(()) => {
                    act.idle.remove(&name);
                    act.stop(&name, epoch);
                }
                Err(NotPassive::Unknown(reason)) => {
                    tracing::warn!(actor = %name, epoch, %reason, "passivation report unanswered: stopping it anyway (the head records it passive, or starts it again)");
                    act.idle.remove(&name);
                    act.stop(&name, epoch);
                }
                Err(NotPassive::Refused(reason)) => {
                    tracing::info!(actor = %name, epoch, %reason, "not passivated: it stays");
                    let current = act.started.get(&name).is_some_and(|s| s.epoch == epoch);
                    if current {
                        // Exposed again, unless a successor took the name.
                        let _ = act.directory.insert(name.clone(), entry);
                    }
                    if let Some(idle) = act.idle.get_mut(&name) {
                        idle.passivating = false;
                        idle.since = Instant::now();
                    }
                }
            }
        }));
    }
}

fn refused(reason: &str) -> NotPassive {
    NotPassive::Refused(reason.to_owned())
}
