//! The commands that ask the cluster through one member ([`ClusterCommand`]);
//! `swarm members`, `swarm services` and `swarm actors --host` are answered
//! here by a node's `swarm.cluster` (or `swarm.host`) actor over an
//! authenticated mesh link, with the identity of a configuration file (use
//! an operator certificate, not a running node's); the control-plane ones
//! by `control.rs` and `tasks.rs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use swarm_actors::cluster::{
    ClusterAgent, ListMembers, ListServices, MemberRow, ServiceRow, CLUSTER_ACTOR,
};
use swarm_actors::supervision::{ActorRow, Host, ListActors, HOST_ACTOR};

use super::secrets::Totp;
use super::{parse_millis, parse_resource, parse_size};

/// The commands that ask the cluster through one member, as an operator
/// (`--config` with an operator certificate, `--node`, and `--totp` or a
/// kept login).
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ClusterCommand {
    /// List the members a node knows: id, name, address, roles, state, resources and load.
    Members {
        #[command(flatten)]
        access: Access,
    },
    /// List the named actors the control plane placed: name, type, node,
    /// state, epoch, restarts, resources, placement group (with --host:
    /// the actors one node's host started).
    Actors {
        /// List what this node's host started instead (no head needed).
        #[arg(long)]
        host: bool,
        #[command(flatten)]
        access: Access,
    },
    /// List every member's tasks: running, queued (and why), waiting on
    /// their owner (and why), recently finished and failed, with resources.
    Tasks {
        #[command(flatten)]
        access: Access,
    },
    /// Show the control plane's heads: role, leader, term, voters, log, lag.
    Heads {
        #[command(flatten)]
        access: Access,
    },
    /// List the types the cluster can spawn: each member's registered
    /// types, with the members that can start them.
    Types {
        #[command(flatten)]
        access: Access,
    },
    /// Place and start a named actor of a registered type (`swarm types`
    /// lists them).
    Spawn {
        /// The registered type (e.g. demo.Ledger): `swarm types --config
        /// CONFIG --node ADDR` lists the types the cluster can spawn.
        #[arg(long = "type")]
        type_name: String,
        /// The actor's name.
        #[arg(long)]
        name: String,
        /// Its arguments as JSON (e.g. '{"opening": 10}').
        #[arg(long, default_value = "null")]
        args: String,
        /// CPUs it needs.
        #[arg(long, default_value_t = 0.0)]
        cpus: f64,
        /// GPUs it needs.
        #[arg(long, default_value_t = 0)]
        gpus: u32,
        /// Memory it needs (e.g. 512MiB).
        #[arg(long, value_parser = parse_size, default_value = "0")]
        memory: u64,
        /// A custom resource it needs, NAME=AMOUNT (repeatable).
        #[arg(long = "resource", value_parser = parse_resource)]
        resources: Vec<(String, f64)>,
        /// pack, spread, node:NAME[:soft] or label:LABEL[:soft].
        #[arg(long, default_value = "pack")]
        placement: String,
        /// Restart on failure at most this many times a minute (default: never).
        #[arg(long)]
        restarts: Option<usize>,
        /// Run in a placement group's bundle, GROUP:INDEX.
        #[arg(long)]
        group: Option<String>,
        /// Answer the existing actor if the name is taken by this type.
        #[arg(long)]
        get_if_exists: bool,
        /// Passivate it after this long without a message (30s, 5m): its
        /// node stops it, and the next call places it again (a durable
        /// actor recovers its state from its journal).
        #[arg(long, value_parser = parse_millis)]
        passivate_after: Option<u64>,
        #[command(flatten)]
        access: Access,
    },
    /// Stop a named actor for good.
    Stop {
        /// The actor's name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        access: Access,
    },
    /// Drain a node: it takes no new placements and its named actors move
    /// elsewhere one by one; then it leaves the cluster and its process
    /// exits. An actor that cannot move (a hard placement on the node, no
    /// capacity elsewhere) keeps running there: the drain stops, says why
    /// per actor, and exits with status 1.
    Drain {
        /// The node to drain: its name, id or mesh address.
        target: String,
        /// Stop what cannot move (recorded failed, with the reason) and
        /// let the node leave anyway.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        access: Access,
    },
    /// Move a named actor to another node, live: its incarnation stops
    /// taking messages, handles those already in its mailbox, saves a
    /// final snapshot if it is durable, and stops; then it starts on the
    /// node under a new epoch. Callers through a `Named` handle see no
    /// error: what they sent meanwhile reaches the new incarnation, in
    /// order.
    Migrate {
        /// The actor's name.
        name: String,
        /// Where it goes: a node's name, id (or id prefix) or mesh address.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        access: Access,
    },
    /// List the services a node knows, with their live instances.
    Services {
        #[command(flatten)]
        access: Access,
    },
}

