//! Operator logins on the head leader: the code checked against the
//! operator's seed (derived from the TOTP secret), at most once per step
//! (committed in the log), with lockouts ([`crate::operators::guard`])
//! committed in the log too.
//!
//! A password login (forwarded by a node's admin API) passes, before any
//! hashing: the leader's token bucket of its forwarding node and source,
//! the lockouts of its (name, source) and name, and a free slot of the
//! bounded pool of password checks (else it is refused at once as busy).
//! A name without a password is checked against a dummy hash of the same
//! cost. Every refusal answers [`LoginRefusal::Password`]; the audit
//! records what failed.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::Supervisor;
use crate::audit::{AuditKind, AuditRecord};
use crate::head::state::PasswordEntry;
use crate::head::state::{Applied, Command};
use crate::head::wire::operators::{Delegate, Operator, SetPassword, VerifyLogin, VerifyPassword};
use crate::head::wire::{ControlError, LoginRefusal};
use crate::operators::bucket::source_key;
use crate::operators::guard::{Lock, Refusal};
use crate::operators::{self, Capability, Claims};

/// A login's answer, to come.
type Answer = Pin<Box<dyn Future<Output = Result<Capability, ControlError>>>>;

impl Handler<VerifyLogin> for Supervisor {
    type Result = ResponseFuture<Result<Capability, ControlError>>;

