//! The errors callers see, one enum per boundary:
//!
//! - starting a node: [`StartError`];
//! - using it: [`ExposeError`], [`ClusterError`], [`ConnectError`] (with its
//!   [`DialError`] and [`HandshakeFailure`]);
//! - messaging: [`AskError`] for requests (with [`Unreachable`]) and
//!   [`TellError`] for one-way sends, which hands the message back;
//! - why a link closed: [`CloseReason`] and its [`CloseKind`].

use std::time::Duration;

use swarm_protocol::{HandshakeError, NodeId, RemoteError};

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
    #[error("node {node} is unreachable: {cause}")]
    Unreachable {
        /// The target's node.
        node: NodeId,
        /// Why.
        cause: Unreachable,
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
    /// The message or its reply is larger than the message limit
    /// (`MeshConfig::max_message`); nothing else on the link is affected.
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The encoded size, bytes.
        size: usize,
        /// The limit, bytes.
        max: usize,
    },
    /// The target actor stopped before it answered.
    #[error("the target actor stopped before answering")]
    ActorStopped,
    /// The target actor failed while it held the request (a handler
    /// panicked); a supervised actor is restarted by its policy, and later
    /// requests reach the new incarnation.
    #[error("the target actor failed while handling the request")]
    ActorFailed,
    /// The target node refused the request.
    #[error("refused: {reason}")]
    Refused {
        /// Why (the remote node's words).
        reason: String,
    },
    /// The target node's policy does not let this node's certificate send
    /// this message to this actor (`policy`).
    #[error("forbidden: {reason}")]
    Forbidden {
        /// Which rule or default refused it (the remote node's words).
        reason: String,
    },
    /// The control plane could not say where a named actor runs: it does
    /// not exist, or it failed past its restart policy.
    #[error("named actor {name:?} is not placed: {reason}")]
    NotPlaced {
        /// The name.
        name: String,
        /// The control plane's words.
        reason: String,
    },
    /// No head quorum answers this node (it is on the minority side of a
    /// partition, or a majority of the heads is down), so nobody here can
    /// say where a named actor runs now: nothing was sent. What the cut-off
    /// side last knew may be stale (the actor may have moved), so it is
    /// not used. Ask again once the partition heals.
    #[error("no head quorum answers for named actor {name:?}: {reason}")]
    NoQuorum {
        /// The name.
        name: String,
        /// What failed (the control plane's words).
        reason: String,
    },
}

impl AskError {
    /// Whether the target's node (or the way to it) failed, rather than the
    /// request: `LinkDown`, `NodeDown` and `Unreachable`. Such a request may
    /// or may not have run; load balancers eject the node.
    pub fn is_node_failure(&self) -> bool {
        matches!(
            self,
            AskError::LinkDown { .. } | AskError::NodeDown { .. } | AskError::Unreachable { .. }
        )
    }
}

impl From<RemoteError> for AskError {
    fn from(e: RemoteError) -> Self {
        match e {
            RemoteError::NoSuchActor { name } => AskError::NoSuchActor { name },
            RemoteError::UnknownMessage { tag } => AskError::UnknownMessage { tag },
            RemoteError::Decode { reason } => AskError::Decode { reason },
            RemoteError::Encode { reason } => AskError::Encode { reason },
            RemoteError::ActorStopped => AskError::ActorStopped,
            RemoteError::ActorFailed => AskError::ActorFailed,
            RemoteError::Refused { reason } => AskError::Refused { reason },
            RemoteError::Forbidden { reason } => AskError::Forbidden { reason },
            RemoteError::TooLarge { size, max } => AskError::TooLarge {
                size: usize::try_from(size).unwrap_or(usize::MAX),
                max: usize::try_from(max).unwrap_or(usize::MAX),
            },
            other => AskError::Refused {
                reason: other.to_string(),
            },
        }
    }
}

/// Why no link to a node could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unreachable {
    /// Neither a handshake nor membership told this node where it listens.
    #[error("no known address for this node")]
    NoAddress,
    /// Dialing its address failed.
    #[error("{0}")]
    Dial(DialError),
    /// Its address now answers as another node (it was replaced).
    #[error("its address now answers as node {0}")]
    AnsweredAs(NodeId),
}

/// Why a tell was not queued; the message comes back to the caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TellError<M> {
    /// The link's queue (or the local mailbox) is full: back off and retry.
    #[error("queue full")]
    Full(M),
    /// The message cannot reach its target: no usable link (`LinkDown`,
    /// `NodeDown`, `Unreachable`), no such actor, or the actor stopped.
    #[error("target disconnected: {cause}")]
    Disconnected {
        /// The message that was not sent.
        msg: M,
        /// Why.
        cause: AskError,
    },
    /// The message could not be encoded.
    #[error("encode failed: {reason}")]
    Encode {
        /// The message that was not sent.
        msg: M,
        /// The encoder's explanation.
        reason: String,
    },
    /// The message is larger than the message limit.
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The message that was not sent.
        msg: M,
        /// The encoded size, bytes.
        size: usize,
        /// The limit, bytes.
        max: usize,
    },
}

