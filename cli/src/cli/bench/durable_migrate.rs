//! `migration_pause_ms` for `swarm bench durable`: a demo ledger (durable,
//! on the cluster's journal store) moved back and forth between two nodes
//! by `control.migrate` while three callers stream deposits through
//! `Named` handles (two sharing one handle with 4 asks in flight each, one
//! asking one at a time). The pause of a migration is what callers see:
//! the longest time between two consecutive acknowledged deposits, from
//! the migration's start to the first acknowledgement after it returned.
//! The run also checks what the tests assert: no ask failed, each caller's
//! deposits were applied in issue order, and the final balance is the sum
//! of the acknowledged deposits.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use serde::Serialize;
use swarm::control::{Control, Spawn};
use swarm::placement::Placement;
use swarm::NodeId;
use swarm_cli::demo::migration::{pause, Callers, Streamed};
use swarm_cli::demo::{Deposit, Ledger, LedgerArgs};

/// What [`migration_pause`] measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MigrationPause {
    pub(crate) migrations: usize,
    pub(crate) migration_pause_ms_p50: f64,
    pub(crate) migration_pause_ms_max: f64,
    /// How long `control.migrate` took to answer, p50.
    pub(crate) migrate_call_ms_p50: f64,
    /// Deposits acknowledged during the run.
    pub(crate) deposits: usize,
    /// Asks that failed (0 expected).
    pub(crate) failed: usize,
}

impl MigrationPause {
    pub(crate) fn table(&self) -> String {
        format!(
            "migration_pause_ms_p50   {:>10.1}   ({} migrations under 3 streaming callers, 9 asks in flight; target <= 50)\n\
             migration_pause_ms_max   {:>10.1}\n\
             migrate_call_ms_p50      {:>10.1}   (control.migrate: hand-over, placement, start)\n\
             migration_deposits       {:>10}   ({} failed)\n",
            self.migration_pause_ms_p50,
            self.migrations,
            self.migration_pause_ms_max,
            self.migrate_call_ms_p50,
            self.deposits,
            self.failed,
        )
    }
}

/// Places a demo ledger `name` (opening 0) on `nodes[0]` (soft), then
/// migrates it `migrations` times between `nodes[0]` and `nodes[1]`
/// through `admin` (a head's or an admin operator's control) while
/// callers stream deposits through `caller`, and stops it. Run it on a
/// local task set (actix's system). Fails if an ask failed, a caller's
/// deposits were applied out of order, or the balance is not their sum.
pub(crate) async fn migration_pause(
    admin: &Control,
    caller: &Control,
    name: &str,
    nodes: [NodeId; 2],
    migrations: usize,
) -> Result<MigrationPause> {
    let spawn = Spawn::<Ledger>::named(name)
        .args(LedgerArgs { opening: 0 })
        .placement(Placement::Node {
            node: nodes[0],
            hard: false,
        });
    let ledger = admin.spawn(spawn).await.context("placing the ledger")?;
    ledger
        .send(Deposit(0))
        .await
        .context("the ledger's first answer")?;
    let callers = Callers::start(caller, name).await?;
    let settle = |more: usize| {
        let callers = &callers;
        async move { callers.after(more).await.map_err(anyhow::Error::msg) }
    };
    let mut moves = Vec::with_capacity(migrations);
    let mut outcome = settle(30).await;
    for i in 0..migrations {
        if outcome.is_err() {
            break;
        }
        let here = admin.resolve(name).await.ok().map(|l| l.node);
        let to = if here == Some(nodes[1]) {
            nodes[0]
        } else {
            nodes[1]
        };
        let started = Instant::now();
        outcome = match admin.migrate(name, to).await {
            Ok(_) => {
                moves.push((started, Instant::now()));
                settle(30).await
            }
            Err(e) => Err(anyhow::anyhow!("migration {i} to {to}: {e}")),
        };
    }
    let streamed = callers.finish().await.map_err(anyhow::Error::msg)?;
    outcome?;
    let failed: usize = streamed.iter().map(|c| c.failed.len()).sum();
    ensure!(
        failed == 0,
        "{failed} asks failed: {:?}",
        streamed.iter().flat_map(|c| &c.failed).next()
    );
    ensure!(
        streamed.iter().all(Streamed::in_order),
        "a caller's deposits were applied out of order"
    );
    let sum: u64 = streamed.iter().map(Streamed::sum).sum();
    let total = ledger.send(Deposit(0)).await?.total;
    ensure!(total == sum, "balance {total}, acknowledged deposits {sum}");
    let _ = admin.stop(name).await;
    let mut pauses: Vec<f64> = moves
        .iter()
        .map(|(started, returned)| ms(pause(&streamed, *started, *returned)))
        .collect();
    let mut calls: Vec<f64> = moves.iter().map(|(s, r)| ms(*r - *s)).collect();
    Ok(MigrationPause {
        migrations: moves.len(),
        migration_pause_ms_p50: p50(&mut pauses),
        migration_pause_ms_max: pauses.iter().copied().fold(0.0, f64::max),
        migrate_call_ms_p50: p50(&mut calls),
        deposits: streamed.iter().map(|c| c.acked.len()).sum(),
        failed,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn p50(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(0.0)
}

/// [`migration_pause`] on a cluster of its own in this process: one head
/// (the admin), two workers and a driver (the callers), on the embedded
/// journal store, or on the PostgreSQL server at `postgres` (a URL with
/// its password).
pub(crate) fn run(migrations: usize, postgres: Option<&str>) -> Result<MigrationPause> {
    actix::System::new().block_on(async move {
        let dir = std::env::temp_dir().join(format!("swarm-bench-migrate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let nodes = super::in_process::start(&dir, 1, 2).await?;
        if let Some(url) = postgres {
            for m in &nodes {
                let store = swarm::durable::Postgres::new(url, None, 4)?;
                m.node.set_journal_store(std::sync::Arc::new(store));
            }
        }
        let admin = nodes[0].node.control().context("membership")?.clone();
        let caller = nodes[3].node.control().context("membership")?.clone();
        let workers = [nodes[1].node.id(), nodes[2].node.id()];
        // The head group forms and the workers take leases first.
        let deadline = Instant::now() + Duration::from_secs(30);
        let measured = loop {
            match migration_pause(&admin, &caller, "bench-migrate", workers, migrations).await {
                Err(e) if Instant::now() < deadline && e.to_string().contains("placing") => {
                    let _ = admin.stop("bench-migrate").await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => break other,
            }
        };
        super::in_process::stop(nodes);
        let _ = std::fs::remove_dir_all(&dir);
        measured
    })
}
