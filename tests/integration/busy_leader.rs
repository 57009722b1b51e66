//! A head leader whose own thread is too busy to run anything else (as
//! thousands of lease renewals on a starved machine keep it) keeps its
//! leadership: its Raft and its links to the other heads run on a thread
//! of their own, so the followers keep hearing its heartbeats, no election
//! runs, and the nodes keep their leases.

use std::time::Duration;

use swarm_cli::demo::Deposit;

use crate::control_faults::leader_of;
use crate::util::{control_cluster, eventually, ledger_on, on, scratch, sees_alive, TestNode};

/// Each head's term and role as it answers, `None` for a head that did
/// not.
async fn terms(control: &swarm::control::Control) -> Vec<Option<(u64, String)>> {
    let mut rows: Vec<_> = control.head_status().await;
    rows.sort_by_key(|(node, _)| *node);
    rows.into_iter()
        .map(|(_, row)| row.ok().map(|r| (r.term, r.role)))
        .collect()
}

/// Blocks `node`'s thread for `stall` (the injected fault: a thread too
/// busy to run anything else), `times` times; in between, waits until
/// every node of `all` sees every member alive again (the stalled node's
/// membership refuted any suspicion, its links read what waited).
async fn stall(node: &TestNode, all: &[TestNode], stall: Duration, times: usize) {
    for _ in 0..times {
        on(&node.arbiter, move || std::thread::sleep(stall)).await;
        for n in all {
            assert!(
                eventually(Duration::from_secs(10), || sees_alive(&n.node, all.len())).await,
                "a member stayed suspected after a stall"
            );
        }
    }
}

#[actix_rt::test]
async fn a_head_leader_whose_thread_is_busy_keeps_its_leadership() {
    busy_leader("busy-leader", Duration::from_millis(800), 3).await;
}

/// Longer and more stalls (`cargo test -p swarm-cli --test integration
/// busy_leader::stress_ -- --ignored`).
#[actix_rt::test]
#[ignore]
async fn stress_a_head_leader_whose_thread_is_busy_keeps_its_leadership() {
    busy_leader("busy-leader-stress", Duration::from_millis(1_000), 20).await;
}

/// Stalls the leader's node thread `times` times for `each` (longer
/// than the election timeout's upper bound, 600 ms: a Raft on that thread
/// would lose its followers each time), and checks that no head's term
/// moved and the worker's lease held throughout.
async fn busy_leader(name: &str, each: Duration, times: usize) {
    let dir = scratch(name);
    let (_ca, nodes) = control_cluster(&dir, 3, 1, |_, _| {}).await;
    let worker = &nodes[3].node;
    let control = worker.control().unwrap().clone();
    let ledger = ledger_on(&control, "ledger", worker.id()).await;
    assert!(ledger.send(Deposit(1)).await.is_ok());
    let leader = leader_of(&control, &nodes).await;
    let before = terms(&control).await;
    assert!(before.iter().all(Option::is_some), "{before:?}");

    stall(&nodes[leader], &nodes, each, times).await;

    assert_eq!(
        leader_of(&control, &nodes).await,
        leader,
        "the leadership moved"
    );
    let after = terms(&control).await;
    assert_eq!(
        before
            .iter()
            .map(|t| t.as_ref().map(|t| t.0))
            .collect::<Vec<_>>(),
        after
            .iter()
            .map(|t| t.as_ref().map(|t| t.0))
            .collect::<Vec<_>>(),
        "an election ran while the leader's thread was busy: {before:?} -> {after:?}"
    );
    // The worker kept its lease: its head-placed ledger never stopped.
    assert!(
        eventually(Duration::from_secs(5), || {
            let ledger = ledger.clone();
            async move { ledger.send(Deposit(1)).await.is_ok() }
        })
        .await,
        "the ledger stopped answering"
    );
    assert!(
        crate::control_faults::runs(worker, "ledger").await,
        "the worker stopped its ledger (its lease ran out)"
    );
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}
