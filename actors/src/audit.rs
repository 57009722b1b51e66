//! The audit log: operator logins (accepted and refused), operators'
//! commands (messages whose [`Access`](crate::Access) class is audited),
//! and policy refusals, appended to a
//! sealed, append-only file per node.
//!
//! ```text
//! file   = record*
//! record = length u32 BE | sealed value (kind Audit, context = index u64 BE)
//! ```
//!
//! Each record is sealed under the node's keyring and bound to its index,
//! so a record altered, moved or removed from the middle fails on read,
//! naming the file and the record. (Records cut from the end are not
//! detected: the file does not know its own length.) A writer thread
//! appends and syncs; if it falls behind by [`QUEUE`] records, further
//! records are counted as dropped rather than slowing the node.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use swarm_protocol::sealed::{Kind, SealedError};

use crate::at_rest::{AtRestError, Keyring};

/// Records waiting for the writer at most.
pub const QUEUE: usize = 4_096;

/// The largest record a reader accepts.
const MAX_RECORD: usize = 1 << 20;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// An operator logged in.
    Login,
    /// An operator's login was refused (wrong, replayed, locked out).
    LoginRefused,
    /// An operator certificate sent a command that changes the cluster.
    Command,
    /// The policy refused a message.
    Forbidden,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When, Unix milliseconds.
    pub at_ms: u64,
    /// What happened.
    pub kind: AuditKind,
    /// Who: the certificate's name.
    pub who: String,
    /// Its serial.
    pub serial: u64,
    /// Its roles.
    pub roles: Vec<String>,
    /// Where it came from (the link's remote address).
    pub source: String,
    /// The message tag, or the command.
    pub tag: String,
    /// The target actor, if any.
    pub target: String,
    /// Details: the refusal's reason, the outcome.
    pub detail: String,
}

/// A node's audit log writer. Cheap to clone.
#[derive(Clone)]
pub struct Audit {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("path", &self.inner.path)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

struct Inner {
    path: PathBuf,
    /// Boxed: the queue's slots are allocated (and touched) up front.
    queue: mpsc::SyncSender<Box<AuditRecord>>,
    dropped: AtomicU64,
}

impl Audit {
    /// Opens (or creates) the audit log at `path`, sealed under `keyring`,
    /// and starts its writer thread. Existing records are counted by their
    /// lengths (not opened: start-up does not grow with the log) so that
    /// new ones continue the index; a record torn by a crash mid-append is
    /// cut off first.
    ///
    /// # Errors
    ///
    /// If the file cannot be read, cut or opened for appending.
    pub fn open(path: &Path, keyring: Keyring) -> Result<Self, AtRestError> {
        let next = whole_records(path)?;
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let file = options.open(path).map_err(|source| AtRestError::Write {
            path: path.to_owned(),
            source,
        })?;
        let (queue, records) = mpsc::sync_channel(QUEUE);
        let owned = path.to_owned();
        std::thread::Builder::new()
            .name("swarm-audit".into())
            .spawn(move || write_loop(&owned, file, &keyring, next, &records))
            .map_err(|source| AtRestError::Write {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                queue,
                dropped: AtomicU64::new(0),
            }),
        })
    }

    /// Appends a record (by the writer thread, soon); counted as dropped if
    /// the writer is [`QUEUE`] records behind.
    pub fn record(&self, record: AuditRecord) {
        if self.inner.queue.try_send(Box::new(record)).is_err() {
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

/// How many whole records the log holds; a torn last record is cut off.
fn whole_records(path: &Path) -> Result<u64, AtRestError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(AtRestError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let (mut at, mut count) = (0usize, 0u64);
    while let Some(len) = bytes.get(at..at + 4) {
        let len = u32::from_be_bytes(len.try_into().unwrap_or_default()) as usize;
        if bytes.len() < at + 4 + len {
            break;
        }
        at += 4 + len;
        count += 1;
    }
    if at < bytes.len() {
        tracing::warn!(path = %path.display(), bytes = bytes.len() - at, "the audit log ends in a torn record (a crash while appending): cutting it off");
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(at as u64));
        file.map_err(|source| AtRestError::Write {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(count)
}

fn write_loop(
    path: &Path,
    mut file: File,
    keyring: &Keyring,
    mut next: u64,
    records: &mpsc::Receiver<Box<AuditRecord>>,
) {
    while let Ok(first) = records.recv() {
        let mut out = Vec::new();
        for record in std::iter::once(first).chain(records.try_iter()) {
            let Ok(plain) = rmp_serde::to_vec_named(&*record) else {
                continue;
            };
            let sealed = keyring.seal(Kind::Audit, &next.to_be_bytes(), &plain);
            let Ok(len) = u32::try_from(sealed.len()) else {
                continue;
            };
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&sealed);
            next += 1;
        }
        if let Err(e) = file.write_all(&out).and_then(|()| file.sync_data()) {
            tracing::error!(path = %path.display(), error = %e, "cannot append to the audit log");
        }
    }
}

/// Reads every record of an audit log; a missing file has none.
///
/// # Errors
///
/// If the file cannot be read, or a record is truncated, altered, moved or
/// does not open: the error names the file and the record's index.
pub fn read(path: &Path, keyring: &Keyring) -> Result<Vec<AuditRecord>, AtRestError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)
                .map_err(|source| AtRestError::Read {
                    path: path.to_owned(),
                    source,
                })?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(AtRestError::Read {
                path: path.to_owned(),
                source,
            })
        }
    }
    let bad = |index: u64, source: SealedError| AtRestError::Record {
        path: path.to_owned(),
        index,
        source,
    };
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    let mut index = 0u64;
    while !rest.is_empty() {
        let (len, body) = rest
            .split_at_checked(4)
            .ok_or_else(|| bad(index, SealedError::Truncated { len: rest.len() }))?;
        let len = u32::from_be_bytes(len.try_into().unwrap_or_default()) as usize;
        if len > MAX_RECORD {
            return Err(bad(index, SealedError::Damaged));
        }
        let (sealed, after) = body
            .split_at_checked(len)
            .ok_or_else(|| bad(index, SealedError::Truncated { len: body.len() }))?;
        let plain = keyring
            .open_value(Kind::Audit, &index.to_be_bytes(), sealed)
            .map_err(|e| bad(index, e))?;
        let record = rmp_serde::from_slice(&plain).map_err(|_| bad(index, SealedError::Damaged))?;
        out.push(record);
        rest = after;
        index += 1;
    }
    Ok(out)
}

/// Where a room records what it audits: the node's audit log, or nowhere.
/// Cheap to clone; node.rs hands one to each room that audits.
#[derive(Debug, Clone, Default)]
pub(crate) struct Trail(Option<Audit>);

impl Trail {
    /// Records into `audit`, if the node keeps one.
    pub(crate) fn new(audit: Option<Audit>) -> Self {
        Self(audit)
    }

    /// Appends what `record` makes (made only if the node keeps a log).
    pub(crate) fn record(&self, record: impl FnOnce() -> AuditRecord) {
        if let Some(audit) = &self.0 {
            audit.record(record());
        }
    }
}

#[cfg(test)]
mod tests;
