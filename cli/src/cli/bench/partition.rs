//! The partition failover of `swarm bench control`: the worker running a
//! named actor is cut off (not killed), and the time from the cut to the
//! first answer of the new incarnation through a default [`Named`] handle
//! is measured. Real processes of this binary in network namespaces (a
//! bridge, one namespace per node, iptables dropping everything on the
//! cut-off node's interface), the driver in this process on a veth into
//! the bridge; where namespaces cannot be made, the same in one process
//! with the fault transport ([`swarm::Faults`]). Default settings either
//! way (3 s lease, 2 s heartbeat timeout, 5 s ask timeout).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use swarm::config::NodeFile;
use swarm::control::{Control, Named, Spawn};
use swarm::credentials::Throwaway;
use swarm::placement::Placement;
use swarm::{Node, NodeId};
use swarm_cli::demo::{Deposit, Ledger, LedgerArgs};
use swarm_cli::local::{spawn_command, ChildNode};

/// What the partition runs measured, and how.
#[derive(Debug)]
pub(crate) struct Partition {
    /// Where the cut was made: namespaces, or the in-process fault transport.
    pub(crate) how: String,
    /// Seconds from each cut to the new incarnation's first answer, sorted.
    pub(crate) runs: Vec<f64>,
}

/// Cuts the worker running a ledger off `runs` times.
pub(crate) fn run(exe: &Path, runs: usize) -> Result<Partition> {
    match unavailable() {
        None => namespaces(exe, runs),
        Some(why) => {
            eprintln!("note: partition failover in one process (fault transport): {why}");
            in_process(runs)
        }
    }
}

/// Heads and workers of the partition cluster.
const HEADS: usize = 3;
const WORKERS: usize = 3;

/// The bridge's subnet; the driver is `.254` on it.
const SUBNET: &str = "10.213.7";

