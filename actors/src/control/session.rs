//! The session actor every node exposes as [`SESSION_ACTOR`]: operators ask
//! it where the heads are (then log in with the leader over their own
//! link), open admin-API sessions, and nodes act for operators through it.
//! Capabilities presented on a new link are checked through the mesh's
//! gate ([`crate::operators::sessions`]), so the messages after them find the
//! session in place.

use actix::prelude::*;

use swarm_protocol::{NodeId, RemoteError};

use super::Control;
use crate::head::wire::operators::{AdminLogin, FindHeads};
use crate::head::wire::ControlError;
use crate::operators::delegate::Delegation;
use crate::operators::{AdminSession, Behalf, OpenAdminSession};
use crate::remote::behalf::Delegated;

/// Tells operators where the heads are, opens admin-API sessions with
/// delegated capabilities, and takes the asks a node makes for operators.
pub(crate) struct Session {
    /// What acting for operators needs (capabilities verify with its
    /// sessions).
    pub(crate) delegation: Delegation,
    /// The control plane (nodes with membership), to reach the head leader.
    pub(crate) control: Option<Control>,
    /// The admin API, where this node serves one.
    pub(crate) admin: Option<Recipient<OpenAdminSession>>,
}

/// The admin API registers itself.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ServeAdmin(pub(crate) Recipient<OpenAdminSession>);

impl Handler<ServeAdmin> for Session {
    type Result = ();

    fn handle(&mut self, ServeAdmin(admin): ServeAdmin, _: &mut Context<Self>) {
        self.admin = Some(admin);
    }
}

impl Handler<AdminLogin> for Session {
    type Result = ResponseFuture<Result<AdminSession, ControlError>>;

    fn handle(&mut self, msg: AdminLogin, _: &mut Context<Self>) -> Self::Result {
        let refused = |reason: &str| ControlError::Refused {
            reason: reason.to_owned(),
        };
        let checked = (|| {
            let who = msg
                .who
                .ok_or_else(|| refused("an admin-API login arrives over an operator's link"))?;
            let behalf =
                Behalf::open(&self.delegation.sessions, msg.capability).map_err(|reason| {
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
            match admin.send(OpenAdminSession { behalf }).await {
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

crate::remote_actor!(Session: FindHeads, AdminLogin, Delegated);

impl Handler<Delegated> for Session {
    type Result = ResponseFuture<Result<serde_bytes::ByteBuf, RemoteError>>;

    fn handle(&mut self, msg: Delegated, _: &mut Context<Self>) -> Self::Result {
        let checked = crate::operators::delegate::admit(&self.delegation, &msg);
        Box::pin(async move {
            let answer = checked?.await?;
            Ok(serde_bytes::ByteBuf::from(answer))
        })
    }
}
