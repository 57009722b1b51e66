//! foca's runtime: what foca asks for during one call (datagrams, timers,
//! notifications), collected for the machine to drain; and the work-around
//! for foca 2.0.0's spurious `TurnUndead`.

use std::time::Duration;

use foca::{Notification, Runtime, Timer};

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
