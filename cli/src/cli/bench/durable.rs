//! `swarm bench durable`: durable actors on a local cluster of 3 head and
//! 2 worker processes of this binary, driven by an in-process node, once
//! with the embedded store (journals in the head group's log) and once
//! with PostgreSQL (a private server, as the tests start one), in the same
//! run. Per backend: the Raft commit p50 of the same cluster (the
//! baseline), one event's persist time (p50/p99, measured in the actor:
//! the journal's own write histogram, read through the inspection),
//! events per second with many actors persisting at once, the recovery
//! of a 1 MiB snapshot plus 10,000 events, and durable failover (SIGKILL
//! of the hosting process to the next answer with the state restored).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;
use swarm::control::{Control, Named, Spawn};
use swarm::inspect::{Inspect, Inspector, JournalView, INSPECT_ACTOR};
use swarm::placement::Placement;
use swarm::Node;
use swarm_cli::demo::blob::{AddMany, Blob, BlobArgs, Fill, ReadBlob};
use swarm_cli::demo::{Deposit, Ledger};
use swarm_cli::local::{postgres, LocalCluster};

use super::control::{driver, placed, release_nothing};
use super::operator::admin;

/// One backend's figures.
#[derive(Debug, Serialize)]
pub(crate) struct Backend {
    pub(crate) backend: String,
    /// A Raft write from the driver (client -> leader -> quorum fsync ->
    /// client), interleaved with the persists: the baseline.
    pub(crate) raft_commit_us_p50: f64,
    /// One event's persist, call to acknowledgement, in the actor (the
    /// journal's histogram: within ±21%).
    pub(crate) persist_us_p50: f64,
    pub(crate) persist_us_p99: f64,
    /// `persist_us_p50` over `raft_commit_us_p50` (embedded target ≤ 2).
    pub(crate) persist_vs_raft_commit: f64,
    /// A deposit (one persist) as the driver sees it, and a read (no
    /// write) of the same ledger, interleaved.
    pub(crate) deposit_rtt_us_p50: f64,
    pub(crate) read_rtt_us_p50: f64,
    /// Events acknowledged per second, `actors` ledgers each with two
    /// deposits in flight (one event per persist).
    pub(crate) events_per_s: f64,
    /// The same Raft write as `raft_commit_us_p50`, one at a time while
    /// the `events_per_s` load runs: whether journal writes starve the
    /// control plane's.
    pub(crate) raft_commit_under_load_us_p50: f64,
    pub(crate) raft_commit_under_load_us_p99: f64,
    /// Reads (asks without a write) per second the same way: the ask
    /// path's rate, the baseline of `events_per_s`.
    pub(crate) reads_per_s: f64,
    pub(crate) actors: usize,
    /// Recovery (claim, snapshot and replay) of a 1 MiB snapshot plus
    /// 10,000 events after a SIGKILL, as the new incarnation timed it.
    pub(crate) recovery_ms: f64,
    pub(crate) recovery_snapshot_bytes: u64,
    pub(crate) recovery_events: u64,
    /// SIGKILL of the hosting process to the next answer with the state
    /// restored (every acknowledged deposit in it), p50 and max.
    pub(crate) failover_durable_s: f64,
    pub(crate) failover_durable_s_max: f64,
    pub(crate) failover_runs: usize,
    /// The pause callers see around a live migration on this backend
    /// (`swarm bench migrate`'s run, on an in-process cluster of its
    /// own); `None` if it failed (see `migration_note`).
    pub(crate) migration_pause_ms_p50: Option<f64>,
    pub(crate) migration_note: String,
}

/// What `swarm bench durable` prints.
#[derive(Debug, Serialize)]
pub(crate) struct DurableReport {
    pub(crate) heads: usize,
    pub(crate) workers: usize,
    pub(crate) embedded: Backend,
    /// `None` where PostgreSQL is not installed (see `postgres_note`).
    pub(crate) postgres: Option<Backend>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) postgres_note: Option<String>,
}

