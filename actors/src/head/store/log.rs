//! The Raft log with group commit: appends return at once (the entries are
//! readable from memory), and one writer thread turns every write queued
//! meanwhile into a single redb transaction - one fsync for many entries -
//! then reports each as flushed, in order. Votes, truncations and purges go
//! through the same queue, so disk order is call order.
//!
//! The log since the last purge is kept in memory too, MessagePack-encoded
//! (a placement is some 110 bytes so, against some 420 decoded: a batch's
//! `Vec<Command>` sized by its largest variant, and four strings): reads
//! never touch the disk, and decode what they return. Replication reads
//! it in batches of bounded size ([`LogStore::limit_appends`]).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use redb::{ReadableDatabase, ReadableTable};
use tokio::sync::oneshot;

use super::{io, Db, Place, LOG};
use crate::head::types::{Entry, LogId, RaftConfig, StorageError, Vote};

/// One write for the writer thread.
enum Job {
    Append {
        entries: Vec<(u64, Vec<u8>)>,
        flushed: LogFlushed<RaftConfig>,
    },
    /// Puts a metadata value (vote, purge mark), answering when durable.
    Meta {
        key: &'static str,
        value: Vec<u8>,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Removes log entries in `from..=to`, answering when durable.
    Remove {
        from: u64,
        to: u64,
        done: oneshot::Sender<Result<(), String>>,
    },
}

/// The Raft log, the vote and the commit index.
///
/// The commit index is only a hint for replay after a restart (openraft
/// re-applies up to it; a stale one is safe: everything before it was
/// committed), so it rides along with the next write instead of costing an
/// fsync of its own.
#[derive(Clone)]
pub(crate) struct LogStore {
    db: Arc<Db>,
    /// Every entry since the last purge, by index.
    cache: Arc<Mutex<BTreeMap<u64, Cached>>>,
    purged: Arc<Mutex<Option<LogId>>>,
    committed: Arc<Mutex<Option<Vec<u8>>>>,
    writer: Arc<Writer>,
    /// The most bytes of entries one AppendEntries carries, so that it can
    /// be answered within openraft's timeout ([`LogStore::limit_appends`]).
    append_bytes: usize,
}

/// An entry in memory: its id, the entry encoded (unsealed), and its size
/// on disk, what an AppendEntries batch is measured by. Between two
/// snapshots (10,000 entries, each up to a batch of placements) a head
/// holds every placement of that stretch here; decoded, they weighed more
/// than the placed actors' records.
struct Cached {
    log_id: LogId,
    packed: Box<[u8]>,
    bytes: usize,
}

impl Cached {
    /// `entry`, and `plain` its encoding ([`super::Db::encode`] unsealed).
    fn new(entry: &Entry, plain: Vec<u8>, bytes: usize) -> Self {
        Self {
            log_id: entry.log_id,
            packed: plain.into_boxed_slice(),
            bytes,
        }
    }

