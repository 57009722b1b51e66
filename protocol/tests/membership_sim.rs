//! Membership over the simulated network: many real foca instances in one
//! process, virtual time. Each test names the DESIGN.md promise it checks.

use std::time::Duration;

use swarm_protocol::gossip::{NodeMeta, ServiceEntry};
use swarm_protocol::membership::sim::{addr_of, Sim, SimConfig};
use swarm_protocol::membership::{MemberEvent, MemberState};

const STEP: Duration = Duration::from_millis(100);

fn converge(sim: &mut Sim, limit: Duration) -> Duration {
    sim.run_until(limit, STEP, Sim::converged)
        .unwrap_or_else(|| panic!("no convergence within {limit:?}: {sim:?}"))
}

fn started(nodes: usize, config: SimConfig) -> Sim {
    let mut sim = Sim::new(nodes, config);
    sim.start_all(0..nodes, 0, Duration::ZERO);
    sim
}

/// DESIGN.md "Failure model": a node killed with SIGKILL is detected by
/// every other node within the SWIM bound. `nodes` nodes join through one
/// seed, converge, and 1% of them (at least 3) are killed.
fn sigkill_detected_within_bound(nodes: usize) {
    let config = SimConfig::default();
    let bound = config.membership.detection_bound(nodes);
    let mut sim = started(nodes, config);
    let took = converge(&mut sim, Duration::from_secs(300));
    eprintln!("{nodes} nodes converged in {took:?} (virtual)");
    let killed = (nodes / 100).max(3);
    let victims: Vec<usize> = (1..=killed)
        .map(|k| k * (nodes - 1) / (killed + 1))
        .collect();
    for &victim in &victims {
        sim.kill(victim);
    }
    let took = sim
        .run_until(bound, STEP, |s| {
            victims.iter().all(|&v| s.all_see(v, MemberState::Down))
        })
        .unwrap_or_else(|| {
            let missing: Vec<_> = victims.iter().map(|&v| (v, s_count(&sim, v))).collect();
            panic!("not all survivors saw every victim down within {bound:?}: {missing:?}")
        });
    eprintln!("{killed} killed nodes detected by all survivors in {took:?} (bound {bound:?})");
    assert_eq!(sim.stats.false_down, 0);
}

/// The promise at 250 nodes (a few seconds): the default suite.
#[test]
fn promise_sigkill_detected_within_bound_250_nodes() {
    sigkill_detected_within_bound(250);
}

/// The promise at 1,000 nodes (about 25 s of CPU, 0.9 GiB).
#[test]
#[ignore]
fn stress_sigkill_detected_within_bound_1000_nodes() {
    sigkill_detected_within_bound(1000);
}

fn s_count(sim: &Sim, victim: usize) -> usize {
    sim.count_seeing(victim, MemberState::Down)
}

/// DESIGN.md "Membership and discovery": failure detection tolerates loss;
/// 5% datagram loss declares no live node down.
#[test]
fn promise_no_false_down_at_five_percent_loss() {
    let nodes = 150;
    let mut sim = started(
        nodes,
        SimConfig {
            loss: 0.05,
            seed: 7,
            ..SimConfig::default()
        },
    );
    converge(&mut sim, Duration::from_secs(300));
    sim.run_for(Duration::from_secs(120));
    assert_eq!(sim.stats.false_down, 0, "{:?}", sim.stats);
    assert!(
        sim.stats.lost > 1000,
        "the loss rate was applied: {:?}",
        sim.stats
    );
    assert!(sim.converged());
}

/// DESIGN.md "Failure model": a partition heals without manual action.
#[test]
fn promise_partition_heals_and_both_sides_merge() {
    let nodes = 60;
    let config = SimConfig::default();
    let bound = config.membership.detection_bound(nodes);
    let mut sim = started(nodes, config);
    converge(&mut sim, Duration::from_secs(120));
    let left: Vec<usize> = (0..nodes / 2).collect();
    let right: Vec<usize> = (nodes / 2..nodes).collect();
    sim.partition(&[&left, &right]);
    // Each side declares the other down.
    sim.run_until(bound * 2, STEP, |s| {
        s.all_see(0, MemberState::Down) || s.count_seeing(0, MemberState::Down) >= right.len()
    })
    .expect("the right side declares node 0 down");
    assert!(!sim.converged());
    sim.recover();
    let took = converge(&mut sim, Duration::from_secs(180));
    eprintln!("partition healed in {took:?} (virtual)");
}

