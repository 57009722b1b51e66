//! Operator logins on the head leader: the code checked against the
//! operator's seed (derived from the TOTP secret), at most once per step
//! (committed in the log), with lockouts ([`crate::operators::guard`]).

use std::time::Instant;

use actix::prelude::*;

use super::Supervisor;
use crate::audit::{AuditKind, AuditRecord};
use crate::head::state::PasswordEntry;
use crate::head::state::{Applied, Command};
use crate::head::wire::ControlError;
use crate::operators::wire::{Delegate, Operator, SetPassword, VerifyLogin, VerifyPassword};
use crate::operators::{self, Capability, Claims};

impl Handler<VerifyLogin> for Supervisor {
    type Result = ResponseFuture<Result<Capability, ControlError>>;

    fn handle(&mut self, login: VerifyLogin, _: &mut Context<Self>) -> Self::Result {
        // Stamped from the operator's own link.
        let checked = if operators::is_operator(&login.operator.roles) {
            self.check_login(&login)
        } else {
            Err(ControlError::Refused {
                reason:
                    "only operator certificates log in; node certificates need no second factor"
                        .into(),
            })
        };
        let issue = self.issue(login.operator.clone(), None);
        Box::pin(async move { issue(checked?).await })
    }
}

impl Handler<Delegate> for Supervisor {
    type Result = Result<Capability, ControlError>;

    fn handle(&mut self, msg: Delegate, _: &mut Context<Self>) -> Self::Result {
        self.leading()?;
        // Who asks is the operator its own link proved, logged in (the
        // policy let an `operators` message through only so).
        let who = msg.who.ok_or_else(|| ControlError::Refused {
            reason: "a delegation is asked for over the operator's own link".into(),
        })?;
        if !operators::is_operator(&who.roles) {
            return Err(ControlError::Refused {
                reason: "only operators delegate".into(),
            });
        }
        let serial = who.serial;
        if self.read(|m| m.state.revoked().iter().any(|(s, _)| *s == serial)) {
            return Err(ControlError::Forbidden {
                reason: "this operator's certificate is revoked".into(),
            });
        }
        self.mesh.audit(|| AuditRecord {
            at_ms: operators::unix_ms(),
            kind: AuditKind::Command,
            who: who.name.clone(),
            serial,
            roles: who.roles.clone(),
            source: who.source.to_string(),
            tag: "swarm.Delegate".into(),
            target: msg.node.short(),
            detail: "admin-API session delegated to the node".into(),
        });
        self.sign(who, Some(msg.node))
    }
}

impl Handler<SetPassword> for Supervisor {
    type Result = ResponseFuture<Result<(), ControlError>>;

    fn handle(&mut self, msg: SetPassword, _: &mut Context<Self>) -> Self::Result {
        let checked = self.leading().and_then(|()| {
            let refused = |reason: &str| ControlError::Refused {
                reason: reason.to_owned(),
            };
            let who = msg
                .who
                .clone()
                .ok_or_else(|| refused("a password is set over an operator's own link"))?;
            if !operators::is_operator(&who.roles) {
                return Err(refused(
                    "only operator certificates have passwords (nodes log in with their certificates)",
                ));
            }
            msg.hash.check().map_err(|reason| refused(&reason))?;
            Ok(who)
        });
        if let Ok(who) = &checked {
            self.mesh.audit(|| AuditRecord {
                at_ms: operators::unix_ms(),
                kind: AuditKind::Command,
                who: who.name.clone(),
                serial: who.serial,
                roles: who.roles.clone(),
                source: who.source.to_string(),
                tag: "swarm.SetPassword".into(),
                target: who.name.clone(),
                detail: "password set".into(),
            });
        }
        let writes = self.writes.clone();
        Box::pin(async move {
            let who = checked?;
            let entry = PasswordEntry {
                serial: who.serial,
                node: who.node,
                roles: who.roles,
                hash: msg.hash,
            };
            writes
                .write(Command::SetPassword {
                    name: who.name,
                    entry,
                })
                .await?;
            Ok(())
        })
    }
}

impl Handler<VerifyPassword> for Supervisor {
    type Result = ResponseActFuture<Self, Result<Capability, ControlError>>;

    fn handle(&mut self, msg: VerifyPassword, _: &mut Context<Self>) -> Self::Result {
        let entry = self
            .leading()
            .map(|()| self.read(|m| m.state.password(&msg.name).cloned()));
        let password = zeroize::Zeroizing::new(msg.password.clone());
        // argon2id takes ~60 ms: off the actor's thread.
        let hashed = async move {
            let entry = entry?;
            let Some(entry) = entry else {
                return Ok((None, false));
            };
            let hash = entry.hash.clone();
            let ok = tokio::task::spawn_blocking(move || hash.verify(&password))
                .await
                .unwrap_or(false);
            Ok((Some(entry), ok))
        };
        Box::pin(hashed.into_actor(self).then(move |hashed, act, _| {
            let checked = hashed.and_then(|(entry, ok)| act.check_password(&msg, entry, ok));
            // The admin API that forwarded it acts for the operator.
            let delegate = Some(msg.via.unwrap_or(act.id));
            let issue = checked
                .as_ref()
                .ok()
                .map(|(operator, _)| act.issue(operator.clone(), delegate));
            async move {
                let (_, step) = checked?;
                let Some(issue) = issue else {
                    return Err(ControlError::Forbidden {
                        reason: "login refused".into(),
                    });
                };
                issue(step).await
            }
            .into_actor(act)
        }))
    }
}