    fn entry(&self) -> Result<Entry, StorageError> {
        rmp_serde::from_slice(&self.packed).map_err(super::read_err)
    }
}

/// The writer thread's queue; the last log handle dropped waits for the
/// thread to finish (so the database is closed when the log is).
struct Writer {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Writer {
    fn send(&self, job: Job) -> Result<(), StorageError> {
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        match jobs.as_ref().map(|jobs| jobs.send(job)) {
            Some(Ok(())) => Ok(()),
            _ => Err(io("the log writer stopped")),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl LogStore {
    /// Loads the log into memory and starts the writer thread.
    pub(crate) fn open(db: Arc<Db>) -> Result<Self, StorageError> {
        let mut cache = BTreeMap::new();
        {
            let txn = db.db.begin_read().map_err(|e| db.redb_err(e))?;
            match txn.open_table(LOG) {
                Ok(table) => {
                    for item in table.iter().map_err(|e| db.redb_err(e))? {
                        let (key, value) = item.map_err(|e| db.redb_err(e))?;
                        let index = key.value();
                        let entry: Entry = db.decode(Place::Log(index), value.value())?;
                        if entry.log_id.index != index {
                            return Err(db.redb_err(format_args!(
                                "log entry {index} holds entry {}",
                                entry.log_id.index
                            )));
                        }
                        let bytes = value.value().len();
                        let plain = rmp_serde::to_vec(&entry).map_err(io)?;
                        cache.insert(index, Cached::new(&entry, plain, bytes));
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(db.redb_err(e)),
            }
        }
        let purged: Option<LogId> = db.meta("purged")?;
        let committed = Arc::new(Mutex::new(None));
        let (jobs, queue) = mpsc::channel();
        let writer_db = Arc::clone(&db);
        let writer_committed = Arc::clone(&committed);
        let thread = std::thread::Builder::new()
            .name("swarm-head-log".to_owned())
            .spawn(move || writer(&writer_db, &queue, &writer_committed))
            .map_err(io)?;
        Ok(Self {
            db,
            cache: Arc::new(Mutex::new(cache)),
            purged: Arc::new(Mutex::new(purged)),
            committed,
            writer: Arc::new(Writer {
                jobs: Mutex::new(Some(jobs)),
                thread: Mutex::new(Some(thread)),
            }),
            append_bytes: usize::MAX,
        })
    }

    /// Bounds each AppendEntries read from this log to `bytes` of entries
    /// (as stored), or one entry when that one alone is larger; unbounded
    /// until called. openraft gives an AppendEntries one heartbeat interval
    /// to be answered, whatever it carries, and after a timeout sends the
    /// same entries again: a batch that cannot be shipped, decoded and
    /// answered within that time never is, and the follower never catches
    /// up. It MUST be called before the log is handed to Raft (clones made
    /// before keep their bound).
    pub(crate) fn limit_appends(mut self, bytes: usize) -> Self {
        self.append_bytes = bytes.max(1);
        self
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Cached>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a write and waits until it is durable.
    async fn durable(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<(), String>>) -> Job,
    ) -> Result<(), StorageError> {
        let (done, wait) = oneshot::channel();
        self.writer.send(job(done))?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(io(e)),
            Err(_) => Err(io("the log writer stopped")),
        }
    }
}

/// The writer thread: takes every queued job, writes them in one
/// transaction, then answers each in order. Ends when every sender is gone.
fn writer(db: &Db, queue: &mpsc::Receiver<Job>, committed: &Mutex<Option<Vec<u8>>>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while let Ok(next) = queue.try_recv() {
            batch.push(next);
        }
        let pending = committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let written = write_batch(db, &batch, pending.as_deref());
        for job in batch {
            let result = written.clone();
            match job {
                Job::Append { flushed, .. } => {
                    flushed.log_io_completed(result.map_err(std::io::Error::other));
                }
                Job::Meta { done, .. } | Job::Remove { done, .. } => {
                    let _ = done.send(result);
                }
            }
        }
    }
}

fn write_batch(db: &Db, batch: &[Job], committed: Option<&[u8]>) -> Result<(), String> {
    let mut txn = db.db.begin_write().map_err(|e| e.to_string())?;
    // Two-phase: the commit slot is written only after the pages it names
    // are durable, so a latest commit that fails its checksum at open is
    // damage (an error), never a torn write redb would roll back silently.
    txn.set_two_phase_commit(true);
    {
        let mut log = txn.open_table(LOG).map_err(|e| e.to_string())?;
        let mut meta = txn.open_table(super::META).map_err(|e| e.to_string())?;
        if let Some(value) = committed {
            meta.insert("committed", value).map_err(|e| e.to_string())?;
        }
        for job in batch {
            match job {
                Job::Append { entries, .. } => {
                    for (index, value) in entries {
                        log.insert(*index, value.as_slice())
                            .map_err(|e| e.to_string())?;
                    }
                }
                Job::Meta { key, value, .. } => {
                    meta.insert(*key, value.as_slice())
                        .map_err(|e| e.to_string())?;
                }
                Job::Remove { from, to, .. } => {
                    log.retain_in(*from..=*to, |_, _| false)
                        .map_err(|e| e.to_string())?;
                }
            }
        }
    }
    txn.commit().map_err(|e| e.to_string())
}

impl RaftLogReader<RaftConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.cache().range(range).map(|(_, c)| c.entry()).collect()
    }

    /// The entries from `start` on, up to `end` or the byte bound
    /// ([`LogStore::limit_appends`]), whichever comes first; at least one
    /// if the range holds any.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let cache = self.cache();
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        for (_, cached) in cache.range(start..end) {
            bytes = bytes.saturating_add(cached.bytes);
            if bytes > self.append_bytes && !entries.is_empty() {
                break;
            }
            entries.push(cached.entry()?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<RaftConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<RaftConfig>, StorageError> {
        let purged = *self.purged.lock().unwrap_or_else(PoisonError::into_inner);
        let last = self.cache().last_key_value().map(|(_, c)| c.log_id);
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let value = self.db.encode(Place::Meta("vote"), vote)?;
        self.durable(|done| Job::Meta {
            key: "vote",
            value,
            done,
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.db.meta("vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let value = self.db.encode(Place::Meta("committed"), &committed)?;
        *self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(value);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let pending = self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match pending {
            Some(value) => self
                .db
                .decode::<Option<LogId>>(Place::Meta("committed"), &value),
            None => Ok(self.db.meta::<Option<LogId>>("committed")?.flatten()),
        }
    }

    async fn append<I>(
        &mut self,
        entries: I,
        flushed: LogFlushed<RaftConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        {
            let mut cache = self.cache();
            for entry in entries {
                let index = entry.log_id.index;
                let plain = rmp_serde::to_vec(&entry).map_err(io)?;
                let value = self.db.seal_plain(Place::Log(index), plain.clone());
                let bytes = value.len();
                encoded.push((index, value));
                cache.insert(index, Cached::new(&entry, plain, bytes));
            }
        }
        self.writer.send(Job::Append {
            entries: encoded,
            flushed,
        })
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let to = {
            let mut cache = self.cache();
            let to = cache.last_key_value().map_or(log_id.index, |(k, _)| *k);
            cache.retain(|index, _| *index < log_id.index);
            to
        };
        self.durable(|done| Job::Remove {
            from: log_id.index,
            to,
            done,
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let value = self.db.encode(Place::Meta("purged"), &log_id)?;
        *self.purged.lock().unwrap_or_else(PoisonError::into_inner) = Some(log_id);
        let from = {
            let mut cache = self.cache();
            let from = cache.first_key_value().map_or(0, |(k, _)| *k);
            cache.retain(|index, _| *index > log_id.index);
            from
        };
        self.durable(|done| Job::Meta {
            key: "purged",
            value,
            done,
        })
        .await?;
        self.durable(|done| Job::Remove {
            from,
            to: log_id.index,
            done,
        })
        .await
    }
}
