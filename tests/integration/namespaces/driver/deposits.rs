//! The partition test's commands: a demo ledger placed on a chosen node,
//! deposits every 50 ms through a default `Named` handle with every answer
//! recorded and timed, what each node's host runs, and the member states
//! this node sees. The test judges the answers; this only records them.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use swarm::control::Spawn;
use swarm::inspect::{Inspect, Inspector, INSPECT_ACTOR};
use swarm::placement::Placement;
use swarm::supervision::{Host, ListActors, HOST_ACTOR};
use swarm::{Node, NodeId};
use swarm_cli::demo::{Deposit, Ledger, LedgerArgs};

use super::{id_of, name_of};

/// The commands this file answers.
pub(super) const COMMANDS: &[&str] = &[
    "place", "deposit", "answers", "hosts", "placed", "events", "members",
];

/// One deposit's outcome, as the driver saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Answer {
    /// The ledger.
    pub(crate) name: String,
    /// The host the driver runs on.
    pub(crate) driver: String,
    /// When the deposit was sent: microseconds since the Unix epoch, from
    /// CLOCK_REALTIME (one clock for every namespace of one kernel).
    pub(crate) sent_us: u64,
    /// When its answer (or error) came back, from the same clock.
    pub(crate) acked_us: u64,
    /// How much it deposited.
    pub(crate) amount: u64,
    /// The acknowledged answer, if there was one.
    pub(crate) balance: Option<Balance>,
    /// Why there was none: the error's variant and text.
    pub(crate) error: Option<(String, String)>,
}

/// An acknowledged deposit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Balance {
    /// The balance after it.
    pub(crate) total: u64,
    /// The epoch of the incarnation that answered.
    pub(crate) epoch: u64,
    /// The node that incarnation runs on (its certificate name).
    pub(crate) node: String,
    /// The epoch the handle's `Named::location()` named after the answer.
    pub(crate) located: Option<u64>,
}

/// Deposit loops in progress and what they recorded.
#[derive(Default)]
pub(super) struct Deposits {
    /// Answers not yet taken by `answers`.
    answers: Rc<RefCell<Vec<Answer>>>,
    /// Set to end every loop.
    stop: Rc<Cell<bool>>,
    /// Node names by id (a member list read per answer would be slow).
    names: Rc<RefCell<HashMap<NodeId, String>>>,
}

impl Deposits {
    /// Answers `command` (one of [`COMMANDS`]) with `args`.
    pub(super) async fn handle(&mut self, node: &Node, command: &str, args: &[&str]) -> Value {
        match (command, args) {
            ("place", [name, on, secs]) => {
                let within = Duration::from_secs(secs.parse().unwrap_or(60));
                place(node, name, on, within).await
            }
            ("deposit", [driver, names @ ..]) => {
                for name in names {
                    let named = match node.control().unwrap().lookup::<Ledger>(name).await {
                        Ok(named) => named,
                        Err(e) => return json!({"error": e.to_string()}),
                    };
                    actix_rt::spawn(deposits(
                        node.clone(),
                        named,
                        (*driver).to_owned(),
                        self.answers.clone(),
                        self.stop.clone(),
                        self.names.clone(),
                    ));
                }
                json!({"ok": true})
            }
            ("deposit", _) => json!({"error": "deposit DRIVER NAME..."}),
            ("answers", ["stop"]) => {
                self.stop.set(true);
                json!({"answers": std::mem::take(&mut *self.answers.borrow_mut())})
            }
            ("answers", []) => json!({"answers": std::mem::take(&mut *self.answers.borrow_mut())}),
            ("hosts", names) => {
                let mut rows = serde_json::Map::new();
                for name in names {
                    let listed = match id_of(node, name).await {
                        Some(id) => node
                            .remote::<Host>(id, HOST_ACTOR)
                            .send_timeout(ListActors, Duration::from_secs(2))
                            .await
                            .map_or_else(
                                |e| json!({"error": e.to_string()}),
                                |r| serde_json::to_value(r).unwrap(),
                            ),
                        None => json!({"error": "unknown node"}),
                    };
                    rows.insert((*name).to_owned(), listed);
                }
                Value::Object(rows)
            }
            ("placed", []) => match node.control().unwrap().placed().await {
                Ok(rows) => {
                    let mut listed = Vec::new();
                    for r in rows {
                        listed.push(json!({
                            "name": r.name,
                            "node": name_of(node, r.node).await,
                            "state": r.state,
                            "epoch": r.epoch,
                            "placements": r.placements,
                        }));
                    }
                    Value::Array(listed)
                }
                Err(e) => json!({"error": e.to_string()}),
            },
            ("events", names) => {
                let mut events = serde_json::Map::new();
                for name in names {
                    let listed = match id_of(node, name).await {
                        Some(id) => node
                            .remote::<Inspector>(id, INSPECT_ACTOR)
                            .send_timeout(Inspect, Duration::from_secs(2))
                            .await
                            .map_or_else(
                                |e| json!({"error": e.to_string()}),
                                |snapshot| {
                                    // Its own rejoins, and what its host did.
                                    let kept: Vec<_> = snapshot
                                        .events
                                        .into_iter()
                                        .filter(|e| match &e.kind[..] {
                                            "member" => e.detail.starts_with("rejoined"),
                                            kind => kind != "refused",
                                        })
                                        .collect();
                                    serde_json::to_value(kept).unwrap()
                                },
                            ),
                        None => json!({"error": "unknown node"}),
                    };
                    events.insert((*name).to_owned(), listed);
                }
                Value::Object(events)
            }
            ("members", []) => match node.cluster().unwrap().members().await {
                Ok(members) => members
                    .iter()
                    .map(|m| (m.name().to_owned(), json!(format!("{:?}", m.state))))
                    .collect::<serde_json::Map<_, _>>()
                    .into(),
                Err(e) => json!({"error": e.to_string()}),
            },
            (command, args) => json!({"error": format!("bad arguments {args:?} to {command}")}),
        }
    }
}

