//! The order of a [`Named`](super::Named) handle's asks across a move: a
//! FIFO gate in the handle's shared state.
//!
//! Every ask takes a ticket, in the order the handle's callers issued
//! them. While nothing moves, asks go out at once (the gate costs a
//! ticket). Once an ask learns that the actor's incarnation is gone from
//! its node (`NoSuchActor`: a drain or a migration handed it over), the
//! gate closes: from then on an ask goes out only when it holds the
//! lowest ticket still outstanding, so the asks that wait are sent to the
//! new incarnation one after the other, in issue order, each once the one
//! before it was answered. The first answer reopens the gate; those that
//! queued meanwhile still go in order, then asks flow freely again.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use swarm_protocol::NodeId;
use tokio::sync::Notify;

/// A handle's gate.
#[derive(Default)]
pub(super) struct Gate {
    inner: Mutex<Inner>,
    turned: Notify,
}

#[derive(Default)]
struct Inner {
    next: u64,
    /// Tickets of asks not answered (or given up) yet.
    outstanding: BTreeSet<u64>,
    /// Tickets that met the gate closed, or asks queued behind it: they
    /// go out in ticket order.
    gated: BTreeSet<u64>,
    /// Closed: the incarnation known to be moving away, if any (none: the
    /// handle does not know where the actor runs).
    closed: Option<Option<(NodeId, u64)>>,
}

/// One ask's place in the order; dropped when it is answered or given up.
pub(super) struct Ticket {
    gate: Arc<Gate>,
    number: u64,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next ask's ticket.
    pub(super) fn issue(self: &Arc<Self>) -> Ticket {
        let mut inner = self.lock();
        let number = inner.next;
        inner.next += 1;
        inner.outstanding.insert(number);
        Ticket {
            gate: Arc::clone(self),
            number,
        }
    }

    /// Waits until `ticket` may go out (by `deadline`); false if its time
    /// ran out first.
    pub(super) async fn turn(&self, ticket: &Ticket, deadline: tokio::time::Instant) -> bool {
        loop {
            let turned = self.turned.notified();
            tokio::pin!(turned);
            turned.as_mut().enable();
            {
                let mut inner = self.lock();
                if inner.closed.is_none() && inner.gated.is_empty() {
                    return true;
                }
                inner.gated.insert(ticket.number);
                if inner.outstanding.first() == Some(&ticket.number) {
                    return true;
                }
            }
            tokio::select! {
                () = turned => {}
                () = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }

    /// The incarnation `(node, epoch)` is gone from its node: close.
    pub(super) fn moving(&self, node: NodeId, epoch: u64) {
        self.lock().closed = Some(Some((node, epoch)));
    }

    /// The handle does not know where the actor runs: close until an
    /// answer shows it (concurrent asks would each find it, and reach it
    /// in whatever order their answers come).
    pub(super) fn unknown(&self) {
        self.lock().closed.get_or_insert(None);
    }

    /// An ask was answered: the actor runs somewhere; open.
    pub(super) fn answered(&self) {
        let mut inner = self.lock();
        if inner.closed.take().is_some() {
            self.turned.notify_waiters();
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut inner = self.gate.lock();
        inner.outstanding.remove(&self.number);
        let queued = inner.gated.remove(&self.number) || !inner.gated.is_empty();
        if queued {
            self.gate.turned.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn soon() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_millis(50)
    }

    #[tokio::test]
    async fn open_asks_go_at_once_and_a_closed_gate_releases_them_in_ticket_order() {
        let gate = Arc::new(Gate::default());
        let (a, b, c) = (gate.issue(), gate.issue(), gate.issue());
        assert!(gate.turn(&c, soon()).await, "open: no waiting");
        gate.moving(NodeId::from_bytes([1; 16]), 1);
        assert!(!gate.turn(&c, soon()).await, "closed: c waits for a and b");
        assert!(!gate.turn(&b, soon()).await, "b waits for a");
        assert!(gate.turn(&a, soon()).await, "a holds the lowest ticket");
        gate.answered();
        drop(a);
        // Open again, but b and c queued: still in order.
        assert!(!gate.turn(&c, soon()).await);
        assert!(gate.turn(&b, soon()).await);
        let late = gate.issue();
        assert!(
            !gate.turn(&late, soon()).await,
            "a later ask queues behind them"
        );
        drop(b);
        assert!(gate.turn(&c, soon()).await);
        drop(c);
        assert!(gate.turn(&late, soon()).await);
        drop(late);
        let free = gate.issue();
        assert!(gate.turn(&free, soon()).await, "nothing queued: free again");
    }

    #[tokio::test]
    async fn a_waiter_is_woken_when_the_ask_before_it_ends() {
        let gate = Arc::new(Gate::default());
        let (a, b) = (gate.issue(), gate.issue());
        gate.moving(NodeId::from_bytes([1; 16]), 1);
        let waiter = {
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                let far = tokio::time::Instant::now() + Duration::from_secs(10);
                gate.turn(&b, far).await
            })
        };
        tokio::task::yield_now().await;
        drop(a);
        assert!(waiter.await.expect("joined"));
    }
}
