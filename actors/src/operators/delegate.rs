//! A node acting for an operator who logged in through it (its admin
//! HTTP API): [`Behalf`] is who the operator is and the session token the
//! head leader gave for the login; a [`RemoteAddr`](crate::RemoteAddr) or
//! [`Control`](crate::control::Control) made
//! [`on_behalf`](crate::RemoteAddr::on_behalf) wraps each ask in a
//! `swarm.Delegated` message to the target node's session actor.
//!
//! The target node checks the token (its session key, as for an operator's
//! own link), then decides and dispatches the inner message exactly as if
//! the operator had sent it over its own link: the policy sees the
//! operator's roles, an operator without `admin` cannot restart or stop,
//! and audit records name the operator and its address, not the node.
//! Only node certificates may send `swarm.Delegated`.
//!
//! Trust: every node holds the session key (it checks operators' tokens),
//! so a node could mint a token itself. A delegated message is therefore
//! as trustworthy as the node that sent it, which already runs the
//! cluster's actors; what the check adds is that an honest node cannot be
//! talked into acting for an operator who did not log in, or whose
//! session ended.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use swarm_protocol::{RemoteError, Target};

use super::session::Session;
use super::wire::Operator;
use super::{is_operator, SessionToken};
use crate::audit::{AuditKind, AuditRecord};
use crate::directory::{Caller, StampCaller};
use crate::mesh::Mesh;

/// An operator a node acts for: who logged in and the token of its login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Behalf {
    pub(crate) operator: Operator,
    pub(crate) token: SessionToken,
}

impl Behalf {
    pub(crate) fn new(operator: Operator, token: SessionToken) -> Self {
        Self { operator, token }
    }

    /// The operator's certificate name.
    pub fn name(&self) -> &str {
        &self.operator.name
    }

    /// Its certificate's roles.
    pub fn roles(&self) -> &[String] {
        &self.operator.roles
    }

    /// Its certificate's serial.
    pub fn serial(&self) -> u64 {
        self.operator.serial
    }

    /// Where it logged in from.
    pub fn source(&self) -> IpAddr {
        self.operator.source
    }

    /// When its session ends, Unix milliseconds.
    pub fn expires_ms(&self) -> u64 {
        self.token.expires_ms
    }

    /// The caller a delegated message is decided and dispatched as.
    fn caller(&self) -> Caller {
        Caller {
            node: self.operator.node,
            roles: self.operator.roles.clone().into(),
            serial: self.operator.serial,
            name: self.operator.name.as_str().into(),
            addr: SocketAddr::new(self.operator.source, 0),
            operator: true,
        }
    }
}

/// An ask made for an operator: the inner message's target, tag and body.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<serde_bytes::ByteBuf, RemoteError>")]
pub(crate) struct Delegated {
    pub(crate) behalf: Behalf,
    pub(crate) to: String,
    pub(crate) tag: String,
    #[serde(with = "serde_bytes")]
    pub(crate) body: Vec<u8>,
    /// The node that sent it (set from the link; `None`: this node).
    #[serde(default)]
    pub(crate) from: Option<Operator>,
}

impl StampCaller for Delegated {
    fn stamp_caller(&mut self, caller: &Caller) {
        self.from = Some(Operator::of(caller));
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
    if let Some(from) = &msg.from {
        if is_operator(&from.roles) {
            return Err(forbid(
                "only nodes act for operators; an operator sends its own messages".into(),
            ));
        }
    }
    let behalf = &msg.behalf;
    let key = mesh.session_key().ok_or_else(|| {
        forbid("this node cannot check operator sessions yet (no lease grant from a head holding the TOTP secret)".into())
    })?;
    let op = &behalf.operator;
    if !is_operator(&op.roles)
        || !behalf
            .token
            .verify(&key, op.node, op.serial, super::unix_ms())
    {
        return Err(forbid(format!(
            "{}: the operator's session is not valid or ended: log in again",
            msg.tag
        )));
    }
    let caller = behalf.caller();
    let to = Target::Name(&msg.to);
    let mut lookup = mesh.directory().lookup(mesh.policy());
    let record = |kind, detail: &str| AuditRecord {
        at_ms: super::unix_ms(),
        kind,
        who: op.name.clone(),
        serial: op.serial,
        roles: op.roles.clone(),
        source: format!(
            "{} via {}",
            op.source,
            msg.from.as_ref().map_or("this node", |f| f.name.as_str())
        ),
        tag: msg.tag.clone(),
        target: msg.to.clone(),
        detail: detail.to_owned(),
    };
    let access = match lookup.authorize(&to, &msg.tag, &caller, true) {
        Ok(access) => access,
        Err(refusal) => {
            if let RemoteError::Forbidden { reason } = &refusal.error {
                mesh.count_forbidden();
                mesh.audit(|| record(AuditKind::Forbidden, reason));
                mesh.directory().events().record(
                    "refused",
                    format!("{} to {}", msg.tag, msg.to),
                    format!("from {} (through the admin API): {reason}", op.name),
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
        behalf: Behalf::clone(behalf),
        to: to.to_owned(),
        tag: tag.to_owned(),
        body,
        from: None,
    }
}
