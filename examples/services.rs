//! Three nodes in one process form a cluster through one seed (SWIM over
//! sealed UDP gossip), two of them serve a named service, and the third
//! sends to it through a load-balanced `ServiceRef`, watches membership
//! events, and keeps being served when one instance's node stops.
//!
//! Run it with:
//!
//! ```sh
//! cargo run --example services
//! ```
//!
//! Between processes the same works with
//! `swarm node start --config n2.toml --seed 127.0.0.1:7001`, and
//! `swarm members` / `swarm services` list what a node knows (README,
//! "Membership and services").

use std::time::Duration;

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use swarm::credentials::Throwaway;
use swarm::{ClusterConfig, ClusterEvent, MeshConfig, Node, Strategy};

// 1. A message and the actor that serves it.
#[derive(Debug, Serialize, Deserialize, Message)]
#[rtype(result = "String")]
struct Greet {
    user: String,
}

swarm::remote_message!(Greet => "example.Greet");

impl swarm::Keyed for Greet {
    type Key = String;

    fn key(&self) -> String {
        self.user.clone()
    }
}

struct Greeter {
    node: String,
}

impl Actor for Greeter {
    type Context = Context<Self>;
}

impl Handler<Greet> for Greeter {
    type Result = String;

    fn handle(&mut self, msg: Greet, _: &mut Context<Self>) -> String {
        format!("hello {} from {}", msg.user, self.node)
    }
}

// The messages other nodes may send a Greeter, declared once.
swarm::remote_actor!(Greeter: Greet);

// 2. An actor that prints membership events.
struct Watcher;

impl Actor for Watcher {
    type Context = Context<Self>;
}

impl Handler<ClusterEvent> for Watcher {
    type Result = ();

    fn handle(&mut self, event: ClusterEvent, _: &mut Context<Self>) {
        let m = event.member();
        let kind = match &event {
            ClusterEvent::MemberUp(_) => "up",
            ClusterEvent::Suspect(_) => "suspect",
            ClusterEvent::MemberDown(_) => "down",
            ClusterEvent::MemberLeft(_) => "left",
            ClusterEvent::MetadataChanged(_) => "metadata",
            ClusterEvent::Rejoined(_) => "rejoined",
        };
        println!(
            "  event: {kind:<8} {} ({}) at {}",
            m.name(),
            m.node.short(),
            m.addr
        );
    }
}

/// A node with membership on its own thread, joining through `seeds`.
async fn start(ca: &Throwaway, name: &str, seeds: Vec<std::net::SocketAddr>) -> (Node, Arbiter) {
    let mut config = MeshConfig::new("127.0.0.1:0".parse().unwrap(), ca.node(name, &["worker"]));
    let mut cluster = ClusterConfig {
        seeds,
        ..ClusterConfig::default()
    };
    // Faster than the LAN defaults, so the example finishes quickly.
    cluster.gossip.probe_period = Duration::from_millis(300);
    cluster.gossip.probe_rtt = Duration::from_millis(150);
    cluster.gossip.suspect_timeout = Some(Duration::from_secs(1));
    config.cluster = Some(cluster);
    let arbiter = Arbiter::new();
    let node = Node::start_on(&arbiter.handle(), config).await.unwrap();
    (node, arbiter)
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[actix::main]
async fn main() {
    let ca = Throwaway::new("example");
    let (client, _a1) = start(&ca, "client", vec![]).await;
    let seed = vec![client.listen_addr()];
    let (s1, _a2) = start(&ca, "server-1", seed.clone()).await;
    let (s2, _a3) = start(&ca, "server-2", seed).await;

    // 3. Subscribe to membership events.
    let watcher = Watcher.start();
    let cluster = client.cluster().expect("started with membership");
    let members = cluster.subscribe(watcher.recipient()).await.unwrap();
    println!("client knows {} member(s) at first", members.len());

    // 4. Each server starts a Greeter on its thread, exposes it and registers
    //    it as an instance of "greeter".
    for (node, name) in [(&s1, "server-1"), (&s2, "server-2")] {
        node.spawn("greeter", move |_| Greeter { node: name.into() })
            .unwrap();
        let cluster = node.cluster().expect("started with membership");
        cluster
            .register_service("greeter", "greeter")
            .await
            .unwrap();
    }
    wait_for("two greeter instances", || {
        cluster
            .services()
            .iter()
            .any(|(s, list)| s == "greeter" && list.len() == 2)
    })
    .await;

    // 5. Send through a ServiceRef: P2C on EWMA latency by default.
    let greeter = cluster.service::<Greeter>("greeter");
    for user in ["ada", "grace", "alan", "edsger"] {
        println!(
            "{}",
            greeter.send(Greet { user: user.into() }).await.unwrap()
        );
    }
    // Consistent hashing: the same user always lands on the same instance.
    let sticky = greeter.clone().with_strategy(Strategy::ConsistentHash);
    for _ in 0..2 {
        println!(
            "{}",
            sticky
                .send_keyed(Greet { user: "ada".into() })
                .await
                .unwrap()
        );
    }

    // 6. One server leaves; the service keeps answering from the other.
    s2.cluster().expect("started with membership").leave().await;
    wait_for("one instance left", || {
        cluster
            .services()
            .iter()
            .any(|(s, list)| s == "greeter" && list.len() == 1)
    })
    .await;
    println!(
        "{}",
        greeter
            .send(Greet {
                user: "barbara".into()
            })
            .await
            .unwrap()
    );
    s1.shutdown();
    s2.shutdown();
    client.shutdown();
}
