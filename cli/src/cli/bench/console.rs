//! `swarm bench console`: the console on a large cluster. N member nodes
//! (in this process, on two threads), each exposing M actors, and the
//! console as a child process (`swarm console --frames`) refreshing once
//! a second: what each refresh takes and the most memory it uses.

use std::path::Path;
use std::time::{Duration, Instant};

use actix::Arbiter;
use anyhow::{anyhow, Context as _, Result};
use swarm::credentials::Throwaway;
use swarm::Node;
use swarm_cli::console::FramesReport;
use swarm_cli::demo::Adder;

use super::measure::{config, on};

pub(crate) fn run(exe: &Path, nodes: usize, actors: usize, frames: u32) -> Result<FramesReport> {
    anyhow::ensure!(
        nodes >= 1 && frames >= 1,
        "--nodes and --frames must be at least 1"
    );
    let dir = std::env::temp_dir().join(format!("swarm-bench-console-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ca = Throwaway::new("bench");
    ca.write_identities(&dir, &[("console", &["worker", "operator"])])?;
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let text = swarm::config::NodeFile::render("bench", "console", any, &[], &[]);
    std::fs::write(dir.join("console.toml"), text)?;
    let exe = exe.to_owned();
    let report = actix::System::new().block_on(async move {
        let threads = [Arbiter::new(), Arbiter::new()];
        let result = cluster_and_console(&ca, &threads, &exe, &dir, (nodes, actors), frames).await;
        for thread in &threads {
            thread.stop();
        }
        result
    });
    report
}

async fn cluster_and_console(
    ca: &Throwaway,
    threads: &[Arbiter; 2],
    exe: &Path,
    dir: &Path,
    (nodes, actors): (usize, usize),
    frames: u32,
) -> Result<FramesReport> {
    let mut members: Vec<Node> = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let mut c = config(ca, &format!("n{}", i + 1));
        let seeds = members.first().map(Node::listen_addr).into_iter().collect();
        c.cluster = Some(swarm::ClusterConfig {
            seeds,
            ..swarm::ClusterConfig::default()
        });
        let thread = &threads[i % threads.len()];
        let node = Node::start_on(&thread.handle(), c).await?;
        let host = node.clone();
        on(thread, move || -> Result<()> {
            for k in 0..actors {
                host.spawn(format!("actor-{k}"), |_| Adder::default())?;
            }
            Ok(())
        })
        .await??;
        members.push(node);
    }
    let first = members.first().cloned().ok_or_else(|| anyhow!("no node"))?;
    // Until the first member sees every member alive.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let alive = match first.cluster() {
            Some(c) => c.members().await.map_or(0, |m| {
                m.iter()
                    .filter(|m| m.state == swarm::protocol::membership::MemberState::Alive)
                    .count()
            }),
            None => 0,
        };
        if alive == nodes {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {alive} of {nodes} members alive"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut console = std::process::Command::new(exe);
    console
        .arg("console")
        .arg("--config")
        .arg(dir.join("console.toml"))
        .args(["--node", &first.listen_addr().to_string()])
        .args(["--frames", &frames.to_string(), "--refresh-ms", "1000"])
        .stdin(std::process::Stdio::null());
    let out = tokio::task::spawn_blocking(move || console.output())
        .await
        .context("the console's waiter")?
        .context("cannot run the console")?;
    for node in &members {
        node.close().await;
    }
    let _ = std::fs::remove_dir_all(dir);
    anyhow::ensure!(
        out.status.success(),
        "the console failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).context("the console's report")
}
