use super::*;
use crate::placement::Placement;
use crate::supervision::Restart;

fn node(n: u8) -> NodeId {
    NodeId::from_bytes([n; 16])
}

fn spec(cpus: f64) -> ActorSpec {
    ActorSpec {
        type_name: "t".to_owned(),
        args: Vec::new(),
        resources: ResourceSet::cpus(cpus),
        placement: Placement::Pack,
        restart: Restart::never(),
        bundle: None,
        replace_on_escalation: true,
        idle_after_ms: None,
    }
}

fn place(state: &mut ControlState, name: &str, cpus: f64, at: u8, expect: Option<u64>) -> Applied {
    state.apply(Command::Place {
        name: name.to_owned(),
        spec: spec(cpus),
        node: node(at),
        expect,
    })
}

#[test]
fn creating_reserves_and_hands_out_growing_epochs() {
    let mut s = ControlState::default();
    assert_eq!(
        place(&mut s, "a", 1.0, 1, None),
        Applied::Placed { epoch: 1 }
    );
    assert_eq!(
        place(&mut s, "b", 2.0, 1, None),
        Applied::Placed { epoch: 2 }
    );
    assert_eq!(s.reserved_on(node(1)).cpus, 3.0);
    assert_eq!(s.placed_count(node(1)), 2);
    assert_eq!(s.actor("a").map(|r| r.epoch), Some(1));
}

#[test]
fn a_taken_name_is_answered_with_its_record() {
    let mut s = ControlState::default();
    place(&mut s, "a", 1.0, 1, None);
    match place(&mut s, "a", 5.0, 2, None) {
        Applied::Exists(record) => {
            assert_eq!(record.node, node(1));
            assert_eq!(record.epoch, 1);
        }
        other => panic!("expected Exists, got {other:?}"),
    }
    // Nothing changed.
    assert_eq!(s.reserved_on(node(2)), ResourceSet::default());
    assert_eq!(s.epoch(), 1);
}

#[test]
fn moving_needs_the_current_epoch_and_moves_the_reservation() {
    let mut s = ControlState::default();
    place(&mut s, "a", 1.0, 1, None);
    assert_eq!(place(&mut s, "a", 1.0, 2, Some(7)), Applied::Stale);
    assert_eq!(
        place(&mut s, "a", 1.0, 2, Some(1)),
        Applied::Placed { epoch: 2 }
    );
    // A second decision based on the old epoch loses: exactly one move.
    assert_eq!(place(&mut s, "a", 1.0, 3, Some(1)), Applied::Stale);
    assert_eq!(s.reserved_on(node(1)), ResourceSet::default());
    assert_eq!(s.reserved_on(node(2)).cpus, 1.0);
    assert_eq!(s.placed_count(node(1)), 0);
    let record = s.actor("a").cloned().unwrap_or_else(|| panic!("record"));
    assert_eq!(
        (record.node, record.epoch, record.placements),
        (node(2), 2, 2)
    );
    assert_eq!(place(&mut s, "zz", 1.0, 2, Some(1)), Applied::Unknown);
}

#[test]
fn failing_and_removing_release_what_was_reserved() {
    let mut s = ControlState::default();
    place(&mut s, "a", 1.0, 1, None);
    place(&mut s, "b", 1.0, 1, None);
    let fail = |epoch| Command::Fail {
        name: "a".to_owned(),
        epoch,
        reason: "escalated".to_owned(),
    };
    assert_eq!(s.apply(fail(9)), Applied::Stale);
    assert_eq!(s.apply(fail(1)), Applied::Done);
    assert_eq!(s.reserved_on(node(1)).cpus, 1.0);
    assert_eq!(s.placed_on(node(1)).count(), 1);
    // Failing twice releases once.
    assert_eq!(s.apply(fail(1)), Applied::Done);
    assert_eq!(s.reserved_on(node(1)).cpus, 1.0);
    let remove = |name: &str, epoch| Command::Remove {
        name: name.to_owned(),
        epoch,
    };
    assert_eq!(s.apply(remove("b", Some(1))), Applied::Stale);
    assert_eq!(s.apply(remove("b", None)), Applied::Done);
    assert_eq!(s.apply(remove("a", None)), Applied::Done);
    assert_eq!(s.apply(remove("a", None)), Applied::Unknown);
    assert_eq!(s.reserved_on(node(1)), ResourceSet::default());
    assert_eq!(s.placed_count(node(1)), 0);
}

