/* This Source Code Form is subject to the terms of the Mozilla Public
 * License, v. 2.0. If a copy of the MPL was not distributed with this
 * file, You can obtain one at https://mozilla.org/MPL/2.0/. */
use alloc::vec::Vec;

use bytes::BufMut;

/// A type capable of decoding a (associated) broadcast from a buffer
/// and deciding whether to keep disseminating it for other members
/// of the cluster (when it's new information) or to discard it (when
/// its outdated/stale).
pub trait BroadcastHandler<T> {
    /// A unique identifier for the broadcasts this handler manages
    ///
    /// It should be able to compare itself against an arbitrary number
    /// of other [`Self::Key`] instances and decide wether it
    /// replaces it or not so conflicting/stale information isn't
    /// disseminated.
    type Key: Invalidates;

    /// The error type that `receive_item` may emit. Will be wrapped
    /// by [`crate::Error::CustomBroadcast`].
    type Error: core::error::Error + Send + Sync + 'static;

    /// Decodes a [`Self::Key`] from a buffer and either discards
    /// it or tells Foca to persist and disseminate it.
    ///
    /// `Sender` is `None` when you're adding broadcast data directly,
    /// via [`crate::Foca::add_broadcast`], otherwise it will be the
    /// address of the member that sent the data. Notice that Foca
    /// doesn't track the origin of packets- if you need it you
    /// have to add it to the data you're broadcasting.
    ///
    /// When you receive a broadcast you have to decide whether it's
    /// new information that needs to be disseminated (`Ok(Some(...))`)
    /// or not (`Ok(None)`).
    ///
    /// Always yielding `Some(...)` is wrong because Foca will never
    /// know when to stop sending this information to other members.
    ///
    /// Example: Assume your custom broadcast is a simple Set-Key-Value
    /// operation. When you receive it you should check if your map
    /// contains the Key-Value pair; If it didn't, you yield
    /// `Some`, otherwise the operation is stale, so you yield `None`.
    ///
    /// The `data` parameter is the exact data provided to
    /// [`crate::Foca::add_broadcast`]. When Foca receives N custom
    /// broadcasts at once, this gets called N times.
    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&T>,
    ) -> Result<Option<Self::Key>, Self::Error>;

    /// Decides whether Foca should add broadcast data to the message
    /// it's about to send to active member `T`.
    ///
    /// Normally when Foca sends a message it always tries to include
    /// custom broadcasts alongside the information it actually
    /// cares about; This allows implementations to override this
    /// logic with something else.
    ///
    /// Example: You are running a heterogeneous cluster and some nodes
    /// are always very busy and you'd rather they never have to deal
    /// with the extra cpu/bandwidth cost of receiving/sending
    /// your custom broadcasts.
    ///
    /// Returning `true` tells Foca to proceed as it would normally,
    /// including broadcasts in the messages it sends when it can.
    ///
    /// Returning `false` tells Foca to not include such broadcasts
    /// in the message. It does *not* prevent the message from being
    /// sent, just keeps Foca from attaching extra data to them.
    fn should_add_broadcast_data(&self, _member: &T) -> bool {
        true
    }
}

/// A type that's able to look at another and decide wether it's
/// newer/fresher (i.e. invalidates) than it.
///
/// As you send/receive broadcasts, Foca will hold them for a while
/// as it disseminates the data to other cluster members. This trait
/// helps with replacing data that hasn't been fully disseminated
/// yet but you already know it's stale.
///
/// Example: Assume a versioned broadcast like `{key,version,...}`;
/// After you receive `{K, 0, ...}` and keep it, Foca will be
/// disseminating it. Soon after you receive `{K, 1, ...}` which
/// is a newer version for this broadcast. This trait enables
/// Foca to immediately stop disseminating the previous version,
/// even if it hasn't sent it to everyone it can yet.
pub trait Invalidates {
    /// When `item.invalidates(&other)` it means that Foca will
    /// keep `item` and discard `other` from its dissemination
    /// backlog.
    fn invalidates(&self, other: &Self) -> bool;
}

