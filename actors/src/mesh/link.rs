//! A `Link` owns one authenticated connection to one peer. It drives the
//! sans-IO session of `swarm_protocol::session` (send and receive halves,
//! liveness timer) over the socket and holds no protocol logic of its own.
//! Its parts, each in its own file:
//!
//! ```text
//! Link (actor: arms the liveness timer, acts on it, keeps the close reason)
//! ├── Clock         liveness timer, its ticks, the second look    (clock.rs)
//! ├── reader task   socket -> RecvHalf -> dispatch to actors    (reader.rs)
//! └── writer task   outbox -> SendHalf -> socket                (writer.rs)
//! LinkHandle        what senders on any thread hold             (handle.rs)
//! Outbox            the queue between them, bounded in bytes    (outbox.rs)
//! ```
//!
//! If the reader or writer fails, or the liveness timer says the peer went
//! silent, the Link logs the reason, fails every ask still waiting on it,
//! tells the Router, and stops. An idle link, and every link of a node that
//! shuts down, says goodbye first, so the peer logs why. A Link has no
//! children to restart: the next send dials a new link. It makes no
//! routing decisions; the Router owns the table.

mod clock;
mod handle;
mod outbox;
mod reader;
mod seed;
mod writer;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use swarm_protocol::session::{Action, RecvHalf, SendHalf, Silence};
use swarm_protocol::{Control, RecvCipher, SendCipher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::router::{LinkClosed, Router};
use super::Shared as MeshShared;
use crate::directory::Caller;
use crate::error::{CloseReason, LocalClose};
use clock::Ticks;
use clock::{Clock, Looked};
pub(crate) use handle::{AskFailure, LinkHandle, PeerIdentity};
use outbox::Queue;
use reader::Reader;

/// The byte stream a link runs over.
pub(super) enum Wire {
    /// A TCP connection to the peer.
    Tcp(TcpStream),
    /// A circuit through a relay (its end here).
    Circuit(super::relay::Circuit),
}

/// Everything needed to start a link once its handshake is done.
pub(super) struct LinkParts {
    pub(super) wire: Wire,
    pub(super) sender: SendCipher,
    pub(super) receiver: RecvCipher,
    /// Bytes read past the handshake.
    pub(super) leftover: Vec<u8>,
    /// Closed when the link this one replaces has delivered everything.
    pub(super) predecessor: Option<watch::Receiver<bool>>,
    /// The link this one takes over from, whose peer may keep a duplicate
    /// it is still reading: nothing is written here until the peer said
    /// its handover goodbye there (`true`) or that link stopped (closed).
    pub(super) write_after: Option<watch::Receiver<bool>>,
}

/// The actor owning one connection.
pub(super) struct Link {
    /// The state other threads see.
    handle: LinkHandle,
    /// The mesh: directory, config, counters.
    mesh: Arc<MeshShared>,
    /// Told when this link stops.
    router: Addr<Router>,
    /// Consumed by `started`.
    parts: Option<(LinkParts, Queue)>,
    /// The reader and writer tasks, aborted when the link stops.
    tasks: Vec<JoinHandle<()>>,
    /// The session's liveness timer, fed by the tasks.
    clock: Rc<Clock>,
    /// The first reason given for closing.
    reason: Option<CloseReason>,
    /// Asks from the peer still waiting for local actors (shared with the reader).
    inbound_asks: Rc<Cell<usize>>,
    /// Opens the successor's reader when this link stops (dropped then).
    successor: Option<watch::Sender<bool>>,
    /// The reader waits for this before dispatching anything: the link
    /// this one replaces must deliver what it carries first.
    predecessor: Option<watch::Receiver<bool>>,
    /// The writer waits for this (see `LinkParts::write_after`).
    write_after: Option<watch::Receiver<bool>>,
    /// A successor took over: this link says goodbye, answers the asks it
    /// carries, and reads until the peer's goodbye.
    draining: bool,
    /// The peer handed over: it sends nothing new on this link.
    peer_done: bool,
    /// A silence verdict waiting for the reader's second look (its number).
    look: Option<u64>,
    /// Second looks asked for so far (numbers them).
    looks: u64,
}

/// Hands the peer over to a successor link without losing or reordering
/// anything: senders move to the successor at once; this link answers the
/// asks it carries, says goodbye after everything queued on it, and reads
/// until the peer's goodbye; successors' readers wait for `0` to close
/// (this link stopping) before they dispatch, and a successor's writer
/// (`LinkParts::write_after`) for it to turn `true` (the peer's goodbye
/// read here: the peer holds what arrives on the successor until it read
/// everything here) or close.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Drain(pub(super) watch::Sender<bool>);

/// The longest a handover waits for the old link to deliver what it carries.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the link waits without sending before it pings. The dialer
/// keeps an idle link alive: it pings every `interval`, and the pongs it
/// gets back count as sent on the other side, whose own timer (half as
/// long again) then never fires. Each side still hears from the other
/// every interval, so the heartbeat timeout holds as before; an idle link
/// costs one ping and one pong per interval instead of two of each. The
/// acceptor pings on its own once the dialer's pings stop, and every four
/// of its intervals to time the round trip.
fn ping_every(interval: Duration, dialer: bool) -> Duration {
    if dialer {
        interval
    } else {
        interval.saturating_add(interval / 2)
    }
}

/// Closes a link with a reason.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Close(pub(super) CloseReason);

impl Link {
    fn on_timer(&mut self, ctx: &mut Context<Self>) {
        let now = self.clock.now();
        if self.look.is_none() && self.clock.liveness.borrow().peer_silent(now) {
            // In a starved process this timer can run before the reader
            // learnt that bytes wait (the reactor hands out readiness in
            // batches): the reader reads what is there, then the silence
            // is judged. A reader busy elsewhere gets one heartbeat
            // interval for it.
            self.looks += 1;
            let look = self.looks;
            self.look = Some(look);
            self.clock.ask_look(look);
            // Ticks wait for the grace (`Clock::hold`), then judge.
            let grace = self.mesh.config.heartbeat_interval;
            self.clock.hold.set(Some(now.saturating_add(grace)));
            return;
        }
        self.look = None;
        self.clock.liveness.borrow_mut().handle_timeout(now);
        loop {
            let action = self.clock.liveness.borrow_mut().poll_action();
            match action {
                None => break,
                // A full queue means traffic is flowing; the ping is not needed.
                Some(Action::Ping) => {
                    let ping = SendHalf::control(&Control::Ping { nonce: 0 });
                    if self.handle.try_send(ping).is_ok() {
                        self.clock.ping_sent.set(Some(self.clock.now()));
                    }
                }
                Some(Action::Goodbye(Silence::Idle(idle)) | Action::Close(Silence::Idle(idle))) => {
                    self.goodbye(CloseReason::Idle(idle), "idle", ctx);
                    return;
                }
                Some(
                    Action::Close(Silence::PeerSilent(silent))
                    | Action::Goodbye(Silence::PeerSilent(silent)),
                ) => {
                    self.close(CloseReason::HeartbeatTimeout(silent), ctx);
                    return;
                }
            }
        }
    }

    /// Judges the silence that asked for second look `look`, once the
    /// reader took it or its grace ran out (the timer ticks on by itself).
    fn judge(&mut self, look: u64, ctx: &mut Context<Self>) {
        if self.look == Some(look) {
            self.clock.hold.set(None);
            if self.clock.look.get() == look {
                // Not taken: the reader need not answer it any more.
                self.clock.look.set(0);
            }
            // With `self.look` set, the timer judges at once.
            self.on_timer(ctx);
        }
    }

    /// Tells the peer why, then closes once the goodbye is written (at once
    /// if the queue has no room for it; at the latest after a second).
    fn goodbye(&mut self, reason: CloseReason, words: &str, ctx: &mut Context<Self>) {
        if self.reason.is_none() {
            self.reason = Some(reason);
        }
        // Nothing more is dispatched or accepted from senders.
        self.handle.mark_closed();
        if self.queue_goodbye(words) {
            ctx.run_later(GOODBYE_GRACE, |_, ctx| ctx.stop());
        } else {
            ctx.stop();
        }
    }

    /// Queues the goodbye after everything queued; the writer stops once
    /// it is written. False if there was no room for it.
    fn queue_goodbye(&mut self, words: &str) -> bool {
        if self.clock.finishing.replace(true) {
            return true;
        }
        let bye = SendHalf::control(&Control::Goodbye {
            reason: words.to_owned(),
        });
        self.handle.shared.outbox.try_send(bye).is_ok()
    }

    fn close(&mut self, reason: CloseReason, ctx: &mut Context<Self>) {
        if self.reason.is_none() {
            self.reason = Some(reason);
        }
        ctx.stop();
    }
}

impl Handler<Drain> for Link {
    type Result = ();

    fn handle(&mut self, Drain(successor): Drain, ctx: &mut Context<Self>) {
        if self.draining {
            return;
        }
        self.draining = true;
        if self.peer_done {
            successor.send_replace(true);
        }
        self.successor = Some(successor);
        self.handle.mark_draining();
        if self.reason.is_none() {
            self.reason = Some(CloseReason::Replaced);
        }
        // "Nothing new from me on this link": after everything queued.
        let bye = SendHalf::control(&Control::Goodbye {
            reason: HANDOVER.to_owned(),
        });
        if self.handle.shared.outbox.try_send(bye).is_err() {
            ctx.stop();
            return;
        }
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        ctx.run_interval(Duration::from_millis(5), move |act, ctx| {
            if Instant::now() >= deadline {
                ctx.stop();
                return;
            }
            // Both sides said goodbye and every ask carried here is
            // answered: write what is queued (replies), then stop.
            let s = &act.handle.shared;
            let settled = act.inbound_asks.get() == 0 && s.pending.is_empty();
            if act.peer_done && settled && !act.clock.finishing.replace(true) {
                // Wakes the writer, which returns once the queue is written.
                let ping = SendHalf::control(&Control::Ping { nonce: 0 });
                if s.outbox.try_send(ping).is_err() {
                    ctx.stop();
                }
            }
        });
    }
}

/// The peer said it sends nothing new on this link (a handover).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct PeerHandedOver;

impl Handler<PeerHandedOver> for Link {
    type Result = ();

    fn handle(&mut self, _: PeerHandedOver, _ctx: &mut Context<Self>) {
        self.peer_done = true;
        if let Some(successor) = &self.successor {
            // The successor may write: the peer reads what follows there
            // after everything it read here.
            successor.send_replace(true);
        }
    }
}

/// The goodbye of a link handing its peer over to a successor. The peer
/// keeps reading it (replies may follow) until it stops.
pub(super) const HANDOVER: &str = "handover to a direct link";

/// How long a link that said goodbye waits for it to be written.
const GOODBYE_GRACE: Duration = Duration::from_secs(1);

impl Actor for Link {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some((parts, queue)) = self.parts.take() else {
            ctx.stop();
            return;
        };
        let LinkParts {
            wire,
            sender,
            receiver,
            leftover,
            predecessor,
            write_after,
        } = parts;
        self.predecessor = predecessor;
        self.write_after = write_after;
        let session = (sender, receiver, leftover, queue);
        match wire {
            Wire::Tcp(stream) => {
                if self.handle.initiator() != self.mesh.id {
                    // Tell the dialer where its connection came from.
                    let observed = SendHalf::control(&Control::Observed {
                        addr: self.handle.remote_addr().to_string(),
                    });
                    let _ = self.handle.try_send(observed);
                }
                let (read, write) = stream.into_split();
                self.spawn_tasks(read, write, session, ctx);
            }
            Wire::Circuit(stream) => {
                let (read, write) = stream.into_split();
                self.spawn_tasks(read, write, session, ctx);
            }
        }
        ctx.add_stream(Ticks {
            clock: Rc::clone(&self.clock),
            sleep: Box::pin(tokio::time::sleep_until(self.clock.epoch.into())),
        });
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.on_stopped();
    }
}

