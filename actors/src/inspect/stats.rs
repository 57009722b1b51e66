//! Per-actor counters kept where messages already pass: the dispatcher
//! counts what it hands an actor, and a sampled message ([`Timed`]) times
//! its own handling inside the actor. Only one sample per actor is in
//! flight at a time, so an idle actor has every message timed and a
//! saturated one about one per mailbox's worth, and the unsampled rest
//! travel as they always did.
//!
//! Each side writes its own cache line: the dispatchers' counters, and the
//! actor's (what it handled, the timing histograms). Readers (the
//! `swarm.inspect` actor) only load.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use actix::dev::{MessageResponse, OneshotSender};
use actix::{Actor, Message};
use swarm_protocol::NodeId;

use super::histogram::Histogram;
use super::model::TraceEntry;

/// The most trace entries an actor keeps; older ones are dropped.
pub(crate) const TRACE_CAPACITY: usize = 1024;

/// One actor incarnation's counters.
#[derive(Default)]
pub(crate) struct ActorStats {
    dispatch: DispatchSide,
    actor: ActorSide,
    /// The trace of sampled messages, while tracing is on.
    trace: Mutex<TraceRing>,
    /// The sequence number the last probe carried (written by inspections).
    probed: AtomicU64,
}

/// Written by the dispatchers (link readers).
#[derive(Default)]
#[repr(align(128))]
struct DispatchSide {
    /// Messages handed to the mailbox (tells and asks); also the sequence
    /// number of the last one.
    messages: AtomicU64,
    /// Asks among them.
    asks: AtomicU64,
    /// Messages that failed: did not decode, unknown tag, actor gone, or
    /// an ask answered with an error.
    errors: AtomicU64,
    /// The sequence number of the last sampled message.
    sampled: AtomicU64,
    /// Off: nothing is counted (benchmarks compare).
    off: AtomicBool,
    /// Tracing: every sampled message leaves a trace entry.
    tracing: AtomicBool,
}

/// Written by the actor while it handles sampled messages.
#[derive(Default)]
#[repr(align(128))]
struct ActorSide {
    /// The sequence number of the newest sampled message (or probe)
    /// handled: everything before it in the mailbox was handled too.
    handled: AtomicU64,
    /// How long sampled handlers ran.
    handling: Histogram,
    /// How long sampled messages waited in the mailbox.
    waiting: Histogram,
}

#[derive(Default)]
struct TraceRing {
    entries: VecDeque<Traced>,
    /// Entries ever recorded (the next one's sequence number).
    recorded: u64,
}

/// A trace entry as kept: no allocation per message; made a
/// [`TraceEntry`] when read.
struct Traced {
    seq: u64,
    at_ms: u64,
    note: TraceNote,
    waited: std::time::Duration,
    handled: std::time::Duration,
}

/// What the dispatcher decided for one message.
pub(crate) enum Sample {
    /// Deliver it as it is.
    Plain,
    /// Deliver it wrapped in a [`Timed`] with this clock.
    Timed(Clock),
}

/// What a counters reader sees.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct StatsSnapshot {
    pub(crate) messages: u64,
    pub(crate) asks: u64,
    pub(crate) errors: u64,
    pub(crate) backlog: u64,
    pub(crate) handling_p50_us: f64,
    pub(crate) handling_p99_us: f64,
    pub(crate) waiting_p99_us: f64,
    pub(crate) samples: u64,
    pub(crate) handling: super::histogram::HistogramSnapshot,
}

impl ActorStats {
    /// Turns counting off or on (a node's `inspect.counters`).
    pub(crate) fn set_off(&self, off: bool) {
        self.dispatch.off.store(off, Ordering::Relaxed);
    }

    /// Starts or stops tracing this actor's messages.
    pub(crate) fn set_tracing(&self, on: bool) {
        self.dispatch.tracing.store(on, Ordering::Relaxed);
        if !on {
            let mut ring = self.trace.lock().unwrap_or_else(PoisonError::into_inner);
            ring.entries.clear();
        }
    }

    pub(crate) fn tracing(&self) -> bool {
        self.dispatch.tracing.load(Ordering::Relaxed)
    }