    fn handle(&mut self, login: VerifyLogin, _: &mut Context<Self>) -> Self::Result {
        // Stamped from the operator's own link.
        if !operators::is_operator(&login.operator.roles) {
            return Box::pin(async { Err(ControlError::NotAnOperator) });
        }
        let (checked, decided) = self.check_login(&login);
        let commit = self.commit_lockouts(decided);
        let issue = self.issue(login.operator.clone(), None, "swarm.Login");
        Box::pin(async move {
            commit.await;
            issue(checked?).await
        })
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
            return Err(ControlError::NotAnOperator);
        }
        let serial = who.serial;
        if self.read(|m| m.state.revoked().iter().any(|(s, _)| *s == serial)) {
            return Err(ControlError::Login(LoginRefusal::Revoked));
        }
        self.audit.record(|| AuditRecord {
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
                return Err(ControlError::NotAnOperator);
            }
            msg.hash.check().map_err(|reason| refused(&reason))?;
            Ok(who)
        });
        if let Ok(who) = &checked {
            self.audit.record(|| AuditRecord {
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
        // argon2id takes ~30-60 ms and 19 MiB: on the pool's threads, at
        // most `login_pool` at once.
        let hashed = self.admit_password(&msg);
        let hashed = async move {
            let (entry, check) = hashed?;
            Ok((entry, check.await))
        };
        Box::pin(hashed.into_actor(self).then(move |hashed, act, _| {
            let answer: Answer = match hashed {
                Ok((entry, ok)) => act.finish_password(&msg, entry, ok),
                Err(e) => Box::pin(std::future::ready(Err(e))),
            };
            answer.into_actor(act)
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
        tag: &'static str,
    ) -> impl FnOnce(u64) -> Answer {
        let writes = self.writes.clone();
        let key = self.group_key();
        let term = self.raft.metrics().borrow().current_term;
        let audit = self.audit.clone();
        move |step| {
            Box::pin(async move {
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
                        audit.record(|| login_record(&operator, tag, Err(&Refusal::Replayed), ""));
                        return Err(ControlError::Login(told(&Refusal::Replayed)));
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

    /// What a password login must pass before its password is hashed:
    /// this head leads and holds the TOTP secret, the bucket of its
    /// forwarding node and source has a token, neither its (name, source)
    /// nor its name is locked out, and the pool has a free check. Answers
    /// the name's password entry (if any) and the check, under way.
    fn admit_password(
        &mut self,
        msg: &VerifyPassword,
    ) -> Result<(Option<PasswordEntry>, impl Future<Output = bool> + 'static), ControlError> {
        self.leading()?;
        if self.totp.is_none() {
            return Err(no_totp());
        }
        if !crate::operators::password::login_fits(&msg.name, &msg.password, &msg.code) {
            // Nothing of it is kept: not the name as a key, nor in full in
            // the audit.
            let mut operator = password_operator(msg, None);
            operator.name = operator.name.chars().take(64).collect();
            self.audit.record(|| {
                login_record(
                    &operator,
                    "swarm.LoginPassword",
                    Err(&Refusal::Malformed),
                    "",
                )
            });
            return Err(refused());
        }
        let entry = self.read(|m| m.state.password(&msg.name).cloned());
        let operator = password_operator(msg, entry.as_ref());
        let refuse = |act: &Self, refusal: Refusal| {
            act.audit
                .record(|| login_record(&operator, "swarm.LoginPassword", Err(&refusal), ""));
            tracing::warn!(operator = %operator.name, source = %operator.source, %refusal, "operator password login refused");
            match refusal {
                Refusal::Limited(wait) | Refusal::Busy(wait) => ControlError::Busy {
                    retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1),
                },
                _ => refused(),
            }
        };
        let via = msg.via.unwrap_or(self.id);
        if let Err(wait) = self
            .login_buckets
            .take(&(via, source_key(msg.source)), Instant::now())
        {
            return Err(refuse(self, Refusal::Limited(wait)));
        }
        if let Some(left) = self.locked(&Lock::password(&msg.name, msg.source)) {
            return Err(refuse(self, Refusal::Locked(left)));
        }
        let password = zeroize::Zeroizing::new(msg.password.clone());
        let hash = entry.as_ref().map(|e| e.hash.clone());
        match self.login_pool.check(hash, password) {
            Ok(check) => Ok((entry, check)),
            Err(_) => Err(refuse(self, Refusal::Busy(BUSY_RETRY))),
        }
    }

    /// A password login after its hash was checked (`password_ok`): the
    /// code, the guard's count, the audit record, the lockouts it decided
    /// committed, then the capability or [`LoginRefusal::Password`].
    fn finish_password(
        &mut self,
        msg: &VerifyPassword,
        entry: Option<PasswordEntry>,
        password_ok: bool,
    ) -> Answer {
        let now = Instant::now();
        let locks = Lock::password(&msg.name, msg.source);
        let operator = password_operator(msg, entry.as_ref());
        let revoked = entry
            .as_ref()
            .is_some_and(|e| self.read(|m| m.state.revoked().iter().any(|(s, _)| *s == e.serial)));
        let outcome = match (&entry, &self.totp) {
            (_, None) => return Box::pin(std::future::ready(Err(no_totp()))),
            (None, _) => Err(Refusal::UnknownName),
            (Some(_), _) if !password_ok => Err(Refusal::WrongPassword),
            (Some(_), _) if revoked || self.mesh.is_revoked(operator.serial) => {
                Err(Refusal::Revoked)
            }
            (Some(_), Some(totp)) => self.code_step(totp, &operator, &msg.code, &locks, now),
        };
        let decided = match &outcome {
            Ok(_) => {
                self.guard.succeed(&locks);
                Vec::new()
            }
            Err(_) => self.guard.fail(&locks, now),
        };
        let then = lockout_note(&decided);
        self.audit.record(|| {
            login_record(
                &operator,
                "swarm.LoginPassword",
                outcome.as_ref().map(|s| *s),
                &then,
            )
        });
        if let Err(refusal) = &outcome {
            tracing::warn!(operator = %operator.name, source = %operator.source, %refusal, "operator password login refused");
        }
        let commit = self.commit_lockouts(decided);
        // The admin API that forwarded it acts for the operator.
        let delegate = Some(msg.via.unwrap_or(self.id));
        let issue = self.issue(operator, delegate, "swarm.LoginPassword");
        Box::pin(async move {
            commit.await;
            let step = outcome.map_err(|_| refused())?;
            // Whatever refused it (a used code, a signing failure), a
            // password login is told only that it was refused.
            issue(step).await.map_err(|e| match e {
                ControlError::Login(_) | ControlError::Forbidden { .. } => refused(),
                e => e,
            })
        })
    }

    /// The step a certificate+TOTP login's code is for, if the guard lets
    /// it through (an empty code never matches); audited. Answers the
    /// lockouts the guard decided, to commit.
    fn check_login(
        &mut self,
        login: &VerifyLogin,
    ) -> (Result<u64, ControlError>, Vec<(Lock, Duration)>) {
        let operator = &login.operator;
        let serial = operator.serial;
        let revoked = self.read(|m| m.state.revoked().iter().any(|(s, _)| *s == serial));
        if revoked || self.mesh.is_revoked(serial) {
            self.audit
                .record(|| login_record(operator, "swarm.Login", Err(&Refusal::Revoked), ""));
            return (
                Err(ControlError::Login(told(&Refusal::Revoked))),
                Vec::new(),
            );
        }
        if let Err(e) = self.leading() {
            return (Err(e), Vec::new());
        }
        let Some(totp) = self.totp.clone() else {
            return (Err(no_totp()), Vec::new());
        };
        let now = Instant::now();
        let locks = [Lock::Certificate(serial)];
        let outcome = match self.locked(&locks) {
            Some(left) => Err(Refusal::Locked(left)),
            None => self.code_step(&totp, operator, &login.code, &locks, now),
        };
        let decided = match &outcome {
            Ok(_) => {
                self.guard.succeed(&locks);
                Vec::new()
            }
            Err(Refusal::Locked(_)) => Vec::new(),
            Err(_) => self.guard.fail(&locks, now),
        };
        // What the operator is told: how many tries are left, or the
        // lockout that failure started.
        let outcome = match (outcome, decided.first()) {
            (Err(Refusal::Wrong { .. } | Refusal::Replayed), Some((_, length))) => {
                Err(Refusal::Locked(*length))
            }
            (Err(Refusal::Wrong { .. }), None) => Err(Refusal::Wrong {
                left: self.guard.left(&locks[0], now),
            }),
            (outcome, _) => outcome,
        };
        self.audit.record(|| {
            login_record(
                operator,
                "swarm.Login",
                outcome.as_ref().map(|s| *s),
                &lockout_note(&decided),
            )
        });
        let checked = outcome.map_err(|refusal| {
            tracing::warn!(operator = %operator.name, source = %operator.source, %refusal, "operator login refused");
            ControlError::Login(told(&refusal))
        });
        (checked, decided)
    }

    /// The step `code` is for, if it is `operator`'s and its step was not
    /// used yet (not counted: the caller tells the guard).
    fn code_step(
        &self,
        totp: &[u8; 32],
        operator: &Operator,
        code: &str,
        locks: &[Lock],
        now: Instant,
    ) -> Result<u64, Refusal> {
        let seed = operators::seed(totp, operator.serial, &operator.name);
        let step = if code.trim().is_empty() {
            None
        } else {
            operators::matching_step(&seed, code.trim(), operators::unix_ms() / 1000)
        };
        let last = self.read(|m| m.state.totp_step(operator.serial));
        match step {
            None => Err(Refusal::Wrong {
                left: locks
                    .iter()
                    .map(|l| self.guard.left(l, now))
                    .min()
                    .unwrap_or(0)
                    .saturating_sub(1),
            }),
            Some(step) if last.is_some_and(|last| step <= last) => Err(Refusal::Replayed),
            Some(step) => Ok(step),
        }
    }

    /// How much longer the longest lockout of `locks` lasts, as the log
    /// (or this leader's guard, for one not applied yet) says.
    fn locked(&self, locks: &[Lock]) -> Option<Duration> {
        let now = Instant::now();
        let now_ms = operators::unix_ms();
        locks
            .iter()
            .filter_map(|lock| {
                let logged = self
                    .read(|m| m.state.locked_until(lock, now_ms))
                    .map(|until| Duration::from_millis(until.saturating_sub(now_ms)));
                logged.max(self.guard.locked(lock, now))
            })
            .max()
    }

    /// Commits the lockouts `decided` (so a new leader keeps them); a
    /// failed write is logged (this leader's guard still holds them).
    fn commit_lockouts(
        &self,
        decided: Vec<(Lock, Duration)>,
    ) -> impl Future<Output = ()> + 'static {
        let writes = self.writes.clone();
        let now_ms = operators::unix_ms();
        async move {
            let mut commands: Vec<Command> = decided
                .into_iter()
                .map(|(lock, length)| Command::Lockout {
                    lock,
                    until_ms: now_ms
                        .saturating_add(u64::try_from(length.as_millis()).unwrap_or(u64::MAX)),
                    now_ms,
                })
                .collect();
            let command = match commands.len() {
                0 => return,
                1 => commands.remove(0),
                _ => Command::Batch(commands),
            };
            if let Err(e) = writes.write(command).await {
                tracing::warn!(error = %e, "a login lockout was not committed");
            }
        }
    }
}

/// How long a login refused as busy waits before asking again.
const BUSY_RETRY: Duration = Duration::from_secs(1);

/// The refusal of a password login, whatever failed.
fn refused() -> ControlError {
    ControlError::Login(LoginRefusal::Password)
}

fn no_totp() -> ControlError {
    ControlError::Login(LoginRefusal::NoSecret)
}

/// What an operator is told of a certificate login's refusal (a
/// password login is told [`LoginRefusal::Password`] whatever it was).
fn told(refusal: &Refusal) -> LoginRefusal {
    match refusal {
        Refusal::Wrong { left } => LoginRefusal::WrongCode { left: *left },
        Refusal::Replayed => LoginRefusal::CodeUsed,
        Refusal::Locked(left) => LoginRefusal::LockedOut {
            retry_after_s: left.as_secs().max(1),
        },
        Refusal::Revoked => LoginRefusal::Revoked,
        _ => LoginRefusal::Password,
    }
}

/// Who a password login is for, as far as the audit goes: the entry's
/// certificate, or the name alone (serial 0) when there is none.
fn password_operator(msg: &VerifyPassword, entry: Option<&PasswordEntry>) -> Operator {
    match entry {
        Some(e) => Operator {
            node: e.node,
            serial: e.serial,
            name: msg.name.clone(),
            roles: e.roles.clone(),
            source: msg.source,
        },
        None => Operator {
            node: swarm_protocol::NodeId::from_bytes([0; 16]),
            serial: 0,
            name: msg.name.clone(),
            roles: Vec::new(),
            source: msg.source,
        },
    }
}

/// What the audit adds about lockouts a failure started.
fn lockout_note(decided: &[(Lock, Duration)]) -> String {
    decided
        .iter()
        .map(|(lock, length)| {
            let what = match lock {
                Lock::Certificate(_) => "the certificate login".to_owned(),
                Lock::Source { source, .. } => format!("the password login from {source}"),
                Lock::Name(_) => "the password login from everywhere".to_owned(),
            };
            format!("; locked {what} for {} s", length.as_secs())
        })
        .collect()
}

/// The audit record of a login: accepted (`Ok(step)`) or why refused.
fn login_record(
    operator: &Operator,
    tag: &str,
    outcome: Result<u64, &Refusal>,
    note: &str,
) -> AuditRecord {
    let (kind, detail) = match outcome {
        Ok(_) => (AuditKind::Login, "code accepted".to_owned()),
        Err(refusal) => (AuditKind::LoginRefused, refusal.to_string()),
    };
    AuditRecord {
        at_ms: operators::unix_ms(),
        kind,
        who: operator.name.clone(),
        serial: operator.serial,
        roles: operator.roles.clone(),
        source: operator.source.to_string(),
        tag: tag.into(),
        target: String::new(),
        detail: format!("{detail}{note}"),
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
    let key = key.ok_or(ControlError::Login(LoginRefusal::NoSecret))?;
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::operators::guard::PASSWORD_REFUSED;

    #[test]
    fn a_certificate_login_is_told_its_cause_and_a_password_login_never_which_part_failed() {
        assert_eq!(
            told(&Refusal::Wrong { left: 3 }),
            LoginRefusal::WrongCode { left: 3 }
        );
        assert_eq!(told(&Refusal::Replayed), LoginRefusal::CodeUsed);
        assert_eq!(
            told(&Refusal::Locked(Duration::from_millis(300))),
            LoginRefusal::LockedOut { retry_after_s: 1 }
        );
        assert_eq!(told(&Refusal::Revoked), LoginRefusal::Revoked);
        for hidden in [
            Refusal::WrongPassword,
            Refusal::UnknownName,
            Refusal::Malformed,
        ] {
            assert_eq!(told(&hidden), LoginRefusal::Password, "{hidden}");
        }
        // The admin API answers a refused password login with this text
        // whether the head or the API itself refused it.
        assert_eq!(refused().to_string(), PASSWORD_REFUSED);
    }
}
