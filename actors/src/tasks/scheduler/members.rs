//! The scheduler's view of the members it may send tasks to: their
//! resources and labels from membership, the labels from a link's
//! certificate once one proved them.

use actix::prelude::*;
use swarm_protocol::membership::MemberState;
use swarm_protocol::NodeId;

use super::Scheduler;
use crate::cluster::ClusterEvent;
use crate::placement::ResourceSet;

impl Handler<ClusterEvent> for Scheduler {
    type Result = ();
    fn handle(&mut self, event: ClusterEvent, ctx: &mut Context<Self>) {
        match event {
            ClusterEvent::MemberUp(m)
            | ClusterEvent::MetadataChanged(m)
            | ClusterEvent::Suspect(m) => {
                self.member(&m, ctx);
            }
            ClusterEvent::MemberDown(m) | ClusterEvent::MemberLeft(m) => {
                let node = m.node;
                self.addrs.remove(&node);
                self.senders.remove(&node);
                self.store.drop_owner(node);
                self.outbox.remove(&node);
                self.pool.cancel_queued(|id| id.owner == node);
                self.own(0, ctx, |o, fx| o.node_gone(node, fx));
            }
            ClusterEvent::Rejoined(_) => {}
        }
    }
}

impl Scheduler {
    /// A member's labels: its certificate's roles once a link proved them
    /// (gossiped roles that disagree are refused and counted), its
    /// gossiped roles until then (no link is dialed for this: at thousands
    /// of nodes that would be a full mesh; the first task sent there makes
    /// one, and the member's next metadata update takes the certificate's).
    fn certified_labels(&self, node: NodeId, gossiped: &[String]) -> Vec<String> {
        if node == self.me {
            return self.mesh.handshake().cert.body().roles.clone();
        }
        match self.mesh.live_link(node) {
            Some(link) => {
                let certified = link.info().roles;
                let agrees = gossiped.len() == certified.len()
                    && gossiped.iter().all(|r| certified.contains(r));
                if !agrees {
                    self.mesh.count_false_claim();
                    tracing::debug!(node = %node.short(), ?gossiped, ?certified, "gossiped roles refused: tasks go by the certificate's");
                }
                certified
            }
            None => gossiped.to_vec(),
        }
    }

    /// Updates the owner's view of a member.
    pub(crate) fn member(&mut self, m: &crate::cluster::Member, ctx: &mut Context<Self>) {
        self.addrs.insert(m.node, m.addr);
        let Some(meta) = m.meta.as_ref() else {
            return;
        };
        let total = ResourceSet::from(&meta.resources);
        let schedulable = m.state == MemberState::Alive && !meta.leaving;
        let labels = self.certified_labels(m.node, &meta.roles);
        let node = m.node;
        self.own(0, ctx, |o, fx| {
            o.node_up(node, total, labels, schedulable, fx)
        });
    }
}
