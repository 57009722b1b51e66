//! The mesh VPN in one process: nodes that cannot be dialed (they announce
//! an address where nothing listens, as a node behind NAT would) are
//! reached through relays over real TCP links, with their own Noise
//! session inside the relay's links; their gossip travels the same way.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use swarm::credentials::Throwaway;
use swarm::protocol::relay::{CircuitId, RelayFrame, RelayOp, RelayRefusal};
use swarm::protocol::session::SendHalf;
use swarm::protocol::{HandshakeConfig, NodeId};
use swarm::{DialError, MeshConfig, Node};
use swarm_actors::cluster::{ClusterAgent, ListMembers, CLUSTER_ACTOR};
use swarm_cli::demo::{serve, Add, Adder, Bump, Count, Counter, CounterState, Work, Worker};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::util::{config, eventually, fast_gossip, sees_alive, start, TestNode};

mod upgrades;

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
    topology_with(Throwaway::new("test"), None).await
}

/// As [`topology`], with `faults` injected into the first node behind NAT.
async fn topology_with(ca: Throwaway, faults: Option<Arc<swarm::Faults>>) -> Topology {
    let r1 = start(relay_config(&ca, "r1", vec![])).await;
    let r1_addr = r1.node.listen_addr();
    let r2 = start(relay_config(&ca, "r2", vec![r1_addr])).await;
    let relay_addrs = vec![r1_addr, r2.node.listen_addr()];
    let mut natted = Vec::new();
    for name in ["a1", "b1"] {
        let mut c = natted_config(&ca, name, relay_addrs.clone());
        if name == "a1" {
            c.faults = faults.clone();
        }
        natted.push(start(c).await);
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
    // Alive comes before the metadata that says how a member is reached:
    // until then a node dials a NATed one at its announced address and
    // then through any relay, and two such dials crossing (a's ask, b's
    // gossip) keep one link and fail the ask sent on the other.
    let behind_nat: Vec<NodeId> = natted.iter().map(|n| n.node.id()).collect();
    for node in &all {
        assert!(
            eventually(WITHIN, || knows_routes(node, 4, &behind_nat)).await,
            "{} knows how every node is reached",
            node.name()
        );
    }
    Topology {
        _ca: ca,
        relays: vec![r1, r2],
        natted,
    }
}

/// Whether `node` has the metadata of `count` members (itself included),
/// and those in `behind_nat` name their relays.
async fn knows_routes(node: &Node, count: usize, behind_nat: &[NodeId]) -> bool {
    let Ok(members) = node.cluster().unwrap().members().await else {
        return false;
    };
    let known = members.iter().filter(|m| m.meta.is_some()).count();
    let routed = members
        .iter()
        .filter(|m| m.node != node.id() && behind_nat.contains(&m.node))
        .all(|m| m.meta.as_ref().is_some_and(|meta| !meta.via.is_empty()));
    known >= count && routed
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
    // `swarm members` on a says how it reaches each node.
    let rows = a
        .remote::<ClusterAgent>(a.id(), CLUSTER_ACTOR)
        .send(ListMembers)
        .await
        .unwrap();
    let reach = |name: &str| rows.iter().find(|r| r.name == name).unwrap().reach.clone();
    assert_eq!(reach("a1"), "self");
    assert_eq!(
        reach("b1"),
        format!("relayed via {}", relay_node.node.name())
    );
    assert!(rows.iter().find(|r| r.name == "r1").unwrap().relay);
}

#[actix_rt::test]
async fn a_service_behind_nat_is_load_balanced_to_from_another_site() {
    let t = topology().await;
    let (server, client) = (&t.natted[0].node, &t.natted[1].node);
    serve(server, "natted").await.unwrap();
    let cluster = client.cluster().unwrap();
    assert!(
        eventually(WITHIN, || async {
            cluster.services().iter().any(|(s, _)| s == "natted")
        })
        .await,
        "the instance behind NAT is discovered"
    );
    let service = cluster.service::<Worker>("natted");
    for key in 0..20 {
        let served = service.send(Work { key, delay_ms: 0 }).await.unwrap();
        assert_eq!(served.node, server.name());
    }
    let link = client
        .peers()
        .into_iter()
        .find(|p| p.id == server.id())
        .unwrap();
    assert!(link.via.is_some(), "served through a relay: {link:?}");
}

#[actix_rt::test]
async fn a_relays_death_moves_its_clients_to_the_other_relay() {
    let mut t = topology().await;
    let (a, b) = (t.natted[0].node.clone(), t.natted[1].node.clone());
    let on_b = a.remote::<Adder>(b.id(), "adder");
    assert_eq!(on_b.send(Add { a: 1, b: 2 }).await.unwrap(), 3);
    let used = a
        .peers()
        .into_iter()
        .find(|p| p.id == b.id())
        .unwrap()
        .via
        .unwrap();
    let index = t.relays.iter().position(|r| r.node.id() == used).unwrap();
    let dead = t.relays.remove(index);
    let dead_id = dead.node.id();
    dead.kill();
    let survivor = t.relays[0].node.clone();
    // Traffic resumes within the failure-detection bound, through the survivor.
    let resumed = eventually(WITHIN, || {
        let on_b = on_b.clone();
        async move {
            on_b.send_timeout(Add { a: 2, b: 2 }, Duration::from_millis(500))
                .await
                .is_ok_and(|sum| sum == 4)
        }
    })
    .await;
    assert!(resumed, "asks resume through the other relay");
    let link = a.peers().into_iter().find(|p| p.id == b.id()).unwrap();
    assert_eq!(link.via, Some(survivor.id()));
    // Both clients announce the survivor only, once membership has caught up.
    for node in [&a, &b] {
        let cluster = survivor.cluster().unwrap();
        let id = node.id();
        assert!(
            eventually(WITHIN, || async {
                cluster.members().await.is_ok_and(|members| {
                    members.iter().any(|m| {
                        m.node == id
                            && m.meta
                                .as_ref()
                                .is_some_and(|meta| meta.via == vec![survivor.id()])
                    })
                })
            })
            .await,
            "{} announces only the surviving relay",
            node.name()
        );
    }
    assert!(!a.peers().iter().any(|p| p.id == dead_id));
}

#[actix_rt::test]
async fn bad_relay_frames_are_refused_and_counted() {
    let t = topology().await;
    let (a, b) = (&t.natted[0].node, &t.natted[1].node);
    let relay = &t.relays[0].node;
    // A relay asked to forward to a node it has never heard of.
    let unknown = swarm::NodeId::from_bytes([9; 16]);
    let before = relay.stats().relay_refused;
    let err = a.connect_via(relay.id(), unknown).await.unwrap_err();
    assert_eq!(err, DialError::Relay(RelayRefusal::NoRoute));
    assert!(relay.stats().relay_refused > before);
    // A loop: the relay asked to forward to the sender itself.
    let err = a.connect_via(relay.id(), a.id()).await.unwrap_err();
    assert_eq!(err, DialError::Relay(RelayRefusal::Loop));
    // A node that is not a relay refuses to forward.
    let mut c = config(&t._ca, "p1");
    c.cluster = Some(fast_gossip(vec![relay.listen_addr()]));
    let plain = start(c).await;
    let p = &plain.node;
    assert!(eventually(WITHIN, || sees_alive(p, 5)).await);
    assert!(eventually(WITHIN, || sees_alive(a, 5)).await);
    let err = a.connect_via(p.id(), b.id()).await.unwrap_err();
    assert_eq!(err, DialError::Relay(RelayRefusal::NotARelay));
    assert!(p.stats().relay_refused > 0);
    // Nothing reached any actor: the relay's adder counted no call.
    let relay_adder = a.remote::<Adder>(relay.id(), "adder");
    assert_eq!(relay_adder.send(Count).await.unwrap(), 0);
}

/// A client that completes a real handshake with `addr`, then sends the
/// given envelopes, sealed, over the link; returns the stream.
async fn raw_link(addr: SocketAddr, config: HandshakeConfig, envelopes: &[Vec<u8>]) -> TcpStream {
    let (mut stream, est, _) = crate::util::raw_handshake(addr, config).await;
    let mut session = SendHalf::new(est.sender);
    let mut out = Vec::new();
    for envelope in envelopes {
        session.push(envelope, &mut out).unwrap();
    }
    session.flush(&mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    stream
}

fn frame(op: RelayOp, dest: NodeId, origin: NodeId, opener: NodeId) -> Vec<u8> {
    let mut out = Vec::new();
    RelayFrame {
        op,
        dest,
        origin,
        circuit: CircuitId { number: 1, opener },
        addr: Some("127.0.0.1:9".parse().unwrap()),
        body: b"not ciphertext",
    }
    .encode(&mut out);
    out
}

#[actix_rt::test]
async fn forged_relay_frames_are_refused_and_nothing_is_delivered() {
    let t = topology().await;
    let (a, b) = (&t.natted[0].node, &t.natted[1].node);
    let relay = &t.relays[0].node;
    let on_b = a.remote::<Adder>(b.id(), "adder");
    assert_eq!(on_b.send(Add { a: 1, b: 1 }).await.unwrap(), 2);
    let config = t._ca.node("mallory", &["worker"]);
    let mallory = config.key.node_id();
    let before = relay.stats();
    let b_before = b.stats();
    let envelopes = [
        // Claims to come from a: a second hop, or a lie.
        frame(RelayOp::Open, b.id(), a.id(), a.id()),
        frame(RelayOp::Datagram, b.id(), a.id(), a.id()),
        // Data for a circuit nobody opened.
        frame(RelayOp::Data, b.id(), mallory, mallory),
    ];
    let _stream = raw_link(relay.listen_addr(), config, &envelopes).await;
    assert!(
        eventually(WITHIN, || async {
            relay.stats().relay_refused >= before.relay_refused + 3
        })
        .await,
        "{:?}",
        relay.stats()
    );
    // No circuit was opened at b, and b refused nothing: nothing reached it.
    let b_after = b.stats();
    assert_eq!(b_after.circuits, b_before.circuits);
    assert_eq!(b_after.relay_refused, b_before.relay_refused);
    assert_eq!(b_after.handshakes_refused, b_before.handshakes_refused);
    // Traffic between the honest nodes goes on.
    assert_eq!(on_b.send(Count).await.unwrap(), 1);
}

#[actix_rt::test]
async fn a_node_on_a_wildcard_address_announces_the_address_a_seed_dialed_back() {
    let ca = Throwaway::new("test");
    let seed = start(relay_config(&ca, "r1", vec![])).await;
    let seed_addr = seed.node.listen_addr();
    // No seed to ask: a clear error at start.
    let mut alone = config(&ca, "w0");
    alone.listen = "0.0.0.0:0".parse().unwrap();
    alone.cluster = Some(fast_gossip(vec![]));
    let err = Node::start(alone).await.unwrap_err();
    assert!(err.to_string().contains("set `advertise`"), "{err}");
    // With a seed: the seed saw 127.0.0.1, dialed it back, and the node
    // announces that with its port.
    let mut c = config(&ca, "w1");
    c.listen = "0.0.0.0:0".parse().unwrap();
    c.cluster = Some(fast_gossip(vec![seed_addr]));
    let wild = start(c).await;
    let port = wild.node.listen_addr().port();
    let expected: SocketAddr = ([127, 0, 0, 1], port).into();
    assert!(eventually(WITHIN, || sees_alive(&seed.node, 2)).await);
    let members = seed.node.cluster().unwrap().members().await.unwrap();
    let row = members.iter().find(|m| m.node == wild.node.id()).unwrap();
    assert_eq!(row.addr, expected, "announced the confirmed address");
    // A third node reaches it there.
    let mut c = config(&ca, "n3");
    c.cluster = Some(fast_gossip(vec![seed_addr]));
    let third = start(c).await;
    assert!(eventually(WITHIN, || sees_alive(&third.node, 3)).await);
    let on_wild = third.node.remote::<Adder>(wild.node.id(), "adder");
    assert_eq!(on_wild.send(Add { a: 20, b: 22 }).await.unwrap(), 42);
    let link = third
        .node
        .peers()
        .into_iter()
        .find(|p| p.id == wild.node.id())
        .unwrap();
    assert_eq!((link.addr, link.via), (expected, None));
}

#[actix_rt::test]
async fn a_relayed_node_without_configured_relays_finds_them_through_membership() {
    let ca = Throwaway::new("test");
    // A seed that is not a relay, and a relay that joins through it.
    let mut c = config(&ca, "seed");
    c.cluster = Some(fast_gossip(vec![]));
    let seed = start(c).await;
    let seeds = vec![seed.node.listen_addr()];
    let relay = start(relay_config(&ca, "r1", seeds.clone())).await;
    // Behind NAT, knowing only the seed.
    let mut c = natted_config(&ca, "a1", seeds.clone());
    c.relays = Vec::new();
    let natted = start(c).await;
    let mut c = natted_config(&ca, "b1", seeds);
    c.relays = Vec::new();
    let other = start(c).await;
    for node in [&seed.node, &relay.node, &natted.node, &other.node] {
        assert!(eventually(WITHIN, || sees_alive(node, 4)).await);
    }
    let cluster = seed.node.cluster().unwrap();
    let a1 = natted.node.id();
    assert!(
        eventually(WITHIN, || async {
            cluster.members().await.is_ok_and(|members| {
                members.iter().any(|m| {
                    m.node == a1
                        && m.meta
                            .as_ref()
                            .is_some_and(|meta| meta.via == vec![relay.node.id()])
                })
            })
        })
        .await,
        "a1 announces the relay it learned of"
    );
    let on_b = natted.node.remote::<Adder>(other.node.id(), "adder");
    assert!(
        eventually(WITHIN, || {
            let on_b = on_b.clone();
            async move {
                on_b.send_timeout(Add { a: 1, b: 1 }, Duration::from_millis(500))
                    .await
                    .is_ok()
            }
        })
        .await
    );
    let link = natted
        .node
        .peers()
        .into_iter()
        .find(|p| p.id == other.node.id())
        .unwrap();
    assert_eq!(link.via, Some(relay.node.id()));
}

#[actix_rt::test]
async fn the_console_inspects_members_behind_nat_through_their_relays() {
    let t = topology().await;
    // A console-like client without membership, attached to r1.
    let config = crate::util::config_with_roles(&t._ca, "console", &["worker", "operator"]);
    let console = start(config).await;
    let r1 = &t.relays[0].node;
    console.node.connect(r1.listen_addr()).await.unwrap();
    let collector = swarm_cli::console::collect::Collector::new(
        console.node.clone(),
        r1.listen_addr(),
        r1.id(),
    );
    let answered = |view: &swarm::inspect::ClusterView| {
        view.nodes
            .iter()
            .map(|n| match &n.error {
                None => n.member.name.clone(),
                Some(e) => format!(
                    "{} ({} via {}): {e}",
                    n.member.name, n.member.reach, n.member.addr
                ),
            })
            .collect::<Vec<_>>()
    };
    let last = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let all = eventually(WITHIN, || {
        let (collector, last) = (collector.clone(), std::sync::Arc::clone(&last));
        async move {
            let view = collector.poll().await.unwrap();
            let names = answered(&view);
            let done = names.len() == 4 && names.iter().all(|n| !n.contains(':'));
            *last.lock().unwrap() = names;
            done
        }
    })
    .await;
    assert!(all, "answered: {:?}", last.lock().unwrap());
}