/// DESIGN.md "Membership and discovery": a node that restarts with the same
/// id and a new incarnation is accepted, and seen as new.
#[test]
fn promise_rejoin_with_new_incarnation_is_accepted() {
    let nodes = 40;
    let config = SimConfig::default();
    let bound = config.membership.detection_bound(nodes);
    let mut sim = started(nodes, config);
    converge(&mut sim, Duration::from_secs(120));
    sim.watch(7);
    sim.kill(7);
    sim.run_until(bound, STEP, |s| s.all_see(7, MemberState::Down))
        .expect("node 7 declared down");
    sim.restart(7, &[0]);
    converge(&mut sim, Duration::from_secs(60));
    let addr = addr_of(7);
    for observer in (0..nodes).filter(|&i| i != 7) {
        let info = sim.node(observer).member(&addr).expect("listed");
        assert_eq!(info.state, MemberState::Alive);
        assert_eq!(
            info.id.bump, 2,
            "observer {observer} sees the new incarnation"
        );
    }
    let ups = sim
        .observations
        .iter()
        .filter(|o| matches!(&o.event, MemberEvent::Up(id) if id.bump == 2))
        .count();
    assert_eq!(
        ups,
        nodes - 1,
        "every other node saw the new incarnation come up once"
    );
}

/// A node that leaves cleanly is reported as left, at once, not as down.
#[test]
fn a_clean_leave_is_reported_as_left_at_once() {
    for seed in 1..=8 {
        let nodes = 30;
        let mut sim = started(
            nodes,
            SimConfig {
                seed,
                ..SimConfig::default()
            },
        );
        converge(&mut sim, Duration::from_secs(60));
        sim.watch(3);
        sim.leave(3);
        let took = sim
            .run_until(Duration::from_secs(5), STEP, |s| {
                s.all_see(3, MemberState::Left)
            })
            .expect("all see node 3 left");
        assert!(took < Duration::from_secs(3), "left seen after {took:?}");
        let downs: Vec<_> = sim
            .observations
            .iter()
            .filter(|o| matches!(o.event, MemberEvent::Down(_)))
            .collect();
        assert!(
            downs.is_empty(),
            "seed {seed}: reported down first: {downs:?}"
        );
    }
}

/// Suspicion is reported, and a member that answers again is alive again
/// (an isolation shorter than the suspicion timeout).
#[test]
fn suspicion_is_reported_and_refuted() {
    let nodes = 20;
    let mut sim = started(nodes, SimConfig::default());
    converge(&mut sim, Duration::from_secs(60));
    sim.watch(5);
    sim.isolate(5);
    sim.run_until(Duration::from_secs(10), STEP, |s| {
        s.count_seeing(5, MemberState::Suspect) >= nodes / 2
    })
    .expect("node 5 suspected");
    sim.recover();
    sim.run_until(Duration::from_secs(10), STEP, |s| {
        s.all_see(5, MemberState::Alive)
    })
    .expect("node 5 alive again everywhere");
    assert_eq!(sim.stats.false_down, 0);
    let suspects = sim
        .observations
        .iter()
        .filter(|o| matches!(o.event, MemberEvent::Suspect(_)))
        .count();
    assert!(suspects >= nodes / 2);
}

fn with_service(name: &str, service: &str) -> NodeMeta {
    NodeMeta {
        name: name.into(),
        services: vec![ServiceEntry {
            service: service.into(),
            actor: format!("{service}-actor"),
        }],
        ..NodeMeta::default()
    }
}

/// Metadata changes reach every member, and a member that joins later
/// pulls the metadata it missed.
#[test]
fn metadata_reaches_everyone_and_late_joiners_pull_it() {
    let nodes = 40;
    let mut sim = Sim::new(nodes, SimConfig::default());
    sim.start_all(0..nodes - 1, 0, Duration::ZERO);
    converge(&mut sim, Duration::from_secs(60));
    let now = sim.now();
    sim.node_mut(5)
        .set_meta(with_service("sim-5", "search"), now)
        .unwrap();
    sim.flush_node(5);
    let has_search = |s: &Sim, observer: usize| {
        s.node(observer)
            .meta_of(&addr_of(5))
            .is_some_and(|(_, m)| m.services.iter().any(|e| e.service == "search"))
    };
    let took = sim
        .run_until(Duration::from_secs(10), STEP, |s| {
            (0..nodes - 1).filter(|&i| i != 5).all(|i| has_search(s, i))
        })
        .expect("every member learns the new service");
    eprintln!("metadata change reached 38 members in {took:?}");
    // Long after the broadcasts died out, a new node joins and pulls.
    sim.run_for(Duration::from_secs(30));
    sim.start(nodes - 1, &[0]);
    sim.run_until(Duration::from_secs(20), STEP, |s| {
        has_search(s, nodes - 1)
            && (0..nodes - 1).all(|i| s.node(nodes - 1).meta_of(&addr_of(i)).is_some())
    })
    .expect("the late joiner pulled every member's metadata");
}

