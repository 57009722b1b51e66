//! DESIGN.md, "Failure model" ("a partition heals without manual action")
//! and "Control plane" (fencing: "a second incarnation must never be
//! active", "leases, not membership rumours, govern placed actors", "one
//! epoch names one incarnation"), with real node processes in network
//! namespaces: one side is cut off with iptables until each side's SWIM
//! has declared the other down, then healed.
//!
//! ```text
//!   one bridge (namespace "lan"), 10.9.0.0/24
//!   majority 10.9.0.0/28    h1 .1  h2 .2 (heads)  w1 .3 (worker)  d1 .4 (driver)
//!   minority 10.9.0.16/28   h3 .17 (head)         w2 .18 (worker) d2 .19 (driver)
//!   ledger "major" placed on w1, "minor" on w2 (soft affinity: free to move)
//! ```
//!
//! Both drivers (this binary again, inside d1's and d2's namespaces)
//! deposit 1 into each ledger every 50 ms through a default `Named` handle
//! and record every outcome with the time it was sent and answered
//! (`namespaces/driver/deposits.rs`). The cut drops, in the minority's
//! namespaces, everything from and to 10.9.0.0/28. It lasts until both
//! sides see the other side down and the majority has moved "minor" (its
//! lease ran out on w2; default lease 3 s, membership detection under 3 s
//! with these timers), and at least `hold`. After the heal the deposits
//! go on until the cluster has settled (every member alive on both
//! drivers, both drivers answered by one incarnation per ledger, and the
//! hosts list one running incarnation per ledger, for 2 s), then:
//!
//! 1. **No two epochs of one name overlap.** An answer shows that its
//!    incarnation ran at some moment between the answer's `sent` and
//!    `acked` times. Epochs `e` and `f` of one ledger overlap if an answer
//!    from `f` was sent after one from `e` was acknowledged and
//!    acknowledged before another from `e` was sent (each comparison with
//!    [`CLOCK_UNCERTAINTY`] to spare): `e` then ran both before and after
//!    a moment at which `f` ran. With both drivers depositing every 50 ms,
//!    any overlap longer than a few round trips shows this way.
//! 2. **Nothing acknowledged is lost, across epochs.** The ledgers are
//!    durable: every answer's balance includes its own deposit and every
//!    deposit acknowledged before it was sent, by any epoch; in particular
//!    the balance never goes back (an epoch started twice with fresh state,
//!    or a new epoch that did not recover what the one before it
//!    acknowledged, fails here).
//! 3. **One incarnation after the heal**, within [`SETTLE`]: both
//!    drivers' last [`AGREED`] answers per ledger come from one epoch on
//!    one node, the hosts (`swarm actors --host`'s listing) run exactly
//!    that one, and the head records it there.
//! 4. **The majority keeps what it runs**: every answer from "major" comes
//!    from the epoch and node it was placed with, and the majority's
//!    driver never found it stopped.
//! 5. **The documented partition bound**: the majority's driver is first
//!    answered by the new incarnation of "minor" within
//!    [`FAILOVER_BOUND`] (`lease × 1.1 + 1 s` = 4.3 s) of the cut's start,
//!    or [`LEADER_FAILOVER_BOUND`] (3 s) later where the head leader was
//!    on the minority's side (an election first).
//!
//! `partition/record.rs` keeps the answers and judges them (its unit
//! tests run the checks on made-up histories, clean and not). After each
//! run the test prints, per ledger and epoch, the first and last answer,
//! counts and balances (split where the balance went back), the errors
//! each driver saw, the nodes' rejoins and what their hosts ran at the
//! end. The cut's iptables rules live in the namespaces and go with them
//! when `Net` is dropped, also when the test fails.

mod record;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use swarm::config::NodeFile;
use swarm::credentials::Throwaway;

use crate::namespaces::{must, require, write_config, Driver, Net};
use crate::util::{poll_until, scratch};
use record::{now_us, Record};

#[test]
fn a_healed_partition_leaves_one_incarnation_per_ledger_and_the_majority_keeps_its_own() {
    if require("the partition test") {
        let failures = partition(0, Duration::ZERO);
        assert!(
            failures.is_empty(),
            "{} check(s) failed (the summary above has the details):\n- {}",
            failures.len(),
            failures.join("\n- ")
        );
    }
}

