//! A caller streaming deposits into a demo [`Ledger`] through a
//! [`Named`] handle while the ledger moves (a drain, a migration): what
//! the live-migration tests and `swarm bench durable`'s
//! `migration_pause_ms` measure with.
//!
//! A caller keeps up to `window` asks in flight, issued in order (each
//! takes its place in the handle's order before the next is issued), and
//! records every answer with when it came. Since every deposit adds a
//! positive amount, a ledger that applied one caller's deposits in issue
//! order answered strictly growing balances in that order: that is how
//! order is checked, and the final balance against the sum of the
//! acknowledged deposits shows none was lost or applied twice.

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use swarm::control::{Control, ControlError, Named};
use swarm::AskError;

use super::{Balance, Deposit, Ledger};

/// What one caller saw.
#[derive(Debug, Default)]
pub struct Streamed {
    /// Each acknowledged deposit, in issue order: its amount, the answer
    /// and when it came.
    pub acked: Vec<(u64, Balance, Instant)>,
    /// The asks that failed, with their errors.
    pub failed: Vec<AskError>,
}

impl Streamed {
    /// The sum of the acknowledged deposits.
    pub fn sum(&self) -> u64 {
        self.acked.iter().map(|(amount, _, _)| amount).sum()
    }

    /// Whether the answers grew strictly in issue order (the ledger
    /// applied this caller's deposits in the order they were issued).
    pub fn in_order(&self) -> bool {
        self.acked.windows(2).all(|w| w[0].1.total < w[1].1.total)
    }
}

/// Callers streaming deposits into one ledger: two sharing one handle
/// with 4 asks in flight each (amounts 1 and 2), one with its own handle
/// asking one at a time (amount 3). Run on a local task set.
pub struct Callers {
    stop: Rc<Cell<bool>>,
    acked: Rc<Cell<usize>>,
    running: Vec<tokio::task::JoinHandle<Streamed>>,
}

impl Callers {
    /// Starts them on `name`, looked up through `caller`.
    pub async fn start(caller: &Control, name: &str) -> Result<Self, ControlError> {
        let stop = Rc::new(Cell::new(false));
        let acked = Rc::new(Cell::new(0));
        let shared: Named<Ledger> = caller.lookup(name).await?;
        let own: Named<Ledger> = caller.lookup(name).await?;
        let running = [(shared.clone(), 1, 4), (shared, 2, 4), (own, 3, 1)]
            .into_iter()
            .map(|(ledger, amount, window)| {
                tokio::task::spawn_local(stream(
                    ledger,
                    amount,
                    window,
                    Rc::clone(&stop),
                    Rc::clone(&acked),
                ))
            })
            .collect();
        Ok(Self {
            stop,
            acked,
            running,
        })
    }

    /// Waits for `more` acknowledgements; an error if they do not come
    /// within 30 s (the callers stalled).
    pub async fn after(&self, more: usize) -> Result<(), String> {
        let until = self.acked.get() + more;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut tick = tokio::time::interval(Duration::from_millis(2));
        while self.acked.get() < until {
            if Instant::now() >= deadline {
                return Err(format!(
                    "the callers stalled: {} of {until} acknowledgements in 30 s",
                    self.acked.get()
                ));
            }
            tick.tick().await;
        }
        Ok(())
    }

    /// Stops them and returns what each saw.
    pub async fn finish(self) -> Result<Vec<Streamed>, String> {
        self.stop.set(true);
        let mut out = Vec::with_capacity(self.running.len());
        for caller in self.running {
            out.push(caller.await.map_err(|e| format!("a caller failed: {e}"))?);
        }
        Ok(out)
    }
}

/// Streams deposits of `amount` (at least 1) into `ledger`, `window` in
/// flight, until `stop` is set; counts acknowledgements into `acked`.
/// Runs on a local task set (actix's system, a `LocalSet`).
pub async fn stream(
    ledger: Named<Ledger>,
    amount: u64,
    window: usize,
    stop: Rc<Cell<bool>>,
    acked: Rc<Cell<usize>>,
) -> Streamed {
    type Answer = (Result<Balance, AskError>, Instant);
    let mut inflight: VecDeque<tokio::task::JoinHandle<Answer>> = VecDeque::new();
    let mut out = Streamed::default();
    loop {
        if !stop.get() && inflight.len() < window.max(1) {
            let named = ledger.clone();
            let mut ask = Box::pin(async move {
                let answer = named.send(Deposit(amount.max(1))).await;
                (answer, Instant::now())
            });
            // Polled once here, so it takes its place before the next.
            let first = poll_once(&mut ask).await;
            inflight.push_back(tokio::task::spawn_local(async move {
                match first {
                    Some(done) => done,
                    None => ask.await,
                }
            }));
            continue;
        }
        let Some(next) = inflight.pop_front() else {
            return out;
        };
        let (answer, at) = match next.await {
            Ok(answered) => answered,
            Err(e) => (
                Err(AskError::Refused {
                    reason: format!("the ask's task ended: {e}"),
                }),
                Instant::now(),
            ),
        };
        match answer {
            Ok(balance) => {
                out.acked.push((amount.max(1), balance, at));
                acked.set(acked.get() + 1);
            }
            Err(e) => out.failed.push(e),
        }
    }
}

/// The longest time between two consecutive acknowledgements of all
/// `callers` together, the later one in `[from, to]`: the pause a move
/// that started at `from` caused, as callers saw it (`to`: once the new
/// incarnation answered).
pub fn longest_gap(callers: &[Streamed], from: Instant, to: Instant) -> Duration {
    let mut at: Vec<Instant> = callers
        .iter()
        .flat_map(|c| c.acked.iter().map(|(_, _, at)| *at))
        .filter(|t| *t <= to)
        .collect();
    at.sort_unstable();
    at.windows(2)
        .filter(|w| w[1] >= from)
        .map(|w| w[1].duration_since(w[0]))
        .max()
        .unwrap_or_default()
}

/// The pause of a move that started at `started` and was answered at
/// `returned`: [`longest_gap`] up to the first acknowledgement after
/// `returned`.
pub fn pause(callers: &[Streamed], started: Instant, returned: Instant) -> Duration {
    let to = callers
        .iter()
        .flat_map(|c| c.acked.iter().map(|(_, _, at)| *at))
        .filter(|t| *t >= returned)
        .min()
        .unwrap_or(returned);
    longest_gap(callers, started, to)
}

/// Polls `f` once: its output if it finished.
async fn poll_once<F: Future + Unpin>(f: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut *f).poll(cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        })
    })
    .await
}
