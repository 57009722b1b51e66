//! What each node's durable actors report of their journals: one row per
//! running durable actor (backend, epoch, claim, how far it got, its last
//! snapshot, its recovery time, what it wrote and how fast) and each
//! backend's totals since the node started. Each [`super::Journal`]
//! updates its own row as it recovers and writes; the inspector reads the
//! table ([`report`]) into its snapshot: the console's and dashboard's
//! actor detail and `/metrics`.
//!
//! Bounded: a row per durable actor the node runs (removed when the
//! actor's journal handle drops) and a totals entry per backend.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use swarm_protocol::NodeId;

use crate::inspect::histogram::Histogram;
use crate::inspect::{JournalTotals, JournalView};

/// One node's table.
#[derive(Default)]
pub(crate) struct Status {
    /// By actor name: the row and the token of the journal handle that
    /// owns it (a restarted incarnation's handle replaces it).
    actors: Mutex<HashMap<String, (u64, Row)>>,
    backends: Mutex<BTreeMap<&'static str, Totals>>,
}

/// A durable actor's row.
struct Row {
    view: JournalView,
    writes: Histogram,
}

/// A backend's totals.
#[derive(Default)]
struct Totals {
    events: u64,
    bytes: u64,
    snapshots: u64,
    recoveries: u64,
    fenced: u64,
    failed: u64,
    writes: Histogram,
    recovery: Histogram,
}

/// How a journal write ended, for the totals.
pub(crate) enum Outcome {
    /// Written: events and bytes.
    Written { events: u64, bytes: u64 },
    /// Refused as fenced.
    Fenced,
    /// Failed otherwise.
    Failed,
}

type Tables = RwLock<HashMap<NodeId, Arc<Status>>>;

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(Tables::default)
}

/// `node`'s table (created at first use).
pub(crate) fn status_of(node: NodeId) -> Arc<Status> {
    if let Some(s) = tables()
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&node)
    {
        return Arc::clone(s);
    }
    Arc::clone(
        tables()
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(node)
            .or_default(),
    )
}

/// Forgets `node`'s table (it shut down).
pub(crate) fn forget(node: NodeId) {
    tables()
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&node);
}

/// A fresh token for a journal handle.
pub(crate) fn token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// What `node`'s durable actors report: each one's journal by name, and
/// each backend's totals.
pub fn report(node: NodeId) -> (HashMap<String, JournalView>, Vec<JournalTotals>) {
    let Some(status) = tables()
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&node)
        .cloned()
    else {
        return (HashMap::new(), Vec::new());
    };
    status.report()
}

impl Status {
    fn with_row(&self, name: &str, token: u64, f: impl FnOnce(&mut Row)) {
        let mut actors = self.actors.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((owner, row)) = actors.get_mut(name) {
            if *owner == token {
                f(row);
            }
        }
    }

    fn with_totals(&self, backend: &'static str, f: impl FnOnce(&mut Totals)) {
        let mut backends = self.backends.lock().unwrap_or_else(PoisonError::into_inner);
        f(backends.entry(backend).or_default());
    }

    /// An incarnation recovered: its row starts (replacing any other
    /// handle's under the name).
    pub(crate) fn recovered(
        &self,
        token: u64,
        name: &str,
        backend: &'static str,
        view: JournalView,
        took: Duration,
    ) {
        self.with_totals(backend, |t| {
            t.recoveries += 1;
            t.recovery.record(took);
        });
        self.actors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                name.to_owned(),
                (
                    token,
                    Row {
                        view,
                        writes: Histogram::default(),
                    },
                ),
            );
    }

    /// An event write ended after `took`; `last_seq` is the journal's
    /// last event after it.
    pub(crate) fn wrote(
        &self,
        token: u64,
        name: &str,
        backend: &'static str,
        outcome: &Outcome,
        took: Duration,
        last_seq: u64,
    ) {
        self.with_totals(backend, |t| match *outcome {
            Outcome::Written { events, bytes } => {
                t.events += events;
                t.bytes += bytes;
                t.writes.record(took);
            }
            Outcome::Fenced => t.fenced += 1,
            Outcome::Failed => t.failed += 1,
        });
        if let Outcome::Written { events, bytes } = *outcome {
            self.with_row(name, token, |row| {
                row.view.events += events;
                row.view.bytes += bytes;
                row.view.last_seq = last_seq;
                row.writes.record(took);
            });
        }
    }

    /// A snapshot write ended.
    pub(crate) fn snapshotted(
        &self,
        token: u64,
        name: &str,
        backend: &'static str,
        outcome: &Outcome,
        seq: u64,
    ) {
        self.with_totals(backend, |t| match *outcome {
            Outcome::Written { bytes, .. } => {
                t.snapshots += 1;
                t.bytes += bytes;
            }
            Outcome::Fenced => t.fenced += 1,
            Outcome::Failed => t.failed += 1,
        });
        if let Outcome::Written { bytes, .. } = *outcome {
            self.with_row(name, token, |row| {
                row.view.bytes += bytes;
                row.view.snapshot_seq = seq;
                row.view.snapshot_at_ms = crate::inspect::unix_now_ms();
            });
        }
    }

    /// A journal handle dropped: its row goes (unless another's replaced it).
    pub(crate) fn gone(&self, token: u64, name: &str) {
        let mut actors = self.actors.lock().unwrap_or_else(PoisonError::into_inner);
        if actors.get(name).is_some_and(|(owner, _)| *owner == token) {
            actors.remove(name);
        }
    }

    fn report(&self) -> (HashMap<String, JournalView>, Vec<JournalTotals>) {
        let actors = self
            .actors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, (_, row))| {
                let writes = row.writes.snapshot();
                let mut view = row.view.clone();
                view.write_p50_us = writes.quantile(0.5) / 1e3;
                view.write_p99_us = writes.quantile(0.99) / 1e3;
                (name.clone(), view)
            })
            .collect();
        let totals = self
            .backends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(backend, t)| JournalTotals {
                backend: (*backend).to_owned(),
                events: t.events,
                bytes: t.bytes,
                snapshots: t.snapshots,
                recoveries: t.recoveries,
                fenced: t.fenced,
                failed: t.failed,
                writes: t.writes.snapshot().durations(),
                recovery: t.recovery.snapshot().durations(),
            })
            .collect();
        (actors, totals)
    }
}
