//! foca's runtime: what foca asks for during one call (datagrams, timers,
//! notifications), collected for the machine to drain; keeping the member
//! table in line with foca's view (suspicions foca does not report, the
//! reconcile pass, timeouts rescaled with the cluster, the gossip timer
//! parked while idle); and the work-around for foca 2.0.0's spurious
//! `TurnUndead`.

use std::sync::PoisonError;
use std::time::Duration;

use foca::{Member, Notification, Runtime, State, Timer};

use super::datagram::kind;
use super::Membership;
use crate::gossip::{GossipCodec, MemberId};

/// What foca asked for during one call.
#[derive(Debug, Default)]
pub(super) struct Io {
    pub(super) send: Vec<(MemberId, Vec<u8>)>,
    pub(super) timers: Vec<(Duration, Timer<MemberId>)>,
    pub(super) up: Vec<MemberId>,
    pub(super) down: Vec<MemberId>,
    pub(super) renamed: Vec<(MemberId, MemberId)>,
    pub(super) probe_failed: Vec<MemberId>,
    pub(super) rejoined: Option<MemberId>,
}

impl Runtime<MemberId> for Io {
    fn notify(&mut self, notification: Notification<'_, MemberId>) {
        match notification {
            Notification::MemberUp(id) => self.up.push(*id),
            Notification::MemberDown(id) => self.down.push(*id),
            Notification::Rename(old, new) => self.renamed.push((*old, *new)),
            Notification::Rejoin(id) => self.rejoined = Some(*id),
            Notification::ProbeFailed(_, id) => self.probe_failed.push(*id),
            _ => {}
        }
    }

    fn send_to(&mut self, to: MemberId, data: &[u8]) {
        let mut datagram = Vec::with_capacity(data.len() + 1);
        datagram.push(kind::FOCA);
        datagram.extend_from_slice(data);
        self.send.push((to, datagram));
    }

    fn submit_after(&mut self, event: Timer<MemberId>, after: Duration) {
        self.timers.push((after, event));
    }
}

impl Membership {
    /// After foca accepted `foca_message`: if it is the direct ack of the
    /// member being probed, hand foca its indirect-probe timer now (foca
    /// sees the probe succeeded and does nothing) and cancel the tick, so
    /// a healthy probe costs no second wake-up.
    pub(super) fn settle_indirect_probe(&mut self, foca_message: &[u8]) {
        use foca::Codec;
        if self.pending_indirect.is_empty() {
            return;
        }
        let Ok(header) = GossipCodec::default().decode_header(foca_message) else {
            return;
        };
        if !matches!(header.message, foca::Message::Ack { .. }) {
            return;
        }
        let from = header.src.addr;
        if let Some(at) = self
            .pending_indirect
            .iter()
            .position(|(_, probed, _)| probed.addr == from)
        {
            let (key, _, timer) = self.pending_indirect.swap_remove(at);
            let _ = self.foca.handle_timer(timer, &mut self.io);
            self.cancelled.push(key);
            self.probe_acked();
        }
    }

    /// Applies decoded suspicions and refutations to the table when foca
    /// accepted the datagram, by the same precedence rules SWIM uses.
    pub(super) fn drain_observed(&mut self, accepted: bool) {
        let observed: Vec<Member<MemberId>> =
            std::mem::take(&mut *self.observed.lock().unwrap_or_else(PoisonError::into_inner));
        if !accepted {
            return;
        }
        let now = self.now;
        let me = self.me();
        for member in observed {
            if member.id().addr == me.addr {
                if *member.id() == me && member.state() == State::Suspect {
                    // foca refutes it; this node takes the hint that it is late.
                    self.suspected(member.incarnation());
                }
                continue;
            }
            let event = match member.state() {
                State::Suspect => self.table.suspect(*member.id(), member.incarnation(), now),
                State::Alive => self.table.refute(*member.id(), member.incarnation(), now),
                State::Down => None,
            };
            if let Some(event) = event {
                self.events.push_back(event);
            }
        }
    }

    /// Brings the table's suspicions in line with foca's view. One pass
    /// over foca's members; a table lookup only for suspects.
    pub(super) fn reconcile(&mut self) {
        let now = self.now;
        let table_suspects = self.table.suspects();
        let mut events = Vec::new();
        for member in self.foca.iter_membership_state() {
            let event = match member.state() {
                State::Suspect => self.table.suspect(*member.id(), member.incarnation(), now),
                State::Alive if table_suspects.contains(&member.id().addr) => {
                    // foca holds it alive at this incarnation: the table's
                    // suspicion is stale.
                    self.table
                        .clear_suspicion(*member.id(), member.incarnation(), now)
                }
                _ => None,
            };
            events.extend(event);
        }
        self.events.extend(events);
        let keep = self.config.remove_down_after;
        self.table.expire(now, keep);
    }

    pub(super) fn rescale(&mut self, members: usize) {
        // Re-derive timeouts and retransmissions at every quarter decade
        // of cluster size.
        let bucket = |n: usize| ((n.max(1) as f64).log10() * 4.0).floor() as usize;
        if bucket(members) != bucket(self.scale) {
            self.scale = members;
            let _ = self.foca.set_config(self.config.foca(members));
        }
    }

    /// Whether foca has nothing queued to gossip (member updates or
    /// metadata items): its periodic gossip timer would wake up for nothing.
    pub(super) fn gossip_idle(&self) -> bool {
        self.foca.updates_backlog() == 0 && self.foca.custom_broadcast_backlog() == 0
    }

    /// foca 2.0.0 sends "you are down" (`TurnUndead`) when a suspicion
    /// times out even if the member refuted it in time (the timer's
    /// condition failed and nothing was applied). The member would then
    /// believe it was declared down and rejoin under a new identity, and
    /// every other member would see it go down and come back. When the
    /// timer declared nothing down, that message is dropped here.
    pub(super) fn drop_spurious_turn_undead(&mut self, member: MemberId) {
        if self.io.down.contains(&member) {
            return;
        }
        self.io.send.retain(|(to, datagram)| {
            *to != member || !is_turn_undead(datagram.get(1..).unwrap_or_default())
        });
    }
}

fn is_turn_undead(foca_message: &[u8]) -> bool {
    use foca::Codec;
    matches!(
        GossipCodec::default().decode_header(foca_message),
        Ok(foca::Header {
            message: foca::Message::TurnUndead,
            ..
        })
    )
}
