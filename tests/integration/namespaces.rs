//! Network namespaces for tests with real node processes: hosts on bridges
//! (veth pairs), node processes of the built `swarm` binary inside them,
//! and drivers (this test binary run again inside a namespace, answering
//! JSON commands on stdin). Everything is removed on drop, also when the
//! test fails; the tests themselves (`netns.rs`, `partition.rs`) say what
//! they build and check.
//!
//! # Missing tools
//!
//! These tests need root, `ip` (iproute2) and `iptables`: each starts with
//! [`require`] (`tools.rs`), which installs the programs or fails the test
//! with the command that does.

mod driver;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use swarm::config::NodeFile;
use swarm_cli::local::{spawn_command, ChildNode};

use crate::tools::Tool;
use crate::util::exe;

pub(crate) use driver::{Answer, Balance};

/// Whether the namespace test `test` may run: true once namespaces work
/// here (installing `ip` and `iptables` through `.ci/test-tools` if
/// missing); false (it passes without running) only where the person opted
/// out of `netns` with `SWARM_TEST_TOOLS_OPT_OUT`, outside CI.
///
/// # Panics
///
/// Otherwise, where namespaces cannot be used: with the command that
/// installs what is missing.
pub fn require(test: &str) -> bool {
    crate::tools::require(Tool::Netns, test).is_some()
}

/// Runs a command; true if it succeeded.
pub fn run(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a command that must succeed.
pub fn must(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespaces and processes of one run; removed on drop, also when the
/// test fails (iptables rules live in the namespaces and go with them).
pub struct Net {
    /// Prepended to every namespace and interface name: unique per test
    /// and run (tests of one binary run at the same time).
    prefix: String,
    /// Made so far, deleted on drop in reverse order.
    namespaces: Vec<String>,
    /// Node processes, killed on drop.
    nodes: Vec<(String, ChildNode)>,
    /// Driver processes, killed on drop.
    drivers: Vec<Child>,
}

impl Net {
    /// Nothing made yet; names start with `prefix` (a few characters:
    /// interface names have at most 15).
    pub fn new(prefix: String) -> Self {
        Self {
            prefix,
            namespaces: Vec::new(),
            nodes: Vec::new(),
            drivers: Vec::new(),
        }
    }

    /// The full name of namespace `name`.
    pub fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Makes namespace `name` with its loopback up.
    pub fn add_ns(&mut self, name: &str) -> String {
        let ns = self.ns(name);
        must(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// A veth pair: `a` end in namespace `ns_a`, `b` end in `ns_b`.
    fn veth(&self, ns_a: &str, a: &str, ns_b: &str, b: &str) {
        let (ta, tb) = (
            format!("t{}{a}", self.prefix),
            format!("t{}{b}", self.prefix),
        );
        must(&[
            "ip", "link", "add", &ta, "type", "veth", "peer", "name", &tb,
        ]);
        must(&["ip", "link", "set", &ta, "netns", ns_a]);
        must(&["ip", "link", "set", &tb, "netns", ns_b]);
        must(&["ip", "-n", ns_a, "link", "set", &ta, "name", a]);
        must(&["ip", "-n", ns_b, "link", "set", &tb, "name", b]);
        must(&["ip", "-n", ns_a, "link", "set", a, "up"]);
        must(&["ip", "-n", ns_b, "link", "set", b, "up"]);
    }

    /// A host on a bridge: its own namespace, one interface with `addr`,
    /// and a default route through `gateway` if given.
    pub fn host(
        &mut self,
        name: &str,
        bridge_ns: &str,
        bridge: &str,
        addr: &str,
        gateway: Option<&str>,
    ) {
        let ns = self.add_ns(name);
        let port = format!("p{name}");
        self.veth(&ns, "eth0", bridge_ns, &port);
        must(&[
            "ip", "-n", bridge_ns, "link", "set", &port, "master", bridge,
        ]);
        must(&["ip", "-n", &ns, "addr", "add", addr, "dev", "eth0"]);
        if let Some(gw) = gateway {
            must(&["ip", "-n", &ns, "route", "add", "default", "via", gw]);
        }
    }

    /// A bridge `name` in namespace `ns`, with `addr` if given.
    pub fn bridge(&self, ns: &str, name: &str, addr: Option<&str>) {
        must(&["ip", "-n", ns, "link", "add", name, "type", "bridge"]);
        must(&["ip", "-n", ns, "link", "set", name, "up"]);
        if let Some(addr) = addr {
            must(&["ip", "-n", ns, "addr", "add", addr, "dev", name]);
        }
    }

    /// A NAT router: public side on the internet bridge, a LAN bridge
    /// behind it, and MASQUERADE for the LAN.
    pub fn nat_site(&mut self, name: &str, public: &str, lan_gw: &str, lan: &str, inet: &str) {
        let ns = self.add_ns(name);
        let port = format!("p{name}");
        self.veth(&ns, "wan", inet, &port);
        must(&["ip", "-n", inet, "link", "set", &port, "master", "br0"]);
        must(&["ip", "-n", &ns, "addr", "add", public, "dev", "wan"]);
        self.bridge(&ns, "lan", Some(lan_gw));
        must(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        must(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            lan,
            "-o",
            "wan",
            "-j",
            "MASQUERADE",
        ]);
    }

    /// Starts the demo workload's node `name` in its namespace.
    pub fn start_node(&mut self, name: &str, config: &Path, extra: &[&str]) {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.ns(name)])
            .arg(exe())
            .args(["node", "start", "--config"])
            .arg(config)
            .args(["--workload", "demo"])
            .args(extra);
        let node = spawn_command(command, name).expect("node starts in its namespace");
        self.nodes.push((name.to_owned(), node));
    }

    /// Kills node `name` (SIGKILL) and waits for it.
    pub fn kill(&mut self, name: &str) {
        if let Some(i) = self.nodes.iter().position(|(n, _)| n == name) {
            let (_, mut node) = self.nodes.remove(i);
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
    }

    /// Starts a driver: this test binary inside `host`'s namespace, an
    /// in-process node with the configuration `config`.
    pub fn start_driver(&mut self, host: &str, config: &Path) -> Driver {
        let me = std::env::current_exe().unwrap();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns(host)])
            .arg(me)
            .args([
                "--exact",
                "namespaces::driver_process",
                "--ignored",
                "--nocapture",
            ])
            .env("SWARM_NETNS_DRIVER", config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(json) = line.strip_prefix("DRIVER ") {
                    if tx.send(json.to_owned()).is_err() {
                        return;
                    }
                }
            }
        });
        self.drivers.push(child);
        Driver {
            name: host.to_owned(),
            stdin,
            lines,
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for driver in &mut self.drivers {
            let _ = driver.kill();
            let _ = driver.wait();
        }
        for (_, node) in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            run(&["ip", "netns", "del", ns]);
        }
    }
}

