//! A node's operator side: logging an operator node in, and the admin
//! API's sessions for operators proven over the mesh.

use std::net::SocketAddr;

use actix::Addr;

use super::Node;
use crate::error::LoginError;

impl Node {
    /// Logs this (operator) node in with a TOTP `code` through the member
    /// at `member`: the head leader checks the code, and the session token
    /// it answers is presented on every link this node opens from now on
    /// (for [`crate::operators::SESSION`]).
    ///
    /// # Errors
    ///
    /// [`LoginError::Refused`] with the head's reason (a wrong, replayed or
    /// expired code, a lockout); [`LoginError::Connect`] or
    /// [`LoginError::Ask`] if the member cannot be asked.
    pub async fn login(
        &self,
        member: SocketAddr,
        code: &str,
    ) -> Result<crate::operators::SessionToken, LoginError> {
        let peer = self.connect(member).await?;
        let session = self
            .remote::<crate::operators::session::Session>(peer.id, crate::operators::SESSION_ACTOR);
        let token = session
            .send(crate::operators::wire::Login {
                code: code.to_owned(),
                who: None,
            })
            .await??;
        self.mesh.set_session_token(&token);
        Ok(token)
    }

    /// Serves admin-API sessions to operators who log in over the mesh
    /// (certificate and TOTP): `admin` opens one for each (the admin API
    /// registers itself here).
    pub fn serve_admin_sessions(
        &self,
        admin: actix::Recipient<crate::operators::OpenAdminSession>,
    ) {
        let session = self
            .mesh
            .directory()
            .dispatcher(crate::operators::SESSION_ACTOR);
        if let Some(addr) = session.as_ref().and_then(|d| {
            d.addr()
                .downcast_ref::<Addr<crate::operators::session::Session>>()
                .cloned()
        }) {
            addr.do_send(crate::operators::session::ServeAdmin(admin));
        }
    }

    /// Asks the member at `member` (whose admin API serves sessions) for
    /// a session of its admin API, for this operator node logged in with
    /// `token` (what [`Node::login`] answered).
    ///
    /// # Errors
    ///
    /// [`LoginError::Refused`] if the member serves no admin API or the
    /// token is not this node's; [`LoginError::Connect`] or
    /// [`LoginError::Ask`] if the member cannot be asked.
    pub async fn admin_login(
        &self,
        member: SocketAddr,
        token: &crate::operators::SessionToken,
    ) -> Result<crate::operators::AdminSession, LoginError> {
        let peer = self.connect(member).await?;
        let session = self
            .remote::<crate::operators::session::Session>(peer.id, crate::operators::SESSION_ACTOR);
        Ok(session
            .send(crate::operators::wire::AdminLogin {
                token: token.clone(),
                who: None,
            })
            .await??)
    }
}
