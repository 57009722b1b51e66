//! A link's liveness clock: the session's liveness timer with its time
//! origin (shared by the actor and its reader and writer tasks, all on one
//! thread), the one sleep that ticks it, and the second look a link asks
//! of its reader before it calls its peer silent.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use swarm_protocol::session::Liveness;

use super::Link;

/// The liveness timer and its time origin, shared by the actor and its
/// tasks (all on one thread).
pub(super) struct Clock {
    pub(super) epoch: Instant,
    pub(super) liveness: RefCell<Liveness>,
    /// Set when the link says goodbye: the writer returns once the queue
    /// (with the goodbye) is written.
    pub(super) finishing: Cell<bool>,
    /// When the last heartbeat ping was queued (its pong times the round trip).
    pub(super) ping_sent: Cell<Option<Duration>>,
    /// The second look the link asks of its reader before it calls the
    /// peer silent (its number; 0: none asked).
    pub(super) look: Cell<u64>,
    /// Wakes the reader while it waits for bytes.
    pub(super) reader: RefCell<Option<std::task::Waker>>,
    /// While a second look is out: when its grace ends (the timer's next
    /// tick then, whatever the session's deadlines).
    pub(super) hold: Cell<Option<Duration>>,
}

impl Clock {
    pub(super) fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Bytes arrived; `user` if they held a tell, ask or reply.
    pub(super) fn received(&self, user: bool) {
        let now = self.now();
        self.liveness.borrow_mut().handle_received(now, user);
    }

    /// Bytes were written; `user` if they held a tell, ask or reply.
    pub(super) fn sent(&self, user: bool) {
        let now = self.now();
        self.liveness.borrow_mut().handle_sent(now, user);
    }

    /// The reader waits on (or is done waiting on) a full local mailbox.
    pub(super) fn reader_waiting(&self, waiting: bool) {
        let now = self.now();
        self.liveness.borrow_mut().set_reader_waiting(waiting, now);
    }

    /// A pong arrived: the round trip since the last ping, if one is out.
    pub(super) fn pong(&self) -> Option<Duration> {
        let sent = self.ping_sent.take()?;
        Some(self.now().saturating_sub(sent))
    }

    /// Whether the writer should stop once its queue is written.
    pub(super) fn finishing(&self) -> bool {
        self.finishing.get()
    }

    /// The reader waits for bytes: a second look wakes it with `waker`.
    pub(super) fn reader_parked(&self, waker: &std::task::Waker) {
        let mut reader = self.reader.borrow_mut();
        match &mut *reader {
            Some(parked) if parked.will_wake(waker) => {}
            parked => *parked = Some(waker.clone()),
        }
    }

    /// The second look asked of the reader, if any (taken: the reader
    /// answers each once, with [`Looked`]).
    pub(super) fn take_look(&self) -> Option<u64> {
        match self.look.replace(0) {
            0 => None,
            look => Some(look),
        }
    }

    /// Asks the reader for second look `look`.
    pub(super) fn ask_look(&self, look: u64) {
        self.look.set(look);
        if let Some(reader) = self.reader.borrow_mut().take() {
            reader.wake();
        }
    }

    /// When the link's timer should next tick (time since the origin).
    pub(super) fn next_tick(&self) -> Option<Duration> {
        self.hold
            .get()
            .or_else(|| self.liveness.borrow().poll_timeout())
    }
}

/// A tick of a link's timer: a deadline of its session (or the grace of
/// a second look) passed.
pub(super) struct Tick;

/// The link's timer: one sleep, reset in place, that wakes at the next
/// deadline and ticks only if that deadline still stands. On a busy link
/// traffic moves the deadlines on before they pass (a head leader's
/// renewal links write every 600 ms, their first deadline is the ping
/// after 1,050 ms of not writing): those wake-ups cost a reset, not a
/// handler run and a new timer each.
pub(super) struct Ticks {
    pub(super) clock: Rc<Clock>,
    pub(super) sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Stream for Ticks {
    type Item = Tick;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Tick>> {
        let this = self.get_mut();
        loop {
            // None once the session decided to close: the stream ends.
            let Some(due) = this.clock.next_tick() else {
                return std::task::Poll::Ready(None);
            };
            let at = tokio::time::Instant::from_std(this.clock.epoch + due);
            if this.sleep.deadline() != at {
                this.sleep.as_mut().reset(at);
            }
            std::task::ready!(std::future::Future::poll(this.sleep.as_mut(), cx));
            if this.clock.next_tick() == Some(due) {
                return std::task::Poll::Ready(Some(Tick));
            }
        }
    }
}

impl StreamHandler<Tick> for Link {
    fn handle(&mut self, _: Tick, ctx: &mut Context<Self>) {
        match self.look {
            // The second look's grace ran out.
            Some(look) => self.judge(look, ctx),
            None => self.on_timer(ctx),
        }
    }

    /// The session decided to close; the link is stopping.
    fn finished(&mut self, _: &mut Context<Self>) {}
}

/// The reader took its second look (the number it was asked): it read
/// what waited in the socket, if anything.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Looked(pub(super) u64);

impl Handler<Looked> for Link {
    type Result = ();

    fn handle(&mut self, Looked(look): Looked, ctx: &mut Context<Self>) {
        self.judge(look, ctx);
    }
}
