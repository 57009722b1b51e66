//! The simulation's runs: a few hundred seeds by default, many more in
//! the stress run, a negative control, and the replay of one seed.

use super::invariants::run_seeds;
use super::*;

fn seeds(count: u64) {
    let started = Instant::now();
    let result = run_seeds(0..count, SimConfig::seeded);
    let took = started.elapsed();
    match result {
        Ok((runs, steps)) => eprintln!(
            "control-plane simulation: {runs} seeds, {steps} events in {took:?} ({:.0} seeds/s)",
            runs as f64 / took.as_secs_f64()
        ),
        Err(e) => panic!("{e}"),
    }
}

/// A few hundred seeds of partitions, heals, crashes, restarts, head
/// failures, loss and skew: one incarnation per name at every instant,
/// no epoch started twice, every acknowledged name converged.
#[test]
fn the_simulated_control_plane_keeps_its_invariants_over_300_seeds() {
    seeds(300);
}

/// Many more seeds (`cargo test -p swarm-actors --lib stress_ -- --ignored`).
#[test]
#[ignore]
fn stress_simulated_control_plane_20000_seeds() {
    seeds(20_000);
}

/// The checker is not vacuous: clocks that run apart by more than the
/// leases allow for let two incarnations overlap, and it says so.
#[test]
fn clocks_beyond_the_drift_bound_are_caught_running_two_incarnations() {
    let result = run_seeds(0..300, |seed| SimConfig {
        skew: 0.3,
        ..SimConfig::seeded(seed)
    });
    let e = result.expect_err("a skew of 30% must break the lease bound on some seed");
    assert!(e.contains("two incarnations"), "{e}");
}

/// Replays `SWARM_SIM_SEED` with its trace (on demand: ignored).
#[test]
#[ignore]
fn replay() {
    let Some(seed) = std::env::var("SWARM_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    else {
        panic!("set SWARM_SIM_SEED to the seed to replay");
    };
    let mut sim = Sim::new(SimConfig::seeded(seed));
    let result = sim.run();
    eprintln!("{}", sim.trace());
    if let Err(e) = result {
        panic!("seed {seed}: {e}");
    }
}
