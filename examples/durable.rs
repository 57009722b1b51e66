//! A durable actor in one process: one head (a Raft group of one) and two
//! workers, each node on its own thread. An account persists each deposit
//! as an event and saves its holder's name whole (`persist_state`); when
//! its worker's thread stops (its sockets close as a killed process's
//! would) the next incarnation, on the other worker, recovers both from
//! the journal in the head group before it answers. Left idle, it is
//! passivated (stopped, its state in its journal) and its next call places
//! it again.
//!
//! Run it with:
//!
//! ```sh
//! cargo run --example durable
//! ```

use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use swarm::control::{HeadConfig, Spawn};
use swarm::credentials::Throwaway;
use swarm::durable::{self, Durable, Journal, StoreError};
use swarm::supervision::{Incarnation, Restart, Spawnable};
use swarm::{ClusterConfig, MeshConfig, Node};

/// A named account: a holder and a balance.
struct Account {
    holder: String,
    balance: u64,
    epoch: u64,
    journal: Journal,
}

/// What happens to an account, as its journal keeps it.
#[derive(Serialize, Deserialize)]
enum Event {
    Deposited(u64),
}

/// The whole state, as a snapshot keeps it.
#[derive(Serialize, Deserialize)]
struct State {
    holder: String,
    balance: u64,
}

impl Durable for Account {
    const JOURNAL: &'static str = "example.Account";
    type Event = Event;
    type Snapshot = State;

    fn apply(&mut self, Event::Deposited(n): &Event) {
        self.balance += n;
    }

    fn snapshot(&self) -> State {
        State {
            holder: self.holder.clone(),
            balance: self.balance,
        }
    }

    fn restore(&mut self, state: State) {
        self.holder = state.holder;
        self.balance = state.balance;
    }

    /// A snapshot every 3 events (100 by default).
    fn snapshot_every() -> u64 {
        3
    }

    fn journal(&mut self) -> &mut Journal {
        &mut self.journal
    }
}

impl Actor for Account {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        durable::recover(self, ctx);
    }
}

/// Deposits; answers (holder, balance, epoch) once durable.
#[derive(Serialize, Deserialize, Message)]
#[rtype(result = "Result<(String, u64, u64), StoreError>")]
struct Deposit(u64);

/// Renames the holder, saved whole.
#[derive(Serialize, Deserialize, Message)]
#[rtype(result = "Result<(), StoreError>")]
struct Rename(String);

swarm::remote_message!(Deposit => "example.durable.Deposit", Rename => "example.durable.Rename");

impl Handler<Deposit> for Account {
    type Result = ResponseActFuture<Self, Result<(String, u64, u64), StoreError>>;

    fn handle(&mut self, Deposit(n): Deposit, ctx: &mut Context<Self>) -> Self::Result {
        if n == 0 {
            let answer = (self.holder.clone(), self.balance, self.epoch);
            return Box::pin(fut::ready(Ok(answer)));
        }
        // The answer is built right after the event is applied.
        durable::persist_then(self, ctx, vec![Event::Deposited(n)], |act: &mut Self| {
            (act.holder.clone(), act.balance, act.epoch)
        })
    }
}

impl Handler<Rename> for Account {
    type Result = ResponseActFuture<Self, Result<(), StoreError>>;

    fn handle(&mut self, Rename(holder): Rename, ctx: &mut Context<Self>) -> Self::Result {
        // The Orleans/Dapr way: change the state, then save it whole.
        self.holder = holder;
        durable::persist_state(self, ctx)
    }
}

swarm::remote_actor!(Account: Deposit, Rename);

impl Spawnable for Account {
    const TYPE: &'static str = "example.Account";
    type Args = String;

    fn build(holder: &String, incarnation: &Incarnation) -> Self {
        Account {
            holder: holder.clone(),
            balance: 0,
            epoch: incarnation.epoch,
            journal: Journal::new(incarnation),
        }
    }
}

#[actix::main]
async fn main() {
    let ca = Throwaway::new("example");
    let dir = std::env::temp_dir().join(format!("swarm-example-durable-{}", std::process::id()));
    let mut threads = Vec::new();
    let mut nodes: Vec<Node> = Vec::new();
    for (name, roles) in [
        ("head", &["head"][..]),
        ("w1", &["worker"][..]),
        ("w2", &["worker"][..]),
    ] {
        let mut config = MeshConfig::new("127.0.0.1:0".parse().unwrap(), ca.node(name, roles));
        config.cluster = Some(ClusterConfig {
            seeds: nodes.first().map(Node::listen_addr).into_iter().collect(),
            ..ClusterConfig::default()
        });
        if roles.contains(&"head") {
            config.head = Some(HeadConfig::new(dir.join(name)));
        }
        let thread = Arbiter::new();
        let node = Node::start_on(&thread.handle(), config).await.unwrap();
        if roles.contains(&"worker") {
            node.register::<Account>();
        }
        nodes.push(node);
        threads.push(thread);
    }
    let control = nodes[0].control().unwrap().clone();
    let spawn = || {
        Spawn::<Account>::named("account")
            .args("ada".to_owned())
            .restart(Restart::on_failure().max(3))
            .passivate_after(Duration::from_millis(500))
    };
    let account = loop {
        match control.spawn(spawn()).await {
            Ok(account) => break account,
            Err(e) => {
                println!("not placed yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    for n in [10, 20, 30, 40] {
        let answer = account.send(Deposit(n)).await.unwrap().unwrap();
        println!("deposit {n} -> {answer:?} (acknowledged once durable)");
    }
    account
        .send(Rename("grace".to_owned()))
        .await
        .unwrap()
        .unwrap();
    println!("renamed to grace (saved whole)");

    let (at, _) = account.location().unwrap();
    let worker = nodes.iter().position(|n| n.id() == at).unwrap();
    let stopped = Instant::now();
    threads.remove(worker).stop();
    println!("stopped {}'s thread", nodes[worker].name());
    let answer = loop {
        if let Ok(Ok(answer)) = account.send(Deposit(0)).await {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!(
        "answered again after {:?}: {answer:?} (a new incarnation, recovered from its journal)",
        stopped.elapsed()
    );
    assert_eq!((answer.0.as_str(), answer.1), ("grace", 100));

    // Idle for 500 ms: passivated, then activated by the next call.
    loop {
        let placed = control.placed().await.unwrap();
        if placed
            .iter()
            .any(|r| r.name == "account" && r.state == "passive")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("idle: passivated (no node runs it; its state is in its journal)");
    let woken = Instant::now();
    let answer = account.send(Deposit(1)).await.unwrap().unwrap();
    println!(
        "the next call activated it in {:?}: {answer:?}",
        woken.elapsed()
    );
    assert_eq!((answer.0.as_str(), answer.1), ("grace", 101));
    control.stop("account").await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    System::current().stop();
}
