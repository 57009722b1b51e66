//! `swarm bench control --actors N`: the control plane at scale. First the
//! head's state machine in this process with N placed actors (bytes of
//! heap per actor, snapshot write, install on a follower, reopen); then a
//! local cluster of 3 head and 3 worker processes with `--view-actors M`
//! named actors placed and started: each head's anonymous RSS per actor,
//! the wall time of `swarm actors --json` (a child process of this binary,
//! and of `--baseline-exe` in the same sitting if given), and how long a
//! follower head that missed a snapshot's worth of placements takes to
//! catch up once started again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde::Serialize;
use swarm::control::Control;
use swarm_actors::head_scale::{self, HeadScale};
use swarm_cli::local::LocalCluster;

use super::control::{driver, on_workers, ready};

/// What `swarm bench control --actors` prints.
#[derive(Debug, Serialize)]
pub(crate) struct ActorsReport {
    /// The head's state machine in this process.
    pub(crate) head: HeadScale,
    /// The cluster part (none with `--view-actors 0`, or when it failed).
    pub(crate) cluster: Option<ViewReport>,
    /// Why the cluster part failed.
    pub(crate) cluster_error: Option<String>,
}

/// The cluster part of the report.
#[derive(Debug, Serialize)]
pub(crate) struct ViewReport {
    /// Named actors placed and started (plus the bench's ledger).
    pub(crate) actors: usize,
    pub(crate) spawn_per_s: f64,
    /// The head leader process's anonymous RSS growth per placed actor.
    pub(crate) leader_bytes_per_actor: Option<f64>,
    /// The same for each follower head.
    pub(crate) follower_bytes_per_actor: Vec<f64>,
    /// `swarm actors --json`, wall time of the child process.
    pub(crate) actors_json_s: f64,
    /// Rows it printed, and how many of them were running.
    pub(crate) rows: usize,
    pub(crate) running: usize,
    /// The same command by `--baseline-exe`, same cluster, same sitting.
    pub(crate) baseline_actors_json_s: Option<f64>,
    /// A follower head killed, [`BEHIND`] more actors placed without it
    /// (the leader snapshots and purges its log meanwhile), then started
    /// again: seconds from its start until it applied all the leader had
    /// (its start, its own snapshot read back, the leader's snapshot sent
    /// and installed, the rest of the log).
    pub(crate) follower_catch_up_s: Option<f64>,
    /// Why the catch-up part failed.
    pub(crate) catch_up_error: Option<String>,
}

/// Actors placed while a follower head is down: more than the leader's
/// snapshot interval (10,000 entries), so it must send a snapshot.
const BEHIND: usize = 20_000;

