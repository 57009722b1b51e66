//! What a node tells the head when it passivated an idle actor: the
//! head records it passive (no node, no capacity, not moved) if, and only
//! if, its record places that name under that epoch on the sender.

use actix::Message;
use serde::{Deserialize, Serialize};
use swarm_protocol::NodeId;

use super::ControlError;

/// `name`'s incarnation `epoch` on `node` is idle and drained (its
/// durable state saved): record it passive. Answers once committed; the
/// node stops the incarnation then (else it takes it up again).
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<(), ControlError>")]
pub(crate) struct Passivated {
    /// The sender (set from the link's authenticated peer).
    pub(crate) node: NodeId,
    /// The name.
    pub(crate) name: String,
    /// The incarnation's epoch.
    pub(crate) epoch: u64,
}

/// The reporting node is the link's authenticated peer, whatever it
/// claims: a node passivates only what the head placed on it.
impl crate::directory::StampCaller for Passivated {
    fn stamp_caller(&mut self, caller: &crate::directory::Caller) {
        self.node = caller.node;
    }
}

crate::system_message! {
    Passivated => "swarm.Passivated", Nodes;
}