    /// Counts a message about to be delivered and decides whether it
    /// travels timed.
    pub(crate) fn dispatched(
        self: &Arc<Self>,
        ask: bool,
        trace: impl FnOnce() -> TraceNote,
    ) -> Sample {
        let d = &self.dispatch;
        if d.off.load(Ordering::Relaxed) {
            return Sample::Plain;
        }
        let seq = d.messages.fetch_add(1, Ordering::Relaxed) + 1;
        if ask {
            d.asks.fetch_add(1, Ordering::Relaxed);
        }
        // One sample in flight at a time: the previous one was handled.
        if self.actor.handled.load(Ordering::Relaxed) < d.sampled.load(Ordering::Relaxed) {
            return Sample::Plain;
        }
        d.sampled.store(seq, Ordering::Relaxed);
        let note = d.tracing.load(Ordering::Relaxed).then(trace);
        Sample::Timed(Clock {
            stats: Arc::clone(self),
            seq,
            queued: Instant::now(),
            note,
        })
    }

    /// Messages handed to the mailbox so far, and whether everything
    /// before the last probe (or sample) handled was all of them; `None`
    /// while counting is off (nothing to tell idleness by).
    pub(crate) fn activity(&self) -> Option<(u64, bool)> {
        let d = &self.dispatch;
        if d.off.load(Ordering::Relaxed) {
            return None;
        }
        let messages = d.messages.load(Ordering::Relaxed);
        let handled = self.actor.handled.load(Ordering::Relaxed);
        Some((messages, handled >= messages))
    }

