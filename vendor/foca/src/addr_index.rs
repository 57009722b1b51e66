/* This Source Code Form is subject to the terms of the Mozilla Public
 * License, v. 2.0. If a copy of the MPL was not distributed with this
 * file, You can obtain one at https://mozilla.org/MPL/2.0/. */
//! Swarm patch (see PATCH.md): an index from a member's address to its
//! position in `Members::inner`, so finding a member costs O(1) instead
//! of a scan of the whole list.
//!
//! An open-addressing table (linear probing, backward-shift deletion) of
//! positions tagged with 32 bits of the address's hash: 8 bytes a slot, at
//! most 3/4 full. The addresses themselves stay in the member list; a
//! probe looks there only when the tag matches.
extern crate alloc;
use alloc::vec::Vec;
use core::hash::{Hash, Hasher};

const EMPTY: u64 = u64::MAX;

pub(crate) struct AddrIndex {
    // Each slot: the low 32 bits of the address's hash (a tag that spares
    // looking at the list on a mismatch, and gives the home slot when the
    // table grows or shifts) over the position.
    slots: Vec<u64>,
    len: usize,
}

impl AddrIndex {
    pub(crate) const fn new() -> Self {
        Self {
            slots: Vec::new(),
            len: 0,
        }
    }

    /// The position of the member whose address is `addr`, where
    /// `addr_at(p)` is the address at position `p`.
    pub(crate) fn find<A: Hash + PartialEq>(
        &self,
        addr: &A,
        addr_at: impl Fn(usize) -> A,
    ) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let tag = hash(addr);
        let mut at = tag as usize & mask;
        loop {
            let slot = self.slots[at];
            if slot == EMPTY {
                return None;
            }
            if (slot >> 32) as u32 == tag && addr_at(position(slot)) == *addr {
                return Some(position(slot));
            }
            at = (at + 1) & mask;
        }
    }

    /// The slot where a probe for an address whose hash is `tag` starts
    /// (its content), to warm the cache before the real lookups.
    pub(crate) fn first_slot(&self, tag: u32) -> u64 {
        if self.slots.is_empty() {
            return EMPTY;
        }
        self.slots[tag as usize & (self.slots.len() - 1)]
    }

    /// The slot that holds position `pos`, whose address is `addr`.
    fn slot_of<A: Hash>(&self, addr: &A, pos: usize) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut at = hash(addr) as usize & mask;
        loop {
            let slot = self.slots[at];
            if slot == EMPTY {
                return None;
            }
            if position(slot) == pos {
                return Some(at);
            }
            at = (at + 1) & mask;
        }
    }

    /// Records that the member at `pos` has address `addr` (not indexed
    /// yet).
    pub(crate) fn insert<A: Hash>(&mut self, addr: &A, pos: usize) {
        debug_assert!(pos < u32::MAX as usize, "more than u32::MAX - 1 members");
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            let capacity = (self.slots.len() * 2).max(16);
            let old = core::mem::replace(&mut self.slots, alloc::vec![EMPTY; capacity]);
            for slot in old.into_iter().filter(|&s| s != EMPTY) {
                self.put(slot);
            }
        }
        self.put((u64::from(hash(addr)) << 32) | pos as u64);
        self.len += 1;
    }

    fn put(&mut self, slot: u64) {
        let mask = self.slots.len() - 1;
        let mut at = (slot >> 32) as usize & mask;
        while self.slots[at] != EMPTY {
            at = (at + 1) & mask;
        }
        self.slots[at] = slot;
    }

    /// The member at `pos` (address `addr`) moves to `to`.
    pub(crate) fn moved<A: Hash>(&mut self, addr: &A, pos: usize, to: usize) {
        if let Some(at) = self.slot_of(addr, pos) {
            self.slots[at] = with_position(self.slots[at], to);
        }
    }

    /// Positions `a` and `b` (addresses `addr_a`, `addr_b`) trade places.
    pub(crate) fn swapped<A: Hash>(&mut self, addr_a: &A, a: usize, addr_b: &A, b: usize) {
        if a == b {
            return;
        }
        let slot_a = self.slot_of(addr_a, a);
        let slot_b = self.slot_of(addr_b, b);
        if let Some(at) = slot_a {
            self.slots[at] = with_position(self.slots[at], b);
        }
        if let Some(at) = slot_b {
            self.slots[at] = with_position(self.slots[at], a);
        }
    }

    /// Forgets the member at `pos` (address `addr`).
    pub(crate) fn remove<A: Hash>(&mut self, addr: &A, pos: usize) {
        let Some(mut hole) = self.slot_of(addr, pos) else {
            return;
        };
        self.len -= 1;
        let mask = self.slots.len() - 1;
        // Backward-shift deletion: pull later entries of the same run
        // into the hole when their home slot allows it.
        let mut at = (hole + 1) & mask;
        loop {
            let slot = self.slots[at];
            if slot == EMPTY {
                break;
            }
            let home = (slot >> 32) as usize & mask;
            // Whether `home` lies cyclically outside (hole, at].
            let outside = if hole <= at {
                home <= hole || home > at
            } else {
                home <= hole && home > at
            };
            if outside {
                self.slots[hole] = slot;
                hole = at;
            }
            at = (at + 1) & mask;
        }
        self.slots[hole] = EMPTY;
    }

    /// Rebuilds the index after the list was reordered.
    pub(crate) fn rebuild<A: Hash>(&mut self, len: usize, addr_at: impl Fn(usize) -> A) {
        self.slots.iter_mut().for_each(|slot| *slot = EMPTY);
        self.len = 0;
        for pos in 0..len {
            self.insert(&addr_at(pos), pos);
        }
    }
}

/// The position a slot's content points at, unless it is empty.
pub(crate) fn position_in(slot: u64) -> Option<usize> {
    (slot != EMPTY).then(|| position(slot))
}

fn position(slot: u64) -> usize {
    (slot & 0xFFFF_FFFF) as usize
}

fn with_position(slot: u64, pos: usize) -> u64 {
    (slot & !0xFFFF_FFFF) | pos as u64
}

/// SipHash with fixed keys, its low 32 bits: lookups only, never
/// iteration order, depend on it, so the member list's order and every
/// random choice are the same as without the index.
#[allow(deprecated)]
pub(crate) fn hash<A: Hash>(addr: &A) -> u32 {
    let mut hasher = core::hash::SipHasher::new_with_keys(0x5377_6172_6d20_666f, 0x6361_2069_6e64_6578);
    addr.hash(&mut hasher);
    hasher.finish() as u32
}
