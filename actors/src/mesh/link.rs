//! A `Link` owns one authenticated connection to one peer. It is a thin
//! driver of its parts, each in its own file:
//!
//! ```text
//! Link (actor: heartbeat and idle timers, close reason)
//! ├── reader task   frames in, decrypt, reassemble, dispatch   (reader.rs)
//! └── writer task   outbox drained, packed, sealed, written    (writer.rs)
//! LinkHandle        what senders on any thread hold            (handle.rs)
//! Outbox            the queue between them, bounded in bytes   (outbox.rs)
//! ```
//!
//! If the reader or writer fails, or the heartbeat or idle timer fires, the
//! Link logs the reason, fails every ask still waiting on it, tells the
//! Router, and stops. It has no children to restart: the next send dials a
//! new link. It makes no routing decisions; the Router owns the table.

mod handle;
mod outbox;
mod reader;
mod writer;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use swarm_protocol::{Control, Reassembler, RecvCipher, SendCipher};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::router::{LinkClosed, Router};
use super::Shared as MeshShared;
use crate::directory::Caller;
use crate::error::{CloseReason, LocalClose};
use handle::LinkShared;
pub(crate) use handle::{LinkHandle, PeerIdentity};
use outbox::{Outbox, Queue};
use reader::Reader;

/// Everything needed to start a link once its handshake is done.
pub(super) struct LinkParts {
    pub(super) stream: TcpStream,
    pub(super) sender: SendCipher,
    pub(super) receiver: RecvCipher,
    /// Bytes read past the handshake.
    pub(super) leftover: Vec<u8>,
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
    /// Timestamps the tasks update and the heartbeat reads.
    activity: Rc<Activity>,
    /// The first reason given for closing.
    reason: Option<CloseReason>,
}

/// When traffic last moved, for heartbeat and idle checks.
pub(super) struct Activity {
    last_rx: Cell<Instant>,
    last_tx: Cell<Instant>,
    last_user: Cell<Instant>,
    /// True while the reader waits for a full local mailbox: silence from
    /// the peer is then our doing, not a sign that the peer is gone.
    reader_waiting: Cell<bool>,
}

/// Closes a link with a reason.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Close(pub(super) CloseReason);

impl Link {
    /// A link to the peer `who` over an established session; returns the
    /// actor (not yet started) and the handle senders use.
    pub(super) fn new(
        id: u64,
        who: PeerIdentity,
        parts: LinkParts,
        mesh: Arc<MeshShared>,
        router: Addr<Router>,
    ) -> (Self, LinkHandle) {
        let (outbox, queue) = Outbox::new(mesh.config.link_queue_bytes);
        let shared = Arc::new(LinkShared::new(id, who, mesh.config.max_message, outbox));
        let handle = LinkHandle { shared };
        let now = Instant::now();
        let link = Self {
            handle: handle.clone(),
            mesh,
            router,
            parts: Some((parts, queue)),
            tasks: Vec::new(),
            activity: Rc::new(Activity {
                last_rx: Cell::new(now),
                last_tx: Cell::new(now),
                last_user: Cell::new(now),
                reader_waiting: Cell::new(false),
            }),
            reason: None,
        };
        (link, handle)
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let config = &self.mesh.config;
        let now = Instant::now();
        let silent = now.duration_since(self.activity.last_rx.get());
        if silent > config.heartbeat_timeout && !self.activity.reader_waiting.get() {
            self.close(CloseReason::HeartbeatTimeout(silent), ctx);
            return;
        }
        let idle = now.duration_since(self.activity.last_user.get());
        if idle > config.idle_timeout {
            self.close(CloseReason::Idle(idle), ctx);
            return;
        }
        if now.duration_since(self.activity.last_tx.get()) >= config.heartbeat_interval {
            let buf = writer::control(Control::Ping { nonce: 0 });
            // A full queue means traffic is flowing; no ping is needed.
            let _ = self.handle.try_send(buf);
        }
    }

    fn close(&mut self, reason: CloseReason, ctx: &mut Context<Self>) {
        if self.reason.is_none() {
            self.reason = Some(reason);
        }
        ctx.stop();
    }
}

impl Actor for Link {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some((parts, queue)) = self.parts.take() else {
            ctx.stop();
            return;
        };
        let (read, write) = parts.stream.into_split();
        let me = ctx.address();
        let shared = &self.handle.shared;
        let reader = Reader {
            shared: Arc::clone(shared),
            mesh: Arc::clone(&self.mesh),
            activity: Rc::clone(&self.activity),
            cipher: parts.receiver,
            reassembler: Reassembler::new(self.mesh.config.max_message),
            lookup: self.mesh.directory.lookup(),
            caller: Caller {
                node: shared.peer,
                roles: Arc::clone(&shared.peer_roles),
            },
            inbound_asks: Rc::new(Cell::new(0)),
        };
        let on_exit = me.clone();
        self.tasks.push(actix_rt::spawn(async move {
            let reason = reader.run(read, parts.leftover).await;
            on_exit.do_send(Close(reason));
        }));
        let activity = Rc::clone(&self.activity);
        self.tasks.push(actix_rt::spawn(async move {
            let reason = writer::write_loop(write, parts.sender, queue, activity).await;
            me.do_send(Close(reason));
        }));
        let tick = (self.mesh.config.heartbeat_interval / 2).max(Duration::from_millis(10));
        ctx.run_interval(tick, Self::heartbeat);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
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
        if reason.kind().is_failure() {
            self.mesh.counters.link_failed();
            tracing::warn!(peer = %s.peer.short(), name = %s.peer_name, %reason, "link closed");
        } else {
            tracing::info!(peer = %s.peer.short(), name = %s.peer_name, %reason, "link closed");
        }
        self.router.do_send(LinkClosed {
            peer: s.peer,
            id: s.id,
        });
    }
}

impl Handler<Close> for Link {
    type Result = ();

    fn handle(&mut self, msg: Close, ctx: &mut Context<Self>) {
        self.close(msg.0, ctx);
    }
}