/// How a command reaches the cluster: an identity, the member to ask (or
/// to ask through), the login's second factor and the output's form.
#[derive(Debug, clap::Args)]
pub(crate) struct Access {
    /// A configuration with an identity of the cluster (an operator certificate).
    #[arg(long)]
    config: PathBuf,
    /// The member to ask, or to ask through (its mesh address).
    #[arg(long)]
    node: SocketAddr,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    totp: Totp,
}

impl Access {
    /// Keeps the TOTP code for this process's login; answers the
    /// configuration, the member and whether to print JSON.
    fn install(self) -> (PathBuf, SocketAddr, bool) {
        self.totp.install();
        (self.config, self.node, self.json)
    }
}

/// Runs a cluster command after keeping its TOTP code for the login.
pub(crate) fn run(command: ClusterCommand) -> Result<()> {
    use super::control;
    match command {
        ClusterCommand::Members { access } => {
            let (config, node, json) = access.install();
            members(&config, node, json)
        }
        ClusterCommand::Services { access } => {
            let (config, node, json) = access.install();
            services(&config, node, json)
        }
        ClusterCommand::Actors { host, access } => {
            let (config, node, json) = access.install();
            if host {
                actors(&config, node, json)
            } else {
                control::actors(&config, node, json)
            }
        }
        ClusterCommand::Tasks { access } => {
            let (config, node, json) = access.install();
            super::tasks::run(&config, node, json)
        }
        ClusterCommand::Heads { access } => {
            let (config, node, json) = access.install();
            control::heads(&config, node, json)
        }
        ClusterCommand::Types { access } => {
            let (config, node, json) = access.install();
            control::types(&config, node, json)
        }
        ClusterCommand::Spawn {
            type_name,
            name,
            args,
            cpus,
            gpus,
            memory,
            resources,
            placement,
            restarts,
            group,
            get_if_exists,
            passivate_after,
            access,
        } => {
            let (config, node, json) = access.install();
            let spawn = control::SpawnArgs {
                type_name,
                name,
                args,
                cpus,
                gpus,
                memory,
                resources,
                placement,
                restarts,
                group,
                get_if_exists,
                passivate_after,
            };
            control::spawn(&config, node, spawn, json)
        }
        ClusterCommand::Stop { name, access } => {
            let (config, node, json) = access.install();
            control::stop(&config, node, &name, json)
        }
        ClusterCommand::Drain {
            target,
            force,
            access,
        } => {
            let (config, node, json) = access.install();
            control::drain(&config, node, &target, force, json)
        }
        ClusterCommand::Migrate { name, to, access } => {
            let (config, node, json) = access.install();
            control::migrate(&config, node, &name, &to, json)
        }
    }
}

/// Starts a throw-away mesh-only node with the identity of `config`,
/// connects to `addr` and runs `ask` against its actor `name`.
fn with_actor<A, T, F, Fut>(
    config: &Path,
    addr: SocketAddr,
    name: &'static str,
    hint: &'static str,
    ask: F,
) -> Result<T>
where
    A: swarm::RemoteActor,
    F: FnOnce(swarm::RemoteAddr<A>) -> Fut,
    Fut: std::future::Future<Output = Result<T, swarm::AskError>>,
{
    let mesh = super::client_config(config)?;
    actix::System::new().block_on(async move {
        let node = super::secrets::start_client(mesh, addr).await?;
        let peer = node
            .connect(addr)
            .await
            .with_context(|| format!("no authenticated connection to {addr}"))?;
        let result = ask(node.remote::<A>(peer.id, name))
            .await
            .with_context(|| format!("{} ({addr}) did not answer; {hint}", peer.name));
        node.close().await;
        result
    })
}

/// As [`with_actor`], against the node's cluster actor.
fn with_cluster_actor<T, F, Fut>(config: &Path, addr: SocketAddr, ask: F) -> Result<T>
where
    F: FnOnce(swarm::RemoteAddr<ClusterAgent>) -> Fut,
    Fut: std::future::Future<Output = Result<T, swarm::AskError>>,
{
    with_actor(
        config,
        addr,
        CLUSTER_ACTOR,
        "is membership enabled there?",
        ask,
    )
}

