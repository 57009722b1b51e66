//! `swarm bench control --holders N`: N lightweight lease holders renew
//! against a local cluster of 3 head and 2 worker processes of this
//! binary, and the head leader's CPU, the renewals' latency and crash
//! failovers are measured while they do.
//!
//! A holder is a mesh-only [`Node`] in this process (its own certificate
//! from the cluster's CA, its own listener and its real Noise link to the
//! head leader) driving [`LeaseHolder`]: the lease keeper's timing and
//! delta reports over the real `Renew`/`Grant` protocol. It skips
//! membership (no gossip, no SWIM), the host (it runs no actor and can
//! start no type, so nothing is placed on it) and what a grant asks of a
//! host. The holders share a few threads of this process; the leader's
//! CPU is read from its own process.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde::Serialize;
use swarm::config::NodeFile;
use swarm::control::LeaseHolder;
use swarm::credentials::{issue, random32, random_serial, CaDir, Throwaway};
use swarm::{MeshConfig, Node};
use swarm_cli::local::LocalCluster;
use swarm_protocol::NodeKey;
use tokio::sync::Semaphore;

use super::control::{crash_failover, leader, ready};

/// What `swarm bench control --holders N` prints.
#[derive(Debug, Serialize)]
pub(crate) struct HoldersReport {
    pub(crate) heads: usize,
    pub(crate) workers: usize,
    pub(crate) holders: usize,
    /// Holders that had held a lease when the ramp-up ended (all, or as
    /// many as held by its deadline: 60 s + 20 ms per holder).
    pub(crate) holding: usize,
    /// Seconds from the first holder's start until every one held a
    /// lease (or until the deadline, if not every one did).
    pub(crate) all_holding_s: f64,
    /// Seconds from then until the renewals settled (see
    /// `window_starts`).
    pub(crate) settled_s: f64,
    /// When the window starts.
    pub(crate) window_starts: &'static str,
    /// Seconds the CPU and the renewals were measured over.
    pub(crate) window_s: f64,
    /// Grants per second in the window, all holders.
    pub(crate) renewals_per_s: f64,
    /// The head leader's process, percent of one core, in the window.
    pub(crate) leader_cpu_pct: f64,
    /// A renewal sent to its grant (holders' side), in the window.
    pub(crate) renewal_us_p50: f64,
    pub(crate) renewal_us_p99: f64,
    /// Renewals without a grant, in the window.
    pub(crate) renewal_errors: usize,
    /// Renewals without a grant during the failovers.
    pub(crate) failover_renewal_errors: usize,
    pub(crate) failover_runs: usize,
    pub(crate) failover_crash_s_p50: f64,
    pub(crate) failover_crash_s_max: f64,
    /// The crash failover bound of the control bench's table.
    pub(crate) failover_crash_target_s: f64,
}

impl HoldersReport {
    pub(crate) fn table(&self) -> String {
        format!(
            "control plane under lease holders: {} heads, {} workers (processes), {} holders (mesh-only nodes in this process)\n\
             all_holding_s            {:>10.2}   ({} of {} held a lease by then)\n\
             settled_s                {:>10.2}   (then: two leases without a failed renewal)\n\
             renewals_per_s           {:>10.0}   (grants, {:.0} s window)\n\
             leader_cpu_pct           {:>10.1}   (the head leader's process, % of one core; target < 25)\n\
             renewal_us_p50           {:>10.0}\n\
             renewal_us_p99           {:>10.0}   (target < 50,000)\n\
             renewal_errors           {:>10}   (in the window; {} during the failovers)\n\
             failover_crash_s_p50     {:>10.3}   (SIGKILL of the ledger's worker to its next answer, {} runs)\n\
             failover_crash_s_max     {:>10.3}   (target <= {:.1})\n",
            self.heads,
            self.workers,
            self.holders,
            self.all_holding_s,
            self.holding,
            self.holders,
            self.settled_s,
            self.renewals_per_s,
            self.window_s,
            self.leader_cpu_pct,
            self.renewal_us_p50,
            self.renewal_us_p99,
            self.renewal_errors,
            self.failover_renewal_errors,
            self.failover_crash_s_p50,
            self.failover_runs,
            self.failover_crash_s_max,
            self.failover_crash_target_s,
        )
    }
}

