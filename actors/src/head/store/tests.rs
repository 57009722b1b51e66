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

/// A log entry of about `bytes` bytes.
fn sized(index: u64, bytes: usize) -> Entry {
    entry(
        index,
        EntryPayload::Normal(Command::Fail {
            name: "a".to_owned(),
            epoch: 1,
            reason: "x".repeat(bytes),
        }),
    )
}

/// The indices of `entries`.
fn indices(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.log_id.index).collect()
}

/// What replication reads for one AppendEntries stops at the byte bound
/// (entries as stored), a larger entry goes alone rather than never, and a
/// reopened store measures its entries the same.
#[tokio::test]
async fn an_append_batch_stops_at_the_byte_bound_but_never_comes_back_empty(
) -> Result<(), StorageError> {
    let dir = Scratch::new("limited");
    let bound = 2_500;
    {
        let (log, _) = open(&dir.0, Arc::new(Plain))?;
        let mut unbounded = log.clone();
        let mut log = log.limit_appends(bound);
        log.blocking_append((1..=10).map(|i| sized(i, 1_000)).collect::<Vec<_>>())
            .await?;
        log.blocking_append(vec![sized(11, 5_000), sized(12, 1_000)])
            .await?;
        assert_eq!(indices(&log.limited_get_log_entries(1, 13).await?), [1, 2]);
        assert_eq!(indices(&log.limited_get_log_entries(9, 13).await?), [9, 10]);
        assert_eq!(indices(&log.limited_get_log_entries(10, 13).await?), [10]);
        assert_eq!(indices(&log.limited_get_log_entries(11, 13).await?), [11]);
        assert_eq!(indices(&log.limited_get_log_entries(3, 4).await?), [3]);
        assert!(log.limited_get_log_entries(13, 20).await?.is_empty());
        // Unbounded until limited (openraft's default: the whole range).
        assert_eq!(unbounded.limited_get_log_entries(1, 13).await?.len(), 12);
    }
    let (log, _) = open(&dir.0, Arc::new(Plain))?;
    let mut log = log.limit_appends(bound);
    assert_eq!(indices(&log.limited_get_log_entries(1, 13).await?), [1, 2]);
    assert_eq!(indices(&log.limited_get_log_entries(10, 13).await?), [10]);
    Ok(())
}

/// A value that no longer opens is an error, not a wrong answer.
#[tokio::test]
async fn a_value_that_does_not_open_is_an_error() -> Result<(), StorageError> {
    struct Refuse;
    impl Seal for Refuse {
        fn seal(&self, _: &[u8], plain: Vec<u8>) -> Vec<u8> {
            plain
        }
        fn open(&self, _: &[u8], _: Vec<u8>) -> Result<Vec<u8>, String> {
            Err("tag mismatch".to_owned())
        }
    }
    let dir = Scratch::new("refuse");
    {
        let (mut log, _) = open(&dir.0, Arc::new(Plain))?;
        log.save_vote(&Vote::new(1, HeadId::from(1))).await?;
    }
    // Refused at open (every value is opened then), the file named.
    let err = open(&dir.0, Arc::new(Refuse)).err().map(|e| e.to_string());
    assert!(
        err.as_ref()
            .is_some_and(|e| e.contains("tag mismatch") && e.contains("head.redb: vote value")),
        "{err:?}"
    );
    Ok(())
}

/// Under a keyring every stored value is a sealed value of kind Raft; a
/// flipped byte in any of them is an error naming the file and the value,
/// raised when the store opens.
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
            error.contains("failed authentication") && error.contains("head.redb: "),
            "value {key:?}: {error:?}"
        );
        write(value)?;
    }
    let (mut log, _) = open(&dir.0, Arc::new(ring))?;
    assert_eq!(log.try_get_log_entries(1..3).await?.len(), 2);
    Ok(())
}