impl Link {
    /// Starts the reader and writer tasks over the two halves of the wire.
    fn spawn_tasks<R, W>(
        &mut self,
        read: R,
        write: W,
        (sender, receiver, leftover, queue): (SendCipher, RecvCipher, Vec<u8>, Queue),
        ctx: &mut Context<Self>,
    ) where
        R: AsyncRead + reader::ReadNow + Unpin + 'static,
        W: AsyncWrite + Unpin + 'static,
    {
        let me = ctx.address();
        let shared = &self.handle.shared;
        let reader = Reader {
            shared: Arc::clone(shared),
            mesh: Arc::clone(&self.mesh),
            clock: Rc::clone(&self.clock),
            session: RecvHalf::new(receiver, self.mesh.config.max_message),
            router: self.router.clone(),
            handle: self.handle.clone(),
            lookup: self.mesh.directory.lookup(),
            policy: crate::policy::LinkPolicy::new(
                self.mesh.directory.clone(),
                Arc::clone(&self.mesh.config.policy),
            ),
            caller: Caller {
                node: shared.peer,
                roles: Arc::clone(&shared.peer_roles),
                serial: shared.peer_serial,
                name: Arc::from(shared.peer_name.as_str()),
                addr: shared.remote_addr,
                operator: crate::policy::is_operator(&shared.peer_roles),
            },
            inbound_asks: Rc::clone(&self.inbound_asks),
            predecessor: self.predecessor.take(),
            pending_present: None,
            refusals_logged: std::cell::Cell::new(0),
            link: me.clone(),
        };
        let on_exit = me.clone();
        self.tasks.push(actix_rt::spawn(async move {
            let reason = reader.run(read, leftover).await;
            on_exit.do_send(Close(reason));
        }));
        let clock = Rc::clone(&self.clock);
        let mesh = Arc::clone(&self.mesh);
        let (peer, direct) = (shared.peer, shared.via.is_none());
        let counted = Arc::clone(shared);
        let write_after = self.write_after.take();
        self.tasks.push(actix_rt::spawn(async move {
            if let Some(mut after) = write_after {
                // The peer may hold a duplicate of this link (a crossed
                // dial it kept the other way round): it reads what it has
                // there before anything from here. Ends at `true` or close.
                let _ = after.wait_for(|handed_over| *handed_over).await;
            }
            let session = SendHalf::new(sender);
            let blocked = || direct && mesh.muted(peer);
            let written = |bytes: usize, envelopes: usize| {
                use std::sync::atomic::Ordering::Relaxed;
                counted.bytes_out.fetch_add(bytes as u64, Relaxed);
                counted.msgs_out.fetch_add(envelopes as u64, Relaxed);
            };
            let reason = writer::write_loop(write, session, queue, clock, blocked, written).await;
            me.do_send(Close(reason));
        }));
    }

