//! A local cluster of `swarm node start` child processes on 127.0.0.1,
//! with a throw-away CA, certificates and configuration written to a
//! directory. Used by `swarm demo` and by the multi-process tests. The
//! processes are killed when the [`LocalCluster`] is dropped.

pub mod postgres;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use swarm_protocol::NodeId;

use swarm::config::NodeFile;
use swarm::credentials::Throwaway;
use swarm::FileError;

type Result<T> = std::result::Result<T, LocalError>;

/// Why a local cluster could not start or act.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalError {
    /// A configuration or key file could not be written.
    #[error(transparent)]
    File(#[from] FileError),
    /// The binary could not be run.
    #[error("cannot run {}", exe.display())]
    Spawn {
        /// The binary.
        exe: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A node did not print its READY line within 30 s, or printed
    /// something else.
    #[error("node {name} did not start: {first_line:?}")]
    NotReady {
        /// The node.
        name: String,
        /// What it printed first, if anything.
        first_line: Option<String>,
    },
    /// There is no node with this index.
    #[error("no node {0}")]
    NoNode(usize),
    /// The admin API's certificate could not be made.
    #[error(transparent)]
    Tls(#[from] swarm_admin::tls::TlsError),
    /// A node could not be killed or reaped.
    #[error("cannot kill node: {0}")]
    Kill(std::io::Error),
}

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
    /// Where its admin API listens (HTTPS), if it serves one.
    pub admin: Option<SocketAddr>,
}

/// What nodes a local cluster starts.
#[derive(Debug, Clone)]
struct Shape {
    /// How many.
    n: usize,
    /// Each dials the ones started before it.
    dial_peers: bool,
    /// The first `heads` have the head role.
    heads: usize,
    /// The node that serves the admin API, if any (0: n1).
    admin: Option<usize>,
    /// Each node's log goes to a file of its own ([`LocalCluster::log_path`]).
    logs: bool,
    /// More configuration for every node (TOML sections).
    config: String,
}

impl Shape {
    fn members(n: usize) -> Self {
        Self {
            n,
            dial_peers: false,
            heads: 0,
            admin: None,
            logs: false,
            config: String::new(),
        }
    }

    fn control(heads: usize, workers: usize) -> Self {
        Self {
            heads,
            ..Self::members(heads + workers)
        }
    }
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
    /// The `swarm` binary the nodes run.
    exe: PathBuf,
    /// Each node's `swarm node start` arguments, by name (for restarts).
    args: std::collections::HashMap<String, Vec<String>>,
    /// The node that serves the admin API, if any (0: n1).
    admin: Option<usize>,
    /// Each node logs to its own file (for counting what nodes logged).
    logs: bool,
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
        let shape = Shape {
            dial_peers: true,
            ..Shape::members(n)
        };
        Self::start_with(exe, dir, extra_args, shape, &|_| Vec::new())
    }

    /// As [`LocalCluster::start_control`], and n1 serves the admin API
    /// (HTTPS on a free port of 127.0.0.1, its certificate under
    /// `admin-ca.crt` in `dir`; see [`ChildNode::admin`]).
    ///
    /// # Errors
    ///
    /// As [`LocalCluster::start`].
    pub fn start_control_admin(
        exe: &Path,
        dir: &Path,
        heads: usize,
        workers: usize,
        extra_args: &[&str],
    ) -> Result<Self> {
        Self::start_control_admin_on(exe, dir, (heads, workers), 0, extra_args)
    }

    /// As [`LocalCluster::start_control_admin`], with node `admin`
    /// (0-based, heads first) serving the admin API: a worker's admin API
    /// stays up while heads are killed.
    ///
    /// # Errors
    ///
    /// As [`LocalCluster::start`].
    pub fn start_control_admin_on(
        exe: &Path,
        dir: &Path,
        (heads, workers): (usize, usize),
        admin: usize,
        extra_args: &[&str],
    ) -> Result<Self> {
        let shape = Shape {
            admin: Some(admin),
            ..Shape::control(heads, workers)
        };
        Self::start_with(exe, dir, extra_args, shape, &|_| Vec::new())
    }

    /// A cluster with a control plane: n1..n`heads` have the head role
    /// (and a `[head]` section with `heads` voters; their stores are in
    /// `dir`), the next `workers` nodes the worker role. They join
    /// membership through n1 and dial no one. The driver may operate it.
    ///
    /// # Errors
    ///
    /// As [`LocalCluster::start`].
    pub fn start_control(
        exe: &Path,
        dir: &Path,
        heads: usize,
        workers: usize,
        extra_args: &[&str],
    ) -> Result<Self> {
        Self::start_with(
            exe,
            dir,
            extra_args,
            Shape::control(heads, workers),
            &|_| Vec::new(),
        )
    }

    /// As [`LocalCluster::start_control`], with `config` (TOML sections,
    /// e.g. `[durable]`) added to every node's configuration file.
    ///
    /// # Errors
    ///
    /// As [`LocalCluster::start`].
    pub fn start_control_configured(
        exe: &Path,
        dir: &Path,
        (heads, workers): (usize, usize),
        config: &str,
    ) -> Result<Self> {
        let shape = Shape {
            config: format!("\n{config}\n"),
            ..Shape::control(heads, workers)
        };
        Self::start_with(exe, dir, &[], shape, &|_| Vec::new())
    }

    /// As [`LocalCluster::start_control`], with more arguments for node
    /// `i` (0-based, heads first) from `node_args` (e.g. its resources).
    ///
    /// # Errors
    ///
    /// As [`LocalCluster::start`].
    pub fn start_control_with(
        exe: &Path,
        dir: &Path,
        (heads, workers): (usize, usize),
        extra_args: &[&str],
        node_args: &dyn Fn(usize) -> Vec<String>,
    ) -> Result<Self> {
        Self::start_with(
            exe,
            dir,
            extra_args,
            Shape::control(heads, workers),
            node_args,
        )
    }

    /// Starts a killed node again on its address, with the same
    /// configuration, identity and (for a head) store.
    ///
    /// # Errors
    ///
    /// As [`LocalCluster::start`].
    pub fn restart(&mut self, killed: &ChildNode) -> Result<&ChildNode> {
        let config = self.dir.join(format!("{}.toml", killed.name));
        let listen = killed.addr.to_string();
        let mut args: Vec<&str> = self
            .args
            .get(&killed.name)
            .map(|a| a.iter().map(String::as_str).collect())
            .unwrap_or_default();
        args.extend(["--listen", &listen]);
        let admin = self
            .admin
            .is_some_and(|i| killed.name == format!("n{}", i + 1));
        let log = self.logs.then(|| self.log_path(&killed.name));
        let node = spawn(
            &self.exe,
            &config,
            &killed.name,
            &args,
            admin,
            log.as_deref(),
        )?;
        self.nodes.push(node);
        Ok(self
            .nodes
            .last()
            .unwrap_or_else(|| unreachable!("just pushed")))
    }

    /// As [`LocalCluster::start`], but the nodes dial no one at start: they
    /// only join membership through n1 (links are made on first use).
    ///
    /// # Errors
    ///
    /// As [`LocalCluster::start`].
    pub fn start_members(exe: &Path, dir: &Path, n: usize, extra_args: &[&str]) -> Result<Self> {
        Self::start_with(exe, dir, extra_args, Shape::members(n), &|_| Vec::new())
    }

    /// As [`LocalCluster::start_members`], but each node's log (its
    /// stderr, with membership's warnings whatever `RUST_LOG` says) goes
    /// to its own file, [`LocalCluster::log_path`], from its start.
    ///
    /// # Errors
    ///
    /// As [`LocalCluster::start`], or if a log file cannot be created.
    pub fn start_members_logged(
        exe: &Path,
        dir: &Path,
        n: usize,
        extra_args: &[&str],
    ) -> Result<Self> {
        let shape = Shape {
            logs: true,
            ..Shape::members(n)
        };
        Self::start_with(exe, dir, extra_args, shape, &|_| Vec::new())
    }

    /// Where node `name` logs, in a cluster started by
    /// [`LocalCluster::start_members_logged`].
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    fn start_with(
        exe: &Path,
        dir: &Path,
        extra_args: &[&str],
        shape: Shape,
        node_args: &dyn Fn(usize) -> Vec<String>,
    ) -> Result<Self> {
        let Shape {
            n,
            dial_peers,
            heads,
            admin,
            logs,
            config: more,
        } = shape;
        let cluster = "local".to_owned();
        let names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let mut all: Vec<(&str, &[&str])> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let roles: &[&str] = if i < heads { &["head"] } else { &["worker"] };
                (name.as_str(), roles)
            })
            .collect();
        // The driver runs workloads (a node certificate; nodes read what
        // hosts run, so it needs no operator role and no second factor).
        all.push(("driver", &["worker"]));
        // An operator who may change the cluster (revoke, say).
        all.push(("admin", &["operator", "admin"]));
        // An operator who only reads.
        all.push(("viewer", &["operator"]));
        Throwaway::new(&cluster).write_identities(dir, &all)?;
        let mut this = Self {
            nodes: Vec::new(),
            dir: dir.to_owned(),
            cluster: cluster.clone(),
            remove_dir: false,
            exe: exe.to_owned(),
            args: std::collections::HashMap::new(),
            admin,
            logs,
        };
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        for (i, name) in names.iter().enumerate() {
            let peers: Vec<SocketAddr> = if dial_peers {
                this.nodes.iter().map(|n| n.addr).collect()
            } else {
                Vec::new()
            };
            let seeds = this.seeds();
            let config = dir.join(format!("{name}.toml"));
            let mut text = NodeFile::render(&cluster, name, any_port, &peers, &seeds);
            if i < heads {
                text.push_str(&NodeFile::render_head(name, heads));
            }
            let serves_admin = admin == Some(i);
            if serves_admin {
                text.push_str(&admin_files(dir, name)?);
            }
            text.push_str(&more);
            write(&config, text)?;
            let mut args: Vec<String> = extra_args.iter().map(|a| (*a).to_owned()).collect();
            args.extend(node_args(i));
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let log = logs.then(|| this.log_path(name));
            let node = spawn(exe, &config, name, &refs, serves_admin, log.as_deref())?;
            this.args.insert(name.clone(), args);
            this.nodes.push(node);
        }
        let seeds = this.seeds();
        write(
            &dir.join("driver.toml"),
            NodeFile::render(&cluster, "driver", any_port, &[], &seeds),
        )?;
        for operator in ["admin", "viewer"] {
            write(
                &dir.join(format!("{operator}.toml")),
                NodeFile::render(&cluster, operator, any_port, &[], &seeds),
            )?;
        }
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

    /// The admin operator's configuration file (`operator,admin` roles;
    /// for commands, not for joining).
    pub fn admin_config(&self) -> PathBuf {
        self.dir.join("admin.toml")
    }

    /// The read-only operator's configuration file (`operator` role).
    pub fn viewer_config(&self) -> PathBuf {
        self.dir.join("viewer.toml")
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
            return Err(LocalError::NoNode(i));
        }
        let mut node = self.nodes.remove(i);
        node.child.kill().map_err(LocalError::Kill)?;
        node.child.wait().map_err(LocalError::Kill)?;
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

