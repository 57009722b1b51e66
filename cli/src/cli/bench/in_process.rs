//! A bench cluster in this process: heads, workers with the demo's types
//! and a driver without types, each node on its own arbiter with a fault
//! switch, joining membership through the first.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use swarm::credentials::Throwaway;
use swarm::{Faults, Node};

/// One node of the cluster.
pub(super) struct Member {
    pub(super) node: Node,
    pub(super) faults: Arc<Faults>,
    pub(super) arbiter: actix::Arbiter,
}

/// Starts `heads` heads (that many voters, stores under `dir`), then
/// `workers` workers that register the demo's types, then a driver (a
/// worker by its certificate, with no types: nothing is placed there),
/// in that order.
pub(super) async fn start(dir: &Path, heads: usize, workers: usize) -> Result<Vec<Member>> {
    let ca = Throwaway::new("bench");
    let mut nodes: Vec<Member> = Vec::new();
    for i in 0..heads + workers + 1 {
        let name = format!("n{}", i + 1);
        let roles: &[&str] = if i < heads { &["head"] } else { &["worker"] };
        let mut c = swarm::MeshConfig::new("127.0.0.1:0".parse()?, ca.node(&name, roles));
        let seeds = nodes
            .first()
            .map(|m| m.node.listen_addr())
            .into_iter()
            .collect();
        c.cluster = Some(swarm::ClusterConfig {
            seeds,
            ..swarm::ClusterConfig::default()
        });
        if i < heads {
            let mut head = swarm::control::HeadConfig::new(dir.join(&name));
            head.voters = heads;
            c.head = Some(head);
        }
        let faults = Arc::new(Faults::default());
        c.faults = Some(faults.clone());
        let arbiter = actix::Arbiter::new();
        let node = Node::start_on(&arbiter.handle(), c).await?;
        if i < heads + workers {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let registering = node.clone();
            arbiter.spawn(async move {
                swarm_cli::demo::register_types(&registering);
                let _ = tx.send(());
            });
            rx.await.context("a node's arbiter stopped")?;
        }
        nodes.push(Member {
            node,
            faults,
            arbiter,
        });
    }
    Ok(nodes)
}

/// Shuts every node down and stops its arbiter.
pub(super) fn stop(nodes: Vec<Member>) {
    for m in nodes {
        m.node.shutdown();
        m.arbiter.stop();
    }
}
