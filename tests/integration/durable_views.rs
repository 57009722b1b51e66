//! What operators see of durable actors: the hosting node's inspection
//! carries each durable actor's journal (backend, epoch, claim, last
//! sequence, last snapshot, recovery time, what it wrote) and its
//! backend's totals, and `/metrics` exports those totals by backend (never
//! by actor), moving as the actor persists.

use std::time::Duration;

use swarm::control::Spawn;
use swarm::inspect::{InspectMetrics, Inspector, JournalView, NodeSnapshot, INSPECT_ACTOR};
use swarm::supervision::Restart;
use swarm::AskError;
use swarm_cli::demo::{Crash, Deposit, Ledger, LedgerArgs};

use crate::durable::read_until_answered;
use crate::util::{control_cluster, scratch, spawn_ready};

/// The value of `metric` labelled `backend="embedded"` in `text`.
fn embedded(text: &str, metric: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(&format!("{metric}{{")) && l.contains("backend=\"embedded\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn journal<'a>(snapshot: &'a NodeSnapshot, name: &str) -> Option<&'a JournalView> {
    snapshot
        .actors
        .iter()
        .find(|a| a.name == name)
        .and_then(|a| a.durable.as_ref())
}

#[actix_rt::test]
async fn a_durable_actors_journal_shows_in_its_nodes_inspection_and_metrics_move_as_it_persists() {
    let dir = scratch("durable-views");
    let (_ca, nodes) = control_cluster(&dir, 1, 1, |_, _| {}).await;
    let control = nodes[1].node.control().unwrap().clone();
    let ledger = spawn_ready(&control, || {
        Spawn::<Ledger>::named("seen")
            .args(LedgerArgs { opening: 0 })
            .restart(Restart::on_failure())
    })
    .await;
    let first = read_until_answered(&ledger, Duration::from_secs(10)).await;
    let host = nodes
        .iter()
        .find(|n| n.node.id() == first.node)
        .expect("the ledger runs on one of the nodes");
    let inspector = nodes[0]
        .node
        .remote::<Inspector>(host.node.id(), INSPECT_ACTOR);
    let inspect = || async { inspector.send(InspectMetrics).await.unwrap() };

    let before = inspect().await;
    let view = journal(&before, "seen").expect("the ledger's journal is listed");
    assert_eq!(view.backend, "embedded");
    assert_eq!(view.epoch, first.epoch);
    assert!(view.claim >= 1, "{view:?}");
    assert_eq!((view.last_seq, view.snapshot_seq, view.events), (0, 0, 0));
    assert!(view.recovery_ms > 0.0, "{view:?}");
    let text = swarm_admin::metrics::exposition(&before);
    let recoveries = embedded(&text, "swarm_journal_recoveries_total").unwrap();
    assert!(recoveries >= 1.0, "{text}");
    let events_before = embedded(&text, "swarm_journal_events_total").unwrap();
    // Bounded: journal metrics carry no actor label.
    assert!(
        text.lines()
            .filter(|l| l.starts_with("swarm_journal_"))
            .all(|l| !l.contains("actor=")),
        "{text}"
    );
    // Not a durable actor: no journal.
    assert!(journal(&before, "swarm.inspect").is_none());

    // 101 deposits: a snapshot at 100 (the ledger's default), one event after.
    for _ in 0..101 {
        ledger.send(Deposit(2)).await.unwrap();
    }
    let after = inspect().await;
    let view = journal(&after, "seen").unwrap();
    assert_eq!((view.last_seq, view.events), (101, 101), "{view:?}");
    assert_eq!(view.snapshot_seq, 100, "{view:?}");
    assert!(view.snapshot_at_ms > 0 && view.bytes > 0, "{view:?}");
    assert!(
        view.write_p50_us > 0.0 && view.write_p99_us >= view.write_p50_us,
        "{view:?}"
    );
    let text = swarm_admin::metrics::exposition(&after);
    assert_eq!(
        embedded(&text, "swarm_journal_events_total"),
        Some(events_before + 101.0),
        "{text}"
    );
    assert!(embedded(&text, "swarm_journal_bytes_total").unwrap() > 0.0);
    assert_eq!(embedded(&text, "swarm_journal_snapshots_total"), Some(1.0));
    assert_eq!(
        embedded(&text, "swarm_journal_write_seconds_count"),
        Some(101.0),
        "{text}"
    );
    assert_eq!(embedded(&text, "swarm_journal_fenced_total"), Some(0.0));

    // A restart after a panic: a new claim, recovered from the snapshot.
    assert_eq!(ledger.send(Crash).await, Err(AskError::ActorFailed));
    let again = read_until_answered(&ledger, Duration::from_secs(10)).await;
    assert_eq!(again.total, 202);
    let restarted = inspect().await;
    let next = journal(&restarted, "seen").unwrap();
    assert!(next.claim > view.claim, "{next:?} after {view:?}");
    assert_eq!(
        (next.last_seq, next.snapshot_seq, next.events),
        (101, 100, 0)
    );
    let text = swarm_admin::metrics::exposition(&restarted);
    assert_eq!(
        embedded(&text, "swarm_journal_recoveries_total"),
        Some(recoveries + 1.0)
    );
    assert_eq!(
        embedded(&text, "swarm_journal_recovery_seconds_count"),
        Some(recoveries + 1.0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
