//! The session actor every node exposes as [`SESSION_ACTOR`]: operators log
//! in through it (forwarded to the head leader). Capabilities presented on a new
//! link are checked by the link's reader itself ([`check_present`]), so
//! the messages after them find the session in place.

use actix::prelude::*;

use super::wire::{AdminLogin, Login, VerifyLogin};
use super::{is_operator, Capability};
use crate::control::Control;
use crate::head::wire::ControlError;
use crate::mesh::Mesh;

/// The name of every node's session actor.
pub const SESSION_ACTOR: &str = "swarm.session";

/// Logs operators in (their own links and admin-API logins) and takes
/// the asks a node makes for them.
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

impl Handler<Login> for Session {
    type Result = ResponseFuture<Result<Capability, ControlError>>;

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
            let serial = operator.serial;
            let name = operator.name.clone();
            let source = operator.source;
            let login = VerifyLogin { operator, code };
            let answer = control.call(login, crate::control::CALL_WITHIN).await;
            match &answer {
                Ok(capability) => {
                    // The link's session is what the capability says: it
                    // verifies here once this node knows the group's key;
                    // until then the head leader's answer is taken as it is
                    // (it came from a head certificate's link).
                    let opened = match mesh.capability_key() {
                        Some(key) => {
                            super::open_capability(capability, Some(key), |s| mesh.is_revoked(s))
                        }
                        None => capability
                            .unverified_claims()
                            .ok_or_else(|| "malformed capability".to_owned()),
                    };
                    match opened {
                        Ok(claims) if claims.node == node && claims.serial == serial => {
                            mesh.set_link_session(node, claims.expires_ms);
                            tracing::info!(operator = %name, %source, "operator logged in");
                        }
                        Ok(_) => {
                            return Err(ControlError::Forbidden {
                                reason: "the head answered a capability for someone else".into(),
                            })
                        }
                        Err(reason) => {
                            return Err(ControlError::Forbidden {
                                reason: format!(
                                    "the head's capability does not verify here: {reason}"
                                ),
                            })
                        }
                    }
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
