//! The `swarm` command: create a CA and certificates, start nodes, ping
//! them, run the local demo cluster and the link benchmark. Run
//! `swarm --help` or `swarm COMMAND --help`.

mod cli;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = cli::Args::parse();
    cli::init_logging(args.command.default_log_level());
    cli::run(args)
}
