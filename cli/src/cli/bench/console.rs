//! `swarm bench console`: the console on a large cluster. N member nodes
//! (in this process, on two threads), each exposing M actors, and the
//! console as a child process (`swarm console --frames`) refreshing once
//! a second: what each refresh takes and the most memory it uses. The
//! console records every refresh (written out after it is timed); a
//! refresh that did not list every member, or that a member did not
//! answer, fails the bench. Then `swarm members --json` and `swarm tasks
//! --json` against the first member, timed the same way ([`views`]).

use std::path::Path;
use std::time::{Duration, Instant};

use actix::Arbiter;
use anyhow::{anyhow, Context as _, Result};
use swarm::credentials::Throwaway;
use swarm::inspect::ClusterView;
use swarm::Node;
use swarm_cli::console::{record, FramesReport};
use swarm_cli::demo::Adder;

use super::measure::{config, on};
use super::views::{self, Views};

/// What `swarm bench console` prints: the console's refreshes, and the
/// operator views against the same cluster.
#[derive(Debug, serde::Serialize)]
pub(crate) struct ConsoleReport {
    #[serde(flatten)]
    pub(crate) console: FramesReport,
    /// The largest refresh as JSON, bytes: the view the admin API's
    /// stream (the dashboard) sends whole each refresh, gathered by the
    /// same collector as the console's.
    pub(crate) view_json_bytes: usize,
    /// `swarm members --json` and `swarm tasks --json` (none if they failed).
    pub(crate) views: Option<Views>,
    /// Why they failed.
    pub(crate) views_error: Option<String>,
}

impl ConsoleReport {
    pub(crate) fn table(&self) -> String {
        let mut out = self.console.table();
        out.push_str(&format!(
            "  a refresh as JSON (the dashboard's stream): {:.1} KiB\n",
            self.view_json_bytes as f64 / 1024.0
        ));
        if let Some(v) = &self.views {
            out.push_str(&v.table());
        }
        if let Some(e) = &self.views_error {
            out.push_str(&format!("views failed: {e}\n"));
        }
        out
    }
}

pub(crate) fn run(exe: &Path, nodes: usize, actors: usize, frames: u32) -> Result<ConsoleReport> {
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
) -> Result<ConsoleReport> {
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
    let recording = dir.join("frames.jsonl");
    let mut console = std::process::Command::new(exe);
    console
        .arg("console")
        .arg("--config")
        .arg(dir.join("console.toml"))
        .args(["--node", &first.listen_addr().to_string()])
        .args(["--frames", &frames.to_string(), "--refresh-ms", "1000"])
        .arg("--record")
        .arg(&recording)
        .stdin(std::process::Stdio::null());
    let out = tokio::task::spawn_blocking(move || console.output())
        .await
        .context("the console's waiter")?
        .context("cannot run the console")?;
    // The same identity and member as the console's.
    let (view_exe, view_config, seed) = (
        exe.to_owned(),
        dir.join("console.toml"),
        first.listen_addr(),
    );
    let viewed = tokio::task::spawn_blocking(move || views::run(&view_exe, &view_config, seed))
        .await
        .context("the views' waiter")?;
    for node in &members {
        node.close().await;
    }
    let recorded = record::load(&recording);
    let view_json_bytes = std::fs::read_to_string(&recording)
        .map_or(0, |text| text.lines().map(str::len).max().unwrap_or(0));
    let _ = std::fs::remove_dir_all(dir);
    anyhow::ensure!(
        out.status.success(),
        "the console failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recorded = recorded.context("the console's recording")?;
    every_refresh_whole(&recorded, frames, nodes)?;
    let console = serde_json::from_slice(&out.stdout).context("the console's report")?;
    let (views, views_error) = match viewed {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    Ok(ConsoleReport {
        console,
        view_json_bytes,
        views,
        views_error,
    })
}

/// Checks that the console made `frames` refreshes and that each one
/// listed `members` members, every one of which answered.
///
/// # Errors
///
/// Names the first refresh that was not whole, and the members it missed.
fn every_refresh_whole(recorded: &[ClusterView], frames: u32, members: usize) -> Result<()> {
    anyhow::ensure!(
        recorded.len() == frames as usize,
        "the console recorded {} of {frames} refreshes",
        recorded.len()
    );
    for (k, frame) in recorded.iter().enumerate() {
        let silent: Vec<String> = frame
            .nodes
            .iter()
            .filter(|n| n.local.is_none())
            .map(|n| {
                let why = n.error.as_deref().unwrap_or("no answer");
                format!("{} ({why})", n.member.name)
            })
            .collect();
        anyhow::ensure!(
            frame.nodes.len() == members && silent.is_empty(),
            "refresh {} of {frames} is not whole: {} of {members} members listed, \
             {} did not answer: {}",
            k + 1,
            frame.nodes.len(),
            silent.len(),
            silent.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use swarm::inspect::{NodeLocal, NodeView};

    use super::*;

    fn member(name: &str, answered: bool) -> NodeView {
        let mut view: NodeView = serde_json::from_value(serde_json::json!({
            "id": "00", "name": name, "addr": "127.0.0.1:1", "roles": ["worker"],
            "state": "alive", "cpus": 1.0, "memory": 0, "gpus": 0, "custom": [],
            "cpu_percent": 0.0, "memory_used": 0, "services": 0, "local": null,
        }))
        .unwrap();
        if answered {
            view.local = Some(NodeLocal::default());
        } else {
            view.error = Some("timed out".to_owned());
        }
        view
    }

    fn frame(members: &[(&str, bool)]) -> ClusterView {
        ClusterView {
            nodes: members.iter().map(|&(n, a)| member(n, a)).collect(),
            ..ClusterView::default()
        }
    }

    #[test]
    fn refreshes_where_every_member_answered_pass() {
        let whole = frame(&[("n1", true), ("n2", true)]);
        every_refresh_whole(&[whole.clone(), whole], 2, 2).unwrap();
    }

    #[test]
    fn a_refresh_with_a_silent_member_fails_naming_it() {
        let whole = frame(&[("n1", true), ("n2", true)]);
        let missed = frame(&[("n1", true), ("n2", false)]);
        let e = every_refresh_whole(&[whole, missed], 2, 2).unwrap_err();
        let e = e.to_string();
        assert!(e.contains("refresh 2 of 2"), "{e}");
        assert!(e.contains("n2 (timed out)"), "{e}");
    }

    #[test]
    fn a_refresh_listing_fewer_members_fails() {
        let short = frame(&[("n1", true)]);
        let e = every_refresh_whole(&[short], 1, 2).unwrap_err();
        assert!(e.to_string().contains("1 of 2 members listed"), "{e}");
    }

    #[test]
    fn a_missing_refresh_fails() {
        let whole = frame(&[("n1", true)]);
        let e = every_refresh_whole(&[whole], 3, 1).unwrap_err();
        assert!(e.to_string().contains("1 of 3 refreshes"), "{e}");
    }
}
