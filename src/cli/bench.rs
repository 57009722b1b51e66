//! `swarm bench link`: prints the link benchmark as a table or one JSON object.

use anyhow::{Context as _, Result};

pub(crate) fn link(json: bool, scale: f64) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the swarm binary")?;
    let report = swarm::bench::link(scale, Some(&exe))?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
