//! Long runs, ignored by default: `cargo test --test integration -- --ignored stress_`.

use std::time::Duration;

use swarm_cli::demo::{Add, Adder, Bump, Counter, CounterState};

use crate::util::{cluster, eventually};

#[actix_rt::test]
#[ignore]
async fn stress_thirty_nodes_full_mesh_every_node_asks_every_other() {
    let (_ca, nodes) = cluster(30).await;
    for (i, a) in nodes.iter().enumerate() {
        for b in &nodes[i + 1..] {
            a.node.connect(b.node.listen_addr()).await.unwrap();
        }
    }
    let mut asks = Vec::new();
    for a in &nodes {
        for b in &nodes {
            if a.node.id() != b.node.id() {
                let adder = a.node.remote::<Adder>(b.node.id(), "adder");
                asks.push(actix_rt::spawn(async move {
                    adder.send(Add { a: 1, b: 2 }).await
                }));
            }
        }
    }
    for ask in asks {
        assert_eq!(ask.await.unwrap().unwrap(), 3);
    }
    for n in &nodes {
        assert_eq!(
            n.node.peers().len(),
            29,
            "{} has one link per peer",
            n.node.name()
        );
    }
}

#[actix_rt::test]
#[ignore]
async fn stress_five_million_tells_arrive_in_order() {
    let (_ca, nodes) = cluster(2).await;
    let (a, b) = (&nodes[0].node, &nodes[1].node);
    a.connect(b.listen_addr()).await.unwrap();
    let counter = a.remote::<Counter>(b.id(), "counter");
    const N: u64 = 5_000_000;
    for seq in 0..N {
        counter
            .tell(Bump {
                seq,
                pad: vec![0; 48],
            })
            .await
            .unwrap();
    }
    assert!(
        eventually(Duration::from_secs(300), || async {
            counter.send(CounterState).await.unwrap().0 == N
        })
        .await
    );
    assert_eq!(
        counter.send(CounterState).await.unwrap().1,
        0,
        "none out of order"
    );
}

/// The full size of the flood in `silent_flood`: 10,000 silent connections
/// from 1,000 loopback addresses (10 each, under the per-source bound of
/// 16). Needs `ulimit -n` of 11,000 (the node is a child process).
#[actix_rt::test]
#[ignore]
async fn stress_new_peers_connect_within_2s_while_10000_silent_connections_from_1000_addresses_are_held(
) {
    crate::silent_flood::new_peers_during_a_silent_flood("silent10k", 1_000, 10, 20)
        .await
        .assert_all_within(Duration::from_secs(2));
}