fn write(path: &Path, text: String) -> Result<()> {
    std::fs::write(path, text).map_err(|source| {
        LocalError::File(FileError::Write {
            path: path.to_owned(),
            source,
        })
    })
}

/// Writes the admin CA (`admin-ca.crt`, its key sealed) once, and node
/// `name`'s admin certificate and sealed key; answers the `[admin]`
/// section of its configuration.
fn admin_files(dir: &Path, name: &str) -> Result<String> {
    let keyring = Throwaway::keyring(dir)?;
    let seal = |path: &Path, plain: &[u8]| {
        keyring
            .write_file(path, swarm_protocol::sealed::Kind::TlsKey, plain)
            .map_err(|e| LocalError::File(FileError::from(e)))
    };
    let (ca, pem) = swarm_admin::tls::AdminCa::generate("local")?;
    write(&dir.join("admin-ca.crt"), pem)?;
    seal(&dir.join("admin-ca.key"), &ca.key_der())?;
    let hosts = ["127.0.0.1".to_owned(), "localhost".to_owned()];
    let (chain, key) = ca.issue(name, &hosts)?;
    write(&dir.join(format!("{name}.admin.crt")), chain)?;
    seal(&dir.join(format!("{name}.admin.key")), &key)?;
    Ok(format!(
        "\n[admin]\nlisten = \"127.0.0.1:0\"\ncert = \"{name}.admin.crt\"\nkey = \"{name}.admin.key\"\nrefresh_ms = 500\n"
    ))
}

