//! A link's outgoing queue: unbounded in count but bounded in bytes by a
//! semaphore whose permits the writer returns once bytes reach the socket,
//! so tells push back on their senders instead of growing memory.

use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};

/// The senders' side of the queue.
pub(super) struct Outbox {
    /// Envelopes for the writer.
    tx: mpsc::UnboundedSender<Vec<u8>>,
    /// Permits = bytes that may still be queued.
    budget: Arc<Semaphore>,
    /// The budget's size; an envelope costs at most this much.
    limit: usize,
}

/// The writer's side of the queue.
pub(super) struct Queue {
    pub(super) rx: mpsc::UnboundedReceiver<Vec<u8>>,
    pub(super) budget: Budget,
}

impl Outbox {
    pub(super) fn new(limit: usize) -> (Self, Queue) {
        let (tx, rx) = mpsc::unbounded_channel();
        let limit = limit.clamp(1, u32::MAX as usize);
        let budget = Arc::new(Semaphore::new(limit));
        let returns = Budget {
            budget: Arc::clone(&budget),
            limit,
        };
        (
            Self { tx, budget, limit },
            Queue {
                rx,
                budget: returns,
            },
        )
    }

    fn cost(&self, envelope: &[u8]) -> u32 {
        cost(envelope.len(), self.limit)
    }

    /// Queues, waiting for budget.
    pub(super) async fn send(&self, envelope: Vec<u8>) -> Result<(), Vec<u8>> {
        self.send_if(envelope, || true).await
    }

    /// Queues, waiting for budget, if `open()` still holds once there is
    /// budget (checked right before the envelope is queued).
    pub(super) async fn send_if(
        &self,
        envelope: Vec<u8>,
        open: impl Fn() -> bool,
    ) -> Result<(), Vec<u8>> {
        let cost = self.cost(&envelope);
        match self.budget.acquire_many(cost).await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(envelope),
        }
        if !open() {
            self.budget.add_permits(cost as usize);
            return Err(envelope);
        }
        self.tx.send(envelope).map_err(|e| {
            self.budget.add_permits(cost as usize);
            e.0
        })
    }

    /// Queues if the budget allows it now.
    pub(super) fn try_send(
        &self,
        envelope: Vec<u8>,
    ) -> Result<(), mpsc::error::TrySendError<Vec<u8>>> {
        self.try_send_if(envelope, || true)
    }

    /// Queues if the budget allows it now and `open()` holds.
    pub(super) fn try_send_if(
        &self,
        envelope: Vec<u8>,
        open: impl Fn() -> bool,
    ) -> Result<(), mpsc::error::TrySendError<Vec<u8>>> {
        if !open() {
            return Err(mpsc::error::TrySendError::Closed(envelope));
        }
        let cost = self.cost(&envelope);
        match self.budget.try_acquire_many(cost) {
            Ok(permit) => permit.forget(),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                return Err(mpsc::error::TrySendError::Full(envelope))
            }
            Err(tokio::sync::TryAcquireError::Closed) => {
                return Err(mpsc::error::TrySendError::Closed(envelope))
            }
        }
        self.tx.send(envelope).map_err(|e| {
            self.budget.add_permits(cost as usize);
            mpsc::error::TrySendError::Closed(e.0)
        })
    }

    /// Bytes queued and not yet written.
    pub(super) fn queued(&self) -> usize {
        self.limit.saturating_sub(self.budget.available_permits())
    }

    /// Wakes every waiting sender with an error.
    pub(super) fn close(&self) {
        self.budget.close();
    }
}

/// The writer's side of the budget: returns permits for written bytes.
pub(super) struct Budget {
    budget: Arc<Semaphore>,
    limit: usize,
}

impl Budget {
    pub(super) fn cost(&self, envelope: &[u8]) -> usize {
        cost(envelope.len(), self.limit) as usize
    }

    pub(super) fn release(&self, permits: usize) {
        if permits > 0 {
            self.budget.add_permits(permits);
        }
    }
}

fn cost(len: usize, limit: usize) -> u32 {
    // Every envelope costs at least one permit; one larger than the whole
    // budget takes all of it (and so travels alone).
    len.clamp(1, limit) as u32
}
