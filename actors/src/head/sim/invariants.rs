//! What a run checks: after every event, one active incarnation per name
//! and no epoch started twice; at the end, convergence; and the runner of
//! many seeds that prints a failing one's trace.

use super::*;

impl Sim {
    /// The incarnations active now: (name, node, epoch).
    pub(super) fn active(&self) -> Vec<(String, usize, u64)> {
        let mut active = Vec::new();
        for (n, host) in self.hosts.iter().enumerate() {
            if !host.alive || !host.fencing.holds_lease(self.local(host.clock)) {
                continue;
            }
            for (name, epoch) in host.fencing.placed() {
                active.push((name.to_owned(), n, epoch));
            }
        }
        active.sort();
        active
    }

    pub(super) fn check(&self) -> Result<(), String> {
        if let Some(line) = self.trace.back().filter(|l| l.contains("VIOLATION")) {
            return Err(line.clone());
        }
        let active = self.active();
        for pair in active.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(format!(
                    "two incarnations of {} active: @{} on n{} and @{} on n{}",
                    pair[0].0, pair[0].2, pair[0].1, pair[1].2, pair[1].1
                ));
            }
        }
        Ok(())
    }

    /// Runs the seed to the end: faults, then [`SETTLE`] to converge.
    pub(crate) fn run(&mut self) -> Result<(), String> {
        let end = FAULTS + SETTLE;
        while let Some(Reverse((when, seq))) = self.queue.pop() {
            if when > end {
                break;
            }
            self.now = when;
            let Some(event) = self.events.remove(&seq) else {
                continue;
            };
            self.steps += 1;
            self.handle(event)?;
        }
        self.converged()
    }

    pub(super) fn converged(&self) -> Result<(), String> {
        let active = self.active();
        for name in &self.acknowledged {
            let Some(record) = self.state.actor(name) else {
                return Err(format!("acknowledged {name} is gone from the log"));
            };
            if record.state != RecordState::Placed {
                return Err(format!("acknowledged {name} is {:?}", record.state));
            }
            let node = self.node_of(record.node);
            let running: Vec<_> = active.iter().filter(|a| a.0 == *name).collect();
            match running.as_slice() {
                [(_, n, epoch)] if Some(*n) == node && *epoch == record.epoch => {}
                other => {
                    return Err(format!(
                        "{name} did not converge within {SETTLE:?}: the log places @{} on {node:?}, active: {other:?}",
                        record.epoch
                    ))
                }
            }
        }
        Ok(())
    }

    /// The trace's last lines.
    pub(crate) fn trace(&self) -> String {
        self.trace.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

pub(crate) fn run_seeds(
    seeds: impl IntoIterator<Item = u64>,
    config: impl Fn(u64) -> SimConfig,
) -> Result<(u64, u64), String> {
    let (mut runs, mut steps) = (0, 0);
    for seed in seeds {
        let mut sim = Sim::new(config(seed));
        let result = sim.run();
        runs += 1;
        steps += sim.steps;
        if let Err(e) = result {
            return Err(format!(
                "seed {seed}: {e}\n--- trace (last {TRACE} events) ---\n{}\n--- replay: SWARM_SIM_SEED={seed} cargo test -p swarm-actors --lib head::sim::tests::replay -- --ignored --nocapture",
                sim.trace()
            ));
        }
    }
    Ok((runs, steps))
}
