//! The member table: one compact slot per address, holding the state this
//! node reports (foca's alive and down, plus suspicion and leaving, which
//! foca does not report) and when it last changed.

use std::hash::{BuildHasher, RandomState};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use foca::Incarnation;

use super::MemberEvent;
use crate::gossip::MemberId;
use crate::identity::NodeId;

/// A member's state as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberState {
    /// Answers probes.
    Alive,
    /// Failed a probe; down unless it refutes in time.
    Suspect,
    /// Declared down.
    Down,
    /// Left cleanly.
    Left,
}

impl MemberState {
    /// Alive or suspect: still a member.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Alive | Self::Suspect)
    }

    /// Lower-case name, for listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Suspect => "suspect",
            Self::Down => "down",
            Self::Left => "left",
        }
    }
}

/// One member as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its identity.
    pub id: MemberId,
    /// Its state.
    pub state: MemberState,
    /// The highest incarnation seen for it.
    pub incarnation: Incarnation,
    /// When (caller's clock) its state last changed.
    pub since: Duration,
}

/// A member's record without its address (the row holds that).
#[derive(Debug, Clone, Copy)]
struct Slot {
    node: NodeId,
    bump: u64,
    since_ms: u64,
    incarnation: Incarnation,
    state: MemberState,
}

impl Slot {
    fn id(&self, addr: SocketAddr) -> MemberId {
        MemberId {
            addr,
            node: self.node,
            bump: self.bump,
        }
    }

    fn is(&self, id: &MemberId) -> bool {
        self.node == id.node && self.bump == id.bump
    }

    fn info(&self, addr: SocketAddr) -> MemberInfo {
        MemberInfo {
            id: self.id(addr),
            state: self.state,
            incarnation: self.incarnation,
            since: Duration::from_millis(self.since_ms),
        }
    }
}

fn ms(now: Duration) -> u64 {
    u64::try_from(now.as_millis()).unwrap_or(u64::MAX)
}

/// An address in 8 bytes, where a `SocketAddr` takes 32: an IPv4 one is
/// `ip << 16 | port`; an IPv6 one (with its flow info and scope, which
/// take part in `SocketAddr` equality) sets the top bit over its position
/// in the table's list of IPv6 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Packed(u64);

const V6: u64 = 1 << 63;

impl Packed {
    fn v4(addr: &SocketAddrV4) -> Self {
        Self((u64::from(addr.ip().to_bits()) << 16) | u64::from(addr.port()))
    }
}

/// One member: 48 bytes.
#[derive(Debug, Clone, Copy)]
struct Row {
    addr: Packed,
    slot: Slot,
}

/// The member table: rows in a list, found through an open-addressing
/// index of positions (linear probing, at most 3/4 full, 4 bytes a slot:
/// position + 1, 0 for empty). About 55 bytes a member (48 a row, the
/// index's slots), where a `HashMap<SocketAddr, Slot>` took 72-byte
/// buckets at a load of 0.44 to 0.88 (~150 bytes at 1,000 members): a
/// 10,000-node simulation holds 10⁸ members. The hash is SipHash with
/// this table's own random keys, so crafted addresses cannot aim at one
/// probe run.
#[derive(Debug, Default)]
pub(super) struct Table {
    rows: Vec<Row>,
    index: Vec<u32>,
    /// The IPv6 addresses of rows (a row's packed address says where).
    v6: Vec<SocketAddrV6>,
    hasher: RandomState,
    active: usize,
    suspects: usize,
}

impl Table {
    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(super) fn active(&self) -> usize {
        self.active
    }

