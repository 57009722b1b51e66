//! The `Listener` accepts TCP connections and serves each as its own task.
//! A connection first waits for its first byte in the [`silent`] pool
//! (`max_silent_connections`, within the fd limit; its deadline is
//! `first_byte_timeout`, shorter as the pool fills, and a full pool pushes
//! out its oldest), and only then takes one of the `max_pending_handshakes`
//! handshake slots; connections not yet links are bounded per source
//! address (`max_handshakes_per_source`). So idle connections, even spread
//! over many addresses, cost little and cannot lock real peers out, who
//! speak at once. A refused connection is counted and logged
//! through a [`RefusalLog`] (a few lines, then a summary per interval);
//! only authenticated links reach the Router. If the accept loop fails, it
//! backs off; the node keeps its existing links.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use self::silent::SilentPool;
use super::connect::handshake;
use super::refusals::{Refusal, RefusalLog};
use super::router::{Inbound, Router};
use super::Shared;

mod silent;

/// The listener actor.
pub(super) struct Listener {
    /// Consumed by `started`.
    socket: Option<TcpListener>,
    /// The mesh: config and counters.
    mesh: Arc<Shared>,
    /// Receives authenticated connections.
    router: Addr<Router>,
    /// The accept loop, aborted when the listener stops.
    task: Option<JoinHandle<()>>,
    /// Shared with the accept loop; the summary timer rolls it.
    log: Rc<RefCell<RefusalLog>>,
    /// How many silent connections may wait at once (the configured bound,
    /// within the file descriptor limit).
    silent_capacity: usize,
}

impl Listener {
    pub(super) fn new(socket: TcpListener, mesh: Arc<Shared>, router: Addr<Router>) -> Self {
        let interval = mesh.config.summary_interval;
        let silent_capacity = silent::capacity(
            mesh.config.max_silent_connections,
            sysinfo::System::open_files_limit().ok(),
        );
        tracing::debug!(silent_capacity, "listener bounds silent connections");
        Self {
            silent_capacity,
            socket: Some(socket),
            mesh,
            router,
            task: None,
            log: Rc::new(RefCell::new(RefusalLog::new(interval, Instant::now()))),
        }
    }
}

impl Actor for Listener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(socket) = self.socket.take() else {
            ctx.stop();
            return;
        };
        let gate = Gate {
            mesh: Arc::clone(&self.mesh),
            router: self.router.clone(),
            log: Rc::clone(&self.log),
            in_progress: Rc::new(Cell::new(0)),
            per_source: Rc::new(RefCell::new(HashMap::new())),
            silent: Rc::new(RefCell::new(SilentPool::new(
                self.silent_capacity,
                self.mesh.config.first_byte_timeout,
            ))),
        };
        self.task = Some(actix_rt::spawn(gate.accept_loop(socket)));
        // A summary of suppressed refusals once the interval is over, even
        // if no further connection arrives to trigger it.
        ctx.run_interval(self.mesh.config.summary_interval, |act, _| {
            act.log.borrow_mut().roll(Instant::now());
        });
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The accept loop's state: what it bounds and where it reports.
#[derive(Clone)]
struct Gate {
    mesh: Arc<Shared>,
    router: Addr<Router>,
    log: Rc<RefCell<RefusalLog>>,
    /// Handshakes in progress: connections that spoke and hold a slot.
    in_progress: Rc<Cell<usize>>,
    /// Connections not yet links (silent or in the handshake) by source address.
    per_source: Rc<RefCell<HashMap<IpAddr, usize>>>,
    /// Connections that have sent nothing yet.
    silent: Rc<RefCell<SilentPool>>,
}

/// Counts one connection against its source address until dropped.
struct Source {
    gate: Gate,
    source: IpAddr,
}

impl Drop for Source {
    fn drop(&mut self) {
        let mut per_source = self.gate.per_source.borrow_mut();
        if let Some(n) = per_source.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_source.remove(&self.source);
            }
        }
    }
}

/// Holds one place in the silent pool until dropped.
struct Silent {
    gate: Gate,
    ticket: u64,
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.gate.silent.borrow_mut().leave(self.ticket);
    }
}

/// Holds one handshake slot until dropped.
struct Slot {
    gate: Gate,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let in_progress = &self.gate.in_progress;
        in_progress.set(in_progress.get().saturating_sub(1));
    }
}

