//! Push/pull: a joiner asks the first member it meets for the whole member
//! list and applies it by foca's rules (without gossiping it on); and every
//! `resync_interval` each node asks one member (in turn) again, so a node
//! that missed updates (datagrams lost while it was starved or cut off)
//! catches up within one interval instead of waiting for feeds that carry
//! a few members each.
//!
//! A member list travels in buckets: member `m` is in bucket
//! `hash(m.addr) % buckets`, the server picks `buckets` (about 28 members
//! each) and every datagram of a reply says which bucket (and which part
//! of it) it carries, so the requester knows what was lost. A probe RTT or
//! two after asking, it asks another member (chosen at random) for the
//! buckets it lacks, up to [`MAX_REPAIRS`] times: a lost datagram costs one
//! datagram more, not a wait for the next pull. And while pulls keep
//! teaching a node much (at least 1/32 of what it knows: it is young, or
//! it joined with many others at once), it pulls again one probe period
//! later from a random member instead of `resync_interval` later (and so
//! it does after a pull that taught it anything at all, up to eight in a
//! row): views
//! merge as in push/pull anti-entropy, in a few rounds whatever the size
//! of the cluster. Each pull asks one member, so a member serves about
//! one pull per round; a node that learns little pulls at the usual pace.
//!
//! Wire: a request is `kind 3` alone (everything) or followed by
//! `buckets u16 | bucket u16...` (those buckets); a reply datagram is
//! `kind 4 | count u16 | bucket u16 | buckets u16 | part u8 | parts u8 |
//! members` (foca's member encoding).

use std::net::SocketAddr;
use std::time::Duration;

use rand::RngExt;

use super::datagram::kind;
use super::{GossipError, Membership, Tick, TickKind};
use crate::gossip::GossipCodec;

/// How long a node accepts sync replies after asking, and how often it
/// serves the same requester.
const SYNC_WINDOW: Duration = Duration::from_secs(5);

/// The most buckets a member list is split into (114,688 members at 28 a
/// bucket): a request for more is malformed.
pub(super) const MAX_BUCKETS: u16 = 4096;

/// The most datagrams one bucket of a reply takes (the bitmask of parts
/// received is a byte).
const MAX_PARTS: usize = 8;

/// How many times a pull asks again for the buckets it lacks.
pub(super) const MAX_REPAIRS: u8 = 3;

/// How many pulls in a row that each taught a node a little (less than
/// 1/32 of what it knows, but something) are followed by a fast one.
const MAX_FAST_STREAK: u8 = 8;

/// The bytes before the members in a reply datagram (after its kind).
const REPLY_HEADER: usize = 8;

/// A pull under way: which buckets arrived.
#[derive(Debug)]
pub(super) struct Pull {
    /// Who was asked last.
    from: SocketAddr,
    /// The bucket count of the first reply (0 until one arrives).
    buckets: u16,
    /// Per bucket: parts expected (0: none seen) and a bitmask of parts
    /// received.
    got: Vec<(u8, u8)>,
    /// Repairs asked so far.
    repairs: u8,
    /// Live members known when the pull started.
    before: usize,
}

impl Pull {
    fn missing(&self) -> Vec<u16> {
        self.got
            .iter()
            .enumerate()
            .filter(|(_, &(parts, mask))| parts == 0 || mask.count_ones() < u32::from(parts))
            .map(|(i, _)| i as u16)
            .collect()
    }
}

/// The bucket of a member address among `buckets` (FNV-1a: every node must
/// compute the same).
pub(super) fn bucket_of(addr: &SocketAddr, buckets: u16) -> u16 {
    let mut hash: u32 = 0x811c_9dc5;
    let mut eat = |byte: u8| {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    };
    match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.octets().into_iter().for_each(&mut eat),
        std::net::IpAddr::V6(ip) => ip.octets().into_iter().for_each(&mut eat),
    }
    addr.port().to_be_bytes().into_iter().for_each(&mut eat);
    (hash % u32::from(buckets.max(1))) as u16
}

