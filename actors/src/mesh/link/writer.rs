//! A link's write half: drains the outbox into the session's [`SendHalf`]
//! (every queued envelope packed into as few Noise messages as possible),
//! writes once per batch (or per [`WRITE_CHUNK`] for large ones), and
//! returns queue budget as bytes reach the socket.

use std::rc::Rc;

use swarm_protocol::record::MAX_NOISE_MESSAGE;
use swarm_protocol::session::SendHalf;
use swarm_protocol::Control;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::outbox::Queue;
use super::Clock;
use crate::error::{CloseReason, LocalClose};

/// Bytes sealed before they are written, so a burst of large envelopes is
/// written (and its budget returned) piece by piece.
const WRITE_CHUNK: usize = 256 * 1024;

/// Runs until the socket fails, the link's handles are gone, or the link
/// said goodbye and everything queued is written.
pub(super) async fn write_loop<W: AsyncWrite + Unpin>(
    mut write: W,
    mut session: SendHalf,
    queue: Queue,
    clock: Rc<Clock>,
    blocked: impl Fn() -> bool,
    written: impl Fn(usize, usize),
) -> CloseReason {
    let Queue { mut rx, budget } = queue;
    let heartbeats = [
        SendHalf::control(&Control::Ping { nonce: 0 }),
        SendHalf::control(&Control::Pong { nonce: 0 }),
    ];
    let mut queued = Vec::with_capacity(1024);
    let mut out = Vec::with_capacity(WRITE_CHUNK + MAX_NOISE_MESSAGE);
    loop {
        if rx.recv_many(&mut queued, 1024).await == 0 {
            return CloseReason::Local(LocalClose::HandleDropped);
        }
        let user = queued.iter().any(|e| !heartbeats.contains(e));
        let mut envelopes = queued.len();
        let mut unreleased = 0;
        for envelope in queued.drain(..) {
            unreleased += budget.cost(&envelope);
            if session.push(&envelope, &mut out).is_err() {
                return CloseReason::Local(LocalClose::SealFailed);
            }
            if out.len() >= WRITE_CHUNK {
                if blocked() {
                    // An injected fault: the bytes "never arrive".
                    out.clear();
                }
                if let Err(e) = write.write_all(&out).await {
                    return CloseReason::Io(e.kind());
                }
                written(out.len(), std::mem::take(&mut envelopes));
                out.clear();
                budget.release(std::mem::take(&mut unreleased));
            }
        }
        if session.flush(&mut out).is_err() {
            return CloseReason::Local(LocalClose::SealFailed);
        }
        if blocked() {
            out.clear();
        }
        if !out.is_empty() {
            if let Err(e) = write.write_all(&out).await {
                return CloseReason::Io(e.kind());
            }
            written(out.len(), envelopes);
            out.clear();
        }
        // A relayed circuit may hold the last frame until there is room on
        // the relay link; for a socket this does nothing.
        if let Err(e) = write.flush().await {
            return CloseReason::Io(e.kind());
        }
        budget.release(unreleased);
        clock.sent(user);
        if out.capacity() > 4 * WRITE_CHUNK {
            out.shrink_to(WRITE_CHUNK + MAX_NOISE_MESSAGE);
        }
        if clock.finishing() && rx.is_empty() {
            // The goodbye is written: the link may close.
            return CloseReason::Local(LocalClose::Finished);
        }
    }
}
