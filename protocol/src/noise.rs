//! The Noise `XXpsk3` handshake as a sans-IO state machine, and the
//! transport ciphers it yields. Both ends prove a static key, present a
//! certificate for it inside the encrypted payloads, and mix in the cluster's
//! join secret (psk3): a peer needs the secret AND a certificate from our CA.
//! Sockets, timeouts and the clock belong to the caller.
//!
//! Steps (initiator `I`, responder `R`):
//! 1. `I -> R`: `e` with payload `[version]` (clear text, bound into the transcript).
//! 2. `R -> I`: `e, ee, s, es` with the responder's [`Hello`] (encrypted).
//!    `I` checks version, cluster and certificate against the proven key.
//! 3. `I -> R`: `s, se, psk` with the initiator's [`Hello`]. `R` checks the
//!    same; a wrong join secret fails decryption here.
//! 4. `R -> I`: the first transport message, a welcome record: `R` accepted.
//!
//! Only after step 4 does either side treat the link as established, so no
//! byte from an unauthenticated peer ever reaches an actor.

mod hello;

use std::sync::Arc;

pub use hello::{decode_version, encode_version, Hello, MAX_HELLO_FIELD};
use snow::{HandshakeState, StatelessTransportState};

use crate::frame::{self, FRAME_HEADER_LEN};
use crate::identity::{CertError, Certificate, NodeId, NodeKey, TrustStore};
use crate::record::{Record, MAX_NOISE_MESSAGE, TAG_LEN};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u64 = 1;

const PROLOGUE: &[u8] = b"swarm-noise-v1";

/// The AEAD and hash of the Noise suite; every node of a cluster MUST use the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CipherSuite {
    /// `Noise_XXpsk3_25519_AESGCM_SHA256` (the default; AES-NI makes it fastest).
    #[default]
    AesGcm,
    /// `Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s`, for CPUs without AES instructions.
    ChaChaPoly,
}

impl CipherSuite {
    /// The Noise protocol name.
    pub fn noise_name(self) -> &'static str {
        match self {
            CipherSuite::AesGcm => "Noise_XXpsk3_25519_AESGCM_SHA256",
            CipherSuite::ChaChaPoly => "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s",
        }
    }
}

impl std::str::FromStr for CipherSuite {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "aesgcm" | "aes-gcm" | "aes256gcm" => Ok(CipherSuite::AesGcm),
            "chachapoly" | "chacha20poly1305" | "chacha" => Ok(CipherSuite::ChaChaPoly),
            other => Err(format!(
                "unknown cipher suite {other:?} (expected aesgcm or chachapoly)"
            )),
        }
    }
}

/// What a node brings to every handshake.
#[derive(Debug, Clone)]
pub struct HandshakeConfig {
    /// The cluster name; a peer of another cluster is refused.
    pub cluster: String,
    /// The 32-byte join secret, mixed in as the Noise psk.
    pub join_secret: [u8; 32],
    /// This node's static key.
    pub key: NodeKey,
    /// This node's certificate, for `key`.
    pub cert: Certificate,
    /// The CA and revocation list peers are checked against.
    pub trust: Arc<TrustStore>,
    /// The Noise suite.
    pub suite: CipherSuite,
    /// The mesh address this node advertises ("" for none).
    pub listen: String,
    /// The version announced; [`PROTOCOL_VERSION`] except in tests.
    pub version: u64,
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: we speak {ours}, the peer speaks {theirs}")]
    VersionMismatch {
        /// Our version.
        ours: u64,
        /// The peer's version.
        theirs: u64,
    },
    /// The peer belongs to another cluster.
    #[error("cluster mismatch: we are {ours:?}, the peer is {theirs:?}")]
    ClusterMismatch {
        /// Our cluster.
        ours: String,
        /// The peer's cluster.
        theirs: String,
    },
    /// The peer's certificate was refused.
    #[error("peer certificate refused: {0}")]
    Certificate(CertError),
    /// A message failed to decrypt: the peer holds another join secret or
    /// uses another cipher suite, or the bytes were altered in transit.
    #[error("decryption failed: wrong join secret, another cipher suite, or altered bytes")]
    Decrypt,
    /// A message or payload was not well formed.
    #[error("malformed handshake message: {reason}")]
    Malformed {
        /// What was wrong.
        reason: &'static str,
    },
    /// A message arrived when none was expected (or after a failure).
    #[error("unexpected handshake message in state {state}")]
    Unexpected {
        /// The state the handshake was in.
        state: &'static str,
    },
    /// The local configuration could not build a Noise state (a bug or bad key).
    #[error("noise setup failed: {reason}")]
    Setup {
        /// snow's explanation.
        reason: String,
    },
}

