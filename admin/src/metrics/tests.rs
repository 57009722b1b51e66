use swarm_actors::inspect::{ActorView, Durations, LinkView, MemberCounts};
use swarm_actors::inspector::{NodeLocal, NodeSnapshot};

use super::exposition;

fn snapshot(messages: u64) -> NodeSnapshot {
    NodeSnapshot {
        node: NodeLocal {
            name: "n1".into(),
            uptime_s: 42,
            actors: 1,
            links: 1,
            members: MemberCounts {
                alive: 3,
                suspect: 1,
                ..MemberCounts::default()
            },
            ..NodeLocal::default()
        },
        actors: vec![ActorView {
            name: "ledger".into(),
            type_name: "demo.Ledger".into(),
            node_name: "n1".into(),
            messages,
            backlog: 3,
            handling_p99_us: 12.5,
            tracing: true,
            // Two messages of about 1 µs, one of about 10 µs.
            handling: Durations {
                sum_ns: 12_000,
                buckets: vec![(7, 2), (14, 1)],
            },
            ..ActorView::default()
        }],
        links: vec![LinkView {
            peer_name: "n2".into(),
            msgs_in: 7,
            bytes_out: 900,
            rtt_us: 55.0,
            ..LinkView::default()
        }],
        ..NodeSnapshot::default()
    }
}

/// One parsed sample: metric, sorted labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// The samples of a parsed exposition.
fn samples(text: &str) -> Vec<Sample> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("a Prometheus text parser reads it");
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            };
            let mut labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            (s.metric, labels, value)
        })
        .collect()
}

fn value(samples: &[Sample], metric: &str, label: &str) -> Option<f64> {
    samples
        .iter()
        .find(|(m, l, _)| m == metric && l.iter().any(|(_, v)| v == label))
        .map(|s| s.2)
}

#[test]
fn every_numeric_field_of_the_data_model_is_a_metric_a_parser_reads() {
    let text = exposition(&snapshot(5));
    let s = samples(&text);
    assert_eq!(
        value(&s, "swarm_actor_messages_total", "ledger"),
        Some(5.0),
        "{text}"
    );
    assert_eq!(value(&s, "swarm_actor_backlog", "ledger"), Some(3.0));
    assert_eq!(
        value(&s, "swarm_actor_handling_p99_us", "ledger"),
        Some(12.5)
    );
    assert_eq!(value(&s, "swarm_actor_tracing", "ledger"), Some(1.0));
    assert_eq!(value(&s, "swarm_link_msgs_in_total", "n2"), Some(7.0));
    assert_eq!(value(&s, "swarm_link_bytes_out_total", "n2"), Some(900.0));
    assert_eq!(value(&s, "swarm_link_rtt_us", "n2"), Some(55.0));
    assert_eq!(value(&s, "swarm_node_uptime_s", "n1"), Some(42.0));
    assert_eq!(value(&s, "swarm_mesh_forbidden_total", "n1"), Some(0.0));
    // Labels name the row.
    let labels = &s
        .iter()
        .find(|(m, _, _)| m == "swarm_actor_messages_total")
        .unwrap()
        .1;
    let names: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["actor", "node", "type"]);
    // Counters are declared as such.
    assert!(
        text.contains("# TYPE swarm_actor_messages counter"),
        "{text}"
    );
    assert!(text.contains("# TYPE swarm_actor_backlog gauge"));
}

#[test]
fn counters_move_with_traffic() {
    let before = samples(&exposition(&snapshot(5)));
    let after = samples(&exposition(&snapshot(9)));
    let get = |s: &[_]| value(s, "swarm_actor_messages_total", "ledger");
    assert_eq!((get(&before), get(&after)), (Some(5.0), Some(9.0)));
}

#[test]
fn handler_times_are_a_histogram_and_membership_a_gauge_per_state() {
    let text = exposition(&snapshot(5));
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    let histogram = scrape
        .samples
        .iter()
        .find(|s| s.metric == "swarm_actor_handling_seconds")
        .unwrap_or_else(|| panic!("no histogram in\n{text}"));
    assert_eq!(histogram.labels.get("actor"), Some("ledger"));
    let prometheus_parse::Value::Histogram(buckets) = &histogram.value else {
        panic!("not a histogram: {:?}", histogram.value);
    };
    assert_eq!(buckets.len(), Durations::BUCKETS);
    let upto = |seconds: f64| {
        buckets
            .iter()
            .filter(|b| b.less_than <= seconds)
            .map(|b| b.count)
            .fold(0.0, f64::max)
    };
    // Cumulative: both 1 µs messages under 2 µs, all three under 20 µs.
    assert_eq!(upto(2e-6), 2.0, "{text}");
    assert_eq!(upto(20e-6), 3.0);
    assert!(text.contains("swarm_actor_handling_seconds_sum{"), "{text}");
    assert!(
        text.contains("swarm_actor_handling_seconds_count{"),
        "{text}"
    );
    let s = samples(&text);
    assert_eq!(value(&s, "swarm_members_alive", "n1"), Some(3.0));
    assert_eq!(value(&s, "swarm_members_suspect", "n1"), Some(1.0));
}

#[test]
fn journal_totals_are_counters_and_histograms_by_backend_only() {
    use swarm_actors::inspect::JournalTotals;
    let mut snap = snapshot(5);
    snap.journals = vec![JournalTotals {
        backend: "embedded".into(),
        events: 12,
        bytes: 3_000,
        recoveries: 2,
        fenced: 1,
        writes: Durations {
            sum_ns: 12_000,
            buckets: vec![(7, 2), (14, 1)],
        },
        ..JournalTotals::default()
    }];
    let text = exposition(&snap);
    let s = samples(&text);
    assert_eq!(
        value(&s, "swarm_journal_events_total", "embedded"),
        Some(12.0),
        "{text}"
    );
    assert_eq!(
        value(&s, "swarm_journal_bytes_total", "embedded"),
        Some(3000.0)
    );
    assert_eq!(
        value(&s, "swarm_journal_recoveries_total", "embedded"),
        Some(2.0)
    );
    assert_eq!(
        value(&s, "swarm_journal_fenced_total", "embedded"),
        Some(1.0)
    );
    assert!(
        text.contains("swarm_journal_write_seconds_count{"),
        "{text}"
    );
    assert!(text.contains("swarm_journal_recovery_seconds_count{"));
    assert!(text
        .lines()
        .filter(|l| l.starts_with("swarm_journal"))
        .all(|l| l.contains("backend=\"embedded\"") && !l.contains("actor=")));
}
