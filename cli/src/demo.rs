//! The demo workload: actors that the `swarm demo` cluster and the
//! examples run. `Adder` adds numbers and counts its calls; `Relay` asks an
//! `Adder` on another node, so a request crosses two links; `Counter`
//! receives tells. Every node also exposes `Info` as [`INFO_NAME`], which
//! `swarm ping` asks.

pub mod blob;
pub mod migration;
pub mod tasks;

use std::pin::Pin;
use std::time::Instant;

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use swarm_actors::durable::{self, Durable, Journal};
use swarm_actors::{AskError, ClusterError, ExposeError, Node};
use swarm_protocol::NodeId;

/// The name every node exposes its [`Info`] actor under.
pub const INFO_NAME: &str = "swarm.info";

/// Add two numbers; answers the sum.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "u64")]
pub struct Add {
    /// First operand.
    pub a: u64,
    /// Second operand.
    pub b: u64,
}

/// Ask the adder on `node` through this node's relay; answers the sum and
/// the name of the node that added.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<(u64, String), String>")]
pub struct Forward {
    /// Where the adder to use lives.
    pub node: NodeId,
    /// The operation.
    pub add: Add,
}

/// How many calls an actor has handled.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "u64")]
pub struct Count;

/// A one-way increment for [`Counter`].
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
pub struct Bump {
    /// Sequence number; the counter checks they arrive in order.
    pub seq: u64,
    /// Padding, to measure throughput at a given size.
    #[serde(with = "serde_bytes")]
    pub pad: Vec<u8>,
}

/// The counter's view: received, and how many arrived out of order.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "(u64, u64)")]
pub struct CounterState;

/// Take a payload and answer its length and checksum (ping, bulk transfers).
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "(usize, u64)")]
pub struct Echo {
    /// The payload.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// The FNV-1a checksum [`Echo`] answers with.
pub fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Who answers and for how long it has been up.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "NodeSummary")]
pub struct Ping;

/// A node's answer to [`Ping`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeSummary {
    /// The node's certificate name.
    pub name: String,
    /// The node's id (hex).
    pub id: String,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Live links.
    pub links: usize,
}

swarm_actors::remote_message!(
    Add => "demo.Add",
    Forward => "demo.Forward",
    Count => "demo.Count",
    Bump => "demo.Bump",
    CounterState => "demo.CounterState",
    Echo => "demo.Echo",
);

/// A ping is a read-only view of the node (nodes and operators; the rule
/// of [`with_info_rule`] lets any certificate send it).
impl swarm_actors::RemoteMessage for Ping {
    const TAG: &'static str = "swarm.Ping";
    const ACCESS: swarm_actors::Access = swarm_actors::Access::Read;
}

/// Adds numbers.
#[derive(Debug, Default)]
pub struct Adder {
    calls: u64,
}

impl Actor for Adder {
    type Context = Context<Self>;
}

impl Handler<Add> for Adder {
    type Result = u64;

    fn handle(&mut self, msg: Add, _: &mut Context<Self>) -> u64 {
        self.calls += 1;
        msg.a.wrapping_add(msg.b)
    }
}

impl Handler<Count> for Adder {
    type Result = u64;

    fn handle(&mut self, _: Count, _: &mut Context<Self>) -> u64 {
        self.calls
    }
}

impl Handler<Echo> for Adder {
    type Result = MessageResult<Echo>;

    fn handle(&mut self, msg: Echo, _: &mut Context<Self>) -> Self::Result {
        self.calls += 1;
        MessageResult((msg.data.len(), checksum(&msg.data)))
    }
}

/// Forwards additions to the adder on another node.
#[derive(Debug)]
pub struct Relay {
    node: Node,
}

impl Actor for Relay {
    type Context = Context<Self>;
}

impl Handler<Forward> for Relay {
    type Result = ResponseFuture<Result<(u64, String), String>>;

    fn handle(&mut self, msg: Forward, _: &mut Context<Self>) -> Self::Result {
        let adder = self.node.remote::<Adder>(msg.node, "adder");
        let node = self.node.clone();
        Box::pin(async move {
            let sum = adder
                .send(msg.add)
                .await
                .map_err(|e: AskError| e.to_string())?;
            let info = node.remote::<Info>(msg.node, INFO_NAME);
            let summary = info.send(Ping).await.map_err(|e| e.to_string())?;
            Ok((sum, summary.name))
        })
    }
}

/// Counts tells and checks their order.
#[derive(Debug, Default)]
pub struct Counter {
    received: u64,
    out_of_order: u64,
    last: Option<u64>,
}

impl Actor for Counter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<Bump> for Counter {
    type Result = ();

    fn handle(&mut self, msg: Bump, _: &mut Context<Self>) {
        self.received += 1;
        if self.last.is_some_and(|last| msg.seq <= last) {
            self.out_of_order += 1;
        }
        self.last = Some(msg.seq);
    }
}

impl Handler<CounterState> for Counter {
    type Result = MessageResult<CounterState>;

    fn handle(&mut self, _: CounterState, _: &mut Context<Self>) -> Self::Result {
        MessageResult((self.received, self.out_of_order))
    }
}

