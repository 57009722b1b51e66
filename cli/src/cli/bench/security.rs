//! `swarm bench security`: what the security layer costs, each figure
//! beside its baseline from the same run.
//!
//! - Policy: ask round trip and tells/s between two nodes with no policy
//!   and with a 20-rule policy on the receiver (decided once per link and
//!   target and tag, then remembered).
//! - Sealing: Raft commit latency of a one-head control plane whose store
//!   seals every value (AES-256-GCM under a keyring) against one that
//!   stores them plain.
//! - Start: opening a keyring with a passphrase (argon2id, the default
//!   cost) against a key file, and a node's whole start with each.
//! - Capabilities: what a node pays to verify an operator's capability
//!   (every delegated call does), beside the ask round trip it rides on.
//! - Logins: password checks per second through the head leader's bounded
//!   pool (the default size), kept full.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;
use swarm::credentials::{Keyring, Throwaway, Unlock};
use swarm::policy::{Policy, PolicyFile, Rule};
use swarm::{MeshConfig, Node};
use swarm_protocol::sealed::keyring::KdfParams;

use super::measure::pair;

/// The figures.
#[derive(Debug, Serialize)]
pub(crate) struct SecurityReport {
    ask_rtt_p50_us_no_policy: f64,
    ask_rtt_p50_us_policy_20: f64,
    tells_per_s_no_policy: f64,
    tells_per_s_policy_20: f64,
    raft_commit_p50_us_plain: f64,
    raft_commit_p50_us_sealed: f64,
    argon2id_ms: f64,
    argon2id_params: String,
    node_start_ms_key_file: f64,
    node_start_ms_passphrase: f64,
    capability_verify_us: f64,
    login_pool_threads: usize,
    login_pool_checks_per_s: f64,
}

impl SecurityReport {
    pub(crate) fn table(&self) -> String {
        let ratio = |a: f64, b: f64| format!("{:+.1}%", 100.0 * (a / b - 1.0));
        let rows = [
            (
                "ask RTT p50, 20-rule policy",
                format!(
                    "{:.1} us vs {:.1} ({})",
                    self.ask_rtt_p50_us_policy_20,
                    self.ask_rtt_p50_us_no_policy,
                    ratio(self.ask_rtt_p50_us_policy_20, self.ask_rtt_p50_us_no_policy)
                ),
                "within 3%",
            ),
            (
                "tells/s, 20-rule policy",
                format!(
                    "{:.0} vs {:.0} ({})",
                    self.tells_per_s_policy_20,
                    self.tells_per_s_no_policy,
                    ratio(self.tells_per_s_policy_20, self.tells_per_s_no_policy)
                ),
                "within 3%",
            ),
            (
                "Raft commit p50, sealed",
                format!(
                    "{:.0} us vs {:.0} ({})",
                    self.raft_commit_p50_us_sealed,
                    self.raft_commit_p50_us_plain,
                    ratio(
                        self.raft_commit_p50_us_sealed,
                        self.raft_commit_p50_us_plain
                    )
                ),
                "within 10%",
            ),
            (
                "argon2id (passphrase)",
                format!("{:.0} ms ({})", self.argon2id_ms, self.argon2id_params),
                "OWASP minimum",
            ),
            (
                "capability verification",
                format!(
                    "{:.1} us first use ({:.0}% of an ask RTT)",
                    self.capability_verify_us,
                    100.0 * self.capability_verify_us / self.ask_rtt_p50_us_no_policy
                ),
                "once per capability per node",
            ),
            (
                "node start to READY, passphrase",
                format!(
                    "{:.1} ms vs {:.1} key file",
                    self.node_start_ms_passphrase, self.node_start_ms_key_file
                ),
                "< 1000 ms",
            ),
            (
                "password logins/s, bounded pool",
                format!(
                    "{:.0}/s ({} threads)",
                    self.login_pool_checks_per_s, self.login_pool_threads
                ),
                "bounded",
            ),
        ];
        let mut out = format!("{:<30} {:>36}   {}\n", "metric", "measured", "target");
        for (name, value, target) in rows {
            out.push_str(&format!("{name:<30} {value:>36}   {target}\n"));
        }
        out
    }
}

/// Twenty rules, none of which matches the benchmark's traffic: every one
/// is evaluated when a link first sends a (target, tag).
fn twenty_rules() -> Policy {
    let rule = |i: usize| Rule {
        roles: vec![format!("role-{i}")],
        to: vec![format!("service:svc-{i}"), format!("actor-{i}-*")],
        tags: vec![format!("app{i}.>")],
    };
    Policy::new(&PolicyFile {
        allow: (0..10).map(rule).collect(),
        deny: (10..20).map(rule).collect(),
    })
    .unwrap_or_default()
}

