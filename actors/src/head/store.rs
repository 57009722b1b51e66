//! The head's crash-safe storage in one redb file: the Raft log, the vote,
//! the commit index and the last state-machine snapshot. The state machine
//! itself lives in memory and is rebuilt on start from the snapshot plus
//! the log after it (openraft re-applies up to the saved commit index).
//!
//! Every value passes through one [`Seal`] on its way to disk and back:
//! [`Plain`] in tests, a node's [`Keyring`](crate::at_rest::Keyring)
//! (AES-256-GCM) wherever a configuration names one. Each value is sealed
//! bound to its place ([`Place`]: the log index, or the metadata key), so a
//! value copied or moved to another place does not open.
//!
//! The file is checked whole at open: redb verifies the checksum of every
//! page of the committed trees, and every value is opened and decoded, so
//! a flipped byte is refused at start with the file named instead of
//! surfacing later (or never). Commits are two-phase, so a damaged latest
//! commit is an error rather than a silent fall back to the one before.
//!
//! The file is created 0600 in a 0700 directory. Writes run on tokio's
//! blocking pool or the log's writer thread (a commit waits for fsync),
//! never on the node's arbiter.

// openraft's `StorageError` is what every storage trait method returns;
// the helpers return it too rather than boxing it only to unbox it again.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError, StoredMembership,
};
use redb::{Database, ReadableDatabase, ReadableTable as _, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::state::{Applied, ControlState};
use super::types::{
    Entry, LogId, Membership, RaftConfig, Snapshot, SnapshotMeta, StorageError, Vote,
};

pub(crate) const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("log");
pub(crate) const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
/// The pieces of the last snapshot, by number (its header, with the
/// count, is the `snapshot` metadata value).
pub(crate) const SNAPSHOT: TableDefinition<'_, u32, &[u8]> = TableDefinition::new("snapshot");

/// What every stored value passes through on its way to disk and back.
pub trait Seal: Send + Sync + 'static {
    /// Seals `plain` for storage, bound to `context` (where it is stored):
    /// it MUST NOT open under another context.
    fn seal(&self, context: &[u8], plain: Vec<u8>) -> Vec<u8>;
    /// Opens a stored value sealed under `context`; an error if it was
    /// altered, sealed for another place, or is not ours.
    ///
    /// # Errors
    ///
    /// A description of why the value cannot be opened.
    fn open(&self, context: &[u8], sealed: Vec<u8>) -> Result<Vec<u8>, String>;
}

/// Stores values as they are (until the security layer seals them).
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl Seal for Plain {
    fn seal(&self, _: &[u8], plain: Vec<u8>) -> Vec<u8> {
        plain
    }

    fn open(&self, _: &[u8], sealed: Vec<u8>) -> Result<Vec<u8>, String> {
        Ok(sealed)
    }
}

/// The security layer's seal: AES-256-GCM under the node's keyring, each
/// value a sealed value of kind `Raft` with its place as associated data.
impl Seal for crate::at_rest::Keyring {
    fn seal(&self, context: &[u8], plain: Vec<u8>) -> Vec<u8> {
        let sealed = crate::at_rest::Keyring::seal(
            self,
            swarm_protocol::sealed::Kind::Raft,
            context,
            &plain,
        );
        drop(zeroize::Zeroizing::new(plain));
        sealed
    }

    fn open(&self, context: &[u8], sealed: Vec<u8>) -> Result<Vec<u8>, String> {
        self.open_value(swarm_protocol::sealed::Kind::Raft, context, &sealed)
            .map(|plain| plain.to_vec())
            .map_err(|e| format!("{e} (keyring {})", self.path().display()))
    }
}

