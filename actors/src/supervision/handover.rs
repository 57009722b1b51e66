//! The graceful stop of a move (a drain or a migration): the head asks the
//! old node's host to hand an actor over ([`HostHandOver`]) before it
//! places the actor elsewhere.
//!
//! 1. The actor's name leaves the node's directory: what arrives for it
//!    now is answered `NoSuchActor` (it never ran, so a `Named` handle
//!    sends it again, to wherever the head names next).
//! 2. A marker goes through the actor's own mailbox: once the actor
//!    reaches it, every message that arrived before was handled (a
//!    handler's journal write, waited for in its context, included).
//! 3. A durable actor saves a final snapshot (asked through the registry
//!    its journal joined once recovered, as passivation asks): the next incarnation recovers from it rather
//!    than from a long replay. The store stays the one source of truth,
//!    fenced as ever.
//! 4. The incarnation stops, and only then does the host answer: the head
//!    moves an actor only once its old node confirmed the stop.
//!
//! An actor stuck in a handler past the hand-over's time is given back its
//! name and keeps running; the host answers why, and the head refuses the
//! move (as for a stop its node did not confirm).

use std::time::Duration;

use actix::Message;
use serde::{Deserialize, Serialize};

/// The longest hand-over a head may ask for.
pub const MAX_HAND_OVER: Duration = Duration::from_secs(30);

/// Asks a node's host to hand a head-placed actor over: stop taking
/// messages, handle those already in its mailbox, save a final snapshot if
/// it is durable, then stop. Answers once it stopped, or why not (it is
/// still running then). Only heads send it; a name that runs no
/// incarnation `epoch` (or older) here is stopped as [`HostStop`] would,
/// and answered `Ok`.
///
/// [`HostStop`]: super::HostStop
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<(), String>")]
pub struct HostHandOver {
    /// The name.
    pub name: String,
    /// The incarnation's epoch (a newer one is left running).
    pub epoch: u64,
    /// How long the actor may take to reach the marker (at most
    /// [`MAX_HAND_OVER`]), in milliseconds.
    pub within_ms: u64,
}

crate::system_message! {
    HostHandOver => "swarm.HostHandOver", Heads;
}
