//! Service discovery and load balancing.
//!
//! An actor exposed on a node registers as an instance of a named service
//! ([`Cluster::register_service`](crate::Cluster::register_service)); the
//! entry travels in the node's gossiped metadata. Every node keeps a
//! service table (`table`) of the instances on members that are alive:
//! instances on suspect, down or departed nodes leave it the moment
//! membership says so, and new ones enter it as soon as their metadata
//! arrives.
//!
//! A [`ServiceRef`] sends to one live instance, chosen by its [`Strategy`]
//! (pure functions in `strategy`; the hash ring in `ring`). A request
//! that fails because the instance's node cannot be reached
//! ([`AskError::is_node_failure`](crate::AskError::is_node_failure)) ejects
//! that node from every `ServiceRef` on this node; it is readmitted only
//! once a new link to it is up (dialed in the background, never by a user
//! request) or membership reports it alive again after a restart. So after
//! the first failure, no request goes to a dead node.

pub(crate) mod ring;
mod service_ref;
pub(crate) mod strategy;
pub(crate) mod table;

pub use ring::key_hash;
pub use service_ref::{Keyed, ServiceRef};
pub use strategy::Strategy;
pub use table::Instance;
