//! A local cluster of `swarm node start` child processes on 127.0.0.1,
//! with a throw-away CA, certificates and configuration written to a
//! directory. Used by `swarm demo` and by the multi-process tests. The
//! processes are killed when the [`LocalCluster`] is dropped.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use swarm_protocol::NodeId;

use crate::config::NodeFile;
use crate::credentials::Throwaway;

/// One node process.
#[derive(Debug)]
pub struct ChildNode {
    /// The process.
    pub child: Child,
    /// Its certificate name.
    pub name: String,
    /// Where its mesh listens.
    pub addr: SocketAddr,
    /// Its node id.
    pub id: NodeId,
}

/// Child node processes and the directory with their files.
#[derive(Debug)]
pub struct LocalCluster {
    /// The nodes, in start order.
    pub nodes: Vec<ChildNode>,
    /// The CA, certificates and configs.
    pub dir: PathBuf,
    /// The cluster name.
    pub cluster: String,
    /// Remove `dir` on drop.
    remove_dir: bool,
}

impl LocalCluster {
    /// Writes a CA, a join secret and identities for `n` nodes (n1..nN)
    /// plus one called `driver` into `dir`, then starts the nodes from the
    /// `swarm` binary at `exe`, each dialing the ones started before it and
    /// joining membership through n1. `extra_args` go to every
    /// `swarm node start`.
    ///
    /// # Errors
    ///
    /// If files cannot be written or a node does not report READY within 30 s.
    pub fn start(exe: &Path, dir: &Path, n: usize, extra_args: &[&str]) -> Result<Self> {
        Self::start_with(exe, dir, n, extra_args, true)
    }

    /// As [`LocalCluster::start`], but the nodes dial no one at start: they
    /// only join membership through n1 (links are made on first use).
    ///
    /// # Errors
    ///
    /// As [`LocalCluster::start`].
    pub fn start_members(exe: &Path, dir: &Path, n: usize, extra_args: &[&str]) -> Result<Self> {
        Self::start_with(exe, dir, n, extra_args, false)
    }

    fn start_with(
        exe: &Path,
        dir: &Path,
        n: usize,
        extra_args: &[&str],
        dial_peers: bool,
    ) -> Result<Self> {
        let cluster = "local".to_owned();
        let names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
        all.push("driver");
        Throwaway::new(&cluster).write_files(dir, &all)?;
        let mut this = Self {
            nodes: Vec::new(),
            dir: dir.to_owned(),
            cluster: cluster.clone(),
            remove_dir: false,
        };
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        for name in &names {
            let peers: Vec<SocketAddr> = if dial_peers {
                this.nodes.iter().map(|n| n.addr).collect()
            } else {
                Vec::new()
            };
            let seeds = this.seeds();
            let config = dir.join(format!("{name}.toml"));
            std::fs::write(
                &config,
                NodeFile::render(&cluster, name, any_port, &peers, &seeds),
            )?;
            let node = spawn(exe, &config, extra_args)
                .with_context(|| format!("node {name} did not start"))?;
            this.nodes.push(node);
        }
        let seeds = this.seeds();
        std::fs::write(
            dir.join("driver.toml"),
            NodeFile::render(&cluster, "driver", any_port, &[], &seeds),
        )?;
        Ok(this)
    }

    /// The membership seed of the cluster: the first node, once started.
    pub fn seeds(&self) -> Vec<SocketAddr> {
        self.nodes.first().map(|n| n.addr).into_iter().collect()
    }

    /// Removes the directory when the cluster is dropped.
    pub fn remove_dir_on_drop(&mut self, remove: bool) {
        self.remove_dir = remove;
    }

    /// The driver's configuration file (an identity for in-process nodes).
    pub fn driver_config(&self) -> PathBuf {
        self.dir.join("driver.toml")
    }

    /// Kills node `i` with SIGKILL and reaps it.
    ///
    /// # Errors
    ///
    /// If there is no such node or it cannot be killed.
    pub fn kill(&mut self, i: usize) -> Result<ChildNode> {
        if i >= self.nodes.len() {
            bail!("no node {i}");
        }
        let mut node = self.nodes.remove(i);
        node.child.kill()?;
        node.child.wait()?;
        Ok(node)
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Starts one node process and waits for its READY line.
fn spawn(exe: &Path, config: &Path, extra_args: &[&str]) -> Result<ChildNode> {
    let mut child = Command::new(exe)
        .args(["node", "start", "--config"])
        .arg(config)
        .args(extra_args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    let line = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(Ok(line))) => line,
        other => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("no READY line from the node ({other:?})");
        }
    };
    let mut words = line.split_whitespace();
    let (Some("READY"), Some(addr), Some(id), Some(name)) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        let _ = child.kill();
        bail!("unexpected first line from the node: {line:?}");
    };
    Ok(ChildNode {
        child,
        name: name.to_owned(),
        addr: addr.parse()?,
        id: id.parse().map_err(|e| anyhow!("bad node id: {e}"))?,
    })
}
