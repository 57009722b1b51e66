//! Control-plane operations in one process: escalation from local
//! supervision to the placement supervisor, placement groups (atomic),
//! and draining a node.

use std::time::{Duration, Instant};

use swarm::control::{ControlError, DrainOutcome, GroupRefusal, Spawn};
use swarm::placement::{GroupStrategy, Placement, PlacementError, ResourceSet};
use swarm::supervision::{Backoff, Restart};
use swarm::AskError;
use swarm_cli::demo::{Crash, Deposit, Ledger, LedgerArgs};

use crate::util::{control_cluster, eventually, ledger_on, scratch, spawn_ready};

fn crashy(name: &str) -> Spawn<Ledger> {
    Spawn::<Ledger>::named(name)
        .args(LedgerArgs { opening: 0 })
        .restart(
            Restart::on_failure()
                .max(1)
                .within(Duration::from_secs(60))
                .backoff(Backoff::exponential(
                    Duration::from_millis(10),
                    Duration::from_millis(10),
                )),
        )
}

/// Crashes it until its local supervisor escalates (two failures for max 1).
async fn crash_past_policy(named: &swarm::control::Named<Ledger>) {
    assert_eq!(named.send(Crash).await, Err(AskError::ActorFailed));
    // The restarted incarnation answers (fresh state), then fails again.
    assert!(
        eventually(Duration::from_secs(5), || {
            let named = named.clone();
            async move { named.send(Deposit(0)).await.is_ok() }
        })
        .await
    );
    assert_eq!(named.send(Crash).await, Err(AskError::ActorFailed));
}