/// Starts one node process and waits for its READY line (and its ADMIN
/// line, if it serves the admin API); it logs to `log` if given.
fn spawn(
    exe: &Path,
    config: &Path,
    name: &str,
    extra_args: &[&str],
    admin: bool,
    log: Option<&Path>,
) -> Result<ChildNode> {
    let mut command = match wrapper(name) {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(exe);
            command
        }
        None => Command::new(exe),
    };
    command
        .args(["node", "start", "--config"])
        .arg(config)
        .args(extra_args);
    start_child(command, name, admin, log)
}

/// The command that node `name` runs under, if any: `SWARM_NODE_WRAP`
/// (a program and its arguments, split on whitespace) for the nodes
/// named in `SWARM_NODE_WRAP_NAMES` (comma-separated). For profiling:
/// `cli/idle-code.sh` runs some nodes of the benches under callgrind.
fn wrapper(name: &str) -> Option<(String, Vec<String>)> {
    let names = std::env::var("SWARM_NODE_WRAP_NAMES").ok()?;
    if !names.split(',').any(|n| n.trim() == name) {
        return None;
    }
    let wrap = std::env::var("SWARM_NODE_WRAP").ok()?;
    let mut words = wrap.split_whitespace().map(str::to_owned);
    Some((words.next()?, words.collect()))
}

