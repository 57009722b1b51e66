//! The pool of accepted connections that have sent nothing yet. Each waits
//! for its first byte holding no handshake slot and no buffer, under a
//! deadline that shortens as the pool fills (spread over its last quarter,
//! so connections accepted together do not expire together); when the pool is full, the
//! oldest is pushed out to admit the new one. Running the tasks and the
//! handshake that follows the first byte is the listener's business.
//!
//! Why the oldest goes, not the newcomer: a peer dialing us writes its
//! first handshake message at once, so its connection leaves the pool
//! within a round trip; only connections that stay silent grow old in it.
//! Refusing newcomers when full would let a flood that refills the pool
//! as fast as its deadlines expire turn away every real peer; pushing out
//! the oldest costs the flood its connections and real peers nothing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::AbortHandle;

/// Silent connections waiting for their first byte, oldest first.
#[derive(Debug)]
pub(super) struct SilentPool {
    /// How many may wait at once.
    capacity: usize,
    /// The deadline while the pool is at most half full (`first_byte_timeout`).
    full_deadline: Duration,
    /// By ticket: tickets grow, so the first entry is the oldest.
    waiting: BTreeMap<u64, Waiting>,
    /// The next ticket.
    next: u64,
}

/// One waiting connection: whom to name in the log and how to close it.
#[derive(Debug)]
struct Waiting {
    remote: SocketAddr,
    /// Aborting the task drops the socket (and its per-source count).
    task: Option<AbortHandle>,
}

/// A place in the pool, given to a connection as it is accepted.
#[derive(Debug)]
pub(super) struct Ticket {
    /// Identifies the place for [`SilentPool::attach`] and [`SilentPool::leave`].
    pub(super) id: u64,
    /// How long the connection may stay silent.
    pub(super) deadline: Duration,
}

/// A connection pushed out of the full pool to make room.
#[derive(Debug)]
pub(super) struct PushedOut {
    /// Who it came from.
    pub(super) remote: SocketAddr,
    /// Its task, which the caller MUST abort (outside any borrow of the pool).
    pub(super) task: Option<AbortHandle>,
}

impl SilentPool {
    pub(super) fn new(capacity: usize, full_deadline: Duration) -> Self {
        Self {
            capacity: capacity.max(1),
            full_deadline,
            waiting: BTreeMap::new(),
            next: 0,
        }
    }

    /// Admits a connection from `remote`. If the pool was full, the oldest
    /// connection makes room and is returned. The deadline depends on how
    /// full the pool is with the new one in it.
    pub(super) fn admit(&mut self, remote: SocketAddr) -> (Ticket, Option<PushedOut>) {
        let pushed = if self.waiting.len() >= self.capacity {
            self.waiting.pop_first().map(|(_, w)| PushedOut {
                remote: w.remote,
                task: w.task,
            })
        } else {
            None
        };
        let id = self.next;
        self.next += 1;
        self.waiting.insert(id, Waiting { remote, task: None });
        let deadline = deadline(self.full_deadline, self.waiting.len(), self.capacity);
        let deadline = deadline.mul_f64(spread(id));
        (Ticket { id, deadline }, pushed)
    }

    /// Records the task that waits for ticket `id`, so that it can be
    /// pushed out. Does nothing if the ticket left already.
    pub(super) fn attach(&mut self, id: u64, task: AbortHandle) {
        if let Some(waiting) = self.waiting.get_mut(&id) {
            waiting.task = Some(task);
        }
    }

    /// The connection of ticket `id` spoke, closed, timed out or was
    /// pushed out. Returns whether it was still in the pool.
    pub(super) fn leave(&mut self, id: u64) -> bool {
        self.waiting.remove(&id).is_some()
    }

    /// Connections waiting now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.waiting.len()
    }
}

/// How many silent connections may wait at once: `configured`, but at
/// most three quarters of the process's file descriptor limit, so that a
/// full pool leaves descriptors for links, handshakes and files (a pool
/// that could take them all would turn real peers away with `EMFILE`).
pub(super) fn capacity(configured: usize, fd_limit: Option<usize>) -> usize {
    let by_fds = fd_limit.map_or(usize::MAX, |limit| limit - limit / 4);
    configured.min(by_fds).max(1)
}

