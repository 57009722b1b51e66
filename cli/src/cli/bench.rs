//! `swarm bench ...`: run the cluster benchmarks (one module each; the
//! link's in [`measure`]) and print a table or one JSON object.

mod actors;
mod console;
mod control;
mod durable;
pub(crate) mod durable_migrate;
mod holders;
mod idle;
mod in_process;
mod inspect;
mod measure;
mod membership;
mod operator;
mod partition;
mod security;
mod tasks;
mod views;

use anyhow::{Context as _, Result};

use super::BenchCommand;

/// Runs `swarm bench COMMAND`.
pub(crate) fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Control {
            json,
            actors: Some(actors),
            view_actors,
            baseline_exe,
            ..
        } => {
            let view_actors = view_actors.unwrap_or(actors.min(100_000));
            control_actors(json, actors, view_actors, baseline_exe)
        }
        BenchCommand::Control {
            json,
            runs,
            holders: Some(count),
            ..
        } => holders(json, count, runs),
        BenchCommand::Control {
            json,
            spawns,
            runs,
            partition_runs,
            ..
        } => control(json, spawns, runs, partition_runs),
        BenchCommand::Tasks { json, tasks: count } => tasks(json, count),
        BenchCommand::Migrate { json, migrations } => {
            let report = durable_migrate::run(migrations, None)?;
            emit(json, &report, || report.table())
        }
        BenchCommand::Durable {
            json,
            persists,
            actors,
            secs,
            runs,
        } => durable(
            json,
            durable::Plan {
                persists,
                actors,
                secs,
                runs,
            },
        ),
        BenchCommand::Security { json, scale } => security(json, scale),
        BenchCommand::Inspect { json, scale } => inspect(json, scale),
        BenchCommand::Console {
            json,
            nodes,
            actors,
            frames,
        } => console(json, nodes, actors, frames),
        BenchCommand::Link { json, scale, relay } => link(json, scale, relay),
        BenchCommand::Idle {
            json,
            members,
            idle_secs,
        } => idle(json, members, std::time::Duration::from_secs(idle_secs)),
        BenchCommand::Membership {
            nodes,
            loss,
            kill,
            meta,
            processes,
            idle_secs,
            json,
        } => membership(
            Membership {
                nodes,
                loss,
                kill,
                meta,
                processes,
                idle: std::time::Duration::from_secs(idle_secs),
            },
            json,
        ),
    }
}

pub(crate) fn link(json: bool, scale: f64, relay: bool) -> Result<()> {
    let exe = exe()?;
    let report = measure::link(scale, Some(&exe), relay)?;
    emit(json, &report, || report.table())
}

pub(crate) fn control(json: bool, spawns: usize, runs: usize, partition_runs: usize) -> Result<()> {
    let exe = exe()?;
    let report = control::run(&exe, spawns, runs, partition_runs)?;
    emit(json, &report, || report.table())
}

pub(crate) fn durable(json: bool, plan: durable::Plan) -> Result<()> {
    let exe = exe()?;
    let report = durable::run(&exe, plan)?;
    emit(json, &report, || report.table())
}

pub(crate) fn idle(json: bool, members: usize, window: std::time::Duration) -> Result<()> {
    let exe = exe()?;
    let report = idle::run(&exe, members, window)?;
    emit(json, &report, || report.table())
}

pub(crate) fn control_actors(
    json: bool,
    actors: usize,
    view_actors: usize,
    baseline: Option<std::path::PathBuf>,
) -> Result<()> {
    let exe = exe()?;
    let report = actors::run(&exe, actors, view_actors, baseline)?;
    emit(json, &report, || report.table())
}

pub(crate) fn holders(json: bool, count: usize, runs: usize) -> Result<()> {
    let exe = exe()?;
    let report = holders::run(&exe, count, runs)?;
    emit(json, &report, || report.table())
}

pub(crate) fn security(json: bool, scale: f64) -> Result<()> {
    let exe = exe()?;
    let report = security::run(scale, &exe)?;
    emit(json, &report, || report.table())
}

pub(crate) fn console(json: bool, nodes: usize, actors: usize, frames: u32) -> Result<()> {
    let exe = exe()?;
    let report = console::run(&exe, nodes, actors, frames)?;
    emit(json, &report, || report.table())
}

pub(crate) fn inspect(json: bool, scale: f64) -> Result<()> {
    let report = inspect::run(scale)?;
    emit(json, &report, || report.table())
}

pub(crate) fn tasks(json: bool, count: usize) -> Result<()> {
    let exe = exe()?;
    let report = tasks::run(&exe, count)?;
    emit(json, &report, || report.table())
}

/// Megabytes per second, MB = 10^6 bytes: the one unit of every
/// `_mb_per_s` figure (payload sizes may be given in MiB, 2^20 bytes).
pub(super) fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

/// What `swarm bench membership` runs.
pub(crate) struct Membership {
    pub(crate) nodes: usize,
    pub(crate) loss: f64,
    pub(crate) kill: f64,
    pub(crate) meta: bool,
    pub(crate) processes: usize,
    pub(crate) idle: std::time::Duration,
}