/// A keyring for a store test, opened with a key file in `dir`.
fn keyring_in(dir: &std::path::Path) -> Result<crate::at_rest::Keyring, StorageError> {
    use crate::at_rest::{create_key_file, Keyring, Unlock};
    use swarm_protocol::sealed::keyring::KdfParams;

    std::fs::create_dir_all(dir).map_err(io)?;
    let key_file = dir.join("keyring.key");
    create_key_file(&key_file).map_err(io)?;
    let cheap = KdfParams {
        m_kib: 64,
        t: 1,
        p: 1,
    };
    Keyring::create(&dir.join("keyring"), &Unlock::KeyFile(key_file), cheap).map_err(io)
}

/// Every (table, key, value) of an open store's file, as stored.
fn raw_contents(db: &Database) -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let txn = db.begin_read().expect("a read transaction");
    let mut out = Vec::new();
    if let Ok(table) = txn.open_table(LOG) {
        for item in table.iter().expect("the log iterates") {
            let (k, v) = item.expect("a log item");
            out.push(("log", k.value().to_be_bytes().to_vec(), v.value().to_vec()));
        }
    }
    if let Ok(table) = txn.open_table(META) {
        for item in table.iter().expect("the meta table iterates") {
            let (k, v) = item.expect("a meta item");
            out.push(("meta", k.value().as_bytes().to_vec(), v.value().to_vec()));
        }
    }
    if let Ok(table) = txn.open_table(SNAPSHOT) {
        for item in table.iter().expect("the snapshot table iterates") {
            let (k, v) = item.expect("a snapshot piece");
            out.push((
                "snapshot",
                k.value().to_be_bytes().to_vec(),
                v.value().to_vec(),
            ));
        }
    }
    out
}

/// A store with a purged prefix, a log, a vote, a commit index and a
/// snapshot, sealed under a keyring; returns the keyring.
async fn filled_store(dir: &std::path::Path) -> Result<crate::at_rest::Keyring, StorageError> {
    let ring = keyring_in(dir)?;
    let (mut log, mut sm) = open(dir, Arc::new(ring.clone()))?;
    let entries: Vec<Entry> = (1..=40)
        .map(|i| entry(i, place(&"n".repeat(1 + i as usize % 7))))
        .collect();
    log.blocking_append(entries[..30].to_vec()).await?;
    log.save_vote(&Vote::new(4, HeadId::from(1))).await?;
    log.save_committed(Some(entries[29].log_id)).await?;
    sm.apply(entries[..30].to_vec()).await?;
    sm.get_snapshot_builder().await.build_snapshot().await?;
    log.purge(entries[9].log_id).await?;
    log.blocking_append(entries[30..].to_vec()).await?;
    Ok(ring)
}

