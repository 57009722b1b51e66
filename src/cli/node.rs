//! `swarm node start`: run one node until SIGINT or SIGTERM.
//!
//! When the node is listening it prints one line to stdout,
//! `READY <listen address> <node id> <name>`, for scripts and tests.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use swarm::config::NodeFile;
use swarm::Node;

pub(crate) fn start(
    config: &Path,
    listen: Option<SocketAddr>,
    peers: Vec<SocketAddr>,
    demo: bool,
) -> Result<()> {
    let file = NodeFile::load(config)?;
    let mut mesh = file.mesh_config()?;
    if let Some(listen) = listen {
        mesh.listen = listen;
    }
    let mut all_peers = file.peers.clone();
    all_peers.extend(peers);
    actix::System::new().block_on(async move {
        let node = Node::start(mesh).await.context("cannot start the node")?;
        swarm::demo::expose_info(&node)?;
        if demo {
            swarm::demo::expose_workload(&node)?;
        }
        {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "READY {} {} {}",
                node.listen_addr(),
                node.id(),
                node.name()
            )?;
            out.flush()?;
        }
        for peer in all_peers {
            actix_rt::spawn(dial_with_retry(node.clone(), peer));
        }
        wait_for_signal().await;
        tracing::info!("shutting down");
        node.shutdown();
        Ok(())
    })
}

/// Dials a configured peer, retrying with backoff for about a minute.
async fn dial_with_retry(node: Node, peer: SocketAddr) {
    let mut delay = Duration::from_millis(100);
    for _ in 0..20 {
        match node.connect(peer).await {
            Ok(info) => {
                tracing::info!(%peer, name = %info.name, "connected to peer");
                return;
            }
            Err(e) => tracing::debug!(%peer, error = %e, "peer not reachable yet"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    tracing::warn!(%peer, "giving up dialing peer; it will be dialed again on first use");
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
