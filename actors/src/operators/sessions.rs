//! One node's operator sessions: the head group's public key that
//! capabilities verify with (a head's own, other nodes' from lease
//! grants), the capabilities verified already, and this node's own
//! capability, presented first on every link it opens. The node makes
//! one: the mesh asks it about every presentation ([`SessionGate`]); the
//! head, the lease keeper and delegation hold the [`Sessions`] handle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use actix::Message;
use serde::{Deserialize, Serialize};
use swarm_protocol::Target;

use super::{open_capability, unix_ms, Capability, Claims, SESSION_ACTOR};
use crate::directory::{Caller, RemoteMessage as _};
use crate::mesh::{Mesh, SessionGate, Unchecked};

/// An operator presents its capability as the first tell on a new link;
/// the link's reader checks it before the next message.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
pub(crate) struct Present {
    /// The capability its login answered.
    pub(crate) capability: Capability,
}

crate::system_message!(Present => "swarm.Present", Login);

/// Verified capabilities a node remembers at most (it starts over when full).
const VERIFIED: usize = 256;

/// The keys and verified capabilities; what the mesh's gate reads.
#[derive(Default)]
pub(crate) struct Keys {
    /// The head group's public key, once known.
    key: RwLock<Option<[u8; 32]>>,
    /// Capabilities whose signature verified under `key`, by the SHA-256
    /// of their bytes: a node acting for an operator presents the same
    /// one on every call, which then costs a lookup, not a signature check
    /// (the window and revocation are still checked on every call).
    verified: Mutex<HashMap<[u8; 32], Claims>>,
}

impl Keys {
    fn key(&self) -> Option<[u8; 32]> {
        *self.key.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SessionGate for Keys {
    fn presents(&self, to: &Target<'_>, tag: &str) -> bool {
        tag == Present::TAG && matches!(to, Target::Name(name) if *name == SESSION_ACTOR)
    }

    fn check(
        &self,
        caller: &Caller,
        body: &[u8],
        revoked: &dyn Fn(u64) -> bool,
    ) -> Result<u64, Unchecked> {
        check_present(self.key(), revoked, caller, body)
    }
}

/// Checks a `Present` tell's body from `caller`: the session's end (Unix
/// ms) if its capability verifies under `key`, is this certificate's own
/// (not a delegated one) and its serial is not `revoked`.
///
/// # Errors
///
/// [`Unchecked::NotYet`] without a key; [`Unchecked::Refused`] with why
/// it does not hold.
pub(crate) fn check_present(
    key: Option<[u8; 32]>,
    revoked: &dyn Fn(u64) -> bool,
    caller: &Caller,
    body: &[u8],
) -> Result<u64, Unchecked> {
    let key = key.ok_or(Unchecked::NotYet)?;
    let present: Present = rmp_serde::from_slice(body)
        .map_err(|e| Unchecked::Refused(format!("not a capability: {e}")))?;
    let claims =
        open_capability(&present.capability, Some(key), revoked).map_err(Unchecked::Refused)?;
    if claims.node != caller.node || claims.serial != caller.serial {
        return Err(Unchecked::Refused(
            "the capability is not this certificate's: log in again".into(),
        ));
    }
    if claims.delegate.is_some() {
        return Err(Unchecked::Refused(
            "a delegated capability is not presented on an operator's own link".into(),
        ));
    }
    Ok(claims.expires_ms)
}

/// The handle to one node's operator sessions. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Sessions {
    keys: Arc<Keys>,
    mesh: Mesh,
}

impl Sessions {
    /// The sessions of the node whose mesh asks `keys`.
    pub(crate) fn new(keys: Arc<Keys>, mesh: Mesh) -> Self {
        Self { keys, mesh }
    }

    /// The node these sessions are for.
    pub(crate) fn node(&self) -> swarm_protocol::NodeId {
        self.mesh.id()
    }

    /// The head group's public key, if known yet.
    pub(crate) fn key(&self) -> Option<[u8; 32]> {
        self.keys.key()
    }

    /// Keeps the head group's public key (from a head's own secret, or a
    /// lease grant a head certificate's link answered). A rotated key ends
    /// every operator's session held on a link: what they presented was
    /// signed under the old one.
    pub(crate) fn set_key(&self, key: [u8; 32]) {
        let previous = self
            .keys
            .key
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(key);
        if previous.is_some_and(|p| p != key) {
            self.keys
                .verified
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
            self.mesh.end_sessions();
        }
    }

    /// Opens an operator's capability as [`open_capability`] does,
    /// verifying its signature only the first time this node sees it.
    ///
    /// # Errors
    ///
    /// Why it does not hold.
    pub(crate) fn open(&self, capability: &Capability) -> Result<Claims, String> {
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::digest(capability.as_bytes()).into();
        let known = self
            .keys
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&digest)
            .cloned();
        if let Some(claims) = known {
            if unix_ms() >= claims.expires_ms {
                return Err("the capability expired: log in again".into());
            }
            if self.mesh.is_revoked(claims.serial) {
                return Err(format!(
                    "the certificate of {} (serial {}) is revoked",
                    claims.name, claims.serial
                ));
            }
            return Ok(claims);
        }
        let claims = open_capability(capability, self.key(), |s| self.mesh.is_revoked(s))?;
        let mut verified = self
            .keys
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if verified.len() >= VERIFIED {
            verified.clear();
        }
        verified.insert(digest, claims.clone());
        Ok(claims)
    }

    /// Presents `capability` as the first message on every new link of
    /// this (operator) node, and now on the live ones.
    pub(crate) fn present(&self, capability: &Capability) {
        let present = Present {
            capability: capability.clone(),
        };
        let mut envelope = Vec::new();
        let encoded = swarm_protocol::envelope::encode_request(
            &mut envelope,
            None,
            Target::Name(SESSION_ACTOR),
            Present::TAG,
            |out| rmp_serde::encode::write(out, &present).map_err(|e| e.to_string()),
        );
        if encoded.is_ok() {
            self.mesh.set_greeting(envelope);
        }
    }
}
