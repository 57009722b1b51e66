//! `swarm.MigrateActor`: an admin moves a named actor to a node it names,
//! live: its old incarnation is handed over (its mailbox handled, a final
//! snapshot if durable) before the new one starts there. The move itself
//! is the supervisor's (`head::supervisor::migrate`).

use actix::Message;
use serde::{Deserialize, Serialize};
use swarm_protocol::NodeId;

use super::ControlError;

/// Moves the named actor `name` to `node`; answers where it runs now and
/// its new epoch.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<(NodeId, u64), ControlError>")]
pub(crate) struct MigrateActor {
    /// The actor.
    pub(crate) name: String,
    /// Where it goes.
    pub(crate) node: NodeId,
}

crate::system_message! {
    MigrateActor => "swarm.MigrateActor", Admin;
}
