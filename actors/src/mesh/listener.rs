//! The `Listener` accepts TCP connections and runs each handshake as its
//! own task. It bounds handshakes in progress globally
//! (`max_pending_handshakes`) and per source address
//! (`max_handshakes_per_source`), and drops a connection that sends nothing
//! within `first_byte_timeout`, so one client holding idle connections
//! cannot lock other peers out. A refused connection is counted and logged
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

use super::connect::handshake;
use super::refusals::{Refusal, RefusalLog};
use super::router::{Inbound, Router};
use super::Shared;

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
}

impl Listener {
    pub(super) fn new(socket: TcpListener, mesh: Arc<Shared>, router: Addr<Router>) -> Self {
        let interval = mesh.config.summary_interval;
        Self {
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
    /// Handshakes in progress.
    in_progress: Rc<Cell<usize>>,
    /// Handshakes in progress by source address.
    per_source: Rc<RefCell<HashMap<IpAddr, usize>>>,
}

/// Holds one handshake slot (global and per source) until dropped.
struct Slot {
    gate: Gate,
    source: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let gate = &self.gate;
        gate.in_progress
            .set(gate.in_progress.get().saturating_sub(1));
        let mut per_source = gate.per_source.borrow_mut();
        if let Some(n) = per_source.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_source.remove(&self.source);
            }
        }
    }
}

impl Gate {
    fn refused(&self, remote: Option<SocketAddr>, why: Refusal, detail: &dyn std::fmt::Display) {
        self.mesh.counters.handshake_refused();
        self.log
            .borrow_mut()
            .refused(Instant::now(), remote, why, detail);
    }

    /// Takes a handshake slot for `remote`, unless a bound is reached.
    fn admit(&self, remote: SocketAddr) -> Result<Slot, Refusal> {
        let config = &self.mesh.config;
        if self.in_progress.get() >= config.max_pending_handshakes {
            return Err(Refusal::TooManyHandshakes);
        }
        let source = remote.ip();
        {
            let mut per_source = self.per_source.borrow_mut();
            let n = per_source.entry(source).or_default();
            if *n >= config.max_handshakes_per_source {
                return Err(Refusal::TooManyFromSource);
            }
            *n += 1;
        }
        self.in_progress.set(self.in_progress.get() + 1);
        Ok(Slot {
            gate: self.clone(),
            source,
        })
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
            let slot = match self.admit(remote) {
                Ok(slot) => slot,
                Err(why) => {
                    self.refused(Some(remote), why, &why_detail(why));
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            actix_rt::spawn(self.clone().handshake(stream, remote, slot));
        }
    }

    async fn handshake(self, mut stream: TcpStream, remote: SocketAddr, slot: Slot) {
        let config = &self.mesh.config;
        // A peer dialing us writes its first handshake message at once.
        let mut first = [0u8; 1];
        match tokio::time::timeout(config.first_byte_timeout, stream.peek(&mut first)).await {
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
                self.refused(
                    Some(remote),
                    Refusal::Silent,
                    &format!("nothing received within {:?}", config.first_byte_timeout),
                );
                return;
            }
        }
        let hs = self.mesh.handshake();
        let result = handshake(&mut stream, hs, false, config.handshake_timeout).await;
        drop(slot);
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
            "too many handshakes in progress from this address; connection dropped"
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
