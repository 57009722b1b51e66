//! A durable incarnation's part in passivation: once recovered it is
//! registered with its node's host (its journal position, for `swarm
//! actors`), and saves a final snapshot when the host passivates it.

use actix::prelude::*;
use tokio::sync::mpsc;

use super::{persist_state, Durable};
use crate::supervision::passivation::{self, Registration, SaveRequest};

/// Registers the recovered incarnation and listens for its host's save
/// requests (until it stops: the registration goes with its context).
pub(super) fn recovered<A: Durable>(actor: &mut A, ctx: &mut Context<A>) {
    let journal = actor.journal();
    let (name, node) = journal.incarnation();
    let (tx, rx) = mpsc::unbounded_channel();
    let position = (journal.next_seq(), journal.backend().unwrap_or("unknown"));
    let registration = passivation::register(node, name, journal.epoch(), position, tx);
    if let Some(idle) = A::passivate_after() {
        let ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX).max(1);
        passivation::idle_by_default(node, name, journal.epoch(), ms);
    }
    listen(actor, ctx, rx, registration);
}

/// Waits for the next save request; saves the whole state before the
/// next message, answers, and waits again.
fn listen<A: Durable>(
    actor: &mut A,
    ctx: &mut Context<A>,
    mut requests: mpsc::UnboundedReceiver<SaveRequest>,
    registration: Registration,
) {
    let next = async move {
        let request = requests.recv().await;
        (requests, registration, request)
    };
    ctx.spawn(
        next.into_actor(actor)
            .map(|(requests, registration, request), act, ctx| {
                let Some(answer) = request else {
                    return;
                };
                // Saved before any later message (the save waits).
                let save = persist_state(act, ctx);
                ctx.spawn(save.map(move |saved, act, ctx| {
                    let _ = answer.send(saved.map_err(|e| e.to_string()));
                    listen(act, ctx, requests, registration);
                }));
            }),
    );
}
