//! What a Swarm node offers operators beyond the mesh.
//!
//! - [`collect`]: the cluster as one operator sees it (every member's
//!   inspection joined), and the operator's actions.
//! - [`server`]: the admin API over HTTPS ([`tls`]) with the web dashboard
//!   and `/metrics`, for operators logged in with a password and a TOTP
//!   code.
//! - [`metrics`]: a node's inspection snapshot in the Prometheus
//!   exposition format, written by `prometheus-client`; every numeric
//!   field of the data model (`swarm_actors::inspect::model` and
//!   `swarm_actors::inspector`) becomes a metric, so a field added there
//!   appears here with no change.

#![warn(missing_docs, unreachable_pub)]

pub mod collect;
pub mod metrics;
pub mod server;
pub mod tls;
