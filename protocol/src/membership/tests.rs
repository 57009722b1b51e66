//! Small simulations; the large ones live in tests/ of this crate.

use std::time::Duration;

use super::sim::{Sim, SimConfig};
use super::*;

fn quick() -> SimConfig {
    SimConfig {
        seal: true,
        ..SimConfig::default()
    }
}

#[test]
fn three_nodes_join_through_one_seed_and_exchange_metadata() {
    let mut sim = Sim::new(3, quick());
    sim.start_all(0..3, 0, Duration::ZERO);
    let took = sim.run_until(Duration::from_secs(30), Duration::from_millis(50), |s| {
        s.converged()
            && (0..3).all(|i| {
                (0..3)
                    .filter(|&j| j != i)
                    .all(|j| s.node(i).meta_of(&sim::addr_of(j)).is_some())
            })
    });
    assert!(took.is_some(), "did not converge: {sim:?}");
    let meta = sim.node(2).meta_of(&sim::addr_of(0)).unwrap().1;
    assert_eq!(meta.name, "sim-0");
}
