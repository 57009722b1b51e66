//! Certificate revocation: recorded in the log (admin operators only, by
//! the policy's defaults), handed to every node with its next lease grant.

use actix::prelude::*;

use super::Supervisor;
use crate::head::state::{Applied, Command};
use crate::head::wire::{ControlError, ListRevoked, RevokeCert};

impl Handler<RevokeCert> for Supervisor {
    type Result = ResponseFuture<Result<bool, ControlError>>;

    fn handle(
        &mut self,
        RevokeCert { serial, name }: RevokeCert,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let leading = self.leading();
        let writes = self.writes.clone();
        Box::pin(async move {
            leading?;
            tracing::warn!(serial, %name, "revoking a certificate");
            match writes.write(Command::Revoke { serial, name }).await? {
                (_, Applied::Done) => Ok(true),
                // Revoked already.
                _ => Ok(false),
            }
        })
    }
}

impl Handler<ListRevoked> for Supervisor {
    type Result = ResponseFuture<Result<Vec<(u64, String)>, ControlError>>;

    fn handle(&mut self, _: ListRevoked, ctx: &mut Context<Self>) -> Self::Result {
        self.confirmed_read(ctx, |m| Ok(m.state.revoked().to_vec()))
    }
}

impl Supervisor {
    /// Hands the revocations the state holds beyond those handed already
    /// to this head's mesh, which closes their links, refuses their
    /// handshakes and keeps them in the node's revocation file.
    pub(super) fn apply_revocations(&mut self) {
        let known = self.revoked_applied;
        let fresh: Vec<u64> = self.read(|m| {
            m.state
                .revoked()
                .iter()
                .skip(known)
                .map(|(serial, _)| *serial)
                .collect()
        });
        if !fresh.is_empty() {
            self.revoked_applied += fresh.len();
            let new = self.mesh.revoke(&fresh);
            tracing::info!(serials = ?fresh, new, "certificates revoked in the head group's state: their links are closed and their handshakes refused");
        }
    }
}
