//! `swarm bench membership --processes M`: real node processes on
//! 127.0.0.1 joined through one seed. Times convergence and the SIGKILL
//! of one, measures idle CPU and memory, and counts false downs over the
//! whole run from each node's own log (every member it declared down,
//! from its start). The simulated run is `swarm_protocol`'s.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use serde::Serialize;

use swarm::Node;

/// Real node processes on 127.0.0.1: how long they take to converge, and
/// how long from SIGKILL of one until every other lists it down.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ProcessReport {
    /// Node processes started.
    pub(crate) processes: usize,
    /// Seconds from the last READY until every process lists every other alive.
    pub(crate) converge_s: f64,
    /// Seconds from SIGKILL until every survivor lists the victim down.
    pub(crate) detect_s: f64,
    /// The documented bound for this size and these settings, seconds.
    pub(crate) bound_s: f64,
    /// Down verdicts about members that were alive, summed over the
    /// nodes that reached them, over the whole run (start, convergence,
    /// idle, detection): every member a node declared down before the
    /// kill, and every one but the killed one after it. Read from each
    /// node's log (its `member down` warnings), as the simulator counts
    /// its nodes' down events.
    pub(crate) false_down: usize,
    /// CPU of one idle node after convergence, percent of a core (from
    /// `/proc/PID/task/*/schedstat`, all threads, averaged over the processes), with no link
    /// open to it, measured from `idle / 3` after convergence for `idle`.
    pub(crate) idle_cpu_pct_per_node: f64,
    /// Seconds the idle CPU was measured over.
    pub(crate) idle_s: f64,
    /// Resident memory of one idle node, MiB (average).
    pub(crate) idle_rss_mib: f64,
    /// Its resident anonymous memory (`RssAnon`: the node's own; the
    /// shared code of the binary makes the rest of RSS), MiB (average).
    pub(crate) idle_anon_mib: f64,
    /// Its proportional set size (shared pages split among the processes
    /// of the binary), MiB (average).
    pub(crate) idle_pss_mib: f64,
    /// Its context switches per second, all threads (average).
    pub(crate) idle_wakeups_per_s: f64,
}

impl ProcessReport {
    /// The report as table lines.
    pub(crate) fn table(&self) -> String {
        format!(
            "membership, {} real processes on 127.0.0.1\n  converge_s                   {:.2}\n  \
             sigkill to down on all (s)   {:.2}  (bound {:.1})\n  \
             false_down                   {}\n  \
             idle CPU per node (% core)   {:.4}  (over {:.0} s)\n  \
             idle wake-ups per node (/s)  {:.1}\n  \
             idle RSS per node (MiB)      {:.1}  (RssAnon {:.2}, PSS {:.2})\n",
            self.processes,
            self.converge_s,
            self.detect_s,
            self.bound_s,
            self.false_down,
            self.idle_cpu_pct_per_node,
            self.idle_s,
            self.idle_wakeups_per_s,
            self.idle_rss_mib,
            self.idle_anon_mib,
            self.idle_pss_mib
        )
    }
}

/// What one node process lists.
async fn listed(node: &Node, peer: swarm::NodeId) -> Vec<swarm_actors::cluster::MemberRow> {
    use swarm_actors::cluster::{ClusterAgent, ListMembers, CLUSTER_ACTOR};
    node.remote::<ClusterAgent>(peer, CLUSTER_ACTOR)
        .send(ListMembers)
        .await
        .unwrap_or_default()
}

