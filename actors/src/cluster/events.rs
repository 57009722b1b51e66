//! Membership published as a bounded event stream. The `Gossip` actor
//! publishes every [`ClusterEvent`]; each subscriber reads its own bounded
//! view ([`ClusterEvents`]). A subscriber that falls more than
//! [`EVENT_BUFFER`] events behind loses the oldest ones and is told how
//! many ([`Lagged`]); it never makes the publisher or anyone else wait,
//! and never grows memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::Recipient;
use tokio::sync::broadcast;

use super::ClusterEvent;

/// Events a subscriber may fall behind by before it loses some.
pub const EVENT_BUFFER: usize = 1024;

/// The publishing side, held by the `Gossip` actor alone: when it stops,
/// every subscription ends.
pub(crate) struct EventBus {
    tx: broadcast::Sender<ClusterEvent>,
    /// Events lost by slow subscribers, summed.
    lost: Arc<AtomicU64>,
}

impl EventBus {
    pub(crate) fn new() -> Self {
        let (tx, _) = broadcast::channel(EVENT_BUFFER);
        Self {
            tx,
            lost: Arc::default(),
        }
    }

    /// Publishes `event` to every subscriber; never waits.
    pub(crate) fn publish(&self, event: ClusterEvent) {
        // An error only means nobody is subscribed.
        let _ = self.tx.send(event);
    }

    /// A new subscription, starting after the last published event.
    pub(crate) fn subscribe(&self) -> ClusterEvents {
        ClusterEvents {
            rx: self.tx.subscribe(),
            lost: Arc::clone(&self.lost),
        }
    }

    /// Events lost by slow subscribers so far.
    pub(crate) fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// The shared count of lost events, readable after the bus is gone.
    pub(crate) fn lost_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.lost)
    }
}

/// A subscriber fell behind and lost `missed` events; the next event
/// follows the gap. Re-read the member list to resynchronise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{missed} cluster events were lost (subscriber too slow)")]
pub struct Lagged {
    /// How many events were lost.
    pub missed: u64,
}

/// One subscriber's stream of [`ClusterEvent`]s, in the order this node
/// learned them.
pub struct ClusterEvents {
    rx: broadcast::Receiver<ClusterEvent>,
    lost: Arc<AtomicU64>,
}

impl std::fmt::Debug for ClusterEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterEvents").finish_non_exhaustive()
    }
}

impl ClusterEvents {
    /// The next event; `None` once membership has stopped.
    ///
    /// # Errors
    ///
    /// [`Lagged`] when this subscriber fell behind and events were lost.
    pub async fn next(&mut self) -> Option<Result<ClusterEvent, Lagged>> {
        match self.rx.recv().await {
            Ok(event) => Some(Ok(event)),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                self.lost.fetch_add(missed, Ordering::Relaxed);
                Some(Err(Lagged { missed }))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// Delivers every event to `recipient` on the current arbiter, one at a
    /// time (each after the previous one was handled), until the recipient
    /// stops or membership does. If the recipient is slower than the
    /// events, it loses the oldest ones (logged).
    pub(crate) fn forward(mut self, recipient: Recipient<ClusterEvent>) {
        actix_rt::spawn(async move {
            while let Some(next) = self.next().await {
                match next {
                    Ok(event) => {
                        if recipient.send(event).await.is_err() {
                            break;
                        }
                    }
                    Err(lagged) => tracing::warn!(%lagged, "slow cluster-event subscriber"),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use actix::prelude::*;

    use super::*;
    use crate::cluster::Member;
    use swarm_protocol::membership::MemberState;
    use swarm_protocol::NodeId;

    fn event(i: u16) -> ClusterEvent {
        ClusterEvent::MemberUp(Member {
            node: NodeId::from_bytes([1; 16]),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], i)),
            bump: u64::from(i),
            state: MemberState::Alive,
            meta: None,
        })
    }

    /// Handles nothing until its gate opens.
    struct Stuck {
        gate: Option<tokio::sync::oneshot::Receiver<()>>,
        seen: usize,
    }

    impl Actor for Stuck {
        type Context = Context<Self>;
    }

    impl Handler<ClusterEvent> for Stuck {
        type Result = ResponseActFuture<Self, ()>;

        fn handle(&mut self, _: ClusterEvent, _: &mut Context<Self>) -> Self::Result {
            self.seen += 1;
            let gate = self.gate.take();
            Box::pin(
                async move {
                    if let Some(gate) = gate {
                        let _ = gate.await;
                    }
                }
                .into_actor(self),
            )
        }
    }

    #[actix::test]
    async fn a_stuck_subscriber_loses_events_without_growing_and_others_get_all() {
        let bus = EventBus::new();
        let (open, gate) = tokio::sync::oneshot::channel();
        let stuck = Stuck {
            gate: Some(gate),
            seen: 0,
        }
        .start();
        bus.subscribe().forward(stuck.recipient());
        let mut fast = bus.subscribe();
        let total = (EVENT_BUFFER * 4) as u16;
        let mut received = 0;
        for i in 0..total {
            bus.publish(event(i));
            // The fast subscriber keeps up.
            while let Ok(Some(Ok(_))) =
                tokio::time::timeout(Duration::from_millis(0), fast.next()).await
            {
                received += 1;
            }
        }
        while received < usize::from(total) {
            match fast.next().await {
                Some(Ok(_)) => received += 1,
                other => panic!("the fast subscriber lost events: {other:?}"),
            }
        }
        // The stuck one is at most the buffer behind; opening its gate
        // makes it report what it lost.
        let _ = open.send(());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut poll = tokio::time::interval(Duration::from_millis(5));
        while bus.lost() == 0 {
            assert!(tokio::time::Instant::now() < deadline, "no loss reported");
            poll.tick().await;
        }
        assert!(bus.lost() >= u64::from(total) - EVENT_BUFFER as u64 - 2);
    }
}