/// Answers [`Ping`] with the node's summary.
#[derive(Debug)]
pub struct Info {
    node: Node,
    started: Instant,
}

impl Actor for Info {
    type Context = Context<Self>;
}

impl Handler<Ping> for Info {
    type Result = MessageResult<Ping>;

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> Self::Result {
        MessageResult(NodeSummary {
            name: self.node.name().to_owned(),
            id: self.node.id().to_string(),
            uptime_s: self.started.elapsed().as_secs(),
            links: self.node.peers().len(),
        })
    }
}

swarm_actors::remote_actor!(Adder: Add, Count, Echo);
swarm_actors::remote_actor!(Relay: Forward);
swarm_actors::remote_actor!(Counter: Bump, CounterState);
swarm_actors::remote_actor!(Info: Ping);
swarm_actors::remote_actor!(Worker: Work);

/// `policy` with a rule that lets any certificate of the cluster ping a
/// node's [`Info`] (`swarm ping` works with any identity).
///
/// # Errors
///
/// Never for this rule; the policy's own limits otherwise.
pub fn with_info_rule(
    policy: &swarm::policy::Policy,
) -> Result<swarm::policy::Policy, swarm::policy::PolicyError> {
    policy.clone().and(&swarm::policy::PolicyFile {
        allow: vec![swarm::policy::Rule {
            roles: vec!["*".to_owned()],
            to: vec![INFO_NAME.to_owned()],
            tags: vec!["swarm.Ping".to_owned()],
        }],
        deny: Vec::new(),
    })
}

/// Starts [`Info`] on `node`'s arbiter and exposes it (every `swarm` node
/// does this).
///
/// # Errors
///
/// [`ExposeError::NameTaken`] if it is exposed already.
pub fn expose_info(node: &Node) -> Result<(), ExposeError> {
    let me = node.clone();
    node.spawn(INFO_NAME, move |_| Info {
        node: me,
        started: Instant::now(),
    })?;
    Ok(())
}

/// Starts the demo actors on `node`'s arbiter and exposes them: `adder`,
/// `relay` and `counter`.
///
/// # Errors
///
/// [`ExposeError::NameTaken`] if they are exposed already.
pub fn expose_workload(node: &Node) -> Result<(), ExposeError> {
    node.spawn("adder", |_| Adder::default())?;
    let me = node.clone();
    node.spawn("relay", move |_| Relay { node: me })?;
    node.spawn("counter", |_| Counter::default())?;
    Ok(())
}

/// Why a demo service instance could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The worker could not be exposed.
    #[error(transparent)]
    Expose(#[from] ExposeError),
    /// The instance could not be registered.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The node runs without membership, so it cannot offer services.
    #[error("the node runs without membership")]
    NoMembership,
}

/// A request to an instance of a demo service; answers who served it.
/// With [`Strategy::ConsistentHash`](swarm_actors::Strategy), requests with
/// the same `key` go to the same instance.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Served")]
pub struct Work {
    /// Routing key.
    pub key: u64,
    /// Milliseconds the instance waits before answering (to simulate a
    /// slow instance).
    pub delay_ms: u64,
}

/// Who served a [`Work`] request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    /// The serving node's name.
    pub node: String,
    /// The request's key.
    pub key: u64,
    /// Requests this instance has served so far.
    pub served: u64,
}

swarm_actors::remote_message!(Work => "demo.Work");

impl swarm_actors::Keyed for Work {
    type Key = u64;

    fn key(&self) -> u64 {
        self.key
    }
}

/// An instance of a demo service.
#[derive(Debug)]
pub struct Worker {
    node: String,
    served: u64,
    /// Extra milliseconds added to every answer (a slow instance).
    pub extra_delay_ms: u64,
}

impl Worker {
    /// A worker on the node named `node`.
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            served: 0,
            extra_delay_ms: 0,
        }
    }
}

impl Actor for Worker {
    type Context = Context<Self>;
}

impl Handler<Work> for Worker {
    type Result = ResponseActFuture<Self, Served>;

    fn handle(&mut self, msg: Work, _: &mut Context<Self>) -> Self::Result {
        self.served += 1;
        let served = Served {
            node: self.node.clone(),
            key: msg.key,
            served: self.served,
        };
        let delay = std::time::Duration::from_millis(msg.delay_ms + self.extra_delay_ms);
        Box::pin(
            async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                served
            }
            .into_actor(self),
        )
    }
}

/// The actor name an instance of demo service `service` is exposed under.
pub fn worker_name(service: &str) -> String {
    format!("svc.{service}")
}

/// Starts a [`Worker`] on `node`'s arbiter, exposes it and registers it as
/// an instance of `service`.
///
/// # Errors
///
/// [`ServeError`] if it is exposed already or the node has no membership.
pub async fn serve(node: &Node, service: &str) -> Result<(), ServeError> {
    serve_with(node, service, Worker::new(node.name())).await
}

