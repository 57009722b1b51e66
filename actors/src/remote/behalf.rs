//! Asking for an operator: a [`RemoteAddr`](super::RemoteAddr) made
//! [`on_behalf`](super::RemoteAddr::on_behalf) wraps each ask in a
//! [`Delegated`] message to the target node's session actor
//! ([`SESSION_ACTOR`]), which verifies the capability and dispatches the
//! inner message as the operator's (the operators room decides; this file
//! only carries).

use std::net::IpAddr;
use std::sync::Arc;

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use swarm_protocol::capability::{Capability, Claims};
use swarm_protocol::{NodeId, RemoteError};

use crate::directory::{Caller, StampCaller};

/// The name of every node's session actor.
pub const SESSION_ACTOR: &str = "swarm.session";

/// An operator a node acts for: the capability of its login and the
/// claims it verified to (made by
/// `operators`' check on this node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behalf {
    capability: Capability,
    claims: Claims,
}

impl Behalf {
    /// `claims` are what `capability` verified to on this node.
    pub(crate) fn verified(capability: Capability, claims: Claims) -> Self {
        Self { capability, claims }
    }

    /// The operator's certificate name.
    pub fn name(&self) -> &str {
        &self.claims.name
    }

    /// Its certificate's roles.
    pub fn roles(&self) -> &[String] {
        &self.claims.roles
    }

    /// Its certificate's serial.
    pub fn serial(&self) -> u64 {
        self.claims.serial
    }

    /// Its certificate's node id.
    pub fn node(&self) -> NodeId {
        self.claims.node
    }

    /// Where it logged in from.
    pub fn source(&self) -> IpAddr {
        self.claims.source
    }

    /// When its session ends, Unix milliseconds.
    pub fn expires_ms(&self) -> u64 {
        self.claims.expires_ms
    }

    /// Whether it still holds on this node: not expired, its serial not
    /// revoked.
    pub fn is_valid(&self, mesh_revoked: impl Fn(u64) -> bool) -> bool {
        crate::mesh::unix_now_ms() < self.claims.expires_ms && !mesh_revoked(self.claims.serial)
    }
}

/// An ask made for an operator: its capability, and the inner message's
/// target, tag and body.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<serde_bytes::ByteBuf, RemoteError>")]
pub(crate) struct Delegated {
    pub(crate) capability: Capability,
    pub(crate) to: String,
    pub(crate) tag: String,
    #[serde(with = "serde_bytes")]
    pub(crate) body: Vec<u8>,
    /// The node that sent it (set from the link; `None`: this node).
    #[serde(default)]
    pub(crate) from: Option<(NodeId, String)>,
}

impl StampCaller for Delegated {
    fn stamp_caller(&mut self, caller: &Caller) {
        self.from = Some((caller.node, caller.name.to_string()));
    }
}

crate::system_message!(Delegated => "swarm.Delegated", Nodes);

/// Wraps an encoded ask for `behalf`.
pub(crate) fn wrap(behalf: &Arc<Behalf>, to: &str, tag: &str, body: Vec<u8>) -> Delegated {
    Delegated {
        capability: behalf.capability.clone(),
        to: to.to_owned(),
        tag: tag.to_owned(),
        body,
        from: None,
    }
}

/// A node's session actor as an asking node names it: it accepts
/// [`Delegated`]. The operators room's session actor serves the name on
/// every node; this type is never started (a handle's type, not an actor
/// that runs).
pub(crate) struct SessionDoor;

impl Actor for SessionDoor {
    type Context = Context<Self>;
}

impl Handler<Delegated> for SessionDoor {
    type Result = Result<serde_bytes::ByteBuf, RemoteError>;

    fn handle(&mut self, _: Delegated, _: &mut Context<Self>) -> Self::Result {
        Err(RemoteError::NoSuchActor {
            name: SESSION_ACTOR.to_owned(),
        })
    }
}

crate::remote_actor!(SessionDoor: Delegated);
