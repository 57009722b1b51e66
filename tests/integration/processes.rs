//! Nodes as real child processes of the built `swarm` binary.

use crate::util::{driver, exe, scratch, CRASH_FAILOVER_BOUND};
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use swarm::config::NodeFile;
use swarm::AskError;
use swarm_cli::demo::{Add, Adder, Forward, Relay};
use swarm_cli::local::LocalCluster;

#[actix_rt::test]
async fn three_processes_answer_relayed_asks() {
    let mut cluster =
        LocalCluster::start(&exe(), &scratch("three"), 3, &["--workload", "demo"]).unwrap();
    cluster.remove_dir_on_drop(true);
    let driver = driver(&cluster).await;
    let ids: Vec<_> = cluster.nodes.iter().map(|n| n.id).collect();
    for n in &cluster.nodes {
        assert_eq!(driver.connect(n.addr).await.unwrap().id, n.id);
    }
    for i in 0..3 {
        let relay = driver.remote::<Relay>(ids[i], "relay");
        let next = (i + 1) % 3;
        let (sum, via) = relay
            .send(Forward {
                node: ids[next],
                add: Add {
                    a: i as u64,
                    b: 100,
                },
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(sum, i as u64 + 100);
        assert_eq!(via, format!("n{}", next + 1));
    }
}

#[actix_rt::test]
async fn sigkilled_process_fails_asks_with_typed_error_and_others_keep_serving() {
    let mut cluster =
        LocalCluster::start(&exe(), &scratch("kill"), 2, &["--workload", "demo"]).unwrap();
    cluster.remove_dir_on_drop(true);
    let driver = driver(&cluster).await;
    let (victim, survivor) = (cluster.nodes[0].id, cluster.nodes[1].id);
    for n in &cluster.nodes {
        driver.connect(n.addr).await.unwrap();
    }
    let on_victim = driver.remote::<Adder>(victim, "adder");
    assert_eq!(on_victim.send(Add { a: 1, b: 1 }).await.unwrap(), 2);
    cluster.kill(0).unwrap();
    let started = Instant::now();
    let err = on_victim
        .send_timeout(Add { a: 1, b: 1 }, Duration::from_secs(3))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AskError::LinkDown { .. } | AskError::Unreachable { .. } | AskError::Timeout { .. }
        ),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "within the timeout"
    );
    let on_survivor = driver.remote::<Adder>(survivor, "adder");
    assert_eq!(on_survivor.send(Add { a: 2, b: 2 }).await.unwrap(), 4);
}

