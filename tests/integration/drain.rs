//! `swarm drain` against a local cluster of node processes (one head, two
//! workers): what moves, moves; an actor that cannot move keeps running
//! and the drain stops with its reason and exit status 1, unless
//! `--force`; a node the drain lets go leaves and its process exits 0.

use std::time::Duration;

use swarm::control::Control;
use swarm_cli::demo::{Deposit, Ledger};
use swarm_cli::local::LocalCluster;

use crate::util::{admin_code, driver, exe, exit_within, place_ledger, scratch, swarm_json};

/// One head (n1), two workers (n2, n3).
fn start(name: &str) -> LocalCluster {
    let mut cluster = LocalCluster::start_control(&exe(), &scratch(name), 1, 2, &[]).unwrap();
    cluster.remove_dir_on_drop(true);
    cluster
}

/// Runs `swarm drain NODE --json MORE` as the admin operator (with its
/// TOTP code: each cluster's admin logs in once) and answers its exit
/// status, its JSON report and its stderr.
pub(crate) fn drain(
    cluster: &LocalCluster,
    node: &str,
    more: &[&str],
) -> (bool, serde_json::Value, String) {
    let seed = cluster.nodes[0].addr.to_string();
    let out = std::process::Command::new(exe())
        .args(["drain", node, "--json", "--node", &seed, "--config"])
        .arg(cluster.admin_config())
        .args(["--totp", &admin_code(&cluster.dir)])
        .args(more)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {stderr}"));
    (out.status.success(), report, stderr)
}

/// `swarm COMMAND --json MORE` as the driver (an operator without a second
/// factor).
fn as_driver(cluster: &LocalCluster, command: &str, more: &[&str]) -> serde_json::Value {
    let seed = cluster.nodes[0].addr.to_string();
    let config = cluster.driver_config();
    let mut args = vec![command, "--config", config.to_str().unwrap()];
    args.extend(["--node", &seed, "--json"]);
    args.extend(more);
    swarm_json(&args)
}

/// The row of `swarm actors` for `name`.
fn actor_row(cluster: &LocalCluster, name: &str) -> serde_json::Value {
    let rows = as_driver(cluster, "actors", &[]);
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {rows}"))
        .clone()
}

/// Polls the cluster's events (`swarm console --once events`) until one
/// matches, 10 s at most.
fn event(
    cluster: &LocalCluster,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut events = serde_json::Value::Null;
    let found =
        crate::util::poll_until(Duration::from_secs(10), Duration::from_millis(200), || {
            events = as_driver(cluster, "console", &["--once", "events"]);
            events
                .as_array()
                .unwrap()
                .iter()
                .find(|e| matches(e))
                .cloned()
        });
    found.unwrap_or_else(|| panic!("no such event in {events}"))
}

/// The node process named `name`.
fn process<'a>(cluster: &'a mut LocalCluster, name: &str) -> &'a mut std::process::Child {
    &mut cluster
        .nodes
        .iter_mut()
        .find(|n| n.name == name)
        .unwrap()
        .child
}

