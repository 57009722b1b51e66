//! What the partition test saw and what it makes of it: the drivers'
//! answers with the moments the test marked, checks 1, 2 and 4 of
//! `partition.rs`'s doc, the condition for "settled", and the summary
//! printed after each run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::{AGREED, CLOCK_UNCERTAINTY, DRIVERS, LEDGERS, NODES};
use crate::namespaces::{Answer, Driver};

/// What the run saw: every answer, the moments it marked, and what failed.
pub(super) struct Record {
    /// t = 0 of the summary: when the deposits started.
    t0: u64,
    /// Each ledger's epoch when placed.
    placed: BTreeMap<&'static str, u64>,
    answers: Vec<Answer>,
    marks: Vec<(u64, String)>,
    /// What failed, in words.
    pub(super) failures: Vec<String>,
}

impl Record {
    pub(super) fn new(placed: BTreeMap<&'static str, u64>) -> Self {
        Self {
            t0: now_us(),
            placed,
            answers: Vec::new(),
            marks: Vec::new(),
            failures: Vec::new(),
        }
    }

    pub(super) fn mark(&mut self, what: String) {
        eprintln!("partition: {what} at {}", self.at(now_us()));
        self.marks.push((now_us(), what));
    }

    pub(super) fn fail(&mut self, what: String) {
        self.failures.push(what);
    }

    /// Takes what the drivers recorded since the last poll (the callers
    /// poll every [`POLL`](super::POLL) through `util::poll_until`).
    pub(super) fn poll(&mut self, drivers: &mut [Driver]) {
        for d in drivers {
            self.take(d.quiet("answers"));
        }
    }

    pub(super) fn take(&mut self, answer: Value) {
        let answers: Vec<Answer> = serde_json::from_value(answer["answers"].clone())
            .unwrap_or_else(|e| panic!("answers: {e}: {answer}"));
        self.answers.extend(answers);
    }

