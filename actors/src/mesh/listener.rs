//! The `Listener` accepts TCP connections and runs each handshake as its
//! own task, at most `max_pending_handshakes` at once. A connection that
//! fails its handshake is logged with the reason and dropped; only
//! authenticated links reach the Router. If the accept loop fails, the
//! Listener logs it and stops; the node keeps its existing links.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use actix::prelude::*;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::connect::handshake;
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
}

impl Listener {
    pub(super) fn new(socket: TcpListener, mesh: Arc<Shared>, router: Addr<Router>) -> Self {
        Self {
            socket: Some(socket),
            mesh,
            router,
            task: None,
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
        let mesh = Arc::clone(&self.mesh);
        let router = self.router.clone();
        self.task = Some(actix_rt::spawn(accept_loop(socket, mesh, router)));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn accept_loop(socket: TcpListener, mesh: Arc<Shared>, router: Addr<Router>) {
    let in_progress = Rc::new(Cell::new(0usize));
    loop {
        let (mut stream, remote) = match socket.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if in_progress.get() >= mesh.config.max_pending_handshakes {
            mesh.counters.handshake_refused();
            tracing::warn!(%remote, "too many handshakes in progress; connection dropped");
            continue;
        }
        let _ = stream.set_nodelay(true);
        in_progress.set(in_progress.get() + 1);
        let counter = Rc::clone(&in_progress);
        let mesh = Arc::clone(&mesh);
        let router = router.clone();
        actix_rt::spawn(async move {
            let config = Arc::clone(&mesh.handshake);
            let result = handshake(&mut stream, config, false, mesh.config.handshake_timeout).await;
            counter.set(counter.get().saturating_sub(1));
            match result {
                Ok((est, leftover)) => router.do_send(Inbound {
                    stream,
                    est,
                    leftover,
                    remote,
                }),
                Err(e) => {
                    mesh.counters.handshake_refused();
                    tracing::warn!(%remote, reason = %e, "handshake refused");
                }
            }
        });
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