/// The issue's setting: a 20 s cut, five times (the bug it reports showed
/// in 4 runs of 5).
#[test]
#[ignore]
fn stress_partition_five_20_s_cuts_each_heal_to_one_incarnation_per_ledger() {
    if require("the partition stress test") {
        let mut failed = Vec::new();
        for run in 1..=5 {
            eprintln!("== partition run {run} of 5");
            let failures = partition(run, Duration::from_secs(20));
            if !failures.is_empty() {
                failed.push(format!("run {run}:\n  - {}", failures.join("\n  - ")));
            }
        }
        assert!(
            failed.is_empty(),
            "{} of 5 runs failed (each run's summary is above):\n{}",
            failed.len(),
            failed.join("\n")
        );
    }
}

/// One run: cut for at least `hold`, heal, settle, check. Prints the
/// summary and answers what failed.
fn partition(run: u32, hold: Duration) -> Vec<String> {
    let dir = scratch(&format!("partition-{run}"));
    let identities: Vec<(&str, &[&str])> =
        HOSTS.iter().map(|(name, _)| (*name, roles(name))).collect();
    Throwaway::new("vpn")
        .write_identities(&dir, &identities)
        .unwrap();
    let mut net = Net::new(format!("pt{}{run}", std::process::id() % 10_000));
    let lan = net.add_ns("lan");
    net.bridge(&lan, "br0", None);
    for (name, ip) in HOSTS {
        net.host(name, &lan, "br0", &format!("{ip}/24"), None);
    }
    let addr = |name: &str| format!("{}:7001", ip(name));
    let seed: SocketAddr = addr("h1").parse().unwrap();
    for (name, _) in HOSTS.iter().filter(|(n, _)| !n.starts_with('d')) {
        let seeds: &[SocketAddr] = if *name == "h1" { &[] } else { &[seed] };
        let c = write_config(&dir, name, &addr(name), seeds, "");
        if name.starts_with('h') {
            let mut text = std::fs::read_to_string(&c).unwrap();
            text.push_str(&NodeFile::render_head(name, 3));
            std::fs::write(&c, text).unwrap();
        }
        net.start_node(name, &c, &[]);
    }
    let mut drivers: Vec<Driver> = DRIVERS
        .iter()
        .map(|name| {
            let c = write_config(&dir, name, &addr(name), &[seed], "");
            net.start_driver(name, &c)
        })
        .collect();
    for d in &mut drivers {
        assert_eq!(d.call(&format!("alive {}", HOSTS.len()))["ok"], true);
    }
    let mut placed = BTreeMap::new();
    for (ledger, on) in LEDGERS {
        let answer = drivers[0].call(&format!("place {ledger} {on} 60"));
        assert_eq!(answer["node"], on, "{ledger} placed: {answer}");
        placed.insert(ledger, answer["epoch"].as_u64().unwrap());
    }

    let mut record = Record::new(placed);
    for (d, name) in drivers.iter_mut().zip(DRIVERS) {
        let started = d.call(&format!(
            "deposit {name} {}",
            LEDGERS.map(|l| l.0).join(" ")
        ));
        assert_eq!(started["ok"], true, "{started}");
    }
    // Every driver is answered by every ledger before the cut.
    let answered = poll_until(Duration::from_secs(30), POLL, || {
        record.poll(&mut drivers);
        record.answered_by_all(20).then_some(())
    });
    assert!(answered.is_some(), "no deposits before the cut");
    let leader = drivers[0].call("leader 30")["leader"].clone();
    record.mark(format!("cut (the head leader was {leader})"));
    let cut_us = now_us();
    cut(&net, "-I");

    // Cut until each side sees the other down and the majority moved
    // "minor" (and `hold` passed).
    let cut_at = Instant::now();
    let cut_done = poll_until(CUT_LIMIT, POLL, || {
        record.poll(&mut drivers);
        (cut_at.elapsed() >= hold
            && record.moved("minor", "d1")
            && sees_down(&mut drivers[0], &MINORITY)
            && sees_down(&mut drivers[1], &MAJORITY))
        .then_some(())
    });
    if cut_done.is_none() {
        record.fail(format!(
            "within {CUT_LIMIT:?} of the cut, the sides did not both see the other down, \
             or the majority did not move \"minor\""
        ));
    }
    // The documented bound: the majority's driver is answered by the new
    // incarnation of "minor" within FAILOVER_BOUND of the cut's start, and
    // LEADER_FAILOVER_BOUND later where the cut took the head leader too.
    if let Some(acked_us) = record.first_moved("minor", "d1") {
        let took = Duration::from_micros(acked_us.saturating_sub(cut_us));
        let leader_cut = MINORITY.iter().any(|h| leader == *h);
        let (bound, case) = if leader_cut {
            (
                FAILOVER_BOUND + LEADER_FAILOVER_BOUND,
                "lease × 1.1 + 1 s, after an election of at most 3 s: the leader was cut off",
            )
        } else {
            (FAILOVER_BOUND, "lease × 1.1 + 1 s")
        };
        eprintln!(
            "partition failover (the cut to d1's first answer from the new \"minor\"): {took:?} \
             (bound {bound:?}: {case})"
        );
        if took > bound {
            record.fail(format!(
                "d1 was first answered by the new \"minor\" {took:?} after the cut, over the \
                 documented bound of {bound:?} ({case})"
            ));
        }
    }
    cut(&net, "-D");
    record.mark("heal".into());

    // Settled: every member alive on both drivers, one incarnation per
    // ledger answering both and listed by the hosts, for 2 s.
    let heal_us = now_us();
    let healed = Instant::now();
    let mut settled_since: Option<Instant> = None;
    // A state that holds at SETTLE still has its 2 s to prove it.
    let settled = poll_until(SETTLE + Duration::from_secs(2), POLL, || {
        record.poll(&mut drivers);
        let mut state = Ok(());
        for d in &mut drivers {
            if state.is_ok() && !all_alive(&d.quiet("members")) {
                state = Err("not every member is alive on both drivers".to_owned());
            }
        }
        let agreed = state.and_then(|()| record.agreed_since(heal_us));
        let listed = agreed.and_then(|agreed| {
            let hosts = drivers[0].quiet(&format!("hosts {}", NODES.join(" ")));
            one_incarnation_each(&hosts, &agreed)?;
            recorded_as_agreed(&drivers[0].quiet("placed"), &agreed)
        });
        match listed {
            Ok(()) => {
                let since = *settled_since.get_or_insert_with(Instant::now);
                (since.elapsed() >= Duration::from_secs(2)).then_some(Ok(()))
            }
            Err(why) => {
                settled_since = None;
                (healed.elapsed() >= SETTLE).then_some(Err(why))
            }
        }
    });
    match settled {
        Some(Ok(())) => record.mark("settled".into()),
        Some(Err(why)) => record.fail(format!("not settled {SETTLE:?} after the heal: {why}")),
        None => record.fail(format!(
            "not settled {SETTLE:?} after the heal: not for 2 s in a row"
        )),
    }
    for d in &mut drivers {
        record.take(d.quiet("answers stop"));
    }
    record.check();
    let hosts = drivers[0].quiet(&format!("hosts {}", NODES.join(" ")));
    let head_rows = drivers[0].quiet("placed");
    let events = drivers[0].quiet(&format!("events {}", NODES.join(" ")));
    let summary = record.summary(&hosts, &head_rows, &events);
    eprintln!("{summary}");
    drop(net);
    let _ = std::fs::remove_dir_all(&dir);
    record.failures
}

