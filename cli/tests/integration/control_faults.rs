//! Fencing and partitions, in one process with a fault-injecting transport
//! (`swarm::Faults`: the direct mesh path between two nodes drops
//! everything, as a firewall would; membership's UDP still flows, so only
//! the control plane's own evidence - leases - decides).
//!
//! - A worker cut off from the head quorum stops its head-placed actors
//!   before the majority places them again; after healing exactly one
//!   incarnation runs and a stale handle re-resolves.
//! - The minority side of a head partition cannot place anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm::control::{ControlError, Spawn};
use swarm::supervision::{Host, ListActors, HOST_ACTOR};
use swarm::{Faults, Node};
use swarm_cli::demo::{Deposit, Ledger, LedgerArgs};

use crate::util::{control_cluster, ledger_on, scratch, TestNode};

/// Cuts (or heals) the direct paths between `a` and each of `others`, both ways.
fn cut(faults: &[Arc<Faults>], nodes: &[TestNode], a: usize, others: &[usize], on: bool) {
    for &b in others {
        let (ida, idb) = (nodes[a].node.id(), nodes[b].node.id());
        if on {
            faults[a].block_direct(idb);
            faults[b].block_direct(ida);
        } else {
            faults[a].unblock_direct(idb);
            faults[b].unblock_direct(ida);
        }
    }
}

/// Whether `node` runs `name` (asked of its own host, locally).
async fn runs(node: &Node, name: &str) -> bool {
    let host = node.remote::<Host>(node.id(), HOST_ACTOR);
    host.send(ListActors)
        .await
        .is_ok_and(|rows| rows.iter().any(|r| r.name == name && r.state == "running"))
}

/// A cluster of 3 heads and 2 workers, each with its own fault switch,
/// with 1 s leases.
async fn faulty(dir: &std::path::Path) -> (Vec<TestNode>, Vec<Arc<Faults>>) {
    let mut faults = Vec::new();
    let (_ca, nodes) = control_cluster(dir, 3, 2, |_, c| {
        let f = Arc::new(Faults::default());
        c.faults = Some(f.clone());
        faults.push(f);
        if let Some(head) = c.head.as_mut() {
            head.lease = Duration::from_secs(1);
        }
    })
    .await;
    (nodes, faults)
}

#[actix_rt::test]
async fn a_worker_cut_off_from_the_heads_stops_its_actors_before_they_run_elsewhere() {
    let dir = scratch("control-fence");
    let (nodes, faults) = faulty(&dir).await;
    let worker = &nodes[3].node;
    let control = nodes[4].node.control().unwrap().clone();
    let (at, epoch) = ledger_on(&control, "ledger", worker.id())
        .await
        .location()
        .unwrap();
    assert_eq!(at, worker.id());
    // A handle made on the worker itself, which will go stale.
    let stale = worker
        .control()
        .unwrap()
        .lookup::<Ledger>("ledger")
        .await
        .unwrap();
    assert_eq!(stale.send(Deposit(1)).await.unwrap().epoch, epoch);
    let handle = control.lookup::<Ledger>("ledger").await.unwrap();

    cut(&faults, &nodes, 3, &[0, 1, 2], true);
    let cut_at = Instant::now();
    let mut stopped_at = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut poll = tokio::time::interval(Duration::from_millis(10));
    let moved = loop {
        poll.tick().await;
        // Checked before the new incarnation is looked for, each round.
        if stopped_at.is_none() && !runs(worker, "ledger").await {
            stopped_at = Some(cut_at.elapsed());
        }
        if let Ok(balance) = handle.send(Deposit(1)).await {
            if balance.node != worker.id() {
                break balance;
            }
        }
        assert!(Instant::now() < deadline, "the actor never moved");
    };
    let moved_at = cut_at.elapsed();
    let stopped_at = stopped_at.expect("the cut-off worker stopped it before it moved");
    eprintln!("fenced: stopped after {stopped_at:?}, answered elsewhere after {moved_at:?}");
    assert!(stopped_at < moved_at);
    assert!(moved.epoch > epoch);

    cut(&faults, &nodes, 3, &[0, 1, 2], false);
    // After healing: one incarnation; the stale handle is told, then re-resolves.
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        poll.tick().await;
        match stale.send(Deposit(1)).await {
            Ok(balance) if balance.epoch == moved.epoch => break,
            Ok(balance) => panic!("a stale incarnation answered: {balance:?}"),
            Err(e) => assert!(Instant::now() < deadline, "never re-resolved: {e}"),
        }
    }
    let mut running = 0;
    for n in &nodes {
        running += usize::from(runs(&n.node, "ledger").await);
    }
    assert_eq!(running, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn the_minority_side_of_a_head_partition_places_nothing() {
    let dir = scratch("control-minority");
    let (nodes, faults) = faulty(&dir).await;
    let control = nodes[4].node.control().unwrap().clone();
    ledger_on(&control, "warmup", nodes[4].node.id()).await;
    // Head n1 and worker n4 on one side; heads n2, n3 and worker n5 on the other.
    for (a, others) in [(0, vec![1, 2, 4]), (3, vec![1, 2, 4])] {
        cut(&faults, &nodes, a, &others, true);
    }
    let minority = nodes[3].node.control().unwrap();
    let refused = minority
        .spawn(Spawn::<Ledger>::named("minority").args(LedgerArgs { opening: 0 }))
        .await;
    assert!(
        matches!(
            refused,
            Err(ControlError::NoQuorum { .. } | ControlError::NoHead { .. })
        ),
        "got {refused:?}"
    );
    // The majority still places.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    loop {
        poll.tick().await;
        let spawn = Spawn::<Ledger>::named("majority").args(LedgerArgs { opening: 0 });
        match control.spawn(spawn).await {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "the majority never placed: {e}"),
        }
    }
    let names: Vec<String> = control
        .placed()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert!(names.contains(&"majority".to_owned()));
    assert!(!names.contains(&"minority".to_owned()));
    let _ = std::fs::remove_dir_all(&dir);
}
