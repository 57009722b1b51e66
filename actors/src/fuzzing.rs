//! Entry points for the fuzz targets in `fuzz/` (built with `--cfg fuzzing`)
//! and for the stable smoke test that feeds them random and mutated inputs.
//! Each hook runs decoders of this crate's wire and storage formats on
//! arbitrary bytes and must never panic.

use crate::head::state::{Command, ControlState};
use crate::head::store::Machine;
use crate::head::types::Entry;
use crate::head::wire::{
    DrainNode, PlaceActor, ReleaseGroup, Renew, ReserveGroup, Resolve, StopActor,
};
use crate::supervision::{Grant, HostSpawn, HostStop};

/// Decodes `data` as every control-plane message and stored value, and
/// applies what decodes as a command (or a log entry's command) to a
/// control state holding a few placements: nothing may panic.
pub fn control(data: &[u8]) {
    fn decode<T: serde::de::DeserializeOwned>(data: &[u8]) -> Option<T> {
        rmp_serde::from_slice(data).ok()
    }
    let _ = decode::<PlaceActor>(data);
    let _ = decode::<Resolve>(data);
    let _ = decode::<StopActor>(data);
    let _ = decode::<ReserveGroup>(data);
    let _ = decode::<ReleaseGroup>(data);
    let _ = decode::<DrainNode>(data);
    let _ = decode::<crate::head::wire::MigrateActor>(data);
    let _ = decode::<crate::supervision::HostHandOver>(data);
    let _ = decode::<Result<(swarm_protocol::NodeId, u64), crate::head::wire::ControlError>>(data);
    let _ = decode::<Result<crate::head::wire::DrainReport, crate::head::wire::ControlError>>(data);
    let _ = decode::<Renew>(data);
    let _ = decode::<HostSpawn>(data);
    let _ = decode::<HostStop>(data);
    let _ = decode::<crate::head::wire::passivation::Passivated>(data);
    let _ = decode::<Grant>(data);
    let _ = decode::<Machine>(data);
    crate::head::store::fuzz_snapshot(data);
    let _ = decode::<crate::head::wire::RevokeCert>(data);
    let _ = decode::<crate::head::wire::operators::FindHeads>(data);
    let _ = decode::<crate::head::wire::operators::VerifyLogin>(data);
    let _ = decode::<crate::head::wire::operators::VerifyPassword>(data);
    let _ = decode::<crate::head::wire::operators::AdminLogin>(data);
    let _ = decode::<crate::operators::delegate::Delegated>(data);
    let _ = decode::<crate::inspector::NodeSnapshot>(data);
    // A password hash as it arrives: its cost is bounded before any use
    // (checking one against a password is left out: it costs ~60 ms).
    if let Some(set) = decode::<crate::head::wire::operators::SetPassword>(data) {
        let _ = set.hash.check();
    }
    // A presented capability, checked as a link's reader does.
    let caller = crate::directory::Caller {
        node: swarm_protocol::NodeId::from_bytes([1; 16]),
        roles: std::sync::Arc::from(vec!["operator".to_owned()]),
        serial: 7,
        name: std::sync::Arc::from("op"),
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
        operator: true,
    };
    let key = Some(crate::operators::capability_key(&[9; 32], 0).public());
    let _ = crate::operators::sessions::check_present(key, &|_| false, &caller, data);
    let mut state = seeded();
    if let Some(command) = decode::<Command>(data) {
        let _ = state.apply(command);
    }
    if let Some(entry) = decode::<Entry>(data) {
        if let openraft::EntryPayload::Normal(command) = entry.payload {
            let _ = state.apply(command);
        }
    }
    // What survives must still encode and decode (a snapshot of it).
    if let Ok(bytes) = rmp_serde::to_vec(&state) {
        let _ = decode::<ControlState>(&bytes);
    }
}

