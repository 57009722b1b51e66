//! The system actors of Swarm on actix: the mesh (listener, one link per
//! peer, router), the local directory of exposed actors with its
//! dispatcher, and the typed [`RemoteAddr`] handle. The wire protocol itself
//! lives in `swarm-protocol`; configuration files and the CLI in `swarm`.
//!
//! # Layout
//!
//! - [`node`]: [`Node`], the handle that starts a node's actors and exposes actors.
//! - [`remote`]: [`RemoteAddr`] and the delivery contract.
//! - [`cluster`]: membership (SWIM over sealed UDP), [`ClusterEvent`]s,
//!   service discovery and [`ServiceRef`] load balancing.
//! - `directory`: [`RemoteMessage`], registration and type-tag dispatch.
//! - `mesh`: the Router, Listener and Link actors.
//! - [`config`] and [`error`].

#![warn(missing_docs, unreachable_pub)]

pub mod cluster;
pub mod config;
mod directory;
pub mod error;
mod mesh;
pub mod node;
pub mod remote;

pub use cluster::{
    ClusterConfig, ClusterEvent, Instance, Keyed, Member, ResourceOverrides, ServiceRef, Strategy,
};
pub use config::MeshConfig;
pub use directory::{RemoteMessage, Wire};
pub use error::{AskError, CloseReason, ConnectError, NodeError, TellError};
pub use mesh::connect::HandshakeFailure;
pub use node::{Exposure, GossipKeyOp, Node, NodeStats, PeerInfo};
pub use remote::RemoteAddr;
