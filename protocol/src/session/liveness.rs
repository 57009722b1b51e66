//! The liveness timer of a link: heartbeat pings when nothing was sent for
//! a while (and every few intervals on a busy link, so that its round trip
//! stays measured), a close when nothing arrived for too long, and a
//! goodbye when no user traffic moved for the idle timeout. Time is a `Duration` since
//! any fixed origin the driver picks.

use std::time::Duration;

/// The timers of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessConfig {
    /// A ping is sent when nothing was sent for this long.
    pub heartbeat_interval: Duration,
    /// The link is closed when nothing arrived for this long.
    pub heartbeat_timeout: Duration,
    /// The link is closed (with a goodbye) after this long without user
    /// traffic either way; it is reopened on demand.
    pub idle_timeout: Duration,
}

/// Why the session wants the link closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// Nothing arrived from the peer for this long.
    PeerSilent(Duration),
    /// No user traffic moved for this long.
    Idle(Duration),
}

/// What the driver must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send a ping (nothing was sent for a heartbeat interval).
    Ping,
    /// Send a goodbye (with this reason), then close the link.
    Goodbye(Silence),
    /// Close the link without a word: the peer is silent, a goodbye
    /// would not arrive.
    Close(Silence),
}

/// The liveness state of one link.
#[derive(Debug, Clone)]
pub struct Liveness {
    config: LivenessConfig,
    last_rx: Duration,
    last_tx: Duration,
    last_user: Duration,
    /// When the last ping was due: a busy link never goes a heartbeat
    /// interval without sending, yet its round trip (timed by the pong)
    /// is shown to operators.
    last_ping: Duration,
    /// While true, silence from the peer is our doing (the reader waits on
    /// a full local mailbox), so it does not count against the peer.
    reader_waiting: bool,
    /// Set once the session decided to close; nothing more is decided.
    closing: bool,
    actions: Vec<Action>,
}

impl Liveness {
    /// A fresh link at `now`.
    pub fn new(config: LivenessConfig, now: Duration) -> Self {
        Self {
            config,
            last_rx: now,
            last_tx: now,
            last_user: now,
            last_ping: now,
            reader_waiting: false,
            closing: false,
            actions: Vec::new(),
        }
    }

    /// Bytes arrived from the peer; `user` if they held a tell, ask or reply.
    pub fn handle_received(&mut self, now: Duration, user: bool) {
        self.last_rx = self.last_rx.max(now);
        if user {
            self.last_user = self.last_user.max(now);
        }
    }

    /// Bytes were written to the peer; `user` if they held a tell, ask or reply.
    pub fn handle_sent(&mut self, now: Duration, user: bool) {
        self.last_tx = self.last_tx.max(now);
        if user {
            self.last_user = self.last_user.max(now);
        }
    }

    /// The reader waits for a full local mailbox (`true`) or reads again
    /// (`false`, at `now`: the wait does not count as silence).
    pub fn set_reader_waiting(&mut self, waiting: bool, now: Duration) {
        self.reader_waiting = waiting;
        if !waiting {
            self.last_rx = self.last_rx.max(now);
        }
    }

    /// When [`Liveness::handle_timeout`] should next be called (time since
    /// the origin); `None` once the session decided to close.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.closing {
            return None;
        }
        let c = &self.config;
        let ping = (self.last_tx + c.heartbeat_interval).min(self.rtt_sample_due());
        let idle = self.last_user + c.idle_timeout;
        let next = ping.min(idle);
        if self.reader_waiting {
            // Silence does not count while we are the ones not reading.
            return Some(next);
        }
        Some(next.min(self.last_rx + c.heartbeat_timeout))
    }

    /// Whether [`Liveness::handle_timeout`] at `now` would close the
    /// session for the peer's silence. A driver whose reads may lag (a
    /// starved process) reads what already waits first, then decides.
    pub fn peer_silent(&self, now: Duration) -> bool {
        !self.closing
            && !self.reader_waiting
            && now.saturating_sub(self.last_rx) >= self.config.heartbeat_timeout
    }

    /// Time passed: decides what is due at `now` (see [`Liveness::poll_action`]).
    pub fn handle_timeout(&mut self, now: Duration) {
        if self.closing {
            return;
        }
        let c = self.config;
        let silent = now.saturating_sub(self.last_rx);
        if silent >= c.heartbeat_timeout && !self.reader_waiting {
            self.closing = true;
            self.actions
                .push(Action::Close(Silence::PeerSilent(silent)));
            return;
        }
        let idle = now.saturating_sub(self.last_user);
        if idle >= c.idle_timeout {
            self.closing = true;
            self.actions.push(Action::Goodbye(Silence::Idle(idle)));
            return;
        }
        if now.saturating_sub(self.last_tx) >= c.heartbeat_interval || now >= self.rtt_sample_due()
        {
            // Counted as sent now, so one ping goes per interval even if
            // the driver's queue is full and the ping is dropped.
            self.last_tx = now;
            self.last_ping = now;
            self.actions.push(Action::Ping);
        }
    }

    /// When a busy link pings anyway, to time its round trip: every
    /// [`RTT_SAMPLE_INTERVALS`] heartbeat intervals.
    fn rtt_sample_due(&self) -> Duration {
        let every = self
            .config
            .heartbeat_interval
            .saturating_mul(RTT_SAMPLE_INTERVALS);
        self.last_ping.saturating_add(every)
    }

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        if self.actions.is_empty() {
            None
        } else {
            Some(self.actions.remove(0))
        }
    }

    /// Whether the session decided to close.
    pub fn is_closing(&self) -> bool {
        self.closing
    }
}