impl Invalidates for &[u8] {
    fn invalidates(&self, other: &Self) -> bool {
        self.eq(other)
    }
}

// Swarm patch (see PATCH.md): the items live in a slab (`slots`, with a
// free list) and the heap orders 8-byte keys, (remaining_tx, len, slot),
// largest first: the order is upstream's (more transmissions left first,
// then longer first; ties unordered), but a pop moves 8 bytes per level
// instead of a whole entry, and a short item is stored inline instead of
// in its own allocation.
pub(crate) struct Broadcasts<V> {
    slots: Vec<Option<Entry<V>>>,
    free: Vec<u32>,
    heap: alloc::collections::BinaryHeap<u64>,
    // Keys taken by the `fill` under way, pushed back when it ends (an
    // item goes at most once into one message).
    flop: Vec<u64>,
    // No item in the backlog is shorter than this, so `fill` stops once
    // the buffer cannot take the shortest one.
    min_len: usize,
    // With a key hash (items that invalidate each other hash alike), how
    // many items have each hash, so that `add_or_replace` scans the
    // backlog only when one might be replaced.
    key_hash: Option<fn(&V) -> u64>,
    counts: alloc::collections::BTreeMap<u64, u32>,
}

const SLOT_BITS: u32 = 32;
const LEN_BITS: u32 = 16;

fn heap_key(remaining_tx: usize, len: usize, slot: u32) -> u64 {
    let len = len.min((1 << LEN_BITS) - 1) as u64;
    ((remaining_tx as u64) << (SLOT_BITS + LEN_BITS)) | (len << SLOT_BITS) | u64::from(slot)
}

fn remaining_of(key: u64) -> usize {
    (key >> (SLOT_BITS + LEN_BITS)) as usize
}

fn slot_of(key: u64) -> usize {
    (key & ((1 << SLOT_BITS) - 1)) as usize
}