impl Supervisor {
    /// Commits a login's step (once: a replay loses the race) and signs a
    /// capability for `operator` (naming `delegate` as the node that may
    /// act for it, if any).
    fn issue(
        &self,
        operator: Operator,
        delegate: Option<swarm_protocol::NodeId>,
    ) -> impl FnOnce(
        u64,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Capability, ControlError>>>,
    > {
        let writes = self.writes.clone();
        let key = self.group_key();
        let term = self.raft.metrics().borrow().current_term;
        move |step| {
            Box::pin(async move {
                let forbid = |reason: String| ControlError::Forbidden { reason };
                match writes
                    .write(Command::TotpUsed {
                        serial: operator.serial,
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
                sign(key.as_ref(), term, operator, delegate)
            })
        }
    }

    /// Signs a capability for `operator` (no TOTP step: a delegation of a
    /// login already made).
    fn sign(
        &self,
        operator: Operator,
        delegate: Option<swarm_protocol::NodeId>,
    ) -> Result<Capability, ControlError> {
        let term = self.raft.metrics().borrow().current_term;
        sign(self.group_key().as_ref(), term, operator, delegate)
    }

    /// The operator a password login is for and the step of its code, if
    /// the password was right and the guard lets the code through. The
    /// refusal does not say which factor was wrong.
    fn check_password(
        &mut self,
        msg: &VerifyPassword,
        entry: Option<PasswordEntry>,
        password_ok: bool,
    ) -> Result<(Operator, u64), ControlError> {
        let revoked = entry
            .as_ref()
            .is_some_and(|e| self.read(|m| m.state.revoked().iter().any(|(s, _)| *s == e.serial)));
        let operator = match entry {
            Some(e) => Operator {
                node: e.node,
                serial: e.serial,
                name: msg.name.clone(),
                roles: e.roles,
                source: msg.source,
            },
            // An unknown name counts against its source address alone.
            None => Operator {
                node: swarm_protocol::NodeId::from_bytes([0; 16]),
                serial: 0,
                name: msg.name.clone(),
                roles: Vec::new(),
                source: msg.source,
            },
        };
        if revoked {
            return Err(ControlError::Forbidden {
                reason: "this operator's certificate is revoked".into(),
            });
        }
        let code = if password_ok && operator.serial != 0 {
            msg.code.as_str()
        } else {
            ""
        };
        self.check_code(&operator, code, "swarm.LoginPassword")
            .map(|step| (operator, step))
            .map_err(|e| match e {
                ControlError::Forbidden { reason } if reason.starts_with("wrong TOTP code") => {
                    ControlError::Forbidden {
                        reason: reason.replacen(
                            "wrong TOTP code",
                            "wrong name, password or TOTP code",
                            1,
                        ),
                    }
                }
                e => e,
            })
    }

    /// The step a login's code is for, if the guard lets it through.
    fn check_login(&mut self, login: &VerifyLogin) -> Result<u64, ControlError> {
        let serial = login.operator.serial;
        let revoked = self.read(|m| m.state.revoked().iter().any(|(s, _)| *s == serial));
        if revoked || self.mesh.is_revoked(serial) {
            let operator = &login.operator;
            self.mesh.audit(|| AuditRecord {
                at_ms: operators::unix_ms(),
                kind: AuditKind::LoginRefused,
                who: operator.name.clone(),
                serial,
                roles: operator.roles.clone(),
                source: operator.source.to_string(),
                tag: "swarm.Login".into(),
                target: String::new(),
                detail: "the certificate is revoked".into(),
            });
            return Err(ControlError::Forbidden {
                reason: "this operator's certificate is revoked".into(),
            });
        }
        self.check_code(&login.operator, &login.code, "swarm.Login")
    }

    /// The step `code` is for, if it is `operator`'s and the guard lets it
    /// through (an empty code never matches). Audited.
    fn check_code(
        &mut self,
        operator: &Operator,
        code: &str,
        tag: &str,
    ) -> Result<u64, ControlError> {
        self.leading()?;
        let totp = self.totp.clone().ok_or_else(|| ControlError::Forbidden {
            reason: "the head leader holds no TOTP secret (`totp` in its [head] configuration): operators cannot log in".into(),
        })?;
        let seed = operators::seed(&totp, operator.serial, &operator.name);
        let now = operators::unix_ms() / 1000;
        let step = if code.trim().is_empty() {
            None
        } else {
            operators::matching_step(&seed, code.trim(), now)
        };
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
            tag: tag.into(),
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

/// Signs a capability for `operator` under the group's `key`, issued now
/// for [`operators::SESSION`].
fn sign(
    key: Option<&swarm_protocol::capability::CapabilityKey>,
    term: u64,
    operator: Operator,
    delegate: Option<swarm_protocol::NodeId>,
) -> Result<Capability, ControlError> {
    let forbid = |reason: String| ControlError::Forbidden { reason };
    let key = key.ok_or_else(|| forbid("this head holds no TOTP secret".into()))?;
    let issued_ms = operators::unix_ms();
    let lifetime = u64::try_from(operators::SESSION.as_millis()).unwrap_or(u64::MAX);
    let claims = Claims {
        name: operator.name,
        serial: operator.serial,
        node: operator.node,
        roles: operator.roles,
        source: operator.source,
        term,
        issued_ms,
        expires_ms: issued_ms.saturating_add(lifetime),
        delegate,
    };
    key.sign(&claims).map_err(|e| forbid(e.to_string()))
}
