//! An in-process node that answers one command per stdin line with
//! one `DRIVER {json}` line on stdout. The partition test's commands are
//! in `driver/deposits.rs`.

mod deposits;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use serde_json::{json, Value};
use swarm::config::NodeFile;
use swarm::control::{ControlError, Spawn};
use swarm::protocol::membership::MemberState;
use swarm::{Node, NodeId};
use swarm_actors::cluster::{ClusterAgent, ListMembers, CLUSTER_ACTOR};
use swarm_cli::demo::{
    Add, Adder, Bump, Count, Counter, CounterState, Forward, Ledger, LedgerArgs, Relay, Work,
    Worker,
};

use crate::util::eventually;

pub(crate) use deposits::{Answer, Balance};

pub(super) fn run(config: &Path) {
    let file = NodeFile::load(config).unwrap();
    let mesh = file.mesh_config().unwrap();
    actix::System::new().block_on(async move {
        let node = Node::start(mesh).await.unwrap();
        swarm_cli::demo::expose_info(&node).unwrap();
        swarm_cli::demo::expose_workload(&node).unwrap();
        // Lines from stdin, read on a thread of their own.
        let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut state = State::default();
        while let Some(line) = lines.recv().await {
            let answer = state.handle(&node, line.trim()).await;
            println!("DRIVER {answer}");
        }
    });
}

type Stream = (Rc<RefCell<u64>>, Rc<RefCell<bool>>);

#[derive(Default)]
struct State {
    seq: HashMap<String, u64>,
    /// A stream of tells in progress: how many were sent, and its stop flag.
    stream: Option<Stream>,
    /// Deposit loops and their answers.
    deposits: deposits::Deposits,
}

async fn id_of(node: &Node, name: &str) -> Option<NodeId> {
    let members = node.cluster()?.members().await.ok()?;
    members.iter().find(|m| m.name() == name).map(|m| m.node)
}

async fn name_of(node: &Node, id: NodeId) -> String {
    let members = node.cluster().unwrap().members().await.unwrap();
    members
        .iter()
        .find(|m| m.node == id)
        .map_or_else(|| id.short(), |m| m.name().to_owned())
}

async fn link(node: &Node, name: &str) -> Value {
    let Some(id) = id_of(node, name).await else {
        return json!({"error": "unknown node"});
    };
    match node.peers().into_iter().find(|p| p.id == id) {
        Some(p) => {
            let via = match p.via {
                Some(relay) => Value::from(name_of(node, relay).await),
                None => Value::Null,
            };
            json!({"via": via, "addr": p.addr.to_string()})
        }
        None => json!({"via": null, "link": false}),
    }
}

/// A control error's kind, for the test's assertions.
fn kind(e: &ControlError) -> &'static str {
    match e {
        ControlError::NoQuorum { .. } => "no_quorum",
        ControlError::NotLeader { .. } => "not_leader",
        ControlError::NoSuchName { .. } => "no_such_name",
        ControlError::NoHead { .. } => "no_head",
        _ => "other",
    }
}

/// Where the head says `name` runs, or why it does not say.
async fn resolve(node: &Node, name: &str) -> Value {
    match node.control().unwrap().resolve(name).await {
        Ok(at) => json!({"node": name_of(node, at.node).await, "epoch": at.epoch}),
        Err(e) => json!({"error": kind(&e), "message": e.to_string()}),
    }
}

