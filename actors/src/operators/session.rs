//! The session actor every node exposes as [`SESSION_ACTOR`]: operators log
//! in through it (forwarded to the head leader). Tokens presented on a new
//! link are checked by the link's reader itself ([`check_present`]), so
//! the messages after them find the session in place.

use actix::prelude::*;

use super::wire::{AdminLogin, Login, VerifyLogin};
use super::{is_operator, SessionToken};
use crate::control::Control;
use crate::head::wire::ControlError;
use crate::mesh::Mesh;

/// The name of every node's session actor.
pub const SESSION_ACTOR: &str = "swarm.session";

/// Logs operators in and checks their session tokens.
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
            if !is_operator(&who.roles) {
                return Err(refused(
                    "only operator certificates open admin-API sessions",
                ));
            }
            let key = self.mesh.session_key().ok_or_else(|| {
                refused("this node cannot check operator sessions yet: try again in a moment")
            })?;
            if !msg
                .token
                .verify(&key, who.node, who.serial, super::unix_ms())
            {
                return Err(ControlError::Forbidden {
                    reason: "the session token is not this link's, or expired: log in again".into(),
                });
            }
            let admin = self.admin.clone().ok_or_else(|| {
                refused("this node serves no admin API ([admin] in its configuration)")
            })?;
            Ok((admin, super::Behalf::new(who, msg.token)))
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

impl Handler<Login> for Session {
    type Result = ResponseFuture<Result<SessionToken, ControlError>>;

    fn handle(&mut self, Login { code, who }: Login, _: &mut Context<Self>) -> Self::Result {
        let mesh = self.mesh.clone();
        let control = self.control.clone();
        Box::pin(async move {
            let operator = who.ok_or_else(|| ControlError::Refused {
                reason: "a login must arrive over a link".into(),
            })?;
            if !is_operator(&operator.roles) {
                return Err(ControlError::Refused {
                    reason:
                        "only operator certificates log in; node certificates need no second factor"
                            .into(),
                });
            }
            let control = control.ok_or_else(|| ControlError::NoHead {
                reason: "this node runs without membership: log in through a member".into(),
            })?;
            let node = operator.node;
            let name = operator.name.clone();
            let source = operator.source;
            let answer = control
                .call(VerifyLogin { operator, code }, crate::control::CALL_WITHIN)
                .await;
            match &answer {
                Ok(token) => {
                    mesh.set_link_session(node, token.expires_ms);
                    tracing::info!(operator = %name, %source, "operator logged in");
                }
                Err(e) => {
                    tracing::warn!(operator = %name, %source, error = %e, "operator login refused")
                }
            }
            answer
        })
    }
}

crate::remote_actor!(Session: Login, AdminLogin, super::delegate::Delegated);

/// Checks a `Present` tell's body from `caller`: the session's end (Unix
/// ms) if its token is genuine, for this certificate and not expired.
pub(crate) fn check_present(
    key: Option<zeroize::Zeroizing<[u8; 32]>>,
    caller: &crate::directory::Caller,
    body: &[u8],
) -> Result<u64, String> {
    let present: super::wire::Present =
        rmp_serde::from_slice(body).map_err(|e| format!("not a session: {e}"))?;
    let key = key.ok_or_else(|| {
        "this node has no session key yet (it has not renewed its lease with a head that holds the TOTP secret)".to_owned()
    })?;
    if present
        .token
        .verify(&key, caller.node, caller.serial, super::unix_ms())
    {
        Ok(present.token.expires_ms)
    } else {
        Err("the session token is not valid for this certificate, or expired: log in again".into())
    }
}
