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
//! 2. **Within an epoch, nothing acknowledged is lost.** Every answer's
//!    balance includes its own deposit and every deposit of the same epoch
//!    acknowledged before it was sent; in particular the balance never goes
//!    back (an epoch started twice, with fresh state, fails here).
//! 3. **One incarnation after the heal**, as above, within [`SETTLE`].
//! 4. **The majority keeps what it runs**: every answer from "major" comes
//!    from the epoch and node it was placed with, and the majority's
//!    driver never found it stopped.
//!
//! On failure, the test prints each ledger's epochs (first and last
//! answer, counts, balances), the errors each driver saw, and what the
//! hosts ran at the end. The cut's iptables rules live in the namespaces
//! and go with them when `Net` is dropped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use swarm::config::NodeFile;
use swarm::credentials::Throwaway;

use crate::namespaces::{must, require, write_config, Answer, Driver, Net};
use crate::util::scratch;

#[test]
fn a_healed_partition_leaves_one_incarnation_per_ledger_and_the_majority_keeps_its_own() {
    if require("partition") {
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
    if require("stress_partition") {
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

    let mut log = Log::new(placed);
    for (d, name) in drivers.iter_mut().zip(DRIVERS) {
        let started = d.call(&format!(
            "deposit {name} {}",
            LEDGERS.map(|l| l.0).join(" ")
        ));
        assert_eq!(started["ok"], true, "{started}");
    }
    // Every driver is answered by every ledger before the cut.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.answered_by_all(20) {
        assert!(Instant::now() < deadline, "no deposits before the cut");
        log.poll(&mut drivers);
    }
    let leader = drivers[0].call("leader 30")["leader"].clone();
    log.mark(format!("cut (the head leader was {leader})"));
    cut(&net, "-I");

    // Cut until each side sees the other down and the majority moved
    // "minor" (and `hold` passed).
    let cut_at = Instant::now();
    let mut cut_done = false;
    while cut_at.elapsed() < CUT_LIMIT {
        log.poll(&mut drivers);
        if cut_at.elapsed() >= hold
            && log.moved("minor", "d1")
            && sees_down(&mut drivers[0], &MINORITY)
            && sees_down(&mut drivers[1], &MAJORITY)
        {
            cut_done = true;
            break;
        }
    }
    if !cut_done {
        log.fail(format!(
            "within {CUT_LIMIT:?} of the cut, the sides did not both see the other down, \
             or the majority did not move \"minor\""
        ));
    }
    cut(&net, "-D");
    log.mark("heal".into());

    // Settled: every member alive on both drivers, one incarnation per
    // ledger answering both and listed by the hosts, for 2 s.
    let heal_us = now_us();
    let healed = Instant::now();
    let mut settled_since: Option<Instant> = None;
    let mut hosts = Value::Null;
    let mut recorded = Value::Null;
    loop {
        log.poll(&mut drivers);
        let mut state = Ok(());
        for d in &mut drivers {
            if state.is_ok() && !all_alive(&d.call("members")) {
                state = Err("not every member is alive on both drivers".to_owned());
            }
        }
        let agreed = state.and_then(|()| log.agreed_since(heal_us));
        let listed = agreed.and_then(|agreed| {
            hosts = drivers[0].call(&format!("hosts {}", NODES.join(" ")));
            one_incarnation_each(&hosts, &agreed)?;
            recorded = drivers[0].call("placed");
            recorded_as_agreed(&recorded, &agreed)
        });
        match listed {
            Ok(()) => {
                let since = *settled_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_secs(2) {
                    log.mark("settled".into());
                    break;
                }
            }
            Err(why) => {
                settled_since = None;
                if healed.elapsed() >= SETTLE {
                    log.fail(format!("not settled {SETTLE:?} after the heal: {why}"));
                    break;
                }
            }
        }
    }
    for d in &mut drivers {
        log.take(d.call("answers stop"));
    }
    log.check();
    let events = drivers[0].call(&format!("events {}", NODES.join(" ")));
    let summary = log.summary(&hosts, &recorded, &events);
    eprintln!("{summary}");
    drop(net);
    let _ = std::fs::remove_dir_all(&dir);
    log.failures
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
    let members = driver.call("members");
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
    recorded: &Value,
    agreed: &BTreeMap<String, (u64, String)>,
) -> Result<(), String> {
    for (ledger, (epoch, node)) in agreed {
        let row = recorded
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["name"] == ledger.as_str()));
        match row {
            Some(r) if r["state"] == "placed" && r["epoch"] == *epoch && r["node"] == *node => {}
            _ => {
                return Err(format!(
                    "{ledger}: the drivers agree on epoch {epoch} on {node}, the head records {}",
                    row.unwrap_or(recorded)
                ))
            }
        }
    }
    Ok(())
}

