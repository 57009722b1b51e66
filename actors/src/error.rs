//! The errors callers of the mesh see: [`AskError`] for requests,
//! [`TellError`] for one-way sends (which hands the message back), and
//! [`NodeError`] for starting a node. Why a link closed is [`CloseReason`].

use std::time::Duration;

use swarm_protocol::{NodeId, RemoteError};

/// Why an ask produced no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AskError {
    /// No reply arrived within the timeout.
    #[error("no reply within {after:?}")]
    Timeout {
        /// The timeout that expired.
        after: Duration,
    },
    /// The link to the target's node closed before the reply arrived.
    #[error("link to node {node} is down")]
    LinkDown {
        /// The target's node.
        node: NodeId,
    },
    /// Membership declared the target's node down (or it left): the ask
    /// fails at once instead of waiting for its timeout.
    #[error("node {node} is down")]
    NodeDown {
        /// The target's node.
        node: NodeId,
    },
    /// A service has no live instance to send to.
    #[error("service {service:?} has no live instance")]
    NoInstance {
        /// The service name.
        service: String,
    },
    /// No link to the target's node could be made.
    #[error("node {node} is unreachable: {reason}")]
    Unreachable {
        /// The target's node.
        node: NodeId,
        /// Why dialing failed.
        reason: String,
    },
    /// No actor is registered under the target name on that node.
    #[error("no actor named {name:?} on the target node")]
    NoSuchActor {
        /// The name that was asked for.
        name: String,
    },
    /// The target actor does not accept this message type.
    #[error("the target actor does not accept message type {tag:?}")]
    UnknownMessage {
        /// The message's type tag.
        tag: String,
    },
    /// The message or its reply could not be decoded.
    #[error("decode failed: {reason}")]
    Decode {
        /// The decoder's explanation.
        reason: String,
    },
    /// The message or its reply could not be encoded.
    #[error("encode failed: {reason}")]
    Encode {
        /// The encoder's explanation.
        reason: String,
    },
    /// The target actor stopped before it answered.
    #[error("the target actor stopped before answering")]
    ActorStopped,
    /// The target node refused the request.
    #[error("refused: {reason}")]
    Refused {
        /// Why.
        reason: String,
    },
}

impl From<RemoteError> for AskError {
    fn from(e: RemoteError) -> Self {
        match e {
            RemoteError::NoSuchActor { name } => AskError::NoSuchActor { name },
            RemoteError::UnknownMessage { tag } => AskError::UnknownMessage { tag },
            RemoteError::Decode { reason } => AskError::Decode { reason },
            RemoteError::Encode { reason } => AskError::Encode { reason },
            RemoteError::ActorStopped => AskError::ActorStopped,
            RemoteError::Refused { reason } => AskError::Refused { reason },
            other => AskError::Refused {
                reason: other.to_string(),
            },
        }
    }
}

/// Why a tell was not queued; the message comes back to the caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TellError<M> {
    /// The link's queue (or the local mailbox) is full: back off and retry.
    #[error("queue full")]
    Full(M),
    /// There is no usable link to the target's node (or the local actor stopped).
    #[error("target disconnected: {reason}")]
    Disconnected {
        /// The message that was not sent.
        msg: M,
        /// Why.
        reason: String,
    },
    /// The message could not be encoded.
    #[error("encode failed: {reason}")]
    Encode {
        /// The message that was not sent.
        msg: M,
        /// The encoder's explanation.
        reason: String,
    },
}

impl<M> TellError<M> {
    /// The message that was not sent.
    pub fn into_inner(self) -> M {
        match self {
            TellError::Full(msg)
            | TellError::Disconnected { msg, .. }
            | TellError::Encode { msg, .. } => msg,
        }
    }
}

/// Why [`Node::connect`](crate::Node::connect) could not reach a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot connect to {addr}: {reason}")]
pub struct ConnectError {
    /// The address dialed.
    pub addr: std::net::SocketAddr,
    /// Why the connection or the handshake failed.
    pub reason: String,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The node's own certificate does not verify against its CA.
    #[error("own certificate rejected: {0}")]
    Certificate(#[from] swarm_protocol::CertError),
    /// The certificate is not for the node's key.
    #[error("the certificate is for another key than the node's")]
    KeyMismatch,
    /// The arbiter asked to run the node has stopped.
    #[error("the arbiter for the node has stopped")]
    ArbiterGone,
    /// The gossip (UDP) socket could not be bound next to the mesh listener.
    #[error("cannot bind the gossip socket on {addr}: {source}")]
    GossipBind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The node's metadata is refused (too many services, bad names, ...).
    #[error("node metadata refused: {0}")]
    Metadata(#[from] swarm_protocol::gossip::MetaError),
    /// Membership is not enabled on this node (`MeshConfig::cluster`), or
    /// it has stopped (the node left).
    #[error("membership is not enabled on this node, or it stopped")]
    NoMembership,
    /// The gossip key ring refused a change.
    #[error("gossip key ring: {0}")]
    KeyRing(#[from] swarm_protocol::gossip::SealError),
    /// No actor is exposed under this name.
    #[error("no actor is exposed as {name:?}")]
    NotExposed {
        /// The name.
        name: String,
    },
    /// The actor name is already registered on this node.
    #[error("an actor named {name:?} is already registered")]
    NameTaken {
        /// The name.
        name: String,
    },
}

/// Why a link closed; logged with the peer when it happens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed the connection.
    #[error("peer closed the connection")]
    PeerClosed,
    /// A socket error.
    #[error("i/o error: {0}")]
    Io(String),
    /// The peer sent a bad frame.
    #[error("bad frame: {0}")]
    Frame(#[from] swarm_protocol::FrameError),
    /// The peer broke the record rules, or a message failed authentication.
    #[error("bad record: {0}")]
    Record(#[from] swarm_protocol::RecordError),
    /// The peer sent an undecodable envelope.
    #[error("bad envelope: {0}")]
    Envelope(#[from] swarm_protocol::EnvelopeError),
    /// Nothing was heard from the peer within the heartbeat timeout.
    #[error("no traffic from the peer for {0:?}")]
    HeartbeatTimeout(Duration),
    /// No user traffic for the idle timeout.
    #[error("idle for {0:?}")]
    Idle(Duration),
    /// Another link to the same peer won (simultaneous dial or reconnect).
    #[error("replaced by another link to the same peer")]
    Replaced,
    /// The peer said goodbye.
    #[error("peer said goodbye: {0}")]
    Goodbye(String),
    /// Membership declared the peer down or departed.
    #[error("membership declared the peer down")]
    MemberDown,
    /// This node is shutting down or closed the link on purpose.
    #[error("closed locally: {0}")]
    Local(String),
}
