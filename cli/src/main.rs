//! The `swarm` command: create a CA and certificates, start nodes, ping
//! them, run the local demo cluster and the link benchmark. Run
//! `swarm --help` or `swarm COMMAND --help`.

mod cli;

use clap::Parser;

/// Errors are one line on stderr (the causes joined by ": ") and exit
/// status 1.
fn main() -> std::process::ExitCode {
    let args = cli::Args::parse();
    cli::init_logging(args.command.default_log_level());
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("swarm: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
