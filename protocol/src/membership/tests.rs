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

#[test]
fn acked_probes_cancel_their_indirect_probe_timer_and_detection_still_works() {
    let mut sim = Sim::new(5, quick());
    sim.start_all(0..5, 0, Duration::ZERO);
    assert!(sim
        .run_until(
            Duration::from_secs(30),
            Duration::from_millis(50),
            Sim::converged
        )
        .is_some());
    let before = sim.stats.cancelled_ticks;
    sim.run_for(Duration::from_secs(20));
    // Five nodes probing once a second for 20 s: nearly every probe is
    // acked directly, and its indirect-probe timer is cancelled.
    let cancelled = sim.stats.cancelled_ticks - before;
    assert!(
        cancelled >= 80,
        "{cancelled} indirect-probe timers cancelled"
    );
    assert_eq!(sim.stats.false_down, 0);
    // A killed node is still declared down through indirect probes.
    sim.kill(3);
    let bound = quick().membership.detection_bound(5);
    assert!(
        sim.run_until(bound, Duration::from_millis(100), |s| s
            .all_see(3, MemberState::Down))
            .is_some(),
        "not detected within {bound:?}"
    );
}

/// A partition heals: every member sees every other alive again within
/// the detection bound. (SWIM makes a down verdict final for an identity:
/// each side held the other down, so members of both sides rejoin under
/// renewed identities, the majority's too. Nothing that must survive a
/// heal may hang on a membership view: head placements go by leases,
/// which `swarm-actors`' control-plane simulation checks through heals.)
#[test]
fn after_a_partition_heals_every_member_sees_every_other_alive_again() {
    let mut sim = Sim::new(5, quick());
    for i in 0..5 {
        sim.watch(i);
    }
    sim.start_all(0..5, 0, Duration::ZERO);
    assert!(sim
        .run_until(
            Duration::from_secs(30),
            Duration::from_millis(50),
            Sim::converged
        )
        .is_some());
    sim.partition(&[&[0, 1, 2], &[3, 4]]);
    let bound = quick().membership.detection_bound(5);
    sim.run_for(bound * 2);
    assert!(
        (0..3).all(|i| sim.count_seeing(i, MemberState::Down) >= 2),
        "each side declared the other down"
    );
    let healed_at = sim.now();
    sim.recover();
    let took = sim.run_until(bound * 2, Duration::from_millis(100), Sim::converged);
    let rejoined = sim
        .observations
        .iter()
        .filter(|o| o.at >= healed_at && matches!(o.event, MemberEvent::Rejoined(_)))
        .count();
    eprintln!("healed in {took:?}; {rejoined} members rejoined under renewed identities");
    assert!(
        took.is_some(),
        "not converged within {:?} of the heal",
        bound * 2
    );
}

/// Member-list requests and replies that do not parse are refused, and a
/// reply nobody asked for is not applied.
#[test]
fn member_list_datagrams_are_checked() {
    use super::sync::{bucket_of, parse_request, MAX_BUCKETS};
    let from = sim::addr_of(2);
    // Buckets: the same on every node, always in range.
    for i in 0..100 {
        let b = bucket_of(&sim::addr_of(i), 7);
        assert!(b < 7);
        assert_eq!(b, bucket_of(&sim::addr_of(i), 7));
    }
    assert_eq!(parse_request(&[]).ok(), Some(None));
    assert_eq!(
        parse_request(&[0, 3, 0, 2, 0, 0]).ok(),
        Some(Some((3, vec![2, 0])))
    );
    let max = MAX_BUCKETS + 1;
    for bad in [
        vec![0, 3],                           // no bucket
        vec![0, 3, 0],                        // odd length
        vec![0, 0, 0, 0],                     // zero buckets
        vec![0, 3, 0, 3],                     // bucket out of range
        [max.to_be_bytes(), [0, 1]].concat(), // too many buckets
    ] {
        assert!(parse_request(&bad).is_err(), "{bad:?}");
    }
    let me = MemberId {
        addr: sim::addr_of(1),
        node: crate::identity::NodeId::from_bytes([1; 16]),
        bump: 1,
    };
    let mut m =
        Membership::new_unsealed(MembershipConfig::default(), me, NodeMeta::default(), 1).unwrap();
    // Not asked for: refused. (An empty bucket 0 of 1.)
    let reply = [kind::SYNC_REPLY, 0, 0, 0, 0, 0, 1, 0, 1];
    assert!(matches!(
        m.handle_message(from, &reply),
        Err(GossipError::Refused(_))
    ));
    m.ask_all(from);
    for bad in [
        vec![kind::SYNC_REPLY, 0, 0, 0, 1, 0, 1, 0, 1], // bucket 1 of 1
        vec![kind::SYNC_REPLY, 0, 0, 0, 0, 0, 1, 1, 1], // part 1 of 1
        vec![kind::SYNC_REPLY, 0, 0, 0, 0, 0, 1, 0, 9], // 9 parts
        vec![kind::SYNC_REPLY, 0, 1, 0, 0, 0, 1, 0, 1], // a member missing
        vec![kind::SYNC_REPLY, 0, 0, 0, 0, 0],          // short header
    ] {
        assert!(
            matches!(m.handle_message(from, &bad), Err(GossipError::Malformed(_))),
            "{bad:?}"
        );
    }
    // The one bucket arrives: the pull is complete.
    assert!(m.handle_message(from, &reply).is_ok());
    assert!(m.pull.is_none());
}
