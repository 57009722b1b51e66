//! Node metadata as foca custom broadcasts: a store of the newest item per
//! member (shared with foca's broadcast handler), this node's own item and
//! its periodic refresh, and rate-limited pulls for members whose metadata
//! is missing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use foca::{BroadcastHandler, Invalidates};

use super::datagram::kind;
use super::{MemberEvent, Membership, Tick, TickKind};
use crate::gossip::{MemberId, MetaError, MetaItem, NodeMeta};

/// Attempts to pull a member's missing metadata before giving up on it
/// (until it shows up again).
pub(super) const MAX_PULL_ATTEMPTS: u8 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MetaKey {
    addr: SocketAddr,
    version: (u64, u32),
}

impl Invalidates for MetaKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.addr == other.addr && self.version >= other.version
    }
}

/// Metadata known about every member, by address, shared with foca's
/// broadcast handler.
#[derive(Debug, Default)]
pub(super) struct MetaStore {
    pub(super) by_addr: HashMap<SocketAddr, (MemberId, u32, Arc<NodeMeta>)>,
    pub(super) changed: Vec<SocketAddr>,
}

impl MetaStore {
    /// Stores `bytes` if newer than what is known; returns its key then.
    pub(super) fn offer(&mut self, bytes: &[u8]) -> Result<Option<MetaKey>, MetaError> {
        let (id, seq, _) = MetaItem::peek(bytes)?;
        if let Some((known, known_seq, _)) = self.by_addr.get(&id.addr) {
            if (known.bump, *known_seq) >= (id.bump, seq) {
                return Ok(None);
            }
        }
        let item = MetaItem::decode(bytes)?;
        self.by_addr.insert(id.addr, (id, seq, Arc::new(item.meta)));
        self.changed.push(id.addr);
        Ok(Some(MetaKey {
            addr: id.addr,
            version: (id.bump, seq),
        }))
    }
}

#[derive(Debug, Clone, Default)]
pub(super) struct MetaHandler(pub(super) Arc<Mutex<MetaStore>>);

impl BroadcastHandler<MemberId> for MetaHandler {
    type Key = MetaKey;
    type Error = MetaError;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&MemberId>,
    ) -> Result<Option<MetaKey>, MetaError> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .offer(data)
    }
}

impl Membership {
    /// A member came up: the join pull if it is the first, its event, and
    /// a pull of its metadata if missing.
    pub(super) fn mark_up(&mut self, id: MemberId) {
        let now = self.now;
        self.sync_after_join(id.addr);
        if let Some(event) = self.table.up(id, now) {
            self.events.push_back(event);
        }
        if !self.config.gossip_meta || self.has_older_meta(&id) {
            // A renewed identity (a rejoin or a restart) publishes its
            // metadata itself: had every member pulled it, the node that
            // was just declared down (most likely starved) would get a
            // request from each.
        } else if !self.has_meta(&id) {
            // Ask at once while this round's budget lasts, later otherwise.
            if self.pulled_this_round < self.config.meta_pulls {
                self.pulled_this_round += 1;
                self.queue_out(id.addr, vec![kind::META_REQUEST]);
                self.pulls.push_back((id.addr, 1));
            } else {
                self.pulls.push_back((id.addr, 0));
            }
            self.arm_pulls();
        } else if let Some((_, meta)) = self.meta_of(&id.addr) {
            // Metadata that arrived before the member did.
            self.events
                .push_back(MemberEvent::MetadataChanged(id, meta));
        }
    }

    /// Arms a pull round if pulls are queued and none is armed.
    pub(super) fn arm_pulls(&mut self) {
        if !self.pull_armed && !self.pulls.is_empty() && self.config.gossip_meta {
            self.pull_armed = true;
            self.timers.push((
                self.config.meta_pull_interval,
                Tick::new(TickKind::MetaPull),
            ));
        }
    }