/// What the run saw: every answer, the moments it marked, and what failed.
struct Log {
    /// t = 0 of the summary: when the deposits started.
    t0: u64,
    /// Each ledger's epoch when placed.
    placed: BTreeMap<&'static str, u64>,
    answers: Vec<Answer>,
    marks: Vec<(u64, String)>,
    failures: Vec<String>,
}

impl Log {
    fn new(placed: BTreeMap<&'static str, u64>) -> Self {
        Self {
            t0: now_us(),
            placed,
            answers: Vec::new(),
            marks: Vec::new(),
            failures: Vec::new(),
        }
    }

    fn mark(&mut self, what: String) {
        eprintln!("partition: {what} at {}", self.at(now_us()));
        self.marks.push((now_us(), what));
    }

    fn fail(&mut self, what: String) {
        self.failures.push(what);
    }

    /// Takes what the drivers recorded since the last poll, 250 ms later.
    fn poll(&mut self, drivers: &mut [Driver]) {
        std::thread::sleep(Duration::from_millis(250));
        for d in drivers {
            self.take(d.call("answers"));
        }
    }

    fn take(&mut self, answer: Value) {
        let answers: Vec<Answer> = serde_json::from_value(answer["answers"].clone())
            .unwrap_or_else(|e| panic!("answers: {e}: {answer}"));
        self.answers.extend(answers);
    }

    /// Whether each driver has `n` acknowledged deposits into each ledger.
    fn answered_by_all(&self, n: usize) -> bool {
        DRIVERS.iter().all(|d| {
            LEDGERS.iter().all(|(l, _)| {
                self.answers
                    .iter()
                    .filter(|a| a.driver == *d && a.name == *l && a.balance.is_some())
                    .count()
                    >= n
            })
        })
    }

    /// Whether `driver` was answered by an epoch of `ledger` other than
    /// the one it was placed with.
    fn moved(&self, ledger: &str, driver: &str) -> bool {
        self.answers.iter().any(|a| {
            a.driver == driver
                && a.name == ledger
                && a.balance
                    .as_ref()
                    .is_some_and(|b| b.epoch != self.placed[ledger])
        })
    }

    /// The incarnation (epoch, node) of each ledger that answered each
    /// driver's last [`AGREED`] deposits sent after `since`, if one did.
    fn agreed_since(&self, since: u64) -> Result<BTreeMap<String, (u64, String)>, String> {
        let mut agreed = BTreeMap::new();
        for (ledger, _) in LEDGERS {
            let mut seen: Option<(u64, String)> = None;
            for driver in DRIVERS {
                let last: Vec<&Answer> = self
                    .answers
                    .iter()
                    .filter(|a| a.name == ledger && a.driver == driver && a.sent_us >= since)
                    .collect();
                let last = &last[last.len().saturating_sub(AGREED)..];
                if last.len() < AGREED {
                    return Err(format!("{driver}: {} answers from {ledger}", last.len()));
                }
                for a in last {
                    let Some(b) = &a.balance else {
                        return Err(format!("{driver}: {ledger} failed: {:?}", a.error));
                    };
                    let this = (b.epoch, b.node.clone());
                    if seen.get_or_insert_with(|| this.clone()) != &this {
                        return Err(format!("{ledger}: answered by {this:?} and {seen:?}"));
                    }
                }
            }
            agreed.insert(ledger.to_owned(), seen.unwrap());
        }
        Ok(agreed)
    }

