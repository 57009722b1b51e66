//! The mesh VPN in one process: nodes that cannot be dialed (they announce
//! an address where nothing listens, as a node behind NAT would) are
//! reached through relays over real TCP links, with their own Noise
//! session inside the relay's links; their gossip travels the same way.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use swarm::credentials::Throwaway;
use swarm::{MeshConfig, Node};
use swarm_cli::demo::{Add, Adder, Count};

use crate::util::{config, eventually, fast_gossip, sees_alive, start, TestNode};

const WITHIN: Duration = Duration::from_secs(15);

/// An address on loopback where nothing listens (a port taken and
/// released): dials to it are refused, as to a node behind NAT.
fn unreachable_addr() -> SocketAddr {
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

fn relay_config(ca: &Throwaway, name: &str, seeds: Vec<SocketAddr>) -> MeshConfig {
    let mut c = config(ca, name);
    c.relay = true;
    c.cluster = Some(fast_gossip(seeds));
    c.upgrade_interval = Duration::from_millis(500);
    c
}

/// A node behind "NAT": it announces an address nobody can dial.
fn natted_config(ca: &Throwaway, name: &str, relays: Vec<SocketAddr>) -> MeshConfig {
    let mut c = config(ca, name);
    c.relayed = true;
    c.advertise = Some(unreachable_addr());
    c.relays = relays.clone();
    c.cluster = Some(fast_gossip(relays));
    c.upgrade_interval = Duration::from_millis(500);
    c
}

struct Topology {
    _ca: Throwaway,
    relays: Vec<TestNode>,
    /// Two nodes behind NAT.
    natted: Vec<TestNode>,
}

async fn topology() -> Topology {
    let ca = Throwaway::new("test");
    let r1 = start(relay_config(&ca, "r1", vec![])).await;
    let r1_addr = r1.node.listen_addr();
    let r2 = start(relay_config(&ca, "r2", vec![r1_addr])).await;
    let relay_addrs = vec![r1_addr, r2.node.listen_addr()];
    let mut natted = Vec::new();
    for name in ["a1", "b1"] {
        natted.push(start(natted_config(&ca, name, relay_addrs.clone())).await);
    }
    let all: Vec<&Node> = [&r1, &r2]
        .into_iter()
        .chain(&natted)
        .map(|n| &n.node)
        .collect();
    for node in &all {
        assert!(
            eventually(WITHIN, || sees_alive(node, 4)).await,
            "{} sees every node alive",
            node.name()
        );
    }
    Topology {
        _ca: ca,
        relays: vec![r1, r2],
        natted,
    }
}

#[actix_rt::test]
async fn natted_nodes_reach_each_other_through_a_relay() {
    let t = topology().await;
    let (a, b) = (&t.natted[0].node, &t.natted[1].node);
    let on_b = a.remote::<Adder>(b.id(), "adder");
    assert_eq!(on_b.send(Add { a: 2, b: 3 }).await.unwrap(), 5);
    let on_a = b.remote::<Adder>(a.id(), "adder");
    assert_eq!(on_a.send(Add { a: 40, b: 2 }).await.unwrap(), 42);
    // Tells arrive in order, then an ask sees all of them.
    for _ in 0..100 {
        on_b.tell(Add { a: 1, b: 1 }).await.unwrap();
    }
    assert_eq!(on_b.send(Count).await.unwrap(), 101);

    let link = a.peers().into_iter().find(|p| p.id == b.id()).unwrap();
    let relay = link.via.expect("the link to a node behind NAT is relayed");
    let relay_node = t.relays.iter().find(|r| r.node.id() == relay).unwrap();
    let stats = relay_node.node.stats();
    assert!(stats.relay_frames > 0 && stats.relay_bytes > 0, "{stats:?}");
    assert_eq!(stats.relay_refused, 0);
    // The relay's actors saw nothing: its adder counted no call.
    let relay_adder = relay_node.node.remote::<Adder>(relay, "adder");
    assert_eq!(relay_adder.send(Count).await.unwrap(), 0);
}
