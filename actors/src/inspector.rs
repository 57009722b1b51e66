//! The `swarm.inspect` system actor ([`Inspector`]) that answers operators
//! over the mesh with a [`NodeSnapshot`]: it joins the counters and rows
//! of [`crate::inspect`] with what the rooms above report (the host's
//! actors, the head's Raft state, membership, service balancers, the task
//! table). It supervises nothing and keeps only the rates it computed
//! last; if it stops, the node answers no inspections.
//!
//! The console (`swarm console`) asks every member's inspector and joins
//! the answers into a [`ClusterView`]; no node collects for the cluster.

mod snapshot;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::{Deserialize, Serialize};

pub use snapshot::{ClusterView, NodeLocal, NodeSnapshot, NodeView};

use crate::cluster::Cluster;
use crate::control::HeadRow;
use crate::directory::Directory;
use crate::head::wire::HeadStatus;
use crate::inspect::{ActorView, Durations, MemberCounts, TraceEntry};
use crate::mesh::Mesh;
use crate::supervision::{ActorRow, Host, ListActors};
use crate::tasks::{ListTasks, TaskTable};

/// The name every node exposes its inspector under.
pub const INSPECT_ACTOR: &str = "swarm.inspect";

/// Asks a node's inspector for its snapshot (without the actors'
/// handler-time histograms: a console does not draw them).
#[derive(Debug, Clone, Default, Serialize, Deserialize, Message)]
#[rtype(result = "NodeSnapshot")]
pub struct Inspect;

/// Asks a node's inspector for its snapshot with each actor's handler-time
/// histogram ([`ActorView::handling`]), as `/metrics` exports it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Message)]
#[rtype(result = "NodeSnapshot")]
pub struct InspectMetrics;

/// Starts or stops tracing one actor's messages.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<(), InspectError>")]
pub struct SetTrace {
    /// The actor's name on that node.
    pub actor: String,
    /// On or off.
    pub on: bool,
}

/// Reads an actor's trace: entries after `after` (a sequence number; 0
/// for all it keeps), oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<Vec<TraceEntry>, InspectError>")]
pub struct ReadTrace {
    /// The actor's name on that node.
    pub actor: String,
    /// The last sequence number already read.
    pub after: u64,
}

/// The inspect hook: an actor that handles it (answering its state as
/// JSON text) and lists it in its `remote_actor!` shows that state in the
/// console's detail pane.
///
/// ```
/// # use actix::prelude::*;
/// # struct Ledger { balance: u64 }
/// # impl Actor for Ledger { type Context = Context<Self>; }
/// impl Handler<swarm_actors::inspector::InspectState> for Ledger {
///     type Result = String;
///     fn handle(&mut self, _: swarm_actors::inspector::InspectState, _: &mut Context<Self>) -> String {
///         format!("{{\"balance\": {}}}", self.balance)
///     }
/// }
/// swarm_actors::remote_actor!(Ledger: swarm_actors::inspector::InspectState);
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize, Message)]
#[rtype(result = "String")]
pub struct InspectState;

/// Asks a node's inspector for one actor's state through its inspect
/// hook: `None` if the actor has none.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<Option<String>, InspectError>")]
pub struct InspectActor {
    /// The actor's name on that node.
    pub actor: String,
}

/// The most of an actor's state an inspection returns; longer is cut.
pub const MAX_STATE: usize = 64 * 1024;

crate::system_message! {
    Inspect => "swarm.Inspect", Read;
    InspectMetrics => "swarm.InspectMetrics", Read;
    SetTrace => "swarm.SetTrace", Operators;
    ReadTrace => "swarm.ReadTrace", Operators;
    InspectState => "swarm.InspectState", Operators;
    InspectActor => "swarm.InspectActor", Operators;
}