#[test]
fn manual_launch_with_ca_cert_node_start_and_ping() {
    let dir = scratch("manual");
    std::fs::create_dir_all(&dir).unwrap();
    // The keyring opens with a passphrase from the environment here.
    let run = |args: &[&str]| {
        Command::new(exe())
            .args(args)
            .args(["--passphrase-env", "SWARM_TEST_PASSPHRASE"])
            .env("SWARM_TEST_PASSPHRASE", "manual launch passphrase")
            .current_dir(&dir)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let swarm = |args: &[&str]| {
        let out = run(args);
        assert!(
            out.status.success(),
            "swarm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    swarm(&["ca", "init", "--dir", "."]);
    swarm(&["cert", "issue", "--name", "n1", "--roles", "worker,head"]);
    swarm(&["cert", "issue", "--name", "client", "--roles", "worker"]);
    // A second init must not silently replace the CA.
    let again = run(&["ca", "init"]);
    assert!(!again.status.success());
    let any = "127.0.0.1:0".parse().unwrap();
    // Without `keyring_key` the keyring opens with the passphrase.
    let config = |name: &str| {
        NodeFile::render("manual", name, any, &[], &[])
            .lines()
            .filter(|l| !l.starts_with("keyring_key"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    std::fs::write(dir.join("n1.toml"), config("n1")).unwrap();
    std::fs::write(dir.join("client.toml"), config("client")).unwrap();

    // A node that cannot unseal refuses to start with one clear line.
    for (pass, expected) in [
        (
            None,
            "is sealed with a passphrase: give it with --passphrase-file",
        ),
        (
            Some("not the passphrase"),
            "does not open with this passphrase",
        ),
    ] {
        let mut start = Command::new(exe());
        start
            .args(["node", "start", "--config", "n1.toml"])
            .current_dir(&dir)
            .stdin(std::process::Stdio::null());
        if let Some(pass) = pass {
            start.args(["--passphrase-env", "WRONG"]).env("WRONG", pass);
        }
        let out = start.output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("swarm: keyring "), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }

    let mut node = Command::new(exe())
        .args(["node", "start", "--config"])
        .arg(dir.join("n1.toml"))
        .args(["--passphrase-env", "SWARM_TEST_PASSPHRASE"])
        .env("SWARM_TEST_PASSPHRASE", "manual launch passphrase")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(node.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line
        .split_whitespace()
        .nth(1)
        .expect("READY line")
        .to_owned();
    let out = swarm(&["ping", &addr, "--config", "client.toml", "--count", "2"]);
    // SIGTERM stops the node cleanly.
    let term = Command::new("kill")
        .args(["-TERM", &node.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(node.wait()));
    let status = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("node stops on SIGTERM within 10 s")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(out.contains("connected to n1"), "{out}");
    assert!(out.contains("roles worker,head"), "{out}");
    assert_eq!(out.matches("reply from n1").count(), 2, "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["ca", "init", "--help"],
        vec!["cert", "issue", "--help"],
        vec!["node", "start", "--help"],
        vec!["ping", "--help"],
        vec!["demo", "--help"],
        vec!["bench", "link", "--help"],
    ] {
        let out = Command::new(exe()).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}

/// `swarm demo`: 3 heads and 3 workers, the workload, then a named actor
/// placed on a TPU node, SIGKILLed and answering again from elsewhere
/// within the README's crash bound (generously: [`CRASH_FAILOVER_BOUND`]).
#[test]
fn demo_command_runs_the_workload_and_a_failover_and_exits_zero() {
    let out = Command::new(exe()).arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("n1.relay -> n2.adder: 10 + 7 = 17"),
        "{stdout}"
    );
    assert!(
        stdout.contains("sum of squares 1..300 = 9045050"),
        "{stdout}"
    );
    assert!(
        stdout.contains("10000 tells to n2.counter arrived in order"),
        "{stdout}"
    );
    assert!(stdout.contains("one of the two TPU nodes"), "{stdout}");
    // `"account" answered again from n5 after 560 ms (...)`
    let took = stdout
        .lines()
        .find_map(|l| l.split_once("\"account\" answered again from "))
        .and_then(|(_, rest)| rest.split_once(" after "))
        .and_then(|(_, rest)| rest.split_once(" ms"))
        .and_then(|(ms, _)| ms.parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or_else(|| panic!("no failover time: {stdout}"));
    eprintln!("crash failover in the demo (SIGKILL to the next answer): {took:?}");
    assert!(
        took <= CRASH_FAILOVER_BOUND,
        "the demo's crash failover took {took:?}, over {CRASH_FAILOVER_BOUND:?}: {stdout}"
    );
    assert!(stdout.contains("all results correct"), "{stdout}");
}

#[test]
fn bench_link_json_smoke_run_reports_every_figure() {
    let out = Command::new(exe())
        .args(["bench", "link", "--json", "--scale", "0.01"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "ask_rtt_p50_us",
        "ask_rtt_p99_us",
        "tell_msgs_per_s",
        "bulk_mb_per_s",
        "handshake_us",
        "idle_node_rss_mib",
        "raw_noise_rtt_p50_us",
        "raw_noise_msgs_per_s",
    ] {
        let value = report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {report}"));
        assert!(value > 0.0, "{key} measured: {report}");
    }
}

#[test]
fn refused_connections_are_logged_with_their_reason() {
    use std::io::Write;
    let node = LoggedNode::start("logs", "", "warn");
    let (addr, rx) = (node.addr.clone(), &node.lines);
    let mut garbage = std::net::TcpStream::connect(&addr).unwrap();
    garbage.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
    let mut http = std::net::TcpStream::connect(&addr).unwrap();
    http.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < 2 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if line.contains("handshake refused") {
                seen.push(line);
            }
        }
    }
    drop(node);
    assert_eq!(seen.len(), 2, "two refusals logged: {seen:?}");
    assert!(
        seen.iter().any(|l| l.contains("exceeds the maximum")),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|l| l.contains("remote=127.0.0.1:")),
        "{seen:?}"
    );
}

#[test]
fn a_flood_of_refused_connections_is_summarised_not_logged_line_by_line() {
    use std::io::Write;
    let node = LoggedNode::start("logflood", "summary_s = 1\n", "info");
    let (addr, rx) = (node.addr.clone(), &node.lines);
    const FLOOD: usize = 500;
    for _ in 0..FLOOD {
        let mut garbage = std::net::TcpStream::connect(&addr).unwrap();
        garbage.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
    }
    let (mut one_by_one, mut summarised, mut counters) = (0, 0u64, false);
    let deadline = Instant::now() + Duration::from_secs(15);
    while (summarised < (FLOOD as u64) / 2 || !counters) && Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        if line.contains("handshake refused") {
            one_by_one += 1;
        }
        if line.contains("(summarised)") {
            let total = line
                .split("total=")
                .nth(1)
                .and_then(|t| t.split_whitespace().next())
                .and_then(|t| t.parse::<u64>().ok())
                .expect("summary line with total");
            summarised += total;
        }
        if line.contains("node counters") && line.contains("handshakes_refused=") {
            counters = !line.contains("handshakes_refused=0 ");
        }
    }
    drop(node);
    assert!(one_by_one <= 20, "{one_by_one} refusals logged one by one");
    assert!(
        summarised >= (FLOOD as u64) / 2,
        "summaries cover {summarised} refusals"
    );
    assert!(counters, "no counters line with the refusals");
}

#[test]
fn a_certificate_pre_issued_with_not_before_is_refused_until_then() {
    let dir = scratch("notbefore");
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str]| {
        Command::new(exe())
            .args(args)
            .args(["--key-file", "keyring.key"])
            .current_dir(&dir)
            .output()
            .unwrap()
    };
    assert!(run(&["ca", "init", "--dir", "."]).status.success());
    let issued = run(&[
        "cert",
        "issue",
        "--name",
        "later",
        "--not-before",
        "2030-01-01",
    ]);
    assert!(issued.status.success());
    let stdout = String::from_utf8_lossy(&issued.stdout);
    assert!(
        stdout.contains("valid from 2030-01-01T00:00:00Z"),
        "{stdout}"
    );
    let bad = run(&["cert", "issue", "--name", "x", "--not-before", "next week"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("is not a time"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    std::fs::write(
        dir.join("later.toml"),
        NodeFile::render("c", "later", "127.0.0.1:0".parse().unwrap(), &[], &[]),
    )
    .unwrap();
    let start = run(&["node", "start", "--config", "later.toml"]);
    assert!(!start.status.success(), "a not-yet-valid node started");
    let stderr = String::from_utf8_lossy(&start.stderr);
    assert!(
        stderr.contains("not yet valid") || stderr.contains("valid"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A node process whose stderr lines arrive on `lines`; killed (and its
/// directory removed) on drop.
pub(crate) struct LoggedNode {
    child: std::process::Child,
    /// Where its mesh listens.
    pub(crate) addr: String,
    /// Its stderr, line by line.
    pub(crate) lines: std::sync::mpsc::Receiver<String>,
    dir: std::path::PathBuf,
    /// Its cluster's CA: in-process peers get their identities from it.
    pub(crate) ca: swarm::credentials::Throwaway,
}

impl LoggedNode {
    /// Starts node `n1` of a throw-away cluster, with `extra` TOML lines
    /// before the rendered configuration and `RUST_LOG=log`.
    pub(crate) fn start(cluster: &str, extra: &str, log: &str) -> Self {
        use std::io::BufRead;
        let dir = scratch(cluster);
        let ca = swarm::credentials::Throwaway::new(cluster);
        ca.write_files(&dir, &["n1"]).unwrap();
        let config = dir.join("n1.toml");
        let rendered = NodeFile::render(cluster, "n1", "127.0.0.1:0".parse().unwrap(), &[], &[]);
        std::fs::write(&config, format!("{extra}{rendered}")).unwrap();
        let mut child = Command::new(exe())
            .args(["node", "start", "--config"])
            .arg(&config)
            .env("RUST_LOG", log)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        let addr = ready
            .split_whitespace()
            .nth(1)
            .expect("READY line")
            .to_owned();
        let (tx, lines) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            addr,
            lines,
            dir,
            ca,
        }
    }
}

impl Drop for LoggedNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A node's own log at the default level (no `RUST_LOG`): members are
/// named as they come up, and GPUs declared with `--gpus` are not logged
/// as 0.
#[test]
fn a_nodes_default_log_names_members_and_its_declared_gpus() {
    let dir = scratch("default-log");
    let mut cluster = LocalCluster::start_members(&exe(), &dir, 2, &[]).unwrap();
    cluster.remove_dir_on_drop(true);
    // n2 again, as an operator would start it: its log on a pipe.
    cluster.kill(1).unwrap();
    let mut n2 = Command::new(exe())
        .args(["node", "start", "--gpus", "2", "--config"])
        .arg(dir.join("n2.toml"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = n2.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = Vec::new();
    while !log.iter().any(|l: &String| l.contains("member up")) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => log.push(line),
            Err(_) => break,
        }
    }
    let _ = n2.kill();
    let _ = n2.wait();
    let log = log.join("\n");
    let up = log.lines().find(|l| l.contains("member up"));
    assert!(
        up.is_some_and(|l| l.contains("name=\"n1\"")),
        "no member up naming n1 within 30 s:\n{log}"
    );
    assert!(!log.contains("0 GPUs"), "{log}");
}
