//! What the `swarm` command runs besides user workloads, shared with the
//! integration tests of this package: the demo workload and local clusters
//! of node processes. Not part of Swarm's API: a workload depends on the
//! `swarm` crate only.
//!
//! # Layout
//!
//! - [`console`]: the debug console's data and views (`swarm console`).
//! - [`demo`]: the demo workload used by `swarm demo`, the tests and benchmarks.
//! - [`local`]: a local cluster of child node processes (`swarm demo`, tests).
//! - [`logs`]: the default log filter of `swarm` processes.
//! - `main.rs` and `cli/`: the `swarm` binary (commands, benchmarks).

#![warn(missing_docs, unreachable_pub)]

pub mod console;
pub mod demo;
pub mod local;
pub mod logs;
