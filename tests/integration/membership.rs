//! Membership, discovery and load balancing between real nodes in one
//! process: real UDP gossip sealed with AES-GCM, real TCP/Noise links.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use swarm::protocol::gossip::{GossipKey, KeyRing};
use swarm::protocol::membership::MemberState;
use swarm::{AskError, ClusterEvent, Strategy};
use swarm_cli::demo::{serve, serve_with, Work, Worker};

use crate::util::{eventually, members, on, sees_alive};

const WITHIN: Duration = Duration::from_secs(10);

/// Collects cluster events.
struct Recorder(Arc<Mutex<Vec<ClusterEvent>>>);

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<ClusterEvent> for Recorder {
    type Result = ();

    fn handle(&mut self, event: ClusterEvent, _: &mut Context<Self>) {
        self.0.lock().unwrap().push(event);
    }
}

#[actix_rt::test]
async fn nodes_join_through_one_seed_and_subscribers_see_it() {
    let (_ca, nodes) = members(2).await;
    let events = Arc::new(Mutex::new(Vec::new()));
    let recorder = on(&nodes[0].arbiter, {
        let events = events.clone();
        move || Recorder(events).start()
    })
    .await;
    let snapshot = nodes[0]
        .node
        .cluster()
        .unwrap()
        .subscribe(recorder.recipient())
        .await
        .unwrap();
    assert_eq!(
        snapshot[0].node,
        nodes[0].node.id(),
        "this node comes first"
    );
    // A third node joins through the seed.
    let (ca, mut more) = (_ca, Vec::new());
    let mut c = crate::util::config(&ca, "n3");
    c.cluster = Some(crate::util::fast_gossip(vec![nodes[0].node.listen_addr()]));
    more.push(crate::util::start(c).await);
    for n in nodes.iter().chain(&more) {
        assert!(
            eventually(WITHIN, || sees_alive(&n.node, 3)).await,
            "{:?}",
            n.node
        );
    }
    // Membership makes no mesh links: n2 talked to no one, so it has none.
    assert!(
        nodes[1].node.peers().is_empty(),
        "{:?}",
        nodes[1].node.peers()
    );
    let n3 = more[0].node.id();
    assert!(
        eventually(WITHIN, || async {
            events
                .lock()
                .unwrap()
                .iter()
                .any(|e| matches!(e, ClusterEvent::MemberUp(m) if m.node == n3))
        })
        .await
    );
    // Metadata arrives: name, roles and resources of n3.
    assert!(
        eventually(WITHIN, || async {
            let list = nodes[0].node.cluster().unwrap().members().await.unwrap();
            list.iter().any(|m| {
                m.node == n3
                    && m.meta.as_ref().is_some_and(|meta| {
                        meta.name == "n3" && meta.roles == ["worker"] && meta.resources.cpus >= 1.0
                    })
            })
        })
        .await
    );
}