pub(crate) fn membership(run: Membership, json: bool) -> Result<()> {
    let Membership {
        nodes,
        loss,
        kill,
        meta,
        processes,
        idle,
    } = run;
    if !(0.0..1.0).contains(&loss) || !(0.0..1.0).contains(&kill) {
        anyhow::bail!("--loss and --kill must be in [0, 1)");
    }
    let mut value = serde_json::Map::new();
    let mut table = String::new();
    if nodes > 0 {
        if cfg!(feature = "sim") || processes == 0 {
            simulate(nodes, loss, kill, meta, &mut value, &mut table)?;
        } else {
            eprintln!("note: simulated run skipped (built without `--features sim`)");
        }
    }
    if processes > 0 {
        let exe = exe()?;
        let p = membership::processes(
            &exe,
            processes,
            &[],
            std::time::Duration::from_secs(120 + processes as u64 / 4),
            idle,
        )?;
        value.insert("processes".into(), serde_json::to_value(&p)?);
        table.push_str(&p.table());
    }
    if json {
        println!("{}", serde_json::Value::Object(value));
    } else {
        print!("{table}");
    }
    Ok(())
}

/// The simulated run (`--nodes`), when the binary was built with it.
#[cfg(feature = "sim")]
fn simulate(
    nodes: usize,
    loss: f64,
    kill: f64,
    meta: bool,
    value: &mut serde_json::Map<String, serde_json::Value>,
    table: &mut String,
) -> Result<()> {
    use std::fmt::Write as _;

    use swarm::protocol::membership::sim::{bench, SimConfig};
    if nodes < 3 {
        anyhow::bail!("--nodes must be at least 3");
    }
    let mut config = SimConfig::default();
    config.membership.gossip_meta = meta;
    let started = std::time::Instant::now();
    let report = bench(nodes, loss, kill, config);
    let wall_s = started.elapsed().as_secs_f64();
    if let serde_json::Value::Object(fields) = serde_json::to_value(&report)? {
        value.extend(fields);
    }
    value.insert("wall_s".into(), wall_s.into());
    // The simulation holds every node's view of every other (N² members):
    // its memory, not its CPU, bounds how many nodes fit on a machine.
    let peak_rss_mib = peak_rss_kib().map(|kib| kib as f64 / 1024.0);
    value.insert("peak_rss_mib".into(), peak_rss_mib.into());
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    let _ = writeln!(
        table,
        "membership, simulated ({} nodes, {:.0}% loss, metadata {})",
        nodes,
        loss * 100.0,
        if meta { "on" } else { "off" }
    );
    let _ = writeln!(
        table,
        "  converge_s                   {}",
        opt(report.converge_s)
    );
    let _ = writeln!(table, "  killed                       {}", report.killed);
    let _ = writeln!(
        table,
        "  detect_s p50 / max           {} / {}  (bound {:.1})",
        opt(report.detect_s_p50),
        opt(report.detect_s_max),
        report.bound_s
    );
    let _ = writeln!(
        table,
        "  false_down                   {}",
        report.false_down
    );
    let _ = writeln!(
        table,
        "  gossip_bytes_per_node_per_s  {:.0}",
        report.gossip_bytes_per_node_per_s
    );
    let _ = writeln!(
        table,
        "  virtual_s / wall_s           {:.1} / {:.1}",
        report.virtual_s, wall_s
    );
    let _ = writeln!(
        table,
        "  peak RSS (MiB)               {}",
        peak_rss_mib.map_or("-".to_string(), |v| format!("{v:.0}"))
    );
    Ok(())
}

/// This process's peak resident memory (KiB), from /proc (Linux only).
#[cfg(feature = "sim")]
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Without the simulator, `--nodes` is refused with how to get it.
#[cfg(not(feature = "sim"))]
fn simulate(
    _nodes: usize,
    _loss: f64,
    _kill: f64,
    _meta: bool,
    _value: &mut serde_json::Map<String, serde_json::Value>,
    _table: &mut String,
) -> Result<()> {
    anyhow::bail!(
        "the simulated run needs the simulator: \
         cargo run --release --features sim -- bench membership --nodes N \
         (or --nodes 0 --processes M for real processes only)"
    )
}

/// The running `swarm` binary, which the benches start as node processes.
fn exe() -> Result<std::path::PathBuf> {
    std::env::current_exe().context("cannot find the swarm binary")
}

/// Prints `report` as one JSON object or as its table.
fn emit<R: serde::Serialize>(json: bool, report: &R, table: impl FnOnce() -> String) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{}", table());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mb_per_s_counts_a_megabyte_as_a_million_bytes() {
        assert_eq!(mb_per_s(1_000_000, 1.0), 1.0);
        // 64 MiB in one second is 67.1 MB/s, not 64.
        assert!((mb_per_s(64 << 20, 1.0) - 67.108_864).abs() < 1e-9);
        assert_eq!(mb_per_s(3_000_000, 0.5), 6.0);
    }
}
