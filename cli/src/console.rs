//! `swarm console`: the debug console. It attaches to one member as an
//! operator (certificate and TOTP), polls every member's `swarm.inspect`
//! ([`collect`]), and shows the views of [`views`]: the same rows for the
//! terminal, for `--once VIEW --json`, and (through the data model of
//! `swarm::inspect`) for the admin API.

pub mod collect;
pub mod record;
pub mod screen;
pub mod views;

pub use views::View;
