//! The control plane's client for operators: acting for one who logged
//! in through this node, and the admin API's passwords.

use std::sync::Arc;

use super::{Control, ControlError, CALL_WITHIN};

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
    /// As the head answers: [`ControlError::Refused`] for a node
    /// certificate or a malformed hash.
    pub async fn set_password(
        &self,
        hash: crate::operators::password::PasswordHash,
    ) -> Result<(), ControlError> {
        self.call(
            crate::operators::wire::SetPassword { hash, who: None },
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
        let verify = crate::operators::wire::VerifyPassword {
            name: name.to_owned(),
            password: password.to_owned(),
            code: code.to_owned(),
            source,
            via: None,
        };
        let capability = self.call(verify, CALL_WITHIN).await?;
        crate::operators::Behalf::open(&self.mesh, capability).map_err(|reason| {
            ControlError::Forbidden {
                reason: format!("the head's answer does not verify here: {reason}"),
            }
        })
    }
}