pub(crate) fn run(scale: f64, exe: &std::path::Path) -> Result<SecurityReport> {
    let n = move |base: u64| ((base as f64 * scale).max(1.0)) as u64;
    // Alternate the two, three times, and take each one's median: the
    // machine's state drifts over a run more than the policy costs.
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        off.push(link(None, n)?);
        on.push(link(Some(twenty_rules()), n)?);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a_ask, a_tells) = (
        median(&mut off.iter().map(|x| x.0).collect()),
        median(&mut off.iter().map(|x| x.1).collect()),
    );
    let (b_ask, b_tells) = (
        median(&mut on.iter().map(|x| x.0).collect()),
        median(&mut on.iter().map(|x| x.1).collect()),
    );
    let (plain, sealed) = raft(n(100) as usize, 4)?;
    let (argon2id_ms, start_key, start_pass) = start(exe)?;
    let login_pool_threads = swarm::control::DEFAULT_LOGIN_POOL;
    let login_pool_checks_per_s = login_pool(login_pool_threads, n(100) as usize)?;
    let p = KdfParams::DEFAULT;
    Ok(SecurityReport {
        ask_rtt_p50_us_no_policy: a_ask,
        ask_rtt_p50_us_policy_20: b_ask,
        tells_per_s_no_policy: a_tells,
        tells_per_s_policy_20: b_tells,
        raft_commit_p50_us_plain: plain,
        raft_commit_p50_us_sealed: sealed,
        argon2id_ms,
        argon2id_params: format!("m={} MiB, t={}, p={}", p.m_kib / 1024, p.t, p.p),
        node_start_ms_key_file: start_key,
        node_start_ms_passphrase: start_pass,
        capability_verify_us: capability_verify(n(2_000) as usize),
        login_pool_threads,
        login_pool_checks_per_s,
    })
}

/// Password checks per second through a pool of `threads`, `checks` of
/// them, one caller per thread so that the pool stays full.
fn login_pool(threads: usize, checks: usize) -> Result<f64> {
    use swarm::operators::checks::PasswordChecks;
    use swarm::operators::password::PasswordHash;
    let pool = Arc::new(PasswordChecks::new(threads));
    let hash = PasswordHash::new("a password for the bench").map_err(anyhow::Error::msg)?;
    let each = checks.div_ceil(threads).max(1);
    actix_rt::System::new().block_on(async move {
        let started = Instant::now();
        let mut callers = Vec::new();
        for _ in 0..threads {
            let (pool, hash) = (Arc::clone(&pool), hash.clone());
            callers.push(actix_rt::spawn(async move {
                for _ in 0..each {
                    let check = pool
                        .check(Some(hash.clone()), "not the password".to_owned().into())
                        .map_err(|_| anyhow::anyhow!("the pool was busy"))?;
                    check.await;
                }
                anyhow::Ok(())
            }));
        }
        for caller in callers {
            caller.await??;
        }
        Ok((each * threads) as f64 / started.elapsed().as_secs_f64())
    })
}

