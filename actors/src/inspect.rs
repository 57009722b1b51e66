//! What operators see inside a node, kept where messages already pass:
//! per-actor and per-link counters (the dispatcher, the link's reader and
//! writer), sampled handler times, the node's event log, and the rows of
//! the one data model ([`model`]) each room fills in. A leaf: it imports
//! no room; the `swarm.inspect` actor that gathers a node's snapshot from
//! the rooms is `inspector`.
//!
//! What the counters cost: a dispatched message adds two relaxed atomic
//! adds and two loads; one message per actor at a time travels wrapped
//! in a stopwatch ([`Timed`]) that the actor's handler reads. With
//! tracing on, those sampled messages also leave a [`TraceEntry`].

pub(crate) mod events;
pub(crate) mod histogram;
pub mod model;
pub(crate) mod stats;

use std::time::{SystemTime, UNIX_EPOCH};

pub use model::{
    ActorView, ClosedLink, Durations, EventView, JournalTotals, JournalView, LinkView,
    MemberCounts, RestartRecord, ServiceView, TraceEntry,
};
#[doc(hidden)]
pub use stats::{Probe, Timed, TimedResponse};

/// Now, Unix milliseconds (0 before 1970), as events and traces stamp it.
pub(crate) fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