impl<M> TellError<M> {
    /// The message that was not sent.
    pub fn into_inner(self) -> M {
        match self {
            TellError::Full(msg)
            | TellError::Disconnected { msg, .. }
            | TellError::Encode { msg, .. }
            | TellError::TooLarge { msg, .. } => msg,
        }
    }
}

/// Why `Node::connect` could not reach a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot connect to {addr}: {cause}")]
pub struct ConnectError {
    /// The address dialed.
    pub addr: std::net::SocketAddr,
    /// Why the connection or the handshake failed.
    pub cause: DialError,
}

/// Why dialing an address failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The TCP connection failed.
    #[error("connect failed: {0}")]
    Connect(std::io::ErrorKind),
    /// The handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(HandshakeFailure),
    /// Connect and handshake did not finish within the handshake timeout.
    #[error("no authenticated link within {0:?}")]
    Timeout(Duration),
    /// The address is this node's own.
    #[error("connected to itself")]
    SelfConnect,
    /// The node is shutting down.
    #[error("the node's mesh has stopped")]
    Stopped,
    /// A relay refused or lost the circuit.
    #[error("relay: {0}")]
    Relay(swarm_protocol::relay::RelayRefusal),
    /// The node is reached through relays, and none of them has a link.
    #[error("no relay of this node is reachable")]
    NoRelay,
}

/// Why a handshake over a socket failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// The protocol refused the peer (or the peer's answer).
    #[error("{0}")]
    Refused(HandshakeError),
    /// The peer sent an invalid frame.
    #[error("bad frame: {0}")]
    Frame(swarm_protocol::FrameError),
    /// The peer closed the connection before it answered at all: it is
    /// overloaded with connections (or refuses ours for its own reasons),
    /// or it is not a swarm node.
    #[error("the peer closed the connection before answering (overloaded, or not a swarm node)")]
    ClosedUnanswered,
    /// The peer answered, then closed the connection: it refused our join
    /// secret, cluster name or certificate (its log says which).
    #[error(
        "the peer closed the connection during the handshake \
         (it refused our join secret, cluster or certificate)"
    )]
    ClosedByPeer,
    /// A socket error.
    #[error("i/o error: {0}")]
    Io(std::io::ErrorKind),
    /// The handshake did not finish in time.
    #[error("handshake timed out after {0:?}")]
    Timeout(Duration),
    /// The handshake ended without a session (an internal bug).
    #[error("the handshake ended without a session")]
    NoSession,
}

impl From<std::io::Error> for HandshakeFailure {
    fn from(e: std::io::Error) -> Self {
        HandshakeFailure::Io(e.kind())
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The node's own certificate does not verify against its CA.
    #[error("own certificate rejected: {0}")]
    Certificate(swarm_protocol::CertError),
    /// The certificate is not for the node's key.
    #[error("the certificate is for another key than the node's")]
    KeyMismatch,
    /// The arbiter asked to run the node has stopped.
    #[error("the arbiter for the node has stopped")]
    ArbiterGone,
    /// The gossip (UDP) socket could not be bound next to the mesh listener.
    #[error("cannot bind the gossip socket on {addr}")]
    GossipBind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The node's own metadata is refused (name too long, too many resources, ...).
    #[error("node metadata refused: {0}")]
    Metadata(swarm_protocol::gossip::MetaError),
    /// The node listens on a wildcard address, no address to announce was
    /// given, and none could be detected (no seed answered, or none could
    /// dial back the address it saw).
    #[error(
        "listening on {listen} needs an address to announce, and no seed confirmed one \
         by dialing back: set `advertise` (the address other nodes dial, for example a \
         public IP and port), or `relayed = true` behind NAT"
    )]
    NoAdvertise {
        /// The bound address.
        listen: std::net::SocketAddr,
    },
    /// The head (control plane) could not start: its store, its
    /// configuration, or a node without membership or the `head` role.
    #[error("the head cannot start: {0}")]
    Head(HeadStartError),
    /// Membership (joining as a node) needs a node certificate: an
    /// operator's (or any without `head` or `worker`) runs the mesh only.
    #[error("a certificate with the roles {roles:?} cannot join as a node (membership needs head or worker); run it without membership")]
    NotANode {
        /// The certificate's roles.
        roles: Vec<String>,
    },
}

/// Why a head could not start ([`StartError::Head`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeadStartError {
    /// `voters` is not 1, 3 or 5.
    #[error("voters must be 1, 3 or 5, not {voters}")]
    Voters {
        /// What the configuration says.
        voters: usize,
    },
    /// The node runs without membership, or its certificate lacks the
    /// `head` role.
    #[error("{}: a head needs membership and a certificate with the head role", .dir.display())]
    NotAHead {
        /// The head's directory.
        dir: std::path::PathBuf,
    },
    /// Its store did not open, Raft did not start on it, or membership
    /// stopped before the head subscribed.
    #[error("{}: {reason}", .dir.display())]
    Store {
        /// The head's directory.
        dir: std::path::PathBuf,
        /// What failed (the store's or Raft's own words).
        reason: String,
    },
}

