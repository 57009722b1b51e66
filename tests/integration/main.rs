//! Integration tests: real nodes on 127.0.0.1 with real TCP and real Noise
//! handshakes, in one process (each node on its own arbiter) and as child
//! processes of the built `swarm` binary. One test binary, one module per area.

mod util;

mod admin_api;
mod at_rest;
mod bad_input;
mod browser;
mod cluster_processes;
mod console;
mod console_tui;
mod control;
mod control_faults;
mod control_ops;
mod control_processes;
mod crossed_dials;
mod dashboard;
mod drain;
mod durable;
mod durable_postgres;
mod durable_rules;
mod durable_views;
mod hostile;
mod hostile_mesh;
mod idle;
mod inspect;
mod leaks;
mod lease_renewals;
mod login_flood;
mod login_wait;
mod members_wait;
mod membership;
mod migrate;
mod namespaces;
mod netns;
mod operators;
mod oversize;
mod partition;
mod passivation;
mod placement;
mod policy;
mod postgres;
mod processes;
mod readme;
mod relay;
mod renewal;
mod revocation;
mod shutdown;
mod silent_flood;
mod stress;
mod supervision;
mod tasks;
mod tasks_processes;
mod tools;
mod two_nodes;
mod views;