#[test]
fn groups_reserve_every_bundle_and_actors_in_them_reserve_nothing_more() {
    let mut s = ControlState::default();
    let reserve = Command::ReserveGroup {
        name: "g".to_owned(),
        strategy: GroupStrategy::StrictSpread,
        bundles: vec![ResourceSet::cpus(2.0), ResourceSet::cpus(1.0)],
        nodes: vec![node(1), node(2)],
    };
    assert_eq!(s.apply(reserve.clone()), Applied::Done);
    assert!(matches!(s.apply(reserve), Applied::Refused { .. }));
    assert_eq!(s.reserved_on(node(1)).cpus, 2.0);
    assert_eq!(s.reserved_on(node(2)).cpus, 1.0);

    let mut in_group = spec(2.0);
    in_group.bundle = Some(("g".to_owned(), 0));
    let on = |n: u8, spec: &ActorSpec| Command::Place {
        name: "w".to_owned(),
        spec: spec.clone(),
        node: node(n),
        expect: None,
    };
    assert!(matches!(s.apply(on(2, &in_group)), Applied::Refused { .. }));
    assert_eq!(s.apply(on(1, &in_group)), Applied::Placed { epoch: 1 });
    assert_eq!(s.reserved_on(node(1)).cpus, 2.0);
    let mut missing = in_group.clone();
    missing.bundle = Some(("g".to_owned(), 5));
    let other = Command::Place {
        name: "x".to_owned(),
        spec: missing,
        node: node(1),
        expect: None,
    };
    assert!(matches!(s.apply(other), Applied::Refused { .. }));

    let remove_group = || Command::RemoveGroup {
        name: "g".to_owned(),
    };
    assert!(matches!(s.apply(remove_group()), Applied::Refused { .. }));
    s.apply(Command::Remove {
        name: "w".to_owned(),
        epoch: None,
    });
    assert_eq!(s.apply(remove_group()), Applied::Done);
    assert_eq!(s.reserved_on(node(1)), ResourceSet::default());
    assert_eq!(s.reserved_on(node(2)), ResourceSet::default());
    assert_eq!(s.apply(remove_group()), Applied::Unknown);
}

#[test]
fn draining_nodes_take_no_placements_in_the_view() {
    let mut s = ControlState::default();
    place(&mut s, "a", 1.0, 1, None);
    s.apply(Command::Drain {
        node: node(1),
        on: true,
    });
    let views = s.views([
        (node(1), ResourceSet::cpus(4.0), Vec::new(), true),
        (node(2), ResourceSet::cpus(4.0), Vec::new(), true),
        (node(3), ResourceSet::cpus(4.0), Vec::new(), false),
    ]);
    assert!(!views[0].schedulable);
    assert_eq!(views[0].reserved.cpus, 1.0);
    assert_eq!(views[0].placed, 1);
    assert!(views[1].schedulable);
    assert!(!views[2].schedulable);
    let chosen = crate::placement::place(&ResourceSet::cpus(1.0), &Placement::Pack, &views);
    assert_eq!(chosen, Ok(node(2)));
    s.apply(Command::Drain {
        node: node(1),
        on: false,
    });
    assert!(!s.is_draining(node(1)));
}

#[test]
fn the_state_survives_a_round_trip_through_messagepack() {
    let mut s = ControlState::default();
    place(&mut s, "a", 1.5, 1, None);
    s.apply(Command::Drain {
        node: node(2),
        on: true,
    });
    let bytes = rmp_serde::to_vec(&s).unwrap_or_default();
    let back: ControlState = rmp_serde::from_slice(&bytes).unwrap_or_default();
    assert_eq!(back, s);
}

#[test]
fn lockouts_hold_until_their_end_and_ended_ones_are_forgotten() {
    use crate::operators::guard::Lock;
    let mut state = ControlState::default();
    let name = Lock::Name("alice".into());
    let cert = Lock::Certificate(9);
    let lockout = |lock: &Lock, until_ms, now_ms| Command::Lockout {
        lock: lock.clone(),
        until_ms,
        now_ms,
    };
    assert_eq!(state.apply(lockout(&name, 5_000, 1_000)), Applied::Done);
    assert_eq!(state.locked_until(&name, 1_000), Some(5_000));
    assert_eq!(state.locked_until(&name, 5_000), None);
    assert_eq!(state.locked_until(&cert, 1_000), None);
    // A shorter one does not cut a longer one short.
    state.apply(lockout(&name, 3_000, 2_000));
    assert_eq!(state.locked_until(&name, 4_000), Some(5_000));
    // Applying any lockout forgets those over.
    state.apply(lockout(&cert, 9_000, 6_000));
    assert_eq!(state.lockouts.len(), 1);
}