#[test]
fn a_drain_that_cannot_move_a_pinned_actor_stops_with_the_reason_and_the_actor_keeps_running() {
    let mut cluster = start("drain-pinned");
    place_ledger(&cluster, "pinned", "node:n2");
    place_ledger(&cluster, "free", "node:n2:soft");
    assert_eq!(actor_row(&cluster, "free")["node_name"], "n2");

    let (ok, report, stderr) = drain(&cluster, "n2", &[]);
    assert!(!ok, "a drain that leaves an actor behind fails: {report}");
    assert!(stderr.contains("the drain of n2 stopped"), "{stderr}");
    assert_eq!(report["left"], false, "{report}");
    assert_eq!(
        (report["moved"].as_u64(), report["stayed"].as_u64()),
        (Some(1), Some(1))
    );
    let pinned = &report["actors"][0];
    assert_eq!(
        pinned["name"], "pinned",
        "what did not move comes first: {report}"
    );
    assert_eq!(pinned["outcome"], "cannot move");
    let reason = pinned["reason"].as_str().unwrap();
    assert!(
        reason.contains("unschedulable: its placement requires node n2"),
        "the real reason, not 'no capacity': {reason}"
    );
    assert_eq!(report["actors"][1]["outcome"], "moved");
    assert_ne!(report["actors"][1]["node_name"], "n2");

    // The same incarnation still answers on n2 (the deposit lands on its
    // opening balance: it was neither stopped nor started again).
    let n2 = cluster.nodes.iter().find(|n| n.name == "n2").unwrap().id;
    actix::System::new().block_on(async {
        let driver = driver(&cluster).await;
        let control: Control = driver.control().unwrap().clone();
        let ledger = control.lookup::<Ledger>("pinned").await.unwrap();
        let balance = ledger.send(Deposit(1)).await.unwrap();
        assert_eq!((balance.node, balance.total), (n2, 8));
        driver.close().await;
    });
    let row = actor_row(&cluster, "pinned");
    assert_eq!(
        (&row["node_name"], &row["state"]),
        (&"n2".into(), &"running".into())
    );

    // The console shows the refusal and the drain's outcome.
    let refused = event(&cluster, |e| {
        e["kind"] == "drain refused" && e["subject"] == "pinned"
    });
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("its placement requires node n2"),
        "{refused}"
    );
    let drained = event(&cluster, |e| e["kind"] == "drain" && e["subject"] == "n2");
    assert!(
        drained["detail"]
            .as_str()
            .unwrap()
            .contains("drain stopped"),
        "{drained}"
    );

    // n2 stays, and takes placements again.
    let n2_process = process(&mut cluster, "n2");
    assert!(n2_process.try_wait().unwrap().is_none(), "n2 still runs");
    place_ledger(&cluster, "later", "node:n2");
    assert_eq!(actor_row(&cluster, "later")["node_name"], "n2");
}

#[test]
fn a_forced_drain_stops_the_pinned_actor_records_why_and_the_node_exits() {
    let mut cluster = start("drain-force");
    place_ledger(&cluster, "pinned", "node:n2");

    let (ok, report, stderr) = drain(&cluster, "n2", &["--force"]);
    assert!(ok, "{stderr}");
    assert_eq!(report["left"], true, "{report}");
    assert_eq!(report["stopped"], 1, "{report}");
    let pinned = &report["actors"][0];
    assert_eq!(pinned["outcome"], "stopped");
    assert!(
        pinned["reason"]
            .as_str()
            .unwrap()
            .contains("its placement requires node n2"),
        "{report}"
    );

    // Recorded failed with the real reason.
    let row = actor_row(&cluster, "pinned");
    let state = row["state"].as_str().unwrap();
    assert!(
        state.starts_with("failed: stopped by a forced drain of n2")
            && state.contains("its placement requires node n2"),
        "{row}"
    );
    event(&cluster, |e| {
        e["kind"] == "failed" && e["subject"] == "pinned"
    });

    // n2 left, and its process ended cleanly.
    let status = exit_within(process(&mut cluster, "n2"), Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "n2's process: {status:?}"
    );
}

#[test]
fn a_drained_node_whose_actors_all_move_leaves_and_its_process_exits() {
    let mut cluster = start("drain-moves");
    place_ledger(&cluster, "free", "label:worker");
    let from = actor_row(&cluster, "free")["node_name"]
        .as_str()
        .unwrap()
        .to_owned();

    let (ok, report, stderr) = drain(&cluster, &from, &[]);
    assert!(ok, "{stderr}");
    assert_eq!(report["left"], true, "{report}");
    assert_eq!(report["moved"], 1, "{report}");
    let moved = &report["actors"][0];
    assert_eq!(moved["outcome"], "moved");
    let to = moved["node_name"].as_str().unwrap().to_owned();
    assert!(to != from && to.starts_with('n'), "{report}");
    assert!(moved["epoch"].as_u64().is_some(), "{report}");

    let status = exit_within(process(&mut cluster, &from), Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{from}'s process: {status:?}"
    );
    // It runs where the report says.
    let mut row = serde_json::Value::Null;
    let running =
        crate::util::poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
            row = actor_row(&cluster, "free");
            (row["state"] == "running" && row["node_name"] == to.as_str()).then_some(())
        });
    assert!(running.is_some(), "not running on {to}: {row}");
}
