//! Runs the sans-IO handshake over a byte stream (TCP or a relayed circuit): writes what the state
//! machine yields, reads frames into it, and enforces the timeout; and
//! dials (connect plus handshake under one deadline). What to do with the
//! established link is the caller's business.

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use swarm_protocol::record::MAX_NOISE_MESSAGE;
use swarm_protocol::{decode_frame, Decoded, Established, Handshake, HandshakeConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{DialError, HandshakeFailure};
use crate::mesh::unix_now;

/// Connects to `addr` and runs the initiator's handshake, all within
/// `timeout` (a black-holed address cannot hold a caller for the kernel's
/// SYN timeout).
///
/// # Errors
///
/// [`DialError::Connect`], [`DialError::Handshake`] or [`DialError::Timeout`].
pub(crate) async fn dial(
    addr: std::net::SocketAddr,
    config: Arc<HandshakeConfig>,
    timeout: Duration,
) -> Result<(TcpStream, Established, Vec<u8>), DialError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(DialError::Connect(e.kind())),
        Err(_) => return Err(DialError::Timeout(timeout)),
    };
    let _ = stream.set_nodelay(true);
    match tokio::time::timeout_at(deadline, drive(&mut stream, config, true)).await {
        Ok(Ok((est, leftover))) => Ok((stream, est, leftover)),
        Ok(Err(e)) => Err(DialError::Handshake(e)),
        Err(_) => Err(DialError::Timeout(timeout)),
    }
}

/// Performs the handshake on `stream` (a socket, or a relayed circuit's
/// pipe). Returns the established session and
/// any bytes already read past the handshake.
///
/// # Errors
///
/// A [`HandshakeFailure`]; the caller MUST drop the stream.
pub(crate) async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    config: Arc<HandshakeConfig>,
    initiator: bool,
    timeout: Duration,
) -> Result<(Established, Vec<u8>), HandshakeFailure> {
    match tokio::time::timeout(timeout, drive(stream, config, initiator)).await {
        Ok(result) => result,
        Err(_) => Err(HandshakeFailure::Timeout(timeout)),
    }
}

async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    config: Arc<HandshakeConfig>,
    initiator: bool,
) -> Result<(Established, Vec<u8>), HandshakeFailure> {
    let mut hs = if initiator {
        Handshake::initiator(config)?
    } else {
        Handshake::responder(config)?
    };
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    // Whether the peer sent a whole frame: a refusal before any answer is
    // load (or no swarm node), one after is a refused identity.
    let mut answered = false;
    // A peer that hangs up shows as EOF, a reset or a broken pipe alike.
    let closed = |e: std::io::Error, answered: bool| match e.kind() {
        ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe
        | ErrorKind::UnexpectedEof => {
            if answered {
                HandshakeFailure::ClosedByPeer
            } else {
                HandshakeFailure::ClosedUnanswered
            }
        }
        kind => HandshakeFailure::Io(kind),
    };
    loop {
        while let Some(frame) = hs.poll_transmit() {
            stream
                .write_all(&frame)
                .await
                .map_err(|e| closed(e, answered))?;
        }
        stream.flush().await.map_err(|e| closed(e, answered))?;
        if hs.is_established() {
            break;
        }
        // Read until one whole frame is buffered.
        let (result, consumed) = loop {
            match decode_frame(&buf, MAX_NOISE_MESSAGE)? {
                Decoded::Frame { payload, consumed } => {
                    answered = true;
                    break (hs.handle_frame(payload, unix_now()), consumed);
                }
                Decoded::Incomplete { needed } => {
                    buf.reserve(needed.saturating_sub(buf.len()));
                    let read = stream.read_buf(&mut buf).await;
                    match read {
                        Ok(0) => {
                            return Err(closed(ErrorKind::UnexpectedEof.into(), answered));
                        }
                        Ok(_) => {}
                        Err(e) => return Err(closed(e, answered)),
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
        None => Err(HandshakeFailure::NoSession),
    }
}
