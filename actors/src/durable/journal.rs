//! A durable actor's side of its journal: [`recover`] before the first
//! message, [`persist`] of events (acknowledged once durable), snapshots
//! every [`Durable::snapshot_every`] events, and [`persist_state`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use swarm_protocol::NodeId;
use tokio::sync::oneshot;

use super::codec::{self, Kind};
use super::status::{self, Outcome, Status};
use super::store::{store_of, JournalStore, Recovery, StoreError, Writer};
use super::Durable;
use crate::supervision::Incarnation;

/// How long an incarnation keeps trying to recover (the store unreachable,
/// an election under way) before it stops with an error; its supervisor
/// then restarts it by its policy.
pub const RECOVER_WITHIN: Duration = Duration::from_secs(30);

/// The longest wait between two recovery tries.
const RECOVER_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How long a persist asks an unavailable store again before it leaves
/// the outcome uncertain (and the actor stops to recover): longer than an
/// election and a slow quorum round.
const APPEND_RETRY_WITHIN: Duration = Duration::from_secs(10);

/// A snapshot is saved once this many bytes of events follow the last
/// one, whatever [`Durable::snapshot_every`] says: half the bound on what
/// a journal keeps after its snapshot, so an append (at most
/// `MAX_APPEND_BYTES`) never meets that bound while snapshots succeed.
const SNAPSHOT_AT_BYTES: usize = crate::head::wire::journal::MAX_JOURNAL_BYTES / 2;

/// A durable actor's journal handle: its incarnation, where it writes and
/// how far it got. Built in [`crate::supervision::Spawnable::build`] with
/// [`Journal::new`]; [`recover`] and [`persist`] keep it.
pub struct Journal {
    name: String,
    epoch: u64,
    node: NodeId,
    /// The head group placed the incarnation (see [`Incarnation::placed`]).
    placed: bool,
    store: Option<Arc<dyn JournalStore>>,
    /// Set once recovered: who writes.
    writer: Option<Writer>,
    /// The next event's sequence number.
    next: u64,
    /// Events since the last snapshot.
    since_snapshot: u64,
    /// Their bytes.
    bytes_since_snapshot: usize,
    /// The sequence number the latest snapshot covers (0: none).
    snapshot_seq: u64,
    /// A persist is in flight.
    persisting: bool,
    /// A snapshot is being saved.
    snapshotting: bool,
    /// How long the recovery took.
    recovered_in: Option<Duration>,
    /// Fencing was logged.
    fenced: bool,
    /// The node's durability table ([`super::status`]), once recovery
    /// started, and this handle's token in it.
    status: Option<Arc<Status>>,
    token: u64,
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Some(status) = &self.status {
            status.gone(self.token, &self.name);
        }
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("name", &self.name)
            .field("epoch", &self.epoch)
            .field("backend", &self.backend())
            .field("next", &self.next)
            .field("since_snapshot", &self.since_snapshot)
            .field("recovered_in", &self.recovered_in)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// The journal of `incarnation` (not recovered yet).
    pub fn new(incarnation: &Incarnation) -> Self {
        Self {
            name: incarnation.name.clone(),
            epoch: incarnation.epoch,
            node: incarnation.node,
            placed: incarnation.placed,
            store: None,
            writer: None,
            next: 1,
            snapshot_seq: 0,
            since_snapshot: 0,
            bytes_since_snapshot: 0,
            persisting: false,
            snapshotting: false,
            recovered_in: None,
            fenced: false,
            status: None,
            token: status::token(),
        }
    }

    /// The incarnation's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The next event's sequence number (events are numbered from 1).
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// The actor's name and its node (passivation's registry).
    pub(crate) fn incarnation(&self) -> (&str, NodeId) {
        (&self.name, self.node)
    }

    /// Whether it recovered (and may persist).
    pub fn is_recovered(&self) -> bool {
        self.writer.is_some()
    }

    /// How long its recovery took.
    pub fn recovered_in(&self) -> Option<Duration> {
        self.recovered_in
    }

