//! The mesh VPN in one process: a relay, a node that accepts connections,
//! and two nodes "behind NAT" (they announce an address nobody can dial,
//! as a node behind NAT would). The two NATed nodes reach each other
//! through the relay, which forwards ciphertext it cannot read; the public
//! node's relayed link to a NATed node becomes direct when the NATed node
//! dials back.
//!
//! Run it with:
//!
//! ```sh
//! cargo run --example vpn
//! ```
//!
//! Between machines the same is configured in each node's file
//! (README, "Mesh VPN"): `relay = true` on the relay, `relayed = true`
//! and `relays = ["203.0.113.1:7001"]` behind NAT, `listen =
//! "0.0.0.0:7001"` with `advertise` (or a detected address) elsewhere.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use swarm::credentials::Throwaway;
use swarm::{ClusterConfig, MeshConfig, Node};

#[derive(Debug, Serialize, Deserialize, Message)]
#[rtype(result = "String")]
struct Hello {
    from: String,
}

swarm::remote_message!(Hello => "example.Hello");

struct Greeter {
    node: String,
}

impl Actor for Greeter {
    type Context = Context<Self>;
}

impl Handler<Hello> for Greeter {
    type Result = String;

    fn handle(&mut self, msg: Hello, _: &mut Context<Self>) -> String {
        format!("{} greets {}", self.node, msg.from)
    }
}

swarm::remote_actor!(Greeter: Hello);

/// How a node is reached.
enum Role {
    Relay,
    Public,
    /// Behind NAT: reached through these relays.
    Natted(Vec<SocketAddr>),
}

async fn start(ca: &Throwaway, name: &str, role: Role, seeds: Vec<SocketAddr>) -> (Node, Arbiter) {
    let mut config = MeshConfig::new("127.0.0.1:0".parse().unwrap(), ca.node(name, &["worker"]));
    match role {
        Role::Relay => config.relay = true,
        Role::Public => {}
        Role::Natted(relays) => {
            config.relayed = true;
            config.relays = relays;
            // An address where nothing listens: nobody can dial this node.
            let unused = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            config.advertise = Some(unused);
        }
    }
    config.upgrade_interval = Duration::from_millis(500);
    let mut cluster = ClusterConfig {
        seeds,
        ..ClusterConfig::default()
    };
    cluster.gossip.probe_period = Duration::from_millis(300);
    cluster.gossip.probe_rtt = Duration::from_millis(150);
    config.cluster = Some(cluster);
    let arbiter = Arbiter::new();
    let node = Node::start_on(&arbiter.handle(), config).await.unwrap();
    let greeter_name = name.to_owned();
    node.spawn("greeter", move |_| Greeter { node: greeter_name })
        .unwrap();
    (node, arbiter)
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for _ in 0..200 {
        tick.tick().await;
        if done().await {
            return;
        }
    }
    panic!("timed out waiting for {what}");
}

fn describe(node: &Node, peer: &Node) -> String {
    match node.peers().into_iter().find(|p| p.id == peer.id()) {
        Some(p) => match p.via {
            Some(relay) => format!("relayed via {}", relay.short()),
            None => format!("direct to {}", p.addr),
        },
        None => "no link".into(),
    }
}

#[actix::main]
async fn main() {
    let ca = Throwaway::new("example");
    let (relay, _t1) = start(&ca, "relay", Role::Relay, vec![]).await;
    let relays = vec![relay.listen_addr()];
    let (public, _t2) = start(&ca, "public", Role::Public, relays.clone()).await;
    let (lab, _t3) = start(&ca, "lab", Role::Natted(relays.clone()), relays.clone()).await;
    let (laptop, _t4) = start(&ca, "laptop", Role::Natted(relays.clone()), relays).await;
    for node in [&relay, &public, &lab, &laptop] {
        node.cluster()
            .unwrap()
            .wait_for_members(4, Duration::from_secs(10))
            .await
            .expect("every member alive, with its metadata");
    }

    // Two nodes behind NAT: through the relay, their own Noise session inside.
    let on_lab = laptop.remote::<Greeter>(lab.id(), "greeter");
    let answer = on_lab
        .send(Hello {
            from: "laptop".into(),
        })
        .await
        .unwrap();
    println!("{answer}  (laptop -> lab: {})", describe(&laptop, &lab));
    let stats = relay.stats();
    println!(
        "relay forwarded {} frames, {} bytes of ciphertext",
        stats.relay_frames, stats.relay_bytes
    );

    // The public node reaches the lab through the relay first; the lab
    // dials back, and the link becomes direct without losing a message.
    let on_lab = public.remote::<Greeter>(lab.id(), "greeter");
    let answer = on_lab
        .send(Hello {
            from: "public".into(),
        })
        .await
        .unwrap();
    println!("{answer}  (public -> lab: {})", describe(&public, &lab));
    wait_for("a direct link", async || {
        describe(&public, &lab).starts_with("direct")
    })
    .await;
    let answer = on_lab
        .send(Hello {
            from: "public".into(),
        })
        .await
        .unwrap();
    println!("{answer}  (public -> lab: {})", describe(&public, &lab));

    for node in [&laptop, &lab, &public, &relay] {
        node.shutdown();
    }
}
