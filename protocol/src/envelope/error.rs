//! Why a request failed on the remote node ([`RemoteError`], carried in
//! a reply), and why bytes did not decode as an envelope
//! ([`EnvelopeError`]).

use serde::{Deserialize, Serialize};

use crate::codec::CodecError;

/// Why an ask produced no result on the remote node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// No actor is registered under the target name or id.
    #[error("no actor named {name:?} on the remote node")]
    NoSuchActor {
        /// The target as the remote node saw it.
        name: String,
    },
    /// The target actor does not accept messages with this tag.
    #[error("the remote actor does not accept message type {tag:?}")]
    UnknownMessage {
        /// The tag that was refused.
        tag: String,
    },
    /// The message body did not decode as the tagged type.
    #[error("the remote node could not decode the message: {reason}")]
    Decode {
        /// The decoder's explanation.
        reason: String,
    },
    /// The handler's result could not be encoded.
    #[error("the remote node could not encode the reply: {reason}")]
    Encode {
        /// The encoder's explanation.
        reason: String,
    },
    /// The actor stopped before it handled the message.
    #[error("the remote actor stopped before answering")]
    ActorStopped,
    /// The actor failed while it held the message (a handler panicked);
    /// its supervisor restarts it by its policy.
    #[error("the remote actor failed while handling the request")]
    ActorFailed,
    /// The remote node refused the request (for example, it is shutting down).
    #[error("the remote node refused the request: {reason}")]
    Refused {
        /// Why.
        reason: String,
    },
    /// The receiving node's policy does not let the sender's certificate
    /// send this message to this actor (nothing of it was decoded).
    #[error("forbidden: {reason}")]
    Forbidden {
        /// Which rule or default refused it.
        reason: String,
    },
    /// The message or its reply is larger than the node's message limit;
    /// only this request failed, the link stays up.
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The encoded size, bytes.
        size: u64,
        /// The limit, bytes.
        max: u64,
    },
}

/// Why bytes did not decode as an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The MessagePack structure was invalid.
    #[error("malformed envelope: {0}")]
    Codec(CodecError),
    /// The kind field named no known envelope kind.
    #[error("unknown envelope kind {kind}")]
    UnknownKind {
        /// The kind that was found.
        kind: u64,
    },
    /// The array had the wrong number of fields for its kind.
    #[error("envelope kind {kind} needs {expected} fields, found {found}")]
    FieldCount {
        /// The kind.
        kind: u64,
        /// How many fields it needs.
        expected: usize,
        /// How many were present.
        found: usize,
    },
    /// A batch contained another batch.
    #[error("nested batch")]
    NestedBatch,
    /// A control or error body did not decode.
    #[error("malformed {what} body")]
    Body {
        /// Which body.
        what: &'static str,
    },
    /// A reply status was neither 0 (ok) nor 1 (error).
    #[error("unknown reply status {status}")]
    UnknownStatus {
        /// The status found.
        status: u64,
    },
}

/// The cause is printed in the message, so it is not also the `source()`.
impl From<CodecError> for EnvelopeError {
    fn from(e: CodecError) -> Self {
        EnvelopeError::Codec(e)
    }
}