/// Why an inspection request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum InspectError {
    /// Nothing is exposed under that name there.
    #[error("no actor named {name} on this node")]
    NoSuchActor {
        /// The name asked for.
        name: String,
    },
    /// The actor's inspect hook failed.
    #[error("{name} did not answer its inspect hook: {reason}")]
    Hook {
        /// The actor.
        name: String,
        /// Why.
        reason: String,
    },
}

/// A node's `swarm.inspect` actor.
pub struct Inspector {
    mesh: Mesh,
    /// The actors this node exposes (and its event log).
    directory: Directory,
    host: Addr<Host>,
    head: Option<Recipient<HeadStatus>>,
    cluster: Option<Cluster>,
    tasks: Option<Recipient<ListTasks>>,
    /// Each actor's message count when its rate was last computed.
    rates: HashMap<String, Rate>,
}

#[derive(Clone, Copy)]
struct Rate {
    at: Instant,
    messages: u64,
    per_second: f64,
}

/// The shortest interval a rate is computed over; inspections closer
/// together see the previous rate.
const RATE_INTERVAL: Duration = Duration::from_millis(500);

impl Inspector {
    pub(crate) fn new(mesh: Mesh, directory: Directory, host: Addr<Host>) -> Self {
        Self {
            mesh,
            directory,
            host,
            head: None,
            cluster: None,
            tasks: None,
            rates: HashMap::new(),
        }
    }

    /// Reports this head's Raft state too.
    pub(crate) fn head(mut self, head: Recipient<HeadStatus>) -> Self {
        self.head = Some(head);
        self
    }

    /// Reports this member's service balancers and task table too.
    pub(crate) fn member(mut self, cluster: Cluster, tasks: Recipient<ListTasks>) -> Self {
        self.cluster = Some(cluster);
        self.tasks = Some(tasks);
        self
    }

    fn rate(&mut self, name: &str, messages: u64, now: Instant) -> f64 {
        let fresh = Rate {
            at: now,
            messages,
            per_second: 0.0,
        };
        let slot = self.rates.entry(name.to_owned()).or_insert(fresh);
        let elapsed = now.saturating_duration_since(slot.at);
        if elapsed >= RATE_INTERVAL {
            let delta = messages.saturating_sub(slot.messages);
            *slot = Rate {
                at: now,
                messages,
                per_second: delta as f64 / elapsed.as_secs_f64(),
            };
        }
        slot.per_second
    }

    fn snapshot(
        &mut self,
        hosted: Vec<ActorRow>,
        head: Option<HeadRow>,
        tasks: Option<TaskTable>,
        histograms: bool,
    ) -> NodeSnapshot {
        let me = self.mesh.id().to_string();
        let name = self.mesh.name().to_owned();
        let hosted: HashMap<String, ActorRow> =
            hosted.into_iter().map(|r| (r.name.clone(), r)).collect();
        let now = Instant::now();
        // The durable actors' journals, from the durable room's table.
        let (mut journals, journal_totals) = crate::durable::report(self.mesh.id());
        let mut actors = Vec::new();
        for (actor, entry) in self.directory.entries() {
            let stats = entry.stats();
            let s = stats.snapshot();
            // Everything sent before this probe is handled once it is
            // reached: the next snapshot's backlog is current.
            entry.probe();
            let row = hosted.get(&actor);
            actors.push(ActorView {
                type_name: row.map_or_else(
                    || short_type(entry.type_name()).to_owned(),
                    |r| r.type_name.clone(),
                ),
                node: me.clone(),
                node_name: name.clone(),
                state: row.map_or_else(|| "exposed".to_owned(), |r| r.state.clone()),
                system: actor.starts_with("swarm."),
                supervised: entry.supervised(),
                epoch: row.map_or(0, |r| r.epoch),
                restarts: row.map_or(0, |r| r.restarts),
                backlog: s.backlog,
                messages: s.messages,
                asks: s.asks,
                rate: self.rate(&actor, s.messages, now),
                errors: s.errors,
                handling_p50_us: s.handling_p50_us,
                handling_p99_us: s.handling_p99_us,
                waiting_p99_us: s.waiting_p99_us,
                samples: s.samples,
                handling: if histograms {
                    s.handling.durations()
                } else {
                    Durations::default()
                },
                tracing: stats.tracing(),
                supervisor: row.map(|r| r.supervisor.clone()).unwrap_or_default(),
                placed: row.is_some_and(|r| r.placed),
                history: row.map(|r| r.history.clone()).unwrap_or_default(),
                durable: journals.remove(&actor),
                name: actor,
            });
        }
        let present: std::collections::HashSet<&str> =
            actors.iter().map(|a| a.name.as_str()).collect();
        self.rates.retain(|name, _| present.contains(name.as_str()));
        actors.sort_by(|a, b| a.name.cmp(&b.name));
        let links = self.mesh.link_views();
        let mut events = self.directory.events().recent();
        for e in &mut events {
            e.node.clone_from(&me);
        }
        NodeSnapshot {
            node: NodeLocal {
                id: me,
                name,
                uptime_s: self.mesh.uptime().as_secs(),
                actors: actors.len(),
                links: links.len(),
                load_average: sysinfo::System::load_average().map_or(0.0, |l| l.one),
                head,
                mesh: self.mesh.stats(),
                counters: self.directory.counting(),
                members: MemberCounts::default(),
            },
            actors,
            links,
            closed: self.mesh.closed_links(),
            events,
            services: self
                .cluster
                .as_ref()
                .map(Cluster::service_views)
                .unwrap_or_default(),
            tasks,
            journals: journal_totals,
        }
    }
}

