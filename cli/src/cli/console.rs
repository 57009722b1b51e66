//! `swarm console`: attach to a cluster as an operator and show it, live
//! in the terminal or once (`--once VIEW`, as a table or `--json`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use swarm_cli::console::collect::Collector;
use swarm_cli::console::{views, View};

/// What `swarm console` takes.
#[derive(Debug, clap::Args)]
pub(crate) struct ConsoleArgs {
    /// A configuration with an operator certificate of the cluster.
    #[arg(long)]
    config: PathBuf,
    /// The member to attach to (its mesh address); the console then asks
    /// every member it lists.
    #[arg(long)]
    node: SocketAddr,
    /// Print one view and exit: nodes, actors or links.
    #[arg(long, value_name = "VIEW")]
    once: Option<View>,
    /// With --once: print the view's rows as JSON (the data model's fields).
    #[arg(long, requires = "once")]
    json: bool,
}

pub(crate) fn run(args: ConsoleArgs) -> Result<()> {
    let mesh = super::client_config(&args.config)?;
    let addr = args.node;
    actix::System::new().block_on(async move {
        let node = super::secrets::start_client(mesh, addr).await?;
        let result = attach(&node, addr, &args).await;
        node.shutdown();
        result
    })
}

async fn attach(node: &swarm::Node, addr: SocketAddr, args: &ConsoleArgs) -> Result<()> {
    let peer = node
        .connect(addr)
        .await
        .with_context(|| format!("no authenticated connection to {addr}"))?;
    let collector = Collector::new(node.clone(), addr, peer.id);
    let Some(view) = args.once else {
        anyhow::bail!("the interactive console needs --once VIEW for now");
    };
    // Rates are computed between two inspections: inspect once to start
    // them, then report the second.
    if view == View::Actors {
        collector.poll().await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let cluster = collector.poll().await?;
    if args.json {
        println!("{}", views::json(view, &cluster));
    } else {
        print!("{}", views::text(view, &cluster));
    }
    Ok(())
}