impl Backend {
    fn rows(&self) -> String {
        let mut rows = format!(
            "  raft_commit_us_p50      {:>10.1}   (client -> leader -> quorum fsync -> client, same run)\n\
             \x20 persist_us_p50          {:>10.1}   (one event, in the actor; p99 {:.1})\n\
             \x20 persist_vs_raft_commit  {:>10.2}x  (embedded target <= 2)\n\
             \x20 deposit_rtt_us_p50      {:>10.1}   (the driver's ask with one persist; a read: {:.1})\n\
             \x20 events_per_s            {:>10.0}   ({} actors persisting at once; target >= 50,000 embedded)\n\
             \x20 raft_commit_under_load  {:>10.1}   (the same Raft write during the events_per_s load, p50; p99 {:.1})\n\
             \x20 reads_per_s             {:>10.0}   (the same asks without a write: the ask path's rate)\n\
             \x20 recovery_ms             {:>10.1}   ({} B snapshot + {} events; target <= 200)\n\
             \x20 failover_durable_s      {:>10.3}   (SIGKILL to the next answer with the state, p50 of {}, max {:.3}; target <= 1)\n",
            self.raft_commit_us_p50,
            self.persist_us_p50,
            self.persist_us_p99,
            self.persist_vs_raft_commit,
            self.deposit_rtt_us_p50,
            self.read_rtt_us_p50,
            self.events_per_s,
            self.actors,
            self.raft_commit_under_load_us_p50,
            self.raft_commit_under_load_us_p99,
            self.reads_per_s,
            self.recovery_ms,
            self.recovery_snapshot_bytes,
            self.recovery_events,
            self.failover_durable_s,
            self.failover_runs,
            self.failover_durable_s_max,
        );
        match self.migration_pause_ms_p50 {
            Some(p50) => rows.push_str(&format!(
                "  migration_pause_ms_p50  {p50:>10.1}   ({}; target <= 50)\n",
                self.migration_note
            )),
            None => rows.push_str(&format!(
                "  migration_pause_ms_p50           -   ({})\n",
                self.migration_note
            )),
        }
        rows
    }
}

impl DurableReport {
    pub(crate) fn table(&self) -> String {
        let mut out = format!(
            "durable actors: {} heads, {} workers (processes of this binary)\nembedded:\n{}",
            self.heads,
            self.workers,
            self.embedded.rows()
        );
        match (&self.postgres, &self.postgres_note) {
            (Some(pg), _) => out.push_str(&format!("postgres:\n{}", pg.rows())),
            (None, note) => out.push_str(&format!(
                "postgres: skipped ({})\n",
                note.as_deref().unwrap_or("")
            )),
        }
        out
    }
}

fn quantile(mut samples: Vec<f64>, q: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let i = ((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1));
    samples.get(i).copied().unwrap_or(f64::NAN)
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// What one run does.
#[derive(Clone, Copy)]
pub(crate) struct Plan {
    /// One-at-a-time persists (and Raft writes) timed.
    pub(crate) persists: usize,
    /// Ledgers persisting at once.
    pub(crate) actors: usize,
    /// Seconds of the throughput run.
    pub(crate) secs: f64,
    /// Durable failovers timed.
    pub(crate) runs: usize,
}

/// Runs both backends.
pub(crate) fn run(exe: &Path, plan: Plan) -> Result<DurableReport> {
    let mut embedded = backend(exe, "embedded", "", plan)?;
    migration(&mut embedded, None);
    let (postgres, postgres_note) = match postgres::programs() {
        Some(bin) => {
            let dir = std::env::temp_dir().join(format!("swarm-bench-pg-{}", std::process::id()));
            let server = postgres::Postgres::start(&bin, dir, &["max_connections=100"])?;
            let secrets =
                std::env::temp_dir().join(format!("swarm-bench-pg-secret-{}", std::process::id()));
            let section = server.section(&secrets)?;
            let figures = backend(exe, "postgres", &section, plan).map(|mut b| {
                migration(&mut b, Some(&server.url()));
                b
            });
            drop(server);
            let _ = std::fs::remove_dir_all(&secrets);
            (Some(figures?), None)
        }
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            bail!("PostgreSQL is not installed (CI=true: `.ci/test-tools postgres` installs it)")
        }
        None => {
            let note = "PostgreSQL is not installed (/usr/lib/postgresql/*/bin); `.ci/test-tools postgres` installs it";
            eprintln!("note: {note}: its figures are skipped");
            (None, Some(note.to_owned()))
        }
    };
    Ok(DurableReport {
        heads: 3,
        workers: 2,
        embedded,
        postgres,
        postgres_note,
    })
}

/// The pause of a live migration on `backend`'s store (PostgreSQL at
/// `postgres`, or the embedded one): `swarm bench migrate` on an
/// in-process cluster of its own (one head, two workers, the callers).
fn migration(backend: &mut Backend, postgres: Option<&str>) {
    const MIGRATIONS: usize = 20;
    match super::durable_migrate::run(MIGRATIONS, postgres) {
        Ok(m) => {
            backend.migration_pause_ms_p50 = Some(m.migration_pause_ms_p50);
            backend.migration_note = format!(
                "{} migrations under 3 streaming callers, max {:.1} ms, {} asks failed",
                m.migrations, m.migration_pause_ms_max, m.failed
            );
        }
        Err(e) => backend.migration_note = format!("the migration run failed: {e:#}"),
    }
}

