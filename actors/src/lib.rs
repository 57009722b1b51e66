//! The system actors of Swarm on actix, as rooms with doors. The wire
//! protocol itself lives in `swarm-protocol`; configuration files and the
//! CLI in `swarm`.
//!
//! # Layout
//!
//! Dependencies point one way, down this list (`src/rooms.txt`, which
//! `tests/rooms.rs` checks against every `use crate::` and `super::` path);
//! each room is reached only through its handle and the events it publishes:
//!
//! ```text
#![doc = include_str!("rooms.txt")]
//! ```
//!
//! - `node`: [`Node`], the assembly: binds sockets, starts the rooms below
//!   and hands each the doors it needs. Nothing imports it but this file.
//! - [`config`]: [`MeshConfig`], the node's whole configuration; each room
//!   is handed its part.
//! - [`inspector`]: the `swarm.inspect` actor; joins what the rooms report
//!   into a node's snapshot for operators.
//! - [`control`] and [`tasks`]: named actors through the head group (and
//!   the session actor operators log in through); Ray-style tasks
//!   ([`task!`] declares one).
//! - `head`: the replicated control plane (Raft, store, placement supervisor).
//! - [`supervision`] and [`placement`]: restart policies, the node's host
//!   and its fencing; where actors go (pure).
//! - [`operators`]: logins, capabilities and the sessions the mesh asks
//!   about.
//! - [`cluster`]: the [`Cluster`] handle: membership (SWIM over sealed UDP),
//!   the bounded [`ClusterEvent`] stream, service discovery and
//!   [`ServiceRef`] load balancing.
//! - `remote`: [`RemoteAddr`] and the delivery contract.
//! - `mesh`: transport only: links, routes, relays, counters; it asks the
//!   doors it is handed (policy, audit, the session gate).
//! - [`policy`], [`audit`], [`at_rest`]: who may send what; the audit log;
//!   keyrings and sealed files.
//! - `directory`: exposed actors by name, their remote protocols
//!   ([`remote_actor!`], [`RemoteMessage`]) and type-tag dispatch.
//! - [`error`]: the errors shared below the rooms (a room's own live in it).
//! - [`inspect`]: counters, histograms, the event log and the data model's
//!   rows; imports no room.
//!
//! # Remote protocols are checked at compile time
//!
//! An actor declares the messages other nodes may send it once; a
//! [`RemoteAddr`] sends nothing else:
//!
//! ```compile_fail
//! use actix::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Message)]
//! #[rtype(result = "u64")]
//! struct Add(u64, u64);
//! #[derive(Serialize, Deserialize, Message)]
//! #[rtype(result = "()")]
//! struct Reset;
//! swarm_actors::remote_message!(Add => "doc.Add", Reset => "doc.Reset");
//!
//! struct Adder;
//! impl Actor for Adder { type Context = Context<Self>; }
//! impl Handler<Add> for Adder {
//!     type Result = u64;
//!     fn handle(&mut self, Add(a, b): Add, _: &mut Context<Self>) -> u64 { a + b }
//! }
//! impl Handler<Reset> for Adder {
//!     type Result = ();
//!     fn handle(&mut self, _: Reset, _: &mut Context<Self>) {}
//! }
//! // Reset is handled, but not declared remote:
//! swarm_actors::remote_actor!(Adder: Add);
//!
//! async fn call(adder: swarm_actors::RemoteAddr<Adder>) {
//!     let _ = adder.send(Reset).await; // error: `Adder: Accepts<Reset>` is not satisfied
//! }
//! ```
//!
//! The same program with `remote_actor!(Adder: Add, Reset)` compiles:
//!
//! ```
//! # use actix::prelude::*;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Serialize, Deserialize, Message)]
//! # #[rtype(result = "u64")]
//! # struct Add(u64, u64);
//! # #[derive(Serialize, Deserialize, Message)]
//! # #[rtype(result = "()")]
//! # struct Reset;
//! # swarm_actors::remote_message!(Add => "doc.Add", Reset => "doc.Reset");
//! # struct Adder;
//! # impl Actor for Adder { type Context = Context<Self>; }
//! # impl Handler<Add> for Adder {
//! #     type Result = u64;
//! #     fn handle(&mut self, Add(a, b): Add, _: &mut Context<Self>) -> u64 { a + b }
//! # }
//! # impl Handler<Reset> for Adder {
//! #     type Result = ();
//! #     fn handle(&mut self, _: Reset, _: &mut Context<Self>) {}
//! # }
//! swarm_actors::remote_actor!(Adder: Add, Reset);
//!
//! async fn call(adder: swarm_actors::RemoteAddr<Adder>) {
//!     let _ = adder.send(Reset).await;
//! }
//! ```

#![warn(missing_docs, unreachable_pub)]

pub mod at_rest;
pub mod audit;
pub mod cluster;
pub mod config;
pub mod control;
mod directory;
pub mod durable;
pub mod error;
#[cfg(any(fuzzing, test))]
#[doc(hidden)]
pub mod fuzzing;
mod head;
pub mod inspect;
pub mod inspector;
mod mesh;
mod node;
pub mod operators;
pub mod placement;
pub mod policy;
mod remote;
mod summary;
pub mod supervision;
pub mod tasks;

pub use cluster::{
    Cluster, ClusterConfig, ClusterEvent, ClusterEvents, GossipKeyOp, Instance, Keyed, Member,
    ResourceOverrides, ServiceRef, Strategy,
};
pub use config::MeshConfig;
pub use control::LoginError;
pub use directory::dispatch::Protocol;
pub use directory::{Accepts, Access, RemoteActor, RemoteMessage, Wire};
pub use error::{
    AskError, CloseKind, CloseReason, ClusterError, ConnectError, DialError, ExposeError,
    HandshakeFailure, HeadStartError, StartError, TellError, Unreachable,
};
pub use mesh::{Faults, MeshStats, PeerInfo};
pub use node::Node;
pub use remote::RemoteAddr;
pub use supervision::RemoteSpawnError;

/// The head's state machine measured at scale, for `swarm bench control
/// --actors`; not part of the API.
#[doc(hidden)]
pub mod head_scale {
    pub use crate::head::store::scale::{measure, HeadScale, ScaleError};
}

/// What `remote_actor!` expands to needs; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::inspect::{Probe, Timed, TimedResponse};
    pub use actix;
}
