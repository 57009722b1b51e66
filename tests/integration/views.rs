//! Operator views at scale on real processes: `swarm actors --json` lists
//! every named actor of a cluster of the built binary (the head's records
//! read page by page, joined with each worker's host in one pass).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use swarm::control::Spawn;
use swarm_cli::demo::{Ledger, LedgerArgs};
use swarm_cli::local::LocalCluster;

use crate::util::{driver, exe, scratch, spawn_many, spawn_ready, swarm_json};

/// 100,000 named actors (ten pages of the head's listing) on 3 heads and
/// 3 workers: `swarm actors --json` lists each once, and every one is
/// running once the hosts started them.
#[actix_rt::test]
#[ignore = "stress: 100,000 named actors on six processes, minutes"]
async fn stress_swarm_actors_lists_a_hundred_thousand_named_actors_each_once_running() {
    const ACTORS: usize = 100_000;
    let mut cluster = LocalCluster::start_control(
        &exe(),
        &scratch("views-100k"),
        3,
        3,
        &["--workload", "demo"],
    )
    .unwrap();
    cluster.remove_dir_on_drop(true);
    let driver = driver(&cluster).await;
    let control = driver.control().unwrap().clone();
    spawn_ready(&control, || {
        Spawn::<Ledger>::named("first").args(LedgerArgs { opening: 0 })
    })
    .await;
    let acknowledged = spawn_many(&control, ACTORS, 64, 6).await;
    assert!(
        acknowledged > ACTORS * 99 / 100,
        "{acknowledged} spawns acknowledged"
    );
    let config = cluster.driver_config();
    let config = config.to_str().unwrap().to_owned();
    let seed = cluster.nodes[0].addr.to_string();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut poll = tokio::time::interval(Duration::from_secs(2));
    loop {
        poll.tick().await;
        let args = ["actors", "--config", &config, "--node", &seed, "--json"];
        let rows = tokio::task::spawn_blocking({
            let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
            move || {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                swarm_json(&refs)
            }
        })
        .await
        .unwrap();
        let rows = rows.as_array().unwrap().clone();
        let names: BTreeSet<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
        assert_eq!(names.len(), rows.len(), "a name listed twice");
        assert!(rows.len() > acknowledged, "{} rows", rows.len());
        let running = rows.iter().filter(|r| r["state"] == "running").count();
        if running == rows.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{running} of {} running after 10 minutes",
            rows.len()
        );
    }
    driver.shutdown();
}
