//! `swarm bench idle`: what an idle node costs, per role. Starts a control
//! plane (3 heads, 2 workers; one worker runs a named actor under its
//! lease) and, beside it, a cluster without heads (workers only), as child
//! processes of this binary; lets them fall quiet, then reads each
//! process's CPU, wake-ups and memory from `/proc` over the same window.
//! The process sampler ([`Sample`]) is shared with `swarm bench membership`.
//!
//! Which memory figure is a node's cost: `RssAnon` (heap, stacks, tables,
//! relocated data) is the node's own, and it is what the 10 MiB target of
//! an idle node applies to. `RSS` adds the binary's mapped code and
//! read-only data (`RssFile`): clean page-cache pages that every process
//! of the binary shares and the kernel may drop and read again, so they
//! measure the binary's size, not the node's. `PSS` splits those shared
//! pages among the processes that map them: with many nodes on one machine
//! it approaches `RssAnon`, with one node alone it equals `RSS`. All three
//! are reported.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use serde::Serialize;
use swarm::config::NodeFile;
use swarm::Node;
use swarm_cli::local::LocalCluster;

/// What `swarm bench idle` prints: one row per role, measured over the
/// same window.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct IdleReport {
    /// Seconds the processes were measured over (after they fell quiet).
    pub(crate) idle_s: f64,
    /// The idle CPU target of a worker without heads, percent of a core.
    pub(crate) target_cpu_pct: f64,
    /// The idle memory target, MiB of `RssAnon` (see the module doc).
    pub(crate) target_anon_mib: f64,
    /// One row per role.
    pub(crate) roles: Vec<RoleIdle>,
}

/// The idle cost of the processes of one role (averaged over them).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RoleIdle {
    /// The role: `head leader`, `head follower`, `worker with lease`,
    /// `worker with lease and actor`, `worker without heads`.
    pub(crate) role: String,
    /// Processes averaged.
    pub(crate) processes: usize,
    /// CPU of all threads (percent of one core), context switches per
    /// second (how often it wakes up), RSS, RssAnon (the node's own), PSS
    /// and threads: the same fields as `swarm bench membership` reports.
    #[serde(flatten)]
    pub(crate) usage: Usage,
}

impl IdleReport {
    /// The report as table lines.
    pub(crate) fn table(&self) -> String {
        let mut out = format!(
            "idle nodes over {:.0} s (child processes of this binary; targets for a worker \
             without heads: <= {} % of a core, <= {} MiB RssAnon)\n  \
             {:<28} {:>5} {:>9} {:>10} {:>8} {:>8} {:>8} {:>7}\n",
            self.idle_s,
            self.target_cpu_pct,
            self.target_anon_mib,
            "role",
            "procs",
            "cpu %",
            "wakeups/s",
            "rss MiB",
            "anon MiB",
            "pss MiB",
            "threads"
        );
        for r in &self.roles {
            out.push_str(&format!(
                "  {:<28} {:>5} {:>9.4} {:>10.1} {:>8.1} {:>8.2} {:>8.2} {:>7.1}\n",
                r.role,
                r.processes,
                r.usage.cpu_pct,
                r.usage.wakeups_per_s,
                r.usage.rss_mib,
                r.usage.anon_mib,
                r.usage.pss_mib,
                r.usage.threads
            ));
        }
        out
    }
}

/// One process's counters at one moment, from `/proc/PID`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    at: Instant,
    /// CPU time of all live threads, ns (`task/*/schedstat`).
    cpu_ns: u64,
    /// Context switches of all live threads (`task/*/status`).
    switches: u64,
    /// `VmRSS`, `RssAnon`, KiB (`status`); `Pss`, KiB (`smaps_rollup`).
    rss_kib: u64,
    anon_kib: u64,
    pss_kib: u64,
    threads: u64,
}

impl Sample {
    /// Reads process `pid`'s counters; `None` if it is gone (or this is
    /// not Linux).
    pub(crate) fn take(pid: u32) -> Option<Sample> {
        let at = Instant::now();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let (mut cpu_ns, mut switches) = (0, 0);
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .flatten()
        {
            let path = task.path();
            // A thread that ended between the listing and the read counts 0.
            if let Ok(sched) = std::fs::read_to_string(path.join("schedstat")) {
                cpu_ns += sched
                    .split_whitespace()
                    .next()
                    .and_then(|ns| ns.parse::<u64>().ok())
                    .unwrap_or(0);
            }
            if let Ok(text) = std::fs::read_to_string(path.join("status")) {
                switches += field(&text, "voluntary_ctxt_switches:").unwrap_or(0)
                    + field(&text, "nonvoluntary_ctxt_switches:").unwrap_or(0);
            }
        }
        let pss_kib = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
            .ok()
            .and_then(|text| field(&text, "Pss:"))
            .unwrap_or(0);
        Some(Sample {
            at,
            cpu_ns,
            switches,
            rss_kib: field(&status, "VmRSS:")?,
            anon_kib: field(&status, "RssAnon:").unwrap_or(0),
            pss_kib,
            threads: field(&status, "Threads:").unwrap_or(0),
        })
    }
}

