//! Command-line parsing and dispatch; each command lives in its own file.

mod bench;
mod ca;
mod demo;
mod node;
mod ping;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Swarm: a distributed actor runtime.
#[derive(Debug, Parser)]
#[command(name = "swarm", version, about, propagate_version = true)]
pub(crate) struct Args {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Manage the cluster certificate authority.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Issue node and operator certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Run a node.
    #[command(subcommand)]
    Node(NodeCommand),
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
pub(crate) enum CaCommand {
    /// Create a CA key pair and a join secret.
    Init {
        /// Where to write ca.key, ca.pub and join.secret.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Replace an existing CA (invalidates every certificate it issued).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CertCommand {
    /// Create a node key and a certificate for it, signed by the CA.
    Issue {
        /// The node's name (e.g. n1).
        #[arg(long)]
        name: String,
        /// Comma-separated roles (head, worker, operator).
        #[arg(long, value_delimiter = ',', default_value = "worker")]
        roles: Vec<String>,
        /// The directory holding ca.key.
        #[arg(long, default_value = ".")]
        ca_dir: PathBuf,
        /// Where to write NAME.key and NAME.cert.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = swarm::credentials::DEFAULT_DAYS)]
        days: u64,
        /// Certificate serial (random by default); revocation lists name serials.
        #[arg(long)]
        serial: Option<u64>,
    },
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
        /// More peers to dial at start (repeatable).
        #[arg(long = "peer")]
        peers: Vec<SocketAddr>,
        /// Expose the demo workload (adder, relay, counter).
        #[arg(long, value_parser = ["none", "demo"], default_value = "none")]
        workload: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Two nodes on loopback: ask latency, tell rate, bulk throughput,
    /// handshake time, idle memory, and the bare Noise baseline.
    Link {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Scale the number of iterations (1.0 = default).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
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

/// Logs go to stderr through tracing; `RUST_LOG` overrides the level.
pub(crate) fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal: piped or redirected logs stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Ca(CaCommand::Init { dir, force }) => ca::init(&dir, force),
        Command::Cert(CertCommand::Issue {
            name,
            roles,
            ca_dir,
            out,
            days,
            serial,
        }) => ca::issue(&name, &roles, &ca_dir, &out, days, serial),
        Command::Node(NodeCommand::Start {
            config,
            listen,
            peers,
            workload,
        }) => node::start(&config, listen, peers, workload == "demo"),
        Command::Ping {
            addr,
            config,
            count,
        } => ping::run(addr, &config, count),
        Command::Demo { nodes, keep } => demo::run(nodes, keep),
        Command::Bench(BenchCommand::Link { json, scale }) => bench::link(json, scale),
    }
}