/// Starts `n` node processes from `exe` joined through one seed, with
/// `extra_args` (e.g. faster probe settings), times convergence, measures
/// the idle CPU and memory of the processes over `idle` with no link open
/// to them, then times SIGKILL detection from outside (asking each
/// process over the mesh) and counts false downs from the nodes' logs.
///
/// # Errors
///
/// If a process does not start, or convergence or detection takes longer
/// than `limit`.
pub(crate) fn processes(
    exe: &Path,
    n: usize,
    extra_args: &[&str],
    limit: Duration,
    idle: Duration,
) -> Result<ProcessReport> {
    let dir = std::env::temp_dir().join(format!("swarm-members-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut cluster =
        swarm_cli::local::LocalCluster::start_members_logged(exe, &dir, n, extra_args)?;
    cluster.remove_dir_on_drop(true);
    let started = Instant::now();
    let mut mesh = swarm::config::NodeFile::load(&cluster.driver_config())?.mesh_config()?;
    mesh.cluster = None;
    let ids: Vec<swarm::NodeId> = cluster.nodes.iter().map(|c| c.id).collect();
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|c| c.addr).collect();
    let bound = swarm_protocol::membership::MembershipConfig::default().detection_bound(n);
    actix::System::new().block_on(async move {
        let node = Node::start(mesh).await?;
        // The observer is not a member: it learns addresses by dialing.
        for addr in &addrs {
            node.connect(*addr).await?;
        }
        let all_alive = |rows: &[swarm_actors::cluster::MemberRow]| {
            rows.iter().filter(|r| r.state == "alive").count() >= n
        };
        loop {
            let mut done = true;
            for &id in &ids {
                if !all_alive(&listed(&node, id).await) {
                    done = false;
                    break;
                }
            }
            if done {
                break;
            }
            if started.elapsed() > limit {
                let mut counts = Vec::new();
                for &id in &ids {
                    let rows = listed(&node, id).await;
                    counts.push(rows.iter().filter(|r| r.state == "alive").count());
                }
                return Err(anyhow!(
                    "{n} processes did not converge within {limit:?}; members alive as listed by each: {counts:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let converge_s = started.elapsed().as_secs_f64();
        // Idle: close the observer's links (each node then runs membership
        // alone), let the goodbyes settle, and read /proc.
        node.close().await;
        let pids: Vec<u32> = cluster.nodes.iter().map(|c| c.child.id()).collect();
        // Let the join's updates finish spreading (a few gossip rounds per
        // decade of nodes) before measuring the steady state.
        let settle = Duration::from_millis(500).max(idle / 3);
        tokio::time::sleep(settle).await;
        let (usages, idle_s) = super::idle::measure(&pids, idle).await;
        let idle_usage = super::idle::Usage::mean(&usages.into_iter().flatten().collect::<Vec<_>>());
        // A new observer for the detection phase.
        let mut mesh = swarm::config::NodeFile::load(&cluster.driver_config())?.mesh_config()?;
        mesh.cluster = None;
        let node = Node::start(mesh).await?;
        for addr in &addrs {
            node.connect(*addr).await?;
        }
        // Every down so far is false: every process is alive.
        let mut false_down = 0;
        let mut read_to = Vec::with_capacity(cluster.nodes.len());
        for c in &cluster.nodes {
            let (log, end) = read_log(&cluster.log_path(&c.name), 0)?;
            false_down += downs_logged(&log).len();
            read_to.push((c.name.clone(), end));
        }
        let victim = cluster.kill(n / 2)?;
        let killed = Instant::now();
        let victim_id = victim.id.to_string();
        let survivors: Vec<swarm::NodeId> = cluster.nodes.iter().map(|c| c.id).collect();
        loop {
            let mut done = true;
            for &id in &survivors {
                let rows = listed(&node, id).await;
                if !rows.iter().any(|r| r.id == victim_id && r.state == "down") {
                    done = false;
                    break;
                }
            }
            if done {
                break;
            }
            if killed.elapsed() > limit {
                return Err(anyhow!(
                    "the killed process was not marked down within {limit:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let detect_s = killed.elapsed().as_secs_f64();
        // From the kill on, every down but the victim's is false.
        let victim_addr = victim.addr.to_string();
        for (name, from) in read_to.iter().filter(|(name, _)| *name != victim.name) {
            let path = cluster.log_path(name);
            let (log, _) = read_log(&path, *from)?;
            let (of_victim, of_others) = split_downs(&downs_logged(&log), &victim_addr);
            anyhow::ensure!(
                of_victim > 0,
                "{name} lists the killed node down, but its log {} has no \
                 \"member down ... addr={victim_addr}\" line: false downs cannot be \
                 counted from the logs (did that warning change?)",
                path.display()
            );
            false_down += of_others;
        }
        node.close().await;
        drop(cluster);
        Ok(ProcessReport {
            processes: n,
            converge_s,
            detect_s,
            bound_s: bound.as_secs_f64(),
            false_down,
            idle_cpu_pct_per_node: idle_usage.cpu_pct,
            idle_s,
            idle_rss_mib: idle_usage.rss_mib,
            idle_anon_mib: idle_usage.anon_mib,
            idle_pss_mib: idle_usage.pss_mib,
            idle_wakeups_per_s: idle_usage.wakeups_per_s,
        })
    })
}

/// A node's log from byte `from` to the end of its last complete line,
/// and where that is.
fn read_log(path: &Path, from: usize) -> Result<(String, usize)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("cannot read the node log {}: {e}", path.display()))?;
    let end = text.rfind('\n').map_or(0, |i| i + 1).max(from);
    Ok((text.get(from..end).unwrap_or_default().to_owned(), end))
}

/// The addresses of the members a node's log says it declared down, in
/// order: its `member down node=.. addr=..` warnings.
fn downs_logged(log: &str) -> Vec<&str> {
    log.lines()
        .filter_map(|line| {
            line.split_once(": member down ")?
                .1
                .split_whitespace()
                .find_map(|field| field.strip_prefix("addr="))
        })
        .collect()
}

/// Downs logged after the kill: (of the killed member, of the others).
fn split_downs(downs: &[&str], victim: &str) -> (usize, usize) {
    let of_victim = downs.iter().filter(|&&addr| addr == victim).count();
    (of_victim, downs.len() - of_victim)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
2026-12-07T07:00:00.000001Z  WARN swarm_actors::cluster::gossip: member down node=0a1b2c3d addr=127.0.0.1:4001
2026-12-07T07:00:00.000002Z  WARN swarm_actors::mesh: link failed peer=127.0.0.1:4002
2026-12-07T07:00:01.000000Z  INFO swarm_actors::cluster::gossip: member up node=0a1b2c3d addr=127.0.0.1:4001
2026-12-07T07:00:02.000000Z  WARN swarm_actors::cluster::gossip: member down node=5e6f7a8b addr=127.0.0.1:4003
";

    #[test]
    fn downs_are_read_from_member_down_warnings_only() {
        assert_eq!(downs_logged(LOG), ["127.0.0.1:4001", "127.0.0.1:4003"]);
        assert!(downs_logged("").is_empty());
    }

    #[test]
    fn downs_after_the_kill_split_into_the_victims_and_false_ones() {
        let downs = ["127.0.0.1:4003", "127.0.0.1:4001", "127.0.0.1:4003"];
        assert_eq!(split_downs(&downs, "127.0.0.1:4003"), (2, 1));
        assert_eq!(split_downs(&[], "127.0.0.1:4003"), (0, 0));
    }

    #[test]
    fn a_log_is_read_on_from_where_the_last_read_ended_in_whole_lines() {
        let path = std::env::temp_dir().join(format!("swarm-bench-log-{}", std::process::id()));
        let first = "a: member down addr=127.0.0.1:1\n";
        std::fs::write(
            &path,
            format!("{first}b: member down addr=127.0.0.1:2\npartial"),
        )
        .unwrap();
        let (all, end) = read_log(&path, 0).unwrap();
        assert_eq!(downs_logged(&all), ["127.0.0.1:1", "127.0.0.1:2"]);
        let (again, same) = read_log(&path, end).unwrap();
        assert_eq!((again.as_str(), same), ("", end));
        let (tail, _) = read_log(&path, first.len()).unwrap();
        assert_eq!(downs_logged(&tail), ["127.0.0.1:2"]);
        let _ = std::fs::remove_file(&path);
    }
}
