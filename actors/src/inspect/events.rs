//! A node's recent events for operators: membership changes, restarts,
//! placements, failovers and drains (on the head leader), policy
//! refusals. Each subsystem records what it already logs through the
//! [`EventLog`] handle the directory hands out; the inspector reads the
//! last ones. Bounded: the oldest are dropped.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use super::model::EventView;

/// Events a node keeps.
pub(crate) const KEPT: usize = 256;

/// Where a node's subsystems record events. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct EventLog {
    inner: Arc<Mutex<Ring>>,
}

#[derive(Default)]
struct Ring {
    events: VecDeque<EventView>,
    /// Events ever recorded (the last one's sequence number).
    recorded: u64,
}

impl EventLog {
    /// Records that `subject` saw an event of `kind` (`member`, `restart`,
    /// `failed`, `placed`, `moved`, `drain`, `drain refused`, `refused`).
    pub(crate) fn record(&self, kind: &'static str, subject: impl Into<String>, detail: String) {
        let mut ring = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        ring.recorded += 1;
        let event = EventView {
            seq: ring.recorded,
            at_ms: super::unix_now_ms(),
            node: String::new(),
            kind: kind.to_owned(),
            subject: subject.into(),
            detail,
        };
        if ring.events.len() == KEPT {
            ring.events.pop_front();
        }
        ring.events.push_back(event);
    }

    /// The events kept, oldest first.
    pub(crate) fn recent(&self) -> Vec<EventView> {
        let ring = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        ring.events.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_the_newest_events_in_order() {
        let log = EventLog::default();
        for i in 0..KEPT + 10 {
            log.record("member", format!("n{i}"), "up".to_owned());
        }
        let recent = log.recent();
        assert_eq!(recent.len(), KEPT);
        assert_eq!(recent[0].seq, 11);
        assert_eq!(recent[KEPT - 1].subject, format!("n{}", KEPT + 9));
    }
}