/// Every host: its name and address. Majority first.
const HOSTS: [(&str, &str); 7] = [
    ("h1", "10.9.0.1"),
    ("h2", "10.9.0.2"),
    ("w1", "10.9.0.3"),
    ("d1", "10.9.0.4"),
    ("h3", "10.9.0.17"),
    ("w2", "10.9.0.18"),
    ("d2", "10.9.0.19"),
];
const MAJORITY: [&str; 4] = ["h1", "h2", "w1", "d1"];
const MINORITY: [&str; 3] = ["h3", "w2", "d2"];
/// The majority's addresses, and nobody else's.
const MAJORITY_NET: &str = "10.9.0.0/28";
/// The node processes, whose hosts may run ledgers.
const NODES: [&str; 5] = ["h1", "h2", "h3", "w1", "w2"];
/// The drivers: majority first.
const DRIVERS: [&str; 2] = ["d1", "d2"];
/// Each ledger and the node it is first placed on.
const LEDGERS: [(&str, &str); 2] = [("major", "w1"), ("minor", "w2")];
/// The drivers read one clock (CLOCK_REALTIME of the kernel that every
/// namespace shares), so what is spared is the time to read it.
const CLOCK_UNCERTAINTY: u64 = 2_000;
/// How long the cut may take to do its work (each side's SWIM declares the
/// other down in under 3 s; the majority moves "minor" after its lease, 3.4 s
/// after its last renewal).
const CUT_LIMIT: Duration = Duration::from_secs(45);
/// How often the drivers' answers are collected and the state checked.
const POLL: Duration = Duration::from_millis(250);
/// The README's partition failover bound ("Failover bounds", the target of
/// `swarm bench control`'s `failover_partition_s_*`): `lease × 1.1 + 1 s`
/// with the default 3 s lease, from the cut to the first answer of the new
/// incarnation through a default `Named` handle. The leader moves the
/// actor `lease × 1.1 + 0.1 s` after its last grant, which came before the
/// cut; the rest is the new incarnation's start and the handle finding it
/// (deposits every 50 ms).
const FAILOVER_BOUND: Duration = Duration::from_millis(4_300);
/// What a cut that takes the head leader adds to [`FAILOVER_BOUND`]: the
/// majority elects a leader first (README, "Failover bounds", *Leader
/// loss*; `swarm bench control`'s `leader_failover_s` target), which knows
/// no earlier grants and moves the actor `lease × 1.1 + 0.1 s` after it
/// took over.
const LEADER_FAILOVER_BOUND: Duration = Duration::from_secs(3);
/// How long the cluster may take to settle after the heal (down members
/// are announced to every 20 s).
const SETTLE: Duration = Duration::from_secs(60);
/// Answers in a row from one incarnation that count as agreement.
const AGREED: usize = 20;