/// What one process cost between two samples (memory as of the later).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Usage {
    /// CPU, percent of one core.
    pub(crate) cpu_pct: f64,
    /// Context switches per second.
    pub(crate) wakeups_per_s: f64,
    /// `VmRSS`, `RssAnon` and `Pss`, MiB.
    pub(crate) rss_mib: f64,
    pub(crate) anon_mib: f64,
    pub(crate) pss_mib: f64,
    /// Threads.
    pub(crate) threads: f64,
}

impl Usage {
    /// From `before` to `after` of one process.
    pub(crate) fn between(before: &Sample, after: &Sample) -> Usage {
        let secs = after.at.duration_since(before.at).as_secs_f64().max(1e-9);
        let mib = |kib: u64| kib as f64 / 1024.0;
        Usage {
            cpu_pct: after.cpu_ns.saturating_sub(before.cpu_ns) as f64 / 1e9 / secs * 100.0,
            wakeups_per_s: after.switches.saturating_sub(before.switches) as f64 / secs,
            rss_mib: mib(after.rss_kib),
            anon_mib: mib(after.anon_kib),
            pss_mib: mib(after.pss_kib),
            threads: after.threads as f64,
        }
    }

    /// The average of `usages` (zero for none).
    pub(crate) fn mean(usages: &[Usage]) -> Usage {
        let n = usages.len().max(1) as f64;
        let sum = |f: fn(&Usage) -> f64| usages.iter().map(f).sum::<f64>() / n;
        Usage {
            cpu_pct: sum(|u| u.cpu_pct),
            wakeups_per_s: sum(|u| u.wakeups_per_s),
            rss_mib: sum(|u| u.rss_mib),
            anon_mib: sum(|u| u.anon_mib),
            pss_mib: sum(|u| u.pss_mib),
            threads: sum(|u| u.threads),
        }
    }
}

/// Samples `pids` now and after `window`: what each cost in between
/// (processes that ended are left out).
pub(crate) async fn measure(pids: &[u32], window: Duration) -> (Vec<Option<Usage>>, f64) {
    let before: Vec<Option<Sample>> = pids.iter().map(|&p| Sample::take(p)).collect();
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let secs = started.elapsed().as_secs_f64();
    let usages = pids
        .iter()
        .zip(&before)
        .map(|(&pid, before)| Some(Usage::between(before.as_ref()?, &Sample::take(pid)?)))
        .collect();
    (usages, secs)
}

/// Runs the benchmark: the control plane and `members` workers without
/// heads, measured over `idle` once quiet.
///
/// # Errors
///
/// If a cluster does not start, the control plane does not place the
/// actor, or the cluster without heads does not converge, within a minute.
pub(crate) fn run(exe: &Path, members: usize, idle: Duration) -> Result<IdleReport> {
    let base = std::env::temp_dir().join(format!("swarm-bench-idle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base)?;
    let mut control_cluster =
        LocalCluster::start_control(exe, &base.join("control"), 3, 2, &["--workload", "demo"])
            .context("cannot start the control plane")?;
    control_cluster.remove_dir_on_drop(true);
    let mut plain = LocalCluster::start_members(exe, &base.join("plain"), members.max(1), &[])
        .context("cannot start the cluster without heads")?;
    plain.remove_dir_on_drop(true);
    let report = actix::System::new().block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        // The control plane: the leader, and the worker the actor runs on.
        let (driver, control) = super::control::driver(&control_cluster.driver_config()).await?;
        let actor_node = super::control::placed(&control, "idle-ledger", deadline)
            .await?
            .location()
            .map(|(node, _)| node)
            .context("the placed ledger has no location")?;
        let leader = control
            .head_status()
            .await
            .into_iter()
            .find_map(|(node, row)| row.ok().filter(|r| r.role == "leader").map(|_| node))
            .context("no head leader")?;
        driver.close().await;
        // The cluster without heads, converged.
        converge(&plain, deadline).await?;
        // Quiet: the joins' and the placement's gossip has spread, leases
        // are in their steady renewal.
        tokio::time::sleep((idle / 3).max(Duration::from_secs(5))).await;
        let mut roles: Vec<(&str, Vec<u32>)> = vec![
            ("head leader", Vec::new()),
            ("head follower", Vec::new()),
            ("worker with lease and actor", Vec::new()),
            ("worker with lease", Vec::new()),
        ];
        for (i, node) in control_cluster.nodes.iter().enumerate() {
            let role = match (i < 3, node.id == leader, node.id == actor_node) {
                (true, true, _) => 0,
                (true, false, _) => 1,
                (false, _, true) => 2,
                (false, _, false) => 3,
            };
            roles[role].1.push(node.child.id());
        }
        roles.push((
            "worker without heads",
            plain.nodes.iter().map(|c| c.child.id()).collect(),
        ));
        let pids: Vec<u32> = roles.iter().flat_map(|(_, p)| p.iter().copied()).collect();
        let (usages, idle_s) = measure(&pids, idle).await;
        let mut usages = usages.into_iter();
        let mut rows = Vec::new();
        for (role, pids) in &roles {
            let of_role: Vec<Usage> = usages.by_ref().take(pids.len()).flatten().collect();
            let mean = Usage::mean(&of_role);
            rows.push(RoleIdle {
                role: (*role).to_owned(),
                processes: of_role.len(),
                usage: mean,
            });
        }
        Ok::<_, anyhow::Error>(IdleReport {
            idle_s,
            target_cpu_pct: 0.03,
            target_anon_mib: 10.0,
            roles: rows,
        })
    });
    drop(control_cluster);
    drop(plain);
    let _ = std::fs::remove_dir_all(&base);
    report
}

