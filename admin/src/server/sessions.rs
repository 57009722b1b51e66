//! Operators logged in through this node: a random session id (the
//! cookie, or a bearer token) names the operator's [`Behalf`] and the
//! collector that asks for it. Bounded: the oldest session goes first.
//!
//! A session holds while its capability does: every lookup checks its
//! expiry and whether the node now refuses its certificate as revoked
//! (the node learns revocations with its lease renewals, a fifth of the
//! lease: 600 ms by default), so a revoked operator's requests and event
//! streams end within [`crate::server`]'s documented bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use swarm_actors::inspector::ClusterView;
use swarm_actors::operators::Behalf;
use swarm_actors::Node;

use crate::collect::Collector;

/// Most sessions a node keeps.
const MAX_SESSIONS: usize = 256;
/// How long a polled view serves other requests of the same session.
const FRESH: Duration = Duration::from_millis(500);

/// One operator's session.
pub(crate) struct OpSession {
    pub(crate) behalf: Arc<Behalf>,
    pub(crate) collector: Collector,
    started: Instant,
    last: tokio::sync::Mutex<Option<(Instant, Arc<ClusterView>)>>,
}

impl OpSession {
    /// The cluster now (or as polled less than [`FRESH`] ago).
    pub(crate) async fn view(&self) -> Result<Arc<ClusterView>, String> {
        let mut last = self.last.lock().await;
        if let Some((at, view)) = last.as_ref() {
            if at.elapsed() < FRESH {
                return Ok(Arc::clone(view));
            }
        }
        let view = Arc::new(self.collector.poll().await.map_err(|e| e.to_string())?);
        *last = Some((Instant::now(), Arc::clone(&view)));
        Ok(view)
    }

    /// Whether the capability still holds on `node`: not expired, its
    /// certificate not revoked.
    fn live(&self, node: &Node) -> bool {
        self.behalf.is_valid(|serial| node.is_revoked(serial))
    }
}

/// The sessions by id.
pub(crate) struct Sessions {
    /// The node serving them: it knows which certificates are revoked.
    node: Node,
    by_id: Mutex<HashMap<String, Arc<OpSession>>>,
}

impl Sessions {
    /// No sessions yet, on `node`.
    pub(crate) fn new(node: Node) -> Self {
        Self {
            node,
            by_id: Mutex::new(HashMap::new()),
        }
    }

    /// Opens a session; answers its id.
    pub(crate) fn open(&self, behalf: Arc<Behalf>, collector: Collector) -> Result<String, String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let session = Arc::new(OpSession {
            behalf,
            collector,
            started: Instant::now(),
            last: tokio::sync::Mutex::new(None),
        });
        let mut by_id = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        by_id.retain(|_, s| s.live(&self.node));
        if by_id.len() >= MAX_SESSIONS {
            let oldest = by_id
                .iter()
                .min_by_key(|(_, s)| s.started)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                by_id.remove(&oldest);
            }
        }
        by_id.insert(id.clone(), session);
        Ok(id)
    }

    /// The live session with `id`: one that expired or whose certificate
    /// is revoked is ended here.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<OpSession>> {
        let mut by_id = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        match by_id.get(id) {
            Some(s) if s.live(&self.node) => Some(Arc::clone(s)),
            Some(_) => {
                by_id.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends the session with `id`.
    pub(crate) fn close(&self, id: &str) {
        self.by_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}