/// Where a value is stored: what its seal is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place<'a> {
    /// The log entry of this index.
    Log(u64),
    /// The metadata value of this key (`vote`, `committed`, `purged`,
    /// `snapshot`).
    Meta(&'a str),
    /// This piece of the snapshot of this id.
    Piece(&'a str, u32),
}

impl Place<'_> {
    /// The seal's context: the table and the key.
    fn context(self) -> Vec<u8> {
        let mut out = b"swarm head.redb ".to_vec();
        match self {
            Place::Log(index) => {
                out.extend_from_slice(b"log ");
                out.extend_from_slice(&index.to_be_bytes());
            }
            Place::Meta(key) => {
                out.extend_from_slice(b"meta ");
                out.extend_from_slice(key.as_bytes());
            }
            Place::Piece(id, piece) => {
                out.extend_from_slice(b"snapshot ");
                out.extend_from_slice(&piece.to_be_bytes());
                out.extend_from_slice(id.as_bytes());
            }
        }
        out
    }
}

impl std::fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Log(index) => write!(f, "log entry {index}"),
            Place::Meta(key) => write!(f, "{key} value"),
            Place::Piece(_, piece) => write!(f, "snapshot piece {piece}"),
        }
    }
}

/// The database and its seal, shared by the log and the state machine.
pub(crate) struct Db {
    db: Database,
    seal: Arc<dyn Seal>,
    /// The file, for error messages.
    path: PathBuf,
}

fn io(e: impl ToString) -> StorageError {
    StorageIOError::write(AnyError::error(e.to_string())).into()
}

fn read_err(e: impl ToString) -> StorageError {
    StorageIOError::read(AnyError::error(e.to_string())).into()
}

impl Db {
    fn encode<T: Serialize>(&self, place: Place<'_>, value: &T) -> Result<Vec<u8>, StorageError> {
        let plain = rmp_serde::to_vec(value).map_err(io)?;
        Ok(self.seal_plain(place, plain))
    }

    /// Seals `plain` (a value as [`Db::encode`] encodes it) for `place`.
    fn seal_plain(&self, place: Place<'_>, plain: Vec<u8>) -> Vec<u8> {
        self.seal.seal(&place.context(), plain)
    }

    fn decode<T: DeserializeOwned>(
        &self,
        place: Place<'_>,
        stored: &[u8],
    ) -> Result<T, StorageError> {
        let plain = self.open_sealed(place, stored)?;
        rmp_serde::from_slice(&plain).map_err(|e| {
            read_err(format!(
                "{}: {place} does not decode: {e}",
                self.path.display()
            ))
        })
    }

    /// Opens a value sealed for `place`: its plain bytes.
    fn open_sealed(&self, place: Place<'_>, stored: &[u8]) -> Result<Vec<u8>, StorageError> {
        match self.seal.open(&place.context(), stored.to_vec()) {
            Ok(plain) => Ok(plain),
            // Stores written before values were bound to their place
            // sealed them with an empty context: say so rather than
            // calling them damaged.
            Err(_) if self.seal.open(b"", stored.to_vec()).is_ok() => Err(read_err(format!(
                "{}: {place} was sealed by an older swarm, before values were bound to their place; this build does not read that format (move the store aside: the head rejoins from its peers)",
                self.path.display()
            ))),
            Err(e) => Err(read_err(format!(
                "{}: {place} does not open (damaged, or moved from another place): {e}",
                self.path.display()
            ))),
        }
    }

    /// A redb error, naming the file.
    fn redb_err(&self, e: impl std::fmt::Display) -> StorageError {
        read_err(format!("{}: {e}", self.path.display()))
    }