#[actix_rt::test]
async fn a_stopped_node_is_down_everywhere_and_asks_to_it_fail_at_once() {
    let (_ca, mut nodes) = members(3).await;
    for n in &nodes {
        assert!(eventually(WITHIN, || sees_alive(&n.node, 3)).await);
    }
    let victim = nodes.remove(2);
    let victim_id = victim.node.id();
    victim.kill();
    for n in &nodes {
        let node = n.node.clone();
        assert!(
            eventually(WITHIN, || {
                let node = node.clone();
                async move {
                    node.cluster()
                        .unwrap()
                        .members()
                        .await
                        .unwrap()
                        .iter()
                        .any(|m| m.node == victim_id && m.state == MemberState::Down)
                }
            })
            .await,
            "victim not down"
        );
    }
    let adder = nodes[0]
        .node
        .remote::<swarm_cli::demo::Adder>(victim_id, "adder");
    let started = std::time::Instant::now();
    let err = adder
        .send_timeout(swarm_cli::demo::Add { a: 1, b: 2 }, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(err, AskError::NodeDown { node: victim_id });
    assert!(started.elapsed() < Duration::from_secs(1), "not at once");
}

#[actix_rt::test]
async fn a_clean_leave_is_seen_as_left_and_fails_asks_in_flight_with_node_down() {
    let (_ca, nodes) = members(3).await;
    for n in &nodes {
        assert!(eventually(WITHIN, || sees_alive(&n.node, 3)).await);
    }
    let leaver = nodes[2].node.clone();
    // A slow instance on the leaving node, with an ask in flight to it.
    on(&nodes[2].arbiter, {
        let node = leaver.clone();
        move || {
            actix_rt::spawn(async move {
                let mut slow = Worker::new("n3");
                slow.extra_delay_ms = 60_000;
                serve_with(&node, "slow", slow).await.unwrap();
            });
        }
    })
    .await;
    let client = nodes[0].node.clone();
    assert!(
        eventually(WITHIN, || async {
            client
                .cluster()
                .unwrap()
                .services()
                .iter()
                .any(|(s, _)| s == "slow")
        })
        .await
    );
    let slow = client
        .cluster()
        .unwrap()
        .service::<Worker>("slow")
        .with_timeout(Duration::from_secs(60));
    let in_flight = actix_rt::spawn({
        let slow = slow.clone();
        async move {
            slow.send(Work {
                key: 1,
                delay_ms: 0,
            })
            .await
        }
    });
    assert!(
        eventually(WITHIN, || async {
            slow.instances()
                .first()
                .is_some_and(|i| i.outstanding() == 1)
                && client.peers().iter().any(|p| p.id == leaver.id())
        })
        .await
    );
    leaver.cluster().unwrap().leave().await;
    let started = std::time::Instant::now();
    let result = in_flight.await.unwrap();
    assert_eq!(
        result.unwrap_err(),
        AskError::NodeDown { node: leaver.id() }
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    let observer = nodes[0].node.clone();
    let listed = observer.cluster().unwrap().members().await.unwrap();
    let entry = listed.iter().find(|m| m.node == leaver.id()).unwrap();
    assert_eq!(entry.state, MemberState::Left);
}

/// Starts `service` instances on the given nodes and waits until node 0 sees them all.
async fn serve_on(nodes: &[crate::util::TestNode], which: &[usize], service: &'static str) {
    for &i in which {
        let node = nodes[i].node.clone();
        on(&nodes[i].arbiter, move || {
            actix_rt::spawn(async move { serve(&node, service).await.unwrap() });
        })
        .await;
    }
    let client = nodes[0].node.clone();
    assert!(
        eventually(WITHIN, || async {
            client
                .cluster()
                .unwrap()
                .services()
                .iter()
                .any(|(s, list)| s == service && list.len() == which.len())
        })
        .await,
        "instances of {service} not discovered"
    );
}

#[actix_rt::test]
async fn round_robin_and_least_outstanding_spread_evenly() {
    let (_ca, nodes) = members(4).await;
    serve_on(&nodes, &[1, 2, 3], "even").await;
    let service = nodes[0]
        .node
        .cluster()
        .unwrap()
        .service::<Worker>("even")
        .with_strategy(Strategy::RoundRobin);
    let mut order = Vec::new();
    for key in 0..30 {
        order.push(service.send(Work { key, delay_ms: 0 }).await.unwrap().node);
    }
    // Round robin: strictly in turn.
    for window in order.windows(3) {
        let mut w = window.to_vec();
        w.sort();
        w.dedup();
        assert_eq!(w.len(), 3, "{order:?}");
    }
    let least = service.clone().with_strategy(Strategy::LeastOutstanding);
    let mut counts: HashMap<String, usize> = HashMap::new();
    let replies = futures_join(
        (0..60)
            .map(|key| {
                let least = least.clone();
                async move { least.send(Work { key, delay_ms: 20 }).await }
            })
            .collect(),
    )
    .await;
    for reply in replies {
        *counts.entry(reply.unwrap().node).or_default() += 1;
    }
    for (node, count) in &counts {
        assert!(
            (15..=25).contains(count),
            "{node}: {count} of 60 ({counts:?})"
        );
    }
}

async fn futures_join<T: 'static>(
    futures: Vec<impl std::future::Future<Output = T> + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futures.into_iter().map(actix_rt::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[actix_rt::test]
async fn power_of_two_choices_avoids_a_slow_instance() {
    let (_ca, nodes) = members(4).await;
    serve_on(&nodes, &[1, 2], "p2c").await;
    // n4's instance answers 30 ms later than the others.
    let node = nodes[3].node.clone();
    on(&nodes[3].arbiter, move || {
        actix_rt::spawn(async move {
            let mut slow = Worker::new("n4");
            slow.extra_delay_ms = 30;
            serve_with(&node, "p2c", slow).await.unwrap();
        });
    })
    .await;
    let client = nodes[0].node.clone();
    assert!(
        eventually(WITHIN, || async {
            client
                .cluster()
                .unwrap()
                .services()
                .iter()
                .any(|(s, l)| s == "p2c" && l.len() == 3)
        })
        .await
    );
    let service = client.cluster().unwrap().service::<Worker>("p2c");
    assert_eq!(service.strategy(), Strategy::PowerOfTwoEwma, "the default");
    let mut counts: HashMap<String, usize> = HashMap::new();
    for key in 0..300 {
        let served = service.send(Work { key, delay_ms: 0 }).await.unwrap();
        *counts.entry(served.node).or_default() += 1;
    }
    let slow = counts.get("n4").copied().unwrap_or(0);
    assert!(slow < 40, "the slow instance got {slow} of 300: {counts:?}");
    assert!(counts.get("n2").copied().unwrap_or(0) > 80, "{counts:?}");
    assert!(counts.get("n3").copied().unwrap_or(0) > 80, "{counts:?}");
}

#[actix_rt::test]
async fn consistent_hashing_keeps_keys_on_their_instance() {
    let (_ca, nodes) = members(5).await;
    serve_on(&nodes, &[1, 2, 3], "ring").await;
    let service = nodes[0]
        .node
        .cluster()
        .unwrap()
        .service::<Worker>("ring")
        .with_strategy(Strategy::ConsistentHash);
    let mut owner: HashMap<u64, String> = HashMap::new();
    for key in 0..200 {
        let a = service
            .send_keyed(Work { key, delay_ms: 0 })
            .await
            .unwrap()
            .node;
        let b = service
            .send_keyed(Work { key, delay_ms: 0 })
            .await
            .unwrap()
            .node;
        assert_eq!(a, b, "key {key} moved between two requests");
        owner.insert(key, a);
    }
    let spread: std::collections::HashSet<&String> = owner.values().collect();
    assert_eq!(spread.len(), 3);
    // A fourth instance joins: only keys it takes over move.
    serve_on(&nodes, &[1, 2, 3, 4], "ring").await;
    let mut moved = 0;
    for key in 0..200 {
        let now = service
            .send_keyed(Work { key, delay_ms: 0 })
            .await
            .unwrap()
            .node;
        if now != owner[&key] {
            assert_eq!(now, "n5", "key {key} moved to an old instance");
            moved += 1;
        }
    }
    assert!((20..=90).contains(&moved), "{moved} of 200 keys moved");
}

#[actix_rt::test]
async fn instances_on_a_suspect_or_down_node_get_no_traffic() {
    let (_ca, mut nodes) = members(4).await;
    serve_on(&nodes, &[1, 2, 3], "failover").await;
    let service = nodes[0]
        .node
        .cluster()
        .unwrap()
        .service::<Worker>("failover")
        .with_strategy(Strategy::RoundRobin);
    let victim = nodes.remove(3);
    victim.kill();
    // Every request is answered, or fails with a typed link/node error;
    // after the first failure, none goes to the dead node.
    let mut failures = 0;
    let mut answered = 0;
    for key in 0..200 {
        match service.send(Work { key, delay_ms: 0 }).await {
            Ok(served) => {
                assert_ne!(served.node, "n4");
                answered += 1;
            }
            Err(
                AskError::LinkDown { .. }
                | AskError::NodeDown { .. }
                | AskError::Unreachable { .. },
            ) => {
                failures += 1;
            }
            Err(other) => panic!("untyped failure: {other}"),
        }
    }
    assert!(failures <= 1, "{failures} requests went to the dead node");
    assert_eq!(answered + failures, 200);
    // Membership then removes the instance for good.
    let client = nodes[0].node.clone();
    assert!(
        eventually(WITHIN, || async {
            client
                .cluster()
                .unwrap()
                .services()
                .iter()
                .any(|(s, l)| s == "failover" && l.len() == 2)
        })
        .await
    );
}

#[actix_rt::test]
async fn bad_datagrams_are_dropped_and_counted() {
    let (ca, nodes) = members(2).await;
    for n in &nodes {
        assert!(eventually(WITHIN, || sees_alive(&n.node, 2)).await);
    }
    let target = nodes[0].node.listen_addr();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let before = nodes[0]
        .node
        .cluster()
        .unwrap()
        .gossip_stats()
        .await
        .unwrap();
    // Garbage, truncated, oversized.
    socket.send_to(b"garbage", target).unwrap();
    socket.send_to(&[1u8; 10], target).unwrap();
    socket.send_to(&vec![1u8; 9000], target).unwrap();
    // Sealed with another key (a foreign cluster, or a stale key).
    let wrong = KeyRing::new(GossipKey::from_bytes([9; 32]));
    let mut sealed = Vec::new();
    wrong.seal(&[0, 1, 2, 3], [5; 12], unix_ms(), &mut sealed);
    socket.send_to(&sealed, target).unwrap();
    // Sealed with the right key but tampered.
    let right = KeyRing::new(GossipKey::derive(&ca.secret, "test"));
    right.seal(&[0, 1, 2, 3], [6; 12], unix_ms(), &mut sealed);
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    socket.send_to(&sealed, target).unwrap();
    // Sealed with the right key, but not a gossip message.
    right.seal(&[0, 9, 9, 9], [7; 12], unix_ms(), &mut sealed);
    socket.send_to(&sealed, target).unwrap();
    let node = nodes[0].node.clone();
    assert!(
        eventually(WITHIN, || async {
            let s = node.cluster().unwrap().gossip_stats().await.unwrap();
            s.dropped_unsealed >= before.dropped_unsealed + 4
                && s.dropped_oversized > before.dropped_oversized
                && s.dropped_malformed > before.dropped_malformed
        })
        .await,
        "{:?}",
        node.cluster().unwrap().gossip_stats().await.unwrap()
    );
    // Membership is undisturbed.
    assert!(sees_alive(&nodes[0].node, 2).await);
    assert!(sees_alive(&nodes[1].node, 2).await);
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// DESIGN.md: gossip is sealed; a captured datagram must not aim a
/// member's answers at someone else.
#[actix_rt::test]
async fn replayed_and_stale_datagrams_are_refused_and_not_answered() {
    let (ca, nodes) = members(2).await;
    for n in &nodes {
        assert!(eventually(WITHIN, || sees_alive(&n.node, 2)).await);
    }
    let target = nodes[0].node.listen_addr();
    let cluster = nodes[0].node.cluster().unwrap().clone();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let ring = KeyRing::new(GossipKey::derive(&ca.secret, "test"));
    // A metadata request (kind 1, no body), as a member would seal it.
    let mut request = Vec::new();
    ring.seal(&[1], [0x11; 12], unix_ms(), &mut request);
    socket.send_to(&request, target).unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        socket.recv_from(&mut buf).is_ok(),
        "the first request is answered"
    );
    let before = cluster.gossip_stats().await.unwrap();
    // The captured request, replayed: refused and never answered.
    for _ in 0..100 {
        socket.send_to(&request, target).unwrap();
    }
    // A request sealed ten minutes ago (fresh nonce): stale.
    let mut stale = Vec::new();
    ring.seal(&[1], [0x22; 12], unix_ms() - 600_000, &mut stale);
    socket.send_to(&stale, target).unwrap();
    assert!(
        eventually(WITHIN, || async {
            cluster.gossip_stats().await.unwrap().dropped_replayed >= before.dropped_replayed + 101
        })
        .await,
        "{:?}",
        cluster.gossip_stats().await.unwrap()
    );
    let mut answers = 0;
    while socket.recv_from(&mut buf).is_ok() {
        answers += 1;
    }
    assert_eq!(answers, 0, "replayed requests were answered");
    assert!(sees_alive(&nodes[0].node, 2).await);
}

#[actix_rt::test]
async fn gossip_keys_rotate_without_losing_members() {
    let (_ca, nodes) = members(3).await;
    for n in &nodes {
        assert!(eventually(WITHIN, || sees_alive(&n.node, 3)).await);
    }
    let new = GossipKey::from_bytes([42; 32]);
    for n in &nodes {
        n.node
            .cluster()
            .unwrap()
            .gossip_key(swarm::GossipKeyOp::Add(new.clone()))
            .await
            .unwrap();
    }
    for n in &nodes {
        n.node
            .cluster()
            .unwrap()
            .gossip_key(swarm::GossipKeyOp::Use(new.clone()))
            .await
            .unwrap();
    }
    let old = GossipKey::derive(&_ca.secret, "test");
    for n in &nodes {
        let keys = n
            .node
            .cluster()
            .unwrap()
            .gossip_key(swarm::GossipKeyOp::Remove(old.clone()))
            .await
            .unwrap();
        assert_eq!(keys, vec![new.fingerprint()]);
    }
    let before = nodes[0]
        .node
        .cluster()
        .unwrap()
        .gossip_stats()
        .await
        .unwrap();
    // Many datagrams later (several probe periods) everyone is still alive
    // and nothing failed to open.
    let node = nodes[0].node.clone();
    assert!(
        eventually(WITHIN, || async {
            node.cluster()
                .unwrap()
                .gossip_stats()
                .await
                .unwrap()
                .received
                >= before.received + 30
        })
        .await
    );
    for n in &nodes {
        assert!(sees_alive(&n.node, 3).await);
    }
    let after = nodes[0]
        .node
        .cluster()
        .unwrap()
        .gossip_stats()
        .await
        .unwrap();
    assert_eq!(after.dropped_unsealed, before.dropped_unsealed);
    assert!(after.received > before.received);
}