/// A busy link pings once in this many heartbeat intervals (an idle one
/// every interval): 5.6 s at the default 700 ms. Each sample costs a frame
/// each way on both sides; a head leader with thousands of busy links
/// pays for them all.
const RTT_SAMPLE_INTERVALS: u32 = 8;

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LivenessConfig {
        LivenessConfig {
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    /// Runs the timer from `from` to `to` as a driver would, answering
    /// every ping with traffic from the peer when `peer_answers`.
    fn run(l: &mut Liveness, to: Duration, peer_answers: bool) -> Vec<(Duration, Action)> {
        let mut seen = Vec::new();
        let mut last = None;
        while let Some(at) = l.poll_timeout() {
            if at > to {
                break;
            }
            assert!(
                last.is_none_or(|prev| at > prev),
                "the deadline did not move: {at:?}"
            );
            last = Some(at);
            l.handle_timeout(at);
            while let Some(action) = l.poll_action() {
                seen.push((at, action));
                if action == Action::Ping {
                    l.handle_sent(at, false);
                    if peer_answers {
                        l.handle_received(at + s(0.001), false);
                    }
                }
            }
        }
        seen
    }

    #[test]
    fn a_quiet_link_pings_once_per_interval_and_stays_up_while_the_peer_answers() {
        let mut l = Liveness::new(config(), Duration::ZERO);
        let seen = run(&mut l, s(60.0), true);
        let pings = seen.iter().filter(|(_, a)| *a == Action::Ping).count();
        assert!((59..=61).contains(&pings), "{pings} pings in 60 s");
        assert!(!l.is_closing());
        // Pings are spaced by the interval.
        for pair in seen.windows(2) {
            assert!(pair[1].0 - pair[0].0 >= s(0.999), "{pair:?}");
        }
    }

    #[test]
    fn a_silent_peer_is_closed_after_the_heartbeat_timeout_without_a_goodbye() {
        let mut l = Liveness::new(config(), Duration::ZERO);
        let seen = run(&mut l, s(60.0), false);
        let (at, last) = *seen.last().unwrap();
        assert!(matches!(last, Action::Close(Silence::PeerSilent(d)) if d >= s(10.0)));
        assert!(at >= s(10.0) && at <= s(11.0), "closed at {at:?}");
        assert_eq!(l.poll_timeout(), None);
    }

    #[test]
    fn an_idle_link_says_goodbye_after_the_idle_timeout() {
        let mut l = Liveness::new(config(), Duration::ZERO);
        l.handle_sent(s(5.0), true);
        let seen = run(&mut l, s(1000.0), true);
        let (at, last) = *seen.last().unwrap();
        assert!(
            matches!(last, Action::Goodbye(Silence::Idle(_))),
            "{last:?}"
        );
        assert!(at >= s(305.0) && at <= s(306.0), "goodbye at {at:?}");
    }

    #[test]
    fn user_traffic_keeps_the_link_from_going_idle() {
        let mut l = Liveness::new(config(), Duration::ZERO);
        for minute in 1..20 {
            l.handle_received(s(f64::from(minute) * 60.0), true);
            let seen = run(&mut l, s(f64::from(minute) * 60.0 + 59.0), true);
            assert!(seen.iter().all(|(_, a)| *a == Action::Ping));
        }
    }

    #[test]
    fn waiting_on_a_full_mailbox_is_not_the_peers_silence() {
        let mut l = Liveness::new(config(), Duration::ZERO);
        l.set_reader_waiting(true, s(1.0));
        let seen = run(&mut l, s(30.0), false);
        assert!(seen.iter().all(|(_, a)| *a == Action::Ping), "{seen:?}");
        l.set_reader_waiting(false, s(30.0));
        let seen = run(&mut l, s(45.0), false);
        let (at, last) = *seen.last().unwrap();
        assert!(matches!(last, Action::Close(Silence::PeerSilent(_))));
        assert!(
            at >= s(40.0),
            "the wait counted as silence: closed at {at:?}"
        );
    }

    #[test]
    fn traffic_sent_postpones_pings_to_one_round_trip_sample_every_few_intervals() {
        let mut l = Liveness::new(config(), Duration::ZERO);
        let mut pings = Vec::new();
        for tenth in 1..200 {
            let now = s(f64::from(tenth) / 10.0);
            l.handle_sent(now, true);
            l.handle_received(now, true);
            assert!(l.poll_timeout().is_some_and(|at| at <= now + s(8.0)));
            l.handle_timeout(now);
            while let Some(action) = l.poll_action() {
                assert_eq!(action, Action::Ping);
                pings.push(tenth);
            }
        }
        // The heartbeat interval is 1 s: an idle link would have pinged 19 times.
        assert_eq!(pings, [80, 160]);
    }
}