    fn meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        let txn = self.db.begin_read().map_err(|e| self.redb_err(e))?;
        self.meta_in(&txn, key)
    }

    /// A metadata value as of `txn`.
    fn meta_in<T: DeserializeOwned>(
        &self,
        txn: &redb::ReadTransaction,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        let table = match txn.open_table(META) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.redb_err(e)),
        };
        match table.get(key).map_err(|e| self.redb_err(e))? {
            Some(value) => Ok(Some(self.decode(Place::Meta(key), value.value())?)),
            None => Ok(None),
        }
    }

    /// The last snapshot: its meta and its bytes, each piece opened (one
    /// read transaction, so header and pieces agree).
    fn snapshot(&self) -> Result<Option<(SnapshotMeta, Pieces)>, StorageError> {
        let txn = self.db.begin_read().map_err(|e| self.redb_err(e))?;
        let Some(stored) = self.meta_in::<StoredSnapshot>(&txn, "snapshot")? else {
            return Ok(None);
        };
        if stored.pieces == 0 {
            // Written before snapshots were stored in pieces.
            return Ok(Some((stored.meta, Pieces::from_bytes(&stored.data))));
        }
        let table = txn.open_table(SNAPSHOT).map_err(|e| self.redb_err(e))?;
        let mut pieces = Vec::new();
        for item in table.iter().map_err(|e| self.redb_err(e))? {
            let (key, value) = item.map_err(|e| self.redb_err(e))?;
            let number = key.value();
            if usize::try_from(number).ok() != Some(pieces.len()) || number >= stored.pieces {
                return Err(self.redb_err(format_args!(
                    "snapshot piece {number} is out of place (the snapshot has {})",
                    stored.pieces
                )));
            }
            let place = Place::Piece(&stored.meta.snapshot_id, number);
            pieces.push(self.open_sealed(place, value.value())?);
        }
        if pieces.len() != stored.pieces as usize {
            return Err(self.redb_err(format_args!(
                "the snapshot has {} of its {} pieces",
                pieces.len(),
                stored.pieces
            )));
        }
        let pieces = Pieces::from_pieces(pieces).map_err(|e| self.redb_err(e))?;
        Ok(Some((stored.meta, pieces)))
    }

    /// Replaces the stored snapshot: each piece sealed on its own (never
    /// a copy of the whole), then the header with their count.
    fn put_snapshot(
        &self,
        txn: &redb::WriteTransaction,
        meta: &SnapshotMeta,
        data: &Pieces,
    ) -> Result<(), StorageError> {
        txn.delete_table(SNAPSHOT).map_err(io)?;
        let mut table = txn.open_table(SNAPSHOT).map_err(io)?;
        let mut count = 0u32;
        for piece in data.pieces() {
            let sealed = self.seal_plain(Place::Piece(&meta.snapshot_id, count), piece.to_vec());
            table.insert(count, sealed.as_slice()).map_err(io)?;
            count = count
                .checked_add(1)
                .ok_or_else(|| io("a snapshot of more than 2^32 pieces"))?;
        }
        let header = StoredSnapshot {
            meta: meta.clone(),
            data: Vec::new(),
            pieces: count,
        };
        let header = self.encode(Place::Meta("snapshot"), &header)?;
        self.put_meta(txn, "snapshot", &header)
    }

    /// One durable write transaction, on the blocking pool.
    async fn write<F, T>(self: &Arc<Self>, f: F) -> Result<T, StorageError>
    where
        F: FnOnce(&Db, &redb::WriteTransaction) -> Result<T, StorageError> + Send + 'static,
        T: Send + 'static,
    {
        let db = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut txn = db.db.begin_write().map_err(io)?;
            txn.set_two_phase_commit(true);
            let out = f(&db, &txn)?;
            txn.commit().map_err(io)?;
            Ok(out)
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

/// Opens (or creates) the head's store in `dir`, checking it whole: redb's
/// page checksums, then every stored value opened and decoded.
///
/// # Errors
///
/// When the directory or the database cannot be created or opened, fails
/// redb's integrity check, or a stored value does not open or decode;
/// each error names the file.
pub(crate) fn open(
    dir: &Path,
    seal: Arc<dyn Seal>,
) -> Result<(LogStore, StateMachine), StorageError> {
    let path = dir.join("head.redb");
    let file_err = |e: &dyn std::fmt::Display| io(format!("{}: {e}", path.display()));
    crate::at_rest::create_private_dir(dir).map_err(|e| file_err(&e))?;
    private(dir, &path).map_err(|e| file_err(&e))?;
    let db = open_checked(&path)?;
    let db = Arc::new(Db { db, seal, path });
    // Opened now, not when openraft asks: damage is refused at start.
    let _: Option<Vote> = db.meta("vote")?;
    let _: Option<Option<LogId>> = db.meta("committed")?;
    let _: Option<LogId> = db.meta("purged")?;
    let machine = match db.snapshot()? {
        Some((meta, data)) => {
            let mut machine = Machine::decode(&data)
                .map_err(|e| db.redb_err(format_args!("the snapshot does not decode: {e}")))?;
            machine.last_applied = meta.last_log_id;
            machine.membership = meta.last_membership;
            machine
        }
        None => Machine::default(),
    };
    let log = LogStore::open(Arc::clone(&db))?;
    let sm = StateMachine {
        db,
        machine: Arc::new(RwLock::new(machine)),
        applied: Arc::default(),
    };
    Ok((log, sm))
}

/// Makes the directory 0700 and the file 0600 (creating it empty if
/// missing, so it is never readable by others even for a moment); an
/// older build's looser modes are tightened.
fn private(dir: &Path, path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        match crate::at_rest::create_private_file(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if std::fs::symlink_metadata(path)?.file_type().is_symlink() {
                    return Err(std::io::Error::other("is a symbolic link; refusing it"));
                }
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            Err(e) => return Err(e),
        }
    }
    #[cfg(not(unix))]
    let _ = (dir, path);
    Ok(())
}

