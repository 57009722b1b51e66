use super::*;
use crate::head::state::{Applied, Command, ControlState};
use crate::head::wire::journal::{MAX_APPEND_BYTES, MAX_EVENT_BYTES, MAX_SNAPSHOT_BYTES};
use crate::head::wire::ActorSpec;

fn node(n: u8) -> NodeId {
    NodeId::from_bytes([n; 16])
}

/// Places (or moves) `name` on `at`; answers its epoch.
fn place(s: &mut ControlState, name: &str, at: u8, expect: Option<u64>) -> u64 {
    match s.apply(Command::Place {
        name: name.to_owned(),
        spec: ActorSpec::for_tests("t"),
        node: node(at),
        expect,
    }) {
        Applied::Placed { epoch } => epoch,
        other => panic!("not placed: {other:?}"),
    }
}

fn journal(s: &mut ControlState, command: JournalCommand) -> Result<JournalDone, StoreError> {
    match s.apply(Command::Journal(command)) {
        Applied::Journal(done) => done,
        other => panic!("not a journal answer: {other:?}"),
    }
}

fn claim(s: &mut ControlState, name: &str, epoch: u64, at: u8) -> Result<Recovery, StoreError> {
    let command = JournalCommand::Claim {
        name: name.to_owned(),
        epoch,
        node: node(at),
    };
    let refused = s.journal_precheck(&command);
    let done = journal(s, command);
    // The leader's check before the write agrees with the apply.
    assert_eq!(refused.is_some(), done.is_err(), "{refused:?} vs {done:?}");
    done.map(|d| match d {
        JournalDone::Claimed(r) => *r,
        other => panic!("{other:?}"),
    })
}

fn append(
    s: &mut ControlState,
    writer: &Writer,
    at: u8,
    first_seq: u64,
    events: &[&[u8]],
) -> Result<u64, StoreError> {
    let command = JournalCommand::Append {
        writer: writer.clone(),
        node: node(at),
        first_seq,
        events: events
            .iter()
            .map(|e| serde_bytes::ByteBuf::from(e.to_vec()))
            .collect(),
    };
    let refused = s.journal_precheck(&command);
    let done = journal(s, command);
    // What the leader refuses before the write (out of step, past the
    // bound, fenced, forged), the apply refuses the same way.
    if let Some(refused) = refused {
        assert_eq!(done, Err(refused));
    }
    done.map(|d| match d {
        JournalDone::Appended { next } => next,
        other => panic!("{other:?}"),
    })
}

fn snapshot(
    s: &mut ControlState,
    writer: &Writer,
    at: u8,
    seq: u64,
    bytes: &[u8],
) -> Result<(), StoreError> {
    journal(
        s,
        JournalCommand::Snapshot {
            writer: writer.clone(),
            node: node(at),
            seq,
            bytes: bytes.to_vec(),
        },
    )
    .map(|_| ())
}