/// `swarm actors`: the actors a node's host started, with their state,
/// restarts and epochs.
pub(crate) fn actors(config: &Path, addr: SocketAddr, json: bool) -> Result<()> {
    let rows: Vec<ActorRow> = with_actor(
        config,
        addr,
        HOST_ACTOR,
        "does this identity have the operator or head role?",
        |host: swarm::RemoteAddr<Host>| async move { host.send(ListActors).await },
    )?;
    if json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<24} {:<11} {:>8} {:>8} {:>8}",
        "NAME", "TYPE", "STATE", "RESTARTS", "EPOCH", "JOURNAL"
    );
    for r in &rows {
        let journal = r
            .journal
            .as_ref()
            .map_or_else(|| "-".to_owned(), |(_, seq)| seq.to_string());
        println!(
            "{:<24} {:<24} {:<11} {:>8} {:>8} {:>8}",
            r.name, r.type_name, r.state, r.restarts, r.epoch, journal
        );
    }
    Ok(())
}

pub(crate) fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", units[unit])
    }
}

/// The members table, one line per member.
pub(crate) fn members_table(rows: &[MemberRow]) -> String {
    let mut out = format!(
        "{:<8}  {:<12} {:<21} {:<14} {:<7} {:<18} {:>5} {:>9} {:>4} {:>5} {:>9} {:>4}  {}\n",
        "ID",
        "NAME",
        "ADDRESS",
        "ROLES",
        "STATE",
        "REACHED",
        "CPUS",
        "MEMORY",
        "GPUS",
        "CPU%",
        "MEM USED",
        "SVCS",
        "CUSTOM"
    );
    for r in rows {
        let custom: Vec<String> = r.custom.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!(
            "{:<8}  {:<12} {:<21} {:<14} {:<7} {:<18} {:>5} {:>9} {:>4} {:>5.1} {:>9} {:>4}  {}\n",
            r.id.get(..8).unwrap_or(&r.id),
            r.name,
            r.addr,
            roles(r),
            r.state,
            r.reach,
            r.cpus,
            human_bytes(r.memory),
            r.gpus,
            r.cpu_percent,
            human_bytes(r.memory_used),
            r.services,
            custom.join(",")
        ));
    }
    if let Some((row, c)) = rows
        .iter()
        .find_map(|r| r.counters.as_ref().map(|c| (r, c)))
    {
        let m = &c.mesh;
        out.push_str(&format!(
            "\n{} refused or dropped: handshakes {}, failed links {}, tells {}, \
             gossip unsealed {} / oversized {} / malformed {} / replayed {}, events lost {}, \
             relay frames {}\n",
            row.name,
            m.handshakes_refused,
            m.links_failed,
            m.tells_dropped,
            c.gossip_unsealed,
            c.gossip_oversized,
            c.gossip_malformed,
            c.gossip_replayed,
            c.events_lost,
            m.relay_refused
        ));
        if m.relay_frames > 0 || m.circuits > 0 {
            out.push_str(&format!(
                "{} relays: {} circuits, {} frames forwarded ({}), {} datagrams over links\n",
                row.name,
                m.circuits,
                m.relay_frames,
                human_bytes(m.relay_bytes),
                m.datagrams_relayed
            ));
        }
    }
    out
}

/// Certificate roles, and `relay` for a member that forwards for others.
fn roles(r: &MemberRow) -> String {
    let mut roles = r.roles.clone();
    if r.relay {
        roles.push("relay".to_owned());
    }
    roles.join(",")
}

pub(crate) fn members(config: &Path, addr: SocketAddr, json: bool) -> Result<()> {
    let rows = with_cluster_actor(config, addr, |actor| async move {
        actor.send(ListMembers).await
    })?;
    if json {
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        print!("{}", members_table(&rows));
    }
    Ok(())
}

pub(crate) fn services(config: &Path, addr: SocketAddr, json: bool) -> Result<()> {
    let rows: Vec<ServiceRow> = with_cluster_actor(config, addr, |actor| async move {
        actor.send(ListServices).await
    })?;
    if json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    println!(
        "{:<20} {:<8}  {:<12} {:<21} ACTOR",
        "SERVICE", "NODE", "NAME", "ADDRESS"
    );
    for row in &rows {
        for i in &row.instances {
            println!(
                "{:<20} {:<8}  {:<12} {:<21} {}",
                row.service,
                i.node.get(..8).unwrap_or(&i.node),
                i.name,
                i.addr,
                i.actor
            );
        }
    }
    if rows.is_empty() {
        println!("(no services)");
    }
    Ok(())
}