/// Runs a command; true if it succeeded.
fn quiet(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a command that must succeed.
fn must(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("cannot run {}", args[0]))?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Why network namespaces cannot be used here, if they cannot.
fn unavailable() -> Option<String> {
    if !quiet(&["ip", "-V"]) {
        return Some("`ip` (iproute2) is not installed".into());
    }
    if !quiet(&["iptables", "--version"]) {
        return Some("`iptables` is not installed".into());
    }
    let probe = format!("swbp{}", std::process::id());
    if !quiet(&["ip", "netns", "add", &probe]) {
        return Some("cannot create network namespaces (not root?)".into());
    }
    let filter = quiet(&["ip", "netns", "exec", &probe, "iptables", "-L"]);
    quiet(&["ip", "netns", "del", &probe]);
    if !filter {
        return Some("iptables does not work in a namespace".into());
    }
    None
}

/// The namespaces, processes and files of one run; removed on drop.
struct Net {
    prefix: String,
    dir: PathBuf,
    exe: PathBuf,
    namespaces: Vec<String>,
    /// Each node: its name, config and process.
    nodes: Vec<(String, PathBuf, ChildNode)>,
}

impl Net {
    fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn add_ns(&mut self, name: &str) -> Result<String> {
        let ns = self.ns(name);
        must(&["ip", "netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        must(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Namespace `name` with `eth0` at `addr` on the bridge.
    fn host(&mut self, name: &str, addr: &str) -> Result<()> {
        let ns = self.add_ns(name)?;
        let lan = self.ns("lan");
        let (a, b) = (
            format!("{}{name}a", self.prefix),
            format!("{}{name}b", self.prefix),
        );
        must(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b])?;
        must(&["ip", "link", "set", &a, "netns", &ns])?;
        must(&["ip", "link", "set", &b, "netns", &lan])?;
        must(&["ip", "-n", &ns, "link", "set", &a, "name", "eth0"])?;
        must(&["ip", "-n", &ns, "addr", "add", addr, "dev", "eth0"])?;
        must(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
        must(&["ip", "-n", &lan, "link", "set", &b, "master", "br0"])?;
        must(&["ip", "-n", &lan, "link", "set", &b, "up"])?;
        Ok(())
    }

    /// This process's own way onto the bridge: a veth whose other end is
    /// on it (removed with the bridge's namespace).
    fn driver_link(&mut self) -> Result<()> {
        let lan = self.ns("lan");
        let (a, b) = (format!("{}da", self.prefix), format!("{}db", self.prefix));
        must(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b])?;
        must(&["ip", "link", "set", &b, "netns", &lan])?;
        must(&["ip", "addr", "add", &format!("{SUBNET}.254/24"), "dev", &a])?;
        must(&["ip", "link", "set", &a, "up"])?;
        must(&["ip", "-n", &lan, "link", "set", &b, "master", "br0"])?;
        must(&["ip", "-n", &lan, "link", "set", &b, "up"])?;
        Ok(())
    }

    fn start(&mut self, name: &str, config: &Path) -> Result<()> {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.ns(name)])
            .arg(&self.exe)
            .args(["node", "start", "--config"])
            .arg(config)
            .args(["--workload", "demo"]);
        let node = spawn_command(command, name)
            .with_context(|| format!("node {name} did not start in its namespace"))?;
        self.nodes.push((name.to_owned(), config.to_owned(), node));
        Ok(())
    }

    /// Drops everything on `name`'s interface (`-I`), or stops (`-D`).
    fn cut(&self, name: &str, op: &str) -> Result<()> {
        let ns = self.ns(name);
        for (chain, dir) in [("INPUT", "-i"), ("OUTPUT", "-o")] {
            must(&[
                "ip", "netns", "exec", &ns, "iptables", op, chain, dir, "eth0", "-j", "DROP",
            ])?;
        }
        Ok(())
    }

    /// Kills node `name` and starts it again with the same configuration.
    fn restart(&mut self, name: &str) -> Result<NodeId> {
        let i = self
            .nodes
            .iter()
            .position(|(n, _, _)| n == name)
            .context("no such node")?;
        let (_, config, mut node) = self.nodes.remove(i);
        let _ = node.child.kill();
        let _ = node.child.wait();
        self.start(name, &config)?;
        Ok(node.id)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for (_, _, node) in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            quiet(&["ip", "netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn namespaces(exe: &Path, runs: usize) -> Result<Partition> {
    let dir = std::env::temp_dir().join(format!("swarm-bench-partition-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut net = Net {
        prefix: format!("sb{}", std::process::id() % 100_000),
        dir: dir.clone(),
        exe: exe.to_owned(),
        namespaces: Vec::new(),
        nodes: Vec::new(),
    };
    let heads: Vec<String> = (1..=HEADS).map(|i| format!("h{i}")).collect();
    let workers: Vec<String> = (1..=WORKERS).map(|i| format!("w{i}")).collect();
    let mut names: Vec<(&str, &[&str])> = heads
        .iter()
        .map(|h| (h.as_str(), &["head"][..]))
        .chain(workers.iter().map(|w| (w.as_str(), &["worker"][..])))
        .collect();
    names.push(("driver", &["worker"]));
    Throwaway::new("bench").write_identities(&dir, &names)?;

    let lan = net.add_ns("lan")?;
    must(&["ip", "-n", &lan, "link", "add", "br0", "type", "bridge"])?;
    must(&["ip", "-n", &lan, "link", "set", "br0", "up"])?;
    let addr = |i: usize| format!("{SUBNET}.{}", i + 1);
    let listen =
        |i: usize| -> Result<std::net::SocketAddr> { Ok(format!("{}:7001", addr(i)).parse()?) };
    let seeds = [listen(0)?];
    for (i, name) in heads.iter().chain(&workers).enumerate() {
        net.host(name, &format!("{}/24", addr(i)))?;
        let mut text = NodeFile::render(
            "bench",
            name,
            listen(i)?,
            &[],
            if i == 0 { &[] } else { &seeds },
        );
        if i < HEADS {
            text.push_str(&NodeFile::render_head(name, HEADS));
        }
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, text)?;
        net.start(name, &config)?;
    }
    net.driver_link()?;
    let driver_config = dir.join("driver.toml");
    std::fs::write(
        &driver_config,
        NodeFile::render(
            "bench",
            "driver",
            format!("{SUBNET}.254:0").parse()?,
            &[],
            &seeds,
        ),
    )?;

    actix::System::new().block_on(async move {
        let mesh = NodeFile::load(&driver_config)?.mesh_config()?;
        let driver = Node::start(mesh).await?;
        let control = driver
            .control()
            .context("the driver has membership")?
            .clone();
        let ledger = placed(&control).await?;
        let mut took = Vec::new();
        for _ in 0..runs {
            let at = ledger.send(Deposit(0)).await?.node;
            let name = net
                .nodes
                .iter()
                .find(|(_, _, n)| n.id == at)
                .map(|(name, _, _)| name.clone())
                .context("the ledger runs outside the cluster")?;
            net.cut(&name, "-I")?;
            let cut_at = Instant::now();
            let answered = moved(&ledger, at).await;
            net.cut(&name, "-D")?;
            took.push(answered?.duration_since(cut_at).as_secs_f64());
            // The cut-off worker stopped its actors; it starts afresh and
            // takes placements again once it holds a lease.
            let id = net.restart(&name)?;
            holds_lease(&control, id).await?;
        }
        driver.shutdown();
        took.sort_by(f64::total_cmp);
        Ok(Partition {
            how: "real processes in network namespaces, cut with iptables".to_owned(),
            runs: took,
        })
    })
}

/// In one process: 3 heads and 3 workers on loopback, each with a fault
/// switch; the cut drops the direct path between the ledger's worker and
/// every other node (membership's UDP still flows; only leases decide).
fn in_process(runs: usize) -> Result<Partition> {
    actix::System::new().block_on(async move {
        let dir = std::env::temp_dir().join(format!("swarm-bench-faults-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let nodes = super::in_process::start(&dir, HEADS, WORKERS).await?;
        let driver = &nodes.last().context("no nodes")?.node;
        let control = driver.control().context("membership")?.clone();
        let ledger = placed(&control).await?;
        let mut took = Vec::new();
        for _ in 0..runs {
            let at = ledger.send(Deposit(0)).await?.node;
            let cut = |on: bool| {
                let f = &nodes.iter().find(|m| m.node.id() == at)?.faults;
                for other in nodes.iter().filter(|m| m.node.id() != at) {
                    if on {
                        f.block_direct(other.node.id());
                        other.faults.block_direct(at);
                    } else {
                        f.unblock_direct(other.node.id());
                        other.faults.unblock_direct(at);
                    }
                }
                Some(())
            };
            cut(true).context("the ledger runs outside the cluster")?;
            let cut_at = Instant::now();
            let answered = moved(&ledger, at).await;
            cut(false);
            took.push(answered?.duration_since(cut_at).as_secs_f64());
            holds_lease(&control, at).await?;
        }
        super::in_process::stop(nodes);
        let _ = std::fs::remove_dir_all(&dir);
        took.sort_by(f64::total_cmp);
        Ok(Partition {
            how: "one process, fault transport (network namespaces unavailable)".to_owned(),
            runs: took,
        })
    })
}

/// A ledger on one of the workers, once the cluster places it.
async fn placed(control: &Control) -> Result<Named<Ledger>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let spawn = super::control::on_workers("partitioned").get_if_exists();
        match control.spawn(spawn).await {
            Ok(named) => return Ok(named),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "the control plane is not ready yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).context("the control plane never placed an actor"),
        }
    }
}

/// Asks through `ledger` until another node than `from` answers, as a
/// caller would (again after each error); when it did.
async fn moved(ledger: &Named<Ledger>, from: NodeId) -> Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(balance) = ledger.send(Deposit(0)).await {
            if balance.node != from {
                return Ok(Instant::now());
            }
        }
        if Instant::now() > deadline {
            bail!("no new incarnation answered within 60 s of the cut");
        }
    }
}

/// Waits until `node` takes placements again (it holds a lease): a named
/// actor pinned to it starts, and is stopped again.
async fn holds_lease(control: &Control, node: NodeId) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let probe = Spawn::<Ledger>::named("partition-probe")
            .args(LedgerArgs { opening: 0 })
            .placement(Placement::Node { node, hard: true });
        if control.spawn(probe).await.is_ok() {
            control.stop("partition-probe").await?;
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the healed worker never held a lease again");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