    fn on_stopped(&mut self) {
        // The successor may dispatch now.
        self.successor.take();
        let s = &self.handle.shared;
        // Order matters: mark closed first, so an ask registered after the
        // clear sees the flag and fails instead of waiting for its timeout.
        self.handle.mark_closed();
        s.outbox.close();
        s.pending.clear();
        for task in self.tasks.drain(..) {
            task.abort();
        }
        let reason = self
            .reason
            .take()
            .unwrap_or(CloseReason::Local(LocalClose::Stopped));
        self.mesh.closed.push(crate::inspect::ClosedLink {
            peer: s.peer.to_string(),
            peer_name: s.peer_name.clone(),
            at_ms: super::unix_now_ms(),
            reason: reason.to_string(),
            failed: reason.kind().is_failure(),
            age_s: s.established_at.elapsed().as_secs_f64(),
        });
        if reason.kind().is_failure() {
            self.mesh.counters.link_failed();
            tracing::warn!(peer = %s.peer.short(), name = %s.peer_name, %reason, "link closed");
        } else {
            tracing::info!(peer = %s.peer.short(), name = %s.peer_name, %reason, "link closed");
        }
        self.router.do_send(LinkClosed {
            peer: s.peer,
            id: s.id,
            failed: reason.kind().is_failure(),
        });
        if s.via.is_none() {
            super::relay::link_closed(&self.mesh, s.peer, s.id);
        }
    }
}