/// How long a connection admitted as the `waiting`th of `capacity` may stay
/// silent: `full` while the pool is at most half full, then less the
/// fuller it is, down to [`MIN_DEADLINE`] (or `full`, if shorter) when full.
pub(super) fn deadline(full: Duration, waiting: usize, capacity: usize) -> Duration {
    let capacity = capacity.max(1);
    let half = capacity / 2;
    if waiting <= half {
        return full;
    }
    let shortest = full.min(MIN_DEADLINE);
    let pressure = (waiting - half) as f64 / (capacity - half) as f64;
    full.saturating_sub((full - shortest).mul_f64(pressure.min(1.0)))
}

/// A factor in [0.75, 1) that differs from ticket to ticket (a
/// multiplicative hash), so that connections accepted together do not all
/// time out, and a flood does not reconnect them, in one burst.
fn spread(id: u64) -> f64 {
    let fraction = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f64 / (1u64 << 24) as f64;
    1.0 - fraction / 4.0
}

/// The deadline of a silent connection when the pool is full: a peer on
/// the other side of the world writes its first message well within it.
pub(super) const MIN_DEADLINE: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 2], port))
    }

    #[test]
    fn deadline_is_the_full_timeout_up_to_half_full_then_shrinks_to_the_minimum() {
        let full = Duration::from_secs(2);
        assert_eq!(deadline(full, 1, 1000), full);
        assert_eq!(deadline(full, 500, 1000), full);
        let three_quarters = deadline(full, 750, 1000);
        assert!(
            three_quarters < full && three_quarters > MIN_DEADLINE,
            "{three_quarters:?}"
        );
        assert_eq!(deadline(full, 1000, 1000), MIN_DEADLINE);
        assert_eq!(deadline(full, 5000, 1000), MIN_DEADLINE);
        // A first-byte timeout shorter than the minimum is kept as it is.
        let short = Duration::from_millis(20);
        assert_eq!(deadline(short, 1000, 1000), short);
        // Degenerate capacities do not divide by zero.
        assert_eq!(deadline(full, 1, 1), MIN_DEADLINE);
        assert_eq!(deadline(full, 0, 0), full);
        assert_eq!(deadline(full, 1, 0), MIN_DEADLINE);
    }

    #[test]
    fn a_full_pool_pushes_out_its_oldest_connection_to_admit_a_new_one() {
        let mut pool = SilentPool::new(3, Duration::from_secs(2));
        let tickets: Vec<Ticket> = (1..=3)
            .map(|port| {
                let (ticket, pushed) = pool.admit(remote(port));
                assert!(pushed.is_none());
                ticket
            })
            .collect();
        assert_eq!(pool.len(), 3);
        // The first one spoke and left: room for one more without pushing.
        assert!(pool.leave(tickets[0].id));
        assert!(pool.admit(remote(4)).1.is_none());
        // Full again: the oldest still waiting (port 2) makes room.
        let (_, pushed) = pool.admit(remote(5));
        assert_eq!(pushed.map(|p| p.remote), Some(remote(2)));
        assert_eq!(pool.len(), 3);
        // Its task leaving later changes nothing.
        assert!(!pool.leave(tickets[1].id));
        assert_eq!(pool.len(), 3);
    }

    #[test]
    fn tickets_admitted_together_get_deadlines_spread_over_a_quarter() {
        let mut pool = SilentPool::new(1000, Duration::from_secs(2));
        let deadlines: Vec<Duration> = (0..100).map(|p| pool.admit(remote(p)).0.deadline).collect();
        let (min, max) = (
            *deadlines.iter().min().unwrap(),
            *deadlines.iter().max().unwrap(),
        );
        assert!(min >= Duration::from_millis(1500), "{min:?}");
        assert!(max <= Duration::from_secs(2), "{max:?}");
        assert!(max - min > Duration::from_millis(300), "{min:?}..{max:?}");
    }

    #[test]
    fn capacity_leaves_a_quarter_of_the_file_descriptors() {
        assert_eq!(capacity(16_384, Some(20_000)), 15_000);
        assert_eq!(capacity(16_384, Some(1_024)), 768);
        assert_eq!(capacity(16_384, Some(1_000_000)), 16_384);
        assert_eq!(capacity(16_384, None), 16_384);
        assert_eq!(capacity(16_384, Some(0)), 1);
    }
}
