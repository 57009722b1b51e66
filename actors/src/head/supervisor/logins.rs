//! Operator logins on the head leader: the code checked against the
//! operator's seed (derived from the TOTP secret), at most once per step
//! (committed in the log), with lockouts ([`crate::operators::guard`]).

use std::time::Instant;

use actix::prelude::*;

use super::Supervisor;
use crate::audit::{AuditKind, AuditRecord};
use crate::head::state::{Applied, Command};
use crate::head::wire::ControlError;
use crate::operators::wire::VerifyLogin;
use crate::operators::{self, SessionToken};

impl Handler<VerifyLogin> for Supervisor {
    type Result = ResponseFuture<Result<SessionToken, ControlError>>;

    fn handle(&mut self, login: VerifyLogin, _: &mut Context<Self>) -> Self::Result {
        let checked = self.check_login(&login);
        let writes = self.writes.clone();
        let key = self.totp.as_ref().map(|t| operators::session_key(t));
        Box::pin(async move {
            let step = checked?;
            let forbid = |reason: String| ControlError::Forbidden { reason };
            match writes
                .write(Command::TotpUsed {
                    serial: login.operator.serial,
                    step,
                })
                .await?
            {
                (_, Applied::Done) => {}
                // Another login with this step committed first.
                _ => {
                    return Err(forbid(
                        crate::operators::guard::Refusal::Replayed.to_string(),
                    ))
                }
            }
            let key = key.ok_or_else(|| forbid("this head holds no TOTP secret".into()))?;
            let expires = operators::unix_ms()
                + u64::try_from(operators::SESSION.as_millis()).unwrap_or(u64::MAX);
            Ok(SessionToken::sign(
                &key,
                login.operator.node,
                login.operator.serial,
                expires,
            ))
        })
    }
}

impl Supervisor {
    /// The step a login's code is for, if the guard lets it through.
    fn check_login(&mut self, login: &VerifyLogin) -> Result<u64, ControlError> {
        self.leading()?;
        let operator = &login.operator;
        let totp = self.totp.clone().ok_or_else(|| ControlError::Forbidden {
            reason: "the head leader holds no TOTP secret (`totp` in its [head] configuration): operators cannot log in".into(),
        })?;
        let seed = operators::seed(&totp, operator.serial, &operator.name);
        let now = operators::unix_ms() / 1000;
        let step = operators::matching_step(&seed, login.code.trim(), now);
        let last = self.read(|m| m.state.totp_step(operator.serial));
        let checked =
            self.guard
                .check(operator.serial, operator.source, step, last, Instant::now());
        let (kind, detail) = match &checked {
            Ok(_) => (AuditKind::Login, "code accepted".to_owned()),
            Err(refusal) => (AuditKind::LoginRefused, refusal.to_string()),
        };
        self.mesh.audit(|| AuditRecord {
            at_ms: operators::unix_ms(),
            kind,
            who: operator.name.clone(),
            serial: operator.serial,
            roles: operator.roles.clone(),
            source: operator.source.to_string(),
            tag: "swarm.Login".into(),
            target: String::new(),
            detail,
        });
        checked.map_err(|refusal| {
            tracing::warn!(operator = %operator.name, source = %operator.source, %refusal, "operator login refused");
            ControlError::Forbidden {
                reason: refusal.to_string(),
            }
        })
    }
}