/// Opens the database with redb's integrity check: every page of the
/// committed trees against its checksum. redb promises an error rather
/// than a panic for a file altered outside it only with that check; a
/// panic anyway (a redb bug) is caught and reported as damage too.
fn open_checked(path: &Path) -> Result<Database, StorageError> {
    let name = path.display().to_string();
    let opened = std::panic::catch_unwind(|| {
        Database::builder()
            .set_check_integrity_on_open(true)
            .set_cache_size(CACHE_BYTES)
            .create(path)
    });
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(read_err(format!(
            "{name}: fails redb's integrity check or does not open: {e}"
        ))),
        Err(_) => Err(read_err(format!(
            "{name}: is damaged (redb could not read it)"
        ))),
    }
}

/// redb's page cache (its read cache and write buffer together). The log
/// is read from memory ([`LogStore`] keeps it since the last purge), so
/// the cache serves only a write transaction's pages, the log's B-tree
/// spine and a snapshot sent to a follower (read once): 8 MiB, not
/// redb's default 1 GiB nor the 64 MiB before, which a head filled with
/// the log and snapshots it wrote (its heap profile at 40,000 actors: 9.8
/// MB of cached pages and growing, some 670 B per actor at 100,000 once
/// full).
const CACHE_BYTES: usize = 8 << 20;

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

impl Machine {
    /// Encodes it into pieces (one pass, no copy of the whole).
    fn encode(&self) -> Result<Pieces, rmp_serde::encode::Error> {
        let mut out = Pieces::default();
        rmp_serde::encode::write(&mut out, self)?;
        Ok(out)
    }

    /// Decodes it from pieces as [`Machine::encode`] wrote them.
    pub(crate) fn decode(data: &Pieces) -> Result<Self, rmp_serde::decode::Error> {
        rmp_serde::from_read(data.reader())
    }
}

/// For the fuzz targets: `data` as a stored snapshot's header, as pieces
/// stored (split where its first byte says), and as a machine in pieces of
/// that size (so that values straddle the pieces' boundaries).
#[cfg(any(fuzzing, test))]
pub(crate) fn fuzz_snapshot(data: &[u8]) {
    let _ = rmp_serde::from_slice::<StoredSnapshot>(data);
    let piece = 1 + usize::from(data.first().copied().unwrap_or(0) % 32);
    let _ = Pieces::from_pieces(data.chunks(piece).map(<[u8]>::to_vec).collect());
    let _ = Machine::decode(&Pieces::from_bytes_in(data, piece));
}