/// The cause is printed in the message, so it is not also the `source()`.
impl From<CertError> for HandshakeError {
    fn from(e: CertError) -> Self {
        HandshakeError::Certificate(e)
    }
}

/// Why a transport message could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CipherError {
    /// Authentication failed: the bytes were altered, replayed or reordered.
    #[error("transport message failed authentication")]
    Decrypt,
    /// The plaintext does not fit in one Noise message (a caller bug).
    #[error("plaintext of {len} bytes exceeds one Noise message")]
    TooLarge {
        /// The plaintext length.
        len: usize,
    },
    /// The nonce space is exhausted; the link must be re-established.
    #[error("nonce space exhausted")]
    NonceExhausted,
}

/// Who the peer proved to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The id derived from the key the handshake proved.
    pub node_id: NodeId,
    /// The certificate the peer presented (already verified).
    pub cert: Certificate,
    /// The address the peer's mesh listens on ("" for none).
    pub listen: String,
}

/// The result of a successful handshake.
#[derive(Debug)]
pub struct Established {
    /// The authenticated peer.
    pub peer: Peer,
    /// Seals outgoing records.
    pub sender: SendCipher,
    /// Opens incoming records.
    pub receiver: RecvCipher,
    /// True on the side that dialed.
    pub initiator: bool,
}

/// The handshake state machine.
///
/// Drive it this way: after construction and after every
/// [`Handshake::handle_frame`], send every frame [`Handshake::poll_transmit`]
/// yields (also after an error: a final frame may tell the peer why), then
/// check [`Handshake::is_established`]; once true, take the ciphers with
/// [`Handshake::into_established`]. On an error, close the connection.
pub struct Handshake {
    /// Our configuration.
    config: Arc<HandshakeConfig>,
    /// What the next frame must be.
    state: State,
    /// Frames to send (at most two).
    transmit: Vec<Vec<u8>>,
}

enum State {
    /// Initiator, after step 1.
    ExpectResponderHello(Box<HandshakeState>),
    /// Initiator, after step 3.
    ExpectWelcome(Box<Established>),
    /// Responder, before step 1.
    ExpectInitiatorHello(Box<HandshakeState>),
    /// Responder, after step 2.
    ExpectInitiatorAuth(Box<HandshakeState>),
    /// Done.
    Established(Box<Established>),
    /// A failure happened; nothing more is accepted.
    Failed,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::ExpectResponderHello(_) => "ExpectResponderHello",
            State::ExpectWelcome(_) => "ExpectWelcome",
            State::ExpectInitiatorHello(_) => "ExpectInitiatorHello",
            State::ExpectInitiatorAuth(_) => "ExpectInitiatorAuth",
            State::Established(_) => "Established",
            State::Failed => "Failed",
        }
    }
}

/// What a handshake message adds to its payload at most: an ephemeral
/// key, an encrypted static key and two tags (96 bytes), with room.
const HANDSHAKE_OVERHEAD: usize = 256;

/// A buffer for a handshake message carrying `payload` bytes: sized to
/// the message, not to the largest Noise message (64 KiB zeroed per step
/// made a hundred concurrent dials cost megabytes).
fn out_buffer(payload: usize) -> Vec<u8> {
    vec![0u8; (payload + HANDSHAKE_OVERHEAD).min(MAX_NOISE_MESSAGE)]
}

