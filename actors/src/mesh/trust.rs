//! What the mesh holds for trust: the head group's key operators'
//! capabilities verify with (and those verified already), this node's own
//! capability presented on new links, revocations, and which peers proved
//! a head certificate. Identity here comes from certificates and signed
//! capabilities, never from what a peer says about itself.

use swarm_protocol::NodeId;

use super::Mesh;
use crate::error::AskError;

/// Operator session state of a node ([`crate::operators`]).
#[derive(Default)]
pub(super) struct Sessions {
    /// The head group's public key, which operators' capabilities verify
    /// with (a head's own; other nodes' from lease grants).
    pub(super) key: std::sync::RwLock<Option<[u8; 32]>>,
    /// An encoded `Present` tell to send first on every new link.
    pub(super) present: std::sync::RwLock<Option<Vec<u8>>>,
    /// Capabilities whose signature verified under `key`, by the SHA-256
    /// of their bytes: a node acting for an operator presents the same
    /// one on every call, which then costs a lookup, not a signature check
    /// (the window and revocation are still checked on every call).
    pub(super) verified:
        std::sync::Mutex<std::collections::HashMap<[u8; 32], crate::operators::Claims>>,
}

/// Verified capabilities a node remembers at most (it starts over when full).
const VERIFIED: usize = 256;

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

    /// The head group's public key operators' capabilities verify with,
    /// if known yet.
    pub(crate) fn capability_key(&self) -> Option<[u8; 32]> {
        self.shared.capability_key()
    }

    /// Keeps the head group's public key (from a head's own secret, or a
    /// lease grant a head certificate's link answered).
    pub(crate) fn set_capability_key(&self, key: [u8; 32]) {
        let previous = self
            .shared
            .sessions
            .key
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .replace(key);
        // A rotated key ends every operator's session held on a link: what
        // they presented was signed under the old one.
        if previous.is_some_and(|p| p != key) {
            self.shared
                .sessions
                .verified
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
            for link in self.shared.links.all() {
                link.set_session(0);
            }
        }
    }

    /// Opens an operator's capability as [`crate::operators::open_capability`]
    /// does, verifying its signature only the first time this node sees it.
    ///
    /// # Errors
    ///
    /// Why it does not hold.
    pub(crate) fn open_capability(
        &self,
        capability: &crate::operators::Capability,
    ) -> Result<crate::operators::Claims, String> {
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::digest(capability.as_bytes()).into();
        let known = self
            .shared
            .sessions
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&digest)
            .cloned();
        if let Some(claims) = known {
            if crate::operators::unix_ms() >= claims.expires_ms {
                return Err("the capability expired: log in again".into());
            }
            if self.is_revoked(claims.serial) {
                return Err(format!(
                    "the certificate of {} (serial {}) is revoked",
                    claims.name, claims.serial
                ));
            }
            return Ok(claims);
        }
        let claims = crate::operators::open_capability(capability, self.capability_key(), |s| {
            self.is_revoked(s)
        })?;
        let mut verified = self
            .shared
            .sessions
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if verified.len() >= VERIFIED {
            verified.clear();
        }
        verified.insert(digest, claims.clone());
        Ok(claims)
    }

    /// Whether certificate `serial` is revoked here.
    pub(crate) fn is_revoked(&self, serial: u64) -> bool {
        self.shared.handshake().trust.is_revoked(serial)
    }

    /// Presents `capability` as the first message on every new link of
    /// this (operator) node, and now on the live ones.
    pub(crate) fn set_capability(&self, capability: &crate::operators::Capability) {
        let present = crate::operators::wire::Present {
            capability: capability.clone(),
        };
        let mut envelope = Vec::new();
        let encoded = swarm_protocol::envelope::encode_request(
            &mut envelope,
            None,
            swarm_protocol::Target::Name(crate::operators::SESSION_ACTOR),
            <crate::operators::wire::Present as crate::RemoteMessage>::TAG,
            |out| rmp_serde::encode::write(out, &present).map_err(|e| e.to_string()),
        );
        if encoded.is_err() {
            return;
        }
        for link in self.shared.links.all() {
            let _ = link.try_send(envelope.clone());
        }
        *self
            .shared
            .sessions
            .present
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(envelope);
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
