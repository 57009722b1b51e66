//! `swarm bench membership --processes M`: real node processes on
//! 127.0.0.1 joined through one seed. Times convergence and the SIGKILL
//! of one, measures idle CPU and memory, and counts false downs and
//! rejoins over the whole run from each node's own counters (every member
//! it reported down, and every time it was declared down, since its
//! start), read over the mesh. The simulated run is `swarm_protocol`'s.

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
    /// idle, detection): every member a node reported down before the
    /// kill, and every one but the killed one after it. Read from each
    /// node's counters (`members_down`), as the simulator counts its
    /// nodes' down events.
    pub(crate) false_down: u64,
    /// Times a node was declared down and rejoined under a renewed
    /// identity, summed over the nodes, over the whole run.
    pub(crate) rejoins: u64,
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
    /// `swarm members --json` and `swarm tasks --json` against the seed,
    /// after the detection (one member down).
    pub(crate) views: Option<super::views::Views>,
    /// Why the views failed.
    pub(crate) views_error: Option<String>,
    /// `swarm console`'s refreshes against the first process.
    pub(crate) console: Option<super::views::ConsoleRun>,
    /// Why the console failed.
    pub(crate) console_error: Option<String>,
}

impl ProcessReport {
    /// The report as table lines.
    pub(crate) fn table(&self) -> String {
        let views = match (&self.views, &self.views_error) {
            (Some(v), _) => v.table(),
            (None, Some(e)) => format!("  views failed: {e}\n"),
            (None, None) => String::new(),
        };
        let console = match (&self.console, &self.console_error) {
            (Some(c), _) => c.table(),
            (None, Some(e)) => format!("  console failed: {e}\n"),
            (None, None) => String::new(),
        };
        views
            + &console
            + &format!(
            "membership, {} real processes on 127.0.0.1\n  converge_s                   {:.2}\n  \
             sigkill to down on all (s)   {:.2}  (bound {:.1})\n  \
             false_down                   {}  (rejoins {})\n  \
             idle CPU per node (% core)   {:.4}  (over {:.0} s)\n  \
             idle wake-ups per node (/s)  {:.1}\n  \
             idle RSS per node (MiB)      {:.1}  (RssAnon {:.2}, PSS {:.2})\n",
            self.processes,
            self.converge_s,
            self.detect_s,
            self.bound_s,
            self.false_down,
            self.rejoins,
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

/// A node's own counters: (members it reported down, its rejoins).
///
/// # Errors
///
/// If the node does not answer with its counters within a minute.
async fn verdicts(node: &Node, peer: swarm::NodeId) -> Result<(u64, u64)> {
    // A starved process may miss an ask's deadline: ask again for a while.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(c) = listed(node, peer).await.iter().find_map(|r| r.counters) {
            return Ok((c.members_down, c.rejoins));
        }
        if Instant::now() > deadline {
            return Err(anyhow!("node {peer} did not report its counters"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Dials every process, each again until `limit` passes: on an
/// overloaded box a starved process may miss one handshake's deadline.
///
/// # Errors
///
/// If a process does not answer within `limit`.
async fn connect_all(node: &Node, addrs: &[SocketAddr], limit: Duration) -> Result<()> {
    let started = Instant::now();
    for addr in addrs {
        loop {
            match node.connect(*addr).await {
                Ok(_) => break,
                Err(e) if started.elapsed() > limit => return Err(e.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    Ok(())
}

/// Starts `n` node processes from `exe` joined through one seed, with
/// `extra_args` (e.g. faster probe settings), times convergence, measures
/// the idle CPU and memory of the processes over `idle` with no link open
/// to them, then times SIGKILL detection from outside (asking each
/// process over the mesh) and counts false downs and rejoins from the
/// nodes' counters.
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
        connect_all(&node, &addrs, limit).await?;
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
        connect_all(&node, &addrs, limit).await?;
        // Every down so far is false: every process is alive.
        let mut false_down = 0;
        let mut rejoins = 0;
        let mut before = Vec::with_capacity(ids.len());
        for &id in &ids {
            let (down, rejoined) = verdicts(&node, id).await?;
            false_down += down;
            rejoins += rejoined;
            before.push((id, down, rejoined));
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
        // From the kill on, every down but the victim's (one per
        // survivor) is false.
        for (id, down, rejoined) in before.into_iter().filter(|(id, ..)| *id != victim.id) {
            let (now_down, now_rejoined) = verdicts(&node, id).await?;
            false_down += false_since_kill(down, now_down).ok_or_else(|| {
                anyhow!(
                    "{id} lists the killed node down but counts no down since the kill: \
                     false downs cannot be counted from the counters"
                )
            })?;
            rejoins += now_rejoined.saturating_sub(rejoined);
        }
        node.close().await;
        let seed = addrs.first().copied().ok_or_else(|| anyhow!("no processes"))?;
        let (views, views_error) = match super::views::run(exe, &cluster.driver_config(), seed) {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        // The console with the driver's node certificate (an operator
        // certificate needs a TOTP login, and there are no heads here).
        let (console, console_error) = match super::views::console(exe, &cluster.driver_config(), seed, 3) {
            Ok(c) => (Some(c), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        drop(cluster);
        Ok(ProcessReport {
            processes: n,
            converge_s,
            detect_s,
            bound_s: bound.as_secs_f64(),
            false_down,
            rejoins,
            idle_cpu_pct_per_node: idle_usage.cpu_pct,
            idle_s,
            idle_rss_mib: idle_usage.rss_mib,
            idle_anon_mib: idle_usage.anon_mib,
            idle_pss_mib: idle_usage.pss_mib,
            idle_wakeups_per_s: idle_usage.wakeups_per_s,
            views,
            views_error,
            console,
            console_error,
        })
    })
}

/// A survivor's false downs since the kill, from its down count before
/// the kill and after detection: all but the killed node's; `None` if it
/// counts none (it lists the killed node down, so it must count it).
fn false_since_kill(before: u64, after: u64) -> Option<u64> {
    after.checked_sub(before)?.checked_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downs_since_the_kill_are_false_but_the_victims() {
        assert_eq!(false_since_kill(4, 5), Some(0));
        assert_eq!(false_since_kill(4, 7), Some(2));
        assert_eq!(false_since_kill(4, 4), None);
    }
}
