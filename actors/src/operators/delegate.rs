//! A node acting for an operator who logged in through it (its admin
//! HTTP API): [`Behalf`] holds the capability the head group signed for
//! that login, naming this node as the operator's delegate; a
//! [`RemoteAddr`](crate::RemoteAddr) or
//! [`Control`](crate::control::Control) made
//! [`on_behalf`](crate::RemoteAddr::on_behalf) wraps each ask in a
//! `swarm.Delegated` message to the target node's session actor.
//!
//! The target node verifies the capability (the head group's signature,
//! its window, revocation of its serial on every call) and that the link
//! it arrived on is the delegate's, then decides and dispatches the inner
//! message as the operator's: the policy sees the claims' roles, and
//! audit records name the operator and its address, then the node. Nothing
//! in the message body besides the signed claims says who the operator is,
//! and no node but a head holds a key that signs claims.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use swarm_protocol::{NodeId, RemoteError, Target};

use super::session::Session;
use super::{Capability, Claims};
use crate::audit::{AuditKind, AuditRecord};
use crate::directory::{Access, Caller, StampCaller};
use crate::mesh::Mesh;

/// An operator a node acts for: the capability of its login and the
/// claims it verified to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behalf {
    capability: Capability,
    claims: Claims,
}

impl Behalf {
    /// Verifies `capability` on this node (signature, window, revocation,
    /// and that it names this node as the operator's delegate).
    ///
    /// # Errors
    ///
    /// Why it does not verify.
    pub(crate) fn open(mesh: &Mesh, capability: Capability) -> Result<Self, String> {
        let claims =
            super::open_capability(&capability, mesh.capability_key(), |s| mesh.is_revoked(s))?;
        if claims.delegate != Some(mesh.id()) {
            return Err("the capability does not name this node as the operator's delegate".into());
        }
        Ok(Self { capability, claims })
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
        super::unix_ms() < self.claims.expires_ms && !mesh_revoked(self.claims.serial)
    }
}

/// The caller a delegated message is decided and dispatched as: the
/// verified claims, nothing else.
fn caller_of(claims: &Claims) -> Caller {
    Caller {
        node: claims.node,
        roles: claims.roles.clone().into(),
        serial: claims.serial,
        name: claims.name.as_str().into(),
        addr: SocketAddr::new(claims.source, 0),
        operator: true,
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

impl Handler<Delegated> for Session {
    type Result = ResponseFuture<Result<serde_bytes::ByteBuf, RemoteError>>;

    fn handle(&mut self, msg: Delegated, _: &mut Context<Self>) -> Self::Result {
        let checked = admit(&self.mesh, &msg);
        Box::pin(async move {
            let answer = checked?.await?;
            Ok(serde_bytes::ByteBuf::from(answer))
        })
    }
}

/// Checks a delegated ask and dispatches its inner message.
fn admit(
    mesh: &Mesh,
    msg: &Delegated,
) -> Result<crate::directory::dispatch::AskFuture, RemoteError> {
    let forbid = |reason: String| RemoteError::Forbidden { reason };
    let (from, via) = match &msg.from {
        Some((node, name)) => (*node, name.as_str()),
        None => (mesh.id(), "this node"),
    };
    let claims = mesh.open_capability(&msg.capability).and_then(|claims| {
        if claims.delegate == Some(from) {
            Ok(claims)
        } else {
            Err(
                "the capability does not name the node that sent it as the operator's delegate"
                    .into(),
            )
        }
    });
    let claims = match claims {
        Ok(claims) => claims,
        Err(reason) => {
            let reason = format!("{}: {reason}", msg.tag);
            mesh.count_forbidden();
            mesh.audit(|| AuditRecord {
                at_ms: super::unix_ms(),
                kind: AuditKind::Forbidden,
                who: via.to_owned(),
                serial: 0,
                roles: Vec::new(),
                source: format!("node {}", from.short()),
                tag: "swarm.Delegated".into(),
                target: msg.to.clone(),
                detail: reason.clone(),
            });
            tracing::warn!(node = %from.short(), name = via, %reason, "delegated ask refused");
            return Err(forbid(reason));
        }
    };
    let caller = caller_of(&claims);
    let to = Target::Name(&msg.to);
    let mut lookup = mesh.directory().lookup();
    let mut policy = crate::policy::LinkPolicy::new(mesh.directory().clone(), mesh.policy());
    let record = |kind, detail: &str| AuditRecord {
        at_ms: super::unix_ms(),
        kind,
        who: claims.name.clone(),
        serial: claims.serial,
        roles: claims.roles.clone(),
        source: format!("{} via {via}", claims.source),
        tag: msg.tag.clone(),
        target: msg.to.clone(),
        detail: detail.to_owned(),
    };
    let access = match policy.authorize(&to, &msg.tag, &caller, true) {
        // What an operator does for itself (log in, delegate, set its
        // password) it does over its own link, never through a node: a
        // delegate could otherwise renew its own capability for ever.
        Ok(Access::Login | Access::Account) => {
            let reason = format!(
                "{}: an operator sends this over its own link, not through a node",
                msg.tag
            );
            mesh.count_forbidden();
            mesh.audit(|| record(AuditKind::Forbidden, &reason));
            return Err(forbid(reason));
        }
        Ok(access) => access,
        Err(refusal) => {
            if let RemoteError::Forbidden { reason } = &refusal.error {
                mesh.count_forbidden();
                mesh.audit(|| record(AuditKind::Forbidden, reason));
                mesh.directory().events().record(
                    "refused",
                    format!("{} to {}", msg.tag, msg.to),
                    format!("from {} (through the admin API): {reason}", claims.name),
                );
            }
            return Err(refusal.error);
        }
    };
    if access.audited() {
        mesh.audit(|| record(AuditKind::Command, "allowed"));
    }
    lookup.find(&to)?.ask(&caller, &msg.tag, &msg.body)
}

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