impl Gate {
    fn refused(&self, remote: Option<SocketAddr>, why: Refusal, detail: &dyn std::fmt::Display) {
        self.mesh.counters.handshake_refused();
        self.log
            .borrow_mut()
            .refused(Instant::now(), remote, why, detail);
    }

    /// Counts a connection from `remote` against its source address,
    /// unless that source has too many connections not yet links.
    fn admit(&self, remote: SocketAddr) -> Result<Source, Refusal> {
        let source = remote.ip();
        let mut per_source = self.per_source.borrow_mut();
        let n = per_source.entry(source).or_default();
        if *n >= self.mesh.config.max_handshakes_per_source {
            return Err(Refusal::TooManyFromSource);
        }
        *n += 1;
        Ok(Source {
            gate: self.clone(),
            source,
        })
    }

    /// Takes a handshake slot, unless all are taken.
    fn slot(&self) -> Result<Slot, Refusal> {
        if self.in_progress.get() >= self.mesh.config.max_pending_handshakes {
            return Err(Refusal::TooManyHandshakes);
        }
        self.in_progress.set(self.in_progress.get() + 1);
        Ok(Slot { gate: self.clone() })
    }

    async fn accept_loop(self, socket: TcpListener) {
        loop {
            let (stream, remote) = match socket.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    self.refused(None, Refusal::AcceptFailed, &e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let source = match self.admit(remote) {
                Ok(source) => source,
                Err(why) => {
                    self.refused(Some(remote), why, &why_detail(why));
                    continue;
                }
            };
            let (ticket, pushed) = self.silent.borrow_mut().admit(remote);
            if let Some(pushed) = pushed {
                if let Some(task) = pushed.task {
                    task.abort();
                }
                self.mesh.counters.silent_dropped();
                self.refused(
                    Some(pushed.remote),
                    Refusal::PushedOut,
                    &"silent connection pushed out by a newer one (the pool of silent connections is full)",
                );
            }
            let _ = stream.set_nodelay(true);
            let silent = Silent {
                gate: self.clone(),
                ticket: ticket.id,
            };
            let task = actix_rt::spawn(self.clone().serve(
                stream,
                remote,
                source,
                silent,
                ticket.deadline,
            ));
            self.silent
                .borrow_mut()
                .attach(ticket.id, task.abort_handle());
        }
    }

    /// Waits for the first byte in the silent pool, then runs the
    /// handshake in a slot.
    async fn serve(
        self,
        mut stream: TcpStream,
        remote: SocketAddr,
        source: Source,
        silent: Silent,
        deadline: Duration,
    ) {
        // A peer dialing us writes its first handshake message at once.
        let mut first = [0u8; 1];
        match tokio::time::timeout(deadline, stream.peek(&mut first)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => {
                self.refused(
                    Some(remote),
                    Refusal::Silent,
                    &"closed before sending anything",
                );
                return;
            }
            Err(_) => {
                self.mesh.counters.silent_dropped();
                self.refused(
                    Some(remote),
                    Refusal::Silent,
                    &format_args!("nothing received within {deadline:?}"),
                );
                return;
            }
        }
        drop(silent);
        let slot = match self.slot() {
            Ok(slot) => slot,
            Err(why) => {
                self.refused(Some(remote), why, &why_detail(why));
                return;
            }
        };
        let config = &self.mesh.config;
        let hs = self.mesh.handshake();
        let result = handshake(&mut stream, hs, false, config.handshake_timeout).await;
        drop(slot);
        drop(source);
        let delay = config.faults.as_ref().and_then(|f| f.accept_delay());
        if let (Ok(_), Some(delay)) = (&result, delay) {
            // An injected fault: a slow accept path.
            tokio::time::sleep(delay).await;
        }
        match result {
            Ok((est, leftover)) => self.router.do_send(Inbound {
                stream,
                est,
                leftover,
                remote,
            }),
            Err(e) => self.refused(Some(remote), Refusal::HandshakeFailed, &e),
        }
    }
}

fn why_detail(why: Refusal) -> &'static str {
    match why {
        Refusal::TooManyHandshakes => "too many handshakes in progress; connection dropped",
        Refusal::TooManyFromSource => {
            "too many connections not yet links from this address; connection dropped"
        }
        _ => "refused",
    }
}

/// Stops the listener.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct StopListener;

impl Handler<StopListener> for Listener {
    type Result = ();

    fn handle(&mut self, _: StopListener, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
