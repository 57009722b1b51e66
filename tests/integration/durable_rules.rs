//! A durable actor's rules that a handler can break: one journal write at
//! a time (a second `persist` in the same handler is refused, and the
//! first one's events are the only ones kept), a periodic snapshot that
//! cannot overwrite a whole-state save that follows it, and large events
//! that snapshot by bytes before they fill the journal.

use std::time::Duration;

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use swarm::control::Spawn;
use swarm::durable::{self, Durable, Journal, StoreError};
use swarm::supervision::{Incarnation, Restart, Spawnable};
use swarm::AskError;

use crate::util::{control_cluster, scratch, spawn_ready};

/// A total and a holder's name; snapshots every 3 events.
pub(crate) struct Tally {
    total: u64,
    holder: String,
    journal: Journal,
}

#[derive(Serialize, Deserialize)]
pub(crate) enum Event {
    Added(u64),
}

#[derive(Serialize, Deserialize)]
pub(crate) struct State {
    total: u64,
    holder: String,
}

/// Adds; answers the total and the holder.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<(u64, String), String>")]
pub(crate) struct Add(pub(crate) u64);

/// Persists twice in one handler; answers both outcomes.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "(Result<(), String>, Result<(), String>)")]
struct Twice(u64);

/// Renames the holder, saved whole.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<(), String>")]
struct Rename(String);

/// Panics (a local restart under the same epoch).
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
struct Fail;

swarm::remote_message!(
    Add => "test.durable.Add",
    Twice => "test.durable.Twice",
    Rename => "test.durable.Rename",
    Fail => "test.durable.Fail"
);

impl Durable for Tally {
    const JOURNAL: &'static str = "test.Tally";
    type Event = Event;
    type Snapshot = State;
    fn apply(&mut self, Event::Added(n): &Event) {
        self.total += n;
    }
    fn snapshot(&self) -> State {
        State {
            total: self.total,
            holder: self.holder.clone(),
        }
    }
    fn restore(&mut self, state: State) {
        self.total = state.total;
        self.holder = state.holder;
    }
    fn snapshot_every() -> u64 {
        3
    }
    fn journal(&mut self) -> &mut Journal {
        &mut self.journal
    }
}

impl Actor for Tally {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        durable::recover(self, ctx);
    }
}

impl Handler<Add> for Tally {
    type Result = ResponseActFuture<Self, Result<(u64, String), String>>;
    fn handle(&mut self, Add(n): Add, ctx: &mut Context<Self>) -> Self::Result {
        Box::pin(
            durable::persist_then(self, ctx, vec![Event::Added(n)], |act: &mut Self| {
                (act.total, act.holder.clone())
            })
            .map(|done, _, _| done.map_err(|e| e.to_string())),
        )
    }
}

impl Handler<Twice> for Tally {
    type Result = ResponseActFuture<Self, (Result<(), String>, Result<(), String>)>;
    fn handle(&mut self, Twice(n): Twice, ctx: &mut Context<Self>) -> Self::Result {
        let first = durable::persist(self, ctx, vec![Event::Added(n)]);
        let second = durable::persist(self, ctx, vec![Event::Added(n)]);
        let text = |r: Result<(), StoreError>| r.map_err(|e| e.to_string());
        Box::pin(first.then(move |a, _, _| second.map(move |b, _, _| (text(a), text(b)))))
    }
}

impl Handler<Rename> for Tally {
    type Result = ResponseActFuture<Self, Result<(), String>>;
    fn handle(&mut self, Rename(holder): Rename, ctx: &mut Context<Self>) -> Self::Result {
        self.holder = holder;
        Box::pin(
            durable::persist_state(self, ctx).map(|done, _, _| done.map_err(|e| e.to_string())),
        )
    }
}

impl Handler<Fail> for Tally {
    type Result = ();
    fn handle(&mut self, _: Fail, _: &mut Context<Self>) {
        panic!("asked to fail (on purpose)");
    }
}

swarm::remote_actor!(Tally: Add, Twice, Rename, Fail);

impl Spawnable for Tally {
    const TYPE: &'static str = "test.Tally";
    type Args = ();
    fn build((): &(), incarnation: &Incarnation) -> Self {
        Tally {
            total: 0,
            holder: "first".to_owned(),
            journal: Journal::new(incarnation),
        }
    }
}

/// Asks `add` until an incarnation answers.
async fn answered(tally: &swarm::control::Named<Tally>) -> (u64, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut poll = tokio::time::interval(Duration::from_millis(10));
    loop {
        poll.tick().await;
        if let Ok(Ok(answer)) = tally.send(Add(0)).await {
            return answer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "it never answered again"
        );
    }
}