/// A bucket request's body: `buckets u16 | bucket u16...`, every bucket
/// below `buckets`, at least one, at most [`MAX_BUCKETS`].
pub(super) fn parse_request(body: &[u8]) -> Result<Option<(u16, Vec<u16>)>, GossipError> {
    if body.is_empty() {
        return Ok(None);
    }
    let malformed = || GossipError::Malformed("bad member-list request".into());
    if body.len() < 4 || !body.len().is_multiple_of(2) {
        return Err(malformed());
    }
    let mut words = body
        .chunks_exact(2)
        .filter_map(|w| <[u8; 2]>::try_from(w).ok())
        .map(u16::from_be_bytes);
    let buckets = words.next().ok_or_else(malformed)?;
    if buckets == 0 || buckets > MAX_BUCKETS {
        return Err(malformed());
    }
    let wanted: Vec<u16> = words.collect();
    if wanted.iter().any(|&b| b >= buckets) {
        return Err(malformed());
    }
    Ok(Some((buckets, wanted)))
}

impl Membership {
    /// Right after joining, asks the first member met for its whole member
    /// list (push/pull anti-entropy, as memberlist does on join): foca's
    /// feeds and gossip alone leave a joiner missing members for up to
    /// a probe period per member.
    ///
    /// It asks after a random delay of up to half a probe RTT: when many
    /// nodes join at once (a cluster started together), their pulls reach
    /// the seed spread over that time instead of within milliseconds,
    /// which would have it send its whole list to every joiner at once
    /// (10,000 joiners: 3.6 million datagrams in one burst).
    pub(super) fn sync_after_join(&mut self, with: SocketAddr) {
        if self.seeds.is_empty() || self.synced_at.is_some() {
            return;
        }
        // Asked (no second join pull); replies are accepted from when
        // the request goes out.
        self.synced_at = Some(self.now);
        let after = (self.config.probe_rtt / 2).mul_f64(self.rng.random_range(0.0..=1.0));
        self.timers
            .push((after, Tick::new(TickKind::JoinPull(with))));
    }

    /// The join pull's timer: asks the member met first.
    pub(super) fn join_pull(&mut self, with: SocketAddr) {
        if self.pull.is_none() && !self.own_meta.meta.leaving {
            self.ask_all(with);
        }
    }

    /// A pull timer: void if a fast pull replaced it; re-armed for the
    /// usual interval.
    pub(super) fn resync_tick(&mut self, generation: u32, fast: bool) {
        if generation != self.resync_gen {
            return;
        }
        if !self.own_meta.meta.leaving {
            if fast {
                self.resync_random();
            } else {
                self.resync();
            }
        }
        let interval = self.pull_interval();
        self.timers
            .push((interval, Tick::new(TickKind::Resync(generation, false))));
    }

    /// When the next periodic pull is due: a random point in the last
    /// quarter of `resync_interval`, so that nodes started together do
    /// not all pull in the same instant.
    pub(super) fn pull_interval(&mut self) -> Duration {
        self.config
            .resync_interval
            .mul_f64(self.rng.random_range(0.75..=1.0))
    }

    /// The periodic pull: asks the next active member in turn for its list.
    pub(super) fn resync(&mut self) {
        let active = self.active_addrs();
        if active.is_empty() {
            return;
        }
        self.resync_cursor = self.resync_cursor.wrapping_add(1);
        let Some(&with) = active.get(self.resync_cursor % active.len()) else {
            return;
        };
        self.ask_all(with);
    }

    /// The fast pull of a node whose last pull taught it much: a random
    /// active member.
    pub(super) fn resync_random(&mut self) {
        if let Some(with) = self.random_active(None) {
            self.ask_all(with);
        }
    }

    fn active_addrs(&self) -> Vec<SocketAddr> {
        self.table
            .iter()
            .filter(|m| m.state.is_active())
            .map(|m| m.id.addr)
            .collect()
    }

    fn random_active(&mut self, not: Option<SocketAddr>) -> Option<SocketAddr> {
        let active: Vec<SocketAddr> = self
            .active_addrs()
            .into_iter()
            .filter(|a| Some(*a) != not)
            .collect();
        if active.is_empty() {
            return not;
        }
        let at = self.rng.random_range(0..active.len());
        active.get(at).copied()
    }

    pub(super) fn ask_all(&mut self, with: SocketAddr) {
        self.synced_at = Some(self.now);
        self.pull = Some(Pull {
            from: with,
            buckets: 0,
            got: Vec::new(),
            repairs: 0,
            before: self.foca.num_members(),
        });
        self.queue_out(with, vec![kind::SYNC_REQUEST]);
        self.arm_repair();
    }

