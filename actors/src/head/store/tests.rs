use std::path::PathBuf;

use openraft::testing::{StoreBuilder, Suite};
use openraft::{BasicNode, CommittedLeaderId, EntryPayload, Membership as RaftMembership};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::RaftLogReader;
use redb::ReadableTable as _;

use super::*;
use crate::head::state::Command;
use crate::head::types::{HeadId, Vote};

/// A scratch directory, removed when dropped.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new(what: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "swarm-head-{what}-{}-{n}-{}",
            std::process::id(),
            snapshot_stamp()
        ));
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Builder;

impl StoreBuilder<RaftConfig, LogStore, StateMachine, Scratch> for Builder {
    async fn build(&self) -> Result<(Scratch, LogStore, StateMachine), StorageError> {
        let dir = Scratch::new("suite");
        let (log, sm) = open(&dir.0, Arc::new(Plain))?;
        Ok((dir, log, sm))
    }
}

/// openraft's own conformance suite for log stores and state machines.
#[test]
fn the_store_passes_openrafts_storage_suite() -> Result<(), StorageError> {
    Suite::test_all(Builder)
}

fn entry(index: u64, payload: EntryPayload<RaftConfig>) -> Entry {
    Entry {
        log_id: openraft::LogId::new(CommittedLeaderId::new(1, HeadId::from(1)), index),
        payload,
    }
}

fn place(name: &str) -> EntryPayload<RaftConfig> {
    EntryPayload::Normal(Command::Drain {
        node: swarm_protocol::NodeId::from_bytes([name.len() as u8; 16]),
        on: true,
    })
}

/// Reopening a store gives back the log, the vote, the commit index, and
/// the state from the last snapshot.
#[tokio::test]
async fn a_reopened_store_has_what_was_written() -> Result<(), StorageError> {
    let dir = Scratch::new("reopen");
    let membership = RaftMembership::new(
        vec![[HeadId::from(1)].into_iter().collect()],
        [(HeadId::from(1), BasicNode::new("a"))]
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
    );
    {
        let (mut log, mut sm) = open(&dir.0, Arc::new(Plain))?;
        let entries = [
            entry(1, EntryPayload::Membership(membership)),
            entry(2, place("a")),
            entry(3, place("bb")),
        ];
        log.blocking_append(entries[..2].to_vec()).await?;
        log.save_vote(&Vote::new(3, HeadId::from(1))).await?;
        // The commit index is written with the next log write.
        log.save_committed(Some(entries[1].log_id)).await?;
        assert_eq!(log.read_committed().await?.map(|l| l.index), Some(2));
        log.blocking_append(entries[2..].to_vec()).await?;
        sm.apply(entries[..2].to_vec()).await?;
        let mut builder = sm.get_snapshot_builder().await;
        builder.build_snapshot().await?;
        sm.apply(entries[2..].to_vec()).await?;
    }
    let (mut log, mut sm) = open(&dir.0, Arc::new(Plain))?;
    assert_eq!(log.read_vote().await?, Some(Vote::new(3, HeadId::from(1))));
    assert_eq!(log.read_committed().await?.map(|l| l.index), Some(2));
    let state = log.get_log_state().await?;
    assert_eq!(state.last_log_id.map(|l| l.index), Some(3));
    assert_eq!(log.try_get_log_entries(1..4).await?.len(), 3);
    // The snapshot held the state up to entry 2; openraft re-applies 3.
    let (applied, membership) = sm.applied_state().await?;
    assert_eq!(applied.map(|l| l.index), Some(2));
    assert!(membership
        .membership()
        .voter_ids()
        .any(|v| v == HeadId::from(1)));
    let machine = sm.machine();
    let machine = machine.read().unwrap_or_else(PoisonError::into_inner);
    assert_eq!(machine.state.draining().count(), 1);
    Ok(())
}

/// A value that no longer opens is an error, not a wrong answer.
#[tokio::test]
async fn a_value_that_does_not_open_is_an_error() -> Result<(), StorageError> {
    struct Refuse;
    impl Seal for Refuse {
        fn seal(&self, plain: Vec<u8>) -> Vec<u8> {
            plain
        }
        fn open(&self, _: Vec<u8>) -> Result<Vec<u8>, String> {
            Err("tag mismatch".to_owned())
        }
    }
    let dir = Scratch::new("refuse");
    {
        let (mut log, _) = open(&dir.0, Arc::new(Plain))?;
        log.save_vote(&Vote::new(1, HeadId::from(1))).await?;
    }
    let (mut log, _) = open(&dir.0, Arc::new(Refuse))?;
    let err = log.read_vote().await.err().map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("tag mismatch")));
    Ok(())
}

