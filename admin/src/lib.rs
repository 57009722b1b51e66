//! What a Swarm node offers operators beyond the mesh.
//!
//! - [`metrics`]: a node's inspection snapshot in the Prometheus
//!   exposition format, written by `prometheus-client`; every numeric
//!   field of the data model (`swarm_actors::inspect::model`) becomes a
//!   metric, so a field added there appears here with no change.

#![warn(missing_docs, unreachable_pub)]

pub mod metrics;
