//! A link made but not yet started: everything it needs, which the Router
//! starts on its own thread or, for a TCP link to a head of a head node,
//! on the thread the node's Raft runs on (the head's start), so that Raft's
//! heartbeats and their answers never queue behind the work of thousands
//! of other links (lease renewals) on the node's main thread. The kernel
//! schedules that thread on its own: a leader starved of CPU by its
//! renewals still answers and hears its followers in time.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use swarm_protocol::session::{Liveness, LivenessConfig};
use tokio::net::TcpStream;

use super::handle::LinkShared;
use super::outbox::{Outbox, Queue};
use super::{ping_every, Clock, Link, LinkHandle, LinkParts, MeshShared, PeerIdentity, Wire};
use crate::error::CloseReason;
use crate::mesh::router::Router;

/// A link not yet started.
pub(in crate::mesh) struct Seed {
    handle: LinkHandle,
    mesh: Arc<MeshShared>,
    router: Addr<Router>,
    parts: LinkParts,
    queue: Queue,
    liveness: LivenessConfig,
}

impl Link {
    /// A link to the peer `who` over an established session; returns the
    /// link (not yet started) and the handle senders use.
    pub(in crate::mesh) fn seed(
        id: u64,
        who: PeerIdentity,
        parts: LinkParts,
        mesh: Arc<MeshShared>,
        router: Addr<Router>,
    ) -> (Seed, LinkHandle) {
        let (outbox, queue) = Outbox::new(mesh.config.link_queue_bytes);
        let shared = Arc::new(LinkShared::new(id, who, mesh.config.max_message, outbox));
        let handle = LinkHandle { shared };
        let c = &mesh.config;
        let liveness = LivenessConfig {
            heartbeat_interval: ping_every(c.heartbeat_interval, handle.initiator() == mesh.id),
            heartbeat_timeout: c.heartbeat_timeout,
            idle_timeout: c.idle_timeout,
        };
        let seed = Seed {
            handle: handle.clone(),
            mesh,
            router,
            parts,
            queue,
            liveness,
        };
        (seed, handle)
    }

    /// The actor over `parts` (its timer and counters are made on the
    /// thread it runs on).
    fn grown(seed: Moved, parts: Option<LinkParts>, reason: Option<CloseReason>) -> Self {
        let Moved {
            handle,
            mesh,
            router,
            queue,
            liveness,
        } = seed;
        Self {
            handle,
            mesh,
            router,
            parts: parts.map(|parts| (parts, queue)),
            tasks: Vec::new(),
            clock: Rc::new(Clock {
                epoch: Instant::now(),
                liveness: RefCell::new(Liveness::new(liveness, std::time::Duration::ZERO)),
                finishing: Cell::new(false),
                ping_sent: Cell::new(None),
                look: Cell::new(0),
                reader: RefCell::new(None),
                hold: Cell::new(None),
            }),
            reason,
            inbound_asks: Rc::new(Cell::new(0)),
            successor: None,
            predecessor: None,
            write_after: None,
            draining: false,
            peer_done: false,
            look: None,
            looks: 0,
        }
    }
}

/// What a seed carries to another thread, its wire aside.
struct Moved {
    handle: LinkHandle,
    mesh: Arc<MeshShared>,
    router: Addr<Router>,
    queue: Queue,
    liveness: LivenessConfig,
}

impl Seed {
    /// Whether the link is for the priority thread (`on`): a direct TCP
    /// link to a peer whose certificate carries the `head` role.
    pub(in crate::mesh) fn is_priority(&self) -> bool {
        matches!(self.parts.wire, Wire::Tcp(_)) && self.handle.peer_has_role("head")
    }

    /// The link's state apart from its parts (wire, session halves).
    fn into_parts(self) -> (Moved, LinkParts) {
        let Seed {
            handle,
            mesh,
            router,
            parts,
            queue,
            liveness,
        } = self;
        let moved = Moved {
            handle,
            mesh,
            router,
            queue,
            liveness,
        };
        (moved, parts)
    }

    /// Starts the link on this thread.
    pub(in crate::mesh) fn start(self) -> Addr<Link> {
        let (moved, parts) = self.into_parts();
        Link::grown(moved, Some(parts), None).start()
    }

    /// Starts a TCP link on `arbiter`'s thread, its socket registered with
    /// that thread's reactor (else its readiness would still wait for this
    /// thread). Any other wire starts here.
    pub(in crate::mesh) fn start_on(self, arbiter: &ArbiterHandle) -> Addr<Link> {
        let (moved, parts) = self.into_parts();
        let stream = match parts.wire {
            Wire::Tcp(stream) => stream.into_std(),
            wire => return Link::grown(moved, Some(LinkParts { wire, ..parts }), None).start(),
        };
        Link::start_in_arbiter(arbiter, move |_| {
            match stream.and_then(TcpStream::from_std) {
                Ok(stream) => {
                    let parts = LinkParts {
                        wire: Wire::Tcp(stream),
                        ..parts
                    };
                    Link::grown(moved, Some(parts), None)
                }
                // No parts: it stops at once, with the reason.
                Err(e) => Link::grown(moved, None, Some(CloseReason::Io(e.kind()))),
            }
        })
    }
}
