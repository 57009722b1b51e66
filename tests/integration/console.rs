//! `swarm console --once VIEW` against a local cluster of node processes:
//! the operator attaches to one member, every member answers with its own
//! snapshot, and the console joins them (as JSON or a table).

use std::time::{Duration, Instant};

use swarm_cli::local::LocalCluster;

use crate::util::{admin_code, exe, place_account, poll_until, scratch};

/// Runs `swarm console` as the driver (roles worker and operator: no
/// second factor), or as the admin operator with its current TOTP code (a
/// code logs in once: one run per 30 s step).
fn console(cluster: &LocalCluster, admin: bool, args: &[&str]) -> std::process::Output {
    let seed = cluster.nodes[0].addr.to_string();
    let mut command = std::process::Command::new(exe());
    if admin {
        let config = cluster.admin_config();
        let code = admin_code(&cluster.dir);
        command.args([
            "console",
            "--config",
            config.to_str().unwrap(),
            "--totp",
            &code,
        ]);
    } else {
        let config = cluster.driver_config();
        command.args(["console", "--config", config.to_str().unwrap()]);
    }
    command
        .args(["--node", seed.as_str()])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_console_joins_every_members_own_snapshot_once_as_json_or_a_table() {
    let mut cluster =
        LocalCluster::start_control(&exe(), &scratch("console-once"), 1, 2, &[]).unwrap();
    cluster.remove_dir_on_drop(true);

    // The head group forms and the members' leases carry the session key:
    // poll until every member answers.
    let mut last = None;
    let nodes = poll_until(Duration::from_secs(60), Duration::from_millis(200), || {
        let out = console(&cluster, false, &["--once", "nodes", "--json"]);
        let answered = out
            .status
            .success()
            .then(|| serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap());
        last = Some(out);
        answered.filter(|nodes| {
            let rows = nodes.as_array().unwrap();
            rows.len() == 3 && rows.iter().all(|n| n["local"].is_object())
        })
    })
    .unwrap_or_else(|| {
        let out = last.expect("the console ran at least once");
        panic!(
            "not every member answered: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["n1", "n2", "n3"]);
    let head = &nodes[0]["local"]["head"];
    assert_eq!(head["role"], "leader", "{nodes}");
    assert!(nodes[1]["local"]["head"].is_null());
    assert!(nodes[1]["local"]["uptime_s"].is_u64());

    // Every member's actors, each from its own node.
    let out = console(&cluster, false, &["--once", "actors", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let actors: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let inspectors: Vec<&str> = actors
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["name"] == "swarm.inspect")
        .map(|a| a["node_name"].as_str().unwrap())
        .collect();
    assert_eq!(inspectors.len(), 3, "{actors}");
    // The console's own inspections reached n1's inspector.
    let n1 = actors
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "swarm.inspect" && a["node_name"] == "n1")
        .unwrap();
    assert!(n1["messages"].as_u64().unwrap() >= 1, "{n1}");

    // A durable actor's journal, as its node reports it.
    place_account(&cluster);
    let account = poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        let out = console(&cluster, false, &["--once", "actors", "--json"]);
        let actors: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        actors
            .as_array()?
            .iter()
            .find(|a| a["name"] == "account" && a["durable"].is_object())
            .cloned()
    })
    .expect("the account's journal is listed");
    let journal = &account["durable"];
    assert_eq!(journal["backend"], "embedded", "{account}");
    assert_eq!(journal["epoch"], account["epoch"], "{account}");
    assert!(journal["recovery_ms"].as_f64().unwrap() > 0.0, "{account}");
    assert!(journal["last_seq"].is_u64() && journal["claim"].is_u64());

    // A table, for people, as an operator certificate with its TOTP code.
    let out = console(&cluster, true, &["--once", "links"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("NODE"), "{table}");
    assert!(table.contains("admin"), "the console's own link: {table}");

    // An unknown view is refused before anything connects.
    let out = console(&cluster, false, &["--once", "everything"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nodes, actors, links"));
}

/// `--frames` refreshes without a terminal and reports; a cluster without
/// heads has no control plane to wait for.
#[test]
fn headless_frames_report_every_member_of_a_cluster_without_heads() {
    let mut cluster = LocalCluster::start(&exe(), &scratch("console-frames"), 2, &[]).unwrap();
    cluster.remove_dir_on_drop(true);
    let config = cluster.driver_config();
    let seed = cluster.nodes[0].addr.to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        let out = std::process::Command::new(exe())
            .args([
                "console",
                "--config",
                config.to_str().unwrap(),
                "--node",
                &seed,
            ])
            .args(["--frames", "2", "--refresh-ms", "200"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: swarm_cli::console::FramesReport = serde_json::from_slice(&out.stdout).unwrap();
        if report.answered == 2 {
            break report;
        }
        assert!(
            Instant::now() < deadline,
            "not every member answered: {report:?}"
        );
    };
    assert_eq!((report.frames, report.nodes), (2, 2));
    assert!(report.actors > 0 && report.peak_rss_mib > 0.0, "{report:?}");
    // No refresh waited for a control-plane leader that does not exist
    // (a client looks for one for 10 s).
    assert!(report.poll_ms_max < 5_000.0, "{report:?}");
}
