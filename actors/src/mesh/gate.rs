//! The door operator sessions come through. An operator node presents its
//! capability as the first message on every link; the link's reader hands
//! it to the [`SessionGate`] the node installed (the operators room owns
//! the decision: keys, signatures, windows) and keeps only the answer, the
//! session's end, so the messages after it find the session in place.

use swarm_protocol::Target;

use crate::directory::Caller;

/// Decides operator sessions for the links of one node.
pub(crate) trait SessionGate: Send + Sync {
    /// Whether a tell `tag` to `to` presents a session (the reader then
    /// hands it to [`SessionGate::check`] instead of dispatching it).
    fn presents(&self, to: &Target<'_>, tag: &str) -> bool;

    /// Checks a presentation's `body` from `caller`; `revoked` says
    /// whether a certificate serial is revoked here.
    ///
    /// # Errors
    ///
    /// [`Unchecked::NotYet`] if it cannot be checked yet (the reader keeps
    /// it and asks again on the next message); [`Unchecked::Refused`] with
    /// the reason it does not hold.
    fn check(
        &self,
        caller: &Caller,
        body: &[u8],
        revoked: &dyn Fn(u64) -> bool,
    ) -> Result<u64, Unchecked>;
}

/// Why a presentation opened no session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unchecked {
    /// This node cannot check it yet (it has no key from the head group).
    NotYet,
    /// It does not hold: why.
    Refused(String),
}