/// As [`serve`], with a configured worker.
///
/// # Errors
///
/// As [`serve`].
pub async fn serve_with(node: &Node, service: &str, worker: Worker) -> Result<(), ServeError> {
    let cluster = node.cluster().ok_or(ServeError::NoMembership)?;
    let name = worker_name(service);
    node.spawn(name.clone(), move |_| worker)?;
    cluster.register_service(service, &name).await?;
    Ok(())
}

/// A named actor the control plane places: a balance that answers each
/// deposit with the incarnation that took it. It is durable
/// ([`swarm_actors::durable`]): each deposit is an event in its journal
/// (in the head group's log), acknowledged only once durable, and every
/// incarnation (after a crash, a move, a panic) recovers the balance
/// before its first message.
#[derive(Debug)]
pub struct Ledger {
    balance: u64,
    epoch: u64,
    node: NodeId,
    journal: Journal,
}

/// What a [`Ledger`] is built from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerArgs {
    /// The opening balance.
    pub opening: u64,
}

/// Adds to a ledger; answers the balance and who holds it. A deposit of 0
/// only reads (nothing is written); any other is answered once durable.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Balance")]
pub struct Deposit(pub u64);

/// A ledger's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// The balance after the deposit.
    pub total: u64,
    /// The placement epoch of the incarnation that answered.
    pub epoch: u64,
    /// The node it runs on.
    pub node: NodeId,
}

/// Makes a ledger's handler panic (to show supervision).
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
pub struct Crash;

swarm_actors::remote_message!(Deposit => "demo.Deposit", Crash => "demo.Crash");

/// What happens to a [`Ledger`], as its journal stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LedgerEvent {
    /// A deposit was acknowledged.
    Deposited(u64),
}

impl Durable for Ledger {
    const JOURNAL: &'static str = "demo.Ledger";
    type Event = LedgerEvent;
    type Snapshot = u64;

    fn apply(&mut self, LedgerEvent::Deposited(amount): &LedgerEvent) {
        self.balance = self.balance.saturating_add(*amount);
    }

    fn snapshot(&self) -> u64 {
        self.balance
    }

    fn restore(&mut self, balance: u64) {
        self.balance = balance;
    }

    fn journal(&mut self) -> &mut Journal {
        &mut self.journal
    }
}

impl Actor for Ledger {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The balance comes back before any deposit is handled.
        durable::recover(self, ctx);
    }
}

impl Ledger {
    fn balance(&self) -> Balance {
        Balance {
            total: self.balance,
            epoch: self.epoch,
            node: self.node,
        }
    }
}

impl Handler<Deposit> for Ledger {
    type Result = ResponseActFuture<Self, Balance>;

    fn handle(&mut self, Deposit(amount): Deposit, ctx: &mut Context<Self>) -> Self::Result {
        if amount == 0 {
            return Box::pin(actix::fut::ready(self.balance()));
        }
        // The balance right after this deposit (not after a later one).
        let persisted = durable::persist_then(
            self,
            ctx,
            vec![LedgerEvent::Deposited(amount)],
            |act: &mut Self| act.balance(),
        );
        Box::pin(persisted.then(
            |done, _, ctx| -> Pin<Box<dyn ActorFuture<Self, Output = Balance>>> {
                match done {
                    Ok(balance) => Box::pin(actix::fut::ready(balance)),
                    // Not durable: never acknowledged. The ledger stops (and
                    // recovers from its journal); the caller's ask fails.
                    Err(_) => {
                        ctx.stop();
                        Box::pin(actix::fut::wrap_future(std::future::pending()))
                    }
                }
            },
        ))
    }
}

impl Handler<Crash> for Ledger {
    type Result = ();

    fn handle(&mut self, _: Crash, _: &mut Context<Self>) {
        panic!("ledger asked to crash (on purpose)");
    }
}

/// The ledger's state in the console's detail pane.
impl Handler<swarm_actors::inspector::InspectState> for Ledger {
    type Result = String;

    fn handle(
        &mut self,
        _: swarm_actors::inspector::InspectState,
        _: &mut Context<Self>,
    ) -> String {
        serde_json::json!({
            "balance": self.balance,
            "epoch": self.epoch,
            "node": self.node.to_string(),
            "journal_next_seq": self.journal.next_seq(),
            "journal_backend": self.journal.backend(),
        })
        .to_string()
    }
}

swarm_actors::remote_actor!(Ledger: Deposit, Crash, swarm_actors::inspector::InspectState);

impl swarm_actors::supervision::Spawnable for Ledger {
    const TYPE: &'static str = "demo.Ledger";
    type Args = LedgerArgs;

    fn build(args: &LedgerArgs, incarnation: &swarm_actors::supervision::Incarnation) -> Self {
        Ledger {
            balance: args.opening,
            epoch: incarnation.epoch,
            node: incarnation.node,
            journal: Journal::new(incarnation),
        }
    }
}

/// Registers the demo's spawnable types ([`Ledger`]) on `node`: every
/// `swarm` node does this, so the control plane may place them anywhere.
pub fn register_types(node: &Node) {
    node.register::<Ledger>();
    node.register::<blob::Blob>();
    if let Some(tasks) = node.tasks() {
        tasks::register(tasks);
    }
}