/// One backend's figures on a cluster of its own (`section` configures
/// its journal store; empty for the embedded one).
fn backend(exe: &Path, name: &str, section: &str, plan: Plan) -> Result<Backend> {
    let dir =
        std::env::temp_dir().join(format!("swarm-bench-durable-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cluster = LocalCluster::start_control_configured(exe, &dir, (3, 2), section)
        .context("cannot start the local cluster")?;
    cluster.remove_dir_on_drop(true);
    actix::System::new().block_on(async move {
        let (driver, control) = driver(&cluster.driver_config()).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let ledger = placed(&control, "persist", deadline).await?;
        let (admin, admin_control) = admin(&cluster).await?;
        let (raft, persist, deposit, read) =
            persists(&driver, &admin_control, &ledger, plan.persists).await?;
        let (events_per_s, under_load, reads_per_s) =
            throughput(&control, &admin_control, plan.actors, plan.secs).await?;
        admin.shutdown();
        let (recovery_ms, snapshot_bytes, events) =
            recovery(&driver, &control, &mut cluster).await?;
        let mut failovers = Vec::new();
        for run in 0..plan.runs {
            failovers.push(failover(&control, &mut cluster, run).await?);
        }
        driver.shutdown();
        let raft_commit_us_p50 = quantile(raft, 0.5);
        Ok(Backend {
            backend: name.to_owned(),
            raft_commit_us_p50,
            persist_us_p50: persist.write_p50_us,
            persist_us_p99: persist.write_p99_us,
            persist_vs_raft_commit: persist.write_p50_us / raft_commit_us_p50,
            deposit_rtt_us_p50: quantile(deposit, 0.5),
            read_rtt_us_p50: quantile(read, 0.5),
            events_per_s,
            raft_commit_under_load_us_p50: quantile(under_load.clone(), 0.5),
            raft_commit_under_load_us_p99: quantile(under_load, 0.99),
            reads_per_s,
            actors: plan.actors,
            recovery_ms,
            recovery_snapshot_bytes: snapshot_bytes,
            recovery_events: events,
            failover_durable_s: quantile(failovers.clone(), 0.5),
            failover_durable_s_max: failovers.iter().copied().fold(f64::NAN, f64::max),
            failover_runs: failovers.len(),
            migration_pause_ms_p50: None,
            migration_note: "not measured".to_owned(),
        })
    })
}

/// The journal of `name` as its node reports it.
async fn journal_of(driver: &Node, node: swarm::NodeId, name: &str) -> Result<JournalView> {
    let snapshot = driver
        .remote::<Inspector>(node, INSPECT_ACTOR)
        .send(Inspect)
        .await
        .map_err(|e| anyhow::anyhow!("inspecting {node}: {e}"))?;
    snapshot
        .actors
        .into_iter()
        .find(|a| a.name == name)
        .and_then(|a| a.durable)
        .with_context(|| format!("{name} reports no journal on {node}"))
}

/// `count` one-event deposits, one at a time, interleaved with Raft
/// writes and reads: the Raft commit times, the ledger's journal (its
/// write histogram), the deposits' and the reads' round trips.
async fn persists(
    driver: &Node,
    admin: &Control,
    ledger: &Named<Ledger>,
    count: usize,
) -> Result<(Vec<f64>, JournalView, Vec<f64>, Vec<f64>)> {
    let at = ledger.send(Deposit(0)).await?.node;
    let (mut raft, mut deposits, mut reads) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..count {
        // As the admin operator: a Raft write that changes nothing.
        let t = Instant::now();
        release_nothing(admin).await?;
        raft.push(micros(t.elapsed()));
        let t = Instant::now();
        ledger.send(Deposit(1)).await?;
        deposits.push(micros(t.elapsed()));
        let t = Instant::now();
        ledger.send(Deposit(0)).await?;
        reads.push(micros(t.elapsed()));
    }
    let journal = journal_of(driver, at, "persist").await?;
    if journal.events < count as u64 {
        bail!(
            "the ledger's journal counts {} events of {count}",
            journal.events
        );
    }
    Ok((raft, journal, deposits, reads))
}

/// Events acknowledged per second: `actors` ledgers on the workers, each
/// with two one-event deposits in flight, for `secs`, while the admin
/// operator makes one Raft write at a time (their times); then reads (no
/// write) the same way: the ask path's own rate, its baseline.
async fn throughput(
    control: &Control,
    admin: &Control,
    actors: usize,
    secs: f64,
) -> Result<(f64, Vec<f64>, f64)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ledgers = Vec::new();
    for i in 0..actors {
        ledgers.push(placed(control, &format!("t{i}"), deadline).await?);
    }
    for l in &ledgers {
        l.send(Deposit(0)).await?;
    }
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let writes = async {
        let mut took = Vec::new();
        while Instant::now() < until {
            let t = Instant::now();
            match admin.release_group("bench-none").await {
                Err(swarm::control::ControlError::NoSuchName { .. }) => {}
                other => bail!("a release of no group answered {other:?}"),
            }
            took.push(micros(t.elapsed()));
        }
        Ok(took)
    };
    let (events, writes) = tokio::join!(rate(&ledgers, 1, secs), writes);
    let reads = rate(&ledgers, 0, secs).await?;
    Ok((events?, writes?, reads))
}

/// Deposits of `amount` answered per second, two in flight per ledger.
async fn rate(ledgers: &[Named<Ledger>], amount: u64, secs: f64) -> Result<f64> {
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for ledger in ledgers {
        for _ in 0..2 {
            let ledger = ledger.clone();
            tasks.spawn_local(async move {
                let mut n = 0u64;
                while Instant::now() < until {
                    ledger.send(Deposit(amount)).await?;
                    n += 1;
                }
                Ok::<_, swarm::AskError>(n)
            });
        }
    }
    let mut events = 0;
    while let Some(done) = tasks.join_next().await {
        events += done
            .context("a deposit task panicked")?
            .map_err(|e| anyhow::anyhow!("a deposit failed: {e}"))?;
    }
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

/// A blob saved whole at just under 1 MiB (a snapshot's bound, less its
/// record's framing) then 10,000 events; its host SIGKILLed; the next
/// incarnation's recovery time, as it reports it.
async fn recovery(
    driver: &Node,
    control: &Control,
    cluster: &mut LocalCluster,
) -> Result<(f64, u64, u64)> {
    const STATE: u32 = (1 << 20) - 1024;
    const EVENTS: u32 = 10_000;
    let spawn = || {
        Spawn::<Blob>::named("blob")
            .args(BlobArgs {})
            .placement(Placement::Label {
                label: "worker".to_owned(),
                hard: true,
            })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let blob: Named<Blob> = loop {
        match control.spawn(spawn()).await {
            Ok(named) => break named,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "not placed yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).context("the blob was never placed"),
        }
    };
    blob.send(Fill(STATE))
        .await?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut added = 0;
    while added < EVENTS {
        let n = 1_000.min(EVENTS - added);
        blob.send(AddMany(n))
            .await?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        added += n;
    }
    let before = blob.send(ReadBlob).await?;
    let host = index_of(cluster, before.node)?;
    let killed = cluster.kill(host)?;
    let after = until_answer(Duration::from_secs(30), || async {
        blob.send(ReadBlob)
            .await
            .ok()
            .filter(|s| s.node != before.node)
    })
    .await?;
    cluster.restart(&killed)?;
    if (after.len, after.total) != (before.len, before.total) {
        bail!("the blob came back as {after:?}, not {before:?}");
    }
    let journal = journal_of(driver, after.node, "blob").await?;
    Ok((journal.recovery_ms, u64::from(STATE), u64::from(EVENTS)))
}

/// A ledger with 100 acknowledged deposits; its host SIGKILLed; seconds
/// to the next answer that holds all of them.
async fn failover(control: &Control, cluster: &mut LocalCluster, run: usize) -> Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let ledger = placed(control, &format!("failover-{run}"), deadline).await?;
    let mut last = ledger.send(Deposit(0)).await?;
    for _ in 0..100 {
        last = ledger.send(Deposit(3)).await?;
    }
    let host = index_of(cluster, last.node)?;
    let killed_at = Instant::now();
    let killed = cluster.kill(host)?;
    let total = last.total;
    until_answer(Duration::from_secs(30), || async {
        ledger
            .send(Deposit(0))
            .await
            .ok()
            .filter(|b| b.node != last.node)
    })
    .await
    .and_then(|b| {
        if b.total == total {
            Ok(())
        } else {
            bail!("the ledger came back with {} of {total}", b.total)
        }
    })?;
    let took = killed_at.elapsed().as_secs_f64();
    cluster.restart(&killed)?;
    Ok(took)
}

fn index_of(cluster: &LocalCluster, node: swarm::NodeId) -> Result<usize> {
    cluster
        .nodes
        .iter()
        .position(|n| n.id == node)
        .context("the actor runs outside the cluster")
}

/// Polls `ask` every 2 ms until it answers, for `within`.
async fn until_answer<T, F: std::future::Future<Output = Option<T>>>(
    within: Duration,
    mut ask: impl FnMut() -> F,
) -> Result<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(answer) = ask().await {
            return Ok(answer);
        }
        if Instant::now() > deadline {
            bail!("no answer within {within:?} of the SIGKILL");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