impl Handler<Close> for Link {
    type Result = ();

    fn handle(&mut self, msg: Close, ctx: &mut Context<Self>) {
        match msg.0 {
            // Handing over: everything is written and answered.
            CloseReason::Local(LocalClose::Finished) if self.draining => ctx.stop(),
            CloseReason::Local(LocalClose::Shutdown) => {
                self.goodbye(msg.0, "node shutting down", ctx)
            }
            reason => self.close(reason, ctx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_protocol::session::{Liveness, LivenessConfig};

    /// Drives both ends of an idle link for a minute of simulated time
    /// (1 ms one way): how many pings each end sends, and whether either
    /// end closed for silence (when).
    fn idle_link(
        dialer_gone_at: Option<Duration>,
        one_side: bool,
    ) -> (usize, usize, Option<Duration>) {
        let interval = Duration::from_millis(500);
        let config = |dialer| LivenessConfig {
            heartbeat_interval: if one_side {
                ping_every(interval, dialer)
            } else {
                interval
            },
            heartbeat_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(3600),
        };
        let mut ends = [
            Liveness::new(config(true), Duration::ZERO),
            Liveness::new(config(false), Duration::ZERO),
        ];
        let mut pings = [0, 0];
        // (arrives at, to end, is a ping)
        let mut wire: Vec<(Duration, usize, bool)> = Vec::new();
        let step = Duration::from_millis(1);
        let mut now = Duration::ZERO;
        while now < Duration::from_secs(60) {
            now += step;
            let gone = |end: usize| end == 0 && dialer_gone_at.is_some_and(|at| now >= at);
            let mut arrived = Vec::new();
            wire.retain(|&(at, to, ping)| {
                if at <= now {
                    arrived.push((to, ping));
                    false
                } else {
                    true
                }
            });
            for (to, ping) in arrived {
                if gone(to) {
                    continue;
                }
                ends[to].handle_received(now, false);
                if ping {
                    ends[to].handle_sent(now, false);
                    wire.push((now + step, 1 - to, false));
                }
            }
            for end in 0..2 {
                if gone(end) {
                    continue;
                }
                ends[end].handle_timeout(now);
                while let Some(action) = ends[end].poll_action() {
                    match action {
                        Action::Ping => {
                            pings[end] += 1;
                            wire.push((now + step, 1 - end, true));
                        }
                        _ => return (pings[0], pings[1], Some(now)),
                    }
                }
            }
        }
        (pings[0], pings[1], None)
    }

    #[test]
    fn the_dialer_keeps_an_idle_link_alive_and_the_acceptor_only_times_the_round_trip() {
        let (dialer, acceptor, closed) = idle_link(None, true);
        assert_eq!(closed, None);
        // One ping per interval on the link (two a second), one in twelve
        // of them from the acceptor (to time the round trip every
        // RTT_SAMPLE_INTERVALS of its own 750 ms: every 6 s) ...
        assert!(
            (118..=122).contains(&(dialer + acceptor)),
            "{dialer} + {acceptor}"
        );
        assert!((9..=11).contains(&acceptor), "{acceptor}");
        // ... where both ends pinging every interval cross: two each.
        let (a, b, closed) = idle_link(None, false);
        assert_eq!(closed, None);
        assert!(a + b >= 230, "{a} + {b}");
    }

    #[test]
    fn when_the_dialer_falls_silent_the_acceptor_closes_within_the_heartbeat_timeout() {
        let (_, _, closed) = idle_link(Some(Duration::from_secs(10)), true);
        let closed = closed.expect("the acceptor closes");
        assert!(closed <= Duration::from_millis(12_001), "{closed:?}");
    }
}
