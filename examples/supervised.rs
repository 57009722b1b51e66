//! Local supervision: an actor whose handler panics fails alone. The ask
//! that hit the panic gets `ActorFailed`, the node and its other actors
//! carry on, and the actor is started again from its factory by its
//! restart policy, until the policy gives up.
//!
//! Run it with:
//!
//! ```sh
//! cargo run --example supervised
//! ```

use std::time::Duration;

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use swarm::credentials::Throwaway;
use swarm::supervision::{Backoff, Restart};
use swarm::{MeshConfig, Node};

#[derive(Default)]
struct Tally {
    count: u64,
}

impl Actor for Tally {
    type Context = Context<Self>;
}

/// Adds `n`; a negative `n` is a bug in this handler (it panics).
#[derive(Debug, Serialize, Deserialize, Message)]
#[rtype(result = "u64")]
struct Bump {
    n: i64,
}

swarm::remote_message!(Bump => "example.Bump");

impl Handler<Bump> for Tally {
    type Result = u64;

    fn handle(&mut self, msg: Bump, _: &mut Context<Self>) -> u64 {
        let n = u64::try_from(msg.n).expect("a negative bump (a bug, on purpose)");
        self.count += n;
        self.count
    }
}

swarm::remote_actor!(Tally: Bump);

#[actix::main]
async fn main() {
    let ca = Throwaway::new("example");
    let host_thread = Arbiter::new();
    let config =
        |name: &str| MeshConfig::new("127.0.0.1:0".parse().unwrap(), ca.node(name, &["worker"]));
    let host = Node::start_on(&host_thread.handle(), config("host"))
        .await
        .unwrap();
    let client = Node::start(config("client")).await.unwrap();
    client.connect(host.listen_addr()).await.unwrap();

    // At most 3 restarts a minute, 50 ms then 100 ms then 200 ms apart.
    let policy = Restart::on_failure()
        .max(3)
        .within(Duration::from_secs(60))
        .backoff(Backoff::exponential(
            Duration::from_millis(50),
            Duration::from_secs(1),
        ));
    let tally = host
        .supervise("tally", policy, Tally::default)
        .await
        .unwrap();
    let remote = client.remote::<Tally>(host.id(), "tally");

    println!("bump 5 -> {:?}", remote.send(Bump { n: 5 }).await);
    println!("bump -1 -> {:?}", remote.send(Bump { n: -1 }).await);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let fresh = loop {
        tick.tick().await;
        if let Ok(count) = remote.send(Bump { n: 1 }).await {
            break count;
        }
    };
    println!(
        "after {} restart(s), a fresh incarnation counts {fresh}",
        tally.restarts()
    );
    tally.stop();
    client.shutdown();
    host.shutdown();
}
