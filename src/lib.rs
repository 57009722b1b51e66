//! Swarm: a distributed actor runtime. Write actors with actix whose
//! messages are serde types, expose them on a [`Node`], and call them from
//! any node through a typed [`RemoteAddr`]; every link between nodes is a
//! mutually authenticated, encrypted Noise session.
//!
//! ```no_run
//! use actix::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Message)]
//! #[rtype(result = "u64")]
//! struct Add(u64, u64);
//! swarm::remote_message!(Add => "example.Add");
//!
//! struct Adder;
//! impl Actor for Adder { type Context = Context<Self>; }
//! impl Handler<Add> for Adder {
//!     type Result = u64;
//!     fn handle(&mut self, Add(a, b): Add, _: &mut Context<Self>) -> u64 { a + b }
//! }
//! // The messages other nodes may send an Adder, declared once.
//! swarm::remote_actor!(Adder: Add);
//!
//! # async fn run(node: swarm::Node, other: swarm::Node) -> Result<(), Box<dyn std::error::Error>> {
//! node.spawn("adder", |_| Adder)?;
//! let adder = other.remote::<Adder>(node.id(), "adder");
//! assert_eq!(adder.send(Add(2, 3)).await?, 5);
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`config`]: the node configuration file.
//! - [`credentials`]: CA, join secret, node keys and certificates on disk; throw-away CAs.
//! - Re-exports of `swarm-actors` (runtime) and `swarm-protocol` (wire format).

#![warn(missing_docs, unreachable_pub)]

pub mod config;
pub mod credentials;
mod files;

pub use files::FileError;
pub use swarm_actors::{
    at_rest, audit, cluster, control, durable, error, operators, placement, policy, remote_actor,
    remote_message, supervision, task, tasks, Accepts, Access, AskError, Cluster, ClusterConfig,
    ClusterEvent, ClusterEvents, Faults, GossipKeyOp, Instance, Keyed, Member, MeshConfig,
    MeshStats, Node, PeerInfo, Protocol, RemoteActor, RemoteAddr, RemoteMessage, ResourceOverrides,
    ServiceRef, Strategy, TellError, Wire,
};
pub use swarm_actors::{
    CloseKind, CloseReason, ClusterError, ConnectError, DialError, ExposeError, HandshakeFailure,
    HeadStartError, LoginError, RemoteSpawnError, StartError, Unreachable,
};
pub use swarm_protocol as protocol;
pub use swarm_protocol::{CipherSuite, NodeId};

/// What operators see inside a node and across the cluster: the
/// `swarm.inspect` actor ([`Inspector`](inspect::Inspector)), its
/// messages, and the one data model of the console, its `--json` output,
/// the admin API and the metrics (the rows of `swarm_actors::inspect` and
/// the snapshots of `swarm_actors::inspector`, in one place).
pub mod inspect {
    pub use swarm_actors::inspect::*;
    pub use swarm_actors::inspector::*;
}

/// The usual imports for writing a workload.
pub mod prelude {
    pub use actix::prelude::*;
    pub use serde::{Deserialize, Serialize};

    pub use crate::{
        remote_actor, remote_message, AskError, Cluster, ClusterEvent, Keyed, Node, RemoteAddr,
        RemoteMessage, ServiceRef, Strategy, TellError,
    };
}
