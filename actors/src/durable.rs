//! Durable actors: state that survives crashes, failovers and restarts.
//!
//! A durable actor is a named actor ([`Spawnable`], placed by the control
//! plane) whose state changes only through events it persists: a handler
//! persists one or more events with [`persist`], which answers only once
//! they are durable (and applied); the handler replies after that. When
//! any incarnation starts (first placement, a move after a crash, a
//! partition or a drain, a restart after a panic), [`recover`], called
//! from its `started`, loads the latest snapshot and replays the events
//! after it **before** the actor handles any message. A deposit
//! acknowledged by one incarnation is in the balance of the next.
//!
//! Every write names the actor, its epoch (the [`Incarnation`]'s fencing
//! token) and the next sequence number, and the store refuses it in the
//! same atomic step unless it comes from the newest claim: recovery is a
//! claim, so once the next incarnation recovered, a stale one (a frozen VM
//! that wakes up) cannot write; it learns it is fenced and stops.
//!
//! Journals live in a [`JournalStore`]; the default, [`Embedded`], keeps
//! them in the head group's replicated log (sealed at rest like the rest
//! of the head's store, batched with the control plane's writes without
//! starving them). A journal keeps one snapshot and the events after it:
//! each [`Durable::snapshot_every`] events the actor saves a snapshot and
//! the store drops what it covers.
//!
//! ```
//! use actix::prelude::*;
//! use serde::{Deserialize, Serialize};
//! use swarm_actors::durable::{self, Durable, Journal};
//! use swarm_actors::supervision::{Incarnation, Spawnable};
//!
//! #[derive(Serialize, Deserialize, Message)]
//! #[rtype(result = "Result<u64, durable::StoreError>")]
//! struct Add(u64);
//! swarm_actors::remote_message!(Add => "doc.durable.Add");
//!
//! struct Counter {
//!     total: u64,
//!     journal: Journal,
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! enum Event {
//!     Added(u64),
//! }
//!
//! impl Durable for Counter {
//!     const JOURNAL: &'static str = "doc.Counter";
//!     type Event = Event;
//!     type Snapshot = u64;
//!     fn apply(&mut self, Event::Added(n): &Event) {
//!         self.total += n;
//!     }
//!     fn snapshot(&self) -> u64 {
//!         self.total
//!     }
//!     fn restore(&mut self, total: u64) {
//!         self.total = total;
//!     }
//!     fn journal(&mut self) -> &mut Journal {
//!         &mut self.journal
//!     }
//! }
//!
//! impl Actor for Counter {
//!     type Context = Context<Self>;
//!     fn started(&mut self, ctx: &mut Context<Self>) {
//!         durable::recover(self, ctx); // before any message
//!     }
//! }
//!
//! impl Handler<Add> for Counter {
//!     type Result = ResponseActFuture<Self, Result<u64, durable::StoreError>>;
//!     fn handle(&mut self, Add(n): Add, ctx: &mut Context<Self>) -> Self::Result {
//!         // Replies once durable, with the total right after this event.
//!         durable::persist_then(self, ctx, vec![Event::Added(n)], |act: &mut Self| act.total)
//!     }
//! }
//!
//! swarm_actors::remote_actor!(Counter: Add);
//!
//! impl Spawnable for Counter {
//!     const TYPE: &'static str = "doc.Counter";
//!     type Args = ();
//!     fn build(_: &(), incarnation: &Incarnation) -> Self {
//!         Counter { total: 0, journal: Journal::new(incarnation) }
//!     }
//! }
//! ```

pub mod codec;
mod embedded;
mod journal;
mod passivation;
#[cfg(feature = "postgres")]
mod postgres;
mod status;
mod store;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use embedded::Embedded;
pub(crate) use embedded::Embedded as EmbeddedStore;
pub use journal::{persist, persist_state, persist_then, recover, Journal, RECOVER_WITHIN};
#[cfg(feature = "postgres")]
pub use postgres::{Postgres, DEFAULT_CONNECTIONS};
pub(crate) use status::forget as forget_status;
pub use status::report;
pub(crate) use store::{install, store_of, uninstall};
pub use store::{JournalStore, Recovery, StoreError, StoreFuture, Stored, Writer};
/// A parsed PostgreSQL connection string (what [`Postgres::new`] reads).
#[cfg(feature = "postgres")]
pub use tokio_postgres::Config as PostgresConfig;

pub use crate::head::wire::journal::{
    MAX_APPEND_BYTES, MAX_APPEND_EVENTS, MAX_EVENT_BYTES, MAX_JOURNAL_BYTES, MAX_SNAPSHOT_BYTES,
};
#[cfg(doc)]
use crate::supervision::Incarnation;
use crate::supervision::Spawnable;

/// A durable actor: its events, its snapshot, how an event changes its
/// state, and how often it saves a snapshot.
pub trait Durable: Spawnable {
    /// The journal's stable tag (like a message tag): every record is
    /// stored under it and checked against it when read back, so it MUST
    /// stay the same across versions of the actor (e.g. `"bank.Account"`).
    const JOURNAL: &'static str;
    /// What happened (serde; stored, so keep it compatible).
    type Event: Serialize + DeserializeOwned + 'static;
    /// The whole state (serde; stored, so keep it compatible).
    type Snapshot: Serialize + DeserializeOwned + 'static;

    /// Changes the state by one event: the only way it changes (after a
    /// persist, and when recovering). Deterministic; no side effects.
    fn apply(&mut self, event: &Self::Event);

    /// The whole state.
    fn snapshot(&self) -> Self::Snapshot;

    /// Replaces the state with a snapshot (when recovering).
    fn restore(&mut self, snapshot: Self::Snapshot);

    /// How many events between snapshots (at least 1).
    fn snapshot_every() -> u64 {
        100
    }

    /// Passivate an incarnation after this long without a message (its
    /// node stops it after a final snapshot; the next call places it
    /// again): the type's default, for spawns that set none
    /// (`Spawn::passivate_after` wins). `None`: never.
    fn passivate_after() -> Option<std::time::Duration> {
        None
    }

    /// The actor's journal handle ([`Journal::new`] in `build`).
    fn journal(&mut self) -> &mut Journal;
}
