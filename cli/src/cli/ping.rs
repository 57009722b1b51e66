//! `swarm ping ADDR`: dial a node through the full handshake with the
//! identity of a configuration file, then time asks to its info actor.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result};
use swarm::Node;
use swarm_cli::demo::{Info, Ping, INFO_NAME};

pub(crate) fn run(addr: SocketAddr, config: &Path, count: u32) -> Result<()> {
    let mesh = super::client_config(config)?;
    actix::System::new().block_on(async move {
        let node = Node::start(mesh)
            .await
            .context("cannot start the local node")?;
        let started = Instant::now();
        let peer = node
            .connect(addr)
            .await
            .with_context(|| format!("no authenticated connection to {addr}"))?;
        println!(
            "connected to {} ({}) at {addr}, roles {}: handshake {:.2} ms",
            peer.name,
            peer.id,
            peer.roles.join(","),
            started.elapsed().as_secs_f64() * 1e3
        );
        let info = node.remote::<Info>(peer.id, INFO_NAME);
        for seq in 1..=count {
            let t = Instant::now();
            let summary = info.send(Ping).await.context("ask failed")?;
            println!(
                "reply from {}: seq={seq} time={:.1} us uptime={}s links={}",
                summary.name,
                t.elapsed().as_secs_f64() * 1e6,
                summary.uptime_s,
                summary.links
            );
        }
        node.close().await;
        Ok(())
    })
}