/// Decodes `data` as every journal message and stored journal value of
/// durable actors (the wire's claims, appends and snapshots, their
/// answers, the log's journal commands, event and snapshot records), and
/// applies what decodes as a journal command to a state holding a claimed
/// journal: nothing may panic.
pub fn journal(data: &[u8]) {
    use crate::durable::codec::{self, Kind};
    use crate::head::journal::JournalCommand;
    use crate::head::wire::journal::{
        check_group, AppendJournal, AppendJournals, ClaimJournal, Recovery, SnapshotJournal,
    };
    fn decode<T: serde::de::DeserializeOwned>(data: &[u8]) -> Option<T> {
        rmp_serde::from_slice(data).ok()
    }
    let _ = decode::<ClaimJournal>(data);
    let _ = decode::<AppendJournal>(data);
    if let Some(group) = decode::<AppendJournals>(data) {
        let _ = check_group(&group.appends);
    }
    let _ = decode::<SnapshotJournal>(data);
    let _ = decode::<
        Result<Result<Recovery, crate::durable::StoreError>, crate::head::wire::ControlError>,
    >(data);
    let _ = decode::<
        Result<Result<u64, crate::durable::StoreError>, crate::head::wire::ControlError>,
    >(data);
    let _ = decode::<
        Result<Vec<Result<u64, crate::durable::StoreError>>, crate::head::wire::ControlError>,
    >(data);
    // Records, under a fixed tag and under the tag the record names.
    let tag = data
        .get(3..3 + usize::from(data.get(2).copied().unwrap_or(0)))
        .and_then(|t| std::str::from_utf8(t).ok())
        .unwrap_or("t");
    for tag in ["t", tag] {
        for kind in [Kind::Event, Kind::Snapshot] {
            let _ = codec::decode::<(u64, String)>(kind, tag, data);
            let _ = codec::decode::<Vec<u64>>(kind, tag, data);
            let _ = codec::decode::<std::collections::BTreeMap<String, Vec<u8>>>(kind, tag, data);
        }
    }
    let mut state = seeded();
    if let Some(command) = decode::<JournalCommand>(data) {
        let _ = state.journal_precheck(&command);
        let _ = state.apply(Command::Journal(command));
    }
    if let Ok(bytes) = rmp_serde::to_vec(&state) {
        let _ = decode::<ControlState>(&bytes);
    }
}

/// Decodes `data` as every message schedulers exchange and as a
/// zero-copy byte argument, and feeds decoded outcomes and tasks to an
/// owner's book holding a few tasks: nothing may panic.
pub fn tasks(data: &[u8]) {
    use std::sync::Arc;

    use crate::tasks::fetch::{Chunk, FetchObject};
    use crate::tasks::outcome::TasksDone;
    use crate::tasks::wire::{CancelTasks, FreeObjects, ListTasks, SubmitTasks};
    use crate::tasks::FromArg;
    fn decode<T: serde::de::DeserializeOwned>(data: &[u8]) -> Option<T> {
        rmp_serde::from_slice(data).ok()
    }
    let _ = crate::tasks::Bytes::from_arg(Arc::new(data.to_vec()));
    let _ = decode::<CancelTasks>(data);
    let _ = decode::<FreeObjects>(data);
    let _ = decode::<FetchObject>(data);
    let _ = decode::<ListTasks>(data);
    let _ = decode::<Result<Chunk, crate::tasks::TaskError>>(data);
    let (mut owner, worker) = crate::tasks::owner::seeded();
    let mut fx = crate::tasks::owner::Effects::default();
    if let Some(done) = decode::<TasksDone>(data) {
        owner.outcomes(worker, done.outcomes, &mut fx);
    }
    if let Some(submit) = decode::<SubmitTasks>(data) {
        for spec in submit.tasks {
            for arg in spec.args {
                if let crate::tasks::Arg::Value(bytes) = arg {
                    let _ = crate::tasks::Bytes::from_arg(Arc::new(bytes.into_vec()));
                }
            }
        }
    }
    owner.node_gone(worker, &mut fx);
}

