//! The control plane's client for operators: acting for one who logged
//! in through this node, the admin API's passwords, revocations and the
//! capability key's rotation.

use std::sync::Arc;

use super::{Control, ControlError, CALL_WITHIN};
use crate::error::{AskError, ConnectError};
use crate::head::wire::{ListRevoked, RevokeCert};

/// Why an operator login (`Node::login`) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// The member could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The member did not answer.
    #[error(transparent)]
    Ask(#[from] AskError),
    /// The head refused the login ([`ControlError::Login`] says why: a
    /// wrong or used code, a lockout, a revoked certificate) or could not
    /// decide it (no quorum, no head); its reason is printed in the
    /// message, not again as the source.
    #[error("{}", refused(.0))]
    Refused(ControlError),
}

/// A refused login's message: the head's refusal says "login refused"
/// itself; other errors are prefixed with it.
fn refused(e: &ControlError) -> String {
    match e {
        ControlError::Login(_) => e.to_string(),
        e => format!("login refused: {e}"),
    }
}

impl From<ControlError> for LoginError {
    fn from(e: ControlError) -> Self {
        LoginError::Refused(e)
    }
}

impl Control {
    /// This client making its calls for an operator who logged in through
    /// this node (see [`Behalf`](crate::operators::Behalf)): the head decides
    /// each as the operator's.
    #[must_use]
    pub fn on_behalf(&self, behalf: Arc<crate::operators::Behalf>) -> Self {
        Self {
            behalf: Some(behalf),
            ..self.clone()
        }
    }

    /// Sets the calling operator's own admin-API password (the hash made
    /// here; the operator's link must have a session).
    ///
    /// # Errors
    ///
    /// As the head answers: [`ControlError::NotAnOperator`] for a node
    /// certificate, [`ControlError::Refused`] for a malformed hash.
    pub async fn set_password(
        &self,
        hash: crate::operators::password::PasswordHash,
    ) -> Result<(), ControlError> {
        self.call(
            crate::head::wire::operators::SetPassword { hash, who: None },
            CALL_WITHIN,
        )
        .await
    }

    /// Logs an operator in with its name, password and TOTP code, for this
    /// node to act for it (the admin API); `source` is where the operator
    /// connects from (lockouts count by it).
    ///
    /// # Errors
    ///
    /// [`ControlError::Forbidden`] for a wrong name, password or code (not
    /// saying which), a lockout or a replayed code, or a capability that
    /// does not verify on this node.
    pub async fn login_password(
        &self,
        name: &str,
        password: &str,
        code: &str,
        source: std::net::IpAddr,
    ) -> Result<crate::operators::Behalf, ControlError> {
        let verify = crate::head::wire::operators::VerifyPassword {
            name: name.to_owned(),
            password: password.to_owned(),
            code: code.to_owned(),
            source,
            via: None,
        };
        let capability = self.call(verify, CALL_WITHIN).await?;
        crate::operators::Behalf::open(&self.sessions, capability).map_err(|reason| {
            ControlError::Forbidden {
                reason: format!("the head's answer does not verify here: {reason}"),
            }
        })
    }

    /// Revokes the certificate with `serial` (held by `name`, for
    /// listings): recorded by the head group, then every node closes its
    /// holder's links and refuses its handshakes when it next renews its
    /// lease (a fifth of the lease: 600 ms by default). Answers false if
    /// it was revoked already. Admin certificates only.
    ///
    /// # Errors
    ///
    /// [`ControlError::Forbidden`] without `admin`; no quorum.
    pub async fn revoke(&self, serial: u64, name: &str) -> Result<bool, ControlError> {
        let request = RevokeCert {
            serial,
            name: name.to_owned(),
        };
        self.call(request, CALL_WITHIN).await
    }

    /// Moves the head group's capability key to its next generation: every
    /// operator capability signed before stops verifying on each node with
    /// its next lease grant (operators log in again). Admin operators only.
    /// Answers the new generation.
    ///
    /// # Errors
    ///
    /// [`ControlError::Forbidden`] without `admin`; no quorum; a head
    /// group without a TOTP secret.
    pub async fn rotate_capability_key(&self) -> Result<u64, ControlError> {
        self.call(crate::head::wire::RotateCapabilityKey, CALL_WITHIN)
            .await
    }

    /// The revoked certificates, (serial, name), in the order revoked.
    ///
    /// # Errors
    ///
    /// No quorum.
    pub async fn revoked(&self) -> Result<Vec<(u64, String)>, ControlError> {
        self.call(ListRevoked, CALL_WITHIN).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::wire::LoginRefusal;

    #[test]
    fn a_refused_login_says_login_refused_once() {
        let refused = LoginError::Refused(ControlError::Login(LoginRefusal::CodeUsed));
        assert_eq!(
            refused.to_string(),
            "login refused: this TOTP code was used already: wait for the next one"
        );
        let undecided = LoginError::Refused(ControlError::NotLeader { leader: None });
        assert_eq!(
            undecided.to_string(),
            "login refused: not the head leader (leader: None)"
        );
    }
}
