//! How a [`ServiceRef`](super::ServiceRef) chooses an instance: each
//! strategy is a pure function over the live instances' figures, so it is
//! tested without nodes.

/// How a [`ServiceRef`](super::ServiceRef) chooses an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Strategy {
    /// Each instance in turn.
    RoundRobin,
    /// The instance with the fewest requests in flight from this node.
    LeastOutstanding,
    /// Two instances at random, then the one with the lower
    /// EWMA latency × (requests in flight + 1). The default: it follows
    /// load without herding onto one instance. Latency estimates fade
    /// within about a second without new samples, so a slow instance is
    /// retried now and then and gets its traffic back when it recovers.
    #[default]
    PowerOfTwoEwma,
    /// The instance owning the message's key on a hash ring
    /// ([`ServiceRef::send_keyed`](super::ServiceRef::send_keyed)); when an
    /// instance joins or leaves, only the keys it owns move. Plain `send`
    /// uses round robin.
    ConsistentHash,
}

/// Round robin: the instance at `cursor`, wrapped.
pub(crate) fn round_robin(live: usize, cursor: usize) -> Option<usize> {
    (live > 0).then(|| cursor % live)
}

/// The instance with the fewest requests in flight; ties go to the first
/// one from `cursor` on, so equal instances take turns.
pub(crate) fn least_outstanding(outstanding: &[u32], cursor: usize) -> Option<usize> {
    let n = outstanding.len();
    (0..n)
        .map(|k| (cursor + k) % n)
        .min_by_key(|&i| outstanding.get(i).copied().unwrap_or(u32::MAX))
}

/// Power of two choices: two distinct instances drawn from `a` and `b`
/// (random numbers), then the one with the lower score (lower wins).
pub(crate) fn power_of_two(scores: &[u128], a: u64, b: u64) -> Option<usize> {
    let n = scores.len();
    if n == 0 {
        return None;
    }
    let first = (a % n as u64) as usize;
    if n == 1 {
        return Some(first);
    }
    let mut second = (b % (n as u64 - 1)) as usize;
    if second >= first {
        second += 1;
    }
    match (scores.get(first), scores.get(second)) {
        (Some(x), Some(y)) if y < x => Some(second),
        _ => Some(first),
    }
}

/// The score P2C compares: latency (ns) × (requests in flight + 1).
pub(crate) fn p2c_score(latency_ns: u64, outstanding: u32) -> u128 {
    (u128::from(latency_ns) + 1) * (u128::from(outstanding) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_visits_each_in_turn_and_none_when_empty() {
        let picks: Vec<usize> = (0..6).filter_map(|c| round_robin(3, c)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        assert_eq!(round_robin(0, 5), None);
    }

    #[test]
    fn least_outstanding_picks_the_idlest_and_rotates_ties() {
        assert_eq!(least_outstanding(&[3, 1, 2], 0), Some(1));
        assert_eq!(least_outstanding(&[0, 0, 0], 0), Some(0));
        assert_eq!(least_outstanding(&[0, 0, 0], 1), Some(1));
        assert_eq!(least_outstanding(&[0, 0, 0], 5), Some(2));
        assert_eq!(least_outstanding(&[], 0), None);
    }

    #[test]
    fn power_of_two_draws_two_distinct_and_keeps_the_lower_score() {
        let scores = [p2c_score(100, 0), p2c_score(10, 0), p2c_score(1000, 0)];
        // Every pair of draws compares two distinct instances.
        for a in 0..3 {
            for b in 0..2 {
                let pick = power_of_two(&scores, a, b).unwrap();
                let first = a as usize;
                let second = if (b as usize) >= first {
                    b as usize + 1
                } else {
                    b as usize
                };
                assert_ne!(first, second);
                let best = if scores[second] < scores[first] {
                    second
                } else {
                    first
                };
                assert_eq!(pick, best);
            }
        }
        // The slowest instance is never picked over either other one.
        assert!((0..100).all(|a| (0..100).all(|b| power_of_two(&scores, a, b) != Some(2))));
        assert_eq!(power_of_two(&[7], 9, 9), Some(0));
        assert_eq!(power_of_two(&[], 1, 2), None);
    }

    #[test]
    fn p2c_score_weighs_latency_by_load() {
        assert!(p2c_score(100, 0) < p2c_score(100, 1));
        assert!(p2c_score(100, 3) > p2c_score(300, 0));
        assert!(p2c_score(0, 0) > 0);
    }
}