    /// Checks 1, 2 and 4 of the module doc on every answer.
    fn check(&mut self) {
        for (ledger, _) in LEDGERS {
            let ok: Vec<&Answer> = self
                .answers
                .iter()
                .filter(|a| a.name == ledger && a.balance.is_some())
                .collect();
            let epoch_of = |a: &Answer| a.balance.as_ref().unwrap().epoch;
            let mut by_epoch: BTreeMap<u64, Vec<&Answer>> = BTreeMap::new();
            for a in &ok {
                by_epoch.entry(epoch_of(a)).or_default().push(a);
            }
            let mut failures = Vec::new();
            // 1. No answer of another epoch between two of one epoch.
            for (e, mine) in &by_epoch {
                let first_acked = mine.iter().map(|a| a.acked_us).min().unwrap();
                let last_sent = mine.iter().map(|a| a.sent_us).max().unwrap();
                let between = ok.iter().find(|b| {
                    epoch_of(b) != *e
                        && first_acked + CLOCK_UNCERTAINTY < b.sent_us
                        && b.acked_us + CLOCK_UNCERTAINTY < last_sent
                });
                if let Some(b) = between {
                    failures.push(format!(
                        "{ledger}: epochs {e} and {} overlap: {e} answered at {} and again at {}, \
                         and {} answered {} at {} in between",
                        epoch_of(b),
                        self.at(first_acked),
                        self.at(last_sent),
                        epoch_of(b),
                        b.driver,
                        self.at(b.sent_us),
                    ));
                }
            }
            // 2. Every answer includes every deposit of its epoch
            // acknowledged before it was sent.
            for (e, mine) in &by_epoch {
                let mut by_acked = mine.clone();
                by_acked.sort_by_key(|a| a.acked_us);
                let mut sums = vec![0];
                for a in &by_acked {
                    sums.push(sums.last().unwrap() + a.amount);
                }
                let lost: Vec<(&Answer, u64)> = mine
                    .iter()
                    .filter_map(|b| {
                        let before = by_acked.partition_point(|a| a.acked_us < b.sent_us);
                        let needed = sums[before] + b.amount;
                        (b.balance.as_ref().unwrap().total < needed).then_some((*b, needed))
                    })
                    .collect();
                if let Some((b, needed)) = lost.iter().min_by_key(|(b, _)| b.acked_us) {
                    failures.push(format!(
                        "{ledger} epoch {e}: acknowledged deposits were lost: {} was answered \
                         {} at {} although {} deposits of this epoch had been acknowledged before \
                         it was sent ({} answers like it)",
                        b.driver,
                        b.balance.as_ref().unwrap().total,
                        self.at(b.acked_us),
                        needed - b.amount,
                        lost.len()
                    ));
                }
            }
            self.failures.extend(failures);
        }
        // 4. The majority's ledger keeps its epoch and node, and is never
        // found stopped by the majority's driver.
        let epoch = self.placed["major"];
        let strays: Vec<&Answer> = self
            .answers
            .iter()
            .filter(|a| a.name == "major")
            .filter(|a| {
                a.balance
                    .as_ref()
                    .is_some_and(|b| b.epoch != epoch || b.node != "w1")
            })
            .collect();
        if let Some(a) = strays.first() {
            let b = a.balance.as_ref().unwrap();
            self.failures.push(format!(
                "major was placed on w1 with epoch {epoch}, but {} was answered by epoch {} \
                 on {} at {} ({} such answers)",
                a.driver,
                b.epoch,
                b.node,
                self.at(a.acked_us),
                strays.len()
            ));
        }
        let stopped: Vec<&Answer> = self
            .answers
            .iter()
            .filter(|a| a.name == "major" && a.driver == "d1")
            .filter(|a| {
                a.error
                    .as_ref()
                    .is_some_and(|(kind, _)| kind == "NoSuchActor" || kind == "ActorStopped")
            })
            .collect();
        if let (Some(first), Some(last)) = (stopped.first(), stopped.last()) {
            self.failures.push(format!(
                "w1, a healthy majority node, stopped major: d1 found it gone {} times \
                 from {} to {} ({:?})",
                stopped.len(),
                self.at(first.sent_us),
                self.at(last.acked_us),
                first.error
            ));
        }
    }