    /// The store's backend, once recovery started.
    pub fn backend(&self) -> Option<&'static str> {
        self.store.as_ref().map(|s| s.backend())
    }

    /// Starts this incarnation's row in the node's durability table.
    fn report_recovered(&self, took: Duration) {
        let (Some(status), Some(store), Some(writer)) = (&self.status, &self.store, &self.writer)
        else {
            return;
        };
        let view = crate::inspect::JournalView {
            backend: store.backend().to_owned(),
            epoch: self.epoch,
            claim: writer.claim,
            last_seq: self.next - 1,
            snapshot_seq: self.snapshot_seq,
            recovery_ms: took.as_secs_f64() * 1e3,
            ..Default::default()
        };
        status.recovered(self.token, &self.name, store.backend(), view, took);
    }

    /// Reports an event write (`appended`, after `took`) to the table.
    fn report_write(
        &self,
        appended: &Result<u64, StoreError>,
        count: u64,
        bytes: usize,
        took: Duration,
    ) {
        let (Some(status), Some(store)) = (&self.status, &self.store) else {
            return;
        };
        let (outcome, last) = match appended {
            Ok(next) => (
                Outcome::Written {
                    events: count,
                    bytes: bytes as u64,
                },
                next.saturating_sub(1),
            ),
            Err(StoreError::Fenced { .. }) => (Outcome::Fenced, 0),
            Err(_) => (Outcome::Failed, 0),
        };
        status.wrote(
            self.token,
            &self.name,
            store.backend(),
            &outcome,
            took,
            last,
        );
    }

    /// Reports a snapshot write (`saved`, at `seq`, `size` bytes).
    fn report_snapshot(&mut self, saved: &Result<(), StoreError>, seq: u64, size: u64) {
        let (Some(status), Some(store)) = (&self.status, &self.store) else {
            return;
        };
        let outcome = match saved {
            Ok(()) => {
                self.snapshot_seq = seq;
                Outcome::Written {
                    events: 0,
                    bytes: size,
                }
            }
            Err(StoreError::Fenced { .. }) => Outcome::Fenced,
            Err(_) => Outcome::Failed,
        };
        status.snapshotted(self.token, &self.name, store.backend(), &outcome, seq);
    }

    /// Refuses a write while another is in flight: two persists from one
    /// handler would both start at the same sequence number.
    fn idle(&self) -> Result<(), StoreError> {
        if self.persisting || self.snapshotting {
            return Err(StoreError::Refused {
                reason: format!(
                    "{:?}: a journal write is in flight; await it before the next",
                    self.name
                ),
            });
        }
        Ok(())
    }

    /// The store and writer, once recovered.
    fn writing(&self) -> Result<(Arc<dyn JournalStore>, Writer), StoreError> {
        match (&self.store, &self.writer) {
            (Some(store), Some(writer)) => Ok((Arc::clone(store), writer.clone())),
            _ => Err(StoreError::Refused {
                reason: format!("{:?} did not recover its journal", self.name),
            }),
        }
    }
}