/// A driver process: commands in, one JSON answer each (see `driver.rs`
/// for the commands).
pub struct Driver {
    /// The host it runs on, for the log.
    name: String,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Driver {
    /// Sends `command` and waits for its answer (60 s at most).
    ///
    /// # Panics
    ///
    /// If the driver does not answer in time or answers no JSON.
    pub fn call(&mut self, command: &str) -> serde_json::Value {
        let value = self.quiet(command);
        let text = value.to_string();
        let shown: String = text.chars().take(SHOWN).collect();
        let more = if shown.len() < text.len() { " ..." } else { "" };
        eprintln!("driver {} {command}: {shown}{more}", self.name);
        value
    }

    /// As [`Driver::call`], without logging (for polls).
    ///
    /// # Panics
    ///
    /// As [`Driver::call`].
    pub fn quiet(&mut self, command: &str) -> serde_json::Value {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("driver {} did not answer {command:?}", self.name));
        serde_json::from_str(&line).unwrap()
    }
}

/// How much of an answer the log shows.
const SHOWN: usize = 400;

/// Timers short enough that a lost path is noticed in a second or two.
const FAST: &str = "heartbeat_ms = 200\nheartbeat_timeout_ms = 1500\nupgrade_ms = 1000\n";
/// Membership timers of the same kind: the detection bound
/// (`swarm_protocol::membership`) is 1.5 s + (4 + log10 N) × 0.3 s, under
/// 3 s for ten members.
const FAST_MEMBERSHIP: &str = "probe_ms = 300\nprobe_rtt_ms = 150\nsuspect_ms = 1500\n";

/// Writes a node's configuration with `extra` top-level settings (the
/// cluster is "vpn", credentials from `Throwaway::write_identities`).
pub fn write_config(
    dir: &Path,
    name: &str,
    listen: &str,
    seeds: &[SocketAddr],
    extra: &str,
) -> PathBuf {
    let listen: SocketAddr = listen.parse().unwrap();
    let text = NodeFile::render("vpn", name, listen, &[], seeds).replace(
        "[membership]\n",
        &format!("{FAST}{extra}\n[membership]\n{FAST_MEMBERSHIP}"),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The driver's side: runs only when a test re-executes this binary with
/// `SWARM_NETNS_DRIVER` set ([`Net::start_driver`]).
#[test]
#[ignore]
fn driver_process() {
    let Ok(config) = std::env::var("SWARM_NETNS_DRIVER") else {
        return;
    };
    driver::run(Path::new(&config));
}
