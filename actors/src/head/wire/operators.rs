//! What operators and nodes send about logins and sessions (answered by
//! the head leader, or by a node's session actor).

use actix::Message;
use serde::{Deserialize, Serialize};
use swarm_protocol::NodeId;

use super::ControlError;
use crate::operators::Capability;

/// An operator asks a member which nodes are heads (before its login,
/// so over a link without one): it then logs in with the head leader
/// itself, over its own link ([`VerifyLogin`]). A member that lies can
/// only make the login fail: the operator sends its code only to a node
/// whose certificate has the head role.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<Vec<(NodeId, std::net::SocketAddr)>, ControlError>")]
pub(crate) struct FindHeads;

/// Who is logging in, as the member's link authenticated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Operator {
    pub(crate) node: NodeId,
    pub(crate) serial: u64,
    pub(crate) name: String,
    pub(crate) roles: Vec<String>,
    pub(crate) source: std::net::IpAddr,
}

/// An operator logs in with a TOTP code, sent to the head leader over its
/// own link: who it is comes from that link's certificate (stamped on
/// arrival), whatever the body says, so only the holder of an operator's
/// private key can try (or fail) that operator's codes.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<Capability, ControlError>")]
pub(crate) struct VerifyLogin {
    /// Set from the link.
    pub(crate) operator: Operator,
    pub(crate) code: String,
}

impl crate::directory::StampCaller for VerifyLogin {
    fn stamp_caller(&mut self, caller: &crate::directory::Caller) {
        self.operator = Operator::of(caller);
    }
}

/// A logged-in operator asks the head leader, over its own link, for a
/// capability that lets `node` (whose admin API it logs in to) act for it.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<Capability, ControlError>")]
pub(crate) struct Delegate {
    pub(crate) node: NodeId,
    /// Set from the link.
    #[serde(default)]
    pub(crate) who: Option<Operator>,
}

/// An operator sets its own admin-API password (through the control
/// plane, after logging in): the hash only, made where it was typed.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<(), ControlError>")]
pub(crate) struct SetPassword {
    pub(crate) hash: crate::operators::password::PasswordHash,
    /// Set from the link.
    #[serde(default)]
    pub(crate) who: Option<Operator>,
}

/// An operator asks a node for a session of its admin API with a
/// capability naming that node as its delegate ([`Delegate`]): the
/// certificate login of the HTTP side.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<crate::operators::AdminSession, ControlError>")]
pub(crate) struct AdminLogin {
    pub(crate) capability: Capability,
    /// Set from the link.
    #[serde(default)]
    pub(crate) who: Option<Operator>,
}

impl crate::directory::StampCaller for AdminLogin {
    fn stamp_caller(&mut self, caller: &crate::directory::Caller) {
        self.who = Some(Operator::of(caller));
    }
}

/// A node's admin API forwards a password login to the head leader; the
/// capability it answers names that node as the operator's delegate.
#[derive(Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<Capability, ControlError>")]
pub(crate) struct VerifyPassword {
    pub(crate) name: String,
    pub(crate) password: String,
    pub(crate) code: String,
    pub(crate) source: std::net::IpAddr,
    /// The forwarding node, set from the link (`None`: the leader itself).
    #[serde(default)]
    pub(crate) via: Option<NodeId>,
}

impl std::fmt::Debug for VerifyPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyPassword")
            .field("name", &self.name)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Drop for VerifyPassword {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.password);
    }
}

impl crate::directory::StampCaller for Delegate {
    fn stamp_caller(&mut self, caller: &crate::directory::Caller) {
        self.who = Some(Operator::of(caller));
    }
}

impl crate::directory::StampCaller for VerifyPassword {
    fn stamp_caller(&mut self, caller: &crate::directory::Caller) {
        self.via = Some(caller.node);
    }
}

impl crate::directory::StampCaller for SetPassword {
    fn stamp_caller(&mut self, caller: &crate::directory::Caller) {
        self.who = Some(Operator::of(caller));
    }
}

impl Operator {
    pub(crate) fn of(caller: &crate::directory::Caller) -> Self {
        Self {
            node: caller.node,
            serial: caller.serial,
            name: caller.name.to_string(),
            roles: caller.roles.to_vec(),
            source: caller.addr.ip(),
        }
    }
}

crate::system_message! {
    FindHeads => "swarm.FindHeads", Login;
    VerifyLogin => "swarm.VerifyLogin", Login;
    Delegate => "swarm.Delegate", Account;
    SetPassword => "swarm.SetPassword", Account;
    AdminLogin => "swarm.AdminLogin", Login;
    VerifyPassword => "swarm.VerifyPassword", Nodes;
}
