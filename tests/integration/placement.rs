//! Placement with real nodes (issue 23): named actors that ask for no
//! resources, under the default Pack, are balanced by count over the
//! workers, and the head takes none while a worker can.

use std::collections::BTreeMap;

use swarm::control::{Control, Spawn};
use swarm::placement::Placement;
use swarm_cli::demo::{Ledger, LedgerArgs};

use crate::util::{control_cluster, scratch, spawn_ready};

/// A demo ledger that asks for no resources, placed by the default.
fn ledger(name: String) -> Spawn<Ledger> {
    Spawn::<Ledger>::named(name).args(LedgerArgs { opening: 0 })
}

/// Spawns `names` with `lanes` spawns in flight; panics on any refusal.
async fn spawn_all(control: &Control, names: Vec<String>, lanes: usize) {
    let mut running = tokio::task::JoinSet::new();
    for lane in 0..lanes {
        let control = control.clone();
        let mine: Vec<String> = names.iter().skip(lane).step_by(lanes).cloned().collect();
        running.spawn_local(async move {
            for name in mine {
                if let Err(e) = control.spawn(ledger(name.clone())).await {
                    panic!("{name} not placed: {e}");
                }
            }
        });
    }
    while let Some(lane) = running.join_next().await {
        lane.unwrap();
    }
}

#[actix_rt::test]
async fn actors_that_ask_for_nothing_are_balanced_over_the_workers_and_skip_the_head() {
    let dir = scratch("placement-spread");
    let (_ca, nodes) = control_cluster(&dir, 1, 3, |_, _| {}).await;
    let control = nodes[1].node.control().unwrap().clone();
    let head = nodes[0].node.id();
    let workers: Vec<_> = nodes[1..].iter().map(|n| n.node.id()).collect();
    // Every worker holds a lease before the count starts: an actor pinned
    // to each is placed, then stopped (the counts are back to zero).
    for (i, worker) in workers.iter().enumerate() {
        let name = format!("probe{i}");
        spawn_ready(&control, || {
            ledger(name.clone()).placement(Placement::Node {
                node: *worker,
                hard: true,
            })
        })
        .await;
        control.stop(&name).await.unwrap();
    }

    // One at a time: exactly even.
    spawn_all(&control, (0..15).map(|i| format!("one{i:02}")).collect(), 1).await;
    let counts = per_node(&control).await;
    assert_eq!(counts.get(&head), None, "the head took some: {counts:?}");
    for worker in &workers {
        assert_eq!(counts.get(worker), Some(&5), "{counts:?}");
    }

    // A burst, 6 in flight: each decision sees the ones in flight.
    spawn_all(
        &control,
        (0..15).map(|i| format!("burst{i:02}")).collect(),
        6,
    )
    .await;
    let counts = per_node(&control).await;
    assert_eq!(counts.get(&head), None, "the head took some: {counts:?}");
    for worker in &workers {
        let n = counts.get(worker).copied().unwrap_or(0);
        assert!((8..=12).contains(&n), "about 10 each: {counts:?}");
    }
    assert_eq!(counts.values().sum::<usize>(), 30);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Placed actors per node, as the head records them.
async fn per_node(control: &Control) -> BTreeMap<swarm::NodeId, usize> {
    let mut counts = BTreeMap::new();
    for row in control.placed().await.unwrap() {
        *counts.entry(row.node).or_default() += 1;
    }
    counts
}
