//! What a message may reach, declared with its tag: every
//! [`RemoteMessage`](super::RemoteMessage) has an [`Access`] class (user
//! messages default to [`Access::User`]; each system message names its
//! own where it is defined, with `system_message!`). The policy's defaults
//! and the audit decision are derived from these declarations
//! (`policy`); no list elsewhere repeats them.

use serde::{Deserialize, Serialize};

/// Certificate roles that make a node.
pub const NODE_ROLES: &[&str] = &["head", "worker"];
/// Certificate roles that make an operator (a person, with a second factor).
pub const OPERATOR_ROLES: &[&str] = &["operator", "admin"];

/// Who may send a message by default, and whether an operator's use of it
/// is audited. "Operators" always means operator certificates whose link
/// (or delegated call) carries a capability from a login: without one, a
/// certificate's `operator` and `admin` roles count for nothing, whatever
/// other roles it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Access {
    /// A user message: node certificates (`head`, `worker`) by default;
    /// policy rules may allow other roles or deny.
    User,
    /// Logging in: any certificate reaches it before a second factor.
    Login,
    /// Head certificates only, whatever a rule allows (Raft, a host's
    /// start and stop orders).
    Heads,
    /// Node certificates only, whatever a rule allows (renewals, a node
    /// acting for an operator, tasks between nodes).
    Nodes,
    /// A read-only view: nodes, and operators.
    Read,
    /// Operators only (inspection of actors' state and traces).
    Operators,
    /// An operator's own account (its password, delegating its login to a
    /// node's admin API): operators only, over their own link, never
    /// through a node acting for them.
    Account,
    /// Changes the cluster: nodes, and admin operators; audited when an
    /// operator sends it.
    Command,
    /// Changes trust or another node's actors: heads and admin operators
    /// only, whatever a rule allows; audited when an operator sends it.
    Admin,
}

impl Access {
    /// Every class, for tables and tests.
    pub const ALL: [Access; 9] = [
        Access::User,
        Access::Login,
        Access::Heads,
        Access::Nodes,
        Access::Read,
        Access::Operators,
        Access::Account,
        Access::Command,
        Access::Admin,
    ];

    /// Whether an operator sending it is written to the audit log.
    pub fn audited(self) -> bool {
        matches!(self, Access::Command | Access::Admin)
    }

    /// Whether a policy rule can let more roles in than the class does.
    pub fn widened_by_rules(self) -> bool {
        matches!(
            self,
            Access::User | Access::Read | Access::Operators | Access::Command
        )
    }

    /// The class's name, as tables show it.
    pub fn name(self) -> &'static str {
        match self {
            Access::User => "user",
            Access::Login => "login",
            Access::Heads => "heads",
            Access::Nodes => "nodes",
            Access::Read => "read",
            Access::Operators => "operators",
            Access::Account => "account",
            Access::Command => "command",
            Access::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Declares system messages with their tags and access classes:
/// `system_message!(Login => "swarm.Login", Login; ...)`.
#[macro_export]
#[doc(hidden)]
macro_rules! system_message {
    ($($ty:ty => $tag:literal, $access:ident);+ $(;)?) => {
        $(impl $crate::RemoteMessage for $ty {
            const TAG: &'static str = $tag;
            const ACCESS: $crate::Access = $crate::Access::$access;
        })+
    };
}