impl From<HeadStartError> for StartError {
    fn from(e: HeadStartError) -> Self {
        StartError::Head(e)
    }
}

/// Why an actor could not be exposed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExposeError {
    /// The actor name is already registered on this node.
    #[error("an actor named {name:?} is already registered")]
    NameTaken {
        /// The name.
        name: String,
    },
}

/// Why a call on the `Cluster` handle failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// Membership has stopped (the node left the cluster or shut down).
    #[error("membership has stopped on this node (it left or shut down)")]
    Stopped,
    /// The node's metadata would exceed its bounds (too many services,
    /// names too long).
    #[error("node metadata refused: {0}")]
    Metadata(swarm_protocol::gossip::MetaError),
    /// The gossip key ring refused a change.
    #[error("gossip key ring: {0}")]
    KeyRing(swarm_protocol::gossip::SealError),
    /// No actor is exposed under this name.
    #[error("no actor is exposed as {name:?}")]
    NotExposed {
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
    Io(std::io::ErrorKind),
    /// The peer sent a bad frame.
    #[error("bad frame: {0}")]
    Frame(swarm_protocol::FrameError),
    /// The peer broke the record rules, or a message failed authentication.
    #[error("bad record: {0}")]
    Record(swarm_protocol::RecordError),
    /// The peer sent an undecodable envelope.
    #[error("bad envelope: {0}")]
    Envelope(swarm_protocol::EnvelopeError),
    /// Nothing was heard from the peer within the heartbeat timeout.
    #[error("no traffic from the peer for {0:?}")]
    HeartbeatTimeout(Duration),
    /// No user traffic for the idle timeout.
    #[error("idle for {0:?}")]
    Idle(Duration),
    /// Another link to the same peer won (simultaneous dial or reconnect).
    #[error("replaced by another link to the same peer")]
    Replaced,
    /// The peer said goodbye (with its reason, in its words).
    #[error("peer said goodbye: {0}")]
    Goodbye(String),
    /// Membership declared the peer down or departed.
    #[error("membership declared the peer down")]
    MemberDown,
    /// This node closed the link on purpose.
    #[error("closed locally: {0}")]
    Local(LocalClose),
}

/// Why this node closed a link itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LocalClose {
    /// The node is shutting down.
    #[error("node shutting down")]
    Shutdown,
    /// The link's actor was stopped without a reason.
    #[error("stopped")]
    Stopped,
    /// Every handle to the link is gone.
    #[error("link handle dropped")]
    HandleDropped,
    /// The cipher refused to seal (nonce space exhausted).
    #[error("cannot seal")]
    SealFailed,
    /// The link said goodbye and wrote everything queued before it.
    #[error("said goodbye")]
    Finished,
    /// The peer's certificate was revoked while the link was up.
    #[error("the peer's certificate was revoked")]
    Revoked,
}

/// The class of a [`CloseReason`], for counters and log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseKind {
    /// A clean close by either side (peer closed, goodbye, replaced, shutdown).
    Clean,
    /// A socket error.
    Io,
    /// The peer broke the protocol (frame, record or envelope).
    Protocol,
    /// The peer went silent.
    Timeout,
    /// The link was idle.
    Idle,
    /// Membership declared the peer down.
    MemberDown,
}

impl CloseKind {
    /// Whether this kind of close is a failure (counted and logged as a warning).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            CloseKind::Io | CloseKind::Protocol | CloseKind::Timeout
        )
    }
}

impl CloseReason {
    /// The class of this reason.
    pub fn kind(&self) -> CloseKind {
        match self {
            CloseReason::PeerClosed
            | CloseReason::Replaced
            | CloseReason::Goodbye(_)
            | CloseReason::Local(_) => CloseKind::Clean,
            CloseReason::Io(_) => CloseKind::Io,
            CloseReason::Frame(_) | CloseReason::Record(_) | CloseReason::Envelope(_) => {
                CloseKind::Protocol
            }
            CloseReason::HeartbeatTimeout(_) => CloseKind::Timeout,
            CloseReason::Idle(_) => CloseKind::Idle,
            CloseReason::MemberDown => CloseKind::MemberDown,
        }
    }
}

/// `From` for variants that print their cause in the message: the cause
/// is not also the `source()`, so a chain (`{:#}`) prints it once.
macro_rules! cause_in_message {
    ($($outer:ident :: $variant:ident ($inner:ty);)*) => {$(
        impl From<$inner> for $outer {
            fn from(e: $inner) -> Self {
                $outer::$variant(e)
            }
        }
    )*};
}

cause_in_message! {
    HandshakeFailure::Refused(HandshakeError);
    HandshakeFailure::Frame(swarm_protocol::FrameError);
    StartError::Certificate(swarm_protocol::CertError);
    StartError::Metadata(swarm_protocol::gossip::MetaError);
    ClusterError::Metadata(swarm_protocol::gossip::MetaError);
    ClusterError::KeyRing(swarm_protocol::gossip::SealError);
    CloseReason::Frame(swarm_protocol::FrameError);
    CloseReason::Record(swarm_protocol::RecordError);
    CloseReason::Envelope(swarm_protocol::EnvelopeError);
}
