//! The head's crash-safe storage in one redb file: the Raft log, the vote,
//! the commit index and the last state-machine snapshot. The state machine
//! itself lives in memory and is rebuilt on start from the snapshot plus
//! the log after it (openraft re-applies up to the saved commit index).
//!
//! Every value passes through one [`Seal`] on its way to disk and back:
//! [`Plain`] in tests, a node's [`Keyring`](crate::at_rest::Keyring)
//! (AES-256-GCM) wherever a configuration names one.
//!
//! Writes run on tokio's blocking pool (a commit waits for fsync), never on
//! the node's arbiter.

// openraft's `StorageError` is what every storage trait method returns;
// the helpers return it too rather than boxing it only to unbox it again.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError, StoredMembership,
};
use redb::{Database, ReadableDatabase, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::state::{Applied, ControlState};
use super::types::{Entry, LogId, Membership, RaftConfig, Snapshot, SnapshotMeta, StorageError};

pub(crate) const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("log");
pub(crate) const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");

/// What every stored value passes through on its way to disk and back.
pub trait Seal: Send + Sync + 'static {
    /// Seals `plain` for storage.
    fn seal(&self, plain: Vec<u8>) -> Vec<u8>;
    /// Opens a stored value; an error if it was altered or is not ours.
    ///
    /// # Errors
    ///
    /// A description of why the value cannot be opened.
    fn open(&self, sealed: Vec<u8>) -> Result<Vec<u8>, String>;
}

/// Stores values as they are (until the security layer seals them).
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl Seal for Plain {
    fn seal(&self, plain: Vec<u8>) -> Vec<u8> {
        plain
    }

    fn open(&self, sealed: Vec<u8>) -> Result<Vec<u8>, String> {
        Ok(sealed)
    }
}

/// The security layer's seal: AES-256-GCM under the node's keyring, each
/// value a sealed value of kind `Raft`.
impl Seal for crate::at_rest::Keyring {
    fn seal(&self, plain: Vec<u8>) -> Vec<u8> {
        let sealed =
            crate::at_rest::Keyring::seal(self, swarm_protocol::sealed::Kind::Raft, b"", &plain);
        drop(zeroize::Zeroizing::new(plain));
        sealed
    }

    fn open(&self, sealed: Vec<u8>) -> Result<Vec<u8>, String> {
        self.open_value(swarm_protocol::sealed::Kind::Raft, b"", &sealed)
            .map(|plain| plain.to_vec())
            .map_err(|e| format!("{} {e}", self.path().display()))
    }
}

/// The database and its seal, shared by the log and the state machine.
pub(crate) struct Db {
    db: Database,
    seal: Arc<dyn Seal>,
}

fn io(e: impl ToString) -> StorageError {
    StorageIOError::write(AnyError::error(e.to_string())).into()
}

fn read_err(e: impl ToString) -> StorageError {
    StorageIOError::read(AnyError::error(e.to_string())).into()
}

impl Db {
    fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, StorageError> {
        let plain = rmp_serde::to_vec(value).map_err(io)?;
        Ok(self.seal.seal(plain))
    }

    fn decode<T: DeserializeOwned>(&self, stored: &[u8]) -> Result<T, StorageError> {
        let plain = self.seal.open(stored.to_vec()).map_err(read_err)?;
        rmp_serde::from_slice(&plain).map_err(read_err)
    }

    fn meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = match txn.open_table(META) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(read_err(e)),
        };
        match table.get(key).map_err(read_err)? {
            Some(value) => Ok(Some(self.decode(value.value())?)),
            None => Ok(None),
        }
    }

    /// One durable write transaction, on the blocking pool.
    async fn write<F>(self: &Arc<Self>, f: F) -> Result<(), StorageError>
    where
        F: FnOnce(&Db, &redb::WriteTransaction) -> Result<(), StorageError> + Send + 'static,
    {
        let db = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let txn = db.db.begin_write().map_err(io)?;
            f(&db, &txn)?;
            txn.commit().map_err(io)
        })
        .await
        .map_err(io)?
    }

    fn put_meta(
        &self,
        txn: &redb::WriteTransaction,
        key: &str,
        value: &[u8],
    ) -> Result<(), StorageError> {
        let mut table = txn.open_table(META).map_err(io)?;
        table.insert(key, value).map_err(io)?;
        Ok(())
    }
}

