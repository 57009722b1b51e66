//! An operator's view of the cluster: the member list from one member,
//! joined with the snapshot each member's `swarm.inspect` gives (asked
//! concurrently, each within a deadline), and the operator's actions. The
//! terminal console polls it for its operator; the admin API polls it for
//! each operator logged in through it, asking on the operator's behalf
//! ([`Collector::on_behalf`]). Nothing collects centrally.

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::{Arc, Mutex, PoisonError};

use swarm_actors::cluster::{ClusterAgent, ListMembers, MemberRow, CLUSTER_ACTOR};
use swarm_actors::inspect::TraceEntry;
use swarm_actors::inspector::{
    ClusterView, Inspect, InspectActor, InspectMetrics, Inspector, NodeSnapshot, NodeView,
    ReadTrace, SetTrace, INSPECT_ACTOR,
};
use swarm_actors::operators::Behalf;
use swarm_actors::supervision::{Host, HostRestart, HOST_ACTOR};
use swarm_actors::{AskError, Node, RemoteActor, RemoteAddr};
use swarm_protocol::NodeId;

/// Trace entries the console keeps.
pub const TRACE_KEPT: usize = 500;

/// Events a view keeps, the newest cluster-wide: each node reports its
/// last 200, so a 1,000-node cluster's refresh held 200,000 (33 MB of
/// the dashboard's 44 MB stream event) where the events view shows the
/// newest first.
pub const EVENTS_KEPT: usize = 2_000;

/// Inspections a poll has in flight at once.
pub const IN_FLIGHT: usize = 32;

/// How long one member may take to answer an inspection.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// Why the cluster could not be listed at all.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The node the console attached to did not list its members.
    #[error("{addr} did not list its members: {cause}")]
    Members {
        /// The node asked.
        addr: SocketAddr,
        /// What went wrong (in the message, not also the source).
        cause: AskError,
    },
}

/// Polls a cluster through one member.
#[derive(Clone)]
pub struct Collector {
    node: Node,
    entry: SocketAddr,
    entry_id: NodeId,
    /// The actor traced now, and what was read of its trace.
    trace: Arc<Mutex<Option<Traced>>>,
    /// The control plane, for what the head records of named actors.
    control: Option<swarm_actors::control::Control>,
    /// The operator it asks for, when a node asks for one.
    behalf: Option<Arc<Behalf>>,
}

struct Traced {
    node: NodeId,
    actor: String,
    entries: Vec<TraceEntry>,
}

impl Collector {
    /// A collector asking the member at `entry` (id `entry_id`, linked
    /// and logged in already) for the member list.
    pub fn new(node: Node, entry: SocketAddr, entry_id: NodeId) -> Self {
        Self {
            node,
            entry,
            entry_id,
            trace: Arc::default(),
            control: None,
            behalf: None,
        }
    }

    /// Also lists what the head records of named actors (their placement).
    pub fn with_control(mut self, control: swarm_actors::control::Control) -> Self {
        self.control = Some(match &self.behalf {
            Some(behalf) => control.on_behalf(Arc::clone(behalf)),
            None => control,
        });
        self
    }

    /// Asks everything for `behalf`, an operator who logged in through
    /// this collector's node (the admin API): each member decides each ask
    /// as that operator's.
    pub fn on_behalf(mut self, behalf: Arc<Behalf>) -> Self {
        self.control = self.control.map(|c| c.on_behalf(Arc::clone(&behalf)));
        self.behalf = Some(behalf);
        self
    }

    /// A handle to `name` on `node`, asking for the operator if there is one.
    fn remote<A: RemoteActor>(&self, node: NodeId, name: &str) -> RemoteAddr<A> {
        let addr = self.node.remote::<A>(node, name);
        match &self.behalf {
            Some(behalf) => addr.on_behalf(Arc::clone(behalf)),
            None => addr,
        }
    }

    /// Restarts actor `name` hosted by `node` (its host's supervisor
    /// restarts it as after a failure); says how it went.
    pub async fn restart(&self, node: NodeId, name: &str) -> Result<String, String> {
        let host = self.remote::<Host>(node, HOST_ACTOR);
        match host
            .send(HostRestart {
                name: name.to_owned(),
            })
            .await
        {
            Ok(Ok(restarts)) => Ok(format!("restarted {name} (restart {restarts})")),
            Ok(Err(e)) => Err(format!("restart {name}: {e}")),
            Err(e) => Err(format!("restart {name}: {e}")),
        }
    }

