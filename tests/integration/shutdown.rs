//! SIGTERM on real node processes: heads (Raft replicas with their redb
//! stores, one of them the leader) and workers leave, close and exit with
//! status 0 within 2 s, as the README promises: one at a time (a worker,
//! the leader, a follower, the last head alone) and all at once. (The
//! README test SIGTERMs a head serving the admin API.)

use std::time::{Duration, Instant};

use swarm_cli::local::{ChildNode, LocalCluster};

use crate::util::{driver, exe, exit_within, scratch, spawn_many, spawn_ready};

/// What the README promises: a node exits this soon after SIGTERM.
const WITHIN: Duration = Duration::from_secs(2);

/// Sends SIGTERM to `node`'s process; answers how long it took to exit,
/// asserting it exited with status 0 within [`WITHIN`].
pub(crate) fn terminate(mut node: ChildNode, what: &str) -> Duration {
    let pid = rustix::process::Pid::from_child(&node.child);
    let sent = Instant::now();
    rustix::process::kill_process(pid, rustix::process::Signal::Term).unwrap();
    let status = exit_within(&mut node.child, WITHIN + Duration::from_secs(8));
    let took = sent.elapsed();
    let _ = node.child.kill();
    let _ = node.child.wait();
    eprintln!(
        "{what} {}: exited {status:?} {took:?} after SIGTERM",
        node.name
    );
    let status =
        status.unwrap_or_else(|| panic!("{what} {} still runs 10 s after SIGTERM", node.name));
    assert!(status.success(), "{what} {}: {status}", node.name);
    assert!(
        took < WITHIN,
        "{what} {} took {took:?} to exit after SIGTERM",
        node.name
    );
    took
}

#[actix_rt::test]
async fn heads_and_workers_exit_with_status_0_within_2_s_of_sigterm() {
    let mut cluster = LocalCluster::start_control(&exe(), &scratch("sigterm"), 3, 2, &[]).unwrap();
    cluster.remove_dir_on_drop(true);
    let driver = driver(&cluster).await;
    let control = driver.control().unwrap().clone();
    // A log with entries in every store, and named actors on every node.
    spawn_ready(&control, || {
        swarm::control::Spawn::<swarm_cli::demo::Ledger>::named("first")
            .args(swarm_cli::demo::LedgerArgs { opening: 0 })
    })
    .await;
    assert!(spawn_many(&control, 500, 16, 3).await > 0);
    let leader = crate::util::leader(&control).await.expect("a leader");
    let leader = cluster
        .nodes
        .iter()
        .find(|n| n.id == leader)
        .map(|n| n.name.clone())
        .unwrap();
    let take = |cluster: &mut LocalCluster, name: &str| {
        let i = cluster.nodes.iter().position(|n| n.name == name).unwrap();
        cluster.nodes.remove(i)
    };
    // A worker, then the leader while its followers run, then a follower
    // with a quorum left, then the last head alone.
    terminate(take(&mut cluster, "n5"), "worker");
    terminate(take(&mut cluster, &leader), "leading head");
    while let Some(node) = cluster.nodes.pop() {
        terminate(node, "node");
    }
    driver.close().await;
}

#[actix_rt::test]
async fn a_whole_cluster_sigtermed_at_once_exits_with_status_0_within_2_s() {
    let mut cluster =
        LocalCluster::start_control(&exe(), &scratch("sigterm-all"), 3, 1, &[]).unwrap();
    cluster.remove_dir_on_drop(true);
    let driver = driver(&cluster).await;
    let control = driver.control().unwrap().clone();
    spawn_ready(&control, || {
        swarm::control::Spawn::<swarm_cli::demo::Ledger>::named("first")
            .args(swarm_cli::demo::LedgerArgs { opening: 0 })
    })
    .await;
    assert!(spawn_many(&control, 100, 8, 3).await > 0);
    // As a terminal's Ctrl-C or a machine's shutdown does: every process
    // at once, so no head finds a peer to leave to.
    let mut nodes = std::mem::take(&mut cluster.nodes);
    let sent = Instant::now();
    for node in &nodes {
        let pid = rustix::process::Pid::from_child(&node.child);
        rustix::process::kill_process(pid, rustix::process::Signal::Term).unwrap();
    }
    for node in &mut nodes {
        let status = exit_within(&mut node.child, WITHIN + Duration::from_secs(8));
        let took = sent.elapsed();
        eprintln!("{}: exited {status:?} {took:?} after SIGTERM", node.name);
        let _ = node.child.kill();
        let _ = node.child.wait();
        let status =
            status.unwrap_or_else(|| panic!("{} still runs 10 s after SIGTERM", node.name));
        assert!(status.success(), "{}: {status}", node.name);
        assert!(
            took < WITHIN,
            "{} took {took:?} to exit after SIGTERM",
            node.name
        );
    }
    driver.close().await;
}