#[actix_rt::test]
async fn a_second_persist_in_one_handler_is_refused_and_a_snapshot_never_overwrites_a_later_save() {
    let dir = scratch("durable-rules");
    let (_ca, nodes) = control_cluster(&dir, 1, 1, |_, _| {}).await;
    for n in &nodes {
        n.node.register::<Tally>();
    }
    let control = nodes[1].node.control().unwrap().clone();
    let tally = spawn_ready(&control, || {
        Spawn::<Tally>::named("tally").restart(Restart::on_failure())
    })
    .await;

    // Two persists in one handler: the first is written, the second
    // refused (both would start at the same sequence number).
    let (first, second) = tally.send(Twice(5)).await.unwrap();
    assert_eq!(first, Ok(()));
    assert!(
        second.as_ref().is_err_and(|e| e.contains("in flight")),
        "{second:?}"
    );
    assert_eq!(
        tally.send(Add(0)).await.unwrap(),
        Ok((5, "first".to_owned()))
    );

    // Events 1 (above) and 2 (the read) are in; a third makes a snapshot
    // due, and a rename (a whole-state save at that same sequence number)
    // is already queued behind it. The snapshot runs before the rename, so
    // the rename's state is the one kept (saved in the background, the
    // older snapshot could land after it and win).
    let (add, renamed) = tokio::join!(tally.send(Add(1)), tally.send(Rename("second".to_owned())));
    // The add's answer is its own state, built before the rename ran.
    assert_eq!(add.unwrap(), Ok((6, "first".to_owned())));
    assert_eq!(renamed.unwrap(), Ok(()));

    // A local restart recovers from the journal alone.
    assert_eq!(tally.send(Fail).await, Err(AskError::ActorFailed));
    let (total, holder) = answered(&tally).await;
    assert_eq!((total, holder.as_str()), (6, "second"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Events of 60 KiB, a snapshot only every 1,000 of them by count.
struct Heavy {
    events: u64,
    journal: Journal,
}

/// Persists one event of this many bytes; answers how many were persisted.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<u64, String>")]
struct Blob(usize);

swarm::remote_message!(Blob => "test.durable.Blob");

impl Durable for Heavy {
    const JOURNAL: &'static str = "test.Heavy";
    type Event = serde_bytes::ByteBuf;
    type Snapshot = u64;
    fn apply(&mut self, _: &serde_bytes::ByteBuf) {
        self.events += 1;
    }
    fn snapshot(&self) -> u64 {
        self.events
    }
    fn restore(&mut self, events: u64) {
        self.events = events;
    }
    fn snapshot_every() -> u64 {
        1_000
    }
    fn journal(&mut self) -> &mut Journal {
        &mut self.journal
    }
}

impl Actor for Heavy {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        durable::recover(self, ctx);
    }
}

impl Handler<Blob> for Heavy {
    type Result = ResponseActFuture<Self, Result<u64, String>>;
    fn handle(&mut self, Blob(size): Blob, ctx: &mut Context<Self>) -> Self::Result {
        let event = serde_bytes::ByteBuf::from(vec![7u8; size]);
        Box::pin(
            durable::persist_then(self, ctx, vec![event], |act: &mut Self| act.events)
                .map(|done, _, _| done.map_err(|e| e.to_string())),
        )
    }
}

swarm::remote_actor!(Heavy: Blob, Fail);

impl Handler<Fail> for Heavy {
    type Result = ();
    fn handle(&mut self, _: Fail, _: &mut Context<Self>) {
        panic!("asked to fail (on purpose)");
    }
}

impl Spawnable for Heavy {
    const TYPE: &'static str = "test.Heavy";
    type Args = ();
    fn build((): &(), incarnation: &Incarnation) -> Self {
        Heavy {
            events: 0,
            journal: Journal::new(incarnation),
        }
    }
}

/// 100 events of 60 KiB (5.9 MiB, past the 4 MiB a journal keeps after
/// its snapshot) with a snapshot due only every 1,000 by count: the
/// snapshot every 2 MiB of events keeps every one writable, and a restart
/// recovers them all.
#[actix_rt::test]
async fn large_events_snapshot_by_bytes_and_never_fill_the_journal() {
    let dir = scratch("durable-heavy");
    let (_ca, nodes) = control_cluster(&dir, 1, 1, |_, _| {}).await;
    for n in &nodes {
        n.node.register::<Heavy>();
    }
    let control = nodes[1].node.control().unwrap().clone();
    let heavy = spawn_ready(&control, || {
        Spawn::<Heavy>::named("heavy").restart(Restart::on_failure())
    })
    .await;
    for i in 1..=100u64 {
        assert_eq!(
            heavy.send(Blob(60 * 1024)).await.unwrap(),
            Ok(i),
            "event {i}"
        );
    }
    assert_eq!(heavy.send(Fail).await, Err(AskError::ActorFailed));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut poll = tokio::time::interval(Duration::from_millis(10));
    let recovered = loop {
        poll.tick().await;
        if let Ok(Ok(n)) = heavy.send(Blob(1)).await {
            break n;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "it never answered again"
        );
    };
    assert_eq!(recovered, 101, "every event recovered, then one more");
    let _ = std::fs::remove_dir_all(&dir);
}
