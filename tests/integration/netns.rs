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
//! on stdin, one JSON line each. It needs root, `ip` and `iptables`
//! (`namespaces::require` installs the programs, or fails the test with
//! the command that does); `relay.rs` checks the same routing in one
//! process.
//!
//! A second test cuts the head leader off from the other heads with
//! iptables (`10.9.0.0/24`, heads h1-h3, the driver c1 on the leader's
//! side): the deposed leader answers reads with `NoQuorum`, never a stale
//! location, and `swarm heads` through it does not call it leader;
//! `control_faults.rs` checks the same in one process.
//!
//! The namespaces, node processes and drivers come from `namespaces.rs`.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use swarm::config::NodeFile;
use swarm::credentials::Throwaway;

use crate::namespaces::{must, require, write_config, Net};
use crate::util::{exe, poll_until, scratch};

#[test]
fn nodes_behind_nat_reach_each_other_through_relays_across_namespaces() {
    if !require("the NAT and relay namespace test") {
        return;
    }
    let dir = scratch("netns");
    let names = ["r1", "r2", "p1", "p2", "a1", "a2", "b1", "b2"];
    Throwaway::new("vpn").write_files(&dir, &names).unwrap();
    let mut net = Net::new(format!("sw{}", std::process::id() % 100_000));
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
    let mut driver = net.start_driver("b2", &c);

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
    if !require("the deposed-leader namespace test") {
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
    let mut net = Net::new(format!("sd{}", std::process::id() % 100_000));
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
    let mut driver = net.start_driver("c1", &c);
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
    let refusing = poll_until(Duration::from_secs(2), Duration::from_millis(20), || {
        let answer = driver.call("resolve ledger");
        if refused(&answer) {
            return Some(());
        }
        assert_eq!(
            answer["node"], placed["node"],
            "the cut-off leader answered {answer}"
        );
        None
    });
    assert!(
        refusing.is_some(),
        "still answering after {:?}",
        cut_at.elapsed()
    );

    // The majority elects a leader of its own and stops the ledger (an
    // operator's `swarm stop` from a majority head's namespace).
    let stopper = majority[0];
    let mut stderr = String::new();
    let stopped = poll_until(Duration::from_secs(60), Duration::from_millis(200), || {
        let out = Command::new("ip")
            .args(["netns", "exec", &net.ns(stopper)])
            .arg(exe())
            .args(["stop", "--config"])
            .arg(&op)
            .args(["--node", &addr(stopper), "--name", "ledger", "--json"])
            .output()
            .unwrap();
        stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success() || stderr.contains("no named actor")).then_some(())
    });
    assert!(stopped.is_some(), "the majority never stopped it: {stderr}");
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
