//! Where the control client finds the heads: its own membership, a
//! member's list, or the heads a member named for a login; a node whose
//! link disproves the head role is never among them.

use std::sync::PoisonError;

use swarm_protocol::membership::MemberState;
use swarm_protocol::NodeId;

use super::{Control, Heads};
use crate::cluster::{ClusterAgent, ListMembers};
use crate::error::AskError;
use crate::remote::RemoteAddr;

impl Control {
    /// The heads membership knows and their mesh addresses (alive ones
    /// first), for an operator about to log in.
    pub(crate) async fn head_addrs(&self) -> Vec<(NodeId, std::net::SocketAddr)> {
        let Heads::Members(cluster) = &self.heads else {
            return Vec::new();
        };
        let heads = self.heads().await;
        let Ok(members) = cluster.members().await else {
            return Vec::new();
        };
        heads
            .into_iter()
            .filter_map(|h| members.iter().find(|m| m.node == h).map(|m| (h, m.addr)))
            .collect()
    }

    /// The heads membership knows (alive ones first), by node id.
    pub async fn heads(&self) -> Vec<NodeId> {
        let cluster = match &self.heads {
            Heads::Members(cluster) => cluster,
            Heads::Agent(agent) => return self.heads_from(agent).await,
            Heads::Fixed(heads) => return heads.clone(),
        };
        let Ok(members) = cluster.members().await else {
            return Vec::new();
        };
        let mut heads: Vec<(bool, NodeId)> = members
            .iter()
            .filter(|m| m.state != MemberState::Left)
            .filter(|m| {
                m.meta
                    .as_ref()
                    .is_some_and(|meta| meta.roles.iter().any(|r| r == "head"))
            })
            // Gossip says head; a link whose certificate says otherwise wins.
            .filter(|m| !self.mesh.known_not_head(m.node))
            .map(|m| (m.state != MemberState::Alive, m.node))
            .collect();
        heads.sort();
        heads.into_iter().map(|(_, n)| n).collect()
    }

    /// The heads in a member's list; the addresses of its alive members
    /// become known to this node's mesh (so a tool reaches any of them).
    async fn heads_from(&self, agent: &RemoteAddr<ClusterAgent>) -> Vec<NodeId> {
        let rows = match agent.send(ListMembers).await {
            Ok(rows) => rows,
            Err(AskError::Forbidden { reason }) => {
                *self
                    .forbidden
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(reason);
                return Vec::new();
            }
            Err(_) => return Vec::new(),
        };
        let mut heads = Vec::new();
        for row in rows {
            if row.state != "alive" {
                continue;
            }
            let (Ok(id), Ok(addr)) = (row.id.parse::<NodeId>(), row.addr.parse()) else {
                continue;
            };
            if id != self.mesh.id() {
                self.mesh.peer_up(id, addr, Vec::new(), false);
            }
            if row.roles.iter().any(|r| r == "head") && !self.mesh.known_not_head(id) {
                heads.push(id);
            }
        }
        heads.sort();
        heads
    }
}