/// A state with a group and two placements, so commands have something
/// to act on.
fn seeded() -> ControlState {
    use crate::placement::{GroupStrategy, Placement, ResourceSet};
    let node = |n: u8| swarm_protocol::NodeId::from_bytes([n; 16]);
    let spec = |bundle: Option<(String, usize)>| crate::head::wire::ActorSpec {
        type_name: "t".to_owned(),
        args: Vec::new(),
        resources: ResourceSet::cpus(1.0),
        placement: Placement::Pack,
        restart: crate::supervision::Restart::never(),
        bundle,
        replace_on_escalation: true,
        idle_after_ms: None,
    };
    let mut state = ControlState::default();
    let _ = state.apply(Command::ReserveGroup {
        name: "g".to_owned(),
        strategy: GroupStrategy::Pack,
        bundles: vec![ResourceSet::cpus(1.0)],
        nodes: vec![node(1)],
    });
    for (name, bundle) in [("a", None), ("b", Some(("g".to_owned(), 0)))] {
        let _ = state.apply(Command::Place {
            name: name.to_owned(),
            spec: spec(bundle),
            node: node(1),
            expect: None,
        });
    }
    let _ = state.apply(Command::Journal(
        crate::head::journal::JournalCommand::Claim {
            name: "a".to_owned(),
            epoch: 1,
            node: node(1),
        },
    ));
    state
}

/// Valid encodings to start mutating from.
#[cfg(test)]
fn seeds() -> Vec<Vec<u8>> {
    let node = swarm_protocol::NodeId::from_bytes([1; 16]);
    let command = Command::Batch(vec![
        Command::Passivate {
            name: "b".to_owned(),
            epoch: 2,
            node,
        },
        Command::Drain { node, on: true },
        Command::Remove {
            name: "a".to_owned(),
            epoch: Some(1),
        },
        Command::Fail {
            name: "b".to_owned(),
            epoch: 2,
            reason: "x".to_owned(),
        },
        Command::RemoveGroup {
            name: "g".to_owned(),
        },
    ]);
    let outcomes = crate::tasks::outcome::TasksDone {
        from: node,
        outcomes: vec![crate::tasks::outcome::Outcome {
            seq: 0,
            attempt: 0,
            result: Ok(crate::tasks::outcome::Done::Kept { size: 3 }),
            micros: 5,
        }],
    };
    vec![
        rmp_serde::to_vec(&outcomes).unwrap_or_default(),
        rmp_serde::to_vec(&command).unwrap_or_default(),
        rmp_serde::to_vec(&seeded()).unwrap_or_default(),
        rmp_serde::to_vec(&crate::head::journal::JournalCommand::Append {
            writer: crate::durable::Writer {
                name: "a".to_owned(),
                epoch: 1,
                claim: 1,
            },
            node,
            first_seq: 1,
            events: vec![serde_bytes::ByteBuf::from(
                crate::durable::codec::encode(
                    crate::durable::codec::Kind::Event,
                    "t",
                    &(1u64, "x"),
                )
                .unwrap_or_default(),
            )],
        })
        .unwrap_or_default(),
        crate::durable::codec::encode(
            crate::durable::codec::Kind::Snapshot,
            "t",
            &vec![1u64, 2, 3],
        )
        .unwrap_or_default(),
        rmp_serde::to_vec(&Renew {
            node,
            report: crate::supervision::Report {
                session: 3,
                seq: 2,
                base: Some(1),
                running: Vec::new(),
                gone: vec!["a".to_owned()],
                types: vec!["t".to_owned()],
            },
            seen_index: 7,
            revoked_known: 0,
            roles: vec!["worker".to_owned()],
        })
        .unwrap_or_default(),
    ]
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        #[test]
        fn random_inputs_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            control(&data);
            tasks(&data);
            journal(&data);
        }

        #[test]
        fn mutated_valid_inputs_never_panic(
            seed in 0usize..6,
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
        ) {
            let mut data = seeds()[seed].clone();
            for (at, byte) in flips {
                if !data.is_empty() {
                    let i = at % data.len();
                    data[i] = byte;
                }
            }
            data.truncate(cut % (data.len() + 1));
            control(&data);
            tasks(&data);
            journal(&data);
        }
    }
}