/// A value moved to another place (another log index, another metadata
/// key) does not open: each seal is bound to its table and key, and the
/// error names the file and the place.
#[tokio::test]
async fn a_sealed_value_moved_to_another_key_or_index_does_not_open() -> Result<(), StorageError> {
    let dir = Scratch::new("moved");
    let ring = filled_store(&dir.0).await?;
    let file = dir.0.join("head.redb");
    let pristine = std::fs::read(&file).map_err(io)?;
    let value = |table: &str, key: &[u8]| -> Vec<u8> {
        let db = Database::create(&file).expect("the store opens");
        raw_contents(&db)
            .into_iter()
            .find(|(t, k, _)| *t == table && k == key)
            .map(|(_, _, v)| v)
            .expect("the value exists")
    };
    let log_15 = value("log", &15u64.to_be_bytes());
    let vote = value("meta", b"vote");
    type Change<'a> = &'a dyn Fn(&redb::WriteTransaction);
    let cases: [(&str, Change<'_>); 3] = [
        ("log entry 16 does not open", &|txn| {
            let mut t = txn.open_table(LOG).expect("the log");
            t.insert(16, log_15.as_slice()).expect("an insert");
        }),
        ("committed value does not open", &|txn| {
            let mut t = txn.open_table(META).expect("meta");
            t.insert("committed", vote.as_slice()).expect("an insert");
        }),
        ("purged value does not open", &|txn| {
            let mut t = txn.open_table(META).expect("meta");
            t.insert("purged", vote.as_slice()).expect("an insert");
        }),
    ];
    for (expected, change) in cases {
        let error = open_error_after(&dir.0, &pristine, &ring, change)?;
        assert!(
            error.contains(&format!("head.redb: {expected}"))
                && error.contains("failed authentication"),
            "{expected}: {error:?}"
        );
    }
    std::fs::write(&file, &pristine).map_err(io)?;
    assert!(open(&dir.0, Arc::new(ring)).is_ok());
    Ok(())
}

/// The pristine store file written back, `change` committed to it, then
/// opened: the error it gives (empty if it opens).
fn open_error_after(
    dir: &std::path::Path,
    pristine: &[u8],
    ring: &crate::at_rest::Keyring,
    change: &dyn Fn(&redb::WriteTransaction),
) -> Result<String, StorageError> {
    let file = dir.join("head.redb");
    std::fs::write(&file, pristine).map_err(io)?;
    {
        let db = Database::create(&file).map_err(io)?;
        let txn = db.begin_write().map_err(io)?;
        change(&txn);
        txn.commit().map_err(io)?;
    }
    Ok(open(dir, Arc::new(ring.clone()))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default())
}

/// A value sealed by an older build (no place bound) is named as such.
#[tokio::test]
async fn a_value_sealed_without_its_place_by_an_older_build_is_named() -> Result<(), StorageError> {
    let dir = Scratch::new("legacy");
    let ring = filled_store(&dir.0).await?;
    let file = dir.0.join("head.redb");
    {
        let db = Database::create(&file).map_err(io)?;
        let txn = db.begin_write().map_err(io)?;
        let old = crate::at_rest::Keyring::seal(
            &ring,
            swarm_protocol::sealed::Kind::Raft,
            b"",
            &rmp_serde::to_vec(&Vote::new(4, HeadId::from(1))).map_err(io)?,
        );
        txn.open_table(META)
            .map_err(io)?
            .insert("vote", old.as_slice())
            .map_err(io)?;
        txn.commit().map_err(io)?;
    }
    let error = open(&dir.0, Arc::new(ring)).err().map(|e| e.to_string());
    assert!(
        error
            .as_ref()
            .is_some_and(|e| e.contains("head.redb: vote value was sealed by an older swarm")),
        "{error:?}"
    );
    Ok(())
}

/// The store's file is 0600 in a 0700 directory, even where the process's
/// umask would allow more, and an older build's looser modes are
/// tightened when it opens.
#[cfg(unix)]
#[tokio::test]
async fn the_store_is_0600_in_a_0700_directory() -> Result<(), StorageError> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = Scratch::new("modes");
    let store = dir.0.join("n1").join("head");
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    };
    drop(open(&store, Arc::new(Plain))?);
    assert_eq!(mode(&store), 0o700);
    assert_eq!(mode(&dir.0.join("n1")), 0o700);
    assert_eq!(mode(&store.join("head.redb")), 0o600);
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    std::fs::set_permissions(
        store.join("head.redb"),
        std::fs::Permissions::from_mode(0o644),
    )
    .map_err(io)?;
    drop(open(&store, Arc::new(Plain))?);
    assert_eq!(mode(&store), 0o700);
    assert_eq!(mode(&store.join("head.redb")), 0o600);
    Ok(())
}

/// What a flip at one offset of head.redb led to.
#[derive(Debug, Default)]
struct Flips {
    /// Refused at open, with the file named.
    refused: usize,
    /// Opened, and every stored value (raw and decoded) is identical to
    /// the undamaged file's: the byte was in space redb does not use.
    unused: usize,
}