/// Nanoseconds since the epoch: snapshots of the same index differ.
fn snapshot_stamp() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A snapshot's header as stored: its meta and how many pieces of the
/// encoded [`Machine`] the [`SNAPSHOT`] table holds, each sealed on its
/// own. Stores written before held the data here, inline (as one
/// MessagePack binary, or earlier an array of integers): both still read.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredSnapshot {
    meta: SnapshotMeta,
    /// The encoded machine inline (older stores; empty since pieces).
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
    /// Pieces in [`SNAPSHOT`]; 0 (absent) in older stores.
    #[serde(default)]
    pieces: u32,
}

/// The state machine: applies committed entries to the [`Machine`] that
/// the head's placement supervisor reads.
#[derive(Clone)]
pub(crate) struct StateMachine {
    db: Arc<Db>,
    machine: Arc<RwLock<Machine>>,
    /// Told after each change of the machine (entries applied, a snapshot
    /// installed), so its reader wakes for changes instead of polling.
    applied: Arc<tokio::sync::Notify>,
}

impl StateMachine {
    /// The applied state, shared with readers on this head.
    pub(crate) fn machine(&self) -> Arc<RwLock<Machine>> {
        Arc::clone(&self.machine)
    }

    /// Notified (one permit, coalesced) after each change of the machine:
    /// one reader waits on it (the head's supervisor).
    pub(crate) fn applied(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.applied)
    }

    fn read<T>(&self, f: impl FnOnce(&Machine) -> T) -> T {
        f(&self.machine.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Writes a snapshot durably; hands its data back.
    async fn store_snapshot(
        &self,
        meta: &SnapshotMeta,
        data: Box<Pieces>,
    ) -> Result<Box<Pieces>, StorageError> {
        let meta = meta.clone();
        self.db
            .write(move |db, txn| {
                db.put_snapshot(txn, &meta, &data)?;
                Ok(data)
            })
            .await
    }
}

impl RaftSnapshotBuilder<RaftConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let started = std::time::Instant::now();
        let (machine, last, membership) =
            self.read(|m| (m.encode().map_err(io), m.last_applied, m.membership.clone()));
        let data = machine?;
        let encoded = started.elapsed();
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: membership,
            snapshot_id: format!("{}-{}", last.map_or(0, |l| l.index), snapshot_stamp()),
        };
        let data = self.store_snapshot(&meta, Box::new(data)).await?;
        tracing::debug!(
            index = last.map_or(0, |l| l.index),
            bytes = data.len(),
            encode_ms = encoded.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "head: snapshot written"
        );
        Ok(Snapshot {
            meta,
            snapshot: data,
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
        drop(machine);
        if !answers.is_empty() {
            self.applied.notify_one();
        }
        Ok(answers)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Pieces>, StorageError> {
        Ok(Box::default())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Pieces>,
    ) -> Result<(), StorageError> {
        let started = std::time::Instant::now();
        let mut installed = Machine::decode(&snapshot).map_err(read_err)?;
        installed.last_applied = meta.last_log_id;
        installed.membership = meta.last_membership.clone();
        let decoded = started.elapsed();
        let data = self.store_snapshot(meta, snapshot).await?;
        let old = std::mem::replace(
            &mut *self.machine.write().unwrap_or_else(PoisonError::into_inner),
            installed,
        );
        self.applied.notify_one();
        // Freed outside the lock: a million records take a while.
        drop(old);
        tracing::info!(
            index = meta.last_log_id.map_or(0, |l| l.index),
            bytes = data.len(),
            decode_ms = decoded.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "head: installed the leader's snapshot"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.db.snapshot()?.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(data),
        }))
    }
}

mod log;
mod pieces;
pub(crate) mod scale;

pub(crate) use log::LogStore;
pub(crate) use pieces::Pieces;

#[cfg(test)]
mod tests;