/// Starts a node process from a prepared command line (for example one
/// that runs `swarm node start` inside a network namespace) and waits for
/// its READY line.
///
/// # Errors
///
/// If the command cannot run, or the node does not report READY within 30 s.
pub fn spawn_command(command: Command, name: &str) -> Result<ChildNode> {
    start_child(command, name, false, None)
}

/// Starts `command`, logging to this process's stderr or to `log`, and
/// waits for its READY line.
fn start_child(
    mut command: Command,
    name: &str,
    admin: bool,
    log: Option<&Path>,
) -> Result<ChildNode> {
    let exe = PathBuf::from(command.get_program());
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| crate::logs::default_filter("warn"));
    match log {
        Some(path) => {
            let file = std::fs::File::create(path).map_err(|source| {
                LocalError::File(FileError::Write {
                    path: path.to_owned(),
                    source,
                })
            })?;
            command
                .env("RUST_LOG", format!("{filter},{MEMBERSHIP_LOG}"))
                .stderr(file)
        }
        None => command.env("RUST_LOG", filter).stderr(Stdio::inherit()),
    };
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|source| LocalError::Spawn { exe, source })?;
    let not_ready = |first_line: Option<String>| LocalError::NotReady {
        name: name.to_owned(),
        first_line,
    };
    let Some(stdout) = child.stdout.take() else {
        return Err(not_ready(None));
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        if admin {
            let _ = tx.send(lines.next());
        }
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    let line = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(Ok(line))) => line,
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(not_ready(None));
        }
    };
    let mut words = line.split_whitespace();
    let parsed = match (words.next(), words.next(), words.next(), words.next()) {
        (Some("READY"), Some(addr), Some(id), Some(name)) => addr
            .parse::<SocketAddr>()
            .ok()
            .zip(id.parse::<NodeId>().ok())
            .map(|(addr, id)| (addr, id, name.to_owned())),
        _ => None,
    };
    let Some((addr, id, name)) = parsed else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(not_ready(Some(line)));
    };
    let admin = if admin {
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(Ok(line))) => line,
            _ => String::new(),
        };
        let addr = line
            .strip_prefix("ADMIN https://")
            .and_then(|a| a.parse::<SocketAddr>().ok());
        if addr.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(not_ready(Some(line)));
        }
        addr
    } else {
        None
    };
    Ok(ChildNode {
        child,
        name,
        addr,
        id,
        admin,
    })
}

/// The log directive that keeps membership's warnings (a member declared
/// down) in a logged cluster's files, whatever `RUST_LOG` says.
const MEMBERSHIP_LOG: &str = "swarm_actors::cluster::gossip=warn";
