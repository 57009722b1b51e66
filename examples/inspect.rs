//! What the debug console reads, from a program: a worker runs an actor
//! with an inspect hook, another node sends it traffic, and an inspecting
//! node (certificate roles worker and operator, so no second factor)
//! asks the worker's `swarm.inspect` actor for its snapshot, traces the
//! actor, and reads its state through the hook. `swarm console` does the
//! same for every member, once a second.
//!
//! Run it with:
//!
//! ```sh
//! cargo run --example inspect
//! ```

use actix::prelude::*;
use swarm::credentials::Throwaway;
use swarm::inspect::{
    Inspect, InspectActor, InspectState, Inspector, ReadTrace, SetTrace, INSPECT_ACTOR,
};
use swarm::{MeshConfig, Node};

/// A ledger that shows its balance to operators.
#[derive(Default)]
struct Ledger {
    balance: u64,
}

impl Actor for Ledger {
    type Context = Context<Self>;
}

#[derive(serde::Serialize, serde::Deserialize, Message)]
#[rtype(result = "u64")]
struct Deposit(u64);

swarm::remote_message!(Deposit => "example.inspect.Deposit");

impl Handler<Deposit> for Ledger {
    type Result = u64;

    fn handle(&mut self, Deposit(n): Deposit, _: &mut Context<Self>) -> u64 {
        self.balance += n;
        self.balance
    }
}

/// The inspect hook: the state the console's detail pane shows, as JSON.
impl Handler<InspectState> for Ledger {
    type Result = String;

    fn handle(&mut self, _: InspectState, _: &mut Context<Self>) -> String {
        format!("{{\"balance\": {}}}", self.balance)
    }
}

// Listing InspectState in the protocol turns the hook on.
swarm::remote_actor!(Ledger: Deposit, InspectState);

fn config(ca: &Throwaway, name: &str, roles: &[&str]) -> MeshConfig {
    MeshConfig::new("127.0.0.1:0".parse().unwrap(), ca.node(name, roles))
}

#[actix::main]
async fn main() {
    let ca = Throwaway::new("example");
    let worker = Node::start(config(&ca, "worker", &["worker"]))
        .await
        .unwrap();
    worker.spawn("ledger", |_| Ledger::default()).unwrap();
    let client = Node::start(config(&ca, "client", &["worker"]))
        .await
        .unwrap();
    let inspector_node = Node::start(config(&ca, "inspector", &["worker", "operator"]))
        .await
        .unwrap();
    client.connect(worker.listen_addr()).await.unwrap();
    inspector_node.connect(worker.listen_addr()).await.unwrap();
    let inspector = inspector_node.remote::<Inspector>(worker.id(), INSPECT_ACTOR);

    // Trace the ledger, then send it traffic.
    let trace_on = SetTrace {
        actor: "ledger".into(),
        on: true,
    };
    inspector.send(trace_on).await.unwrap().unwrap();
    let ledger = client.remote::<Ledger>(worker.id(), "ledger");
    for i in 1..=100 {
        ledger.send(Deposit(i)).await.unwrap();
    }

    // What the console's Actors view shows for it.
    let snapshot = inspector.send(Inspect).await.unwrap();
    let row = snapshot.actors.iter().find(|a| a.name == "ledger").unwrap();
    println!(
        "ledger on {}: {} messages ({} asks), backlog {}, handler p50 {:.1} µs, p99 {:.1} µs",
        row.node_name,
        row.messages,
        row.asks,
        row.backlog,
        row.handling_p50_us,
        row.handling_p99_us
    );
    for link in &snapshot.links {
        println!(
            "link to {}: {} messages in, {} out, {} bytes in",
            link.peer_name, link.msgs_in, link.msgs_out, link.bytes_in
        );
    }

    // Its trace: the sampled messages, newest last.
    let read = ReadTrace {
        actor: "ledger".into(),
        after: 0,
    };
    let trace = inspector.send(read).await.unwrap().unwrap();
    if let Some(last) = trace.last() {
        println!(
            "traced {} messages; the last: {} from {} ({} bytes), handled in {:.1} µs",
            trace.len(),
            last.tag,
            &last.from[..8],
            last.bytes,
            last.handled_us
        );
    }

    // Its own state, through the hook.
    let state = InspectActor {
        actor: "ledger".into(),
    };
    let json = inspector.send(state).await.unwrap().unwrap();
    println!("state: {}", json.unwrap_or_else(|| "(no hook)".into()));

    for node in [worker, client, inspector_node] {
        node.shutdown();
    }
}