    /// Replaces this node's metadata and disseminates it at once.
    pub fn set_meta(&mut self, meta: NodeMeta, now: Duration) -> Result<(), MetaError> {
        self.now = now;
        let previous = std::mem::replace(&mut self.own_meta.meta, meta);
        self.own_meta.seq = self.own_meta.seq.wrapping_add(1);
        match self.own_meta.encode() {
            Ok(bytes) => {
                self.publish(&bytes);
                let _ = self.foca.broadcast(&mut self.io);
                self.drain();
                Ok(())
            }
            Err(err) => {
                self.own_meta.meta = previous;
                self.own_meta.seq = self.own_meta.seq.wrapping_sub(1);
                Err(err)
            }
        }
    }

    /// This node's metadata.
    pub fn own_meta(&self) -> &NodeMeta {
        &self.own_meta.meta
    }

    pub(super) fn republish(&mut self) {
        self.own_meta.seq = self.own_meta.seq.wrapping_add(1);
        if let Ok(bytes) = self.own_meta.encode() {
            self.publish(&bytes);
        }
    }

    pub(super) fn publish(&mut self, bytes: &[u8]) {
        if !self.config.gossip_meta {
            return;
        }
        // The handler stores it (so replies to pulls and listings see it)
        // and foca queues it for dissemination.
        // Items are validated and at most MAX_META_LEN bytes, below the
        // packet size foca checks against, so this does not fail.
        let _ = self.foca.add_broadcast(bytes);
        self.meta_published_at = self.now;
        let me = self.own_meta.id.addr;
        self.metas
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .changed
            .retain(|addr| *addr != me);
    }

    /// The metadata known for the member at `addr`, with the identity it
    /// was published under.
    pub fn meta_of(&self, addr: &SocketAddr) -> Option<(MemberId, Arc<NodeMeta>)> {
        self.metas
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_addr
            .get(addr)
            .map(|(id, _, meta)| (*id, meta.clone()))
    }

    pub(super) fn refresh_interval(&self) -> Duration {
        // About one refreshed item every four seconds cluster-wide:
        // refreshes are anti-entropy only (changes are broadcast at once,
        // and missing metadata is pulled), each item reaches every member,
        // and while items flow every member gossips five times a second.
        let members = self.table.len() as u32 + 1;
        self.config
            .meta_refresh
            .max(Duration::from_secs(4) * members)
    }

    pub(super) fn pull_round(&mut self) {
        self.pulled_this_round = 0;
        let mut sent = 0;
        let mut rounds = self.pulls.len();
        while sent < self.config.meta_pulls && rounds > 0 {
            rounds -= 1;
            let Some((addr, attempts)) = self.pulls.pop_front() else {
                break;
            };
            let Some(info) = self.table.get(&addr) else {
                continue;
            };
            if !info.state.is_active() || self.has_meta(&info.id) {
                continue;
            }
            self.queue_out(addr, vec![kind::META_REQUEST]);
            sent += 1;
            if attempts + 1 < MAX_PULL_ATTEMPTS {
                self.pulls.push_back((addr, attempts + 1));
            }
        }
    }

    pub(super) fn has_meta(&self, id: &MemberId) -> bool {
        self.metas
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_addr
            .get(&id.addr)
            .is_some_and(|(known, _, _)| known.bump >= id.bump)
    }

    /// Whether metadata is known from an older identity of the same node
    /// at `id`'s address (`id` is renewed, or restarted).
    pub(super) fn has_older_meta(&self, id: &MemberId) -> bool {
        self.metas
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_addr
            .get(&id.addr)
            .is_some_and(|(known, _, _)| known.node == id.node && known.bump < id.bump)
    }

    pub(super) fn drain_meta_changes(&mut self) {
        let changed: Vec<SocketAddr> = std::mem::take(
            &mut self
                .metas
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .changed,
        );
        for addr in changed {
            let Some((published, meta)) = self.meta_of(&addr) else {
                continue;
            };
            // Only metadata of the incarnation the table knows counts.
            let Some(id) = self.table.get(&addr).map(|info| info.id) else {
                continue;
            };
            if id != published {
                continue;
            }
            if meta.leaving {
                if let Some(event) = self.table.left(id, self.now) {
                    self.events.push_back(event);
                }
            }
            self.events
                .push_back(MemberEvent::MetadataChanged(id, meta));
        }
    }
}
