//! The control plane in one process: one head (a Raft group of one, its
//! log in a scratch directory) and two workers, each node on its own
//! thread. A named actor is placed by resources, answers through a handle
//! that follows it, and when its worker's thread stops (its sockets close
//! as a killed process's would) it answers again from the other worker.
//!
//! Run it with:
//!
//! ```sh
//! cargo run --example control
//! ```

use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use swarm::control::{HeadConfig, Spawn};
use swarm::credentials::Throwaway;
use swarm::supervision::{Incarnation, Restart, Spawnable};
use swarm::{ClusterConfig, MeshConfig, Node};

/// A named counter; each answer says which incarnation gave it.
struct Counter {
    count: u64,
    epoch: u64,
}

impl Actor for Counter {
    type Context = Context<Self>;
}

#[derive(Debug, Serialize, Deserialize, Message)]
#[rtype(result = "(u64, u64)")]
struct Add(u64);

swarm::remote_message!(Add => "example.control.Add");

impl Handler<Add> for Counter {
    type Result = MessageResult<Add>;

    fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) -> Self::Result {
        self.count += n;
        MessageResult((self.count, self.epoch))
    }
}

swarm::remote_actor!(Counter: Add);

#[derive(Serialize, Deserialize)]
struct CounterArgs {
    start: u64,
}

/// Declared once, next to the remote protocol: how the cluster starts one.
impl Spawnable for Counter {
    const TYPE: &'static str = "example.Counter";
    type Args = CounterArgs;

    fn build(args: &CounterArgs, incarnation: &Incarnation) -> Self {
        Counter {
            count: args.start,
            epoch: incarnation.epoch,
        }
    }
}

#[actix::main]
async fn main() {
    let ca = Throwaway::new("example");
    let dir = std::env::temp_dir().join(format!("swarm-example-control-{}", std::process::id()));
    let mut threads = Vec::new();
    let mut nodes: Vec<Node> = Vec::new();
    for (name, roles, tpus) in [
        ("head", &["head"][..], 0.0),
        ("w1", &["worker"][..], 1.0),
        ("w2", &["worker"][..], 1.0),
    ] {
        let mut config = MeshConfig::new("127.0.0.1:0".parse().unwrap(), ca.node(name, roles));
        let mut cluster = ClusterConfig {
            seeds: nodes.first().map(Node::listen_addr).into_iter().collect(),
            ..ClusterConfig::default()
        };
        cluster.resources.custom = vec![("tpu".to_owned(), tpus)];
        config.cluster = Some(cluster);
        if roles.contains(&"head") {
            config.head = Some(HeadConfig::new(dir.join(name)));
        }
        let thread = Arbiter::new();
        let node = Node::start_on(&thread.handle(), config).await.unwrap();
        node.register::<Counter>();
        println!("{name} started on {}", node.listen_addr());
        nodes.push(node);
        threads.push(thread);
    }
    let control = nodes[0].control().unwrap().clone();

    // The head forms its group and the workers take leases: retry until placed.
    let spawn = || {
        Spawn::<Counter>::named("counter")
            .args(CounterArgs { start: 100 })
            .resource("tpu", 1.0)
            .restart(Restart::on_failure().max(3))
    };
    let counter = loop {
        match control.spawn(spawn()).await {
            Ok(counter) => break counter,
            Err(e) => {
                println!("not placed yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let (at, epoch) = counter.location().unwrap();
    let worker = nodes.iter().position(|n| n.id() == at).unwrap();
    println!(
        "placed \"counter\" on {} (it needs a TPU), epoch {epoch}",
        nodes[worker].name()
    );
    println!("add 1 -> {:?}", counter.send(Add(1)).await.unwrap());

    // Stop the worker's thread: its sockets close as a killed process's would.
    let killed = Instant::now();
    threads.remove(worker).stop();
    println!("stopped {}'s thread", nodes[worker].name());
    println!("next ask: {:?}", counter.send(Add(1)).await);
    let (count, new_epoch) = loop {
        if let Ok(answer) = counter.send(Add(1)).await {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let (now_at, _) = counter.location().unwrap();
    let name = nodes.iter().find(|n| n.id() == now_at).unwrap().name();
    println!(
        "answered again from {name} after {:?}: count {count} (a new incarnation, epoch {new_epoch})",
        killed.elapsed()
    );
    control.stop("counter").await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    System::current().stop();
}