/// A ledger named `name` on node `on`, free to move: placed with a hard
/// affinity first (that waits for `on`'s lease), then stopped and placed
/// again with a soft one. Answers its node and epoch.
async fn place(node: &Node, name: &str, on: &str, within: Duration) -> Value {
    let control = node.control().unwrap();
    let Some(id) = id_of(node, on).await else {
        return json!({"error": "unknown node"});
    };
    let spawn = |hard| {
        Spawn::<Ledger>::named(name)
            .args(LedgerArgs { opening: 0 })
            .placement(Placement::Node { node: id, hard })
    };
    let deadline = tokio::time::Instant::now() + within;
    let mut hard = true;
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    loop {
        poll.tick().await;
        let outcome = if hard {
            match control.spawn(spawn(true)).await {
                Ok(_) => control.stop(name).await.map(|()| None),
                Err(e) => Err(e),
            }
        } else {
            control.spawn(spawn(false)).await.map(Some)
        };
        match outcome {
            Ok(None) => hard = false,
            Ok(Some(named)) => {
                let (at, epoch) = named.location().unwrap();
                break json!({"node": name_of(node, at).await, "epoch": epoch});
            }
            Err(e) if tokio::time::Instant::now() >= deadline => {
                break json!({"error": e.to_string()});
            }
            Err(_) => {}
        }
    }
}

/// Deposits [`AMOUNT`] into `named` every [`PERIOD`] (one at a time: a
/// slow answer delays the next) until `stop`, recording each outcome.
async fn deposits(
    node: Node,
    named: swarm::control::Named<Ledger>,
    driver: String,
    answers: Rc<RefCell<Vec<Answer>>>,
    stop: Rc<Cell<bool>>,
    names: Rc<RefCell<HashMap<NodeId, String>>>,
) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.get() {
        tick.tick().await;
        let sent_us = now_us();
        let result = named.send(Deposit(AMOUNT)).await;
        let acked_us = now_us();
        let (balance, error) = match result {
            Ok(b) => {
                let known = names.borrow().get(&b.node).cloned();
                let node_name = match known {
                    Some(n) => n,
                    None => {
                        let n = name_of(&node, b.node).await;
                        names.borrow_mut().insert(b.node, n.clone());
                        n
                    }
                };
                let balance = Balance {
                    total: b.total,
                    epoch: b.epoch,
                    node: node_name,
                    located: named.location().map(|(_, epoch)| epoch),
                };
                (Some(balance), None)
            }
            Err(e) => {
                // The variant's name, as `Debug` prints it first.
                let debug = format!("{e:?}");
                let kind = debug
                    .split([' ', '{', '('])
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                (None, Some((kind, e.to_string())))
            }
        };
        answers.borrow_mut().push(Answer {
            name: named.name().to_owned(),
            driver: driver.clone(),
            sent_us,
            acked_us,
            amount: AMOUNT,
            balance,
            error,
        });
    }
}

fn now_us() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(since.as_micros()).unwrap()
}

/// How often each loop deposits.
const PERIOD: Duration = Duration::from_millis(50);
/// What each deposit adds.
const AMOUNT: u64 = 1;