impl Handshake {
    /// Starts a handshake as the dialing side; step 1 is ready to transmit.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::Setup`] if snow rejects the configuration.
    pub fn initiator(config: Arc<HandshakeConfig>) -> Result<Self, HandshakeError> {
        let mut hs = build(&config, true)?;
        let hello = encode_version(config.version);
        let mut out = out_buffer(hello.len());
        let len = hs.write_message(&hello, &mut out).map_err(setup)?;
        let mut this = Self {
            config,
            state: State::ExpectResponderHello(Box::new(hs)),
            transmit: Vec::new(),
        };
        this.queue(out.get(..len).unwrap_or_default());
        Ok(this)
    }

    /// Starts a handshake as the accepting side; it waits for step 1.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::Setup`] if snow rejects the configuration.
    pub fn responder(config: Arc<HandshakeConfig>) -> Result<Self, HandshakeError> {
        let hs = build(&config, false)?;
        Ok(Self {
            config,
            state: State::ExpectInitiatorHello(Box::new(hs)),
            transmit: Vec::new(),
        })
    }

    /// Takes the payload of one received frame; `now` is Unix seconds, for
    /// certificate validity.
    ///
    /// # Errors
    ///
    /// A [`HandshakeError`] saying why the peer was refused; the state
    /// machine is then failed for good.
    pub fn handle_frame(&mut self, payload: &[u8], now: u64) -> Result<(), HandshakeError> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let next = match state {
            State::ExpectInitiatorHello(hs) => self.on_initiator_hello(hs, payload),
            State::ExpectResponderHello(hs) => self.on_responder_hello(hs, payload, now),
            State::ExpectInitiatorAuth(hs) => self.on_initiator_auth(hs, payload, now),
            State::ExpectWelcome(est) => on_welcome(est, payload),
            other => Err(HandshakeError::Unexpected {
                state: other.name(),
            }),
        }?;
        self.state = next;
        Ok(())
    }

    /// The next frame (header included) to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.transmit.is_empty() {
            None
        } else {
            Some(self.transmit.remove(0))
        }
    }

    /// True once step 4 has been sent (responder) or received (initiator).
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established(_))
    }

    /// The ciphers and peer, once established; `None` before.
    pub fn into_established(self) -> Option<Established> {
        match self.state {
            State::Established(est) => Some(*est),
            _ => None,
        }
    }

    fn queue(&mut self, message: &[u8]) {
        let mut framed = Vec::with_capacity(FRAME_HEADER_LEN + message.len());
        // Noise messages are never empty nor over the Noise maximum.
        if frame::encode_frame(message, MAX_NOISE_MESSAGE, &mut framed).is_ok() {
            self.transmit.push(framed);
        }
    }

    fn my_hello(&self) -> Vec<u8> {
        Hello {
            version: self.config.version,
            cluster: &self.config.cluster,
            cert: &self.config.cert.to_bytes(),
            listen: &self.config.listen,
        }
        .encode()
    }

    /// Responder, step 1 in, step 2 out.
    fn on_initiator_hello(
        &mut self,
        mut hs: Box<HandshakeState>,
        message: &[u8],
    ) -> Result<State, HandshakeError> {
        let mut payload = vec![0u8; message.len()];
        let len = hs.read_message(message, &mut payload).map_err(read_error)?;
        let theirs = decode_version(payload.get(..len).unwrap_or_default())?;
        // Answer even on a version mismatch, so the initiator learns ours.
        let hello = self.my_hello();
        let mut out = out_buffer(hello.len());
        let len = hs.write_message(&hello, &mut out).map_err(setup)?;
        self.queue(out.get(..len).unwrap_or_default());
        if theirs != self.config.version {
            return Err(HandshakeError::VersionMismatch {
                ours: self.config.version,
                theirs,
            });
        }
        Ok(State::ExpectInitiatorAuth(hs))
    }

    /// Initiator, step 2 in, step 3 out.
    fn on_responder_hello(
        &mut self,
        mut hs: Box<HandshakeState>,
        message: &[u8],
        now: u64,
    ) -> Result<State, HandshakeError> {
        let mut payload = vec![0u8; message.len()];
        let len = hs.read_message(message, &mut payload).map_err(read_error)?;
        let peer = self.check_hello(&hs, payload.get(..len).unwrap_or_default(), now)?;
        let hello = self.my_hello();
        let mut out = out_buffer(hello.len());
        let len = hs.write_message(&hello, &mut out).map_err(setup)?;
        self.queue(out.get(..len).unwrap_or_default());
        let transport = hs.into_stateless_transport_mode().map_err(setup)?;
        Ok(State::ExpectWelcome(Box::new(split(transport, peer, true))))
    }

    /// Responder, step 3 in, step 4 out.
    fn on_initiator_auth(
        &mut self,
        mut hs: Box<HandshakeState>,
        message: &[u8],
        now: u64,
    ) -> Result<State, HandshakeError> {
        let mut payload = vec![0u8; message.len()];
        let len = hs.read_message(message, &mut payload).map_err(read_error)?;
        let peer = self.check_hello(&hs, payload.get(..len).unwrap_or_default(), now)?;
        let transport = hs.into_stateless_transport_mode().map_err(setup)?;
        let mut est = split(transport, peer, false);
        let mut welcome = Vec::new();
        est.sender
            .seal_frame(Record::welcome(), &mut welcome)
            .map_err(|e| HandshakeError::Setup {
                reason: e.to_string(),
            })?;
        self.transmit.push(welcome);
        Ok(State::Established(Box::new(est)))
    }

    fn check_hello(
        &self,
        hs: &HandshakeState,
        payload: &[u8],
        now: u64,
    ) -> Result<Peer, HandshakeError> {
        let hello = Hello::decode(payload)?;
        if hello.version != self.config.version {
            return Err(HandshakeError::VersionMismatch {
                ours: self.config.version,
                theirs: hello.version,
            });
        }
        if hello.cluster != self.config.cluster {
            return Err(HandshakeError::ClusterMismatch {
                ours: self.config.cluster.clone(),
                theirs: hello.cluster.to_owned(),
            });
        }
        let cert = Certificate::from_bytes(hello.cert)?;
        let proven = hs.get_remote_static().ok_or(HandshakeError::Malformed {
            reason: "peer proved no static key",
        })?;
        self.config.trust.verify(&cert, now, Some(proven))?;
        Ok(Peer {
            node_id: cert.body().node_id,
            cert,
            listen: hello.listen.to_owned(),
        })
    }
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("state", &self.state.name())
            .finish()
    }
}

