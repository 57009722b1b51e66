//! The session actor every node exposes as [`SESSION_ACTOR`]: operators ask
//! it where the heads are (then log in with the leader over their own
//! link), open admin-API sessions, and nodes act for operators through it.
//! Capabilities presented on a new link are checked by the link's reader
//! itself ([`check_present`]), so the messages after them find the
//! session in place.

use actix::prelude::*;

use swarm_protocol::NodeId;

use super::wire::{AdminLogin, FindHeads};
use crate::control::Control;
use crate::head::wire::ControlError;
use crate::mesh::Mesh;

/// The name of every node's session actor.
pub const SESSION_ACTOR: &str = "swarm.session";

/// Tells operators where the heads are, opens admin-API sessions with
/// delegated capabilities, and takes the asks a node makes for operators.
pub(crate) struct Session {
    pub(crate) mesh: Mesh,
    /// The control plane (nodes with membership), to reach the head leader.
    pub(crate) control: Option<Control>,
    /// The admin API, where this node serves one.
    pub(crate) admin: Option<Recipient<super::OpenAdminSession>>,
}

/// The admin API registers itself.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ServeAdmin(pub(crate) Recipient<super::OpenAdminSession>);

impl Handler<ServeAdmin> for Session {
    type Result = ();

    fn handle(&mut self, ServeAdmin(admin): ServeAdmin, _: &mut Context<Self>) {
        self.admin = Some(admin);
    }
}

impl Handler<AdminLogin> for Session {
    type Result = ResponseFuture<Result<super::AdminSession, ControlError>>;

    fn handle(&mut self, msg: AdminLogin, _: &mut Context<Self>) -> Self::Result {
        let refused = |reason: &str| ControlError::Refused {
            reason: reason.to_owned(),
        };
        let checked = (|| {
            let who = msg
                .who
                .ok_or_else(|| refused("an admin-API login arrives over an operator's link"))?;
            let behalf = super::Behalf::open(&self.mesh, msg.capability).map_err(|reason| {
                ControlError::Forbidden {
                    reason: format!("admin-API login: {reason}"),
                }
            })?;
            // The link's certificate is the capability's: nobody opens a
            // session with another operator's capability.
            if behalf.node() != who.node || behalf.serial() != who.serial {
                return Err(ControlError::Forbidden {
                    reason: "admin-API login: the capability is not this certificate's".into(),
                });
            }
            let admin = self.admin.clone().ok_or_else(|| {
                refused("this node serves no admin API ([admin] in its configuration)")
            })?;
            Ok((admin, behalf))
        })();
        Box::pin(async move {
            let (admin, behalf) = checked?;
            match admin.send(super::OpenAdminSession { behalf }).await {
                Ok(Ok(session)) => Ok(session),
                Ok(Err(reason)) => Err(ControlError::Refused { reason }),
                Err(_) => Err(refused("the admin API stopped")),
            }
        })
    }
}

impl Actor for Session {
    type Context = Context<Self>;
}

impl Handler<FindHeads> for Session {
    type Result = ResponseFuture<Result<Vec<(NodeId, std::net::SocketAddr)>, ControlError>>;

    fn handle(&mut self, _: FindHeads, _: &mut Context<Self>) -> Self::Result {
        let control = self.control.clone();
        Box::pin(async move {
            let control = control.ok_or_else(|| ControlError::NoHead {
                reason: "this node runs without membership: log in through a member".into(),
            })?;
            Ok(control.head_addrs().await)
        })
    }
}

crate::remote_actor!(Session: FindHeads, AdminLogin, super::delegate::Delegated);

/// Checks a `Present` tell's body from `caller`: the session's end (Unix
/// ms) if its capability verifies, is this certificate's own (not a
/// delegated one) and its serial is not revoked.
pub(crate) fn check_present(
    key: Option<[u8; 32]>,
    revoked: impl Fn(u64) -> bool,
    caller: &crate::directory::Caller,
    body: &[u8],
) -> Result<u64, String> {
    let present: super::wire::Present =
        rmp_serde::from_slice(body).map_err(|e| format!("not a capability: {e}"))?;
    let claims = super::open_capability(&present.capability, key, revoked)?;
    if claims.node != caller.node || claims.serial != caller.serial {
        return Err("the capability is not this certificate's: log in again".into());
    }
    if claims.delegate.is_some() {
        return Err("a delegated capability is not presented on an operator's own link".into());
    }
    Ok(claims.expires_ms)
}
