//! A fixed log-scale histogram of durations with relaxed atomic buckets:
//! two buckets per power of two from 128 ns to ~34 s (a value is known to
//! within ±21%), one below and one above. Recording is one
//! `leading_zeros` and one relaxed add.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The smallest octave kept apart: 2^7 ns = 128 ns.
const MIN_OCTAVE: u32 = 7;
/// The largest: 2^35 ns ≈ 34 s.
const MAX_OCTAVE: u32 = 35;
/// Buckets: one below 128 ns, two per octave, one above.
pub(crate) const BUCKETS: usize = 2 + 2 * (MAX_OCTAVE - MIN_OCTAVE) as usize;

/// Durations, bucketed.
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    /// Sum of recorded values, ns.
    sum: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
        }
    }
}

/// The bucket a value in nanoseconds falls into.
fn bucket(ns: u64) -> usize {
    if ns < 1 << MIN_OCTAVE {
        return 0;
    }
    let octave = 63 - ns.leading_zeros();
    if octave >= MAX_OCTAVE {
        return BUCKETS - 1;
    }
    // The bit below the leading one picks the half of the octave.
    let half = (ns >> (octave - 1)) & 1;
    1 + 2 * (octave - MIN_OCTAVE) as usize + half as usize
}

/// The upper bound of a bucket, in nanoseconds (`f64::INFINITY` for the last).
pub(crate) fn upper_bound(index: usize) -> f64 {
    if index == 0 {
        return f64::from(1u32 << MIN_OCTAVE);
    }
    if index >= BUCKETS - 1 {
        return f64::INFINITY;
    }
    let octave = MIN_OCTAVE + ((index - 1) / 2) as u32;
    let base = 2f64.powi(octave as i32);
    if (index - 1).is_multiple_of(2) {
        base * 1.5
    } else {
        base * 2.0
    }
}

fn lower_bound(index: usize) -> f64 {
    if index == 0 {
        0.0
    } else {
        upper_bound(index - 1)
    }
}

impl Histogram {
    pub(crate) fn record(&self, value: Duration) {
        let ns = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(ns, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum_ns: self.sum.load(Ordering::Relaxed),
        }
    }
}

/// A histogram read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistogramSnapshot {
    pub(crate) buckets: [u64; BUCKETS],
    pub(crate) sum_ns: u64,
}

impl Default for HistogramSnapshot {
    fn default() -> Self {
        Self {
            buckets: [0; BUCKETS],
            sum_ns: 0,
        }
    }
}

impl HistogramSnapshot {
    /// The buckets holding values, for the data model.
    pub(crate) fn durations(&self) -> super::model::Durations {
        super::model::Durations {
            sum_ns: self.sum_ns,
            buckets: self
                .buckets
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| (u16::try_from(i).unwrap_or(u16::MAX), *n))
                .collect(),
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The `q` quantile in nanoseconds (0 with no samples), interpolated
    /// within its bucket.
    pub(crate) fn quantile(&self, q: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return 0.0;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if (seen + n) as f64 >= rank {
                let (lo, hi) = (lower_bound(i), upper_bound(i));
                if !hi.is_finite() {
                    return lo;
                }
                let within = (rank - seen as f64) / n as f64;
                return lo + (hi - lo) * within;
            }
            seen += n;
        }
        lower_bound(BUCKETS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_cover_every_value() {
        let mut last = 0;
        for shift in 0..64 {
            for ns in [1u64 << shift, (1u64 << shift) + (1u64 << shift) / 2] {
                let b = bucket(ns);
                assert!(b >= last, "{ns}");
                assert!(b < BUCKETS);
                assert!(
                    ns as f64 <= upper_bound(b) && ns as f64 >= lower_bound(b),
                    "{ns} in {b}"
                );
                last = b;
            }
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_are_within_a_bucket_of_the_truth() {
        let h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 1000);
        for (q, truth) in [(0.5, 500e3), (0.99, 990e3), (0.1, 100e3)] {
            let got = s.quantile(q);
            assert!((got - truth).abs() / truth < 0.25, "q{q}: {got} vs {truth}");
        }
        assert_eq!(Histogram::default().snapshot().quantile(0.5), 0.0);
    }
}