    /// Stops the named actor `name` (the head forgets it); says how it went.
    pub async fn stop(&self, name: &str) -> Result<String, String> {
        let control = self
            .control
            .as_ref()
            .ok_or("no control plane reachable: cannot stop")?;
        match control.stop(name).await {
            Ok(()) => Ok(format!("stopped {name}")),
            Err(e) => Err(format!("stop {name}: {e}")),
        }
    }

    /// Drains `node` (named `name` in what it says): its named actors move
    /// elsewhere, then it leaves. Without `--force`'s power: if one cannot
    /// move, the drain stops and this says which and why.
    pub async fn drain(&self, node: NodeId, name: &str) -> Result<String, String> {
        let control = self
            .control
            .as_ref()
            .ok_or("no control plane reachable: cannot drain")?;
        match control.drain(node, false).await {
            Ok(report) => {
                let name_of = |n: NodeId| {
                    if n == node {
                        name.to_owned()
                    } else {
                        n.short()
                    }
                };
                let mut said = report.summary(name_of);
                for actor in report.actors.iter().filter(|a| {
                    !matches!(a.outcome, swarm_actors::control::DrainOutcome::Moved { .. })
                }) {
                    said.push_str("; ");
                    said.push_str(&actor.line(name_of));
                }
                if report.left {
                    Ok(said)
                } else {
                    Err(said)
                }
            }
            Err(e) => Err(format!("drain {name}: {e}")),
        }
    }

