//! Runs the sans-IO handshake over a TCP stream: writes what the state
//! machine yields, reads frames into it, and enforces the timeout. What to
//! do with the established link is the caller's business.

use std::sync::Arc;
use std::time::Duration;

use swarm_protocol::record::MAX_NOISE_MESSAGE;
use swarm_protocol::{
    decode_frame, Decoded, Established, Handshake, HandshakeConfig, HandshakeError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::mesh::unix_now;

/// Why a handshake over a socket failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// The protocol refused the peer (or the peer's answer).
    #[error("{0}")]
    Refused(#[from] HandshakeError),
    /// The peer sent an invalid frame.
    #[error("bad frame: {0}")]
    Frame(#[from] swarm_protocol::FrameError),
    /// The peer closed the connection before the handshake ended.
    #[error("{0}")]
    Closed(&'static str),
    /// A socket error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The handshake did not finish in time.
    #[error("handshake timed out after {0:?}")]
    Timeout(Duration),
}

/// Performs the handshake on `stream`. Returns the established session and
/// any bytes already read past the handshake.
///
/// # Errors
///
/// A [`HandshakeFailure`]; the caller MUST drop the stream.
pub(crate) async fn handshake(
    stream: &mut TcpStream,
    config: Arc<HandshakeConfig>,
    initiator: bool,
    timeout: Duration,
) -> Result<(Established, Vec<u8>), HandshakeFailure> {
    match tokio::time::timeout(timeout, drive(stream, config, initiator)).await {
        Ok(result) => result,
        Err(_) => Err(HandshakeFailure::Timeout(timeout)),
    }
}

async fn drive(
    stream: &mut TcpStream,
    config: Arc<HandshakeConfig>,
    initiator: bool,
) -> Result<(Established, Vec<u8>), HandshakeFailure> {
    let mut hs = if initiator {
        Handshake::initiator(config)?
    } else {
        Handshake::responder(config)?
    };
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        while let Some(frame) = hs.poll_transmit() {
            stream.write_all(&frame).await?;
        }
        if hs.is_established() {
            break;
        }
        // Read until one whole frame is buffered.
        let (result, consumed) = loop {
            match decode_frame(&buf, MAX_NOISE_MESSAGE)? {
                Decoded::Frame { payload, consumed } => {
                    break (hs.handle_frame(payload, unix_now()), consumed)
                }
                Decoded::Incomplete { needed } => {
                    buf.reserve(needed.saturating_sub(buf.len()));
                    if stream.read_buf(&mut buf).await? == 0 {
                        return Err(HandshakeFailure::Closed(if initiator {
                            "the peer closed the connection during the handshake \
                             (it refused our join secret, cluster or certificate)"
                        } else {
                            "the peer closed the connection during the handshake"
                        }));
                    }
                }
            }
        };
        buf.drain(..consumed);
        if let Err(e) = result {
            // Tell the peer why, when the protocol has a last word (version mismatch).
            while let Some(frame) = hs.poll_transmit() {
                let _ = stream.write_all(&frame).await;
            }
            return Err(e.into());
        }
    }
    match hs.into_established() {
        Some(est) => Ok((est, buf)),
        None => Err(HandshakeFailure::Closed(
            "handshake ended without a session",
        )),
    }
}