    fn arm_repair(&mut self) {
        let after = self.config.probe_rtt * 2;
        self.timers.push((after, Tick::new(TickKind::SyncRepair)));
    }

    /// A repair tick: asks another member for the buckets still missing
    /// (everything, if no reply came at all), or ends the pull.
    pub(super) fn repair_pull(&mut self) {
        let Some(pull) = self.pull.as_ref() else {
            return;
        };
        let missing = pull.missing();
        let nothing = pull.buckets == 0;
        if (!nothing && missing.is_empty()) || pull.repairs >= MAX_REPAIRS {
            self.finish_pull();
            return;
        }
        let (from, buckets) = (pull.from, pull.buckets);
        let Some(with) = self.random_active(Some(from)) else {
            self.finish_pull();
            return;
        };
        let mut request = vec![kind::SYNC_REQUEST];
        if !nothing {
            request.extend_from_slice(&buckets.to_be_bytes());
            let room = (self.config.max_packet.saturating_sub(3)) / 2;
            for bucket in missing.into_iter().take(room.max(1)) {
                request.extend_from_slice(&bucket.to_be_bytes());
            }
        }
        if let Some(pull) = self.pull.as_mut() {
            pull.from = with;
            pull.repairs += 1;
        }
        self.synced_at = Some(self.now);
        self.queue_out(with, request);
        self.arm_repair();
    }

    /// Ends the pull under way; if it taught this node at least 1/32 of
    /// what it knows, the next pull comes one probe period later.
    fn finish_pull(&mut self) {
        let Some(pull) = self.pull.take() else {
            return;
        };
        let now = self.foca.num_members();
        let learned = now.saturating_sub(pull.before);
        // Much (1/32 of what it knows): again; a little: again, up to
        // MAX_FAST_STREAK times in a row; nothing: the usual pace.
        let much = learned * 32 >= now;
        self.fast_streak = if learned == 0 {
            0
        } else {
            self.fast_streak.saturating_add(1)
        };
        if learned > 0 && (much || self.fast_streak <= MAX_FAST_STREAK) {
            self.resync_gen = self.resync_gen.wrapping_add(1);
            self.stats.fast_pulls += 1;
            // Within the next probe period, at a random point: the pulls
            // of nodes that joined together spread over the period
            // instead of every node sending and being sent a whole member
            // list in the same few milliseconds.
            let after = self
                .config
                .probe_period
                .mul_f64(self.rng.random_range(0.5..=1.0));
            self.timers
                .push((after, Tick::new(TickKind::Resync(self.resync_gen, true))));
        }
    }