/// Initiator, step 4 in.
fn on_welcome(mut est: Box<Established>, frame: &[u8]) -> Result<State, HandshakeError> {
    let mut plain = Vec::new();
    let record = est
        .receiver
        .open(frame, &mut plain)
        .map_err(|_| HandshakeError::Decrypt)?;
    match Record::decode(record) {
        Ok(Record::Welcome) => Ok(State::Established(est)),
        _ => Err(HandshakeError::Malformed {
            reason: "expected a welcome record",
        }),
    }
}

fn build(config: &HandshakeConfig, initiator: bool) -> Result<HandshakeState, HandshakeError> {
    let params = config.suite.noise_name().parse().map_err(setup)?;
    let builder = snow::Builder::new(params)
        .local_private_key(config.key.secret())
        .and_then(|b| b.psk(3, &config.join_secret))
        .and_then(|b| b.prologue(PROLOGUE))
        .map_err(setup)?;
    if initiator {
        builder.build_initiator()
    } else {
        builder.build_responder()
    }
    .map_err(setup)
}

fn split(transport: StatelessTransportState, peer: Peer, initiator: bool) -> Established {
    let state = Arc::new(transport);
    Established {
        peer,
        sender: SendCipher {
            state: Arc::clone(&state),
            nonce: 0,
        },
        receiver: RecvCipher { state, nonce: 0 },
        initiator,
    }
}

