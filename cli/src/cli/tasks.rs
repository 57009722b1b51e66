//! `swarm tasks`: what every member's scheduler runs, queues, owns and
//! recently ended, with resources and why waiting tasks wait. Starts a
//! throw-away mesh-only node with an operator identity, lists the members
//! through one of them, and asks each member's `swarm.tasks`.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context as _, Result};
use serde::Serialize;
use swarm::tasks::{ListTasks, Scheduler, TaskTable, TASKS_ACTOR};
use swarm::Node;
use swarm_actors::cluster::{ClusterAgent, ListMembers, CLUSTER_ACTOR};

use super::cluster::human_bytes;
use super::control::resources;

/// Ended tasks each node lists.
const RECENT: usize = 20;

/// One member's answer.
#[derive(Debug, Serialize)]
struct NodeTasks {
    node: String,
    name: String,
    /// Its table, or why it gave none.
    tasks: Result<TaskTable, String>,
}

pub(crate) fn run(config: &Path, member: SocketAddr, json: bool) -> Result<()> {
    let mesh = super::client_config(config)?;
    let nodes = actix::System::new().block_on(async move {
        let node = super::secrets::start_client(mesh, member).await?;
        let result = list(&node, member).await;
        node.close().await;
        result
    })?;
    if json {
        println!("{}", serde_json::to_string(&nodes)?);
    } else {
        print!("{}", table(&nodes));
    }
    Ok(())
}

async fn list(node: &Node, member: SocketAddr) -> Result<Vec<NodeTasks>> {
    let peer = node
        .connect(member)
        .await
        .with_context(|| format!("no authenticated connection to {member}"))?;
    let members = node
        .remote::<ClusterAgent>(peer.id, CLUSTER_ACTOR)
        .send(ListMembers)
        .await
        .with_context(|| format!("{member} did not list its members (membership off?)"))?;
    // Up to IN_FLIGHT members at once (1,000 members one after another
    // would take a round trip each); printed in the member list's order.
    let mut answers: Vec<Option<NodeTasks>> = Vec::new();
    let mut asks = tokio::task::JoinSet::new();
    for m in members
        .iter()
        .filter(|m| m.state == "alive" || m.state == "suspect")
    {
        let Ok(id) = m.id.parse() else { continue };
        if asks.len() >= IN_FLIGHT {
            if let Some(Ok((slot, answer))) = asks.join_next().await {
                place(&mut answers, slot, answer);
            }
        }
        let scheduler = node.remote::<Scheduler>(id, TASKS_ACTOR);
        // This client is no member: it knows no member's address but the
        // one it was given. One it reaches directly is dialed at the
        // address the list gives (a relayed one is left to the mesh).
        let dial = (id != peer.id && !m.reach.contains("via"))
            .then(|| m.addr.parse::<SocketAddr>().ok())
            .flatten()
            .map(|addr| (node.clone(), addr));
        let (slot, node, name) = (answers.len(), m.id.clone(), m.name.clone());
        answers.push(None);
        asks.spawn_local(async move {
            if let Some((client, addr)) = dial {
                // A failed dial shows as the ask's error below.
                let _ = client.connect(addr).await;
            }
            let tasks = scheduler
                .send(ListTasks { recent: RECENT })
                .await
                .map_err(|e| e.to_string());
            (slot, NodeTasks { node, name, tasks })
        });
    }
    while let Some(done) = asks.join_next().await {
        if let Ok((slot, answer)) = done {
            place(&mut answers, slot, answer);
        }
    }
    Ok(answers.into_iter().flatten().collect())
}

fn place(answers: &mut [Option<NodeTasks>], slot: usize, answer: NodeTasks) {
    if let Some(s) = answers.get_mut(slot) {
        *s = Some(answer);
    }
}

/// Members asked for their tasks at once.
const IN_FLIGHT: usize = 16;

fn table(nodes: &[NodeTasks]) -> String {
    let mut out = String::new();
    for n in nodes {
        let t = match &n.tasks {
            Ok(t) => t,
            Err(e) => {
                out.push_str(&format!(
                    "{} ({}): no answer: {e}\n\n",
                    n.name,
                    short(&n.node)
                ));
                continue;
            }
        };
        out.push_str(&format!(
            "{} ({}): offers {}, free {}; {} finished, {} failed here; {} submitted here; {} kept ({})\n",
            n.name,
            short(&n.node),
            resources(&t.total),
            resources(&t.free),
            t.finished,
            t.failed,
            t.submitted,
            t.objects.0,
            human_bytes(t.objects.1),
        ));
        if t.rows.is_empty() {
            out.push_str("  (no tasks)\n\n");
            continue;
        }
        out.push_str(&format!(
            "  {:<14} {:<20} {:<10} {:<10} {:>7} {:<20} WHY\n",
            "TASK", "FUNCTION", "STATE", "NODE", "ATTEMPT", "RESOURCES"
        ));
        for r in &t.rows {
            out.push_str(&format!(
                "  {:<14} {:<20} {:<10} {:<10} {:>7} {:<20} {}\n",
                r.id.to_string(),
                r.function,
                format!("{:?}", r.state).to_lowercase(),
                r.node.map_or_else(|| "-".to_owned(), |n| n.short()),
                r.attempt,
                resources(&r.resources),
                r.reason.as_deref().unwrap_or("")
            ));
        }
        if t.omitted > 0 {
            out.push_str(&format!("  ... and {} more\n", t.omitted));
        }
        out.push('\n');
    }
    if nodes.is_empty() {
        out.push_str("(no members)\n");
    }
    out
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}
