//! Push/pull: a joiner asks the first member it meets for the whole member
//! list and applies it by foca's rules, relaying what is new; and every
//! `resync_interval` each node asks one member (in turn) again, so a node
//! that missed updates (datagrams lost while it was starved or cut off)
//! catches up within one interval instead of waiting for feeds that carry
//! a few members each.

use std::net::SocketAddr;
use std::time::Duration;

use super::datagram::kind;
use super::{GossipError, Membership};
use crate::gossip::GossipCodec;

/// How long a node accepts sync replies after asking, and how often it
/// serves the same requester.
const SYNC_WINDOW: Duration = Duration::from_secs(5);

impl Membership {
    /// Right after joining, asks the first member met for its whole member
    /// list (push/pull anti-entropy, as memberlist does on join): foca's
    /// feeds and gossip alone leave a joiner missing members for up to
    /// a probe period per member.
    pub(super) fn sync_after_join(&mut self, with: SocketAddr) {
        if self.seeds.is_empty() || self.synced_at.is_some() {
            return;
        }
        self.synced_at = Some(self.now);
        self.queue_out(with, vec![kind::SYNC_REQUEST]);
    }

    /// The periodic pull: asks the next active member in turn for its list.
    pub(super) fn resync(&mut self) {
        let active: Vec<SocketAddr> = self
            .table
            .iter()
            .filter(|m| m.state.is_active())
            .map(|m| m.id.addr)
            .collect();
        if active.is_empty() {
            return;
        }
        self.resync_cursor = self.resync_cursor.wrapping_add(1);
        let Some(&with) = active.get(self.resync_cursor % active.len()) else {
            return;
        };
        self.synced_at = Some(self.now);
        self.queue_out(with, vec![kind::SYNC_REQUEST]);
    }

    /// Sends `to` every live member this node knows, in datagrams of at
    /// most `max_packet` bytes; each requester at most once per window.
    pub(super) fn serve_sync(&mut self, to: SocketAddr) {
        use foca::Codec;
        let now = self.now;
        if self
            .sync_served
            .get(&to)
            .is_some_and(|at| now.saturating_sub(*at) < SYNC_WINDOW)
        {
            return;
        }
        if self.sync_served.len() >= 1024 {
            self.sync_served
                .retain(|_, at| now.saturating_sub(*at) < SYNC_WINDOW);
        }
        self.sync_served.insert(to, now);
        let mut codec = GossipCodec::default();
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        let mut chunk = Vec::new();
        let mut count: u16 = 0;
        let start = |chunk: &mut Vec<u8>| {
            chunk.clear();
            chunk.extend_from_slice(&[kind::SYNC_REPLY, 0, 0]);
        };
        start(&mut chunk);
        for member in self.foca.iter_members() {
            if member.id().addr == to {
                continue;
            }
            let mark = chunk.len();
            if codec.encode_member(member, &mut chunk).is_err() {
                continue;
            }
            if chunk.len() > self.config.max_packet {
                chunk.truncate(mark);
                if let Some(tally) = chunk.get_mut(1..3) {
                    tally.copy_from_slice(&count.to_be_bytes());
                }
                chunks.push(chunk.clone());
                start(&mut chunk);
                count = 0;
                if codec.encode_member(member, &mut chunk).is_err() {
                    continue;
                }
            }
            count += 1;
        }
        if count > 0 {
            if let Some(tally) = chunk.get_mut(1..3) {
                tally.copy_from_slice(&count.to_be_bytes());
            }
            chunks.push(chunk);
        }
        for chunk in chunks {
            self.queue_out(to, chunk);
        }
    }

    /// Applies a member list this node asked for, by foca's own rules.
    /// What is new to this node is gossiped on as if it had arrived by
    /// gossip: applying it silently would stop this node from relaying
    /// those updates, and during a mass join the epidemic would starve.
    pub(super) fn apply_sync(&mut self, body: &[u8]) -> Result<(), GossipError> {
        use foca::Codec;
        let asked = self
            .synced_at
            .is_some_and(|at| self.now.saturating_sub(at) < SYNC_WINDOW);
        if !asked {
            return Err(GossipError::Refused("sync reply not asked for".into()));
        }
        let (tally, mut rest) = body
            .split_first_chunk::<2>()
            .ok_or_else(|| GossipError::Malformed("sync reply without a count".into()))?;
        let count = u16::from_be_bytes(*tally);
        let mut codec = GossipCodec::default();
        let mut members = Vec::new();
        for _ in 0..count {
            let member = codec
                .decode_member(&mut rest)
                .map_err(|e| GossipError::Malformed(e.to_string()))?;
            members.push(member);
        }
        if !rest.is_empty() {
            return Err(GossipError::Malformed(
                "trailing bytes in sync reply".into(),
            ));
        }
        self.foca.warm(&members);
        self.foca
            .apply_many(members.into_iter(), true, &mut self.io)
            .map_err(|e| GossipError::Refused(e.to_string()))?;
        self.drain();
        Ok(())
    }
}