impl ActorsReport {
    pub(crate) fn table(&self) -> String {
        let mut out = self.head.table();
        if let Some(c) = &self.cluster {
            let per_actor = c
                .leader_bytes_per_actor
                .map_or_else(|| "-".to_owned(), |b| format!("{b:.0}"));
            out.push_str(&format!(
                "\ncluster: 3 heads, 3 workers (processes of this binary), {} named actors\n\
                 spawn_per_s              {:>10.0}   (placed and started, 16 in flight, refused ones tried again)\n\
                 leader_bytes_per_actor   {:>10}   (the head leader's anonymous RSS growth per actor)\n\
                 follower_bytes_per_actor {:>10}   (each follower head's)\n\
                 actors_json_s            {:>10.3}   (swarm actors --json: {} rows, {} running)\n",
                c.actors,
                c.spawn_per_s,
                per_actor,
                c.follower_bytes_per_actor
                    .iter()
                    .map(|b| format!("{b:.0}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                c.actors_json_s,
                c.rows,
                c.running,
            ));
            if let Some(b) = c.baseline_actors_json_s {
                out.push_str(&format!(
                    "baseline_actors_json_s   {b:>10.3}   (--baseline-exe, same cluster)\n"
                ));
            }
            if let Some(s) = c.follower_catch_up_s {
                out.push_str(&format!(
                    "follower_catch_up_s      {s:>10.3}   (a follower head down for {BEHIND} placements, from its restart to applied)\n"
                ));
            }
            if let Some(e) = &c.catch_up_error {
                out.push_str(&format!("follower catch-up failed: {e}\n"));
            }
        }
        if let Some(e) = &self.cluster_error {
            out.push_str(&format!("\ncluster part failed: {e}\n"));
        }
        out
    }
}

/// Runs both parts: `actors` in the head's state machine, `view_actors` on
/// the cluster (skipped when 0).
pub(crate) fn run(
    exe: &Path,
    actors: usize,
    view_actors: usize,
    baseline: Option<PathBuf>,
) -> Result<ActorsReport> {
    let dir = std::env::temp_dir().join(format!("swarm-bench-actors-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let head = actix::System::new()
        .block_on(head_scale::measure(actors, 1_000, &dir.join("head")))
        .context("the head's state machine")?;
    let _ = std::fs::remove_dir_all(&dir);
    let (cluster, cluster_error) = if view_actors == 0 {
        (None, None)
    } else {
        // Said now: the cluster part takes minutes, and may fail.
        eprint!("{}", head.table());
        match cluster(exe, view_actors, baseline.as_deref(), &dir) {
            Ok(c) => (Some(c), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ActorsReport {
        head,
        cluster,
        cluster_error,
    })
}

fn cluster(exe: &Path, actors: usize, baseline: Option<&Path>, dir: &Path) -> Result<ViewReport> {
    let mut cluster = LocalCluster::start_control(exe, dir, 3, 3, &["--workload", "demo"])
        .context("cannot start the local cluster")?;
    cluster.remove_dir_on_drop(true);
    let driver_config = cluster.driver_config();
    let seed = cluster.nodes.first().context("no nodes")?.addr;
    let pids: Vec<(swarm::NodeId, u32)> =
        cluster.nodes.iter().map(|n| (n.id, n.child.id())).collect();
    let (spawn_per_s, heads) = actix::System::new().block_on(async move {
        let (driver, control) = driver(&driver_config).await?;
        ready(&control).await?;
        let before: Vec<(u32, Option<u64>)> =
            pids.iter().map(|(_, p)| (*p, rss_anon(*p))).collect();
        let spawn_per_s = spawn_all(&control, 0, actors).await?;
        let roles = roles(&control).await;
        driver.shutdown();
        let heads: Vec<(String, f64)> = pids
            .iter()
            .zip(before)
            .filter_map(|((id, pid), (_, before))| {
                let role = roles.iter().find(|(n, _)| n == id)?.1.clone();
                let grown = rss_anon(*pid)?.saturating_sub(before?);
                Some((role, grown as f64 / actors as f64))
            })
            .collect();
        Ok::<_, anyhow::Error>((spawn_per_s, heads))
    })?;
    let leader_bytes_per_actor = heads.iter().find(|(r, _)| r == "leader").map(|h| h.1);
    let follower_bytes_per_actor = heads
        .iter()
        .filter(|(r, _)| r == "follower")
        .map(|h| h.1)
        .collect();
    let config = cluster.driver_config();
    let (actors_json_s, rows, running) = actors_json(exe, &config, seed)?;
    let baseline_actors_json_s = match baseline {
        Some(b) => Some(actors_json(b, &config, seed)?.0),
        None => None,
    };
    let (follower_catch_up_s, catch_up_error) = match catch_up(&mut cluster, actors) {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    Ok(ViewReport {
        actors,
        spawn_per_s,
        leader_bytes_per_actor,
        follower_bytes_per_actor,
        actors_json_s,
        rows,
        running,
        baseline_actors_json_s,
        follower_catch_up_s,
        catch_up_error,
    })
}

/// Kills a follower head, places [`BEHIND`] more actors (named from
/// `placed`), starts it again and answers the seconds until it applied
/// what the leader had applied when it started.
fn catch_up(cluster: &mut LocalCluster, placed: usize) -> Result<f64> {
    let driver_config = cluster.driver_config();
    actix::System::new().block_on(async {
        let (driver, control) = driver(&driver_config).await?;
        // A head may not answer, or the heads may be electing, right after
        // the listing loaded the leader: ask again for up to a minute.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let follower = loop {
            tick.tick().await;
            let found = roles(&control)
                .await
                .into_iter()
                .find(|(_, r)| r == "follower");
            if let Some((id, _)) = found {
                break id;
            }
            anyhow::ensure!(Instant::now() < deadline, "no follower head in 60 s");
        };
        let i = cluster
            .nodes
            .iter()
            .position(|n| n.id == follower)
            .context("the follower is not in the cluster")?;
        let killed = cluster.kill(i)?;
        spawn_all(&control, placed, BEHIND).await?;
        let target = applied(&control, None).await.context("no leader answers")?;
        let started = Instant::now();
        cluster.restart(&killed)?;
        let deadline = started + Duration::from_secs(600);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tick.tick().await;
            if applied(&control, Some(follower)).await >= Some(target) {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the follower did not catch up in 600 s"
            );
        }
        let took = started.elapsed().as_secs_f64();
        driver.shutdown();
        Ok(took)
    })
}

/// Each head's role, as it says.
async fn roles(control: &Control) -> Vec<(swarm::NodeId, String)> {
    control
        .head_status()
        .await
        .into_iter()
        .filter_map(|(node, row)| row.ok().map(|r| (node, r.role)))
        .collect()
}

/// The last index `head` applied (`None`: the leader), if it answers.
async fn applied(control: &Control, head: Option<swarm::NodeId>) -> Option<u64> {
    control
        .head_status()
        .await
        .into_iter()
        .filter_map(|(node, row)| row.ok().map(|r| (node, r)))
        .find(|(node, r)| head.map_or(r.role == "leader", |h| *node == h))
        .map(|(_, r)| r.applied)
}

/// Places and starts `actors` ledgers on the workers, 16 in flight; a
/// refused spawn (a loaded machine: a lease ran out, a leader changed) is
/// tried again (`get_if_exists`: one that committed counts) until 30
/// minutes have passed. Answers spawns per second.
async fn spawn_all(control: &Control, first: usize, actors: usize) -> Result<f64> {
    const LANES: usize = 16;
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1_800);
    let mut lanes = tokio::task::JoinSet::new();
    for lane in 0..LANES.min(actors.max(1)) {
        let control = control.clone();
        lanes.spawn_local(async move {
            for i in (first + lane..first + actors).step_by(LANES) {
                loop {
                    let spawn = on_workers(&format!("b{i}")).get_if_exists();
                    match control.spawn(spawn).await {
                        Ok(_) => break,
                        Err(e) if tokio::time::Instant::now() > deadline => return Err(e),
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            }
            Ok::<_, swarm::control::ControlError>(())
        });
    }
    while let Some(done) = lanes.join_next().await {
        done.context("a spawn lane panicked")??;
    }
    Ok(actors as f64 / started.elapsed().as_secs_f64())
}

/// Runs `exe actors --json` against the cluster: wall seconds, rows, and
/// rows running.
fn actors_json(
    exe: &Path,
    config: &Path,
    seed: std::net::SocketAddr,
) -> Result<(f64, usize, usize)> {
    let started = Instant::now();
    let out = Command::new(exe)
        .arg("actors")
        .arg("--config")
        .arg(config)
        .args(["--node", &seed.to_string(), "--json"])
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    let took = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "{} actors --json failed: {}",
        exe.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).context("swarm actors --json printed no JSON list")?;
    let running = rows.iter().filter(|r| r["state"] == "running").count();
    Ok((took, rows.len(), running))
}

/// A process's anonymous resident memory (`RssAnon`), bytes.
fn rss_anon(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}
