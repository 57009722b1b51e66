//! `swarm bench control`: a local cluster of 3 head and 3 worker processes
//! of this binary, driven by an in-process operator node. Measures named
//! actor spawns per second, lookups (one at a time, interleaved with asks
//! to an exposed actor on the head leader's process, which answers them;
//! and 64 in flight, beside asks to an exposed actor measured the same way),
//! Raft writes, asks to a placed actor beside asks to an exposed one (same
//! worker, same run), crash failover
//! (SIGKILL of the process running a named actor to its next answer),
//! leader failover (SIGKILL of the head leader to the next acknowledged
//! write), and partition failover ([`partition`]: the worker running a
//! named actor cut off, to the new incarnation's first answer through a
//! default `Named` handle) on a cluster of its own.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;
use swarm::config::NodeFile;
use swarm::control::{Control, Named, Spawn};
use swarm::placement::Placement;
use swarm::Node;
use swarm_cli::demo::{Add, Adder, Deposit, Ledger, LedgerArgs};
use swarm_cli::local::{ChildNode, LocalCluster};

use super::operator::admin;
use super::partition;

/// What `swarm bench control` prints.
#[derive(Debug, Serialize)]
pub(crate) struct ControlReport {
    pub(crate) heads: usize,
    pub(crate) workers: usize,
    pub(crate) spawns: usize,
    pub(crate) spawn_per_s: f64,
    /// A lookup (`Resolve`), one at a time: an ask to the head leader.
    pub(crate) lookup_us_p50: f64,
    /// An ask to an exposed actor on the head leader's process,
    /// interleaved with the lookups: their baseline.
    pub(crate) leader_ask_rtt_p50_us: f64,
    /// `lookup_us_p50` over `leader_ask_rtt_p50_us` (same run).
    pub(crate) lookup_vs_leader_ask: f64,
    pub(crate) lookups_per_s: f64,
    /// Asks to the exposed actor per second, 64 in flight: the baseline
    /// of `lookups_per_s`.
    pub(crate) exposed_asks_per_s: f64,
    /// `lookups_per_s` over `exposed_asks_per_s` (same run).
    pub(crate) lookups_vs_exposed_rate: f64,
    pub(crate) raft_commit_us_p50: f64,
    pub(crate) raft_writes_per_s: f64,
    pub(crate) ask_rtt_p50_us: f64,
    pub(crate) exposed_ask_rtt_p50_us: f64,
    pub(crate) placed_vs_exposed: f64,
    pub(crate) failover_runs: usize,
    pub(crate) failover_crash_s_p50: f64,
    pub(crate) failover_crash_s_max: f64,
    pub(crate) failover_partition_runs: usize,
    pub(crate) failover_partition_s_p50: f64,
    pub(crate) failover_partition_s_max: f64,
    /// Where the partition runs cut: namespaces, or the fault transport.
    pub(crate) failover_partition_how: String,
    /// `lease × 1.1 + 1 s` with the default 3 s lease.
    pub(crate) failover_partition_target_s: f64,
    pub(crate) leader_failover_s: f64,
}

impl ControlReport {
    pub(crate) fn table(&self) -> String {
        format!(
            "control plane: {} heads, {} workers (processes of this binary)\n\
             spawn_per_s              {:>10.0}   ({} named actors placed and started, 64 in flight)\n\
             lookup_us_p50            {:>10.1}   (Resolve, one at a time: an ask to the head leader)\n\
             leader_ask_rtt_p50_us    {:>10.1}   (an exposed actor on the leader's process, interleaved)\n\
             lookup_vs_leader_ask     {:>10.2}x\n\
             lookups_per_s            {:>10.0}   (Resolve, 64 in flight)\n\
             exposed_asks_per_s       {:>10.0}   (asks to the exposed actor, 64 in flight, same run)\n\
             lookups_vs_exposed_rate  {:>10.2}x\n\
             raft_commit_us_p50       {:>10.1}   (client -> leader -> quorum fsync -> client)\n\
             raft_writes_per_s        {:>10.0}   (64 in flight)\n\
             ask_rtt_p50_us           {:>10.1}   (a placed actor, through its Named handle)\n\
             exposed_ask_rtt_p50_us   {:>10.1}   (an exposed actor on the same worker, same run)\n\
             placed_vs_exposed        {:>10.2}x\n\
             failover_crash_s_p50     {:>10.3}   (SIGKILL to the next answer, {} runs)\n\
             failover_crash_s_max     {:>10.3}\n\
             failover_partition_s_p50 {:>10.3}   (a worker cut off, not killed, to the new incarnation's first answer through a default Named handle, {} runs)\n\
             failover_partition_s_max {:>10.3}   (target lease x 1.1 + 1 s = {:.1}; {})\n\
             leader_failover_s        {:>10.3}   (SIGKILL of the leader to the next acknowledged write)\n",
            self.heads,
            self.workers,
            self.spawn_per_s,
            self.spawns,
            self.lookup_us_p50,
            self.leader_ask_rtt_p50_us,
            self.lookup_vs_leader_ask,
            self.lookups_per_s,
            self.exposed_asks_per_s,
            self.lookups_vs_exposed_rate,
            self.raft_commit_us_p50,
            self.raft_writes_per_s,
            self.ask_rtt_p50_us,
            self.exposed_ask_rtt_p50_us,
            self.placed_vs_exposed,
            self.failover_crash_s_p50,
            self.failover_runs,
            self.failover_crash_s_max,
            self.failover_partition_s_p50,
            self.failover_partition_runs,
            self.failover_partition_s_max,
            self.failover_partition_target_s,
            self.failover_partition_how,
            self.leader_failover_s,
        )
    }
}

