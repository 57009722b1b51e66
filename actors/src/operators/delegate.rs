//! A node acting for an operator who logged in through it (its admin
//! HTTP API): [`Behalf`] holds the capability the head group signed for
//! that login, naming this node as the operator's delegate; a
//! [`RemoteAddr`](crate::RemoteAddr) or
//! `Control` made
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

use std::net::SocketAddr;
use std::sync::Arc;

use swarm_protocol::{RemoteError, Target};

use super::sessions::Sessions;
use super::{Capability, Claims};
use crate::audit::Trail;
use crate::audit::{AuditKind, AuditRecord};
use crate::directory::{Access, Caller, Directory};
use crate::mesh::Mesh;
use crate::policy::Policy;
pub use crate::remote::behalf::Behalf;
pub(crate) use crate::remote::behalf::Delegated;

impl Behalf {
    /// Verifies `capability` on this node (signature, window, revocation,
    /// and that it names this node as the operator's delegate).
    ///
    /// # Errors
    ///
    /// Why it does not verify.
    pub(crate) fn open(sessions: &Sessions, capability: Capability) -> Result<Self, String> {
        let claims = sessions.open(&capability)?;
        if claims.delegate != Some(sessions.node()) {
            return Err("the capability does not name this node as the operator's delegate".into());
        }
        Ok(Self::verified(capability, claims))
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

/// What a node needs to act on delegated asks: its mesh (its id and
/// counters), its operator sessions, the actors it exposes, its policy and
/// its audit trail.
#[derive(Clone)]
pub(crate) struct Delegation {
    pub(crate) mesh: Mesh,
    pub(crate) sessions: Sessions,
    pub(crate) directory: Directory,
    pub(crate) policy: Arc<Policy>,
    pub(crate) audit: Trail,
}

/// Checks a delegated ask and dispatches its inner message.
pub(crate) fn admit(
    delegation: &Delegation,
    msg: &Delegated,
) -> Result<crate::directory::dispatch::AskFuture, RemoteError> {
    let Delegation {
        mesh,
        sessions,
        directory,
        policy,
        audit,
    } = delegation;
    let forbid = |reason: String| RemoteError::Forbidden { reason };
    let (from, via) = match &msg.from {
        Some((node, name)) => (*node, name.as_str()),
        None => (mesh.id(), "this node"),
    };
    let claims = sessions.open(&msg.capability).and_then(|claims| {
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
            audit.record(|| AuditRecord {
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
    let mut lookup = directory.lookup();
    let mut policy = crate::policy::LinkPolicy::new(directory.clone(), Arc::clone(policy));
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
            audit.record(|| record(AuditKind::Forbidden, &reason));
            return Err(forbid(reason));
        }
        Ok(access) => access,
        Err(refusal) => {
            if let RemoteError::Forbidden { reason } = &refusal.error {
                mesh.count_forbidden();
                audit.record(|| record(AuditKind::Forbidden, reason));
                directory.events().record(
                    "refused",
                    format!("{} to {}", msg.tag, msg.to),
                    format!("from {} (through the admin API): {reason}", claims.name),
                );
            }
            return Err(refusal.error);
        }
    };
    if access.audited() {
        audit.record(|| record(AuditKind::Command, "allowed"));
    }
    lookup.find(&to)?.ask(&caller, &msg.tag, &msg.body)
}
