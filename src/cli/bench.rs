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

pub(crate) fn membership(
    nodes: usize,
    loss: f64,
    kill: f64,
    meta: bool,
    processes: usize,
    json: bool,
) -> Result<()> {
    use swarm::protocol::membership::sim::{bench, SimConfig};
    if nodes < 3 {
        anyhow::bail!("--nodes must be at least 3");
    }
    if !(0.0..1.0).contains(&loss) || !(0.0..1.0).contains(&kill) {
        anyhow::bail!("--loss and --kill must be in [0, 1)");
    }
    let mut config = SimConfig::default();
    config.membership.gossip_meta = meta;
    let report = bench(nodes, loss, kill, config);
    let procs = if processes > 0 {
        let exe = std::env::current_exe().context("cannot find the swarm binary")?;
        Some(swarm::bench::membership_processes(
            &exe,
            processes,
            &[],
            std::time::Duration::from_secs(120),
        )?)
    } else {
        None
    };
    if json {
        let mut value = serde_json::to_value(&report)?;
        if let (Some(p), Some(obj)) = (&procs, value.as_object_mut()) {
            obj.insert("processes".into(), serde_json::to_value(p)?);
        }
        println!("{value}");
        return Ok(());
    }
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    println!(
        "membership, simulated ({} nodes, {:.0}% loss, metadata {})",
        nodes,
        loss * 100.0,
        if meta { "on" } else { "off" }
    );
    println!("  converge_s                   {}", opt(report.converge_s));
    println!("  killed                       {}", report.killed);
    println!(
        "  detect_s p50 / max           {} / {}  (bound {:.1})",
        opt(report.detect_s_p50),
        opt(report.detect_s_max),
        report.bound_s
    );
    println!("  false_down                   {}", report.false_down);
    println!(
        "  gossip_bytes_per_node_per_s  {:.0}",
        report.gossip_bytes_per_node_per_s
    );
    println!(
        "  virtual_s / wall_s           {:.1} / {:.1}",
        report.virtual_s, report.wall_s
    );
    if let Some(p) = procs {
        println!("membership, {} real processes on 127.0.0.1", p.processes);
        println!("  converge_s                   {:.2}", p.converge_s);
        println!(
            "  sigkill to down on all (s)   {:.2}  (bound {:.1})",
            p.detect_s, p.bound_s
        );
    }
    Ok(())
}
