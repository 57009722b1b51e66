//! A node's [`NodeSnapshot`] as metrics, in the OpenMetrics text format
//! Prometheus scrapes (written by `prometheus-client`, not by hand).
//!
//! Metrics follow the data model field by field: each numeric (or
//! boolean) field of an actor, a link, the node and its mesh counters is
//! `swarm_<kind>_<field>`, labelled by what identifies the row (node,
//! actor and type; node and peer). Fields that only grow are counters
//! (`_total`); the rest are gauges. Each actor's sampled handler times
//! are also a histogram, `swarm_actor_handling_seconds` (the inspection's
//! own buckets: two per power of two from 128 ns to ~34 s); membership
//! is `swarm_members_<state>` as this node sees it. Durable actors'
//! journals are `swarm_journal_*` by backend (never by actor: bounded):
//! `swarm_journal_write_seconds` (a histogram of event writes' time to
//! acknowledgement), `_recovery_seconds`, and the counters
//! `_events_total`, `_bytes_total`, `_snapshots_total`,
//! `_recoveries_total`, `_fenced_total`, `_failed_total`.

use std::collections::BTreeMap;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use swarm_actors::inspect::Durations;
use swarm_actors::inspector::NodeSnapshot;

type Labels = Vec<(String, String)>;

/// Fields that only grow, by row kind.
const COUNTERS: &[(&str, &[&str])] = &[
    (
        "actor",
        &["messages", "asks", "errors", "restarts", "samples"],
    ),
    ("link", &["msgs_in", "msgs_out", "bytes_in", "bytes_out"]),
    (
        "mesh",
        &[
            "relay_frames",
            "relay_bytes",
            "relay_refused",
            "datagrams_relayed",
            "datagrams_dropped",
            "handshakes_refused",
            "silent_dropped",
            "links_failed",
            "tells_dropped",
            "background_dials",
            "forbidden",
            "false_claims",
        ],
    ),
    ("tasks", &["finished", "failed", "submitted"]),
    (
        "journal",
        &[
            "events",
            "bytes",
            "snapshots",
            "recoveries",
            "fenced",
            "failed",
        ],
    ),
];

/// Collects rows into metric families, then registers them.
#[derive(Default)]
struct Families {
    counters: BTreeMap<String, Family<Labels, Counter>>,
    gauges: BTreeMap<String, Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>>,
}

impl Families {
    /// Every numeric or boolean field of `row` (a serialized data-model
    /// row) as a metric of `kind`, labelled `labels`.
    fn row(&mut self, kind: &str, row: &serde_json::Value, labels: &Labels) {
        let Some(fields) = row.as_object() else {
            return;
        };
        let counters = COUNTERS
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(&[][..], |(_, c)| *c);
        for (field, value) in fields {
            let number = match value {
                serde_json::Value::Number(n) => n.as_f64(),
                serde_json::Value::Bool(b) => Some(f64::from(u8::from(*b))),
                _ => None,
            };
            let Some(number) = number else {
                continue;
            };
            let name = format!("swarm_{kind}_{field}");
            if counters.contains(&field.as_str()) {
                let family = self.counters.entry(name).or_default();
                family.get_or_create(labels).inc_by(number as u64);
            } else {
                let family = self.gauges.entry(name).or_default();
                family.get_or_create(labels).set(number);
            }
        }
    }

    fn register(self, registry: &mut Registry) {
        for (name, family) in self.counters {
            let help = format!("{} (a counter of the node's inspection data)", name);
            registry.register(name, help, family);
        }
        for (name, family) in self.gauges {
            let help = format!("{} (from the node's inspection data)", name);
            registry.register(name, help, family);
        }
    }
}

/// Histograms recorded elsewhere (bucket counts as they are), one per
/// label set: encoded by `prometheus-client`'s histogram encoder.
#[derive(Debug, Default)]
struct Histograms(Vec<Recorded>);

/// One histogram: its labels, sum, count and `(upper bound, count)` buckets.
type Recorded = (Labels, f64, u64, Vec<(f64, u64)>);

impl Histograms {
    fn push(&mut self, labels: Labels, durations: &Durations) {
        let sum = durations.sum_ns as f64 / 1e9;
        self.0
            .push((labels, sum, durations.count(), durations.dense()));
    }
}

impl EncodeMetric for Histograms {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        for (labels, sum, count, buckets) in &self.0 {
            encoder
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The snapshot's metrics in the OpenMetrics text format.
pub fn exposition(snapshot: &NodeSnapshot) -> String {
    let mut families = Families::default();
    let node = snapshot.node.name.as_str();
    let value = |v: &dyn erased::Row| v.json();
    families.row("node", &value(&snapshot.node), &labels(&[("node", node)]));
    families.row(
        "mesh",
        &value(&snapshot.node.mesh),
        &labels(&[("node", node)]),
    );
    families.row(
        "members",
        &value(&snapshot.node.members),
        &labels(&[("node", node)]),
    );
    if let Some(head) = &snapshot.node.head {
        families.row("raft", &value(head), &labels(&[("node", node)]));
    }
    let mut handling = Histograms::default();
    for a in &snapshot.actors {
        let l = labels(&[("node", node), ("actor", &a.name), ("type", &a.type_name)]);
        families.row("actor", &value(a), &l);
        if !a.handling.is_empty() {
            handling.push(l, &a.handling);
        }
    }
    for l in &snapshot.links {
        let set = labels(&[("node", node), ("peer", &l.peer_name)]);
        families.row("link", &value(l), &set);
    }
    if let Some(tasks) = &snapshot.tasks {
        families.row("tasks", &value(tasks), &labels(&[("node", node)]));
    }
    // Durable actors' journals, by backend only (bounded: no actor label).
    let (mut writes, mut recovery) = (Histograms::default(), Histograms::default());
    for j in &snapshot.journals {
        let l = labels(&[("node", node), ("backend", &j.backend)]);
        families.row("journal", &value(j), &l);
        writes.push(l.clone(), &j.writes);
        recovery.push(l, &j.recovery);
    }
    let mut registry = Registry::default();
    families.register(&mut registry);
    if !handling.0.is_empty() {
        registry.register(
            "swarm_actor_handling_seconds",
            "Sampled handler times per actor (the inspection's buckets)",
            handling,
        );
    }
    if !writes.0.is_empty() {
        registry.register(
            "swarm_journal_write_seconds",
            "Durable actors' event writes, time to acknowledgement, by backend",
            writes,
        );
        registry.register(
            "swarm_journal_recovery_seconds",
            "Durable actors' recoveries (claim, snapshot and replay), by backend",
            recovery,
        );
    }
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}

mod erased {
    /// A data-model row, as JSON.
    pub(super) trait Row {
        fn json(&self) -> serde_json::Value;
    }

    impl<T: serde::Serialize> Row for T {
        fn json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
    }
}

#[cfg(test)]
mod tests;
