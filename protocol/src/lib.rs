//! The sans-IO wire protocol of Swarm. This crate opens no sockets, spawns
//! no tasks, reads no clock and draws no randomness of its own (snow draws
//! the ephemeral handshake keys): callers hand in bytes, the time and key
//! material, and take back bytes to send. It never depends on tokio or actix.
//!
//! # Layout
//!
//! - [`frame`]: `u32 big-endian length | bytes` frames with a maximum checked
//!   before any allocation.
//! - [`noise`]: the `XXpsk3` handshake state machine that authenticates both
//!   ends by certificate and join secret, and the transport ciphers.
//! - [`record`]: what one decrypted transport message holds (welcome, an
//!   envelope, or a chunk of a large one); packing and bounded reassembly.
//! - [`envelope`]: tell, ask, reply, control and batch envelopes naming
//!   actors and message type tags, decoded without copying.
//! - [`relay`]: frames a relay forwards for nodes behind NAT: circuits
//!   carrying the endpoints' own Noise session, and membership datagrams.
//! - [`identity`]: node keys and ids, the CA, certificates and their verification.
//! - [`capability`]: operator capabilities the head group signs after a login.
//! - [`sealed`]: sealed files (secrets and control-plane data at rest) and keyrings.
//! - [`gossip`]: member ids, the gossip codec, node metadata and sealed datagrams.
//! - [`session`]: a link after the handshake: send and receive halves and
//!   the liveness timer (heartbeat, silence, idle, goodbye).
//! - [`membership`]: SWIM membership (foca) as a state machine, and (with
//!   the `sim` feature) a simulated network with virtual time for
//!   thousands of them.
//!
//! Per link, bytes flow `frame -> RecvCipher::open -> Reassembler ->
//! Envelope::decode` in and the reverse out.

#![warn(missing_docs, unreachable_pub)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]

pub mod capability;
mod codec;
pub mod envelope;
pub mod frame;
pub mod gossip;
pub mod identity;
pub mod membership;
pub mod noise;
pub mod record;
pub mod relay;
pub mod sealed;
pub mod session;

#[cfg(any(fuzzing, test))]
pub mod fuzzing;

pub use codec::CodecError;
pub use envelope::{Control, Envelope, EnvelopeError, RemoteError, Target};
pub use frame::{decode_frame, encode_frame, Decoded, FrameError, FRAME_HEADER_LEN};
pub use identity::{CaKey, CertBody, CertError, Certificate, NodeId, NodeKey, TrustStore};
pub use noise::{
    CipherError, CipherSuite, Established, Handshake, HandshakeConfig, HandshakeError, Peer,
    RecvCipher, SendCipher, PROTOCOL_VERSION,
};
pub use record::{Assembled, Packer, Reassembler, Record, RecordError, MAX_RECORD};