    /// The address a row holds.
    fn unpack(&self, packed: Packed) -> SocketAddr {
        if packed.0 & V6 == 0 {
            let ip = std::net::Ipv4Addr::from_bits((packed.0 >> 16) as u32);
            SocketAddr::V4(SocketAddrV4::new(ip, packed.0 as u16))
        } else {
            let at = (packed.0 & !V6) as usize;
            // Every V6 row's position is in the list (kept in step by
            // `pack` and `expire`).
            self.v6.get(at).copied().map_or(
                SocketAddr::V4(SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0)),
                SocketAddr::V6,
            )
        }
    }

    /// Whether a row holds `addr`.
    fn holds(&self, packed: Packed, addr: &SocketAddr) -> bool {
        match addr {
            SocketAddr::V4(v4) => packed == Packed::v4(v4),
            SocketAddr::V6(v6) => {
                packed.0 & V6 != 0 && self.v6.get((packed.0 & !V6) as usize) == Some(v6)
            }
        }
    }

    /// Packs the address of a new row.
    fn pack(&mut self, addr: SocketAddr) -> Packed {
        match addr {
            SocketAddr::V4(v4) => Packed::v4(&v4),
            SocketAddr::V6(v6) => {
                self.v6.push(v6);
                Packed(V6 | (self.v6.len() - 1) as u64)
            }
        }
    }

    /// The index slot where `addr` is, or the empty slot where it would go.
    fn probe(&self, addr: &SocketAddr) -> Option<(usize, Option<usize>)> {
        if self.index.is_empty() {
            return None;
        }
        let mask = self.index.len() - 1;
        let mut at = self.hasher.hash_one(addr) as usize & mask;
        // Never full (at most 3/4), so the walk ends on an empty slot.
        loop {
            let entry = *self.index.get(at)?;
            if entry == 0 {
                return Some((at, None));
            }
            let pos = entry as usize - 1;
            if self.holds(self.rows.get(pos)?.addr, addr) {
                return Some((at, Some(pos)));
            }
            at = (at + 1) & mask;
        }
    }

    fn position(&self, addr: &SocketAddr) -> Option<usize> {
        self.probe(addr).and_then(|(_, pos)| pos)
    }

    fn slot(&self, addr: &SocketAddr) -> Option<&Slot> {
        self.position(addr)
            .and_then(|pos| self.rows.get(pos))
            .map(|row| &row.slot)
    }

    fn slot_mut(&mut self, addr: &SocketAddr) -> Option<&mut Slot> {
        self.position(addr)
            .and_then(|pos| self.rows.get_mut(pos))
            .map(|row| &mut row.slot)
    }

    /// Adds a row for an address not in the table.
    fn insert(&mut self, addr: SocketAddr, slot: Slot) {
        if (self.rows.len() + 1) * 4 > self.index.len() * 3 {
            let capacity = (self.index.len() * 2).max(16);
            self.reindex(capacity);
        }
        if self.rows.len() == self.rows.capacity() {
            // Grow by an eighth, not double.
            self.rows.reserve_exact(self.rows.len() / 8 + 4);
        }
        let Some((at, None)) = self.probe(&addr) else {
            return;
        };
        let packed = self.pack(addr);
        self.rows.push(Row { addr: packed, slot });
        let pos = self.rows.len();
        if let Some(entry) = self.index.get_mut(at) {
            *entry = pos as u32;
        }
    }

    /// Rebuilds the index with `capacity` slots (a power of two).
    fn reindex(&mut self, capacity: usize) {
        let mut index = std::mem::take(&mut self.index);
        index.clear();
        index.resize(capacity, 0);
        let mask = capacity - 1;
        for (pos, row) in self.rows.iter().enumerate() {
            let mut at = self.hasher.hash_one(self.unpack(row.addr)) as usize & mask;
            while let Some(entry) = index.get_mut(at) {
                if *entry == 0 {
                    *entry = pos as u32 + 1;
                    break;
                }
                at = (at + 1) & mask;
            }
        }
        self.index = index;
    }

    pub(super) fn get(&self, addr: &SocketAddr) -> Option<MemberInfo> {
        self.slot(addr).map(|slot| slot.info(*addr))
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = MemberInfo> + '_ {
        self.rows
            .iter()
            .map(|row| row.slot.info(self.unpack(row.addr)))
    }

    fn set(&mut self, addr: SocketAddr, state: MemberState, now: Duration) {
        let Some(row) = self.position(&addr).and_then(|pos| self.rows.get_mut(pos)) else {
            return;
        };
        let slot = &mut row.slot;
        match (slot.state.is_active(), state.is_active()) {
            (false, true) => self.active += 1,
            (true, false) => self.active = self.active.saturating_sub(1),
            _ => {}
        }
        match (
            slot.state == MemberState::Suspect,
            state == MemberState::Suspect,
        ) {
            (false, true) => self.suspects += 1,
            (true, false) => self.suspects = self.suspects.saturating_sub(1),
            _ => {}
        }
        slot.state = state;
        slot.since_ms = ms(now);
    }

    /// foca reports `id` up.
    pub(super) fn up(&mut self, id: MemberId, now: Duration) -> Option<MemberEvent> {
        match self.slot_mut(&id.addr) {
            None => {
                self.insert(
                    id.addr,
                    Slot {
                        node: id.node,
                        bump: id.bump,
                        since_ms: ms(now),
                        incarnation: 0,
                        state: MemberState::Alive,
                    },
                );
                self.active += 1;
                Some(MemberEvent::Up(id))
            }
            Some(slot) => {
                if !slot.is(&id) {
                    slot.node = id.node;
                    slot.bump = id.bump;
                    slot.incarnation = 0;
                } else if slot.state == MemberState::Alive {
                    return None;
                }
                self.set(id.addr, MemberState::Alive, now);
                Some(MemberEvent::Up(id))
            }
        }
    }

    /// foca reports `id` down; `leaving` when it announced its departure.
    pub(super) fn down(
        &mut self,
        id: MemberId,
        leaving: bool,
        now: Duration,
    ) -> Option<MemberEvent> {
        let slot = self.slot(&id.addr)?;
        if !slot.is(&id) || !slot.state.is_active() {
            return None;
        }
        if leaving {
            self.set(id.addr, MemberState::Left, now);
            Some(MemberEvent::Left(id))
        } else {
            self.set(id.addr, MemberState::Down, now);
            Some(MemberEvent::Down(id))
        }
    }

    /// `id` announced its departure after this node had declared it down.
    pub(super) fn left(&mut self, id: MemberId, now: Duration) -> Option<MemberEvent> {
        let slot = self.slot(&id.addr)?;
        if !slot.is(&id) || slot.state != MemberState::Down {
            return None;
        }
        self.set(id.addr, MemberState::Left, now);
        Some(MemberEvent::Left(id))
    }

    /// A suspicion about `id` at `incarnation` was accepted by foca.
    /// SWIM: a suspicion overrides alive at the same or a higher incarnation.
    pub(super) fn suspect(
        &mut self,
        id: MemberId,
        incarnation: Incarnation,
        now: Duration,
    ) -> Option<MemberEvent> {
        let slot = self.slot_mut(&id.addr)?;
        if !slot.is(&id) {
            return None;
        }
        match slot.state {
            MemberState::Alive if incarnation >= slot.incarnation => {
                slot.incarnation = incarnation;
                self.set(id.addr, MemberState::Suspect, now);
                Some(MemberEvent::Suspect(id))
            }
            MemberState::Suspect if incarnation > slot.incarnation => {
                slot.incarnation = incarnation;
                None
            }
            _ => None,
        }
    }

    /// `id` is alive at `incarnation`. SWIM: alive overrides a suspicion
    /// only at a higher incarnation.
    pub(super) fn refute(
        &mut self,
        id: MemberId,
        incarnation: Incarnation,
        now: Duration,
    ) -> Option<MemberEvent> {
        let slot = self.slot_mut(&id.addr)?;
        if !slot.is(&id) || incarnation <= slot.incarnation {
            return None;
        }
        slot.incarnation = incarnation;
        if slot.state == MemberState::Suspect {
            self.set(id.addr, MemberState::Alive, now);
            return Some(MemberEvent::Up(id));
        }
        None
    }

    /// Addresses of members this table holds as suspect.
    pub(super) fn suspects(&self) -> std::collections::HashSet<SocketAddr> {
        if self.suspects == 0 {
            return std::collections::HashSet::new();
        }
        self.rows
            .iter()
            .filter(|row| row.slot.state == MemberState::Suspect)
            .map(|row| self.unpack(row.addr))
            .collect()
    }

    /// foca holds `id` alive at `incarnation` although the table suspects
    /// it: a suspicion the table applied but foca did not.
    pub(super) fn clear_suspicion(
        &mut self,
        id: MemberId,
        incarnation: Incarnation,
        now: Duration,
    ) -> Option<MemberEvent> {
        let slot = self.slot_mut(&id.addr)?;
        if !slot.is(&id) || slot.state != MemberState::Suspect {
            return None;
        }
        slot.incarnation = incarnation;
        self.set(id.addr, MemberState::Alive, now);
        Some(MemberEvent::Up(id))
    }

    /// foca replaced `old` by `new` at the same address (a restart, or a
    /// renewed identity). The new identity starts down until foca says
    /// otherwise.
    pub(super) fn renamed(
        &mut self,
        old: MemberId,
        new: MemberId,
        now: Duration,
    ) -> Option<MemberEvent> {
        let slot = self.slot_mut(&old.addr)?;
        if !slot.is(&old) {
            return None;
        }
        let was_active = slot.state.is_active();
        slot.node = new.node;
        slot.bump = new.bump;
        slot.incarnation = 0;
        self.set(old.addr, MemberState::Down, now);
        was_active.then_some(MemberEvent::Down(old))
    }

    /// Forgets members down or gone for longer than `keep`.
    pub(super) fn expire(&mut self, now: Duration, keep: Duration) {
        let cutoff = ms(now).saturating_sub(ms(keep));
        let before = self.rows.len();
        self.rows
            .retain(|row| row.slot.state.is_active() || row.slot.since_ms > cutoff);
        if self.rows.len() != before {
            if !self.v6.is_empty() {
                let old = std::mem::take(&mut self.v6);
                for row in &mut self.rows {
                    if row.addr.0 & V6 != 0 {
                        if let Some(&v6) = old.get((row.addr.0 & !V6) as usize) {
                            self.v6.push(v6);
                            row.addr = Packed(V6 | (self.v6.len() - 1) as u64);
                        }
                    }
                }
            }
            // At most half full afterwards, never larger than before.
            let mut capacity = 16;
            while capacity < self.rows.len() * 2 {
                capacity *= 2;
            }
            self.reindex(capacity.min(self.index.len()));
            self.rows.shrink_to(self.rows.len() + self.rows.len() / 8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u16) -> MemberId {
        MemberId {
            addr: SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 7000)),
            node: NodeId::from_bytes([i as u8; 16]),
            bump: u64::from(i),
        }
    }

    /// The index finds every row where it is, through growth and expiry.
    #[test]
    fn every_member_is_found_after_growth_and_expiry() {
        let mut table = Table::default();
        let t = Duration::from_secs(100);
        for i in 0..1000 {
            assert_eq!(table.up(id(i), t), Some(MemberEvent::Up(id(i))));
        }
        assert_eq!((table.len(), table.active()), (1000, 1000));
        for i in (0..1000).filter(|i| i % 3 == 0) {
            assert!(table.down(id(i), false, t).is_some());
        }
        table.expire(t + Duration::from_secs(60), Duration::from_secs(30));
        assert_eq!(table.len(), 666);
        for i in 0..1000 {
            let found = table.get(&id(i).addr);
            if i % 3 == 0 {
                assert_eq!(found, None, "{i}");
            } else {
                assert_eq!(
                    found.map(|m| (m.id, m.state)),
                    Some((id(i), MemberState::Alive))
                );
            }
        }
        // Gone members come back as new ones.
        assert_eq!(table.up(id(3), t), Some(MemberEvent::Up(id(3))));
        assert_eq!(table.get(&id(3).addr).map(|m| m.id), Some(id(3)));
        assert_eq!(table.iter().count(), 667);
    }

    /// IPv6 members (kept beside the rows) and IPv4 ones that an IPv6
    /// address maps to are told apart, found, listed and expired alike.
    #[test]
    fn ipv6_members_live_beside_ipv4_ones() {
        let v6 = |i: u16, scope: u32| MemberId {
            addr: SocketAddr::V6(SocketAddrV6::new(
                std::net::Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8).to_ipv6_mapped(),
                7000,
                0,
                scope,
            )),
            node: NodeId::from_bytes([7; 16]),
            bump: u64::from(i) + 5000,
        };
        let mut table = Table::default();
        let t = Duration::from_secs(100);
        for i in 0..300 {
            assert!(table.up(id(i), t).is_some());
            assert!(table.up(v6(i, 0), t).is_some());
            assert!(table.up(v6(i, 1), t).is_some());
        }
        assert_eq!(table.len(), 900);
        for i in (0..300).filter(|i| i % 2 == 0) {
            assert!(table.down(v6(i, 0), false, t).is_some());
        }
        table.expire(t + Duration::from_secs(60), Duration::from_secs(30));
        assert_eq!(table.len(), 750);
        for i in 0..300 {
            assert_eq!(table.get(&id(i).addr).map(|m| m.id), Some(id(i)));
            assert_eq!(table.get(&v6(i, 1).addr).map(|m| m.id), Some(v6(i, 1)));
            let gone = table.get(&v6(i, 0).addr).map(|m| m.id);
            assert_eq!(gone, (i % 2 == 1).then(|| v6(i, 0)), "{i}");
        }
        let mut listed: Vec<SocketAddr> = table.iter().map(|m| m.id.addr).collect();
        listed.sort();
        listed.dedup();
        assert_eq!(listed.len(), 750);
    }
}
