//! The rows of the one data model of everything operators inspect: the
//! console's views, `swarm console --once VIEW --json`, the admin API and
//! the metrics all read these types, so a field added here appears in
//! each. Rows each room fills in from what it alone keeps (an actor's
//! counters, a link, a service instance, a restart); the snapshots that
//! join them with the other rooms' rows (`NodeSnapshot` of one node,
//! `ClusterView` of all) are the inspector's, a room above this one.

use serde::{Deserialize, Serialize};

/// One actor, as the Actors view lists it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActorView {
    /// The name it is exposed under.
    pub name: String,
    /// Its type: the registered type of a supervised actor, else the Rust type.
    pub type_name: String,
    /// The node it runs on, hex id.
    pub node: String,
    /// That node's name.
    pub node_name: String,
    /// running, restarting, failed, stopped (supervised) or exposed.
    pub state: String,
    /// A system actor of the runtime (`swarm.*`).
    pub system: bool,
    /// Run by a supervisor.
    pub supervised: bool,
    /// Its incarnation's epoch (supervised actors; 0 otherwise).
    pub epoch: u64,
    /// Restarts by its local supervisor.
    pub restarts: u64,
    /// Messages dispatched to it but not yet handled (as of the last probe).
    pub backlog: u64,
    /// Messages dispatched to it from other nodes since it started.
    pub messages: u64,
    /// Of those, asks.
    pub asks: u64,
    /// Messages per second over the last interval.
    pub rate: f64,
    /// Messages that failed (did not decode, actor gone, ask error).
    pub errors: u64,
    /// Handler time, median, microseconds (sampled messages).
    pub handling_p50_us: f64,
    /// Handler time, 99th percentile, microseconds.
    pub handling_p99_us: f64,
    /// Time in the mailbox, 99th percentile, microseconds.
    pub waiting_p99_us: f64,
    /// Messages timed so far.
    pub samples: u64,
    /// Its messages are being traced.
    pub tracing: bool,
    /// Who supervises it and by which policy (empty: nobody).
    #[serde(default)]
    pub supervisor: String,
    /// Placed by the head (it moves if its node fails).
    #[serde(default)]
    pub placed: bool,
    /// Its latest restarts, oldest first.
    #[serde(default)]
    pub history: Vec<RestartRecord>,
    /// Its journal, for a durable actor (the durable room fills it in). Before
    /// `handling`: the wire encodes rows as arrays, and only the last
    /// field may be left out.
    #[serde(default)]
    pub durable: Option<JournalView>,
    /// Its sampled handler times, as a histogram (what `/metrics` exports).
    #[serde(default, skip_serializing_if = "Durations::is_empty")]
    pub handling: Durations,
}

/// A durable actor's journal as its node sees it: where it is kept, who
/// writes it, how far it got and how long its writes take.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JournalView {
    /// The store: `embedded`, `postgres` or another backend's name.
    pub backend: String,
    /// The incarnation's epoch.
    pub epoch: u64,
    /// Its claim (a new one at each recovery, fencing the one before).
    pub claim: u64,
    /// The last event's sequence number (0: none yet).
    pub last_seq: u64,
    /// The sequence number the latest snapshot covers (0: none).
    pub snapshot_seq: u64,
    /// When this incarnation saved it, Unix milliseconds (0: it did not).
    pub snapshot_at_ms: u64,
    /// How long this incarnation's recovery took, milliseconds.
    pub recovery_ms: f64,
    /// Events this incarnation wrote.
    pub events: u64,
    /// Bytes it wrote (events and snapshots, encoded).
    pub bytes: u64,
    /// Its event writes' time to acknowledgement, median, microseconds.
    pub write_p50_us: f64,
    /// 99th percentile, microseconds.
    pub write_p99_us: f64,
}

/// One journal backend's totals on a node since it started (what
/// `/metrics` exports, labelled by backend only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JournalTotals {
    /// The backend's name.
    pub backend: String,
    /// Events written.
    pub events: u64,
    /// Bytes written (events and snapshots, encoded).
    pub bytes: u64,
    /// Snapshots saved.
    pub snapshots: u64,
    /// Recoveries (claims that restored a journal).
    pub recoveries: u64,
    /// Writes refused because a newer incarnation owns the journal.
    pub fenced: u64,
    /// Writes that failed otherwise (unavailable, conflict, too large).
    pub failed: u64,
    /// Event writes' times to acknowledgement.
    pub writes: Durations,
    /// Recoveries' times.
    pub recovery: Durations,
}

/// One restart of a supervised actor, for operators.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RestartRecord {
    /// When, Unix milliseconds.
    pub at_ms: u64,
    /// Why: a failure (and the wait before the restart), an operator's
    /// request, or escalation past the policy.
    pub reason: String,
}