/// Waits until every node of `cluster` (no heads) lists every one alive,
/// asking from an observer that is no member, then closes the observer.
async fn converge(cluster: &LocalCluster, deadline: Instant) -> Result<()> {
    use swarm_actors::cluster::{ClusterAgent, ListMembers, CLUSTER_ACTOR};
    let mut mesh = NodeFile::load(&cluster.driver_config())?.mesh_config()?;
    mesh.cluster = None;
    let observer = Node::start(mesh).await?;
    for node in &cluster.nodes {
        observer.connect(node.addr).await?;
    }
    let n = cluster.nodes.len();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    'poll: loop {
        tick.tick().await;
        for node in &cluster.nodes {
            let rows = observer
                .remote::<ClusterAgent>(node.id, CLUSTER_ACTOR)
                .send(ListMembers)
                .await
                .unwrap_or_default();
            if rows.iter().filter(|r| r.state == "alive").count() < n {
                if Instant::now() > deadline {
                    return Err(anyhow!("{n} nodes without heads did not converge"));
                }
                continue 'poll;
            }
        }
        break;
    }
    observer.close().await;
    Ok(())
}

/// The number after `name` on its line of a `/proc` file (`VmRSS:  123 kB`).
fn field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Name:\tswarm
VmRSS:\t   17856 kB
RssAnon:\t    1412 kB
RssFile:\t   16444 kB
Threads:\t2
voluntary_ctxt_switches:\t828
nonvoluntary_ctxt_switches:\t25
";

    #[test]
    fn proc_fields_are_read_by_their_whole_name() {
        assert_eq!(field(STATUS, "VmRSS:"), Some(17_856));
        assert_eq!(field(STATUS, "RssAnon:"), Some(1_412));
        assert_eq!(field(STATUS, "Threads:"), Some(2));
        assert_eq!(field(STATUS, "voluntary_ctxt_switches:"), Some(828));
        assert_eq!(field(STATUS, "nonvoluntary_ctxt_switches:"), Some(25));
        assert_eq!(field(STATUS, "Pss:"), None);
        assert_eq!(field("Pss:  x kB\n", "Pss:"), None);
    }

    #[test]
    fn a_process_costs_the_difference_between_two_samples_over_their_time() {
        let before = Sample {
            at: Instant::now(),
            cpu_ns: 1_000_000,
            switches: 10,
            rss_kib: 1024,
            anon_kib: 512,
            pss_kib: 600,
            threads: 1,
        };
        let after = Sample {
            at: before.at + Duration::from_secs(10),
            cpu_ns: 4_000_000,
            switches: 60,
            rss_kib: 2048,
            anon_kib: 1024,
            pss_kib: 1100,
            threads: 2,
        };
        let u = Usage::between(&before, &after);
        assert!(
            (u.cpu_pct - 0.03).abs() < 1e-9,
            "3 ms over 10 s: {}",
            u.cpu_pct
        );
        assert!((u.wakeups_per_s - 5.0).abs() < 1e-9);
        assert_eq!((u.rss_mib, u.anon_mib, u.threads), (2.0, 1.0, 2.0));
        let mean = Usage::mean(&[u, Usage::default()]);
        assert!((mean.cpu_pct - 0.015).abs() < 1e-9);
        assert_eq!(Usage::mean(&[]).cpu_pct, 0.0);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let sample = Sample::take(std::process::id()).expect("/proc of this process");
        assert!(sample.rss_kib > 0 && sample.threads >= 1 && sample.cpu_ns > 0);
    }
}