/// A flipped byte anywhere in a real head.redb (a keyring-sealed store
/// with a log, a purge, a vote, a commit index and a snapshot) is either
/// refused at open with the file named, or provably harmless: the store
/// opens and every value reads back identical to the undamaged file's.
/// Never a panic, never a different store.
#[tokio::test]
async fn a_flipped_byte_anywhere_in_head_redb_is_refused_naming_it_or_provably_unused(
) -> Result<(), StorageError> {
    let flips = flip_across_a_store(150).await?;
    // Inside sealed values, in redb's pages and header, and in free space.
    assert!(flips.refused > 100 && flips.unused > 50, "{flips:?}");
    Ok(())
}

/// As above, every byte of the file (~30 minutes here: each open syncs).
#[tokio::test]
#[ignore]
async fn stress_every_flipped_byte_of_head_redb_is_refused_or_provably_unused(
) -> Result<(), StorageError> {
    flip_across_a_store(1).await.map(drop)
}

/// Flips bytes of a filled store one at a time (every `stride`th non-zero
/// byte, every header byte, every 997th byte, and four in each sealed
/// value) and opens it after each; see the test above for what must hold.
async fn flip_across_a_store(stride: usize) -> Result<Flips, StorageError> {
    let dir = Scratch::new("flips");
    let ring = filled_store(&dir.0).await?;
    let file = dir.0.join("head.redb");
    let expected = {
        let (mut log, sm) = open(&dir.0, Arc::new(ring.clone()))?;
        let state = (
            log.try_get_log_entries(0..100).await?,
            log.read_vote().await?,
            log.read_committed().await?,
            log.get_log_state().await?.last_purged_log_id,
            sm.db.snapshot()?,
        );
        let raw = raw_contents(&sm.db.db);
        (state, raw)
    };
    // The pristine file as the open above left it (the check commits).
    let pristine = std::fs::read(&file).map_err(io)?;
    // Every non-zero byte's neighbourhood is where redb keeps things; the
    // rest is sampled. Each sealed value gets a flip in its header, middle
    // and tag.
    let mut offsets: std::collections::BTreeSet<usize> = (0..pristine.len())
        .filter(|&at| stride == 1 || pristine[at] != 0)
        .step_by(stride)
        .collect();
    offsets.extend((0..pristine.len()).step_by(997));
    offsets.extend(0..64);
    for at in (0..pristine.len().saturating_sub(6)).filter(|&at| &pristine[at..at + 6] == b"SWSEAL")
    {
        offsets.extend([at + 2, at + 9, at + 40, at + 60]);
    }
    offsets.retain(|&at| at < pristine.len());
    let mut flips = Flips::default();
    for &at in &offsets {
        let mut bad = pristine.clone();
        bad[at] ^= 0x20;
        std::fs::write(&file, &bad).map_err(io)?;
        let opened = async {
            let (mut log, sm) = open(&dir.0, Arc::new(ring.clone()))?;
            Ok::<_, StorageError>((
                (
                    log.try_get_log_entries(0..100).await?,
                    log.read_vote().await?,
                    log.read_committed().await?,
                    log.get_log_state().await?.last_purged_log_id,
                    sm.db.snapshot()?,
                ),
                raw_contents(&sm.db.db),
            ))
        };
        match opened.await {
            Err(error) => {
                let error = error.to_string();
                assert!(error.contains("head.redb: "), "flip at {at}: {error}");
                flips.refused += 1;
            }
            Ok(got) => {
                assert!(
                    got.0 .0 == expected.0 .0
                        && got.0 .1 == expected.0 .1
                        && got.0 .2 == expected.0 .2
                        && got.0 .3 == expected.0 .3
                        && got.0 .4.as_ref().map(|s| (&s.0.snapshot_id, &s.1))
                            == expected.0 .4.as_ref().map(|s| (&s.0.snapshot_id, &s.1))
                        && got.1 == expected.1,
                    "a flip at {at} of {} opened to different contents",
                    pristine.len()
                );
                flips.unused += 1;
            }
        }
    }
    eprintln!(
        "head.redb of {} bytes: {} offsets flipped, {flips:?}",
        pristine.len(),
        offsets.len()
    );
    Ok(flips)
}

mod pieces;