impl State {
    async fn handle(&mut self, node: &Node, line: &str) -> Value {
        let words: Vec<&str> = line.split_whitespace().collect();
        let within =
            |s: Option<&&str>| Duration::from_secs(s.and_then(|s| s.parse().ok()).unwrap_or(30));
        match words.as_slice() {
            ["alive", n] => {
                let n: usize = n.parse().unwrap();
                let ok = eventually(Duration::from_secs(60), || async {
                    node.cluster().unwrap().members().await.is_ok_and(|m| {
                        // Alive, with their metadata (names, relays) known.
                        m.iter()
                            .filter(|m| m.state == MemberState::Alive && m.meta.is_some())
                            .count()
                            == n
                    })
                })
                .await;
                json!({"ok": ok})
            }
            ["ask", name] => {
                let id = id_of(node, name).await.unwrap();
                match node
                    .remote::<Adder>(id, "adder")
                    .send(Add { a: 2, b: 3 })
                    .await
                {
                    Ok(sum) => json!({"sum": sum}),
                    Err(e) => json!({"error": e.to_string()}),
                }
            }
            ["ask-until", name, secs] => {
                let id = id_of(node, name).await.unwrap();
                let adder = node.remote::<Adder>(id, "adder");
                let ok = eventually(within(Some(secs)), || {
                    let adder = adder.clone();
                    async move {
                        adder
                            .send_timeout(Add { a: 2, b: 3 }, Duration::from_millis(500))
                            .await
                            .is_ok()
                    }
                })
                .await;
                json!({"ok": ok})
            }
            ["forward", via, to] => {
                let via = id_of(node, via).await.unwrap();
                let to = id_of(node, to).await.unwrap();
                let relay = node.remote::<Relay>(via, "relay");
                match relay
                    .send(Forward {
                        node: to,
                        add: Add { a: 40, b: 2 },
                    })
                    .await
                {
                    Ok(Ok((sum, _))) => json!({"sum": sum}),
                    Ok(Err(e)) => json!({"error": e}),
                    Err(e) => json!({"error": e.to_string()}),
                }
            }
            ["count", name] => {
                let id = id_of(node, name).await.unwrap();
                match node.remote::<Adder>(id, "adder").send(Count).await {
                    Ok(count) => json!({"count": count}),
                    Err(e) => json!({"error": e.to_string()}),
                }
            }
            ["link", name] => link(node, name).await,
            ["wait-link", name, kind, secs] => {
                let want_relayed = *kind == "relayed";
                let ok = eventually(within(Some(secs)), || async {
                    let l = link(node, name).await;
                    l.get("addr").is_some() && (l["via"].is_string() == want_relayed)
                })
                .await;
                json!({"ok": ok, "link": link(node, name).await})
            }
            ["grows", name, secs] => {
                // Tells that arrive from now on, while the link stays as it is.
                let id = id_of(node, name).await.unwrap();
                let counter = node.remote::<Counter>(id, "counter");
                let received = |c: swarm::RemoteAddr<Counter>| async move {
                    c.send(CounterState).await.map(|(r, _)| r).unwrap_or(0)
                };
                let start = received(counter.clone()).await;
                let ok = eventually(within(Some(secs)), || {
                    let counter = counter.clone();
                    async move { received(counter).await >= start + 20 }
                })
                .await;
                json!({"ok": ok, "link": link(node, name).await})
            }
            ["tells", name, n] => {
                let id = id_of(node, name).await.unwrap();
                let counter = node.remote::<Counter>(id, "counter");
                let n: u64 = n.parse().unwrap();
                let seq = self.seq.entry((*name).to_owned()).or_default();
                let mut sent = 0;
                for _ in 0..n {
                    *seq += 1;
                    if counter
                        .tell(Bump {
                            seq: *seq,
                            pad: Vec::new(),
                        })
                        .await
                        .is_ok()
                    {
                        sent += 1;
                    }
                }
                json!({"sent": sent})
            }
            ["stream-start", name] => {
                let id = id_of(node, name).await.unwrap();
                let counter = node.remote::<Counter>(id, "counter");
                let sent = Rc::new(RefCell::new(0u64));
                let stop = Rc::new(RefCell::new(false));
                self.stream = Some((sent.clone(), stop.clone()));
                actix_rt::spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_millis(5));
                    let mut seq = 0;
                    while !*stop.borrow() {
                        tick.tick().await;
                        seq += 1;
                        // Sent or not (no link for a moment), the
                        // sequence number is used up: order is checked.
                        let _ = counter.try_tell(Bump {
                            seq,
                            pad: Vec::new(),
                        });
                        *sent.borrow_mut() = seq;
                    }
                });
                json!({"ok": true})
            }
            ["stream-stop"] => match self.stream.take() {
                Some((sent, stop)) => {
                    *stop.borrow_mut() = true;
                    let sent = *sent.borrow();
                    json!({"sent": sent})
                }
                None => json!({"error": "no stream"}),
            },
            ["state", name] => {
                let id = id_of(node, name).await.unwrap();
                match node
                    .remote::<Counter>(id, "counter")
                    .send(CounterState)
                    .await
                {
                    Ok((received, out_of_order)) => {
                        json!({"received": received, "out_of_order": out_of_order})
                    }
                    Err(e) => json!({"error": e.to_string()}),
                }
            }
            ["stats", name] => {
                let id = id_of(node, name).await.unwrap();
                let agent = node.remote::<ClusterAgent>(id, CLUSTER_ACTOR);
                match agent.send(ListMembers).await {
                    Ok(rows) => {
                        let own = rows.iter().find_map(|r| r.counters).unwrap();
                        serde_json::to_value(own.mesh).unwrap()
                    }
                    Err(e) => json!({"error": e.to_string()}),
                }
            }
            ["service", name, n] => {
                let service = node.cluster().unwrap().service::<Worker>(name);
                let ready = eventually(Duration::from_secs(30), || async {
                    !service.instances().is_empty()
                })
                .await;
                if !ready {
                    return json!({"error": "no instance"});
                }
                let mut nodes = Vec::new();
                for key in 0..n.parse::<u64>().unwrap() {
                    match service.send(Work { key, delay_ms: 0 }).await {
                        Ok(served) => {
                            if !nodes.contains(&served.node) {
                                nodes.push(served.node);
                            }
                        }
                        Err(e) => return json!({"error": e.to_string()}),
                    }
                }
                json!({"nodes": nodes})
            }
            ["spawn", name, secs] => {
                let control = node.control().unwrap();
                let deadline = tokio::time::Instant::now() + within(Some(secs));
                let mut poll = tokio::time::interval(Duration::from_millis(100));
                loop {
                    poll.tick().await;
                    let spawn = Spawn::<Ledger>::named(*name).args(LedgerArgs { opening: 0 });
                    match control.spawn(spawn).await {
                        Ok(named) => {
                            let (at, _) = named.location().unwrap();
                            break json!({"node": name_of(node, at).await});
                        }
                        Err(e) if tokio::time::Instant::now() >= deadline => {
                            break json!({"error": e.to_string()});
                        }
                        Err(_) => {}
                    }
                }
            }
            ["leader", secs] => {
                let control = node.control().unwrap();
                let deadline = tokio::time::Instant::now() + within(Some(secs));
                let mut poll = tokio::time::interval(Duration::from_millis(100));
                loop {
                    poll.tick().await;
                    let leaders: Vec<NodeId> = control
                        .head_status()
                        .await
                        .into_iter()
                        .filter_map(|(n, row)| row.ok().filter(|r| r.role == "leader").map(|_| n))
                        .collect();
                    if let [leader] = leaders.as_slice() {
                        break json!({"leader": name_of(node, *leader).await});
                    }
                    if tokio::time::Instant::now() >= deadline {
                        break json!({"error": "no single leader"});
                    }
                }
            }
            ["resolve", name] => resolve(node, name).await,
            ["resolve-until", name, want, secs] => {
                let deadline = tokio::time::Instant::now() + within(Some(secs));
                let mut poll = tokio::time::interval(Duration::from_millis(100));
                loop {
                    poll.tick().await;
                    let last = resolve(node, name).await;
                    if last["error"] == *want {
                        break json!({"ok": true, "last": last});
                    }
                    if tokio::time::Instant::now() >= deadline {
                        break json!({"ok": false, "last": last});
                    }
                }
            }
            [command, args @ ..] if deposits::COMMANDS.contains(command) => {
                self.deposits.handle(node, command, args).await
            }
            other => json!({"error": format!("unknown command {other:?}")}),
        }
    }
}
