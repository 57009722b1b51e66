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

/// Run and operate a cluster of Swarm actor nodes.
///
/// Create the cluster's CA and certificates, start nodes, place and stop
/// named actors, and watch members, heads, tasks and links (or the live
/// console). `swarm demo` tries it all on one machine.
#[derive(Debug, Parser)]
#[command(name = "swarm", version, propagate_version = true)]
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
        #[command(flatten)]
        totp: secrets::Totp,
    },
    /// Forget the login `swarm login` (or the first command) kept.
    Logout {
        /// Your operator configuration.
        #[arg(long)]
        config: PathBuf,
    },
    #[command(flatten)]
    Cluster(cluster::ClusterCommand),
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

/// Parses `30s`, `500ms`, `5m`, `1h` (a number alone is seconds) into ms.
pub(crate) fn parse_millis(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 30s, 500ms, 5m)"))?;
    let scale = match unit {
        "ms" => 1.0,
        "" | "s" => 1e3,
        "m" | "min" => 60e3,
        "h" => 3600e3,
        other => return Err(format!("unknown duration unit {other:?} (use ms, s, m, h)")),
    };
    let ms = number * scale;
    if !ms.is_finite() || ms < 1.0 || ms > u64::MAX as f64 {
        return Err(format!("{s:?} is not a duration of at least 1 ms"));
    }
    Ok(ms as u64)
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
        /// Measure the control plane at scale instead: the head's state
        /// machine with N placed actors (bytes per actor, snapshot write,
        /// install, reopen), then `swarm actors --json` on a local cluster.
        #[arg(long)]
        actors: Option<usize>,
        /// With --actors: named actors placed and started on the local
        /// cluster (0: none; default: N, at most 100,000).
        #[arg(long, requires = "actors")]
        view_actors: Option<usize>,
        /// With --actors: also time `swarm actors --json` by this binary
        /// (a baseline), against the same cluster.
        #[arg(long, requires = "actors")]
        baseline_exe: Option<std::path::PathBuf>,
        /// Instead: N lightweight lease holders (mesh-only nodes in this
        /// process, the real renewal protocol) against 3 heads and 2
        /// workers: the leader's CPU, renewal latency p99 and crash
        /// failovers (`--runs`) while they renew.
        #[arg(long, conflicts_with = "actors")]
        holders: Option<usize>,
    },
    /// Two worker processes and a driver without CPUs: empty tasks per
    /// second (local, and to 2 nodes under each policy), the task round
    /// trip beside an ask, a batch of CPU-bound tasks (about 1 ms of one
    /// core each) under each policy beside its one-core time, the retry
    /// after a SIGKILL, and a 64 MiB kept result passed between workers
    /// (MB/s, 10^6 bytes).
    /// Durable actors on a local cluster of 3 heads and 2 workers, with
    /// the embedded store and with PostgreSQL (a private server; skipped
    /// with a note where it is not installed, unless CI=true): the Raft
    /// commit baseline, one event's persist time, events per second with
    /// many actors, recovery of a 1 MiB snapshot plus 10,000 events, and
    /// durable failover.
    Durable {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// One-at-a-time persists (and Raft writes) to time.
        #[arg(long, default_value_t = 2_000)]
        persists: usize,
        /// Ledgers persisting at once for the throughput.
        #[arg(long, default_value_t = 256)]
        actors: usize,
        /// Seconds of the throughput run.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// Durable failovers (SIGKILL of the host) to time.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
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
    /// What an idle node costs, per role: a control plane (3 heads, 2
    /// workers, one running a named actor) and a cluster without heads,
    /// child processes measured over the same quiet window (CPU, wake-ups,
    /// RSS, RssAnon, PSS, threads).
    Idle {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Nodes of the cluster without heads.
        #[arg(long, default_value_t = 3)]
        members: usize,
        /// Seconds over which the idle processes are measured.
        #[arg(long, default_value_t = 30)]
        idle_secs: u64,
    },
    /// Live migration in one process (a head, two workers, a driver): a
    /// durable demo ledger migrated back and forth while three callers
    /// stream deposits through `Named` handles; prints
    /// `migration_pause_ms` (the longest gap between acknowledged
    /// deposits around a migration) and fails if a deposit failed, was
    /// reordered, lost or applied twice.
    Migrate {
        /// Migrations to time.
        #[arg(long, default_value_t = 20)]
        migrations: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
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

/// Runs the parsed command: keeps the keyring options for whatever opens a
/// keyring, then hands the command to its group's module.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    secrets::install(args.secrets);
    match args.command {
        Command::Ca(command) => ca::run(command),
        Command::Cert(command) => ca::cert(command),
        Command::Node(command) => node::run(command),
        Command::Operator(command) => operator::run(command),
        Command::Admin(command) => operator::admin(command),
        Command::Keys(command) => keys::run(command),
        Command::Console(args) => console::run(args),
        Command::Ping {
            addr,
            config,
            count,
        } => ping::run(addr, &config, count),
        Command::Login { config, node, totp } => {
            totp.install();
            operator::login(&config, node)
        }
        Command::Logout { config } => operator::logout(&config),
        Command::Cluster(command) => cluster::run(command),
        Command::Audit {
            config,
            since,
            json,
        } => audit::run(&config, since, json),
        Command::Demo { nodes, keep } => demo::run(nodes, keep),
        Command::Bench(command) => bench::run(command),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn durations_parse_in_their_units_and_nothing_else() {
        assert_eq!(parse_millis("30s"), Ok(30_000));
        assert_eq!(parse_millis("500ms"), Ok(500));
        assert_eq!(parse_millis("5m"), Ok(300_000));
        assert_eq!(parse_millis("1h"), Ok(3_600_000));
        assert_eq!(parse_millis("2"), Ok(2_000));
        for bad in ["", "0s", "-1s", "1d", "s", "1e400s", "NaNs"] {
            assert!(parse_millis(bad).is_err(), "{bad:?}");
        }
    }

    /// The long help of `swarm PATH...`, as `--help` prints it.
    fn help(path: &[&str]) -> String {
        let mut command = Args::command();
        command.build();
        let mut at = &mut command;
        for name in path {
            at = at
                .find_subcommand_mut(name)
                .unwrap_or_else(|| panic!("no subcommand {name}"));
        }
        at.render_long_help().to_string()
    }

    #[test]
    fn swarm_help_starts_with_what_the_tool_does_for_a_user() {
        let text = help(&[]);
        assert!(
            text.starts_with("Run and operate a cluster of Swarm actor nodes"),
            "{text}"
        );
        assert!(!text.contains("integration"), "{text}");
    }

    #[test]
    fn totp_is_offered_only_by_commands_that_log_in() {
        for path in [
            &["node", "start"][..],
            &["ca", "init"],
            &["cert", "issue"],
            &["keys", "status"],
            &["demo"],
            &["audit"],
        ] {
            assert!(
                !help(path).contains("--totp"),
                "swarm {path:?} offers --totp"
            );
        }
        for path in [
            &["login"][..],
            &["members"],
            &["types"],
            &["spawn"],
            &["drain"],
            &["migrate"],
            &["console"],
            &["cert", "revoke"],
            &["admin", "login"],
            &["operator", "passwd"],
            &["keys", "rotate"],
        ] {
            assert!(
                help(path).contains("--totp <CODE>"),
                "swarm {path:?} lacks --totp"
            );
        }
    }

    #[test]
    fn spawn_help_says_how_to_list_the_types_a_cluster_can_spawn() {
        let text = help(&["spawn"]);
        assert!(text.contains("swarm types"), "{text}");
        assert!(help(&["types"]).contains("--totp <CODE>"));
    }
}