impl<T> Broadcasts<T>
where
    T: Invalidates,
{
    pub(crate) fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            heap: Default::default(),
            flop: Vec::new(),
            min_len: usize::MAX,
            key_hash: None,
            counts: Default::default(),
        }
    }

    // Swarm patch: a backlog whose items invalidate only items with the
    // same `key_hash` (see PATCH.md).
    pub(crate) fn with_key_hash(key_hash: fn(&T) -> u64) -> Self {
        Self {
            key_hash: Some(key_hash),
            ..Self::new()
        }
    }

    // Swarm patch: bookkeeping of `counts` when an item leaves.
    fn forget(counts: &mut alloc::collections::BTreeMap<u64, u32>, hash: u64) {
        if let alloc::collections::btree_map::Entry::Occupied(mut count) = counts.entry(hash) {
            *count.get_mut() -= 1;
            if *count.get() == 0 {
                count.remove();
            }
        }
    }

    // Swarm patch: frees the slot of an item that left the backlog.
    fn release(&mut self, slot: usize) -> Option<Entry<T>> {
        let entry = self.slots.get_mut(slot)?.take();
        self.free.push(slot as u32);
        entry
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub(crate) fn add_or_replace(&mut self, item: T, data: Vec<u8>, max_tx: usize) {
        debug_assert!(max_tx > 0);
        // Swarm patch: skip the scan when no item can be invalidated.
        let scan = match self.key_hash {
            Some(key_hash) => {
                let hash = key_hash(&item);
                let scan = self.counts.contains_key(&hash);
                *self.counts.entry(hash).or_insert(0) += 1;
                scan
            }
            None => true,
        };
        if scan {
            let (slots, free, counts, key_hash) =
                (&mut self.slots, &mut self.free, &mut self.counts, self.key_hash);
            self.heap.retain(|&key| {
                let at = slot_of(key);
                let Some(Some(entry)) = slots.get(at) else {
                    return false;
                };
                if !item.invalidates(&entry.item) {
                    return true;
                }
                if let Some(key_hash) = key_hash {
                    Self::forget(counts, key_hash(&entry.item));
                }
                slots[at] = None;
                free.push(at as u32);
                false
            });
        }
        let len = data.len();
        self.min_len = self.min_len.min(len);
        let entry = Entry {
            data: Data::new(data),
            item,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(entry);
                slot
            }
            None => {
                // Grow by an eighth, not double (a simulation holds
                // thousands of backlogs).
                if self.slots.len() == self.slots.capacity() {
                    self.slots.reserve_exact(self.slots.len() / 8 + 4);
                }
                self.slots.push(Some(entry));
                debug_assert!(self.slots.len() <= 1 << SLOT_BITS);
                (self.slots.len() - 1) as u32
            }
        };
        self.heap.push(heap_key(max_tx, len, slot));
    }

    // Swarm patch: the common loop of `fill` and `fill_with_len_prefix`;
    // `prefix` is 2 when each item is preceded by its length.
    fn fill_impl(&mut self, mut buffer: impl BufMut, max_items: usize, prefix: usize) -> usize {
        if self.heap.is_empty() {
            return 0;
        }
        debug_assert!(self.flop.is_empty());

        let mut num_taken = 0;
        let mut remaining = max_items;

        // Stop once not even the shortest item fits.
        while buffer.has_remaining_mut()
            && buffer.remaining_mut() >= self.min_len.saturating_add(prefix)
            && remaining > 0
        {
            let Some(key) = self.heap.pop() else {
                break;
            };
            let at = slot_of(key);
            let mut remaining_tx = remaining_of(key);
            debug_assert!(remaining_tx > 0);
            let Some(Some(entry)) = self.slots.get(at) else {
                continue;
            };
            let data = entry.data.as_slice();

            if buffer.remaining_mut() >= data.len() + prefix {
                num_taken += 1;
                remaining -= 1;

                if prefix > 0 {
                    debug_assert!(u16::try_from(data.len()).is_ok());
                    buffer.put_u16(data.len() as u16);
                }
                buffer.put_slice(data);
                remaining_tx -= 1;
            }

            if remaining_tx > 0 {
                self.flop.push(heap_key(remaining_tx, data.len(), at as u32));
            } else if let Some(entry) = self.release(at) {
                if let Some(key_hash) = self.key_hash {
                    // The item is done.
                    Self::forget(&mut self.counts, key_hash(&entry.item));
                }
            }
        }

        self.heap.extend(self.flop.drain(..));
        if self.heap.is_empty() {
            self.min_len = usize::MAX;
            self.free.clear();
            self.slots.clear();
            if self.slots.capacity() > 64 {
                self.slots.shrink_to_fit();
                self.heap.shrink_to_fit();
            }
        }

        num_taken
    }

    pub(crate) fn fill(&mut self, buffer: impl BufMut, max_items: usize) -> usize {
        self.fill_impl(buffer, max_items, 0)
    }

    pub(crate) fn fill_with_len_prefix(&mut self, buffer: impl BufMut, max_items: usize) -> usize {
        self.fill_impl(buffer, max_items, 2)
    }
}

// Swarm patch: an item's bytes, inline when short (an update about an
// IPv4 member is 34 bytes in Swarm's codec), boxed otherwise.
const INLINE: usize = 38;

enum Data {
    Inline { len: u8, bytes: [u8; INLINE] },
    Boxed(alloc::boxed::Box<[u8]>),
}

impl Data {
    fn new(data: Vec<u8>) -> Self {
        if data.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..data.len()].copy_from_slice(&data);
            Self::Inline {
                len: data.len() as u8,
                bytes,
            }
        } else {
            Self::Boxed(data.into_boxed_slice())
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Boxed(bytes) => bytes,
        }
    }
}

struct Entry<T> {
    data: Data,
    item: T,
}

#[cfg(test)]
mod tests {

    use super::*;