/// Recovers `actor` from its journal before it handles any message: claims
/// the journal for its epoch (from then on older incarnations cannot
/// write), restores the latest snapshot and applies the events after it.
/// Call it from the actor's `started`. An unreachable store is tried
/// again with a backoff for [`RECOVER_WITHIN`]; if recovery fails the
/// actor stops with the error logged (its supervisor restarts it).
pub fn recover<A: Durable>(actor: &mut A, ctx: &mut Context<A>) {
    let started = Instant::now();
    let journal = actor.journal();
    let (name, epoch) = (journal.name.clone(), journal.epoch);
    // An operator's spawn (or the node's own) names any epoch it likes:
    // claiming with it would fence the head's incarnations out.
    if !journal.placed {
        tracing::error!(actor = %name, epoch, "a durable actor runs only where the head group placed it (control.spawn), not from an operator's or a node's own spawn: stopping");
        ctx.stop();
        return;
    }
    let Some(store) = store_of(journal.node) else {
        tracing::error!(actor = %name, "a durable actor on a node without a journal store (no membership): stopping");
        ctx.stop();
        return;
    };
    journal.store = Some(Arc::clone(&store));
    journal.writer = None;
    journal.status = Some(status::status_of(journal.node));
    let claim = async move {
        let deadline = Instant::now() + RECOVER_WITHIN;
        let mut wait = Duration::from_millis(50);
        loop {
            match store.claim(&name, epoch).await {
                Err(StoreError::Unavailable { reason }) if Instant::now() + wait < deadline => {
                    tracing::debug!(actor = %name, epoch, %reason, "journal store unavailable: trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RECOVER_BACKOFF_MAX);
                }
                other => return other,
            }
        }
    };
    ctx.wait(claim.into_actor(actor).map(move |claimed, act, ctx| {
        match claimed.and_then(|recovery| restore(act, recovery)) {
            Ok(()) => {
                let journal = act.journal();
                journal.recovered_in = Some(started.elapsed());
                journal.report_recovered(started.elapsed());
                tracing::debug!(actor = %journal.name, epoch = journal.epoch, next = journal.next, took = ?started.elapsed(), "recovered");
                super::passivation::recovered(act, ctx);
            }
            Err(e) => {
                let journal = act.journal();
                tracing::error!(actor = %journal.name, epoch = journal.epoch, error = %e, "could not recover its journal: stopping");
                ctx.stop();
            }
        }
    }));
}

/// Restores the snapshot and applies the events of `recovery`.
fn restore<A: Durable>(actor: &mut A, recovery: Recovery) -> Result<(), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { reason };
    let mut last = 0;
    if let Some(snapshot) = &recovery.snapshot {
        let state: A::Snapshot = codec::decode(Kind::Snapshot, A::JOURNAL, &snapshot.bytes)?;
        actor.restore(state);
        last = snapshot.seq;
    }
    for event in &recovery.events {
        if event.seq != last + 1 {
            return Err(corrupt(format!(
                "event {} follows {last} in the journal",
                event.seq
            )));
        }
        let decoded: A::Event = codec::decode(Kind::Event, A::JOURNAL, &event.bytes)?;
        actor.apply(&decoded);
        last = event.seq;
    }
    if recovery.next != last + 1 {
        return Err(corrupt(format!(
            "the journal's next sequence number is {}, after event {last}",
            recovery.next
        )));
    }
    let journal = actor.journal();
    journal.writer = Some(recovery.writer);
    journal.snapshot_seq = recovery.snapshot.as_ref().map_or(0, |s| s.seq);
    journal.next = recovery.next;
    journal.since_snapshot = recovery.events.len() as u64;
    journal.bytes_since_snapshot = recovery.events.iter().map(|e| e.bytes.len()).sum();
    Ok(())
}

/// Persists `events`: once the store acknowledged them they are applied to
/// the actor ([`Durable::apply`]) and the future answers `Ok`; the handler
/// replies after that. While the write is in flight the actor handles no
/// other message, so events are written and applied in order.
///
/// An unavailable store is asked again with the same write for up to
/// 10 s (an election, a slow quorum; a write made once is recognised).
/// On an error nothing is applied. An incarnation that is fenced, whose
/// write may or may not have been made (the store still unavailable) or that
/// is out of step with its journal stops (it logs why; its supervisor
/// restarts it and it recovers); one whose write was refused whole (too
/// large) keeps running. One journal write at a time: a `persist` while
/// another (or a snapshot) is in flight is refused (`Refused`), since both
/// would start at the same sequence number.
pub fn persist<A: Durable>(
    actor: &mut A,
    ctx: &mut Context<A>,
    events: Vec<A::Event>,
) -> ResponseActFuture<A, Result<(), StoreError>> {
    persist_then(actor, ctx, events, |_| ())
}

