//! Lifeguard's local health multiplier (Dadgar et al., "Lifeguard: Local
//! Health Awareness for More Accurate Failure Detection", 2018) around
//! foca, which has none: a score that rises while this node finds itself
//! late (its timers fire late, the cluster suspects it or declared it
//! down) and falls with every probe that starts on time and is acked in
//! time. foca's
//! probe, indirect-probe and suspicion timers are armed `1 + score` times
//! later than configured: a starved node probes less, waits longer for
//! acks, and gives a member it suspects longer to refute, instead of
//! declaring healthy members down because it could not read their answers
//! in time. A healthy node's score is 0: the detection bound is unchanged.

use std::time::Duration;

use foca::{Incarnation, Timer};

use super::Membership;
use crate::gossip::MemberId;

/// The score and what it was last raised by.
#[derive(Debug, Default)]
pub(super) struct Health {
    /// 0 is healthy; at most `max_health_multiplier - 1`.
    score: u8,
    /// When lateness last raised the score: one stall raises it once,
    /// however many timers it delayed.
    late_at: Option<Duration>,
    /// The highest incarnation of this node a suspicion named: a suspicion
    /// relayed by many members counts once.
    suspected_at: Option<Incarnation>,
    /// The current probe period started on time (its ack, if in time,
    /// lowers the score).
    on_time: bool,
}

/// How much later than foca asked `timer` is armed, at `multiplier`.
pub(super) fn stretch(timer: &Timer<MemberId>, after: Duration, multiplier: u32) -> Duration {
    match timer {
        Timer::ProbeRandomMember(_)
        | Timer::SendIndirectProbe { .. }
        | Timer::ChangeSuspectToDown { .. } => after.saturating_mul(multiplier),
        _ => after,
    }
}

impl Membership {
    /// The multiple this node applies to its probe period, probe timeout
    /// and suspicion timeout now: 1 while healthy, up to
    /// [`MembershipConfig::max_health_multiplier`](super::MembershipConfig::max_health_multiplier)
    /// while it finds itself late.
    pub fn health_multiplier(&self) -> u32 {
        u32::from(self.health.score) + 1
    }

    /// A tick arrived `late` after it was due; `probe` for the probe timer.
    pub(super) fn tick_arrived(&mut self, late: Duration, probe: bool) {
        if late > self.config.late_tick {
            self.stats.late_ticks += 1;
            let period = self.config.probe_period.max(Duration::from_millis(1));
            let again = self
                .health
                .late_at
                .is_none_or(|at| self.now.saturating_sub(at) >= period);
            if again {
                self.health.late_at = Some(self.now);
                // At least one step, and as many as probe periods missed:
                // a node away for five periods waits five times as long.
                let missed = late.as_nanos() / period.as_nanos();
                let missed = u8::try_from(missed).unwrap_or(u8::MAX);
                let score = self.health.score.saturating_add(1).max(missed);
                self.set_score(score);
            }
        } else if probe {
            self.health.on_time = true;
        }
    }

    /// A probe of this node's was acked directly, in time: if its period
    /// also started on time, this node is keeping up.
    pub(super) fn probe_acked(&mut self) {
        if std::mem::take(&mut self.health.on_time) {
            self.set_score(self.health.score.saturating_sub(1));
        }
    }

    /// The cluster suspects this node at `incarnation` (foca refutes it).
    pub(super) fn suspected(&mut self, incarnation: Incarnation) {
        if self.health.suspected_at.is_none_or(|at| incarnation > at) {
            self.health.suspected_at = Some(incarnation);
            self.set_score(self.health.score.saturating_add(1));
        }
    }

    /// The cluster declared this node down; it rejoined. Back off by half
    /// the range at once: it was away for longer than a suspicion timeout.
    pub(super) fn rejoined(&mut self) {
        self.health.suspected_at = None;
        let half = self.config.max_health_multiplier / 2;
        self.set_score(self.health.score.saturating_add(half.max(1)));
    }