/// Members by state.
fn count_members(members: &[crate::cluster::Member]) -> MemberCounts {
    use swarm_protocol::membership::MemberState;
    let mut counts = MemberCounts::default();
    for m in members {
        match m.state {
            MemberState::Alive => counts.alive += 1,
            MemberState::Suspect => counts.suspect += 1,
            MemberState::Down => counts.down += 1,
            MemberState::Left => counts.left += 1,
        }
    }
    counts
}

/// `a::b::Type<c::D>` -> `Type<c::D>`.
fn short_type(full: &str) -> &str {
    let head = full.split('<').next().unwrap_or(full);
    match head.rfind("::") {
        Some(i) => &full[i + 2..],
        None => full,
    }
}

impl Actor for Inspector {
    type Context = Context<Self>;
}

impl Handler<Inspect> for Inspector {
    type Result = ResponseActFuture<Self, NodeSnapshot>;

    fn handle(&mut self, _: Inspect, _: &mut Context<Self>) -> Self::Result {
        self.inspect(false)
    }
}

impl Handler<InspectMetrics> for Inspector {
    type Result = ResponseActFuture<Self, NodeSnapshot>;

    fn handle(&mut self, _: InspectMetrics, _: &mut Context<Self>) -> Self::Result {
        self.inspect(true)
    }
}

impl Inspector {
    /// The node's snapshot (with histograms, for metrics).
    fn inspect(&mut self, histograms: bool) -> ResponseActFuture<Self, NodeSnapshot> {
        let host = self.host.send(ListActors);
        let head = self.head.as_ref().map(|h| h.send(HeadStatus));
        let tasks = self
            .tasks
            .as_ref()
            .map(|t| t.send(ListTasks { recent: 20 }));
        let cluster = self.cluster.clone();
        Box::pin(
            async move {
                let members = match cluster {
                    Some(c) => c
                        .members()
                        .await
                        .map(|m| count_members(&m))
                        .unwrap_or_default(),
                    None => MemberCounts::default(),
                };
                let hosted = host.await.unwrap_or_default();
                let head = match head {
                    Some(status) => status.await.ok(),
                    None => None,
                };
                let tasks = match tasks {
                    Some(table) => table.await.ok(),
                    None => None,
                };
                (hosted, head, tasks, members)
            }
            .into_actor(self)
            .map(move |(hosted, head, tasks, members), act, _| {
                let mut snapshot = act.snapshot(hosted, head, tasks, histograms);
                snapshot.node.members = members;
                snapshot
            }),
        )
    }
}