#[test]
fn appends_go_on_at_the_next_sequence_number_and_replays_and_gaps_are_refused() {
    let mut s = ControlState::default();
    let epoch = place(&mut s, "a", 1, None);
    let r = claim(&mut s, "a", epoch, 1).unwrap();
    assert_eq!((r.snapshot.clone(), r.events.len(), r.next), (None, 0, 1));
    let w = r.writer;
    assert_eq!(append(&mut s, &w, 1, 1, &[b"e1", b"e2"]), Ok(3));
    // The same write again (replayed, or sent twice): refused, nothing doubled.
    assert_eq!(
        append(&mut s, &w, 1, 1, &[b"e1", b"e2"]),
        Err(StoreError::Conflict {
            expected: 3,
            got: 1
        })
    );
    // A gap.
    assert_eq!(
        append(&mut s, &w, 1, 5, &[b"e5"]),
        Err(StoreError::Conflict {
            expected: 3,
            got: 5
        })
    );
    assert_eq!(append(&mut s, &w, 1, 3, &[b"e3"]), Ok(4));
    let again = claim(&mut s, "a", epoch, 1).unwrap();
    let events: Vec<&[u8]> = again.events.iter().map(|e| e.bytes.as_slice()).collect();
    assert_eq!(events, [b"e1".as_slice(), b"e2", b"e3"]);
    assert_eq!(
        again.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(again.next, 4);
}

#[test]
fn a_write_from_another_node_than_the_placement_is_refused() {
    let mut s = ControlState::default();
    let epoch = place(&mut s, "a", 1, None);
    // Node 2 claims a name placed on node 1: refused.
    assert!(matches!(
        claim(&mut s, "a", epoch, 2),
        Err(StoreError::Refused { .. })
    ));
    let w = claim(&mut s, "a", epoch, 1).unwrap().writer;
    // Node 2 forges node 1's writer: refused, and nothing was written.
    assert!(matches!(
        append(&mut s, &w, 2, 1, &[b"forged"]),
        Err(StoreError::Refused { .. })
    ));
    assert!(matches!(
        snapshot(&mut s, &w, 2, 0, b"forged"),
        Err(StoreError::Refused { .. })
    ));
    // A claim for an epoch never placed, or a name that does not exist.
    assert!(matches!(
        claim(&mut s, "a", epoch + 1, 1),
        Err(StoreError::Refused { .. })
    ));
    assert!(matches!(
        claim(&mut s, "nobody", 1, 1),
        Err(StoreError::Refused { .. })
    ));
    let r = claim(&mut s, "a", epoch, 1).unwrap();
    assert!(r.events.is_empty());
}

#[test]
fn a_stale_incarnation_is_fenced_once_the_name_moved_and_after_a_new_claim() {
    let mut s = ControlState::default();
    let old = place(&mut s, "a", 1, None);
    let w_old = claim(&mut s, "a", old, 1).unwrap().writer;
    assert_eq!(append(&mut s, &w_old, 1, 1, &[b"kept"]), Ok(2));
    // Moved to node 2 (a crash, a lease that ran out).
    let new = place(&mut s, "a", 2, Some(old));
    assert!(new > old);
    // The old incarnation, still running somewhere, cannot write...
    assert_eq!(
        append(&mut s, &w_old, 1, 2, &[b"lost"]),
        Err(StoreError::Fenced { newest: new })
    );
    // ...nor claim again.
    assert_eq!(
        claim(&mut s, "a", old, 1),
        Err(StoreError::Fenced { newest: new })
    );
    let r = claim(&mut s, "a", new, 2).unwrap();
    assert_eq!(r.events.len(), 1);
    assert_eq!(r.events[0].bytes, b"kept");
    // A restart after a panic claims again under the same epoch: the
    // writes of the claim before are refused from then on.
    let r2 = claim(&mut s, "a", new, 2).unwrap();
    assert!(r2.writer.claim > r.writer.claim);
    assert_eq!(
        append(&mut s, &r.writer, 2, 2, &[b"late"]),
        Err(StoreError::Fenced { newest: new })
    );
    assert_eq!(append(&mut s, &r2.writer, 2, 2, &[b"next"]), Ok(3));
}

#[test]
fn a_snapshot_drops_the_events_it_covers() {
    let mut s = ControlState::default();
    let epoch = place(&mut s, "a", 1, None);
    let w = claim(&mut s, "a", epoch, 1).unwrap().writer;
    for seq in 1..=10u64 {
        let event = seq.to_be_bytes();
        assert_eq!(append(&mut s, &w, 1, seq, &[&event]), Ok(seq + 1));
    }
    assert_eq!(s.journals().held("a"), Some((None, 10, 80)));
    snapshot(&mut s, &w, 1, 6, b"state@6").unwrap();
    assert_eq!(s.journals().held("a"), Some((Some(6), 4, 32)));
    // Not past the last event, and never back before the last snapshot.
    assert!(matches!(
        snapshot(&mut s, &w, 1, 11, b"x"),
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        snapshot(&mut s, &w, 1, 5, b"x"),
        Err(StoreError::Conflict { .. })
    ));
    let r = claim(&mut s, "a", epoch, 1).unwrap();
    let snap = r.snapshot.unwrap();
    assert_eq!(
        (snap.seq, snap.bytes.as_slice()),
        (6, b"state@6".as_slice())
    );
    assert_eq!(
        r.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [7, 8, 9, 10]
    );
    assert_eq!(r.next, 11);
    // A whole-state save at the same position replaces it.
    snapshot(&mut s, &r.writer, 1, 10, b"state@10").unwrap();
    assert_eq!(s.journals().held("a"), Some((Some(10), 0, 0)));
}

#[test]
fn records_appends_and_journals_are_bounded() {
    let mut s = ControlState::default();
    let epoch = place(&mut s, "a", 1, None);
    let w = claim(&mut s, "a", epoch, 1).unwrap().writer;
    let big = vec![0u8; MAX_EVENT_BYTES + 1];
    assert!(matches!(
        append(&mut s, &w, 1, 1, &[&big]),
        Err(StoreError::TooLarge { .. })
    ));
    let event = vec![0u8; MAX_EVENT_BYTES];
    let many: Vec<&[u8]> = (0..MAX_APPEND_BYTES / MAX_EVENT_BYTES + 1)
        .map(|_| event.as_slice())
        .collect();
    assert!(matches!(
        append(&mut s, &w, 1, 1, &many),
        Err(StoreError::TooLarge { .. })
    ));
    let snap = vec![0u8; MAX_SNAPSHOT_BYTES + 1];
    assert!(matches!(
        snapshot(&mut s, &w, 1, 0, &snap),
        Err(StoreError::TooLarge { .. })
    ));
    // Without snapshots, the journal fills up to its bound, then refuses.
    let four: Vec<&[u8]> = (0..4).map(|_| event.as_slice()).collect();
    let mut next = 1;
    loop {
        match append(&mut s, &w, 1, next, &four) {
            Ok(n) => next = n,
            Err(StoreError::TooLarge { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let (_, _, bytes) = s.journals().held("a").unwrap();
    assert!(bytes <= MAX_JOURNAL_BYTES);
    // A snapshot makes room again.
    snapshot(&mut s, &w, 1, next - 1, b"state").unwrap();
    assert!(append(&mut s, &w, 1, next, &four).is_ok());
}

#[test]
fn stopping_a_name_forgets_its_journal_and_the_state_keeps_journals_through_messagepack() {
    let mut s = ControlState::default();
    let epoch = place(&mut s, "a", 1, None);
    let w = claim(&mut s, "a", epoch, 1).unwrap().writer;
    append(&mut s, &w, 1, 1, &[b"e1"]).unwrap();
    let b = place(&mut s, "b", 1, None);
    claim(&mut s, "b", b, 1).unwrap();
    let bytes = rmp_serde::to_vec(&s).unwrap();
    let back: ControlState = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(back, s);
    assert_eq!(back.journals().held("a"), Some((None, 1, 2)));
    s.apply(Command::Remove {
        name: "a".to_owned(),
        epoch: None,
    });
    assert_eq!(s.journals().held("a"), None);
    assert_eq!(s.journals().len(), 1);
}

#[test]
fn a_group_of_appends_over_its_bounds_is_refused_and_decodes_within_its_bytes() {
    use crate::head::wire::journal::{
        check_group, Append, AppendJournals, MAX_GROUP_APPENDS, MAX_GROUP_BYTES,
    };
    use crate::head::wire::ControlError;
    let append = |bytes: usize| Append {
        writer: Writer {
            name: "a".to_owned(),
            epoch: 1,
            claim: 1,
        },
        first_seq: 1,
        events: vec![serde_bytes::ByteBuf::from(vec![0u8; bytes])],
    };
    assert_eq!(check_group(&vec![append(1); MAX_GROUP_APPENDS]), Ok(()));
    let refused = check_group(&vec![append(1); MAX_GROUP_APPENDS + 1]);
    assert!(
        matches!(&refused, Err(ControlError::Refused { reason }) if reason.contains("257")),
        "{refused:?}"
    );
    let per = MAX_GROUP_BYTES / 4;
    assert_eq!(check_group(&vec![append(per); 4]), Ok(()));
    let mut over = vec![append(per); 4];
    over.push(append(1));
    assert!(matches!(
        check_group(&over),
        Err(ControlError::Refused { .. })
    ));
    // A group that claims 2^32 - 1 appends in a few bytes is an error, not
    // an allocation of that many: what decodes is bounded by what came.
    let mut forged = rmp_serde::to_vec(&AppendJournals {
        node: node(1),
        appends: Vec::new(),
    })
    .unwrap();
    let empty = forged.pop();
    assert_eq!(empty, Some(0x90), "an empty array ends the encoding");
    forged.extend_from_slice(&[0xdd, 0xff, 0xff, 0xff, 0xff]);
    assert!(rmp_serde::from_slice::<AppendJournals>(&forged).is_err());
}