fn setup(e: snow::Error) -> HandshakeError {
    HandshakeError::Setup {
        reason: e.to_string(),
    }
}

fn read_error(e: snow::Error) -> HandshakeError {
    match e {
        snow::Error::Decrypt => HandshakeError::Decrypt,
        _ => HandshakeError::Malformed {
            reason: "noise message rejected",
        },
    }
}

/// Seals outgoing records into frames; owned by one writer.
#[derive(Debug)]
pub struct SendCipher {
    /// The shared transport keys.
    state: Arc<StatelessTransportState>,
    /// The next nonce; messages MUST be sent in nonce order.
    nonce: u64,
}

impl SendCipher {
    /// Encrypts `plain` (at most one record) and appends it as a frame to `out`.
    ///
    /// # Errors
    ///
    /// [`CipherError::TooLarge`] if `plain` exceeds one record;
    /// [`CipherError::NonceExhausted`] after 2^64 - 1 messages.
    pub fn seal_frame(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), CipherError> {
        let len = plain.len() + TAG_LEN;
        if len > MAX_NOISE_MESSAGE {
            return Err(CipherError::TooLarge { len: plain.len() });
        }
        if self.nonce == u64::MAX {
            return Err(CipherError::NonceExhausted);
        }
        let start = out.len();
        let mut header = [0u8; FRAME_HEADER_LEN];
        frame::write_frame_header(len, MAX_NOISE_MESSAGE, &mut header)
            .map_err(|_| CipherError::TooLarge { len: plain.len() })?;
        out.extend_from_slice(&header);
        out.resize(start + FRAME_HEADER_LEN + len, 0);
        let body = out.get_mut(start + FRAME_HEADER_LEN..).unwrap_or_default();
        match self.state.write_message(self.nonce, plain, body) {
            Ok(_) => {
                self.nonce += 1;
                Ok(())
            }
            Err(_) => {
                out.truncate(start);
                Err(CipherError::TooLarge { len: plain.len() })
            }
        }
    }
}

/// Opens incoming frames; owned by one reader.
#[derive(Debug)]
pub struct RecvCipher {
    /// The shared transport keys.
    state: Arc<StatelessTransportState>,
    /// The nonce the next message MUST carry.
    nonce: u64,
}

impl RecvCipher {
    /// Decrypts one frame payload into `buf`, returning the record.
    ///
    /// # Errors
    ///
    /// [`CipherError::Decrypt`] if authentication fails (the link MUST close).
    pub fn open<'b>(
        &mut self,
        frame_payload: &[u8],
        buf: &'b mut Vec<u8>,
    ) -> Result<&'b [u8], CipherError> {
        buf.clear();
        buf.resize(frame_payload.len(), 0);
        let len = self.open_into(frame_payload, buf)?;
        Ok(buf.get(..len).unwrap_or_default())
    }

    /// Decrypts one frame payload into `out`, returning the plaintext
    /// length. `out` SHOULD be at least as long as `frame_payload` (tag
    /// included): then the cipher works in place without allocating.
    ///
    /// # Errors
    ///
    /// [`CipherError::Decrypt`] if authentication fails or `out` is too
    /// short (the link MUST close).
    pub fn open_into(
        &mut self,
        frame_payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, CipherError> {
        if self.nonce == u64::MAX {
            return Err(CipherError::NonceExhausted);
        }
        let len = self
            .state
            .read_message(self.nonce, frame_payload, out)
            .map_err(|_| CipherError::Decrypt)?;
        self.nonce += 1;
        Ok(len)
    }
}

#[cfg(test)]
pub(crate) mod tests;