/// Opens (or creates) the head's store in `dir`.
///
/// # Errors
///
/// When the directory or the database cannot be created or opened, or the
/// stored snapshot does not open.
pub(crate) fn open(
    dir: &Path,
    seal: Arc<dyn Seal>,
) -> Result<(LogStore, StateMachine), StorageError> {
    std::fs::create_dir_all(dir).map_err(io)?;
    let db = Database::create(dir.join("head.redb")).map_err(io)?;
    let db = Arc::new(Db { db, seal });
    let machine = match db.meta::<StoredSnapshot>("snapshot")? {
        Some(stored) => {
            let mut machine: Machine = rmp_serde::from_slice(&stored.data).map_err(read_err)?;
            machine.last_applied = stored.meta.last_log_id;
            machine.membership = stored.meta.last_membership.clone();
            machine
        }
        None => Machine::default(),
    };
    let log = LogStore::open(Arc::clone(&db))?;
    let sm = StateMachine {
        db,
        machine: Arc::new(RwLock::new(machine)),
    };
    Ok((log, sm))
}

/// The applied state: what the log says so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Machine {
    /// The last entry applied.
    pub(crate) last_applied: Option<LogId>,
    /// The last membership applied.
    pub(crate) membership: Membership,
    /// The control state.
    pub(crate) state: ControlState,
}

/// Nanoseconds since the epoch: snapshots of the same index differ.
fn snapshot_stamp() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A snapshot as stored: its meta and the encoded [`Machine`].
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// The state machine: applies committed entries to the [`Machine`] that
/// the head's placement supervisor reads.
#[derive(Clone)]
pub(crate) struct StateMachine {
    db: Arc<Db>,
    machine: Arc<RwLock<Machine>>,
}

impl StateMachine {
    /// The applied state, shared with readers on this head.
    pub(crate) fn machine(&self) -> Arc<RwLock<Machine>> {
        Arc::clone(&self.machine)
    }

    fn read<T>(&self, f: impl FnOnce(&Machine) -> T) -> T {
        f(&self.machine.read().unwrap_or_else(PoisonError::into_inner))
    }

    async fn store_snapshot(&self, meta: SnapshotMeta, data: Vec<u8>) -> Result<(), StorageError> {
        let stored = self.db.encode(&StoredSnapshot { meta, data })?;
        self.db
            .write(move |db, txn| db.put_meta(txn, "snapshot", &stored))
            .await
    }
}

impl RaftSnapshotBuilder<RaftConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let (machine, last, membership) = self.read(|m| {
            (
                rmp_serde::to_vec(m).map_err(io),
                m.last_applied,
                m.membership.clone(),
            )
        });
        let data = machine?;
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: membership,
            snapshot_id: format!("{}-{}", last.map_or(0, |l| l.index), snapshot_stamp()),
        };
        self.store_snapshot(meta.clone(), data.clone()).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<RaftConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        Ok(self.read(|m| (m.last_applied, m.membership.clone())))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut machine = self.machine.write().unwrap_or_else(PoisonError::into_inner);
        let mut answers = Vec::new();
        for entry in entries {
            machine.last_applied = Some(entry.log_id);
            answers.push(match entry.payload {
                EntryPayload::Blank => Applied::Done,
                EntryPayload::Normal(command) => machine.state.apply(command),
                EntryPayload::Membership(m) => {
                    machine.membership = StoredMembership::new(Some(entry.log_id), m);
                    Applied::Done
                }
            });
        }
        Ok(answers)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let mut installed: Machine = rmp_serde::from_slice(&data).map_err(read_err)?;
        installed.last_applied = meta.last_log_id;
        installed.membership = meta.last_membership.clone();
        self.store_snapshot(meta.clone(), data).await?;
        *self.machine.write().unwrap_or_else(PoisonError::into_inner) = installed;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self
            .db
            .meta::<StoredSnapshot>("snapshot")?
            .map(|stored| Snapshot {
                meta: stored.meta,
                snapshot: Box::new(Cursor::new(stored.data)),
            }))
    }
}

mod log;

pub(crate) use log::LogStore;

#[cfg(test)]
mod tests;