    fn set_score(&mut self, score: u8) {
        let max = self.config.max_health_multiplier.saturating_sub(1);
        self.health.score = score.min(max);
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::gossip::NodeMeta;
    use crate::identity::NodeId;
    use crate::membership::{MembershipConfig, Tick, TickKind};

    fn member(port: u16) -> MemberId {
        MemberId {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            node: NodeId::from_bytes([port as u8; 16]),
            bump: 1,
        }
    }

    fn machine(config: MembershipConfig) -> Membership {
        Membership::new_unsealed(config, member(1), NodeMeta::default(), 7).unwrap()
    }

    fn probe_tick(due: Duration) -> Tick {
        Tick {
            kind: TickKind::Foca(Timer::ProbeRandomMember(0)),
            due,
        }
    }

    #[test]
    fn a_node_whose_timers_fire_late_stretches_its_probe_and_suspicion_timers() {
        let config = MembershipConfig::default();
        let mut m = machine(config.clone());
        assert_eq!(m.health_multiplier(), 1);
        // Away for three probe periods: the next timer fires 3 s late.
        let due = Duration::from_secs(10);
        m.handle_tick(probe_tick(due), due + Duration::from_secs(3));
        assert_eq!(m.health_multiplier(), 4);
        assert_eq!(m.stats().late_ticks, 1);
        // More timers delayed by the same stall raise it once.
        m.handle_tick(probe_tick(due), due + Duration::from_millis(3_100));
        assert_eq!(m.health_multiplier(), 4);
        let suspicion = Timer::ChangeSuspectToDown {
            member_id: member(2),
            incarnation: 0,
            token: 0,
        };
        let timeout = config.suspect_timeout_for(10);
        assert_eq!(stretch(&suspicion, timeout, 4), timeout * 4);
        let rtt = Timer::SendIndirectProbe {
            probed_id: member(2),
            token: 0,
        };
        assert_eq!(stretch(&rtt, config.probe_rtt, 4), config.probe_rtt * 4);
        assert_eq!(
            stretch(&Timer::PeriodicGossip(0), config.gossip_interval, 4),
            config.gossip_interval
        );
        // Probes that start on time and are acked in time bring it back,
        // one step each; an ack alone does not.
        m.probe_acked();
        assert_eq!(m.health_multiplier(), 4);
        for step in 1..=3 {
            let due = Duration::from_secs(20 + step);
            m.handle_tick(probe_tick(due), due + Duration::from_millis(5));
            m.probe_acked();
        }
        assert_eq!(m.health_multiplier(), 1);
    }

    #[test]
    fn the_multiplier_is_capped_and_one_turns_it_off() {
        let mut m = machine(MembershipConfig::default());
        m.handle_tick(probe_tick(Duration::ZERO), Duration::from_secs(60));
        assert_eq!(m.health_multiplier(), 8);
        let mut off = machine(MembershipConfig {
            max_health_multiplier: 1,
            ..MembershipConfig::default()
        });
        off.handle_tick(probe_tick(Duration::ZERO), Duration::from_secs(60));
        off.suspected(3);
        off.rejoined();
        assert_eq!(off.health_multiplier(), 1);
    }

    #[test]
    fn one_suspicion_relayed_many_times_counts_once_and_a_rejoin_backs_off() {
        let mut m = machine(MembershipConfig::default());
        for _ in 0..5 {
            m.suspected(2);
        }
        assert_eq!(m.health_multiplier(), 2);
        m.suspected(3);
        assert_eq!(m.health_multiplier(), 3);
        m.rejoined();
        assert_eq!(m.health_multiplier(), 7);
    }

    #[test]
    fn a_suspicion_timeout_that_fires_late_is_deferred_once_by_its_lateness() {
        let mut m = machine(MembershipConfig::default());
        let timer = Timer::ChangeSuspectToDown {
            member_id: member(2),
            incarnation: 0,
            token: 0,
        };
        let due = Duration::from_secs(30);
        let tick = Tick {
            kind: TickKind::Foca(timer),
            due,
        };
        m.handle_tick(tick, due + Duration::from_secs(2));
        let (after, deferred) = std::iter::from_fn(|| m.poll_timer())
            .find(|(_, t)| matches!(t.kind, TickKind::Verdict(_)))
            .expect("deferred");
        assert_eq!(after, Duration::from_secs(2));
        // Due on the clock the machine was last handed (what the driver
        // compares its own clock with to tell a late timer).
        assert_eq!(deferred.due(), due + Duration::from_secs(2) + after);
        // Late again: handed to foca this time, not deferred twice.
        m.handle_tick(deferred, due + Duration::from_secs(10));
        assert!(std::iter::from_fn(|| m.poll_timer())
            .all(|(_, t)| !matches!(t.kind, TickKind::Verdict(_))));
    }
}
