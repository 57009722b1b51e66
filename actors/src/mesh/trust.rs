//! What the mesh holds for trust: revocations, which peers proved a head
//! certificate, and the envelope an operator node sends first on every
//! link (operators' sessions themselves are decided through the
//! [`SessionGate`](super::SessionGate)). Identity here comes from certificates and signed
//! capabilities, never from what a peer says about itself.

use swarm_protocol::NodeId;

use super::Mesh;
use crate::error::AskError;

impl Mesh {
    /// Whether `node`'s certificate, as its link proved it, has the `head`
    /// role (dialing it if there is no link). A node that does not is
    /// counted as a false claim: only a head certificate answers as a head.
    ///
    /// # Errors
    ///
    /// [`AskError::Unreachable`] if no link can be made.
    pub(crate) async fn certified_head(&self, node: NodeId) -> Result<bool, AskError> {
        if node == self.id() {
            return Ok(self
                .handshake()
                .cert
                .body()
                .roles
                .iter()
                .any(|r| r == "head"));
        }
        let head = self.link(node).await?.peer_has_role("head");
        if !head {
            self.count_false_claim();
        }
        Ok(head)
    }

    /// Whether a live link shows `node`'s certificate lacks the `head`
    /// role (no link: not known yet).
    pub(crate) fn known_not_head(&self, node: NodeId) -> bool {
        self.live_link(node)
            .is_some_and(|l| !l.peer_has_role("head"))
    }

    /// Counts a claim a certificate does not back.
    pub(crate) fn count_false_claim(&self) {
        self.shared.counters.false_claim();
    }

    /// Whether certificate `serial` is revoked here.
    pub(crate) fn is_revoked(&self, serial: u64) -> bool {
        self.shared.handshake().trust.is_revoked(serial)
    }

    /// Sends `envelope` first on every new link of this node, and now on
    /// the live ones (an operator node's session: what it holds is the
    /// operators room's business).
    pub(crate) fn set_greeting(&self, envelope: Vec<u8>) {
        for link in self.shared.links.all() {
            let _ = link.try_send(envelope.clone());
        }
        *self
            .shared
            .greeting
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(envelope);
    }

    /// Ends every operator session held on a link (the key they were
    /// checked with changed): operators present again.
    pub(crate) fn end_sessions(&self) {
        for link in self.shared.links.all() {
            link.end_session();
        }
    }

    /// The roles this node announces in gossip: its certificate's, unless
    /// a test made it lie ([`Faults::claim_roles`](super::Faults::claim_roles)).
    pub(crate) fn announced_roles(&self) -> Vec<String> {
        self.shared
            .config
            .faults
            .as_ref()
            .and_then(|f| f.claimed_roles())
            .unwrap_or_else(|| self.handshake().cert.body().roles.clone())
    }
}
