//! `swarm bench tasks`: two worker processes of this binary (2 CPUs each)
//! and an in-process driver that offers no CPUs, plus a lone in-process
//! node for the local rate. Measures empty tasks per second (local, and
//! from the driver to the 2 workers under each policy), the sync task
//! round trip beside an ask to an actor on the same worker (same run), a
//! batch of CPU-bound tasks (a fixed amount of work, about 1 ms of one
//! core each, timed on one core in the same run) under each policy, the
//! retry after a SIGKILL, and a 64 MiB kept result consumed on the other
//! worker (in MB/s, 10^6 bytes).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde::Serialize;
use swarm::config::NodeFile;
use swarm::credentials::Throwaway;
use swarm::placement::Placement;
use swarm::tasks::Tasks;
use swarm::{ClusterConfig, MeshConfig, Node, NodeId, ResourceOverrides};
use swarm_cli::demo::tasks::{blob, churn, churn_rounds, noop, size_of, square, stall};
use swarm_cli::demo::{Add, Adder};
use swarm_cli::local::LocalCluster;

/// What `swarm bench tasks` prints.
#[derive(Debug, Serialize)]
pub(crate) struct TasksReport {
    pub(crate) tasks: usize,
    pub(crate) tasks_per_s_local: f64,
    pub(crate) tasks_per_s_2nodes: f64,
    pub(crate) tasks_per_s_2nodes_spread: f64,
    pub(crate) tasks_per_s_2nodes_pack: f64,
    pub(crate) task_rtt_p50_us: f64,
    pub(crate) ask_rtt_p50_us: f64,
    pub(crate) task_vs_ask: f64,
    /// CPU-bound tasks per batch.
    pub(crate) cpu_tasks: usize,
    /// Rounds of `churn_rounds` each runs: a fixed amount of work.
    pub(crate) cpu_task_rounds: u64,
    /// That work on one core of the driver, milliseconds (best of 20).
    pub(crate) cpu_task_ms: f64,
    /// `cpu_tasks` × `cpu_task_ms`: the whole batch on one core, seconds.
    pub(crate) cpu_tasks_one_core_s: f64,
    /// Seconds to finish the batch, per policy.
    pub(crate) cpu_tasks_s_hybrid: f64,
    pub(crate) cpu_tasks_s_spread: f64,
    pub(crate) cpu_tasks_s_pack: f64,
    pub(crate) retry_after_kill_s: f64,
    /// The kept result's size, MiB (2^20 bytes).
    pub(crate) ref_mib: u64,
    /// Its transfer, MB (10^6 bytes) per second.
    pub(crate) ref_pass_mb_per_s: f64,
}

impl TasksReport {
    pub(crate) fn table(&self) -> String {
        format!(
            "tasks: 2 worker processes (2 CPUs each), a driver with no CPUs\n\
             tasks_per_s_local          {:>10.0}   ({} empty tasks on one node)\n\
             tasks_per_s_2nodes         {:>10.0}   (hybrid policy, the default)\n\
             tasks_per_s_2nodes_spread  {:>10.0}\n\
             tasks_per_s_2nodes_pack    {:>10.0}\n\
             task_rtt_p50_us            {:>10.1}   (submit and await one task, one at a time)\n\
             ask_rtt_p50_us             {:>10.1}   (an ask to an actor on the same worker, same run)\n\
             task_vs_ask                {:>10.2}x\n\
             cpu_tasks_one_core_s       {:>10.3}   ({} tasks of {} churn rounds, {:.3} ms of one core each)\n\
             cpu_tasks_s hybrid         {:>10.3}   (seconds to finish all; {:.2}x one core)\n\
             cpu_tasks_s spread         {:>10.3}   ({:.2}x one core)\n\
             cpu_tasks_s pack           {:>10.3}   ({:.2}x one core)\n\
             retry_after_kill_s         {:>10.3}   (SIGKILL of the running node to the retried result)\n\
             ref_pass_mb_per_s          {:>10.0}   (MB = 10^6 B: a {} MiB kept result consumed on the other worker, best of 3)\n",
            self.tasks_per_s_local,
            self.tasks,
            self.tasks_per_s_2nodes,
            self.tasks_per_s_2nodes_spread,
            self.tasks_per_s_2nodes_pack,
            self.task_rtt_p50_us,
            self.ask_rtt_p50_us,
            self.task_vs_ask,
            self.cpu_tasks_one_core_s,
            self.cpu_tasks,
            self.cpu_task_rounds,
            self.cpu_task_ms,
            self.cpu_tasks_s_hybrid,
            self.cpu_tasks_one_core_s / self.cpu_tasks_s_hybrid,
            self.cpu_tasks_s_spread,
            self.cpu_tasks_one_core_s / self.cpu_tasks_s_spread,
            self.cpu_tasks_s_pack,
            self.cpu_tasks_one_core_s / self.cpu_tasks_s_pack,
            self.retry_after_kill_s,
            self.ref_pass_mb_per_s,
            self.ref_mib,
        )
    }
}