    struct Key(&'static str);

    impl Invalidates for Key {
        fn invalidates(&self, other: &Self) -> bool {
            self.0 == other.0
        }
    }

    #[test]
    fn piggyback_behaviour() {
        let max_tx = 5;
        let mut piggyback = Broadcasts::new();

        assert!(piggyback.is_empty(), "Piggyback starts empty");

        piggyback.add_or_replace(Key("AA"), b"AAabc".to_vec(), max_tx);

        assert_eq!(1, piggyback.len());

        piggyback.add_or_replace(Key("AA"), b"AAcba".to_vec(), max_tx);

        assert_eq!(
            1,
            piggyback.len(),
            "add_or_replace with same key should replace"
        );

        let mut buf = Vec::new();

        for _i in 0..max_tx {
            buf.clear();
            let num_items = piggyback.fill(&mut buf, usize::MAX);
            assert_eq!(1, num_items);
            assert_eq!(
                b"AAcba",
                &buf[..],
                "Should transmit an item at most max_tx times"
            );
        }

        assert!(
            piggyback.is_empty(),
            "Should remove item after being used max_tx times"
        );
    }

    // Swarm patch: a backlog with a key hash replaces exactly what the
    // scan would have, also after items left it.
    #[test]
    fn key_hash_backlog_replaces_like_the_scan() {
        fn first_byte(key: &Key) -> u64 {
            u64::from(key.0.as_bytes()[0])
        }
        let mut indexed = Broadcasts::with_key_hash(first_byte);
        let mut plain = Broadcasts::new();
        let keys = ["aa", "ab", "ba", "aa", "ca", "ab", "ba", "aa", "cb", "ca"];
        for (round, key) in keys.iter().enumerate() {
            indexed.add_or_replace(Key(key), key.as_bytes().to_vec(), 2);
            plain.add_or_replace(Key(key), key.as_bytes().to_vec(), 2);
            assert_eq!(plain.len(), indexed.len(), "round {round}");
            if round % 3 == 2 {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                assert_eq!(plain.fill(&mut a, 3), indexed.fill(&mut b, 3));
                assert_eq!(plain.len(), indexed.len(), "round {round}");
            }
        }
        let mut buf = Vec::new();
        while !indexed.is_empty() {
            buf.clear();
            let _ = indexed.fill(&mut buf, usize::MAX);
        }
        assert!(indexed.counts.is_empty(), "every item left the counts");
    }

    // Swarm patch: the slab backlog takes items in upstream's order (most
    // transmissions left, then longest, first) through adds, replacements,
    // items running out and slots being reused; long items are boxed.
    #[test]
    fn slab_backlog_takes_items_in_order() {
        use alloc::vec;
        struct Id(u8);
        impl Invalidates for Id {
            fn invalidates(&self, other: &Self) -> bool {
                self.0 == other.0
            }
        }
        // Item `k` is `k + 1` bytes of `k` (lengths differ: no ties).
        let data = |k: u8| vec![k; usize::from(k) + 1];
        let mut backlog = Broadcasts::with_key_hash(|id: &Id| u64::from(id.0 % 4));
        // The model: (key, remaining transmissions).
        let mut model: Vec<(u8, usize)> = Vec::new();
        let mut seed = 7u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 16) as usize
        };
        for round in 0..400 {
            if next() % 3 > 0 {
                let k = (next() % 48) as u8;
                let tx = 1 + next() % 4;
                backlog.add_or_replace(Id(k), data(k), tx);
                model.retain(|(key, _)| *key != k);
                model.push((k, tx));
            } else {
                let take = 1 + next() % 6;
                let mut buf = Vec::new();
                let taken = backlog.fill(&mut buf, take);
                model.sort_by(|a, b| (b.1, b.0).cmp(&(a.1, a.0)));
                let mut expected = Vec::new();
                for (key, remaining) in model.iter_mut().take(take) {
                    expected.extend(data(*key));
                    *remaining -= 1;
                }
                assert_eq!(taken, take.min(model.len()), "round {round}");
                model.retain(|(_, remaining)| *remaining > 0);
                assert_eq!(buf, expected, "round {round}");
            }
            assert_eq!(backlog.len(), model.len(), "round {round}");
        }
    }

    #[test]
    fn fill_does_nothing_if_buffer_full() {
        let mut piggyback = Broadcasts::new();
        piggyback.add_or_replace(Key("a "), b"a super long value".to_vec(), 1);

        let buf = bytes::BytesMut::new();
        let mut limited = buf.limit(5);

        let num_items = piggyback.fill(&mut limited, usize::MAX);

        assert_eq!(0, num_items);
        assert_eq!(5, limited.remaining_mut());
        assert_eq!(1, piggyback.len());
    }

    #[test]
    fn piggyback_consumes_largest_first() {
        let max_tx = 10;
        let mut piggyback = Broadcasts::new();

        piggyback.add_or_replace(Key("00"), b"00hi".to_vec(), max_tx);
        piggyback.add_or_replace(Key("01"), b"01hello".to_vec(), max_tx);
        piggyback.add_or_replace(Key("02"), b"02hey".to_vec(), max_tx);

        let mut buf = Vec::new();
        let num_items = piggyback.fill(&mut buf, usize::MAX);

        assert_eq!(3, num_items);
        assert_eq!(b"01hello02hey00hi", &buf[..]);
    }

    #[test]
    fn highest_max_tx_is_consumed_first() {
        let mut piggyback = Broadcasts::new();

        // 3 items, same byte size, distinct max_tx
        piggyback.add_or_replace(Key("10"), b"100".to_vec(), 1);
        piggyback.add_or_replace(Key("20"), b"200".to_vec(), 2);
        piggyback.add_or_replace(Key("30"), b"300".to_vec(), 3);

        let mut buf = Vec::new();
        piggyback.fill(&mut buf, usize::MAX);
        assert_eq!(b"300200100", &buf[..]);

        buf.clear();
        piggyback.fill(&mut buf, usize::MAX);
        assert_eq!(b"300200", &buf[..]);

        buf.clear();
        piggyback.fill(&mut buf, usize::MAX);
        assert_eq!(b"300", &buf[..]);

        assert_eq!(0, piggyback.len());
    }

    #[test]
    fn piggyback_respects_limit() {
        let max_tx = 10;
        let mut piggyback = Broadcasts::new();

        piggyback.add_or_replace(Key("fo"), b"foo".to_vec(), max_tx);
        piggyback.add_or_replace(Key("ba"), b"bar".to_vec(), max_tx);
        piggyback.add_or_replace(Key("ba"), b"baz".to_vec(), max_tx);

        let mut buf = Vec::new();
        let num_items = piggyback.fill(&mut buf, 0);

        assert_eq!(0, num_items);
        assert!(buf.is_empty());

        let num_items = piggyback.fill(&mut buf, 2);
        assert_eq!(2, num_items);
    }

    #[test]
    fn fill_with_len_prefix() {
        let mut bcs = Broadcasts::new();

        bcs.add_or_replace(Key("fo"), b"foo".to_vec(), 10);
        bcs.add_or_replace(Key("ba"), b"barr".to_vec(), 10);
        bcs.add_or_replace(Key("ba"), b"bazz".to_vec(), 10);

        let mut buf = Vec::new();
        let num_items = bcs.fill_with_len_prefix(&mut buf, 0);

        assert_eq!(0, num_items);
        assert!(buf.is_empty());

        let num_items = bcs.fill_with_len_prefix(&mut buf, 2);
        assert_eq!(2, num_items);

        use bytes::Buf;
        let mut buf = &buf[..];
        assert_eq!(4, buf.get_u16());
        assert_eq!(&b"bazz"[..], &buf[..4]);
        buf.advance(4);
        assert_eq!(3, buf.get_u16());
        assert_eq!(&b"foo"[..], &buf[..3]);
        buf.advance(3);
        assert!(buf.is_empty());
    }
}
