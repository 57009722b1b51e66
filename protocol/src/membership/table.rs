//! The member table: one compact slot per address, holding the state this
//! node reports (foca's alive and down, plus suspicion and leaving, which
//! foca does not report) and when it last changed.

use std::collections::HashMap;
use std::net::SocketAddr;
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

/// 40 bytes per member: a 10,000-node simulation holds 10⁸ of them.
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

#[derive(Debug, Default)]
pub(super) struct Table {
    slots: HashMap<SocketAddr, Slot>,
    active: usize,
    suspects: usize,
}

impl Table {
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(super) fn active(&self) -> usize {
        self.active
    }

    pub(super) fn get(&self, addr: &SocketAddr) -> Option<MemberInfo> {
        self.slots.get(addr).map(|slot| slot.info(*addr))
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = MemberInfo> + '_ {
        self.slots.iter().map(|(addr, slot)| slot.info(*addr))
    }

    fn set(&mut self, addr: SocketAddr, state: MemberState, now: Duration) {
        if let Some(slot) = self.slots.get_mut(&addr) {
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
    }

    /// foca reports `id` up.
    pub(super) fn up(&mut self, id: MemberId, now: Duration) -> Option<MemberEvent> {
        match self.slots.get_mut(&id.addr) {
            None => {
                self.slots.insert(
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
        let slot = self.slots.get(&id.addr)?;
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
        let slot = self.slots.get(&id.addr)?;
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
        let slot = self.slots.get_mut(&id.addr)?;
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
        let slot = self.slots.get_mut(&id.addr)?;
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
        self.slots
            .iter()
            .filter(|(_, slot)| slot.state == MemberState::Suspect)
            .map(|(addr, _)| *addr)
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
        let slot = self.slots.get_mut(&id.addr)?;
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
        let slot = self.slots.get_mut(&old.addr)?;
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
        self.slots
            .retain(|_, slot| slot.state.is_active() || slot.since_ms > cutoff);
    }
}