/// The placed actors of `node` by scanning every record (what the index
/// must agree with).
fn placed_by_scan(s: &ControlState, at: NodeId) -> Vec<(String, u64)> {
    s.actors()
        .filter(|(_, r)| r.node == at && r.state == RecordState::Placed)
        .map(|(n, r)| (n.clone(), r.epoch))
        .collect()
}

fn placed_by_index(s: &ControlState, at: NodeId) -> Vec<(String, u64)> {
    s.placed_on(at).map(|(n, r)| (n.clone(), r.epoch)).collect()
}

fn index_agrees(s: &ControlState) {
    for at in 1..=4 {
        assert_eq!(placed_by_index(s, node(at)), placed_by_scan(s, node(at)));
        assert_eq!(s.placed_count(node(at)), placed_by_scan(s, node(at)).len());
    }
}

#[test]
fn the_per_node_index_agrees_with_a_scan_through_places_moves_fails_and_removes() {
    let mut s = ControlState::default();
    for (i, name) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
        place(&mut s, name, 0.0, (i % 3) as u8 + 1, None);
    }
    index_agrees(&s);
    // Moved: off its old node, onto the new one.
    let epoch = s.actor("a").map(|r| r.epoch);
    place(&mut s, "a", 0.0, 2, epoch);
    // A refused move (stale epoch) changes nothing.
    place(&mut s, "b", 0.0, 3, Some(999));
    index_agrees(&s);
    // Failed: no longer placed anywhere; moved again after failing.
    let epoch = s.actor("c").map_or(0, |r| r.epoch);
    s.apply(Command::Fail {
        name: "c".to_owned(),
        epoch,
        reason: "escalated".to_owned(),
    });
    index_agrees(&s);
    place(&mut s, "c", 0.0, 4, Some(epoch));
    // Removed: gone from its node, in a batch with a place.
    s.apply(Command::Batch(vec![
        Command::Remove {
            name: "d".to_owned(),
            epoch: None,
        },
        Command::Place {
            name: "g".to_owned(),
            spec: spec(0.0),
            node: node(1),
            expect: None,
        },
    ]));
    index_agrees(&s);
    assert_eq!(
        placed_by_index(&s, node(2)).len() + placed_by_index(&s, node(1)).len(),
        4
    );
    // Rebuilt from the records when the state is read back.
    let bytes = rmp_serde::to_vec(&s).unwrap_or_default();
    let back: ControlState = rmp_serde::from_slice(&bytes).unwrap_or_default();
    index_agrees(&back);
    assert_eq!(back, s);
    assert_eq!(placed_by_index(&back, node(4)), [("c".to_owned(), 8)]);
}

#[test]
fn pages_of_named_actors_go_on_after_the_name_asked_and_say_whether_more_follow() {
    let mut s = ControlState::default();
    for name in ["e", "a", "d", "b", "c"] {
        place(&mut s, name, 0.0, 1, None);
    }
    let names = |(page, more): (Vec<(&String, &ActorRecord)>, bool)| {
        let names: Vec<String> = page.into_iter().map(|(n, _)| n.clone()).collect();
        (names, more)
    };
    let strings = |v: &[&str]| v.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    assert_eq!(names(s.actors_page(None, 2)), (strings(&["a", "b"]), true));
    assert_eq!(
        names(s.actors_page(Some("b"), 2)),
        (strings(&["c", "d"]), true)
    );
    assert_eq!(names(s.actors_page(Some("d"), 2)), (strings(&["e"]), false));
    // A name between records, past the end, and a limit of 0 (read as 1).
    assert_eq!(names(s.actors_page(Some("bb"), 1)), (strings(&["c"]), true));
    assert_eq!(names(s.actors_page(Some("z"), 2)), (Vec::new(), false));
    assert_eq!(names(s.actors_page(None, 0)), (strings(&["a"]), true));
    assert_eq!(names(s.actors_page(None, usize::MAX)).0.len(), 5);
}

fn passivate(s: &mut ControlState, name: &str, epoch: u64, at: u8) -> Applied {
    s.apply(Command::Passivate {
        name: name.to_owned(),
        epoch,
        node: node(at),
    })
}