/// DESIGN.md "Scale" (membership simulated at 10,000) and "Failure
/// model": `nodes` simulated nodes join through one seed at 5% datagram
/// loss, converge, and 1% of them are SIGKILLed; every survivor marks
/// every victim down within the SWIM bound, and no live node is declared
/// down. Metadata gossip is off, as in `swarm bench membership`.
fn bench_promise(nodes: usize) {
    use swarm_protocol::membership::sim::bench;
    let mut config = SimConfig::default();
    config.membership.gossip_meta = false;
    let report = bench(nodes, 0.05, 0.01, config);
    eprintln!("{report:#?}");
    assert!(report.converge_s.is_some(), "no convergence: {report:?}");
    let max = report
        .detect_s_max
        .unwrap_or_else(|| panic!("a victim was not detected: {report:?}"));
    assert!(
        max <= report.bound_s,
        "detection {max} s over the bound {} s",
        report.bound_s
    );
    assert_eq!(report.false_down, 0, "{report:?}");
}

/// The bench's promise at 250 nodes (seconds): the default suite.
#[test]
fn promise_250_nodes_converge_and_detect_kills_at_five_percent_loss() {
    bench_promise(250);
}

/// The same at 1,000 nodes; run with `--release -- --ignored`.
#[test]
#[ignore]
fn stress_1000_simulated_nodes() {
    bench_promise(1_000);
}

/// The same at 2,000 nodes; run with `--release -- --ignored`.
#[test]
#[ignore]
fn stress_2000_simulated_nodes() {
    bench_promise(2_000);
}

/// The same at 5,000 nodes; run with `--release -- --ignored`: about
/// 4 GiB and 135 s of CPU (README "Simulated membership").
#[test]
#[ignore]
fn stress_5000_simulated_nodes() {
    bench_promise(5_000);
}

/// The same at 10,000 nodes; run with `--release -- --ignored`. The
/// simulation holds N² = 10⁸ member entries (every node knows every
/// other), in foca's member list (~76 bytes each with its index) and the
/// member table (~53); a pull's members are not gossiped on
/// (`MembershipConfig::relay_pulled`), so foca's update backlog no longer
/// holds the whole cluster during the join; pulls are spread over time,
/// so the simulator no longer holds a round of N member lists in flight.
/// RSS levels off at about 13.4 GB (134 bytes an entry; README "Pulls
/// spread over time").
#[test]
#[ignore]
fn stress_10k_simulated_nodes() {
    bench_promise(10_000);
}

/// A node joining a converged cluster learns every member at once, by
/// asking its seed for the whole member list (push/pull on join), instead
/// of one probe period per member.
#[test]
fn a_late_joiner_learns_every_member_at_once() {
    let nodes = 200;
    let mut sim = Sim::new(nodes, SimConfig::default());
    sim.start_all(0..nodes - 1, 0, Duration::ZERO);
    converge(&mut sim, Duration::from_secs(300));
    sim.run_for(Duration::from_secs(20));
    sim.start(nodes - 1, &[0]);
    let took = sim
        .run_until(Duration::from_secs(30), STEP, |s| {
            s.node(nodes - 1).active_count() == nodes - 1
        })
        .expect("the joiner learns every member");
    assert!(took <= Duration::from_secs(1), "took {took:?}");
    converge(&mut sim, Duration::from_secs(30));
}

/// A joiner whose copy of the member list loses datagrams (30% loss here)
/// asks other members for the buckets it lacks, a second or two later,
/// instead of waiting for the next periodic pull (30 s) or for gossip.
#[test]
fn a_late_joiner_repairs_the_lost_parts_of_its_member_list() {
    // 149 members: six buckets of a reply.
    let nodes = 150;
    let mut config = SimConfig::default();
    config.membership.gossip_meta = false;
    let mut sim = Sim::new(nodes, config);
    sim.start_all(0..nodes - 1, 0, Duration::ZERO);
    converge(&mut sim, Duration::from_secs(300));
    sim.run_for(Duration::from_secs(20));
    sim.set_loss(0.3);
    sim.start(nodes - 1, &[0]);
    let took = sim
        .run_until(Duration::from_secs(30), STEP, |s| {
            s.node(nodes - 1).active_count() == nodes - 1
        })
        .expect("the joiner learns every member");
    eprintln!("the joiner knew every member after {took:?}");
    assert!(took <= Duration::from_secs(8), "took {took:?}");
    // Its pulls stop once they teach it little: a handful, not one a second.
    let fast = sim.node(nodes - 1).stats().fast_pulls;
    assert!(fast <= 4, "{fast} fast pulls");
    assert_eq!(sim.stats.false_down, 0);
}

/// A cluster started all at once: the joiners' pulls of the seed's member
/// list go out over half a probe RTT, and the fast pulls that follow over
/// half a probe period, instead of within the same milliseconds. The
/// simulator holds every datagram in flight: sent together, 299 copies of
/// a 299-member list were 4.6 MB at once.
#[test]
fn pulls_of_a_mass_join_are_spread_over_time() {
    let nodes = 300;
    let mut config = SimConfig::default();
    config.membership.gossip_meta = false;
    config.loss = 0.05;
    let mut sim = started(nodes, config);
    converge(&mut sim, Duration::from_secs(60));
    let peak = sim.stats.peak_in_flight_bytes;
    assert!(peak < 1_000_000, "{peak} bytes in flight at once");
    assert_eq!(sim.stats.false_down, 0);
}
