//! `swarm node start`: run one node until SIGINT or SIGTERM, or until a
//! drain lets it go (it left the cluster: exit status 0).
//!
//! When the node is listening it prints one line to stdout,
//! `READY <listen address> <node id> <name>`, for scripts and tests.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use swarm::Node;

use super::NodeCommand;

mod certificate;

/// Runs `swarm node COMMAND`.
pub(crate) fn run(command: NodeCommand) -> Result<()> {
    match command {
        NodeCommand::Start {
            config,
            listen,
            advertise,
            relay,
            relayed,
            via,
            peers,
            workload,
            seeds,
            cpus,
            gpus,
            memory,
            resources,
            services,
        } => start(
            &config,
            Overrides {
                listen,
                advertise,
                relay,
                relayed: relayed || !via.is_empty(),
                relays: via,
                peers,
                seeds,
                cpus,
                gpus,
                memory,
                resources,
                services,
                demo: workload == "demo",
            },
        ),
    }
}

/// Command-line overrides of the configuration file.
#[derive(Debug, Default)]
pub(crate) struct Overrides {
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) advertise: Option<SocketAddr>,
    pub(crate) relay: bool,
    pub(crate) relayed: bool,
    pub(crate) relays: Vec<SocketAddr>,
    pub(crate) peers: Vec<SocketAddr>,
    pub(crate) seeds: Vec<SocketAddr>,
    pub(crate) cpus: Option<f64>,
    pub(crate) gpus: Option<u32>,
    pub(crate) memory: Option<u64>,
    pub(crate) resources: Vec<(String, f64)>,
    pub(crate) services: Vec<String>,
    pub(crate) demo: bool,
}

pub(crate) fn start(config: &Path, o: Overrides) -> Result<()> {
    // Before any key is read: the keyring, node key and join secret must
    // never reach a core file.
    super::core_dumps::disable()?;
    let file = super::secrets::load(config)?;
    let mut mesh = file.node_config()?;
    mesh.policy = std::sync::Arc::new(swarm_cli::demo::with_info_rule(&mesh.policy)?);
    if let Some(listen) = o.listen {
        mesh.listen = listen;
    }
    if o.advertise.is_some() {
        mesh.advertise = o.advertise;
    }
    mesh.relay |= o.relay;
    mesh.relayed |= o.relayed;
    mesh.relays.extend(o.relays.iter().copied());
    if mesh.relay && mesh.relayed {
        anyhow::bail!("a relayed node cannot be a relay: relays must accept connections");
    }
    if let Some(cluster) = &mut mesh.cluster {
        cluster.seeds.extend(o.seeds.iter().copied());
        let r = &mut cluster.resources;
        r.cpus = o.cpus.or(r.cpus);
        r.gpus = o.gpus.or(r.gpus);
        r.memory = o.memory.or(r.memory);
        for (name, amount) in &o.resources {
            r.custom.retain(|(n, _)| n != name);
            r.custom.push((name.clone(), *amount));
        }
    } else if !o.seeds.is_empty() {
        anyhow::bail!("--seed needs membership, which the configuration disables");
    }
    let peers = o.peers;
    let demo = o.demo;
    let services = o.services;
    let mut all_peers = file.peers.clone();
    all_peers.extend(peers);
    let peers = all_peers;
    let cert_path = file.cert.clone();
    let admin = admin_config(&file)?;
    let journals = match &file.durable {
        Some(durable) => durable.store()?,
        None => None,
    };
    actix::System::new().block_on(async move {
        let node = Node::start(mesh).await.context("cannot start the node")?;
        // Before any durable type is registered: its first incarnation
        // here recovers from this store.
        if let Some(journals) = journals {
            tracing::info!(backend = journals.backend(), "durable actors keep their journals outside the head group");
            node.set_journal_store(journals);
        }
        swarm_cli::demo::expose_info(&node)?;
        swarm_cli::demo::register_types(&node);
        if demo {
            swarm_cli::demo::expose_workload(&node)?;
        }
        for service in &services {
            swarm_cli::demo::serve(&node, service).await?;
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
        let admin = match admin {
            Some(config) => {
                let server = swarm_admin::server::start(node.clone(), config)
                    .context("cannot start the admin API")?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "ADMIN https://{}", server.local_addr())?;
                out.flush()?;
                Some(server)
            }
            None => None,
        };
        for peer in peers {
            actix_rt::spawn(dial_with_retry(node.clone(), peer));
        }
        actix_rt::spawn(certificate::follow(node.clone(), cert_path));
        tokio::select! {
            () = wait_for_signal() => tracing::info!("shutting down"),
            () = node.drained() => {
                tracing::info!("drained: this node left the cluster at the head group's request; exiting");
            }
        }
        if let Some(admin) = &admin {
            admin.stop().await;
        }
        if let Some(cluster) = node.cluster() {
            cluster.leave().await;
        }
        node.close().await;
        Ok(())
    })
}

/// The admin API's settings, with its certificate and (unsealed) key.
fn admin_config(
    file: &swarm::config::NodeFile,
) -> Result<Option<swarm_admin::server::AdminConfig>> {
    let Some(admin) = &file.admin else {
        return Ok(None);
    };
    let chain = std::fs::read_to_string(&admin.cert)
        .with_context(|| format!("cannot read {}", admin.cert.display()))?;
    let raw = std::fs::read(&admin.key)
        .with_context(|| format!("cannot read {}", admin.key.display()))?;
    let key = if raw.starts_with(b"-----BEGIN") {
        zeroize::Zeroizing::new(raw)
    } else {
        file.open_keyring()?
            .read_file(&admin.key, swarm::protocol::sealed::Kind::TlsKey)?
    };
    let tls = swarm_admin::tls::server_config(&chain, &key)?;
    Ok(Some(swarm_admin::server::AdminConfig {
        listen: admin.listen,
        tls,
        refresh: Duration::from_millis(admin.refresh_ms.max(100)),
    }))
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