#[test]
fn a_passivation_from_the_node_and_epoch_placed_makes_it_passive_and_frees_its_node() {
    let mut s = ControlState::default();
    place(&mut s, "a", 1.0, 1, None);
    place(&mut s, "b", 1.0, 1, None);
    // A forged report (another node), a replayed one (an older epoch), an
    // unknown name: refused, nothing changed.
    assert_eq!(passivate(&mut s, "a", 1, 2), Applied::NotOwner);
    assert_eq!(passivate(&mut s, "a", 0, 1), Applied::Stale);
    assert_eq!(passivate(&mut s, "z", 1, 1), Applied::Unknown);
    assert_eq!(s.actor("a").map(|r| &r.state), Some(&RecordState::Placed));
    assert_eq!(passivate(&mut s, "a", 1, 1), Applied::Done);
    let record = s.actor("a").cloned().unwrap_or_else(|| panic!("record"));
    // Kept: spec, last node and epoch; but no capacity and no node's.
    assert_eq!(
        (record.state, record.node, record.epoch),
        (RecordState::Passive, node(1), 1)
    );
    assert_eq!(s.reserved_on(node(1)).cpus, 1.0);
    assert_eq!(s.placed_count(node(1)), 1);
    assert_eq!(placed_by_index(&s, node(1)), [("b".to_owned(), 2)]);
    index_agrees(&s);
    // Reported again (a retry after a lost answer): passive, not placed.
    assert_eq!(passivate(&mut s, "a", 1, 1), Applied::NotOwner);
    // Its old incarnation may not write its journal any more.
    let claim = crate::head::journal::JournalCommand::Claim {
        name: "a".to_owned(),
        epoch: 1,
        node: node(1),
    };
    assert!(s.journal_precheck(&claim).is_some());
    // Activated: a move from the passive epoch, once.
    assert_eq!(
        place(&mut s, "a", 1.0, 3, Some(1)),
        Applied::Placed { epoch: 3 }
    );
    assert_eq!(place(&mut s, "a", 1.0, 2, Some(1)), Applied::Stale);
    let record = s.actor("a").cloned().unwrap_or_else(|| panic!("record"));
    assert_eq!(
        (record.state, record.node, record.placements),
        (RecordState::Placed, node(3), 2)
    );
    assert_eq!(s.reserved_on(node(3)).cpus, 1.0);
    index_agrees(&s);
    // The old epoch's report, replayed after the activation: refused.
    assert_eq!(passivate(&mut s, "a", 1, 1), Applied::Stale);
    // Survives a round trip (a snapshot of the state).
    passivate(&mut s, "b", 2, 1);
    let bytes = rmp_serde::to_vec(&s).unwrap_or_default();
    let back: ControlState = rmp_serde::from_slice(&bytes).unwrap_or_default();
    assert_eq!(back, s);
    index_agrees(&back);
}

#[test]
fn specs_and_placements_written_before_passivation_existed_decode_without_it() {
    // The spec and the host's spawn request as they were encoded before
    // `idle_after_ms` (MessagePack arrays, one field fewer).
    #[derive(Serialize)]
    struct OldSpec {
        type_name: String,
        args: Vec<u8>,
        resources: ResourceSet,
        placement: Placement,
        restart: Restart,
        bundle: Option<(String, usize)>,
        replace_on_escalation: bool,
    }
    let old = OldSpec {
        type_name: "t".to_owned(),
        args: vec![1, 2],
        resources: ResourceSet::cpus(1.0),
        placement: Placement::Pack,
        restart: Restart::never(),
        bundle: None,
        replace_on_escalation: false,
    };
    let bytes = rmp_serde::to_vec(&old).unwrap_or_default();
    let spec: ActorSpec = rmp_serde::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (spec.idle_after_ms, spec.args, spec.replace_on_escalation),
        (None, vec![1, 2], false)
    );
    #[derive(Serialize)]
    struct OldPlace {
        name: String,
        spec: OldSpec,
        node: NodeId,
        expect: Option<u64>,
    }
    #[derive(Serialize)]
    enum OldCommand {
        Place(OldPlace),
    }
    let bytes = rmp_serde::to_vec(&OldCommand::Place(OldPlace {
        name: "a".to_owned(),
        spec: old,
        node: node(1),
        expect: None,
    }))
    .unwrap_or_default();
    let command: Command = rmp_serde::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
    let mut s = ControlState::default();
    assert_eq!(s.apply(command), Applied::Placed { epoch: 1 });
    #[derive(Serialize)]
    struct OldSpawn {
        type_name: String,
        name: String,
        args: Vec<u8>,
        epoch: u64,
        restart: Restart,
        fence: Option<u64>,
    }
    let bytes = rmp_serde::to_vec(&OldSpawn {
        type_name: "t".to_owned(),
        name: "a".to_owned(),
        args: Vec::new(),
        epoch: 4,
        restart: Restart::never(),
        fence: Some(9),
    })
    .unwrap_or_default();
    let spawn: crate::supervision::HostSpawn =
        rmp_serde::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((spawn.fence, spawn.idle_after_ms), (Some(9), None));
}
