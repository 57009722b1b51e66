//! The console's view of the cluster: the member list from the node it
//! attached to, joined with the snapshot each member's `swarm.inspect`
//! gives (asked concurrently, each within a deadline). The console is the
//! only aggregator: nothing collects centrally.

use std::net::SocketAddr;
use std::time::Duration;

use swarm::cluster::{ClusterAgent, ListMembers, MemberRow, CLUSTER_ACTOR};
use swarm::inspect::{ClusterView, Inspect, Inspector, NodeSnapshot, NodeView, INSPECT_ACTOR};
use swarm::{Node, NodeId};

/// How long one member may take to answer an inspection.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// Why the cluster could not be listed at all.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The node the console attached to did not list its members.
    #[error("{addr} did not list its members: {reason}")]
    Members {
        /// The node asked.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
}

/// Polls a cluster through one member.
#[derive(Clone)]
pub struct Collector {
    node: Node,
    entry: SocketAddr,
    entry_id: NodeId,
}

impl Collector {
    /// A collector asking the member at `entry` (id `entry_id`, linked
    /// and logged in already) for the member list.
    pub fn new(node: Node, entry: SocketAddr, entry_id: NodeId) -> Self {
        Self {
            node,
            entry,
            entry_id,
        }
    }

    /// The console's own node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The cluster now: every member, and the actors and links of every
    /// member that answered.
    ///
    /// # Errors
    ///
    /// [`CollectError::Members`] if the entry member does not list members.
    pub async fn poll(&self) -> Result<ClusterView, CollectError> {
        let agent = self
            .node
            .remote::<ClusterAgent>(self.entry_id, CLUSTER_ACTOR);
        let members = agent
            .send(ListMembers)
            .await
            .map_err(|e| CollectError::Members {
                addr: self.entry,
                reason: e.to_string(),
            })?;
        // Concurrently: each member on its own task, on this thread.
        let asks: Vec<_> = members
            .iter()
            .map(|m| {
                let (me, member) = (self.clone(), m.clone());
                actix_rt::spawn(async move { me.inspect(&member).await })
            })
            .collect();
        let mut answers = Vec::with_capacity(asks.len());
        for ask in asks {
            answers.push(ask.await.unwrap_or_else(|e| Err(e.to_string())));
        }
        Ok(join(members, answers))
    }

    /// One member's snapshot, if it is up and answers in time.
    async fn inspect(&self, member: &MemberRow) -> Result<NodeSnapshot, String> {
        if member.state != "alive" && member.state != "suspect" {
            return Err(member.state.clone());
        }
        let id: NodeId = member
            .id
            .parse()
            .map_err(|_| format!("bad node id {}", member.id))?;
        let ask = async {
            if id != self.entry_id {
                let addr: SocketAddr = member
                    .addr
                    .parse()
                    .map_err(|_| format!("bad address {}", member.addr))?;
                self.node.connect(addr).await.map_err(|e| e.to_string())?;
            }
            let inspector = self.node.remote::<Inspector>(id, INSPECT_ACTOR);
            inspector.send(Inspect).await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(ANSWER_WITHIN, ask).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {ANSWER_WITHIN:?}")),
        }
    }
}

/// Joins the member list with the answers (in the same order) into one view.
pub fn join(members: Vec<MemberRow>, answers: Vec<Result<NodeSnapshot, String>>) -> ClusterView {
    let mut view = ClusterView {
        at_ms: now_ms(),
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
                } = snapshot;
                view.actors.extend(actors);
                view.links.extend(links);
                view.closed.extend(closed);
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
    view
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
