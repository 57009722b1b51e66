//! A link's write half: drains the outbox, packs every queued envelope into
//! as few Noise messages as possible, seals them and writes once per batch
//! (or per [`WRITE_CHUNK`] for large ones), returning queue budget as bytes
//! reach the socket.

use std::rc::Rc;
use std::time::Instant;

use swarm_protocol::record::MAX_NOISE_MESSAGE;
use swarm_protocol::{Control, Envelope, Packer, SendCipher};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;

use super::outbox::Queue;
use super::Activity;
use crate::error::{CloseReason, LocalClose};

/// Bytes sealed before they are written, so a burst of large envelopes is
/// written (and its budget returned) piece by piece.
const WRITE_CHUNK: usize = 256 * 1024;

/// Runs until the socket fails or the link's handles are gone.
pub(super) async fn write_loop(
    mut write: OwnedWriteHalf,
    mut cipher: SendCipher,
    queue: Queue,
    activity: Rc<Activity>,
) -> CloseReason {
    let Queue { mut rx, budget } = queue;
    let mut packer = Packer::new();
    let heartbeats = [
        control(Control::Ping { nonce: 0 }),
        control(Control::Pong { nonce: 0 }),
    ];
    let mut queued = Vec::with_capacity(1024);
    let mut out = Vec::with_capacity(WRITE_CHUNK + MAX_NOISE_MESSAGE);
    loop {
        if rx.recv_many(&mut queued, 1024).await == 0 {
            return CloseReason::Local(LocalClose::HandleDropped);
        }
        if queued.iter().any(|e| !heartbeats.contains(e)) {
            activity.last_user.set(Instant::now());
        }
        let mut unreleased = 0;
        for envelope in queued.drain(..) {
            unreleased += budget.cost(&envelope);
            if packer
                .push(&envelope, &mut |r| cipher.seal_frame(r, &mut out))
                .is_err()
            {
                return CloseReason::Local(LocalClose::SealFailed);
            }
            if out.len() >= WRITE_CHUNK {
                if let Err(e) = write.write_all(&out).await {
                    return CloseReason::Io(e.kind());
                }
                out.clear();
                budget.release(std::mem::take(&mut unreleased));
            }
        }
        if packer
            .flush(&mut |r| cipher.seal_frame(r, &mut out))
            .is_err()
        {
            return CloseReason::Local(LocalClose::SealFailed);
        }
        if !out.is_empty() {
            if let Err(e) = write.write_all(&out).await {
                return CloseReason::Io(e.kind());
            }
            out.clear();
        }
        budget.release(unreleased);
        activity.last_tx.set(Instant::now());
        if out.capacity() > 4 * WRITE_CHUNK {
            out.shrink_to(WRITE_CHUNK + MAX_NOISE_MESSAGE);
        }
    }
}

/// An encoded control envelope.
pub(super) fn control(control: Control) -> Vec<u8> {
    let mut buf = Vec::with_capacity(16);
    Envelope::Control(control).encode(&mut buf);
    buf
}
