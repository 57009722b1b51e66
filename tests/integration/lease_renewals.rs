//! Lease renewals at scale and under loss, with real nodes on 127.0.0.1:
//!
//! - Hundreds of lease holders (mesh-only nodes, each with its own
//!   certificate and real link to the head leader, speaking the real
//!   renewal protocol) all hold leases and keep renewing, while a placed
//!   actor keeps answering (thousands in the `stress_` variant).
//! - Grants lost on their way to a worker (its path from the leader cut
//!   one way, with `swarm::Faults`, while its renewals, deltas, still
//!   arrive) lose no stop: the actor stopped meanwhile never runs again,
//!   and the one that was not stopped runs again, once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Arbiter;
use swarm::control::{ControlError, LeaseHolder};
use swarm::credentials::Throwaway;
use swarm::{Faults, Node};
use swarm_cli::demo::Deposit;

use crate::control_faults::{leader_of, runs};
use crate::util::{config_with_roles, control_cluster, eventually, ledger_on, scratch};

#[actix_rt::test]
async fn hundreds_of_lease_holders_all_hold_leases_and_keep_renewing() {
    holders("holders", 200).await;
}

/// Thousands of holders (`cargo test -p swarm-cli --test integration
/// lease_renewals::stress_ -- --ignored`).
#[actix_rt::test]
#[ignore]
async fn stress_thousands_of_lease_holders_all_hold_leases_and_keep_renewing() {
    holders("holders-stress", 2_000).await;
}

/// `count` holders against 3 heads and 1 worker running a ledger: every
/// holder gets three grants, and the ledger answers throughout.
async fn holders(name: &str, count: usize) {
    let dir = scratch(name);
    let (ca, nodes) = control_cluster(&dir, 3, 1, |_, _| {}).await;
    let control = nodes[3].node.control().unwrap().clone();
    let ledger = ledger_on(&control, "ledger", nodes[3].node.id()).await;
    let leader = leader_of(&control, &nodes).await;
    let leader_addr = nodes[leader].node.listen_addr();

    let granted = Arc::new(AtomicUsize::new(0));
    let threads: Vec<Arbiter> = (0..2).map(|_| Arbiter::new()).collect();
    let connecting = Arc::new(tokio::sync::Semaphore::new(8));
    for i in 0..count {
        let config = holder_config(&ca, i);
        let (granted, connecting) = (granted.clone(), connecting.clone());
        threads[i % threads.len()].spawn(async move {
            let node = Node::start(config).await.expect("a holder starts");
            let control = loop {
                let _permit = connecting.acquire().await.unwrap();
                if let Ok(control) = node.control_through(leader_addr).await {
                    break control;
                }
            };
            let mut holder = LeaseHolder::new(control, node.id(), i as u64);
            let mut grants = 0;
            while grants < 3 {
                tokio::time::sleep(holder.wait()).await;
                match holder.renew().await {
                    Ok(_) => grants += 1,
                    Err(e) => tracing::debug!(error = %e, "a holder's renewal failed"),
                }
            }
            granted.fetch_add(1, Ordering::Relaxed);
            // Keeps its link (and lease) until the test ends.
            std::future::pending::<()>().await;
        });
    }
    let within = Duration::from_secs(30) + Duration::from_millis(count as u64 * 20);
    let all = eventually(within, || {
        let (granted, ledger) = (granted.clone(), ledger.clone());
        async move {
            assert!(ledger.send(Deposit(1)).await.is_ok(), "the ledger answers");
            granted.load(Ordering::Relaxed) == count
        }
    })
    .await;
    assert!(
        all,
        "{} of {count} holders got three grants",
        granted.load(Ordering::Relaxed)
    );
    for t in threads {
        t.stop();
    }
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn grants_lost_on_the_way_lose_no_stop_the_leader_took_meanwhile() {
    let dir = scratch("lost-grants");
    let mut faults = Vec::new();
    let (_ca, nodes) = control_cluster(&dir, 3, 2, |_, c| {
        let f = Arc::new(Faults::default());
        c.faults = Some(f.clone());
        faults.push(f);
        if let Some(head) = c.head.as_mut() {
            head.lease = Duration::from_secs(1);
        }
    })
    .await;
    let worker = &nodes[3].node;
    let control = nodes[4].node.control().unwrap().clone();
    let stopped = ledger_on(&control, "stopped", worker.id()).await;
    let kept = ledger_on(&control, "kept", worker.id()).await;
    assert!(stopped.send(Deposit(1)).await.is_ok());
    assert!(kept.send(Deposit(1)).await.is_ok());
    let leader = leader_of(&control, &nodes).await;

    // The leader's answers no longer reach the worker; its renewals
    // (deltas, then full reports) still reach the leader.
    faults[leader].block_direct(worker.id());
    // The stop's push to the worker is lost too; a retry of the call
    // finds the name gone.
    match control.stop("stopped").await {
        Ok(()) | Err(ControlError::NoSuchName { .. }) => {}
        Err(e) => panic!("the stop failed: {e}"),
    }
    // Without grants its lease runs out and it stops everything.
    assert!(
        eventually(Duration::from_secs(10), || async {
            !runs(worker, "stopped").await && !runs(worker, "kept").await
        })
        .await,
        "the worker never stopped its actors without grants"
    );
    faults[leader].unblock_direct(worker.id());

    assert!(
        eventually(Duration::from_secs(20), || {
            let kept = kept.clone();
            async move { kept.send(Deposit(1)).await.is_ok() }
        })
        .await,
        "the actor that was not stopped never ran again"
    );
    let mut incarnations = 0;
    for n in &nodes {
        assert!(
            !runs(&n.node, "stopped").await,
            "a stopped actor runs again"
        );
        incarnations += usize::from(runs(&n.node, "kept").await);
    }
    assert_eq!(incarnations, 1);
    assert!(matches!(
        control.resolve("stopped").await,
        Err(ControlError::NoSuchName { .. })
    ));
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A mesh-only node's configuration with its own worker certificate.
fn holder_config(ca: &Throwaway, i: usize) -> swarm::MeshConfig {
    config_with_roles(ca, &format!("holder{i}"), &["worker"])
}