    /// Whether each driver has `n` acknowledged deposits into each ledger.
    pub(super) fn answered_by_all(&self, n: usize) -> bool {
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
    pub(super) fn moved(&self, ledger: &str, driver: &str) -> bool {
        self.answers.iter().any(|a| {
            a.driver == driver
                && a.name == ledger
                && a.balance
                    .as_ref()
                    .is_some_and(|b| b.epoch != self.placed[ledger])
        })
    }

    /// When `driver` was first answered by an epoch of `ledger` other than
    /// the one it was placed with (microseconds, as `acked_us`).
    pub(super) fn first_moved(&self, ledger: &str, driver: &str) -> Option<u64> {
        self.answers
            .iter()
            .filter(|a| a.driver == driver && a.name == ledger)
            .filter(|a| {
                a.balance
                    .as_ref()
                    .is_some_and(|b| b.epoch != self.placed[ledger])
            })
            .map(|a| a.acked_us)
            .min()
    }

    /// The incarnation (epoch, node) of each ledger that answered each
    /// driver's last [`AGREED`] deposits sent after `since`, if one did.
    pub(super) fn agreed_since(
        &self,
        since: u64,
    ) -> Result<BTreeMap<String, (u64, String)>, String> {
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
    pub(super) fn check(&mut self) {
        for (ledger, _) in LEDGERS {
            let mut ok: Vec<&Answer> = self
                .answers
                .iter()
                .filter(|a| a.name == ledger && a.balance.is_some())
                .collect();
            ok.sort_by_key(|a| a.sent_us);
            let epoch_of = |a: &Answer| a.balance.as_ref().unwrap().epoch;
            let mut by_epoch: BTreeMap<u64, Vec<&Answer>> = BTreeMap::new();
            for a in &ok {
                by_epoch.entry(epoch_of(a)).or_default().push(a);
            }
            let mut failures = Vec::new();
            // 1. No answer of another epoch between two of one epoch
            // (each pair of epochs reported once).
            let mut overlapping = Vec::new();
            for (e, mine) in &by_epoch {
                let first_acked = mine.iter().map(|a| a.acked_us).min().unwrap();
                let last_sent = mine.iter().map(|a| a.sent_us).max().unwrap();
                let between = ok.iter().find(|b| {
                    epoch_of(b) != *e
                        && first_acked + CLOCK_UNCERTAINTY < b.sent_us
                        && b.acked_us + CLOCK_UNCERTAINTY < last_sent
                });
                if let Some(b) = between {
                    let pair = (*e.min(&epoch_of(b)), *e.max(&epoch_of(b)));
                    if overlapping.contains(&pair) {
                        continue;
                    }
                    overlapping.push(pair);
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
            // 2. Every answer includes every deposit acknowledged before it
            // was sent, by any epoch: the ledgers are durable, so a new
            // incarnation recovers what the one before it acknowledged.
            let mut by_acked = ok.clone();
            by_acked.sort_by_key(|a| a.acked_us);
            let mut sums = vec![0];
            for a in &by_acked {
                sums.push(sums.last().unwrap() + a.amount);
            }
            let lost: Vec<(&Answer, u64)> = ok
                .iter()
                .filter_map(|b| {
                    let before = by_acked.partition_point(|a| a.acked_us < b.sent_us);
                    let needed = sums[before] + b.amount;
                    (b.balance.as_ref().unwrap().total < needed).then_some((*b, needed))
                })
                .collect();
            if let Some((b, needed)) = lost.iter().min_by_key(|(b, _)| b.acked_us) {
                failures.push(format!(
                    "{ledger} epoch {}: acknowledged deposits were lost: {} was answered \
                     {} at {} although {} deposits had been acknowledged (by any epoch) before \
                     it was sent ({} answers like it)",
                    epoch_of(b),
                    b.driver,
                    b.balance.as_ref().unwrap().total,
                    self.at(b.acked_us),
                    needed - b.amount,
                    lost.len()
                ));
            }
            self.failures.extend(failures);
        }
        // 4. The majority's ledger keeps its epoch and node, and is never
        // found stopped by the majority's driver.
        let ((major, w1), d1) = (LEDGERS[0], DRIVERS[0]);
        let epoch = self.placed[major];
        let strays: Vec<&Answer> = self
            .answers
            .iter()
            .filter(|a| a.name == major)
            .filter(|a| {
                a.balance
                    .as_ref()
                    .is_some_and(|b| b.epoch != epoch || b.node != w1)
            })
            .collect();
        if let Some(a) = strays.first() {
            let b = a.balance.as_ref().unwrap();
            self.failures.push(format!(
                "{major} was placed on {w1} with epoch {epoch}, but {} was answered by epoch {} \
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
            .filter(|a| a.name == major && a.driver == d1)
            .filter(|a| {
                a.error
                    .as_ref()
                    .is_some_and(|(kind, _)| kind == "NoSuchActor" || kind == "ActorStopped")
            })
            .collect();
        if let (Some(first), Some(last)) = (stopped.first(), stopped.last()) {
            self.failures.push(format!(
                "{w1}, a healthy majority node, stopped {major}: {d1} found it gone {} times \
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
    pub(super) fn summary(&self, hosts: &Value, head_rows: &Value, events: &Value) -> String {
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
        let _ = writeln!(out, "the head's records at the end: {head_rows}");
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

pub(super) fn now_us() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(since.as_micros()).unwrap()
}

#[cfg(test)]
mod tests {
    //! The checks on made-up histories, without namespaces: a clean one
    //! passes, and each kind of violation is named.

    use std::collections::BTreeMap;

    use super::Record;
    use crate::namespaces::{Answer, Balance};

    /// Deposits of 1 by both drivers, alternating every 25 ms, from `from`
    /// to `to` ms, each answered within 5 ms by `epoch` on `node`; the
    /// balance starts at `opening` + 1.
    fn history(
        ledger: &str,
        epoch: u64,
        node: &str,
        from: u64,
        to: u64,
        opening: u64,
    ) -> Vec<Answer> {
        (0..)
            .map(|i| from + 25 * i)
            .take_while(|t| *t < to)
            .zip(opening + 1..)
            .map(|(t, total)| Answer {
                name: ledger.to_owned(),
                driver: if t % 50 == 0 { "d1" } else { "d2" }.to_owned(),
                sent_us: t * 1000,
                acked_us: t * 1000 + 5000,
                amount: 1,
                balance: Some(Balance {
                    total,
                    epoch,
                    node: node.to_owned(),
                    located: Some(epoch),
                }),
                error: None,
            })
            .collect()
    }

    fn checked(answers: Vec<Answer>) -> Vec<String> {
        let mut record = Record::new(BTreeMap::from([("major", 2), ("minor", 4)]));
        record.answers = answers;
        record.check();
        record.failures
    }

    /// "major" on w1 throughout; "minor" on w2, stopped at 4 s, moved to w1
    /// at 7 s.
    fn clean() -> Vec<Answer> {
        let mut answers = history("major", 2, "w1", 0, 20_000, 0);
        answers.extend(history("minor", 4, "w2", 0, 4_000, 0));
        // Epoch 5 recovers the 160 deposits epoch 4 acknowledged.
        answers.extend(history("minor", 5, "w1", 7_000, 20_000, 160));
        answers
    }

    #[test]
    fn a_history_with_one_epoch_at_a_time_passes_the_partition_checks() {
        assert_eq!(checked(clean()), Vec::<String>::new());
    }

    #[test]
    fn an_epoch_started_again_with_fresh_state_fails_as_lost_deposits() {
        let mut answers = history("major", 2, "w1", 0, 10_000, 0);
        answers.extend(history("major", 2, "w1", 10_250, 20_000, 0));
        let failures = checked(answers);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].starts_with("major epoch 2: acknowledged deposits were lost"));
    }

    #[test]
    fn a_new_epoch_without_what_the_one_before_acknowledged_fails_as_lost_deposits() {
        let mut answers = history("major", 2, "w1", 0, 20_000, 0);
        answers.extend(history("minor", 4, "w2", 0, 4_000, 0));
        answers.extend(history("minor", 5, "w1", 7_000, 20_000, 0));
        let failures = checked(answers);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].starts_with("minor epoch 5: acknowledged deposits were lost"));
    }

    #[test]
    fn a_second_epoch_answering_while_the_first_still_does_fails_as_overlap() {
        let mut answers = clean();
        answers.extend(history("minor", 4, "w2", 8_000, 9_000, 1_000));
        let failures = checked(answers);
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(failures[0].starts_with("minor: epochs 4 and 5 overlap"));
        // What epoch 4 acknowledged meanwhile is missing from epoch 5's
        // later answers: split brain loses it.
        assert!(failures[1].starts_with("minor epoch 5: acknowledged deposits were lost"));
    }

    #[test]
    fn the_majority_ledger_answering_from_a_new_epoch_fails() {
        let mut answers = history("major", 2, "w1", 0, 10_000, 0);
        // It recovered the 400 deposits epoch 2 acknowledged.
        answers.extend(history("major", 3, "h1", 14_000, 20_000, 400));
        let failures = checked(answers);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].starts_with("major was placed on w1 with epoch 2"));
    }
}
