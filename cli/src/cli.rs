//! Command-line parsing and dispatch; each command lives in its own file.

mod audit;
mod bench;
mod ca;
mod cluster;
mod commands;
mod console;
mod control;
mod core_dumps;
mod demo;
mod keys;
mod node;
mod operator;
mod ping;
mod secrets;
mod tasks;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub(crate) use commands::{AdminCommand, CaCommand, CertCommand, KeysCommand, OperatorCommand};

/// Swarm: a distributed actor runtime.
#[derive(Debug, Parser)]
#[command(name = "swarm", version, about, propagate_version = true)]
pub(crate) struct Args {
    #[command(subcommand)]
    pub(crate) command: Command,
    #[command(flatten)]
    pub(crate) secrets: secrets::Secrets,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Manage the cluster certificate authority.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Issue, renew and revoke node certificates (operators: `swarm operator add`).
    #[command(subcommand)]
    Cert(CertCommand),
    /// Run a node.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Operators: certificates with a second factor (TOTP), and passwords
    /// for the admin API.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// The admin API (HTTPS, dashboard, /metrics): its TLS certificates.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// A keyring's data keys: add a term, change the passphrase, show it.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The debug console: every node, actor and link of the cluster, live
    /// (or one view with --once), as an operator (certificate and TOTP).
    Console(console::ConsoleArgs),
    /// Connect to a node through the full handshake and ask it who it is.
    Ping {
        /// The node's mesh address.
        addr: SocketAddr,
        /// A node configuration whose identity to use (any certificate of the cluster).
        #[arg(long)]
        config: PathBuf,
        /// How many asks to time after connecting.
        #[arg(long, default_value_t = 3)]
        count: u32,
    },
    /// Log in as an operator (certificate, then TOTP code) through a
    /// member and keep the login for later commands until it expires (15
    /// minutes), sealed beside the keyring (`NAME.session`).
    Login {
        /// Your operator configuration (certificate and key).
        #[arg(long)]
        config: PathBuf,
        /// A member to log in through (its mesh address).
        #[arg(long)]
        node: SocketAddr,
    },
    /// Forget the login `swarm login` (or the first command) kept.
    Logout {
        /// Your operator configuration.
        #[arg(long)]
        config: PathBuf,
    },
    /// List the members a node knows: id, name, address, roles, state, resources and load.
    Members {
        /// A configuration with an identity of the cluster (an operator certificate).
        #[arg(long)]
        config: PathBuf,
        /// The node to ask (its mesh address).
        #[arg(long)]
        node: SocketAddr,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the named actors the control plane placed: name, type, node,
    /// state, epoch, restarts, resources, placement group (with --host:
    /// the actors one node's host started).
    Actors {
        /// A configuration with an identity of the cluster (an operator certificate).
        #[arg(long)]
        config: PathBuf,
        /// A member to ask through (its mesh address).
        #[arg(long)]
        node: SocketAddr,
        /// List what this node's host started instead (no head needed).
        #[arg(long)]
        host: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List every member's tasks: running, queued (and why), waiting on
    /// their owner (and why), recently finished and failed, with resources.
    Tasks {
        /// A configuration with an identity of the cluster (an operator certificate).
        #[arg(long)]
        config: PathBuf,
        /// A member to ask through (its mesh address).
        #[arg(long)]
        node: SocketAddr,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show the control plane's heads: role, leader, term, voters, log, lag.
    Heads {
        /// A configuration with an identity of the cluster (an operator certificate).
        #[arg(long)]
        config: PathBuf,
        /// A member to ask through (its mesh address).
        #[arg(long)]
        node: SocketAddr,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Place and start a named actor of a registered type.
    Spawn {
        /// A configuration with an identity of the cluster (an operator certificate).
        #[arg(long)]
        config: PathBuf,
        /// A member to ask through (its mesh address).
        #[arg(long)]
        node: SocketAddr,
        /// The registered type (e.g. demo.Ledger).
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
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a named actor for good.
    Stop {
        /// A configuration with an identity of the cluster (an operator certificate).
        #[arg(long)]
        config: PathBuf,
        /// A member to ask through (its mesh address).
        #[arg(long)]
        node: SocketAddr,
        /// The actor's name.
        #[arg(long)]
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
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
        /// A configuration with an identity of the cluster (an operator certificate).
        #[arg(long)]
        config: PathBuf,
        /// A member to ask through (its mesh address).
        #[arg(long)]
        node: SocketAddr,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the services a node knows, with their live instances.
    Services {
        /// A configuration with an identity of the cluster (an operator certificate).
        #[arg(long)]
        config: PathBuf,
        /// The node to ask (its mesh address).
        #[arg(long)]
        node: SocketAddr,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Read a node's sealed audit log: operator logins (accepted and
    /// refused), their mutating commands, and policy refusals.
    Audit {
        /// The node's configuration (its keyring opens the log).
        #[arg(long)]
        config: PathBuf,
        /// Only records from then on: 2027-01-01, 2027-01-01T08:00:00Z or Unix seconds.
        #[arg(long, value_parser = swarm::credentials::parse_time)]
        since: Option<u64>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Start a local cluster of child processes, run the demo workload across it, and exit.
    Demo {
        /// How many node processes to start.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Keep the generated CA, certificates and configs in this directory.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// Measure the runtime on this machine.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum NodeCommand {
    /// Start a node and run until interrupted (SIGINT or SIGTERM).
    Start {
        /// The node configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Override the listen address.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// The address other nodes dial (needed with a wildcard listen address).
        #[arg(long)]
        advertise: Option<SocketAddr>,
        /// Forward relayed traffic for nodes that cannot accept connections.
        #[arg(long, conflicts_with = "relayed")]
        relay: bool,
        /// This node is behind NAT or a firewall: reach it through relays.
        #[arg(long)]
        relayed: bool,
        /// A relay to keep a link to (repeatable; implies --relayed).
        #[arg(long = "via")]
        via: Vec<SocketAddr>,
        /// More peers to dial at start (repeatable).
        #[arg(long = "peer")]
        peers: Vec<SocketAddr>,
        /// Expose the demo workload (adder, relay, counter).
        #[arg(long, value_parser = ["none", "demo"], default_value = "none")]
        workload: String,
        /// A member to join the cluster through (repeatable; enables membership).
        #[arg(long = "seed")]
        seeds: Vec<SocketAddr>,
        /// Declare this many CPUs instead of the detected count.
        #[arg(long)]
        cpus: Option<f64>,
        /// Declare this many GPUs instead of the detected count.
        #[arg(long)]
        gpus: Option<u32>,
        /// Declare this much memory instead of the detected total (e.g. 16GiB, 512MiB, bytes).
        #[arg(long, value_parser = parse_size)]
        memory: Option<u64>,
        /// Declare a custom resource, NAME=AMOUNT (repeatable), e.g. tpu=4.
        #[arg(long = "resource", value_parser = parse_resource)]
        resources: Vec<(String, f64)>,
        /// Serve an instance of the demo service NAME (repeatable).
        #[arg(long = "service")]
        services: Vec<String>,
    },
}

/// Parses `16GiB`, `512MiB`, `2G`, `1024` (bytes).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 16GiB, 512MiB)"))?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use KiB, MiB, GiB, TiB)"
            ))
        }
    };
    if !number.is_finite() || number < 0.0 {
        return Err(format!("{s:?} is not a size"));
    }
    Ok((number * scale as f64) as u64)
}

/// Parses `NAME=AMOUNT`.
pub(crate) fn parse_resource(s: &str) -> Result<(String, f64), String> {
    let (name, amount) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=AMOUNT"))?;
    let amount: f64 = amount
        .trim()
        .parse()
        .map_err(|_| format!("amount of {name:?} is not a number"))?;
    if name.trim().is_empty() || !amount.is_finite() || amount < 0.0 {
        return Err(format!("{s:?} is not NAME=AMOUNT with AMOUNT >= 0"));
    }
    Ok((name.trim().to_owned(), amount))
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// A local cluster of 3 heads and 3 workers: named-actor spawns per
    /// second, lookups, Raft writes, asks to a placed actor beside an
    /// exposed one, crash failover and leader failover; then partition
    /// failover on a cluster of its own.
    Control {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Named actors to spawn for the rate.
        #[arg(long, default_value_t = 5_000)]
        spawns: usize,
        /// Crash failovers to time.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Partition failovers to time (a worker cut off, on a cluster of
        /// its own in network namespaces, or in one process without them).
        #[arg(long, default_value_t = 10)]
        partition_runs: usize,
    },
    /// Two worker processes and a driver without CPUs: empty tasks per
    /// second (local, and to 2 nodes under each policy), the task round
    /// trip beside an ask, 1 ms tasks under each policy, the retry after a
    /// SIGKILL, and a 64 MiB kept result passed between workers.
    Tasks {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Empty tasks per rate.
        #[arg(long, default_value_t = 200_000)]
        tasks: usize,
    },
    /// What the security layer costs, beside baselines from the same run:
    /// ask RTT and tells/s with a 20-rule policy and without, Raft commit
    /// latency sealed and plain, argon2id and node start with a passphrase.
    Security {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Scale the number of iterations (1.0 = default).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
    },
    /// The console on a large cluster: N nodes (in this process) with M
    /// actors each, and the console (a child process) refreshing once a
    /// second: refresh time and its peak memory.
    Console {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Member nodes.
        #[arg(long, default_value_t = 100)]
        nodes: usize,
        /// Actors on each.
        #[arg(long, default_value_t = 100)]
        actors: usize,
        /// Refreshes to measure.
        #[arg(long, default_value_t = 10)]
        frames: u32,
    },
    /// What the console's counters cost, beside baselines from the same
    /// run: ask RTT and tells/s with counters off, on with a console
    /// attached, and with the actors traced.
    Inspect {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Scale the number of iterations (1.0 = default).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
    },
    /// Two nodes on loopback: ask latency, tell rate, bulk throughput,
    /// handshake time, idle memory, and the bare Noise baseline.
    Link {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Scale the number of iterations (1.0 = default).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Also measure a link through a relay (a third node), beside the
        /// direct figures of the same run.
        #[arg(long)]
        relay: bool,
    },
    /// Simulated membership: N nodes join through one seed, converge,
    /// 1% are killed; prints convergence and detection times, false
    /// downs, gossip bytes and wall time.
    Membership {
        /// Simulated nodes (needs a build with `--features sim`; 0: none).
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        /// Datagram loss rate.
        #[arg(long, default_value_t = 0.05)]
        loss: f64,
        /// Share of nodes killed.
        #[arg(long, default_value_t = 0.01)]
        kill: f64,
        /// Gossip node metadata too (memory grows with nodes²).
        #[arg(long)]
        meta: bool,
        /// Also start this many real node processes and time their
        /// convergence and SIGKILL detection, and measure their idle CPU
        /// and memory (0: skip).
        #[arg(long, default_value_t = 0)]
        processes: usize,
        /// Seconds over which the processes' idle CPU is measured.
        #[arg(long, default_value_t = 30)]
        idle_secs: u64,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

impl Command {
    pub(crate) fn default_log_level(&self) -> &'static str {
        match self {
            Command::Node(_) => "info",
            _ => "warn",
        }
    }
}

/// The mesh configuration of a throw-away client node (`ping`, `members`,
/// `services`): the identity of `config`, any free port, no membership.
pub(crate) fn client_config(config: &std::path::Path) -> anyhow::Result<swarm::MeshConfig> {
    let file = secrets::load(config)?;
    let mut mesh = file.mesh_config()?;
    // An operator's login is kept beside its keyring between commands.
    if swarm::operators::is_operator(&mesh.handshake.cert.body().roles) {
        let name = mesh.handshake.cert.body().name.clone();
        secrets::SessionFile::new(file.open_keyring()?, &name).install();
    }
    mesh.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    mesh.cluster = None;
    Ok(mesh)
}

/// Logs go to stderr through tracing, at `level` with libraries' chatter
/// below it ([`swarm_cli::logs::default_filter`]); `RUST_LOG` replaces that.
pub(crate) fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(swarm_cli::logs::default_filter(level))
    });
    // Colours only on a terminal: piped or redirected logs stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    secrets::install(args.secrets);
    match args.command {
        Command::Ca(CaCommand::Init { dir, force }) => ca::init(&dir, force),
        Command::Cert(CertCommand::Issue {
            name,
            roles,
            ca_dir,
            out,
            days,
            not_before,
            serial,
        }) => ca::issue(&ca::Issue {
            name: &name,
            roles: &roles,
            ca_dir: &ca_dir,
            out: &out,
            days,
            not_before,
            serial,
        }),
        Command::Cert(CertCommand::Renew {
            name,
            ca_dir,
            out,
            days,
        }) => ca::renew(&name, &ca_dir, &out, days),
        Command::Cert(CertCommand::Revoke {
            target,
            ca_dir,
            config,
            node,
            json,
        }) => control::revoke(&config, node, &target, &ca_dir, json),
        Command::Operator(OperatorCommand::Add {
            name,
            roles,
            ca_dir,
            out,
            days,
            issuer,
        }) => operator::add(&operator::Add {
            name: &name,
            roles: &roles,
            ca_dir: &ca_dir,
            out: &out,
            days,
            issuer: &issuer,
        }),
        Command::Operator(OperatorCommand::Passwd {
            config,
            node,
            password_env,
        }) => operator::passwd(&config, node, password_env.as_deref()),
        Command::Admin(AdminCommand::Login { config, node, json }) => {
            operator::admin_login(&config, node, json)
        }
        Command::Admin(AdminCommand::Tls {
            name,
            hosts,
            ca_dir,
            out,
            cluster,
        }) => operator::admin_tls(&name, &hosts, &ca_dir, &out, &cluster),
        Command::Keys(KeysCommand::Rotate {
            capabilities: true,
            config: Some(config),
            node: Some(node),
            ..
        }) => control::rotate_capabilities(&config, node),
        Command::Keys(KeysCommand::Rotate {
            keyring, reseal, ..
        }) => keys::rotate(&keyring, reseal),
        Command::Keys(KeysCommand::Passwd {
            keyring,
            new_root,
            new_key_file,
            new_passphrase_file,
            new_passphrase_env,
        }) => keys::passwd(
            &keyring,
            &keys::NewSecret {
                key_file: new_key_file.as_deref(),
                passphrase_file: new_passphrase_file.as_deref(),
                passphrase_env: new_passphrase_env.as_deref(),
            },
            new_root,
        ),
        Command::Keys(KeysCommand::Status { keyring }) => keys::status(&keyring),
        Command::Node(NodeCommand::Start {
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
        }) => node::start(
            &config,
            node::Overrides {
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
        Command::Login { config, node } => operator::login(&config, node),
        Command::Logout { config } => operator::logout(&config),
        Command::Members { config, node, json } => cluster::members(&config, node, json),
        Command::Console(args) => console::run(args),
        Command::Services { config, node, json } => cluster::services(&config, node, json),
        Command::Actors {
            config,
            node,
            host: true,
            json,
        } => cluster::actors(&config, node, json),
        Command::Actors {
            config, node, json, ..
        } => control::actors(&config, node, json),
        Command::Heads { config, node, json } => control::heads(&config, node, json),
        Command::Tasks { config, node, json } => tasks::run(&config, node, json),
        Command::Spawn {
            config,
            node,
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
            json,
        } => control::spawn(
            &config,
            node,
            control::SpawnArgs {
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
            },
            json,
        ),
        Command::Stop {
            config,
            node,
            name,
            json,
        } => control::stop(&config, node, &name, json),
        Command::Drain {
            target,
            force,
            config,
            node,
            json,
        } => control::drain(&config, node, &target, force, json),
        Command::Ping {
            addr,
            config,
            count,
        } => ping::run(addr, &config, count),
        Command::Demo { nodes, keep } => demo::run(nodes, keep),
        Command::Audit {
            config,
            since,
            json,
        } => audit::run(&config, since, json),
        Command::Bench(BenchCommand::Control {
            json,
            spawns,
            runs,
            partition_runs,
        }) => bench::control(json, spawns, runs, partition_runs),
        Command::Bench(BenchCommand::Tasks { json, tasks }) => bench::tasks(json, tasks),
        Command::Bench(BenchCommand::Security { json, scale }) => bench::security(json, scale),
        Command::Bench(BenchCommand::Inspect { json, scale }) => bench::inspect(json, scale),
        Command::Bench(BenchCommand::Console {
            json,
            nodes,
            actors,
            frames,
        }) => bench::console(json, nodes, actors, frames),
        Command::Bench(BenchCommand::Link { json, scale, relay }) => {
            bench::link(json, scale, relay)
        }
        Command::Bench(BenchCommand::Membership {
            nodes,
            loss,
            kill,
            meta,
            processes,
            idle_secs,
            json,
        }) => bench::membership(
            bench::Membership {
                nodes,
                loss,
                kill,
                meta,
                processes,
                idle: std::time::Duration::from_secs(idle_secs),
            },
            json,
        ),
    }
}