/// As [`persist`], and `reply` builds the answer from the actor right
/// after the events were applied, before the actor handles anything else:
/// what a handler should reply with (a reply built in a `.map` after
/// [`persist`] runs later, and may see the state after the next message).
pub fn persist_then<A: Durable, R: 'static>(
    actor: &mut A,
    ctx: &mut Context<A>,
    events: Vec<A::Event>,
    reply: impl FnOnce(&mut A) -> R + 'static,
) -> ResponseActFuture<A, Result<R, StoreError>> {
    if events.is_empty() {
        return Box::pin(fut::ready(Ok(reply(actor))));
    }
    let records: Result<Vec<Vec<u8>>, StoreError> = events
        .iter()
        .map(|e| codec::encode(Kind::Event, A::JOURNAL, e))
        .collect();
    let journal = actor.journal();
    if let Err(e) = journal.idle() {
        return Box::pin(fut::ready(Err(e)));
    }
    let (store, writer, records) = match (journal.writing(), records) {
        (Ok((store, writer)), Ok(records)) => (store, writer, records),
        (Err(e), _) | (_, Err(e)) => return Box::pin(fut::ready(Err(e))),
    };
    let first = journal.next;
    let count = events.len() as u64;
    let bytes: usize = records.iter().map(Vec::len).sum();
    journal.persisting = true;
    let began = Instant::now();
    let (answer, answered) = oneshot::channel();
    // An unavailable store (an election, a slow quorum) is asked again with
    // the same write: made once already, it answers a `Conflict` naming
    // the number after it (recognised below), else it is made now. Only
    // after APPEND_RETRY_WITHIN is the outcome left uncertain.
    let append = async move {
        let deadline = Instant::now() + APPEND_RETRY_WITHIN;
        let mut wait = Duration::from_millis(50);
        loop {
            match store.append(&writer, first, records.clone()).await {
                Err(StoreError::Unavailable { reason }) if Instant::now() + wait < deadline => {
                    tracing::debug!(actor = %writer.name, %reason, "journal store unavailable: writing again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RECOVER_BACKOFF_MAX);
                }
                other => return other,
            }
        }
    };
    ctx.wait(append.into_actor(actor).map(move |appended, act, ctx| {
        act.journal().persisting = false;
        // Our own write, made once already (its answer was lost and the
        // request was sent again): the journal is where it would be.
        let appended = match appended {
            Err(StoreError::Conflict { expected, .. }) if expected == first + count => Ok(expected),
            other => other,
        };
        act.journal()
            .report_write(&appended, count, bytes, began.elapsed());
        let result = match appended {
            Ok(next) => {
                for event in &events {
                    act.apply(event);
                }
                let journal = act.journal();
                journal.next = next;
                crate::supervision::passivation::advanced(
                    journal.node,
                    &journal.name,
                    journal.epoch,
                    next,
                );
                journal.since_snapshot += count;
                journal.bytes_since_snapshot += bytes;
                let replied = reply(act);
                snapshot_due(act, ctx);
                Ok(replied)
            }
            Err(e) => {
                failed(act.journal(), ctx, &e);
                Err(e)
            }
        };
        let _ = answer.send(result);
    }));
    Box::pin(
        async move {
            answered.await.unwrap_or_else(|_| {
                Err(StoreError::Unavailable {
                    reason: "the actor stopped".to_owned(),
                })
            })
        }
        .into_actor(actor),
    )
}

/// Saves the actor's whole state as a snapshot now (the Orleans/Dapr way:
/// an actor that changes its state directly and saves it whole, on the
/// same journal), answering once it is durable. While it is in flight the
/// actor handles no other message. If it fails (refused for its size
/// too), the actor's state is ahead of its journal: it stops, and its
/// next incarnation recovers the last saved state. A handler makes one
/// journal write at a time: a second while one is in flight is refused.
pub fn persist_state<A: Durable>(
    actor: &mut A,
    ctx: &mut Context<A>,
) -> ResponseActFuture<A, Result<(), StoreError>> {
    if let Err(e) = actor.journal().idle() {
        return Box::pin(fut::ready(Err(e)));
    }
    let save = match save_snapshot(actor, true) {
        Ok(save) => save,
        Err(e) => return Box::pin(fut::ready(Err(e))),
    };
    let (answer, answered) = oneshot::channel();
    ctx.wait(save.map(move |saved, _, _| {
        let _ = answer.send(saved);
    }));
    Box::pin(
        async move {
            answered.await.unwrap_or_else(|_| {
                Err(StoreError::Unavailable {
                    reason: "the actor stopped".to_owned(),
                })
            })
        }
        .into_actor(actor),
    )
}

/// Saves a snapshot every `snapshot_every` events or
/// [`SNAPSHOT_AT_BYTES`] of them. It runs before the next message (the
/// state it saves is the state at its sequence number; saved in the
/// background, a later whole-state save at the same number could be
/// overwritten by it). A failure leaves the events in the journal.
fn snapshot_due<A: Durable>(actor: &mut A, ctx: &mut Context<A>) {
    let journal = actor.journal();
    let due = journal.since_snapshot >= A::snapshot_every().max(1)
        || journal.bytes_since_snapshot >= SNAPSHOT_AT_BYTES;
    if journal.snapshotting || !due {
        return;
    }
    if let Ok(save) = save_snapshot(actor, false) {
        ctx.wait(save.map(|_, _, _| ()));
    }
}

/// The write of a snapshot at the last event; `whole` for a whole-state
/// save, whose failure (but for its size) stops the actor.
fn save_snapshot<A: Durable>(
    actor: &mut A,
    whole: bool,
) -> Result<ResponseActFuture<A, Result<(), StoreError>>, StoreError> {
    let state = actor.snapshot();
    let journal = actor.journal();
    let (store, writer) = journal.writing()?;
    let record = codec::encode(Kind::Snapshot, A::JOURNAL, &state)?;
    let seq = journal.next - 1;
    let size = record.len() as u64;
    journal.snapshotting = true;
    Ok(Box::pin(store.snapshot(&writer, seq, record).into_actor(actor).map(
        move |saved, act, ctx| {
            let journal = act.journal();
            journal.snapshotting = false;
            journal.report_snapshot(&saved, seq, size);
            match &saved {
                Ok(()) => {
                    // Nothing ran between (the save was waited for).
                    journal.since_snapshot = journal.next - 1 - seq;
                    journal.bytes_since_snapshot = 0;
                }
                Err(e @ StoreError::Fenced { .. }) => failed(journal, ctx, e),
                // A whole-state save that failed, for whatever reason,
                // leaves the state ahead of the journal: recover.
                Err(e) if whole => {
                    tracing::error!(actor = %journal.name, epoch = journal.epoch, error = %e, "a whole-state save failed: stopping to recover the last saved state");
                    journal.writer = None;
                    ctx.stop();
                }
                Err(e) => {
                    tracing::warn!(actor = %journal.name, seq, error = %e, "snapshot not saved (the journal keeps the events)");
                }
            }
            saved
        },
    )))
}

/// A write failed: a fenced, uncertain or out-of-step incarnation stops.
fn failed<A: Actor<Context = Context<A>>>(
    journal: &mut Journal,
    ctx: &mut Context<A>,
    error: &StoreError,
) {
    match error {
        StoreError::TooLarge { .. } => {
            tracing::warn!(actor = %journal.name, %error, "a journal write was refused");
        }
        StoreError::Fenced { newest } => {
            if !journal.fenced {
                journal.fenced = true;
                tracing::warn!(actor = %journal.name, epoch = journal.epoch, newest, "fenced: a newer incarnation owns the journal; stopping");
            }
            journal.writer = None;
            ctx.stop();
        }
        _ => {
            tracing::error!(actor = %journal.name, epoch = journal.epoch, %error, "a journal write failed: stopping to recover from the journal");
            journal.writer = None;
            ctx.stop();
        }
    }
}