/// Runs `holders` lease holders, measures for `window`, then times `runs`
/// crash failovers while they renew.
pub(crate) fn run(exe: &std::path::Path, holders: usize, runs: usize) -> Result<HoldersReport> {
    let dir = std::env::temp_dir().join(format!("swarm-bench-holders-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cluster = LocalCluster::start_control(exe, &dir, 3, 2, &["--workload", "demo"])
        .context("cannot start the local cluster")?;
    cluster.remove_dir_on_drop(true);
    let keyring = Throwaway::keyring(&dir)?;
    let ca = CaDir::new(&dir).load_key(&keyring)?;
    actix::System::new().block_on(async move {
        let mut mesh = NodeFile::load(&cluster.driver_config())?.mesh_config()?;
        mesh.listen = "127.0.0.1:0".parse()?;
        let driver = Node::start(mesh.clone()).await?;
        let control = driver
            .control()
            .context("the driver has membership")?
            .clone();
        let ledger = ready(&control).await?;
        let leader_id = leader(&control).await?;
        let head = cluster
            .nodes
            .iter()
            .find(|n| n.id == leader_id)
            .context("the leader is not a cluster process")?;
        let (leader_addr, leader_pid) = (head.addr, head.child.id());

        let shared = Arc::new(Shared::new());
        let arbiters: Vec<actix::Arbiter> = (0..THREADS).map(|_| actix::Arbiter::new()).collect();
        let started = Instant::now();
        for i in 0..holders {
            let config = holder_config(&mesh, &ca, i);
            let shared = Arc::clone(&shared);
            let session = u64::from_le_bytes(random32()[..8].try_into().unwrap_or_default());
            if let Some(arbiter) = arbiters.get(i % THREADS) {
                arbiter.spawn(hold(config, leader_addr, shared, session));
            }
        }
        let deadline =
            Instant::now() + Duration::from_secs(60) + Duration::from_millis(holders as u64 * 20);
        // Measures whoever holds by the deadline, and says how many: a
        // shortfall is a figure too, not a reason to print nothing.
        while shared.holding.load(Ordering::Relaxed) < holders && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let all_holding_s = started.elapsed().as_secs_f64();
        let holding = shared.holding.load(Ordering::Relaxed);
        // Settled: a whole lease (3 s) without a failed renewal, two at
        // least (the renewals spread over their interval), at most 30 s.
        let settling = Instant::now();
        let mut quiet = 0;
        while quiet < 2 && settling.elapsed() < Duration::from_secs(30) {
            shared.errors.store(0, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(3)).await;
            quiet = if shared.errors.load(Ordering::Relaxed) == 0 {
                quiet + 1
            } else {
                0
            };
        }
        let settled_s = settling.elapsed().as_secs_f64();
        shared.errors.store(0, Ordering::Relaxed);

        shared.measuring.store(true, Ordering::Relaxed);
        let cpu0 = cpu_ns(leader_pid);
        let t0 = Instant::now();
        tokio::time::sleep(WINDOW).await;
        let cpu1 = cpu_ns(leader_pid);
        let window = t0.elapsed().as_secs_f64();
        shared.measuring.store(false, Ordering::Relaxed);
        let mut latencies = std::mem::take(&mut *shared.latencies());
        let renewals = latencies.len();
        let renewal_errors = shared.errors.swap(0, Ordering::Relaxed);
        latencies.sort_unstable();

        let mut crashes = Vec::new();
        for _ in 0..runs {
            crashes.push(crash_failover(&mut cluster, &ledger).await?);
        }
        crashes.sort_by(f64::total_cmp);
        let failover_renewal_errors = shared.errors.swap(0, Ordering::Relaxed);
        shared.stop.store(true, Ordering::Relaxed);
        for arbiter in &arbiters {
            arbiter.stop();
        }
        driver.shutdown();
        let leader_cpu_pct = match (cpu0, cpu1) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9 / window * 100.0,
            _ => f64::NAN,
        };
        Ok(HoldersReport {
            heads: 3,
            workers: 2,
            holders,
            holding,
            all_holding_s,
            settled_s,
            window_starts: WINDOW_STARTS,
            window_s: window,
            renewals_per_s: renewals as f64 / window,
            leader_cpu_pct,
            renewal_us_p50: quantile(&latencies, 0.5),
            renewal_us_p99: quantile(&latencies, 0.99),
            renewal_errors,
            failover_renewal_errors,
            failover_runs: crashes.len(),
            failover_crash_s_p50: crashes.get(crashes.len() / 2).copied().unwrap_or(f64::NAN),
            failover_crash_s_max: crashes.last().copied().unwrap_or(f64::NAN),
            failover_crash_target_s: 2.0,
        })
    })
}

/// What the holders count, shared by their threads.
struct Shared {
    /// Holders that got at least one grant.
    holding: AtomicUsize,
    /// Record latencies now.
    measuring: AtomicBool,
    /// Grant latencies while measuring, microseconds.
    latencies: Mutex<Vec<u32>>,
    /// Renewals without a grant.
    errors: AtomicUsize,
    /// The holders stop renewing.
    stop: AtomicBool,
    /// Holders starting at once: the leader takes a few handshakes from
    /// one address at a time, and the bench's threads serve the holders
    /// already renewing too.
    connecting: Semaphore,
}

impl Shared {
    fn new() -> Self {
        Self {
            holding: AtomicUsize::new(0),
            measuring: AtomicBool::new(false),
            latencies: Mutex::new(Vec::new()),
            errors: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            connecting: Semaphore::new(CONNECTING),
        }
    }

    fn latencies(&self) -> std::sync::MutexGuard<'_, Vec<u32>> {
        self.latencies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The driver's configuration with a new identity and without membership.
fn holder_config(mesh: &MeshConfig, ca: &swarm_protocol::CaKey, i: usize) -> MeshConfig {
    let mut config = mesh.clone();
    config.cluster = None;
    config.head = None;
    config.revocations = None;
    config.audit = None;
    let key = NodeKey::from_secret(random32());
    let roles = vec!["worker".to_owned()];
    config.handshake.cert = issue(ca, &key, &format!("holder{i}"), &roles, 1, random_serial());
    config.handshake.key = key;
    config
}

/// One holder: starts its node, links to the leader, renews until told
/// to stop.
async fn hold(config: MeshConfig, leader: SocketAddr, shared: Arc<Shared>, session: u64) {
    // Paced: a holder starts its node and makes its link under one of a
    // few permits, so the ramp-up never has thousands of node starts and
    // handshakes in flight on the bench's threads (they delayed holders
    // already linked past their heartbeat timeout, and the leader refused
    // the reconnections). Its renewals need no permit: gated on the first
    // grant, a slow control plane stalled the ramp-up.
    let Ok(mut permit) = shared.connecting.acquire().await else {
        return;
    };
    let node = match Node::start(config).await {
        Ok(node) => node,
        Err(e) => {
            tracing::warn!(error = %e, "a lease holder did not start");
            return;
        }
    };
    let control = loop {
        match node.control_through(leader).await {
            Ok(control) => break control,
            Err(e) => {
                tracing::debug!(error = %e, "a lease holder's link: trying again");
                if shared.stop.load(Ordering::Relaxed) {
                    return;
                }
                // Lets the others linking go first.
                drop(permit);
                tokio::time::sleep(Duration::from_millis(50)).await;
                let Ok(again) = shared.connecting.acquire().await else {
                    return;
                };
                permit = again;
            }
        }
    };
    drop(permit);
    let mut holder = LeaseHolder::new(control, node.id(), session);
    let mut held = false;
    let mut first = true;
    while !shared.stop.load(Ordering::Relaxed) {
        if !first {
            tokio::time::sleep(holder.wait()).await;
        }
        first = false;
        let measuring = shared.measuring.load(Ordering::Relaxed);
        match holder.renew().await {
            Ok(took) => {
                if !held {
                    held = true;
                    shared.holding.fetch_add(1, Ordering::Relaxed);
                }
                if measuring {
                    let us = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
                    shared.latencies().push(us);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "a lease holder's renewal failed");
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    node.shutdown();
}

/// CPU time of every thread of process `pid`, nanoseconds.
fn cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(task) = task else { continue };
        let Ok(sched) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        total += sched
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

fn quantile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q) as usize).min(sorted.len() - 1);
    sorted.get(i).map_or(f64::NAN, |v| f64::from(*v))
}

/// Threads the holders share.
const THREADS: usize = 2;
/// Holders starting their node and link at once: below the handshakes
/// the leader takes from one address at a time (16).
const CONNECTING: usize = 8;
/// When the measurement window starts, as the report says it.
const WINDOW_STARTS: &str = "once every holder held a lease and then two whole leases (3 s each) passed without a failed renewal (or 30 s did)";
/// How long the leader's CPU and the renewals are measured.
const WINDOW: Duration = Duration::from_secs(10);
