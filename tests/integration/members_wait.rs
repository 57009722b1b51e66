//! `Cluster::wait_for_members`: a caller waits for members without a
//! sleep loop; too few in time is a typed error, a stopped membership too.

use std::time::{Duration, Instant};

use swarm::cluster::WaitError;
use swarm::protocol::membership::MemberState;
use swarm::ClusterError;

use crate::util::{config, fast_gossip, members, start};

#[actix_rt::test]
async fn wait_for_members_answers_once_enough_are_alive_and_times_out_typed_otherwise() {
    let (ca, nodes) = members(2).await;
    let cluster = nodes[0].node.cluster().unwrap().clone();

    // Two nodes: waiting for three times out, typed, after the time given.
    let started = Instant::now();
    match cluster
        .wait_for_members(3, Duration::from_millis(300))
        .await
    {
        Err(WaitError::Timeout {
            wanted: 3, alive, ..
        }) => assert!(alive <= 2),
        other => panic!("expected a timeout: {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A third joins while the first waits: the wait answers with it.
    let waiting = actix_rt::spawn({
        let cluster = cluster.clone();
        async move { cluster.wait_for_members(3, Duration::from_secs(20)).await }
    });
    let mut c = config(&ca, "n3");
    c.cluster = Some(fast_gossip(vec![nodes[0].node.listen_addr()]));
    let third = start(c).await;
    let members = waiting.await.unwrap().expect("three members alive");
    let alive: Vec<_> = members
        .iter()
        .filter(|m| m.state == MemberState::Alive && m.meta.is_some())
        .map(|m| m.node)
        .collect();
    assert_eq!(alive.len(), 3, "{members:?}");
    assert_eq!(members[0].node, nodes[0].node.id(), "this node first");
    assert!(alive.contains(&third.node.id()));

    // Enough already: it answers at once.
    let started = Instant::now();
    cluster
        .wait_for_members(2, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));

    // Membership stopped (the node left): typed, at once.
    cluster.leave().await;
    let started = Instant::now();
    let stopped = cluster.wait_for_members(4, Duration::from_secs(5)).await;
    assert_eq!(stopped, Err(WaitError::Cluster(ClusterError::Stopped)));
    assert!(started.elapsed() < Duration::from_secs(1));
}
