//! A node's operator side: logging an operator node in, and the admin
//! API's sessions for operators proven over the mesh.

use std::net::SocketAddr;

use actix::Addr;

use super::Node;
use crate::control::LoginError;

impl Node {
    /// Logs this (operator) node in with a TOTP `code` through the member
    /// at `member`: the head leader checks the code, and the capability it
    /// signs is presented on every link this node opens from now on (for
    /// [`crate::operators::SESSION`]).
    ///
    /// # Errors
    ///
    /// [`LoginError::Refused`] with the head's reason (a wrong, replayed or
    /// expired code, a lockout, a revoked certificate);
    /// [`LoginError::Connect`] or [`LoginError::Ask`] if the member cannot
    /// be asked.
    pub async fn login(
        &self,
        member: SocketAddr,
        code: &str,
    ) -> Result<crate::operators::Capability, LoginError> {
        let peer = self.connect(member).await?;
        let session = self
            .remote::<crate::control::session::Session>(peer.id, crate::operators::SESSION_ACTOR);
        // Where the heads are, then the code to the leader over this node's
        // own link (only a head certificate is sent it).
        let heads = session
            .send(crate::head::wire::operators::FindHeads)
            .await??;
        for (head, addr) in &heads {
            if *head != self.id() {
                self.mesh.peer_up(*head, *addr, Vec::new(), false);
            }
        }
        let control = crate::control::Control::with_heads(
            self.mesh.clone(),
            self.sessions.clone(),
            heads.into_iter().map(|(h, _)| h).collect(),
        );
        let capability = control
            .call(
                crate::head::wire::operators::VerifyLogin {
                    operator: crate::head::wire::operators::Operator::of(&self.mesh.own_caller()),
                    code: code.to_owned(),
                },
                crate::control::CALL_WITHIN,
            )
            .await?;
        self.sessions.present(&capability);
        Ok(capability)
    }

    /// Presents a capability an earlier login answered (kept by the
    /// operator's tools) on every link this node opens from now on.
    pub fn use_capability(&self, capability: &crate::operators::Capability) {
        self.sessions.present(capability);
    }

    /// Serves admin-API sessions to operators who log in over the mesh
    /// (certificate and TOTP): `admin` opens one for each (the admin API
    /// registers itself here).
    pub fn serve_admin_sessions(
        &self,
        admin: actix::Recipient<crate::operators::OpenAdminSession>,
    ) {
        let session = self.directory.dispatcher(crate::operators::SESSION_ACTOR);
        if let Some(addr) = session.as_ref().and_then(|d| {
            d.addr()
                .downcast_ref::<Addr<crate::control::session::Session>>()
                .cloned()
        }) {
            addr.do_send(crate::control::session::ServeAdmin(admin));
        }
    }

    /// Asks the member at `member` (whose admin API serves sessions) for
    /// a session of its admin API, for this logged-in operator node: the
    /// head leader signs a capability naming the member as the operator's
    /// delegate (asked for over this node's own link), and the member
    /// opens a session with it.
    ///
    /// # Errors
    ///
    /// [`LoginError::Refused`] if this node has not logged in, the member
    /// serves no admin API or the delegation is refused;
    /// [`LoginError::Connect`] or [`LoginError::Ask`] if the member cannot
    /// be asked.
    pub async fn admin_login(
        &self,
        member: SocketAddr,
    ) -> Result<crate::operators::AdminSession, LoginError> {
        let peer = self.connect(member).await?;
        let control = self.control_through(member).await?;
        let capability = control
            .call(
                crate::head::wire::operators::Delegate {
                    node: peer.id,
                    who: None,
                },
                crate::control::CALL_WITHIN,
            )
            .await?;
        let session = self
            .remote::<crate::control::session::Session>(peer.id, crate::operators::SESSION_ACTOR);
        Ok(session
            .send(crate::head::wire::operators::AdminLogin {
                capability,
                who: None,
            })
            .await??)
    }
}