#[actix_rt::test]
async fn past_its_restarts_an_actor_is_re_placed_elsewhere_or_marked_failed() {
    let dir = scratch("control-escalate");
    let (_ca, nodes) = control_cluster(&dir, 1, 2, |_, _| {}).await;
    let control = nodes[2].node.control().unwrap().clone();

    let moving = spawn_ready(&control, || crashy("moving")).await;
    let (first_node, first_epoch) = moving.location().unwrap();
    crash_past_policy(&moving).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    let moved = loop {
        poll.tick().await;
        if let Ok(balance) = moving.send(Deposit(1)).await {
            if balance.epoch > first_epoch {
                break balance;
            }
        }
        assert!(Instant::now() < deadline, "never re-placed");
    };
    assert_ne!(moved.node, first_node, "re-placed on another node");

    let failing = spawn_ready(&control, || crashy("failing").fail_on_escalation()).await;
    crash_past_policy(&failing).await;
    assert!(
        eventually(Duration::from_secs(10), || {
            let control = control.clone();
            async move {
                matches!(
                    control.lookup::<Ledger>("failing").await,
                    Err(ControlError::Failed { .. })
                )
            }
        })
        .await,
        "marked failed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn placement_groups_reserve_all_bundles_or_none_and_actors_run_in_them() {
    let dir = scratch("control-groups");
    let (_ca, nodes) = control_cluster(&dir, 1, 2, |i, c| {
        // n2 and n3 offer 2 TPUs each.
        if i > 0 {
            if let Some(cluster) = c.cluster.as_mut() {
                cluster.resources.custom = vec![("tpu".to_owned(), 2.0)];
            }
        }
    })
    .await;
    let control = nodes[0].node.control().unwrap().clone();
    let tpu = |n: f64| ResourceSet::default().with("tpu", n);
    // Wait until both TPU nodes hold leases: a strict spread over them fits.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    let nodes_of_g = loop {
        poll.tick().await;
        match control
            .reserve_group("g", GroupStrategy::StrictSpread, vec![tpu(1.0), tpu(1.0)])
            .await
        {
            Ok(nodes) => break nodes,
            Err(e) => assert!(Instant::now() < deadline, "never reserved: {e}"),
        }
    };
    assert_eq!(nodes_of_g.len(), 2);
    assert_ne!(nodes_of_g[0], nodes_of_g[1]);

    // A group that cannot fit reserves nothing.
    let too_big = control
        .reserve_group("big", GroupStrategy::Pack, vec![tpu(1.0), tpu(3.0)])
        .await;
    assert!(
        matches!(
            too_big,
            Err(ControlError::Placement(PlacementError::Unschedulable(_)))
        ),
        "got {too_big:?}"
    );
    let strict = control
        .reserve_group(
            "strict",
            GroupStrategy::StrictPack,
            vec![tpu(1.0), tpu(1.0)],
        )
        .await;
    assert!(
        matches!(
            strict,
            Err(ControlError::Placement(PlacementError::NoCapacity(_)))
        ),
        "one TPU is free per node: got {strict:?}"
    );
    // ...so one TPU per node is still free for others.
    for name in ["a", "b"] {
        let spawn = Spawn::<Ledger>::named(name)
            .args(LedgerArgs { opening: 0 })
            .resource("tpu", 1.0);
        control.spawn(spawn).await.unwrap();
    }
    let spawn = Spawn::<Ledger>::named("c")
        .args(LedgerArgs { opening: 0 })
        .resource("tpu", 1.0);
    assert!(matches!(
        control.spawn(spawn).await,
        Err(ControlError::Placement(PlacementError::NoCapacity(_)))
    ));

    // An actor in a bundle runs on that bundle's node, from its reservation.
    let in_group = control
        .spawn(
            Spawn::<Ledger>::named("member")
                .args(LedgerArgs { opening: 0 })
                .resource("tpu", 1.0)
                .in_group("g", 1),
        )
        .await
        .unwrap();
    assert_eq!(in_group.send(Deposit(1)).await.unwrap().node, nodes_of_g[1]);
    assert!(matches!(
        control.release_group("g").await,
        Err(ControlError::Group(GroupRefusal::InUse { .. }))
    ));
    control.stop("member").await.unwrap();
    control.release_group("g").await.unwrap();
    // Released: its TPUs are free again.
    let spawn = Spawn::<Ledger>::named("c")
        .args(LedgerArgs { opening: 0 })
        .resource("tpu", 1.0);
    control.spawn(spawn).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn a_drained_node_hands_its_actors_over_one_by_one_and_leaves() {
    let dir = scratch("control-drain");
    let (_ca, nodes) = control_cluster(&dir, 1, 3, |_, _| {}).await;
    let control = nodes[0].node.control().unwrap().clone();
    let drained = nodes[3].node.id();
    let on_drained = |name: &'static str| {
        move || {
            Spawn::<Ledger>::named(name)
                .args(LedgerArgs { opening: 0 })
                .placement(Placement::Node {
                    node: drained,
                    hard: false,
                })
        }
    };
    let one = ledger_on(&control, "one", drained).await;
    let two = ledger_on(&control, "two", drained).await;
    // A head is not drained without --force: its Raft replica would go.
    let head = nodes[0].node.id();
    match control.drain(head, false).await {
        Err(ControlError::IsHead { node, .. }) => assert_eq!(node, head),
        other => panic!("draining a head: {other:?}"),
    }

    let report = control.drain(drained, false).await.unwrap();
    assert_eq!((report.moved, report.left), (2, true), "{report:?}");
    for actor in &report.actors {
        assert!(
            matches!(actor.outcome, DrainOutcome::Moved { node, .. } if node != drained),
            "{report:?}"
        );
    }
    for named in [&one, &two] {
        assert!(
            eventually(Duration::from_secs(10), || {
                let named = named.clone();
                async move {
                    named
                        .send(Deposit(1))
                        .await
                        .is_ok_and(|b| b.node != drained)
                }
            })
            .await
        );
    }
    // No new placements go there, and it left.
    let three = control.spawn(on_drained("three")()).await.unwrap();
    assert_ne!(three.location().unwrap().0, drained);
    let cluster = nodes[0].node.cluster().unwrap().clone();
    assert!(
        eventually(Duration::from_secs(10), || {
            let cluster = cluster.clone();
            async move {
                cluster.members().await.is_ok_and(|m| {
                    m.iter().any(|m| {
                        m.node == drained
                            && m.state == swarm::protocol::membership::MemberState::Left
                    })
                })
            }
        })
        .await,
        "the drained node left"
    );
    // ...and shut down, which its program hears (`swarm node` exits).
    let stopped = tokio::time::timeout(Duration::from_secs(10), nodes[3].node.drained()).await;
    assert!(stopped.is_ok(), "the drained node never said it left");
    // It renews no lease any more: no link to the head comes back over
    // several renewal periods (a fifth of the lease each). Before, its
    // lease keeper re-linked to the leader right after it left.
    let head = nodes[0].node.clone();
    let linked = || {
        let head = head.clone();
        async move { head.peers().iter().any(|p| p.id == drained) }
    };
    let closed = eventually(Duration::from_secs(5), || {
        let linked = linked();
        async move { !linked.await }
    })
    .await;
    assert!(closed, "the drained node's link stayed up");
    let relinked = eventually(Duration::from_secs(2), linked).await;
    assert!(!relinked, "the drained node linked to the head again");
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn a_call_no_head_could_take_fails_at_once_and_the_leader_stays_known() {
    let dir = scratch("control-own-failure");
    // The worker sends at most 64 KiB in one message.
    let (_ca, nodes) = control_cluster(&dir, 1, 1, |i, c| {
        if i == 1 {
            c.max_message = 64 << 10;
        }
    })
    .await;
    let control = nodes[1].node.control().unwrap().clone();
    let ledger = |name: &str| Spawn::<Ledger>::named(name).args(LedgerArgs { opening: 0 });
    spawn_ready(&control, || ledger("small")).await;
    let known = format!("{control:?}");
    assert!(known.contains("Some("), "a call found the leader: {known}");
    // Too large to send to any head: refused at once (it was retried for
    // the call's 10 s, the leader forgotten, then called NoQuorum).
    let started = Instant::now();
    let err = control
        .spawn(ledger(&"x".repeat(100 << 10)))
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&err, ControlError::Refused { reason } if reason.contains("exceeds")),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(format!("{control:?}"), known, "the leader stays known");
    // The next call goes on as before.
    spawn_ready(&control, || ledger("after")).await;
}