fn p50(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs the benchmark with `tasks` empty tasks per rate.
pub(crate) fn run(exe: &Path, tasks: usize) -> Result<TasksReport> {
    let dir = std::env::temp_dir().join(format!("swarm-bench-tasks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cluster =
        LocalCluster::start_members(exe, &dir, 2, &["--workload", "demo", "--cpus", "2"])
            .context("cannot start the local cluster")?;
    cluster.remove_dir_on_drop(true);
    actix::System::new().block_on(async move {
        // SWARM_BENCH_SKIP_LOCAL=1 leaves the local rate out (to profile the rest).
        let tasks_per_s_local = if std::env::var_os("SWARM_BENCH_SKIP_LOCAL").is_some() {
            f64::NAN
        } else {
            let local = lone_node().await?;
            let r = rate(local.tasks().context("membership")?, tasks, None).await?;
            local.shutdown();
            r
        };

        let mut mesh = NodeFile::load(&cluster.driver_config())?.mesh_config()?;
        mesh.listen = "127.0.0.1:0".parse()?;
        if let Some(c) = mesh.cluster.as_mut() {
            c.resources.cpus = Some(0.0);
        }
        let driver = Node::start(mesh).await?;
        let t = driver.tasks().context("the driver has membership")?.clone();
        wait_for_nodes(&t, 3).await?;
        let workers: Vec<NodeId> = cluster.nodes.iter().map(|n| n.id).collect();

        // Warm up links and run-time estimates.
        rate(&t, 2_000, None).await?;
        let tasks_per_s_2nodes = rate(&t, tasks, None).await?;
        let tasks_per_s_2nodes_spread = rate(&t, tasks, Some(Placement::Spread)).await?;
        let tasks_per_s_2nodes_pack = rate(&t, tasks, Some(Placement::Pack)).await?;

        let (task_rtt_p50_us, ask_rtt_p50_us) = round_trips(&driver, &t, workers[0]).await?;

        let cpu_tasks = 2_000;
        let (cpu_task_rounds, cpu_task_ms) = calibrate(Duration::from_millis(1));
        let cpu = |placement| makespan(&t, cpu_tasks, cpu_task_rounds, placement);
        let cpu_tasks_s_hybrid = cpu(None).await?;
        let cpu_tasks_s_spread = cpu(Some(Placement::Spread)).await?;
        let cpu_tasks_s_pack = cpu(Some(Placement::Pack)).await?;

        let ref_mib = 64;
        let ref_pass_mb_per_s = ref_pass(&t, &workers, ref_mib).await?;
        let retry_after_kill_s = retry_after_kill(&mut cluster, &t).await?;
        driver.shutdown();
        Ok(TasksReport {
            tasks,
            tasks_per_s_local,
            tasks_per_s_2nodes,
            tasks_per_s_2nodes_spread,
            tasks_per_s_2nodes_pack,
            task_rtt_p50_us,
            ask_rtt_p50_us,
            task_vs_ask: task_rtt_p50_us / ask_rtt_p50_us,
            cpu_tasks,
            cpu_task_rounds,
            cpu_task_ms,
            cpu_tasks_one_core_s: cpu_tasks as f64 * cpu_task_ms / 1e3,
            cpu_tasks_s_hybrid,
            cpu_tasks_s_spread,
            cpu_tasks_s_pack,
            retry_after_kill_s,
            ref_mib,
            ref_pass_mb_per_s,
        })
    })
}

/// A node of its own throw-away cluster offering 2 CPUs, with the demo tasks.
async fn lone_node() -> Result<Node> {
    let ca = Throwaway::new("bench-local");
    let mut config = MeshConfig::new("127.0.0.1:0".parse()?, ca.node("local", &["worker"]));
    config.cluster = Some(ClusterConfig {
        resources: ResourceOverrides {
            cpus: Some(2.0),
            ..ResourceOverrides::default()
        },
        ..ClusterConfig::default()
    });
    let node = Node::start(config).await?;
    let t = node.tasks().context("membership")?;
    swarm_cli::demo::tasks::register(t);
    wait_for_nodes(t, 1).await?;
    Ok(node)
}

async fn wait_for_nodes(t: &Tasks, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        if t.list(0).await.is_ok_and(|table| table.nodes >= n) {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("the scheduler never saw {n} nodes");
        }
    }
}

/// Empty tasks per second: `n` submitted as one batch, all results taken.
async fn rate(t: &Tasks, n: usize, placement: Option<Placement>) -> Result<f64> {
    let started = Instant::now();
    let mut builder = t.task(noop);
    if let Some(p) = placement {
        builder = builder.placement(p);
    }
    let mut stream = builder.submit_many((0..n).map(|_| ())).await?;
    while let Some((_, r)) = stream.next_completed().await {
        r?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// The p50 round trip of one task at a time on `worker`, and of an ask to
/// its adder, interleaved.
async fn round_trips(driver: &Node, t: &Tasks, worker: NodeId) -> Result<(f64, f64)> {
    let adder = driver.remote::<Adder>(worker, "adder");
    adder.send(Add { a: 1, b: 1 }).await?;
    let on = Placement::Node {
        node: worker,
        hard: true,
    };
    let (mut tasks, mut asks) = (Vec::new(), Vec::new());
    for i in 0..2_000u64 {
        let started = Instant::now();
        let v = t
            .task(square)
            .placement(on.clone())
            .submit(i)
            .await?
            .await?;
        tasks.push(started.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(v == i * i, "square({i}) = {v}");
        let started = Instant::now();
        adder.send(Add { a: 1, b: 1 }).await?;
        asks.push(started.elapsed().as_secs_f64() * 1e6);
    }
    Ok((p50(tasks), p50(asks)))
}

/// The rounds of `churn_rounds` that take about `target` on one core of
/// this process, and what they took, milliseconds (the best of 20 runs:
/// the work undisturbed).
fn calibrate(target: Duration) -> (u64, f64) {
    let best_of = |runs: usize, rounds: u64| {
        (0..runs)
            .map(|_| {
                let started = Instant::now();
                std::hint::black_box(churn_rounds(0, rounds));
                started.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let probe = 100_000;
    let per_round = best_of(5, probe) / probe as f64;
    let rounds = ((target.as_secs_f64() / per_round) as u64).max(1);
    (rounds, best_of(20, rounds) * 1e3)
}

/// Seconds to finish `n` CPU-bound tasks of `rounds` churn rounds each
/// under `placement`.
async fn makespan(t: &Tasks, n: usize, rounds: u64, placement: Option<Placement>) -> Result<f64> {
    let started = Instant::now();
    let mut builder = t.task(churn);
    if let Some(p) = placement {
        builder = builder.placement(p);
    }
    builder
        .submit_many((0..n).map(move |_| rounds))
        .await?
        .collect()
        .await?;
    Ok(started.elapsed().as_secs_f64())
}

/// MB/s (10^6 bytes) of a kept `mib` MiB result made on one worker and
/// consumed on the other.
async fn ref_pass(t: &Tasks, workers: &[NodeId], mib: u64) -> Result<f64> {
    let (maker, consumer) = (workers[0], workers[1]);
    let pin = |node| Placement::Node { node, hard: true };
    let size = mib << 20;
    // A small value first, so the workers' link is up (steady state).
    let warm = t
        .task(blob)
        .placement(pin(maker))
        .keep()
        .submit(1_024)
        .await?;
    t.task(size_of)
        .placement(pin(consumer))
        .submit(&warm)
        .await?
        .await?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let r = t
            .task(blob)
            .placement(pin(maker))
            .keep()
            .submit(size)
            .await?;
        r.ready().await?;
        let started = Instant::now();
        let len = t
            .task(size_of)
            .placement(pin(consumer))
            .submit(&r)
            .await?
            .await?;
        best = best.min(started.elapsed().as_secs_f64());
        anyhow::ensure!(len == size, "the consumer saw {len} bytes");
    }
    Ok(super::mb_per_s(size, best))
}

/// SIGKILL the worker running a long task; seconds until its retry answers.
async fn retry_after_kill(cluster: &mut LocalCluster, t: &Tasks) -> Result<f64> {
    let victim = cluster.nodes.first().context("no worker")?.id;
    let h = t
        .task(stall)
        .placement(Placement::Node {
            node: victim,
            hard: false,
        })
        .submit(60_000u64)
        .await?;
    // Let it start there before the kill.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed_at = Instant::now();
    cluster.kill(0)?;
    let ran = tokio::time::timeout(Duration::from_secs(60), h)
        .await
        .context("no answer within 60 s of the kill")??;
    anyhow::ensure!(ran != Some(victim), "the answer came from the killed node");
    Ok(killed_at.elapsed().as_secs_f64())
}