    /// Counts a failed message.
    pub(crate) fn failed(&self) {
        if !self.dispatch.off.load(Ordering::Relaxed) {
            self.dispatch.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A probe for the mailbox: once the actor handles it, everything
    /// dispatched before it was handled. `None` when there is nothing to
    /// learn (everything counted is handled) or the last probe is still
    /// on its way: an actor that is stuck holds one probe, not one per
    /// inspection.
    pub(crate) fn probe(self: &Arc<Self>) -> Option<Probe> {
        let seq = self.dispatch.messages.load(Ordering::Relaxed);
        let handled = self.actor.handled.load(Ordering::Relaxed);
        if handled >= seq || handled < self.probed.load(Ordering::Relaxed) {
            return None;
        }
        self.probed.store(seq, Ordering::Relaxed);
        Some(Probe {
            stats: Arc::clone(self),
            seq,
            marker: None,
        })
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let d = &self.dispatch;
        let messages = d.messages.load(Ordering::Relaxed);
        let handled = self.actor.handled.load(Ordering::Relaxed);
        let handling = self.actor.handling.snapshot();
        StatsSnapshot {
            messages,
            asks: d.asks.load(Ordering::Relaxed),
            errors: d.errors.load(Ordering::Relaxed),
            backlog: messages.saturating_sub(handled),
            handling_p50_us: handling.quantile(0.5) / 1e3,
            handling_p99_us: handling.quantile(0.99) / 1e3,
            waiting_p99_us: self.actor.waiting.snapshot().quantile(0.99) / 1e3,
            samples: handling.count(),
            handling,
        }
    }

    /// Trace entries recorded after `after` (a sequence number), oldest first.
    pub(crate) fn trace_since(&self, after: u64) -> Vec<TraceEntry> {
        let ring = self.trace.lock().unwrap_or_else(PoisonError::into_inner);
        ring.entries
            .iter()
            .filter(|e| e.seq > after)
            .map(|e| TraceEntry {
                seq: e.seq,
                at_ms: e.at_ms,
                tag: e.note.tag.to_owned(),
                from: e.note.from.to_string(),
                bytes: e.note.bytes as u64,
                kind: if e.note.ask { "ask" } else { "tell" }.to_owned(),
                waited_us: e.waited.as_secs_f64() * 1e6,
                handled_us: e.handled.as_secs_f64() * 1e6,
                result: "handled".to_owned(),
            })
            .collect()
    }

    fn handled(&self, seq: u64) {
        self.actor.handled.fetch_max(seq, Ordering::Relaxed);
    }

    fn record(&self, mut entry: Traced) {
        let mut ring = self.trace.lock().unwrap_or_else(PoisonError::into_inner);
        ring.recorded += 1;
        entry.seq = ring.recorded;
        if ring.entries.len() == TRACE_CAPACITY {
            ring.entries.pop_front();
        }
        ring.entries.push_back(entry);
    }
}

/// What a traced message looked like when it arrived.
pub(crate) struct TraceNote {
    pub(crate) tag: &'static str,
    pub(crate) from: NodeId,
    pub(crate) bytes: usize,
    pub(crate) ask: bool,
}

/// A sampled message's stopwatch: started when it was dispatched, read
/// when the actor takes it and when its handler returns.
pub(crate) struct Clock {
    stats: Arc<ActorStats>,
    seq: u64,
    queued: Instant,
    note: Option<TraceNote>,
}

impl Clock {
    fn finish(mut self, started: Instant) {
        let now = Instant::now();
        let waited = started.saturating_duration_since(self.queued);
        let took = now.saturating_duration_since(started);
        let side = &self.stats.actor;
        side.waiting.record(waited);
        side.handling.record(took);
        if let Some(note) = self.note.take() {
            self.stats.record(Traced {
                seq: 0,
                at_ms: super::unix_now_ms(),
                note,
                waited,
                handled: took,
            });
        }
    }
}

/// However a sampled message ends (handled, or dropped with a stopped
/// actor's mailbox), the next one may be sampled.
impl Drop for Clock {
    fn drop(&mut self) {
        self.stats.handled(self.seq);
    }
}

/// A message on its way to an actor with a stopwatch. `remote_actor!`
/// implements its handler for every declared message type; nothing else
/// sends or handles it.
#[doc(hidden)]
pub struct Timed<M> {
    msg: M,
    clock: Clock,
}

impl<M> Timed<M> {
    pub(crate) fn new(msg: M, clock: Clock) -> Self {
        Self { msg, clock }
    }

    /// The message, untimed.
    pub(crate) fn into_inner(self) -> M {
        self.msg
    }

    /// Handles the message with `handle`, timing it.
    pub fn run<R>(self, handle: impl FnOnce(M) -> R) -> TimedResponse<R> {
        let started = Instant::now();
        let response = handle(self.msg);
        self.clock.finish(started);
        TimedResponse(response)
    }
}

impl<M: Message> Message for Timed<M> {
    type Result = M::Result;
}

/// A handler's response to a [`Timed`] message: the inner handler's,
/// unchanged.
#[doc(hidden)]
pub struct TimedResponse<R>(R);

impl<A, M, R> MessageResponse<A, Timed<M>> for TimedResponse<R>
where
    A: Actor,
    M: Message,
    R: MessageResponse<A, M>,
{
    fn handle(self, ctx: &mut A::Context, tx: Option<OneshotSender<M::Result>>) {
        self.0.handle(ctx, tx);
    }
}

/// Marks a point in an actor's mailbox: handled, it says everything sent
/// before it was handled. `remote_actor!` implements its handler.
#[doc(hidden)]
pub struct Probe {
    stats: Arc<ActorStats>,
    seq: u64,
    /// A hand-over's marker: told once the actor reached it.
    marker: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Probe {
    /// The actor reached the probe.
    pub fn reached(self) {
        self.stats.handled(self.seq);
        if let Some(marker) = self.marker {
            let _ = marker.send(());
        }
    }

    /// A marker for a hand-over (counted nowhere): `reached` tells
    /// `marker` that everything in the mailbox before it was handled.
    pub(crate) fn marker(marker: tokio::sync::oneshot::Sender<()>) -> Self {
        Self {
            stats: Arc::default(),
            seq: 0,
            marker: Some(marker),
        }
    }
}

impl Message for Probe {
    type Result = ();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_probe_at_a_time_and_none_when_all_is_handled() {
        let stats = Arc::new(ActorStats::default());
        assert!(stats.probe().is_none(), "nothing dispatched");
        let mut clocks = Vec::new();
        for _ in 0..3 {
            match stats.dispatched(false, || unreachable!("not tracing")) {
                Sample::Timed(clock) => clocks.push(clock),
                Sample::Plain => {}
            }
        }
        // The first was sampled; the others wait behind it.
        assert_eq!(clocks.len(), 1);
        let first = stats.probe().expect("two messages not known handled");
        assert!(stats.probe().is_none(), "the first probe is on its way");
        drop(clocks);
        first.reached();
        assert_eq!(stats.snapshot().backlog, 0);
        assert!(stats.probe().is_none(), "everything is handled");
        // Held: a message in the mailbox, sampled, not yet handled.
        let _pending = stats.dispatched(false, || unreachable!("not tracing"));
        assert!(stats.probe().is_some());
        assert_eq!(stats.snapshot().backlog, 1);
    }
}