/// Under a keyring every stored value is a sealed value of kind Raft; a
/// flipped byte in any of them is an error naming the keyring, and a
/// value sealed under a term the keyring lacks is named as such.
#[tokio::test]
async fn under_a_keyring_every_value_is_sealed_and_a_flipped_byte_is_an_error(
) -> Result<(), StorageError> {
    use crate::at_rest::{create_key_file, Keyring, Unlock};
    use swarm_protocol::sealed::keyring::KdfParams;

    let dir = Scratch::new("sealed");
    std::fs::create_dir_all(&dir.0).map_err(io)?;
    let key_file = dir.0.join("keyring.key");
    create_key_file(&key_file).map_err(io)?;
    let cheap = KdfParams {
        m_kib: 64,
        t: 1,
        p: 1,
    };
    let ring =
        Keyring::create(&dir.0.join("keyring"), &Unlock::KeyFile(key_file), cheap).map_err(io)?;
    {
        let (mut log, mut sm) = open(&dir.0, Arc::new(ring.clone()))?;
        let entries = [entry(1, place("canary-node")), entry(2, place("other"))];
        log.blocking_append(entries.to_vec()).await?;
        log.save_vote(&Vote::new(3, HeadId::from(1))).await?;
        sm.apply(entries.to_vec()).await?;
        sm.get_snapshot_builder().await.build_snapshot().await?;
    }
    // Every value, log and meta, is sealed; the payload is nowhere in clear.
    let file = dir.0.join("head.redb");
    let raw = std::fs::read(&file).map_err(io)?;
    assert!(!raw.windows(11).any(|w| w == b"canary-node"));
    let mut values: Vec<(bool, Vec<u8>, Vec<u8>)> = Vec::new();
    {
        let db = Database::open(&file).map_err(io)?;
        let txn = db.begin_read().map_err(io)?;
        for (k, v) in txn
            .open_table(LOG)
            .map_err(io)?
            .iter()
            .map_err(io)?
            .flatten()
        {
            values.push((true, k.value().to_be_bytes().to_vec(), v.value().to_vec()));
        }
        for (k, v) in txn
            .open_table(META)
            .map_err(io)?
            .iter()
            .map_err(io)?
            .flatten()
        {
            values.push((false, k.value().as_bytes().to_vec(), v.value().to_vec()));
        }
    }
    assert!(values.len() >= 4, "{} values", values.len());
    for (_, _, v) in &values {
        let header = swarm_protocol::sealed::parse(v).expect("a sealed value");
        assert_eq!(header.kind, swarm_protocol::sealed::Kind::Raft);
    }
    // Flip one byte of each value in turn: reading it back is an error.
    for (is_log, key, value) in &values {
        let write = |bytes: &[u8]| -> Result<(), StorageError> {
            let db = Database::create(&file).map_err(io)?;
            let txn = db.begin_write().map_err(io)?;
            if *is_log {
                let k = u64::from_be_bytes(key[..].try_into().unwrap_or_default());
                txn.open_table(LOG)
                    .map_err(io)?
                    .insert(k, bytes)
                    .map_err(io)?;
            } else {
                let k = String::from_utf8_lossy(key).into_owned();
                txn.open_table(META)
                    .map_err(io)?
                    .insert(k.as_str(), bytes)
                    .map_err(io)?;
            }
            txn.commit().map_err(io)
        };
        let mut bad = value.clone();
        let at = bad.len() / 2;
        bad[at] ^= 0x04;
        write(&bad)?;
        let error = match open(&dir.0, Arc::new(ring.clone())) {
            Err(e) => e.to_string(),
            Ok((mut log, _)) => {
                let entries = log.try_get_log_entries(1..3).await.err();
                let vote = log.read_vote().await.err();
                let committed = log.read_committed().await.err();
                entries
                    .or(vote)
                    .or(committed)
                    .map(|e| e.to_string())
                    .unwrap_or_default()
            }
        };
        assert!(
            error.contains("failed authentication") && error.contains("keyring"),
            "value {key:?}: {error:?}"
        );
        write(value)?;
    }
    let (mut log, _) = open(&dir.0, Arc::new(ring))?;
    assert_eq!(log.try_get_log_entries(1..3).await?.len(), 2);
    Ok(())
}