/// A host's certificate roles, by its name's first letter.
fn roles(name: &str) -> &'static [&'static str] {
    match name.as_bytes()[0] {
        b'h' => &["head", "worker"],
        b'w' => &["worker"],
        _ => &["worker", "operator"],
    }
}

fn ip(name: &str) -> &'static str {
    HOSTS.iter().find(|(n, _)| *n == name).unwrap().1
}

/// Inserts (`-I`) or deletes (`-D`) the cut: in each minority namespace,
/// drop everything from and to the majority.
fn cut(net: &Net, op: &str) {
    for host in MINORITY {
        let ns = net.ns(host);
        for (chain, flag) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
            must(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "iptables",
                op,
                chain,
                flag,
                MAJORITY_NET,
                "-j",
                "DROP",
            ]);
        }
    }
}

/// Whether `driver` sees every one of `hosts` down.
fn sees_down(driver: &mut Driver, hosts: &[&str]) -> bool {
    let members = driver.quiet("members");
    hosts.iter().all(|h| members[*h] == "Down")
}

/// Whether every member is alive in a `members` answer.
fn all_alive(members: &Value) -> bool {
    members
        .as_object()
        .is_some_and(|m| m.len() == HOSTS.len() && m.values().all(|state| state == "Alive"))
}

/// Whether the hosts run exactly one incarnation of each ledger, running,
/// the one the drivers agree on.
fn one_incarnation_each(
    hosts: &Value,
    agreed: &BTreeMap<String, (u64, String)>,
) -> Result<(), String> {
    for (ledger, (epoch, node)) in agreed {
        let mut running = Vec::new();
        for host in NODES {
            let Some(rows) = hosts[host].as_array() else {
                return Err(format!("{host} did not list its actors: {}", hosts[host]));
            };
            for row in rows.iter().filter(|r| r["name"] == ledger.as_str()) {
                if row["state"] == "running" {
                    running.push((host, row["epoch"].as_u64()));
                }
            }
        }
        if running != [(node.as_str(), Some(*epoch))] {
            return Err(format!(
                "{ledger}: the drivers agree on epoch {epoch} on {node}, the hosts run {running:?}"
            ));
        }
    }
    Ok(())
}

/// Whether the head records each ledger placed where the drivers agree
/// it runs (a `placed` answer).
fn recorded_as_agreed(
    head_rows: &Value,
    agreed: &BTreeMap<String, (u64, String)>,
) -> Result<(), String> {
    for (ledger, (epoch, node)) in agreed {
        let row = head_rows
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["name"] == ledger.as_str()));
        match row {
            Some(r) if r["state"] == "placed" && r["epoch"] == *epoch && r["node"] == *node => {}
            _ => {
                return Err(format!(
                    "{ledger}: the drivers agree on epoch {epoch} on {node}, the head records {}",
                    row.unwrap_or(head_rows)
                ))
            }
        }
    }
    Ok(())
}
