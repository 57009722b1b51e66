//! A link's session after the handshake, sans IO: the [`SendHalf`] seals
//! queued envelopes into frames (coalescing them), the [`RecvHalf`] opens
//! frames into envelopes and answers the peer's heartbeats, and
//! [`Liveness`] decides when to ping, when the peer has gone silent, when
//! the link is idle, and says goodbye. The driver (the
//! `Link` actor in swarm-actors) moves bytes between these and a socket,
//! and reads the clock; it holds no protocol logic.
//!
//! # Driving a session
//!
//! 1. Socket bytes: split frames with [`crate::decode_frame`], hand each
//!    payload to [`RecvHalf::handle_frame`], decode what it completes, pass
//!    each envelope through [`RecvHalf::classify`] and act on the
//!    [`Inbound`] it returns; send what [`RecvHalf::poll_pong`] owes; tell
//!    [`Liveness::handle_received`] (with `user` true for tells, asks and
//!    replies).
//! 2. Envelopes to send: [`SendHalf::push`] each, then [`SendHalf::flush`];
//!    write the frames; tell [`Liveness::handle_sent`].
//! 3. Time: arm a timer for [`Liveness::poll_timeout`]; when it fires, call
//!    [`Liveness::handle_timeout`], then take [`Liveness::poll_action`]
//!    until it is `None`: send a ping, or say goodbye and close.
//! 4. While a local actor's full mailbox keeps the reader from reading, call
//!    [`Liveness::set_reader_waiting`]: silence is then not the peer's fault.

mod halves;
mod liveness;

pub use halves::{Inbound, RecvHalf, SendHalf};
pub use liveness::{Action, Liveness, LivenessConfig, Silence};