impl Handler<SetTrace> for Inspector {
    type Result = Result<(), InspectError>;

    fn handle(&mut self, msg: SetTrace, _: &mut Context<Self>) -> Self::Result {
        let entry = self
            .directory
            .dispatcher(&msg.actor)
            .ok_or(InspectError::NoSuchActor { name: msg.actor })?;
        entry.stats().set_tracing(msg.on);
        Ok(())
    }
}

impl Handler<ReadTrace> for Inspector {
    type Result = Result<Vec<TraceEntry>, InspectError>;

    fn handle(&mut self, msg: ReadTrace, _: &mut Context<Self>) -> Self::Result {
        let entry = self
            .directory
            .dispatcher(&msg.actor)
            .ok_or(InspectError::NoSuchActor { name: msg.actor })?;
        Ok(entry.stats().trace_since(msg.after))
    }
}

impl Handler<InspectActor> for Inspector {
    type Result = ResponseFuture<Result<Option<String>, InspectError>>;

    fn handle(&mut self, msg: InspectActor, _: &mut Context<Self>) -> Self::Result {
        let name = msg.actor;
        let Some(entry) = self.directory.dispatcher(&name) else {
            return Box::pin(async move { Err(InspectError::NoSuchActor { name }) });
        };
        let hook = move |reason: String| InspectError::Hook {
            name: name.clone(),
            reason,
        };
        let body = rmp_serde::to_vec(&InspectState).unwrap_or_default();
        let asked = entry.ask(&self.mesh.own_caller(), "swarm.InspectState", &body);
        let answer = match asked {
            Err(swarm_protocol::RemoteError::UnknownMessage { .. }) => {
                return Box::pin(async { Ok(None) })
            }
            Err(e) => {
                let e = hook(e.to_string());
                return Box::pin(async move { Err(e) });
            }
            Ok(answer) => answer,
        };
        Box::pin(async move {
            let bytes = answer.await.map_err(|e| hook(e.to_string()))?;
            let mut state: String =
                rmp_serde::from_slice(&bytes).map_err(|e| hook(e.to_string()))?;
            if state.len() > MAX_STATE {
                let mut cut = MAX_STATE;
                while !state.is_char_boundary(cut) {
                    cut -= 1;
                }
                state.truncate(cut);
                state.push_str(" …(cut)");
            }
            Ok(Some(state))
        })
    }
}

crate::remote_actor!(Inspector: Inspect, InspectMetrics, SetTrace, ReadTrace, InspectActor);

#[cfg(test)]
mod tests {
    use super::short_type;

    /// Rows travel as msgpack arrays: a durable actor's journal survives
    /// with or without the histogram that may be left out after it.
    #[test]
    fn a_journal_survives_the_wire_with_or_without_handling_times() {
        use crate::inspect::{ActorView, Durations, JournalView};
        for handling in [
            Durations::default(),
            Durations {
                sum_ns: 5,
                buckets: vec![(3, 1)],
            },
        ] {
            for durable in [
                None,
                Some(JournalView {
                    backend: "embedded".into(),
                    last_seq: 9,
                    ..JournalView::default()
                }),
            ] {
                let view = ActorView {
                    name: "a".into(),
                    durable,
                    handling: handling.clone(),
                    ..ActorView::default()
                };
                let mut bytes = Vec::new();
                rmp_serde::encode::write(&mut bytes, &view).unwrap();
                let back: ActorView = rmp_serde::from_slice(&bytes).unwrap();
                assert_eq!(back, view);
            }
        }
    }

    #[test]
    fn type_names_lose_their_module_path() {
        assert_eq!(short_type("a::b::Counter"), "Counter");
        assert_eq!(short_type("a::Wrap<b::C>"), "Wrap<b::C>");
        assert_eq!(short_type("Plain"), "Plain");
    }
}