    /// Sends `to` every live member this node knows (in `wanted` buckets
    /// of `buckets`, if given), in datagrams of at most `max_packet`
    /// bytes; each requester at most once per window.
    pub(super) fn serve_sync(&mut self, to: SocketAddr, wanted: Option<(u16, Vec<u16>)>) {
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
        let per_bucket = (self.config.max_packet / 50).max(1);
        let (buckets, wanted) = match wanted {
            Some((buckets, list)) => {
                let mut want = vec![false; usize::from(buckets)];
                for b in list {
                    if let Some(slot) = want.get_mut(usize::from(b)) {
                        *slot = true;
                    }
                }
                (buckets, Some(want))
            }
            None => {
                let n = self.foca.num_members();
                let buckets = n.div_ceil(per_bucket).clamp(1, usize::from(MAX_BUCKETS));
                (buckets as u16, None)
            }
        };
        let mut members: Vec<(u16, &foca::Member<_>)> = self
            .foca
            .iter_members()
            .filter(|m| m.id().addr != to)
            .map(|m| (bucket_of(&m.id().addr, buckets), m))
            .filter(|(b, _)| {
                wanted
                    .as_ref()
                    .is_none_or(|w| w.get(usize::from(*b)).copied().unwrap_or(false))
            })
            .collect();
        members.sort_unstable_by_key(|(b, _)| *b);
        let mut codec = GossipCodec::default();
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut next = members.into_iter().peekable();
        for bucket in 0..buckets {
            if wanted
                .as_ref()
                .is_some_and(|w| !w.get(usize::from(bucket)).copied().unwrap_or(false))
            {
                continue;
            }
            // This bucket's parts; an empty bucket is one empty part.
            let first = out.len();
            let mut chunk = reply_start();
            let mut count: u16 = 0;
            while let Some((_, member)) = next.next_if(|(b, _)| *b == bucket) {
                let mark = chunk.len();
                if codec.encode_member(member, &mut chunk).is_err() {
                    chunk.truncate(mark);
                    continue;
                }
                if chunk.len() > self.config.max_packet && count > 0 {
                    chunk.truncate(mark);
                    seal_part(&mut chunk, count);
                    out.push(std::mem::replace(&mut chunk, reply_start()));
                    count = 0;
                    if out.len() - first >= MAX_PARTS {
                        break;
                    }
                    if codec.encode_member(member, &mut chunk).is_err() {
                        chunk.truncate(1 + REPLY_HEADER);
                        continue;
                    }
                }
                count += 1;
            }
            // Whatever did not fit in MAX_PARTS parts is left out.
            while next.next_if(|(b, _)| *b == bucket).is_some() {}
            if out.len() - first < MAX_PARTS {
                seal_part(&mut chunk, count);
                out.push(chunk);
            }
            let parts = (out.len() - first) as u8;
            for (part, datagram) in out.iter_mut().skip(first).enumerate() {
                let [b0, b1] = bucket.to_be_bytes();
                let [n0, n1] = buckets.to_be_bytes();
                if let Some(header) = datagram.get_mut(3..1 + REPLY_HEADER) {
                    header.copy_from_slice(&[b0, b1, n0, n1, part as u8, parts]);
                }
            }
        }
        for datagram in out {
            self.queue_out(to, datagram);
        }
    }

    /// Applies a member list this node asked for, by foca's own rules.
    /// What is new to this node is not gossiped on unless
    /// [`MembershipConfig::relay_pulled`](super::MembershipConfig) says
    /// so: the server's view is what the cluster already heard, and a node
    /// that learns much pulls again at once (anti-entropy) instead of
    /// waiting for gossip from backlogs of the whole cluster.
    pub(super) fn apply_sync(&mut self, body: &[u8]) -> Result<(), GossipError> {
        use foca::Codec;
        let asked = self
            .synced_at
            .is_some_and(|at| self.now.saturating_sub(at) < SYNC_WINDOW);
        if !asked {
            return Err(GossipError::Refused("sync reply not asked for".into()));
        }
        let (header, mut rest) = body
            .split_first_chunk::<REPLY_HEADER>()
            .ok_or_else(|| GossipError::Malformed("sync reply without a header".into()))?;
        let [c0, c1, b0, b1, n0, n1, part, parts] = *header;
        let count = u16::from_be_bytes([c0, c1]);
        let bucket = u16::from_be_bytes([b0, b1]);
        let buckets = u16::from_be_bytes([n0, n1]);
        if buckets == 0
            || buckets > MAX_BUCKETS
            || bucket >= buckets
            || parts == 0
            || usize::from(parts) > MAX_PARTS
            || part >= parts
        {
            return Err(GossipError::Malformed("bad sync reply header".into()));
        }
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
            .apply_many(members.into_iter(), self.config.relay_pulled, &mut self.io)
            .map_err(|e| GossipError::Refused(e.to_string()))?;
        self.drain();
        let mut complete = false;
        if let Some(pull) = self.pull.as_mut() {
            if pull.buckets == 0 {
                pull.buckets = buckets;
                pull.got = vec![(0, 0); usize::from(buckets)];
            }
            if pull.buckets == buckets {
                if let Some(slot) = pull.got.get_mut(usize::from(bucket)) {
                    slot.0 = parts;
                    slot.1 |= 1 << part;
                }
                complete = pull.missing().is_empty();
            }
        }
        if complete {
            self.finish_pull();
        }
        Ok(())
    }
}

fn reply_start() -> Vec<u8> {
    let mut chunk = Vec::with_capacity(1400);
    chunk.push(kind::SYNC_REPLY);
    chunk.extend_from_slice(&[0; REPLY_HEADER]);
    chunk
}

fn seal_part(chunk: &mut [u8], count: u16) {
    if let Some(tally) = chunk.get_mut(1..3) {
        tally.copy_from_slice(&count.to_be_bytes());
    }
}