    /// Per ledger and epoch: first and last answer, counts, balances; the
    /// errors each driver saw; the marks; what the hosts ran at the end.
    fn summary(&self, hosts: &Value, recorded: &Value, events: &Value) -> String {
        let mut out = String::from("partition summary (t = 0 when the deposits started)\n");
        for (when, what) in &self.marks {
            let _ = writeln!(out, "  {} {what}", self.at(*when));
        }
        for (ledger, on) in LEDGERS {
            let _ = writeln!(
                out,
                "{ledger}: placed on {on} with epoch {}",
                self.placed[ledger]
            );
            let mut groups: BTreeMap<(u64, String), Vec<&Answer>> = BTreeMap::new();
            for a in self.answers.iter().filter(|a| a.name == ledger) {
                if let Some(b) = &a.balance {
                    groups.entry((b.epoch, b.node.clone())).or_default().push(a);
                }
            }
            for ((epoch, node), answers) in &groups {
                let _ = writeln!(out, "  epoch {epoch} on {node}:");
                for life in lives(answers) {
                    let total = |a: &Answer| a.balance.as_ref().unwrap().total;
                    let count = |d: &str| life.iter().filter(|a| a.driver == d).count();
                    let (first, last) = (life[0], life[life.len() - 1]);
                    let _ = writeln!(
                        out,
                        "    {} to {}: {} answers (d1 {}, d2 {}), balance {} .. {}",
                        self.at(first.acked_us),
                        self.at(last.acked_us),
                        life.len(),
                        count("d1"),
                        count("d2"),
                        total(first),
                        life.iter().map(|a| total(a)).max().unwrap(),
                    );
                }
            }
            for driver in DRIVERS {
                let mut errors: BTreeMap<&str, (usize, u64, u64, &str)> = BTreeMap::new();
                for a in self
                    .answers
                    .iter()
                    .filter(|a| a.name == ledger && a.driver == driver)
                {
                    if let Some((kind, text)) = &a.error {
                        let e = errors
                            .entry(kind)
                            .or_insert((0, a.sent_us, a.acked_us, text));
                        e.0 += 1;
                        e.2 = a.acked_us;
                    }
                }
                for (kind, (n, first, last, text)) in errors {
                    let _ = writeln!(
                        out,
                        "  {driver} errors: {kind} x{n} from {} to {} (first: {text})",
                        self.at(first),
                        self.at(last)
                    );
                }
            }
        }
        let _ = writeln!(out, "the head's records at the end: {recorded}");
        let _ = writeln!(
            out,
            "events on the nodes (their rejoins, and what their hosts did):"
        );
        for host in NODES {
            let listed = events[host].as_array().map(|events| {
                events
                    .iter()
                    .map(|e| {
                        let at = e["at_ms"].as_u64().unwrap_or_default() * 1000;
                        format!(
                            "{} {} {}: {}",
                            self.at(at),
                            e["kind"],
                            e["subject"],
                            e["detail"]
                        )
                    })
                    .collect::<Vec<_>>()
            });
            match listed {
                Some(lines) => {
                    for line in lines {
                        let _ = writeln!(out, "  {host} {line}");
                    }
                }
                None => {
                    let _ = writeln!(out, "  {host} {}", events[host]);
                }
            }
        }
        let _ = writeln!(out, "hosts at the end:");
        for host in NODES {
            let rows: Vec<String> = hosts[host]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .map(|r| {
                            format!(
                                "{} epoch {} {} restarts {}",
                                r["name"], r["epoch"], r["state"], r["restarts"]
                            )
                        })
                        .collect()
                })
                .unwrap_or_else(|| vec![hosts[host].to_string()]);
            let _ = writeln!(out, "  {host}: {}", rows.join("; "));
        }
        out
    }

    /// `us` as seconds since t = 0.
    fn at(&self, us: u64) -> String {
        format!("{:.2} s", (us as f64 - self.t0 as f64) / 1e6)
    }
}

/// One epoch's answers split where the balance went back (a later
/// answer below one acknowledged before it was sent): each part is one
/// life of the epoch, ordered by when its answers came back.
fn lives<'a>(answers: &[&'a Answer]) -> Vec<Vec<&'a Answer>> {
    let mut sorted = answers.to_vec();
    sorted.sort_by_key(|a| a.acked_us);
    let total = |a: &Answer| a.balance.as_ref().unwrap().total;
    let mut lives: Vec<Vec<&Answer>> = Vec::new();
    for a in sorted {
        let went_back = lives.last().is_some_and(|life| {
            life.iter()
                .any(|b| b.acked_us < a.sent_us && total(b) > total(a))
        });
        match lives.last_mut() {
            Some(life) if !went_back => life.push(a),
            _ => lives.push(vec![a]),
        }
    }
    lives
}

fn now_us() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(since.as_micros()).unwrap()
}