    /// What the inspect hook of actor `name` on `node` says of its state
    /// (JSON text), or why there is nothing.
    pub async fn actor_state(&self, node: NodeId, name: &str) -> String {
        let inspector = self.remote::<Inspector>(node, INSPECT_ACTOR);
        match inspector
            .send(InspectActor {
                actor: name.to_owned(),
            })
            .await
        {
            Ok(Ok(Some(state))) => state,
            Ok(Ok(None)) => "(no inspect hook)".to_owned(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        }
    }

    /// This node's own snapshot with the actors' histograms (what
    /// `/metrics` exposes).
    ///
    /// # Errors
    ///
    /// Why its inspector did not answer.
    pub async fn own_snapshot(&self) -> Result<NodeSnapshot, String> {
        let me = self.node.id();
        let inspector = self.remote::<Inspector>(me, INSPECT_ACTOR);
        inspector
            .send(InspectMetrics)
            .await
            .map_err(|e| e.to_string())
    }

    /// Starts tracing `actor` on `node` (stopping any other trace), or
    /// stops tracing it.
    ///
    /// # Errors
    ///
    /// Why the node did not start or stop the trace.
    pub async fn trace(&self, node: NodeId, actor: &str, on: bool) -> Result<(), String> {
        let previous = self
            .trace
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(p) = previous {
            if on && (p.node, p.actor.as_str()) != (node, actor) {
                let _ = self.set_trace(p.node, &p.actor, false).await;
            }
        }
        self.set_trace(node, actor, on).await?;
        if on {
            *self.trace.lock().unwrap_or_else(PoisonError::into_inner) = Some(Traced {
                node,
                actor: actor.to_owned(),
                entries: Vec::new(),
            });
        }
        Ok(())
    }

    async fn set_trace(&self, node: NodeId, actor: &str, on: bool) -> Result<(), String> {
        let inspector = self.remote::<Inspector>(node, INSPECT_ACTOR);
        let request = SetTrace {
            actor: actor.to_owned(),
            on,
        };
        match inspector.send(request).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Reads what is new in the trace, if one is on.
    async fn read_trace(&self) -> (Option<String>, Vec<TraceEntry>) {
        let (node, actor, after) = {
            let trace = self.trace.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(t) = trace.as_ref() else {
                return (None, Vec::new());
            };
            let after = t.entries.last().map_or(0, |e| e.seq);
            (t.node, t.actor.clone(), after)
        };
        let inspector = self.remote::<Inspector>(node, INSPECT_ACTOR);
        let request = ReadTrace {
            actor: actor.clone(),
            after,
        };
        let new = match inspector.send(request).await {
            Ok(Ok(entries)) => entries,
            _ => Vec::new(),
        };
        let mut trace = self.trace.lock().unwrap_or_else(PoisonError::into_inner);
        match trace.as_mut() {
            Some(t) if t.node == node && t.actor == actor => {
                t.entries.extend(new);
                let over = t.entries.len().saturating_sub(TRACE_KEPT);
                t.entries.drain(..over);
                (Some(format!("{actor}@{node}")), t.entries.clone())
            }
            _ => (None, Vec::new()),
        }
    }

    /// The console's own node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The control plane, if one answered when the console attached.
    pub fn control(&self) -> Option<&swarm_actors::control::Control> {
        self.control.as_ref()
    }

    /// The cluster now: every member, and the actors and links of every
    /// member that answered.
    ///
    /// # Errors
    ///
    /// [`CollectError::Members`] if the entry member does not list members.
    pub async fn poll(&self) -> Result<ClusterView, CollectError> {
        let agent = self.remote::<ClusterAgent>(self.entry_id, CLUSTER_ACTOR);
        let members = agent
            .send(ListMembers)
            .await
            .map_err(|cause| CollectError::Members {
                addr: self.entry,
                cause,
            })?;
        // Concurrently: each member on its own task, on this thread, at
        // most IN_FLIGHT at once (every answer in flight is held two or
        // three times over while it is read and decoded).
        let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        let paths = Arc::new(Paths {
            relays: relays(&members),
            linked: self.node.peers().into_iter().map(|p| p.id).collect(),
        });
        let asks: Vec<_> = members
            .iter()
            .map(|m| {
                let (me, member) = (self.clone(), m.clone());
                let (permits, paths) = (Arc::clone(&permits), Arc::clone(&paths));
                actix_rt::spawn(async move {
                    let _permit = permits.acquire().await;
                    me.inspect(&member, &paths).await
                })
            })
            .collect();
        let mut answers = Vec::with_capacity(asks.len());
        for ask in asks {
            answers.push(ask.await.unwrap_or_else(|e| Err(e.to_string())));
        }
        let mut view = join(members, answers);
        (view.traced, view.trace) = self.read_trace().await;
        // Only a cluster with heads has a control plane to ask (a client
        // looks for the leader for seconds otherwise).
        let heads = view
            .nodes
            .iter()
            .any(|n| n.member.state == "alive" && n.member.roles.iter().any(|r| r == "head"));
        if let (Some(control), true) = (&self.control, heads) {
            let placed = tokio::time::timeout(ANSWER_WITHIN, control.placed()).await;
            view.placed = placed.ok().and_then(Result::ok).unwrap_or_default();
        }
        Ok(view)
    }

    /// Reaches `member` (id `id`): at its address, else (a member behind
    /// NAT) through a relay: the one the entry member names, the entry
    /// itself, then the others.
    async fn reach(&self, member: &MemberRow, id: NodeId, relays: &[Relay]) -> Result<(), String> {
        let via = member
            .reach
            .strip_prefix("relayed via ")
            .or_else(|| member.reach.strip_prefix("via "));
        let mut last = format!("bad address {}", member.addr);
        if via.is_none() {
            if let Ok(addr) = member.addr.parse::<SocketAddr>() {
                match self.node.connect(addr).await {
                    Ok(_) => return Ok(()),
                    Err(e) => last = e.to_string(),
                }
            }
        }
        let rank = |r: &Relay| (Some(r.name.as_str()) != via, r.id != self.entry_id);
        let mut ordered: Vec<&Relay> = relays.iter().collect();
        ordered.sort_by_key(|r| rank(r));
        for relay in ordered {
            if relay.id == id {
                continue;
            }
            if relay.id != self.entry_id {
                if let Err(e) = self.node.connect(relay.addr).await {
                    last = e.to_string();
                    continue;
                }
            }
            match self.node.connect_via(relay.id, id).await {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }

    /// One member's snapshot, if it is up and answers in time.
    async fn inspect(&self, member: &MemberRow, paths: &Paths) -> Result<NodeSnapshot, String> {
        if member.state != "alive" && member.state != "suspect" {
            return Err(member.state.clone());
        }
        let id: NodeId = member
            .id
            .parse()
            .map_err(|_| format!("bad node id {}", member.id))?;
        let ask = async {
            // Linked already (directly or through a relay): nothing to dial.
            if id != self.entry_id && id != self.node.id() && !paths.linked.contains(&id) {
                self.reach(member, id, &paths.relays).await?;
            }
            let inspector = self.remote::<Inspector>(id, INSPECT_ACTOR);
            inspector.send(Inspect).await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(ANSWER_WITHIN, ask).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {ANSWER_WITHIN:?}")),
        }
    }
}

/// How a poll reaches members: the relays among them, and the members
/// this node has links to already.
struct Paths {
    relays: Vec<Relay>,
    linked: std::collections::HashSet<NodeId>,
}

/// A member that forwards relayed traffic.
struct Relay {
    name: String,
    id: NodeId,
    addr: SocketAddr,
}

/// The alive relays among `members`.
fn relays(members: &[MemberRow]) -> Vec<Relay> {
    members
        .iter()
        .filter(|m| m.relay && m.state == "alive")
        .filter_map(|m| {
            Some(Relay {
                name: m.name.clone(),
                id: m.id.parse().ok()?,
                addr: m.addr.parse().ok()?,
            })
        })
        .collect()
}

/// Joins the member list with the answers (in the same order) into one view.
pub fn join(members: Vec<MemberRow>, answers: Vec<Result<NodeSnapshot, String>>) -> ClusterView {
    // Sized once: growing a 10,000-actor list by doubling holds it twice
    // while it moves.
    let count = |f: fn(&NodeSnapshot) -> usize| {
        answers
            .iter()
            .filter_map(|a| a.as_ref().ok())
            .map(f)
            .sum::<usize>()
    };
    let mut view = ClusterView {
        at_ms: now_ms(),
        actors: Vec::with_capacity(count(|s| s.actors.len())),
        links: Vec::with_capacity(count(|s| s.links.len())),
        ..ClusterView::default()
    };
    for (member, answer) in members.into_iter().zip(answers) {
        match answer {
            Ok(snapshot) => {
                let NodeSnapshot {
                    node,
                    actors,
                    links,
                    closed,
                    events,
                    services,
                    tasks,
                    journals: _,
                } = snapshot;
                view.actors.extend(actors);
                view.links.extend(links);
                view.closed.extend(closed);
                view.events.extend(events);
                view.services.extend(services);
                view.tasks.extend(tasks);
                view.nodes.push(NodeView {
                    member,
                    local: Some(node),
                    error: None,
                });
            }
            Err(error) => view.nodes.push(NodeView {
                member,
                local: None,
                error: Some(error),
            }),
        }
    }
    view.nodes.sort_by(|a, b| a.member.name.cmp(&b.member.name));
    view.events
        .sort_by(|a, b| (a.at_ms, &a.node, a.seq).cmp(&(b.at_ms, &b.node, b.seq)));
    let older = view.events.len().saturating_sub(EVENTS_KEPT);
    view.events.drain(..older);
    view
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_actors::inspect::EventView;

    fn member(i: usize) -> MemberRow {
        MemberRow {
            id: format!("{i:032x}"),
            name: format!("n{i}"),
            addr: format!("127.0.0.1:{}", 1000 + i),
            roles: vec!["worker".to_owned()],
            state: "alive".to_owned(),
            cpus: 1.0,
            memory: 0,
            gpus: 0,
            custom: Vec::new(),
            cpu_percent: 0.0,
            memory_used: 0,
            services: 0,
            reach: "direct".to_owned(),
            relay: false,
            counters: None,
        }
    }

    #[test]
    fn a_view_keeps_the_newest_events_of_the_whole_cluster_only() {
        // 50 nodes with 200 events each, node i's at i, i + 50, i + 100...
        let nodes = 50;
        let answers = (0..nodes)
            .map(|i| {
                let events = (0..200)
                    .map(|k| EventView {
                        seq: k,
                        at_ms: i as u64 + k * nodes as u64,
                        node: format!("{i:032x}"),
                        ..EventView::default()
                    })
                    .collect();
                Ok(NodeSnapshot {
                    events,
                    ..NodeSnapshot::default()
                })
            })
            .collect();
        let view = join((0..nodes).map(member).collect(), answers);
        assert_eq!(view.events.len(), EVENTS_KEPT);
        let all = 200 * nodes as u64;
        let kept: Vec<u64> = view.events.iter().map(|e| e.at_ms).collect();
        let newest: Vec<u64> = (all - EVENTS_KEPT as u64..all).collect();
        assert_eq!(kept, newest, "the newest, oldest first");
        assert_eq!(view.nodes.len(), nodes);
    }
}