/// Microseconds to verify one operator capability (the median of five
/// rounds of `rounds` verifications).
fn capability_verify(rounds: usize) -> f64 {
    use swarm::protocol::capability::{CapabilityKey, Claims};

    let key = CapabilityKey::from_seed(&[7; 32]);
    let now = swarm::credentials::unix_now() * 1000;
    let claims = Claims {
        name: "alice".into(),
        serial: 42,
        node: swarm::NodeId::from_bytes([3; 16]),
        roles: vec!["operator".into(), "admin".into()],
        source: std::net::IpAddr::from([127, 0, 0, 1]),
        term: 3,
        issued_ms: now,
        expires_ms: now + 60_000,
        delegate: Some(swarm::NodeId::from_bytes([4; 16])),
    };
    let Ok(capability) = key.sign(&claims) else {
        return f64::NAN;
    };
    let public = key.public();
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..rounds.max(1) {
                let _ = std::hint::black_box(capability.open_checked(&public, now + 1));
            }
            started.elapsed().as_secs_f64() * 1e6 / rounds.max(1) as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Ask p50 (us) and tells/s from a to b, b with `policy`.
fn link(policy: Option<Policy>, n: impl Fn(u64) -> u64 + Send + 'static) -> Result<(f64, f64)> {
    let tune = |b: &mut MeshConfig| {
        if let Some(policy) = policy {
            b.policy = Arc::new(policy);
        }
    };
    pair(tune, n)
}

/// Raft commit p50 (us) of one-head control planes, plain and sealed:
/// `rounds` fresh heads of each, alternating, `writes` commits each.
fn raft(writes: usize, rounds: usize) -> Result<(f64, f64)> {
    let dir = std::env::temp_dir().join(format!("swarm-bench-security-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut samples = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (i, sealed) in [false, true].into_iter().enumerate() {
            let store = dir.join(format!("{round}-{sealed}"));
            let keyring = Throwaway::keyring(&dir)?;
            let times =
                actix::System::new().block_on(commits(store, sealed.then_some(keyring), writes))?;
            samples[i].extend(times);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let p50 = |v: &mut Vec<Duration>| {
        v.sort();
        v.get(v.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    let [mut plain, mut sealed] = samples;
    Ok((p50(&mut plain), p50(&mut sealed)))
}

/// One head (sealing with `keyring` if given): the time of `writes`
/// commits (each a revocation of an unused serial).
async fn commits(
    store: std::path::PathBuf,
    keyring: Option<Keyring>,
    writes: usize,
) -> Result<Vec<Duration>> {
    let ca = Throwaway::new("bench");
    let mut c = MeshConfig::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        ca.node("h", &["head", "worker", "admin"]),
    );
    c.cluster = Some(swarm::ClusterConfig::default());
    let mut head = swarm::control::HeadConfig::new(&store);
    if let Some(keyring) = keyring {
        head.seal = Arc::new(keyring);
    }
    c.head = Some(head);
    let node = Node::start(c).await?;
    let control = node
        .control()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no control"))?;
    // Until the head leads.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut serial = 1u64 << 62;
    while control.revoke(serial, "warm-up").await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "the head never led");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut times = Vec::with_capacity(writes);
    for _ in 0..writes {
        serial += 1;
        let t = Instant::now();
        control.revoke(serial, "bench").await?;
        times.push(t.elapsed());
    }
    node.close().await;
    Ok(times)
}

/// argon2id alone (ms), and a `swarm node start` process's time to READY
/// (ms, median of 5) with its keyring opened by a key file and by a
/// passphrase.
const PASSPHRASE: &str = "bench passphrase 42";

fn start(exe: &std::path::Path) -> Result<(f64, f64, f64)> {
    let dir = std::env::temp_dir().join(format!("swarm-bench-start-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let key_dir = dir.join("key");
    let pass_dir = dir.join("pass");
    let ca = Throwaway::new("bench");
    ca.write_files(&key_dir, &["n1"])?;
    ca.write_files(&pass_dir, &["n1"])?;
    let passphrase = Unlock::Passphrase(zeroize::Zeroizing::new(PASSPHRASE.to_owned()));
    Keyring::passwd(
        &swarm::credentials::keyring_path(&pass_dir),
        &Unlock::KeyFile(pass_dir.join(swarm::credentials::THROWAWAY_KEY_FILE)),
        &passphrase,
        KdfParams::DEFAULT,
    )?;
    let t = Instant::now();
    Keyring::open(&swarm::credentials::keyring_path(&pass_dir), &passphrase)?;
    let argon2id_ms = t.elapsed().as_secs_f64() * 1e3;
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let mut medians = [0.0; 2];
    for (i, (d, pass)) in [(&key_dir, false), (&pass_dir, true)]
        .into_iter()
        .enumerate()
    {
        let text = swarm::config::NodeFile::render("bench", "n1", any, &[], &[]);
        let text = if pass {
            text.lines()
                .filter(|l| !l.starts_with("keyring_key"))
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            text
        };
        let path = d.join("n1.toml");
        std::fs::write(&path, text)?;
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let mut command = std::process::Command::new(exe);
            command
                .args(["node", "start", "--config"])
                .arg(&path)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null());
            if pass {
                command
                    .args(["--passphrase-env", "SWARM_BENCH_PASSPHRASE"])
                    .env("SWARM_BENCH_PASSPHRASE", PASSPHRASE);
            }
            let mut child = command.spawn()?;
            let mut line = String::new();
            if let Some(out) = child.stdout.take() {
                std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)?;
            }
            times.push(t.elapsed().as_secs_f64() * 1e3);
            let _ = child.kill();
            let _ = child.wait();
            anyhow::ensure!(
                line.starts_with("READY"),
                "the node did not start: {line:?}"
            );
        }
        times.sort_by(f64::total_cmp);
        medians[i] = times[times.len() / 2];
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok((argon2id_ms, medians[0], medians[1]))
}