fn p50(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Runs the benchmark: `spawns` named actors, `runs` crash failovers,
/// `partition_runs` partition failovers.
pub(crate) fn run(
    exe: &Path,
    spawns: usize,
    runs: usize,
    partition_runs: usize,
) -> Result<ControlReport> {
    let dir = std::env::temp_dir().join(format!("swarm-bench-control-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cluster = LocalCluster::start_control(exe, &dir, 3, 3, &["--workload", "demo"])
        .context("cannot start the local cluster")?;
    cluster.remove_dir_on_drop(true);
    let mut report = actix::System::new().block_on(async move {
        let (driver, control) = driver(&cluster.driver_config()).await?;
        let ledger = ready(&control).await?;

        let spawn_per_s = spawn_rate(&control, spawns).await?;
        // As the admin operator: the driver's node certificate may not
        // release groups, and a refusal is answered before Raft.
        let (admin, admin_control) = admin(&cluster).await?;
        let raft_writes_per_s = write_rate(&admin_control, spawns).await?;
        let (lookup_us_p50, leader_ask_rtt_p50_us) = lookups(&driver, &control, spawns).await?;
        let mut writes = Vec::new();
        for _ in 0..500 {
            let t = Instant::now();
            release_nothing(&admin_control).await?;
            writes.push(micros(t.elapsed()));
        }
        admin.shutdown();
        let (placed, exposed) = asks(&driver, &ledger).await?;
        let (lookups_per_s, exposed_asks_per_s) =
            concurrent_lookups(&driver, &control, &ledger, spawns).await?;

        let mut crashes = Vec::new();
        for _ in 0..runs {
            crashes.push(crash_failover(&mut cluster, &ledger).await?);
        }
        let leader_failover_s = leader_failover(&mut cluster, &control).await?;
        driver.shutdown();
        crashes.sort_by(f64::total_cmp);
        Ok::<_, anyhow::Error>(ControlReport {
            heads: 3,
            workers: 3,
            spawns,
            spawn_per_s,
            lookup_us_p50,
            leader_ask_rtt_p50_us,
            lookup_vs_leader_ask: lookup_us_p50 / leader_ask_rtt_p50_us,
            lookups_per_s,
            exposed_asks_per_s,
            lookups_vs_exposed_rate: lookups_per_s / exposed_asks_per_s,
            raft_commit_us_p50: p50(writes),
            raft_writes_per_s,
            ask_rtt_p50_us: placed,
            exposed_ask_rtt_p50_us: exposed,
            placed_vs_exposed: placed / exposed,
            failover_runs: crashes.len(),
            failover_crash_s_p50: crashes.get(crashes.len() / 2).copied().unwrap_or(f64::NAN),
            failover_crash_s_max: crashes.last().copied().unwrap_or(f64::NAN),
            failover_partition_runs: 0,
            failover_partition_s_p50: f64::NAN,
            failover_partition_s_max: f64::NAN,
            failover_partition_how: String::new(),
            failover_partition_target_s: 3.0 * 1.1 + 1.0,
            leader_failover_s,
        })
    })?;
    // On a cluster of its own, once the first one is gone.
    let partition = partition::run(exe, partition_runs)?;
    report.failover_partition_runs = partition.runs.len();
    report.failover_partition_s_p50 = p50(partition.runs.clone());
    report.failover_partition_s_max = partition.runs.last().copied().unwrap_or(f64::NAN);
    report.failover_partition_how = partition.how;
    Ok(report)
}

/// A ledger named `name` that only a worker may run.
pub(super) fn on_workers(name: &str) -> Spawn<Ledger> {
    Spawn::<Ledger>::named(name)
        .args(LedgerArgs { opening: 0 })
        .placement(Placement::Label {
            label: "worker".to_owned(),
            hard: true,
        })
}

/// A bench's driver: a node started from the cluster's driver
/// configuration on a free port, and its control-plane client.
pub(super) async fn driver(config: &Path) -> Result<(Node, Control)> {
    let mut mesh = NodeFile::load(config)?.mesh_config()?;
    mesh.listen = "127.0.0.1:0".parse()?;
    let driver = Node::start(mesh).await?;
    let control = driver
        .control()
        .context("the driver has membership")?
        .clone();
    Ok((driver, control))
}

/// The ledger the asks and failovers use, once the cluster places it.
pub(super) async fn ready(control: &Control) -> Result<Named<Ledger>> {
    placed(control, "ledger", Instant::now() + Duration::from_secs(60)).await
}

/// A ledger named `name` on a worker, spawned again until the control
/// plane places it or `deadline` passes.
pub(super) async fn placed(
    control: &Control,
    name: &str,
    deadline: Instant,
) -> Result<Named<Ledger>> {
    loop {
        match control.spawn(on_workers(name)).await {
            Ok(named) => return Ok(named),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "the control plane is not ready yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).context("the control plane never placed an actor"),
        }
    }
}

/// Named actors placed and started per second, 64 spawns in flight.
async fn spawn_rate(control: &Control, spawns: usize) -> Result<f64> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let lanes = 64.min(spawns.max(1));
    for lane in 0..lanes {
        let control = control.clone();
        tasks.spawn_local(async move {
            let mut i = lane;
            while i < spawns {
                control.spawn(on_workers(&format!("b{i}"))).await?;
                i += lanes;
            }
            Ok::<_, swarm::control::ControlError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a spawn task panicked")??;
    }
    Ok(spawns as f64 / started.elapsed().as_secs_f64())
}

/// Raft writes per second (a write that changes nothing), 64 in flight.
async fn write_rate(control: &Control, writes: usize) -> Result<f64> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let lanes = 64.min(writes.max(1));
    for lane in 0..lanes {
        let control = control.clone();
        tasks.spawn_local(async move {
            let mut i = lane;
            while i < writes {
                release_nothing(&control).await?;
                i += lanes;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(lane) = tasks.join_next().await {
        lane??;
    }
    Ok(writes as f64 / started.elapsed().as_secs_f64())
}

/// Releases a group that does not exist: a Raft write (committed, then
/// answered unknown) that changes nothing. Any other answer (a refusal
/// before Raft, say) fails the bench rather than timing the wrong thing.
pub(super) async fn release_nothing(control: &Control) -> Result<()> {
    match control.release_group("bench-none").await {
        Err(swarm::control::ControlError::NoSuchName { .. }) => Ok(()),
        other => bail!("a release of no group answered {other:?}"),
    }
}

/// The p50 of lookups (`Resolve`, one at a time, of the names placed for
/// the spawn rate) and of asks to the exposed `adder` on the head
/// leader's process, interleaved. A lookup is an ask to the leader,
/// answered from its state machine (at once within its read lease, after
/// a quorum round otherwise), so the ask is its floor.
async fn lookups(driver: &Node, control: &Control, spawns: usize) -> Result<(f64, f64)> {
    control.resolve("b0").await?;
    let adder = driver.remote::<Adder>(leader(control).await?, "adder");
    adder.send(Add { a: 1, b: 1 }).await?;
    let (mut lookups, mut asks) = (Vec::new(), Vec::new());
    for i in 0..1_000 {
        let name = format!("b{}", i % spawns.max(1));
        let t = Instant::now();
        control.resolve(&name).await?;
        lookups.push(micros(t.elapsed()));
        let t = Instant::now();
        adder.send(Add { a: 1, b: 1 }).await?;
        asks.push(micros(t.elapsed()));
    }
    Ok((p50(lookups), p50(asks)))
}

/// The head leader, as the heads say.
pub(super) async fn leader(control: &Control) -> Result<swarm::NodeId> {
    control
        .head_status()
        .await
        .into_iter()
        .find_map(|(node, row)| row.ok().filter(|r| r.role == "leader").map(|_| node))
        .context("no head leader")
}

/// The p50 round trip of asks to the placed ledger, and to the exposed
/// `adder` on the same worker, interleaved.
async fn asks(driver: &Node, ledger: &Named<Ledger>) -> Result<(f64, f64)> {
    let at = ledger.send(Deposit(0)).await?.node;
    let adder = driver.remote::<Adder>(at, "adder");
    adder.send(Add { a: 1, b: 1 }).await?;
    let (mut placed, mut exposed) = (Vec::new(), Vec::new());
    for _ in 0..2_000 {
        let t = Instant::now();
        ledger.send(Deposit(0)).await?; // a read: no journal write
        placed.push(micros(t.elapsed()));
        let t = Instant::now();
        adder.send(Add { a: 1, b: 1 }).await?;
        exposed.push(micros(t.elapsed()));
    }
    Ok((p50(placed), p50(exposed)))
}

/// Resolves per second with 64 in flight (the names placed for the spawn
/// rate), then asks per second to the exposed `adder` on the ledger's
/// worker with 64 in flight: the same load shape through a plain ask.
async fn concurrent_lookups(
    driver: &Node,
    control: &Control,
    ledger: &Named<Ledger>,
    spawns: usize,
) -> Result<(f64, f64)> {
    const LANES: usize = 64;
    const EACH: usize = 100;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..LANES {
        let control = control.clone();
        tasks.spawn_local(async move {
            for i in 0..EACH {
                let name = format!("b{}", (lane * EACH + i) % spawns.max(1));
                control.resolve(&name).await?;
            }
            Ok::<_, swarm::control::ControlError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a lookup task panicked")??;
    }
    let lookups = (LANES * EACH) as f64 / started.elapsed().as_secs_f64();
    let at = ledger.send(Deposit(0)).await?.node;
    let adder = driver.remote::<Adder>(at, "adder");
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..LANES {
        let adder = adder.clone();
        tasks.spawn_local(async move {
            for _ in 0..EACH {
                adder.send(Add { a: 1, b: 1 }).await?;
            }
            Ok::<_, swarm::AskError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("an ask task panicked")?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let asks = (LANES * EACH) as f64 / started.elapsed().as_secs_f64();
    Ok((lookups, asks))
}

/// SIGKILL the ledger's process; seconds until it answers again. The
/// process is started again afterwards.
pub(super) async fn crash_failover(
    cluster: &mut LocalCluster,
    ledger: &Named<Ledger>,
) -> Result<f64> {
    let at = ledger.send(Deposit(0)).await?.node;
    let i = cluster
        .nodes
        .iter()
        .position(|n| n.id == at)
        .context("the ledger runs outside the cluster")?;
    let killed_at = Instant::now();
    let killed = cluster.kill(i)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if ledger.send(Deposit(0)).await.is_ok() {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!("the ledger did not answer within 30 s of the kill");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = killed_at.elapsed().as_secs_f64();
    cluster.restart(&killed)?;
    Ok(took)
}

/// SIGKILL the head leader; seconds until a write is acknowledged again.
async fn leader_failover(cluster: &mut LocalCluster, control: &Control) -> Result<f64> {
    let leader = leader(control).await?;
    let i = cluster
        .nodes
        .iter()
        .position(|n| n.id == leader)
        .context("the leader is not a cluster process")?;
    let killed_at = Instant::now();
    let killed = cluster.kill(i)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        n += 1;
        let error = match control.spawn(on_workers(&format!("after-{n}"))).await {
            Ok(_) => return Ok(killed_at.elapsed().as_secs_f64()),
            Err(e) => e,
        };
        if Instant::now() > deadline {
            let heads = heads_now(cluster, &killed, control).await;
            anyhow::bail!(
                "no write was acknowledged within 30 s of the SIGKILL of the head leader {} \
                 (the last spawn: {error}); the heads now:\n{heads}\n\
                 (a live head far behind the leader is one its AppendEntries do not reach or \
                 are not answered in time: the heads' warnings above say which)",
                killed.name
            );
        }
    }
}

/// Each head's view of the group, one line each, by process name: the
/// role, term, log and how far the leader's followers lag.
async fn heads_now(cluster: &LocalCluster, killed: &ChildNode, control: &Control) -> String {
    let name = |id: swarm::NodeId| {
        if id == killed.id {
            return format!("{} (killed)", killed.name);
        }
        cluster
            .nodes
            .iter()
            .find(|n| n.id == id)
            .map_or_else(|| id.to_string(), |n| n.name.clone())
    };
    let mut lines = Vec::new();
    for (node, row) in control.head_status().await {
        lines.push(match row {
            Ok(row) => {
                let lag: Vec<String> = row
                    .lag
                    .iter()
                    .map(|(follower, entries)| format!("{} {entries}", name(*follower)))
                    .collect();
                format!(
                    "  {}: {}, term {}, last log {}, applied {}{}",
                    name(node),
                    row.role,
                    row.term,
                    row.last_log,
                    row.applied,
                    if lag.is_empty() {
                        String::new()
                    } else {
                        format!(", followers behind by (entries): {}", lag.join(", "))
                    }
                )
            }
            Err(e) => format!("  {}: {e}", name(node)),
        });
    }
    lines.join("\n")
}
