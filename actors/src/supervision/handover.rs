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
//! 3. A durable actor saves a final snapshot ([`register`] is how its
//!    journal asks for that): the next incarnation recovers from it rather
//!    than from a long replay. The store stays the one source of truth,
//!    fenced as ever.
//! 4. The incarnation stops, and only then does the host answer: the head
//!    moves an actor only once its old node confirmed the stop.
//!
//! An actor stuck in a handler past the hand-over's time is given back its
//! name and keeps running; the host answers why, and the head refuses the
//! move (as for a stop its node did not confirm).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use actix::Message;
use serde::{Deserialize, Serialize};
use swarm_protocol::NodeId;

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

/// What an incarnation runs before it is handed over (a durable actor's
/// final snapshot); answers whether it went well (a failure is logged,
/// and the hand-over goes on: the journal has every event).
pub(crate) type BeforeHandOver =
    Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send>;

type Key = (NodeId, String);

/// Each incarnation's hook: (epoch, token, hook).
type Hooks = Mutex<HashMap<Key, (u64, u64, BeforeHandOver)>>;

fn hooks() -> &'static Hooks {
    static HOOKS: OnceLock<Hooks> = OnceLock::new();
    HOOKS.get_or_init(Mutex::default)
}

static TOKENS: AtomicU64 = AtomicU64::new(1);

/// Registers what incarnation `epoch` of `name` on `node` runs before it is
/// handed over; forgotten when the returned guard drops (keep it as long
/// as the incarnation lives).
pub(crate) fn register(node: NodeId, name: &str, epoch: u64, hook: BeforeHandOver) -> Registered {
    let token = TOKENS.fetch_add(1, Ordering::Relaxed);
    let key = (node, name.to_owned());
    hooks()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key.clone(), (epoch, token, hook));
    Registered { key, token }
}

/// Takes the hook of incarnation `epoch` of `name` on `node`, if any.
pub(crate) fn take(node: NodeId, name: &str, epoch: u64) -> Option<BeforeHandOver> {
    let mut hooks = hooks().lock().unwrap_or_else(PoisonError::into_inner);
    let key = (node, name.to_owned());
    if hooks.get(&key).is_some_and(|(e, _, _)| *e == epoch) {
        return hooks.remove(&key).map(|(_, _, hook)| hook);
    }
    None
}

/// A registered hook; dropped, it is forgotten (unless a newer
/// incarnation's replaced it).
pub(crate) struct Registered {
    key: Key,
    token: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut hooks = hooks().lock().unwrap_or_else(PoisonError::into_inner);
        if hooks
            .get(&self.key)
            .is_some_and(|(_, t, _)| *t == self.token)
        {
            hooks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_is_taken_once_for_its_epoch_and_forgotten_with_its_guard() {
        let node = NodeId::from_bytes([9; 16]);
        let guard = register(node, "h", 3, Box::new(|| Box::pin(async { Ok(()) })));
        assert!(take(node, "h", 2).is_none(), "another epoch");
        assert!(take(node, "h", 3).is_some());
        assert!(take(node, "h", 3).is_none(), "taken once");
        drop(guard);
        let old = register(node, "h", 4, Box::new(|| Box::pin(async { Ok(()) })));
        let new = register(node, "h", 4, Box::new(|| Box::pin(async { Ok(()) })));
        drop(old);
        assert!(take(node, "h", 4).is_some(), "the newer registration stays");
        drop(new);
    }
}
