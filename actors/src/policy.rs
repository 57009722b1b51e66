//! Who may send what to whom: the receiving node checks every tell and ask
//! against its [`Policy`] before the body is decoded. A refused ask gets
//! [`RemoteError::Forbidden`] (typed at the sender as
//! [`AskError::Forbidden`](crate::AskError::Forbidden)); a refused tell is
//! dropped; both are counted and logged at the receiver. Each link caches
//! its decisions per (target, tag), so a stream of messages costs one
//! hash lookup each.
//!
//! # Rules
//!
//! A policy file (TOML) holds allow and deny rules, NATS-style. A rule
//! matches a message when one of the sender certificate's roles is in
//! `roles` (`"*"`: any), the target matches one of `to`, and the message
//! tag one of `tags` (both default to everything). **Deny wins**: a
//! message a deny rule matches is refused whatever allows it; else a
//! matching allow rule lets it through; else the defaults decide.
//!
//! ```toml
//! [[allow]]                       # billing clients reach the billing service only
//! roles = ["billing-client"]
//! to = ["service:billing"]
//!
//! [[deny]]                        # no worker may reset a ledger
//! roles = ["worker"]
//! to = ["ledger-*"]
//! tags = ["demo.Reset"]
//! ```
//!
//! Patterns are dot-separated tokens: `*` matches one token, `>` (last)
//! one or more, and a token ending in `*` matches by prefix (`ledger-*`).
//! A target is its actor name (`swarm.tasks`, `ledger-1`) or, prefixed
//! with `service:`, a service its actor serves on this node.
//!
//! # Defaults
//!
//! Every message declares its [`Access`] class with its tag (user messages
//! are [`Access::User`]); the defaults follow from it:
//!
//! - `user`: node certificates (`head`, `worker`).
//! - `read`: nodes and operators; `operators`: operators only;
//!   `account`: an operator's own link only (never delegated).
//! - `command`: nodes and `admin` operators.
//! - `login`: any certificate (an operator's way to its second factor).
//! - `heads`, `nodes`, `admin`, `account`: head certificates; node
//!   certificates; heads and `admin` operators; operators. These hold
//!   **whatever a rule allows**:
//!   an operator certificate never hosts an actor or votes, a worker never
//!   orders another node's host.
//!
//! A certificate's `operator` and `admin` roles count only once its link
//! (or delegated call) carries a login's capability, whatever other roles
//! it has: a `worker,operator` certificate without a login is a worker.
//! Allow rules widen `user`, `read`, `operators` and `command`; deny rules
//! narrow everything.

use std::collections::HashMap;

use serde::Deserialize;
use swarm_protocol::RemoteError;

pub use crate::directory::{Access, NODE_ROLES, OPERATOR_ROLES};

mod link;
pub(crate) use link::{LinkPolicy, Refusal};

/// Whether certificate `roles` include an operator role (`operator` or
/// `admin`): those count only after a login, whatever other roles the
/// certificate has.
pub fn is_operator(roles: &[String]) -> bool {
    roles.iter().any(|r| OPERATOR_ROLES.contains(&r.as_str()))
}

/// Most rules a policy holds.
pub const MAX_RULES: usize = 10_000;
/// Decisions a link remembers before it starts over.
const CACHE: usize = 1_024;

/// One rule as written in a policy file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Sender roles it applies to (`"*"`: any).
    pub roles: Vec<String>,
    /// Target patterns (default: any).
    #[serde(default = "any")]
    pub to: Vec<String>,
    /// Tag patterns (default: any).
    #[serde(default = "any")]
    pub tags: Vec<String>,
}

fn any() -> Vec<String> {
    vec![">".to_owned()]
}

/// A policy file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Allow rules.
    #[serde(default)]
    pub allow: Vec<Rule>,
    /// Deny rules (win over allow).
    #[serde(default)]
    pub deny: Vec<Rule>,
}

/// Why a policy was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A pattern is malformed.
    #[error("{rule}: pattern {pattern:?} {problem}")]
    Pattern {
        /// Which rule, e.g. `allow[2].to`.
        rule: String,
        /// The pattern.
        pattern: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A rule lists no roles.
    #[error("{0}: a rule needs at least one role (\"*\" for any)")]
    NoRoles(String),
    /// Too many rules.
    #[error("{0} rules; a policy holds at most {MAX_RULES}")]
    TooMany(usize),
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// `service:` patterns match the services of the target.
    service: bool,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Exact(String),
    Prefix(String),
    One,
    Rest,
}

