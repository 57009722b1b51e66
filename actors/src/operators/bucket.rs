//! Token buckets by key (a source address, or a forwarding node and
//! source): what lets a password login reach the hashing at all. Checked
//! before any work, on the node serving the admin API and again on the head
//! leader; the map is bounded, so keys an attacker makes up cost a fixed
//! amount of memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Password logins one source may start at once, on each node.
pub const LOGIN_BURST: u32 = 8;
/// How fast a source's logins come back, per second.
pub const LOGIN_REFILL_PER_S: f64 = 1.0;

/// Token buckets: `burst` tokens each, refilled at `per_s` a second.
#[derive(Debug)]
pub struct Buckets<K> {
    burst: f64,
    per_s: f64,
    buckets: HashMap<K, Bucket>,
    /// Most keys remembered; beyond it, full buckets are forgotten first,
    /// then the one idle longest.
    max_keys: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    /// Buckets of `burst` tokens refilled at `per_s` a second, at most
    /// `max_keys` of them.
    #[must_use]
    pub fn new(burst: u32, per_s: f64, max_keys: usize) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            per_s: per_s.max(f64::MIN_POSITIVE),
            buckets: HashMap::new(),
            max_keys: max_keys.max(1),
        }
    }

    /// The buckets of password logins by source: [`LOGIN_BURST`],
    /// [`LOGIN_REFILL_PER_S`], 65,536 sources.
    #[must_use]
    pub fn logins() -> Self {
        Self::new(LOGIN_BURST, LOGIN_REFILL_PER_S, 65_536)
    }

    /// Takes a token of `key`'s bucket at `now`.
    ///
    /// # Errors
    ///
    /// The bucket is empty: how long until it holds a token again.
    pub fn take(&mut self, key: &K, now: Instant) -> Result<(), Duration> {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max_keys {
            self.forget(now);
        }
        let (burst, per_s) = (self.burst, self.per_s);
        let bucket = self.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_s).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_s))
        }
    }

    /// Makes room for a key: drops the buckets that refilled (they are as
    /// good as new), or else the one untouched longest.
    fn forget(&mut self, now: Instant) {
        let (burst, per_s) = (self.burst, self.per_s);
        self.buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_s < burst
        });
        if self.buckets.len() >= self.max_keys {
            let oldest = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.at)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.buckets.remove(&oldest);
            }
        }
    }
}

/// The address a limit counts `ip` under: IPv4 as is, IPv6 by its /64 (one
/// host holds a whole /64, so counting single addresses would not limit
/// it), IPv4-mapped IPv6 as the IPv4 address.
#[must_use]
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                for s in &mut segments[4..] {
                    *s = 0;
                }
                IpAddr::V6(segments.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refuses_past_its_burst_until_it_refills() {
        let mut b = Buckets::new(3, 2.0, 16);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(b.take(&1u8, t0).is_ok());
        }
        let wait = b.take(&1u8, t0).unwrap_err();
        assert!(wait <= Duration::from_millis(500) && wait > Duration::ZERO);
        assert!(b.take(&2u8, t0).is_ok(), "another key has its own bucket");
        assert!(b.take(&1u8, t0 + Duration::from_millis(500)).is_ok());
        assert!(b.take(&1u8, t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn the_map_stays_bounded_and_forgets_full_buckets_first() {
        let mut b = Buckets::new(2, 1.0, 4);
        let t0 = Instant::now();
        b.take(&0u32, t0).unwrap();
        b.take(&0u32, t0).unwrap();
        for k in 1..1000u32 {
            let _ = b.take(&k, t0 + Duration::from_millis(u64::from(k)));
            assert!(b.buckets.len() <= 4);
        }
    }

    #[test]
    fn ipv6_sources_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(source_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }
}
