//! The mesh VPN across real network boundaries: network namespaces made by
//! the test (veth pairs, bridges, iptables MASQUERADE), node processes of
//! the built `swarm` binary inside them, cleaned up even when the test fails.
//!
//! ```text
//!                 public 203.0.113.0/24 (bridge in ns "inet")
//!   r1 .1 (relay)   r2 .2 (relay)   p1 .5 (0.0.0.0, advertised)
//!   p2 .6 (0.0.0.0, address detected through r1's dial-back)
//!        natA .10 ── MASQUERADE ── 10.1.0.0/24: a1 .11, a2 .12 (service)
//!        natB .20 ── MASQUERADE ── 10.2.0.0/24: b1 .11, b2 .12 (driver)
//! ```
//!
//! The driver is this test binary, run again inside b2's namespace (it
//! cannot join otherwise: the test process lives outside every
//! namespace). It starts an in-process node there and answers commands
//! on stdin, one JSON line each. Without root, `ip` or `iptables`, the
//! test says why and skips; `relay.rs` checks the same routing in one
//! process.
//!
//! A second test cuts the head leader off from the other heads with
//! iptables (`10.9.0.0/24`, heads h1-h3, the driver c1 on the leader's
//! side): the deposed leader answers reads with `NoQuorum`, never a stale
//! location, and `swarm heads` through it does not call it leader;
//! `control_faults.rs` checks the same in one process.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use swarm::config::NodeFile;
use swarm::credentials::Throwaway;
use swarm_cli::local::{spawn_command, ChildNode};

use crate::util::{exe, scratch};