impl Pattern {
    fn parse(rule: &str, text: &str) -> Result<Self, PolicyError> {
        let bad = |problem| PolicyError::Pattern {
            rule: rule.to_owned(),
            pattern: text.to_owned(),
            problem,
        };
        let (service, body) = match text.strip_prefix("service:") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if body.is_empty() {
            return Err(bad("is empty"));
        }
        let parts: Vec<&str> = body.split('.').collect();
        let mut tokens = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            tokens.push(match *part {
                "" => return Err(bad("has an empty token")),
                ">" if i + 1 == parts.len() => Token::Rest,
                ">" => return Err(bad("has `>` before its last token")),
                "*" => Token::One,
                p if p.ends_with('*') && !p[..p.len() - 1].contains(['*', '>']) => {
                    Token::Prefix(p[..p.len() - 1].to_owned())
                }
                p if p.contains(['*', '>']) => {
                    return Err(bad("uses `*` or `>` inside a token (only `prefix*`)"))
                }
                p => Token::Exact(p.to_owned()),
            });
        }
        Ok(Self { service, tokens })
    }

    fn matches(&self, subject: &str) -> bool {
        let mut parts = subject.split('.');
        for token in &self.tokens {
            let Some(part) = parts.next() else {
                return false;
            };
            match token {
                Token::Rest => return true,
                Token::One => {}
                Token::Exact(t) => {
                    if t != part {
                        return false;
                    }
                }
                Token::Prefix(p) => {
                    if !part.starts_with(p.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }

    fn matches_target(&self, target: &Target<'_>) -> bool {
        if self.service {
            target.services.iter().any(|s| self.matches(s))
        } else {
            self.matches(target.name)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Compiled {
    roles: Vec<String>,
    to: Vec<Pattern>,
    tags: Vec<Pattern>,
}

impl Compiled {
    fn new(rule: &Rule, at: &str) -> Result<Self, PolicyError> {
        if rule.roles.is_empty() {
            return Err(PolicyError::NoRoles(at.to_owned()));
        }
        let compile = |field: &str, patterns: &[String]| {
            patterns
                .iter()
                .map(|p| Pattern::parse(&format!("{at}.{field}"), p))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            roles: rule.roles.clone(),
            to: compile("to", &rule.to)?,
            tags: compile("tags", &rule.tags)?,
        })
    }

    fn matches(&self, roles: &[String], target: &Target<'_>, tag: &str) -> bool {
        self.roles
            .iter()
            .any(|r| r == "*" || roles.iter().any(|have| have == r))
            && self.to.iter().any(|p| p.matches_target(target))
            && self.tags.iter().any(|p| p.matches(tag))
    }
}

/// What a message is sent to, as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The actor's name.
    pub name: &'a str,
    /// The services it serves on this node.
    pub services: &'a [String],
    /// The access class the message's type declares.
    pub access: Access,
}

/// A node's policy: its rules and the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    allow: Vec<Compiled>,
    deny: Vec<Compiled>,
    rules: usize,
}

fn has(roles: &[String], any_of: &[&str]) -> bool {
    roles.iter().any(|r| any_of.contains(&r.as_str()))
}

impl Policy {
    /// Compiles a policy file's rules.
    ///
    /// # Errors
    ///
    /// If a rule has no roles or a malformed pattern, or there are too many.
    pub fn new(file: &PolicyFile) -> Result<Self, PolicyError> {
        let count = file.allow.len() + file.deny.len();
        if count > MAX_RULES {
            return Err(PolicyError::TooMany(count));
        }
        let compile = |kind: &str, rules: &[Rule]| {
            rules
                .iter()
                .enumerate()
                .map(|(i, r)| Compiled::new(r, &format!("{kind}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            allow: compile("allow", &file.allow)?,
            deny: compile("deny", &file.deny)?,
            rules: count,
        })
    }

    /// This policy with `more` rules after its own.
    ///
    /// # Errors
    ///
    /// As [`Policy::new`].
    pub fn and(mut self, more: &PolicyFile) -> Result<Self, PolicyError> {
        let more = Policy::new(more)?;
        self.allow.extend(more.allow);
        self.deny.extend(more.deny);
        self.rules += more.rules;
        if self.rules > MAX_RULES {
            return Err(PolicyError::TooMany(self.rules));
        }
        Ok(self)
    }

    /// How many rules it holds.
    pub fn rules(&self) -> usize {
        self.rules
    }

    /// Decides whether a sender whose certificate has `roles` may send
    /// `tag` to `target`. `logged_in` says whether the sender proved a
    /// second factor (a capability on its link or delegated call): without
    /// it, `operator` and `admin` count for nothing.
    ///
    /// # Errors
    ///
    /// [`RemoteError::Forbidden`] with the reason.
    pub fn decide(
        &self,
        roles: &[String],
        logged_in: bool,
        target: &Target<'_>,
        tag: &str,
    ) -> Result<(), RemoteError> {
        if logged_in || !has(roles, OPERATOR_ROLES) {
            return self.decide_as(roles, target, tag);
        }
        let node_roles: Vec<String> = roles
            .iter()
            .filter(|r| !OPERATOR_ROLES.contains(&r.as_str()))
            .cloned()
            .collect();
        match self.decide_as(&node_roles, target, tag) {
            Ok(()) => Ok(()),
            Err(refused) => {
                if self.decide_as(roles, target, tag).is_ok() {
                    Err(RemoteError::Forbidden {
                        reason: format!(
                            "{tag}: an operator certificate needs a second factor: log in first (swarm login, or --totp CODE)"
                        ),
                    })
                } else {
                    Err(refused)
                }
            }
        }
    }

    /// Decides for roles that count as they are.
    fn decide_as(
        &self,
        roles: &[String],
        target: &Target<'_>,
        tag: &str,
    ) -> Result<(), RemoteError> {
        let forbid = |reason: String| Err(RemoteError::Forbidden { reason });
        let node = has(roles, NODE_ROLES);
        let head = has(roles, &["head"]);
        let operator = has(roles, OPERATOR_ROLES);
        let admin = has(roles, &["admin"]);
        let access = target.access;
        match access {
            Access::Heads if !head => {
                return forbid(format!("{tag} is for head certificates only"))
            }
            Access::Nodes if !node => {
                return forbid(format!(
                    "{tag} is for node certificates (head or worker) only"
                ))
            }
            Access::Account if !operator => {
                return forbid(format!("{tag} is for an operator's own link only"))
            }
            Access::Admin if !(head || admin) => {
                return forbid(format!("{tag} is for admin operators (and heads) only"))
            }
            _ => {}
        }
        if let Some(i) = self.deny.iter().position(|r| r.matches(roles, target, tag)) {
            return forbid(format!(
                "{tag} to {} is denied by policy rule deny[{i}]",
                target.name
            ));
        }
        if !access.widened_by_rules() {
            // The class's own check above decided.
            return Ok(());
        }
        if self.allow.iter().any(|r| r.matches(roles, target, tag)) {
            return Ok(());
        }
        let allowed = match access {
            Access::User => node,
            Access::Read => node || operator,
            Access::Operators => operator,
            Access::Command => node || admin,
            Access::Login | Access::Heads | Access::Nodes | Access::Account | Access::Admin => true,
        };
        if allowed {
            return Ok(());
        }
        forbid(match access {
            Access::User => format!(
                "user actor {} takes messages from head and worker certificates (roles {roles:?}; a policy rule can allow more)",
                target.name
            ),
            Access::Command if operator => {
                format!("{tag} changes the cluster: only an admin operator may send it")
            }
            Access::Operators => format!("{tag} is for operators only (roles {roles:?})"),
            Access::Read => format!("{tag} is for nodes and operators (roles {roles:?})"),
            _ => format!("{tag} is for nodes and admin operators (roles {roles:?})"),
        })
    }
}

/// A link's remembered decisions, per (target, tag, logged in), for one
/// generation of the directory (a change of services or actors starts
/// over).
#[derive(Debug, Default)]
pub(crate) struct Decisions {
    generation: u64,
    last: Option<(Key, Decision)>,
    map: HashMap<Key, Decision>,
}

/// Target name, tag, and whether the sender was logged in.
type Key = (String, String, bool);
/// The class the message declared, or why it was refused.
pub(crate) type Decision = Result<Access, RemoteError>;

impl Decisions {
    /// The remembered decision, or `decide()`'s, remembered. The bool says
    /// whether it was decided now (log refusals once per link and key).
    pub(crate) fn get(
        &mut self,
        generation: u64,
        name: &str,
        tag: &str,
        logged_in: bool,
        decide: impl FnOnce() -> Decision,
    ) -> (Decision, bool) {
        if generation != self.generation {
            self.generation = generation;
            self.last = None;
            self.map.clear();
        }
        if let Some(((n, t, l), d)) = &self.last {
            if n == name && t == tag && *l == logged_in {
                return (d.clone(), false);
            }
        }
        let key = (name.to_owned(), tag.to_owned(), logged_in);
        if let Some(d) = self.map.get(&key) {
            let d = d.clone();
            self.last = Some((key, d.clone()));
            return (d, false);
        }
        let d = decide();
        if self.map.len() >= CACHE {
            self.map.clear();
        }
        self.map.insert(key.clone(), d.clone());
        self.last = Some((key, d.clone()));
        (d, true)
    }
}

#[cfg(test)]
mod tests;