/// Durations as a histogram: two buckets per power of two from 128 ns to
/// about 34 s (a value is known within ±21%), only those holding any
/// sent. Bucket `i` holds values up to [`Durations::upper_bound_s`]`(i)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Durations {
    /// The sum of the values, nanoseconds.
    pub sum_ns: u64,
    /// `(bucket, count)` for each bucket holding values, in order.
    pub buckets: Vec<(u16, u64)>,
}

impl Durations {
    /// How many buckets there are.
    pub const BUCKETS: usize = super::histogram::BUCKETS;

    /// Nothing recorded.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// The upper bound of bucket `index`, seconds (infinite for the last).
    pub fn upper_bound_s(index: usize) -> f64 {
        super::histogram::upper_bound(index) / 1e9
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|(_, n)| n).sum()
    }

    /// Every bucket as `(upper bound in seconds, count)`, in order.
    pub fn dense(&self) -> Vec<(f64, u64)> {
        let mut out: Vec<(f64, u64)> = (0..Self::BUCKETS)
            .map(|i| (Self::upper_bound_s(i), 0))
            .collect();
        for &(i, n) in &self.buckets {
            if let Some(slot) = out.get_mut(usize::from(i)) {
                slot.1 += n;
            }
        }
        out
    }
}

/// How many members a node's membership holds, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberCounts {
    /// Alive.
    pub alive: u64,
    /// Suspected.
    pub suspect: u64,
    /// Declared down.
    pub down: u64,
    /// Left on purpose.
    pub left: u64,
}

/// One link, as the Links view lists it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkView {
    /// The node at this end, hex id.
    pub node: String,
    /// The peer, hex id.
    pub peer: String,
    /// The peer's certificate name.
    pub peer_name: String,
    /// The peer's certificate roles.
    pub peer_roles: Vec<String>,
    /// The socket's remote address.
    pub addr: String,
    /// The relay it runs through (hex id), if relayed.
    pub via: Option<String>,
    /// This node dialed it.
    pub dialed: bool,
    /// Seconds since the handshake.
    pub age_s: f64,
    /// The last heartbeat's round trip, microseconds (none yet: 0).
    pub rtt_us: f64,
    /// Envelopes received (tells, asks, replies).
    pub msgs_in: u64,
    /// Envelopes written.
    pub msgs_out: u64,
    /// Ciphertext bytes read.
    pub bytes_in: u64,
    /// Ciphertext bytes written.
    pub bytes_out: u64,
    /// Bytes queued for the writer now.
    pub queue_bytes: u64,
    /// The Noise suite.
    pub cipher: String,
}

/// A link that closed, and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClosedLink {
    /// The peer, hex id.
    pub peer: String,
    /// Its certificate name.
    pub peer_name: String,
    /// When, Unix milliseconds.
    pub at_ms: u64,
    /// Why.
    pub reason: String,
    /// A failure (error, timeout) rather than a goodbye.
    pub failed: bool,
    /// How long it had been up, seconds.
    pub age_s: f64,
}

/// Something that happened on a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    /// Its sequence number on its node.
    pub seq: u64,
    /// When, Unix milliseconds.
    pub at_ms: u64,
    /// The node it happened on, hex id.
    pub node: String,
    /// member, restart, failed, placed, moved, drain, drain refused or
    /// refused.
    pub kind: String,
    /// What it is about (a member, an actor, a message tag).
    pub subject: String,
    /// What happened.
    pub detail: String,
}

/// A service instance as one node's load balancer sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceView {
    /// The node whose balancer this is, hex id.
    pub node: String,
    /// The service.
    pub service: String,
    /// The instance's node, hex id.
    pub instance_node: String,
    /// The actor name there.
    pub actor: String,
    /// Requests from this node in flight to it.
    pub outstanding: u32,
    /// Requests this node sent it.
    pub sent: u64,
    /// Its latency as this node sees it (EWMA, fading), microseconds.
    pub latency_us: f64,
    /// This node ejected it after a link failure (probed until it answers).
    pub ejected: bool,
}

/// One traced message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceEntry {
    /// Its sequence number in the actor's trace.
    pub seq: u64,
    /// When it was handled, Unix milliseconds.
    pub at_ms: u64,
    /// The message's type tag.
    pub tag: String,
    /// The sending node, hex id.
    pub from: String,
    /// Body bytes.
    pub bytes: u64,
    /// tell or ask.
    pub kind: String,
    /// Time in the mailbox, microseconds.
    pub waited_us: f64,
    /// Handler time, microseconds.
    pub handled_us: f64,
    /// handled, or why it failed.
    pub result: String,
}