/// Runs a command; true if it succeeded.
fn run(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a command that must succeed.
fn must(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Why namespaces cannot be used here, if they cannot.
fn unavailable() -> Option<String> {
    if !run(&["ip", "-V"]) {
        return Some("`ip` (iproute2) is not installed".into());
    }
    if !run(&["iptables", "--version"]) {
        return Some("`iptables` is not installed".into());
    }
    let probe = format!("swprobe{}", std::process::id());
    if !run(&["ip", "netns", "add", &probe]) {
        return Some("cannot create network namespaces (not root?)".into());
    }
    let nat = run(&["ip", "netns", "exec", &probe, "iptables", "-t", "nat", "-L"]);
    run(&["ip", "netns", "del", &probe]);
    if !nat {
        return Some("iptables cannot use the nat table in a namespace".into());
    }
    None
}

/// The namespaces and processes of one run; removed on drop, also when the
/// test fails.
struct Net {
    prefix: String,
    namespaces: Vec<String>,
    nodes: Vec<(String, ChildNode)>,
    driver: Option<Child>,
}

impl Net {
    fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn add_ns(&mut self, name: &str) -> String {
        let ns = self.ns(name);
        must(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// A veth pair: `a` end in namespace `ns_a`, `b` end in `ns_b`.
    fn veth(&self, ns_a: &str, a: &str, ns_b: &str, b: &str) {
        let (ta, tb) = (format!("t{}{a}", self.tag()), format!("t{}{b}", self.tag()));
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

    /// Unique per test run and per test (tests of one run may overlap).
    fn tag(&self) -> String {
        self.prefix.clone()
    }

    /// A host on a bridge: its own namespace, one interface with `addr`,
    /// and a default route through `gateway` if given.
    fn host(
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

    fn bridge(&self, ns: &str, name: &str, addr: Option<&str>) {
        must(&["ip", "-n", ns, "link", "add", name, "type", "bridge"]);
        must(&["ip", "-n", ns, "link", "set", name, "up"]);
        if let Some(addr) = addr {
            must(&["ip", "-n", ns, "addr", "add", addr, "dev", name]);
        }
    }

    /// A NAT router: public side on the internet bridge, a LAN bridge
    /// behind it, and MASQUERADE for the LAN.
    fn nat_site(&mut self, name: &str, public: &str, lan_gw: &str, lan: &str, inet: &str) {
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

    fn start_node(&mut self, name: &str, config: &Path, extra: &[&str]) {
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

    fn kill(&mut self, name: &str) {
        if let Some(i) = self.nodes.iter().position(|(n, _)| n == name) {
            let (_, mut node) = self.nodes.remove(i);
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(mut driver) = self.driver.take() {
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

/// Timers short enough that a lost path is noticed in a second or two.
const FAST: &str = "heartbeat_ms = 200\nheartbeat_timeout_ms = 1500\nupgrade_ms = 1000\n";
const FAST_MEMBERSHIP: &str = "probe_ms = 300\nprobe_rtt_ms = 150\nsuspect_ms = 1500\n";

/// Writes a node's configuration with `extra` top-level settings.
fn write_config(
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

/// The driver process: this binary inside b2's namespace.
struct Driver {
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Driver {
    fn call(&mut self, command: &str) -> serde_json::Value {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the driver did not answer {command:?}"));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        eprintln!("driver {command}: {value}");
        value
    }
}

fn start_driver(net: &mut Net, host: &str, config: &Path) -> Driver {
    let me = std::env::current_exe().unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &net.ns(host)])
        .arg(me)
        .args(["--exact", "netns::netns_driver", "--ignored", "--nocapture"])
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
    net.driver = Some(child);
    Driver { stdin, lines }
}

#[test]
fn nodes_behind_nat_reach_each_other_through_relays_across_namespaces() {
    if let Some(why) = unavailable() {
        eprintln!("skipped: network namespaces are unavailable here: {why}");
        return;
    }
    let dir = scratch("netns");
    let names = ["r1", "r2", "p1", "p2", "a1", "a2", "b1", "b2"];
    Throwaway::new("vpn").write_files(&dir, &names).unwrap();
    let mut net = Net {
        prefix: format!("sw{}", std::process::id() % 100_000),
        namespaces: Vec::new(),
        nodes: Vec::new(),
        driver: None,
    };
    let inet = net.add_ns("inet");
    net.bridge(&inet, "br0", None);
    net.host("r1", &inet, "br0", "203.0.113.1/24", None);
    net.host("r2", &inet, "br0", "203.0.113.2/24", None);
    net.host("p1", &inet, "br0", "203.0.113.5/24", None);
    net.host("p2", &inet, "br0", "203.0.113.6/24", None);
    net.nat_site(
        "natA",
        "203.0.113.10/24",
        "10.1.0.1/24",
        "10.1.0.0/24",
        &inet,
    );
    net.nat_site(
        "natB",
        "203.0.113.20/24",
        "10.2.0.1/24",
        "10.2.0.0/24",
        &inet,
    );
    let (nat_a, nat_b) = (net.ns("natA"), net.ns("natB"));
    net.host("a1", &nat_a, "lan", "10.1.0.11/24", Some("10.1.0.1"));
    net.host("a2", &nat_a, "lan", "10.1.0.12/24", Some("10.1.0.1"));
    net.host("b1", &nat_b, "lan", "10.2.0.11/24", Some("10.2.0.1"));
    net.host("b2", &nat_b, "lan", "10.2.0.12/24", Some("10.2.0.1"));

    let r1: SocketAddr = "203.0.113.1:7001".parse().unwrap();
    let r2: SocketAddr = "203.0.113.2:7001".parse().unwrap();
    let relays = format!("relayed = true\nrelays = [\"{r1}\", \"{r2}\"]\n");
    let c = write_config(&dir, "r1", "203.0.113.1:7001", &[], "relay = true\n");
    net.start_node("r1", &c, &[]);
    let c = write_config(&dir, "r2", "203.0.113.2:7001", &[r1], "relay = true\n");
    net.start_node("r2", &c, &[]);
    // Bound to every interface, reached at the address it advertises.
    let c = write_config(
        &dir,
        "p1",
        "0.0.0.0:7001",
        &[r1],
        "advertise = \"203.0.113.5:7001\"\n",
    );
    net.start_node("p1", &c, &[]);
    // Bound to every interface with nothing to announce: r1 tells it the
    // address it saw, dials it back, and it announces that.
    let c = write_config(&dir, "p2", "0.0.0.0:7001", &[r1], "");
    net.start_node("p2", &c, &[]);
    let c = write_config(&dir, "a1", "10.1.0.11:7001", &[r1], &relays);
    net.start_node("a1", &c, &[]);
    let c = write_config(&dir, "a2", "10.1.0.12:7001", &[r1], &relays);
    net.start_node("a2", &c, &["--service", "natsvc"]);
    let c = write_config(&dir, "b1", "10.2.0.11:7001", &[r1], &relays);
    net.start_node("b1", &c, &[]);
    let c = write_config(&dir, "b2", "10.2.0.12:7001", &[r1], &relays);
    let mut driver = start_driver(&mut net, "b2", &c);

    // Everyone is up, as seen from behind NAT.
    assert_eq!(driver.call("alive 8")["ok"], true);
    // Every node reaches every other: from b2, each node; b1 forwards to
    // each node too (asks from another NATed site).
    for name in ["r1", "r2", "p1", "p2", "a1", "a2", "b1"] {
        let answer = driver.call(&format!("ask {name}"));
        assert_eq!(answer["sum"], 5, "{name}: {answer}");
        let answer = driver.call(&format!("forward b1 {name}"));
        assert_eq!(answer["sum"], 42, "b1 -> {name}: {answer}");
    }
    // Across NATed sites, the link is relayed; the relay counts bytes and
    // its actors saw nothing.
    let link = driver.call("link a1");
    let relay = link["via"].as_str().expect("relayed").to_owned();
    assert!(relay == "r1" || relay == "r2", "{link}");
    let count_before = driver.call(&format!("count {relay}"))["count"].clone();
    let tells = driver.call("tells a1 500");
    assert_eq!(tells["sent"], 500);
    let state = driver.call("state a1");
    assert_eq!(state["received"], 500, "{state}");
    assert_eq!(state["out_of_order"], 0);
    let stats = driver.call(&format!("stats {relay}"));
    assert!(stats["relay_bytes"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(
        driver.call(&format!("count {relay}"))["count"],
        count_before,
        "the relay's actors saw none of what it forwarded"
    );
    // p1 (bound to 0.0.0.0) is reached directly at its advertised address.
    let link = driver.call("link p1");
    assert!(link["via"].is_null(), "{link}");
    assert_eq!(link["addr"], "203.0.113.5:7001");
    let link = driver.call("link p2");
    assert!(link["via"].is_null(), "{link}");
    assert_eq!(link["addr"], "203.0.113.6:7001", "the detected address");
    // A service instance behind NAT, load-balanced to from the other site.
    let served = driver.call("service natsvc 20");
    assert_eq!(served["nodes"], serde_json::json!(["a2"]), "{served}");

    // Block the direct path b2 <-> p1 mid-stream: traffic moves to a
    // relay, in order, and back when the block is lifted.
    assert_eq!(driver.call("stream-start p1")["ok"], true);
    let rule = ["-s", "10.2.0.12", "-d", "203.0.113.5", "-j", "DROP"];
    let back = ["-d", "10.2.0.12", "-s", "203.0.113.5", "-j", "DROP"];
    let iptables = |op: &str, rule: &[&str]| {
        let mut args = vec![
            "ip",
            "netns",
            "exec",
            nat_b.as_str(),
            "iptables",
            op,
            "FORWARD",
        ];
        args.extend_from_slice(rule);
        must(&args);
    };
    iptables("-I", &rule);
    iptables("-I", &back);
    let relayed = driver.call("wait-link p1 relayed 20");
    assert_eq!(relayed["ok"], true, "moved to a relay: {relayed}");
    let flowing = driver.call("grows p1 20");
    assert_eq!(
        flowing["ok"], true,
        "tells arrive through the relay: {flowing}"
    );
    assert!(
        flowing["link"]["via"].is_string(),
        "still relayed: {flowing}"
    );
    iptables("-D", &rule);
    iptables("-D", &back);
    let direct = driver.call("wait-link p1 direct 30");
    assert_eq!(direct["ok"], true, "back to direct: {direct}");
    let stream = driver.call("stream-stop");
    let state = driver.call("state p1");
    assert_eq!(state["out_of_order"], 0, "order kept: {state}");
    let received = state["received"].as_u64().unwrap();
    assert!(
        received <= stream["sent"].as_u64().unwrap(),
        "nothing doubled"
    );
    assert!(received > 0);

    // Kill a relay: its clients move to the other, traffic resumes.
    let used = driver.call("link a1")["via"].as_str().unwrap().to_owned();
    net.kill(&used);
    let started = Instant::now();
    let resumed = driver.call("ask-until a1 30");
    assert_eq!(resumed["ok"], true, "{resumed}");
    let link = driver.call("link a1");
    assert_ne!(link["via"].as_str(), Some(used.as_str()), "{link}");
    eprintln!(
        "traffic resumed {:?} after the relay died",
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// DESIGN.md, "Failure model": the minority side never elects a second
/// placement supervisor; nor does a deposed leader answer for the
/// majority (reads confirm leadership with a quorum first).
#[test]
fn a_head_leader_cut_off_by_iptables_answers_no_quorum_never_a_stale_location() {
    if let Some(why) = unavailable() {
        eprintln!("skipped: network namespaces are unavailable here: {why}");
        return;
    }
    let dir = scratch("netns-deposed");
    let head: &[&str] = &["head", "worker"];
    let client: &[&str] = &["worker", "operator"];
    Throwaway::new("vpn")
        .write_identities(
            &dir,
            &[
                ("h1", head),
                ("h2", head),
                ("h3", head),
                ("c1", client),
                ("op", client),
            ],
        )
        .unwrap();
    let mut net = Net {
        prefix: format!("sd{}", std::process::id() % 100_000),
        namespaces: Vec::new(),
        nodes: Vec::new(),
        driver: None,
    };
    let lan = net.add_ns("lan");
    net.bridge(&lan, "br0", None);
    let hosts = ["h1", "h2", "h3", "c1"];
    for (i, name) in hosts.iter().enumerate() {
        net.host(name, &lan, "br0", &format!("10.9.0.{}/24", i + 1), None);
    }
    let ip = |name: &str| {
        format!(
            "10.9.0.{}",
            hosts.iter().position(|h| *h == name).unwrap() + 1
        )
    };
    let addr = |name: &str| format!("{}:7001", ip(name));
    let seed: SocketAddr = addr("h1").parse().unwrap();
    for name in ["h1", "h2", "h3"] {
        let seeds: &[SocketAddr] = if name == "h1" { &[] } else { &[seed] };
        let c = write_config(&dir, name, &addr(name), seeds, "");
        let mut text = std::fs::read_to_string(&c).unwrap();
        text.push_str(&NodeFile::render_head(name, 3));
        std::fs::write(&c, text).unwrap();
        net.start_node(name, &c, &[]);
    }
    let op = write_config(&dir, "op", "127.0.0.1:0", &[seed], "");
    let c = write_config(&dir, "c1", &addr("c1"), &[seed], "");
    let mut driver = start_driver(&mut net, "c1", &c);
    assert_eq!(driver.call("alive 4")["ok"], true);
    let placed = driver.call("spawn ledger 60");
    assert!(placed["node"].is_string(), "{placed}");
    let leader = driver.call("leader 30")["leader"]
        .as_str()
        .expect("a head leader")
        .to_owned();
    let majority: Vec<&str> = ["h1", "h2", "h3"]
        .into_iter()
        .filter(|h| *h != leader)
        .collect();
    // The driver asks the leader from now on (its hint follows the head
    // that answered).
    assert_eq!(driver.call("resolve ledger")["node"], placed["node"]);

    // iptables in the leader's and the driver's namespaces: they reach
    // each other, and neither reaches the other heads.
    let iptables = |op: &str, ns: &str, chain: &str, flag: &str, peer: &str| {
        must(&[
            "ip",
            "netns",
            "exec",
            &net.ns(ns),
            "iptables",
            op,
            chain,
            flag,
            peer,
            "-j",
            "DROP",
        ]);
    };
    let cut = |op: &str| {
        for side in [leader.as_str(), "c1"] {
            for other in &majority {
                iptables(op, side, "INPUT", "-s", &ip(other));
                iptables(op, side, "OUTPUT", "-d", &ip(other));
            }
        }
    };
    cut("-A");
    // Within the read lease of its last quorum round (one election
    // timeout, before any other head can lead) it may still answer what
    // it knew; then it refuses.
    let cut_at = Instant::now();
    loop {
        let answer = driver.call("resolve ledger");
        if refused(&answer) {
            break;
        }
        assert_eq!(
            answer["node"], placed["node"],
            "the cut-off leader answered {answer}"
        );
        let took = cut_at.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "still answering after {took:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The majority elects a leader of its own and stops the ledger (an
    // operator's `swarm stop` from a majority head's namespace).
    let stopper = majority[0];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new("ip")
            .args(["netns", "exec", &net.ns(stopper)])
            .arg(exe())
            .args(["stop", "--config"])
            .arg(&op)
            .args(["--node", &addr(stopper), "--name", "ledger", "--json"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || stderr.contains("no named actor") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the majority never stopped it: {stderr}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The deposed leader still answers the driver, never from its state.
    let stale = driver.call("resolve ledger");
    assert!(refused(&stale), "the deposed leader answered {stale}");
    // `swarm heads` through the deposed leader does not call it leader.
    let out = Command::new("ip")
        .args(["netns", "exec", &net.ns(&leader)])
        .arg(exe())
        .args(["heads", "--config"])
        .arg(&op)
        .args(["--node", &addr(&leader), "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == leader.as_str())
        .unwrap_or_else(|| panic!("no row for {leader}: {rows}"))
        .clone();
    assert_ne!(row["role"], "leader", "{row}");
    assert!(row["leader"].is_null(), "{row}");

    // Healed: the driver reads what the majority decided.
    cut("-D");
    let healed = driver.call("resolve-until ledger no_such_name 60");
    assert_eq!(healed["ok"], true, "{healed}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether a driver's answer to `resolve` is a refusal a deposed leader
/// may give.
fn refused(answer: &serde_json::Value) -> bool {
    answer["error"] == "no_quorum" || answer["error"] == "not_leader"
}

/// The driver's side: runs only when re-executed by the test above.
#[test]
#[ignore]
fn netns_driver() {
    let Ok(config) = std::env::var("SWARM_NETNS_DRIVER") else {
        return;
    };
    driver::run(Path::new(&config));
}

mod driver {
    //! An in-process node that answers one command per stdin line with
    //! one `DRIVER {json}` line on stdout.

    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::path::Path;
    use std::rc::Rc;
    use std::time::Duration;

    use serde_json::{json, Value};
    use swarm::config::NodeFile;
    use swarm::control::{ControlError, Spawn};
    use swarm::protocol::membership::MemberState;
    use swarm::{Node, NodeId};
    use swarm_actors::cluster::{ClusterAgent, ListMembers, CLUSTER_ACTOR};
    use swarm_cli::demo::{
        Add, Adder, Bump, Count, Counter, CounterState, Forward, Ledger, LedgerArgs, Relay, Work,
        Worker,
    };

    use crate::util::eventually;

    pub(super) fn run(config: &Path) {
        let file = NodeFile::load(config).unwrap();
        let mesh = file.mesh_config().unwrap();
        actix::System::new().block_on(async move {
            let node = Node::start(mesh).await.unwrap();
            swarm_cli::demo::expose_info(&node).unwrap();
            swarm_cli::demo::expose_workload(&node).unwrap();
            // Lines from stdin, read on a thread of their own.
            let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
            std::thread::spawn(move || {
                use std::io::BufRead as _;
                for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
            let mut state = State::default();
            while let Some(line) = lines.recv().await {
                let answer = state.handle(&node, line.trim()).await;
                println!("DRIVER {answer}");
            }
        });
    }

    type Stream = (Rc<RefCell<u64>>, Rc<RefCell<bool>>);

    #[derive(Default)]
    struct State {
        seq: HashMap<String, u64>,
        /// A stream of tells in progress: how many were sent, and its stop flag.
        stream: Option<Stream>,
    }

    async fn id_of(node: &Node, name: &str) -> Option<NodeId> {
        let members = node.cluster()?.members().await.ok()?;
        members.iter().find(|m| m.name() == name).map(|m| m.node)
    }

    async fn name_of(node: &Node, id: NodeId) -> String {
        let members = node.cluster().unwrap().members().await.unwrap();
        members
            .iter()
            .find(|m| m.node == id)
            .map_or_else(|| id.short(), |m| m.name().to_owned())
    }

    async fn link(node: &Node, name: &str) -> Value {
        let Some(id) = id_of(node, name).await else {
            return json!({"error": "unknown node"});
        };
        match node.peers().into_iter().find(|p| p.id == id) {
            Some(p) => {
                let via = match p.via {
                    Some(relay) => Value::from(name_of(node, relay).await),
                    None => Value::Null,
                };
                json!({"via": via, "addr": p.addr.to_string()})
            }
            None => json!({"via": null, "link": false}),
        }
    }

    /// A control error's kind, for the test's assertions.
    fn kind(e: &ControlError) -> &'static str {
        match e {
            ControlError::NoQuorum { .. } => "no_quorum",
            ControlError::NotLeader { .. } => "not_leader",
            ControlError::NoSuchName { .. } => "no_such_name",
            ControlError::NoHead { .. } => "no_head",
            _ => "other",
        }
    }

    /// Where the head says `name` runs, or why it does not say.
    async fn resolve(node: &Node, name: &str) -> Value {
        match node.control().unwrap().resolve(name).await {
            Ok(at) => json!({"node": name_of(node, at.node).await, "epoch": at.epoch}),
            Err(e) => json!({"error": kind(&e), "message": e.to_string()}),
        }
    }

    impl State {
        async fn handle(&mut self, node: &Node, line: &str) -> Value {
            let words: Vec<&str> = line.split_whitespace().collect();
            let within = |s: Option<&&str>| {
                Duration::from_secs(s.and_then(|s| s.parse().ok()).unwrap_or(30))
            };
            match words.as_slice() {
                ["alive", n] => {
                    let n: usize = n.parse().unwrap();
                    let ok = eventually(Duration::from_secs(60), || async {
                        node.cluster().unwrap().members().await.is_ok_and(|m| {
                            // Alive, with their metadata (names, relays) known.
                            m.iter()
                                .filter(|m| m.state == MemberState::Alive && m.meta.is_some())
                                .count()
                                == n
                        })
                    })
                    .await;
                    json!({"ok": ok})
                }
                ["ask", name] => {
                    let id = id_of(node, name).await.unwrap();
                    match node
                        .remote::<Adder>(id, "adder")
                        .send(Add { a: 2, b: 3 })
                        .await
                    {
                        Ok(sum) => json!({"sum": sum}),
                        Err(e) => json!({"error": e.to_string()}),
                    }
                }
                ["ask-until", name, secs] => {
                    let id = id_of(node, name).await.unwrap();
                    let adder = node.remote::<Adder>(id, "adder");
                    let ok = eventually(within(Some(secs)), || {
                        let adder = adder.clone();
                        async move {
                            adder
                                .send_timeout(Add { a: 2, b: 3 }, Duration::from_millis(500))
                                .await
                                .is_ok()
                        }
                    })
                    .await;
                    json!({"ok": ok})
                }
                ["forward", via, to] => {
                    let via = id_of(node, via).await.unwrap();
                    let to = id_of(node, to).await.unwrap();
                    let relay = node.remote::<Relay>(via, "relay");
                    match relay
                        .send(Forward {
                            node: to,
                            add: Add { a: 40, b: 2 },
                        })
                        .await
                    {
                        Ok(Ok((sum, _))) => json!({"sum": sum}),
                        Ok(Err(e)) => json!({"error": e}),
                        Err(e) => json!({"error": e.to_string()}),
                    }
                }
                ["count", name] => {
                    let id = id_of(node, name).await.unwrap();
                    match node.remote::<Adder>(id, "adder").send(Count).await {
                        Ok(count) => json!({"count": count}),
                        Err(e) => json!({"error": e.to_string()}),
                    }
                }
                ["link", name] => link(node, name).await,
                ["wait-link", name, kind, secs] => {
                    let want_relayed = *kind == "relayed";
                    let ok = eventually(within(Some(secs)), || async {
                        let l = link(node, name).await;
                        l.get("addr").is_some() && (l["via"].is_string() == want_relayed)
                    })
                    .await;
                    json!({"ok": ok, "link": link(node, name).await})
                }
                ["grows", name, secs] => {
                    // Tells that arrive from now on, while the link stays as it is.
                    let id = id_of(node, name).await.unwrap();
                    let counter = node.remote::<Counter>(id, "counter");
                    let received = |c: swarm::RemoteAddr<Counter>| async move {
                        c.send(CounterState).await.map(|(r, _)| r).unwrap_or(0)
                    };
                    let start = received(counter.clone()).await;
                    let ok = eventually(within(Some(secs)), || {
                        let counter = counter.clone();
                        async move { received(counter).await >= start + 20 }
                    })
                    .await;
                    json!({"ok": ok, "link": link(node, name).await})
                }
                ["tells", name, n] => {
                    let id = id_of(node, name).await.unwrap();
                    let counter = node.remote::<Counter>(id, "counter");
                    let n: u64 = n.parse().unwrap();
                    let seq = self.seq.entry((*name).to_owned()).or_default();
                    let mut sent = 0;
                    for _ in 0..n {
                        *seq += 1;
                        if counter
                            .tell(Bump {
                                seq: *seq,
                                pad: Vec::new(),
                            })
                            .await
                            .is_ok()
                        {
                            sent += 1;
                        }
                    }
                    json!({"sent": sent})
                }
                ["stream-start", name] => {
                    let id = id_of(node, name).await.unwrap();
                    let counter = node.remote::<Counter>(id, "counter");
                    let sent = Rc::new(RefCell::new(0u64));
                    let stop = Rc::new(RefCell::new(false));
                    self.stream = Some((sent.clone(), stop.clone()));
                    actix_rt::spawn(async move {
                        let mut tick = tokio::time::interval(Duration::from_millis(5));
                        let mut seq = 0;
                        while !*stop.borrow() {
                            tick.tick().await;
                            seq += 1;
                            // Sent or not (no link for a moment), the
                            // sequence number is used up: order is checked.
                            let _ = counter.try_tell(Bump {
                                seq,
                                pad: Vec::new(),
                            });
                            *sent.borrow_mut() = seq;
                        }
                    });
                    json!({"ok": true})
                }
                ["stream-stop"] => match self.stream.take() {
                    Some((sent, stop)) => {
                        *stop.borrow_mut() = true;
                        let sent = *sent.borrow();
                        json!({"sent": sent})
                    }
                    None => json!({"error": "no stream"}),
                },
                ["state", name] => {
                    let id = id_of(node, name).await.unwrap();
                    match node
                        .remote::<Counter>(id, "counter")
                        .send(CounterState)
                        .await
                    {
                        Ok((received, out_of_order)) => {
                            json!({"received": received, "out_of_order": out_of_order})
                        }
                        Err(e) => json!({"error": e.to_string()}),
                    }
                }
                ["stats", name] => {
                    let id = id_of(node, name).await.unwrap();
                    let agent = node.remote::<ClusterAgent>(id, CLUSTER_ACTOR);
                    match agent.send(ListMembers).await {
                        Ok(rows) => {
                            let own = rows.iter().find_map(|r| r.counters).unwrap();
                            serde_json::to_value(own.mesh).unwrap()
                        }
                        Err(e) => json!({"error": e.to_string()}),
                    }
                }
                ["service", name, n] => {
                    let service = node.cluster().unwrap().service::<Worker>(name);
                    let ready = eventually(Duration::from_secs(30), || async {
                        !service.instances().is_empty()
                    })
                    .await;
                    if !ready {
                        return json!({"error": "no instance"});
                    }
                    let mut nodes = Vec::new();
                    for key in 0..n.parse::<u64>().unwrap() {
                        match service.send(Work { key, delay_ms: 0 }).await {
                            Ok(served) => {
                                if !nodes.contains(&served.node) {
                                    nodes.push(served.node);
                                }
                            }
                            Err(e) => return json!({"error": e.to_string()}),
                        }
                    }
                    json!({"nodes": nodes})
                }
                ["spawn", name, secs] => {
                    let control = node.control().unwrap();
                    let deadline = tokio::time::Instant::now() + within(Some(secs));
                    loop {
                        let spawn = Spawn::<Ledger>::named(*name).args(LedgerArgs { opening: 0 });
                        match control.spawn(spawn).await {
                            Ok(named) => {
                                let (at, _) = named.location().unwrap();
                                break json!({"node": name_of(node, at).await});
                            }
                            Err(e) if tokio::time::Instant::now() >= deadline => {
                                break json!({"error": e.to_string()});
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                    }
                }
                ["leader", secs] => {
                    let control = node.control().unwrap();
                    let deadline = tokio::time::Instant::now() + within(Some(secs));
                    loop {
                        let leaders: Vec<NodeId> = control
                            .head_status()
                            .await
                            .into_iter()
                            .filter_map(|(n, row)| {
                                row.ok().filter(|r| r.role == "leader").map(|_| n)
                            })
                            .collect();
                        if let [leader] = leaders.as_slice() {
                            break json!({"leader": name_of(node, *leader).await});
                        }
                        if tokio::time::Instant::now() >= deadline {
                            break json!({"error": "no single leader"});
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                ["resolve", name] => resolve(node, name).await,
                ["resolve-until", name, want, secs] => {
                    let deadline = tokio::time::Instant::now() + within(Some(secs));
                    loop {
                        let last = resolve(node, name).await;
                        if last["error"] == *want {
                            break json!({"ok": true, "last": last});
                        }
                        if tokio::time::Instant::now() >= deadline {
                            break json!({"ok": false, "last": last});
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                other => json!({"error": format!("unknown command {other:?}")}),
            }
        }
    }
}
