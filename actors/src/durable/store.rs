//! Where durable actors' journals live: the [`JournalStore`] trait, and
//! which store each node's durable actors use.
//!
//! A backend implements three calls, each one atomic step at the store
//! (no read-then-write across steps):
//!
//! - [`JournalStore::claim`] records `epoch` as the newest for the name
//!   (refusing if a newer one is recorded), hands out a new claim, and
//!   returns the latest snapshot and the events after it. Recovery is a
//!   write: from then on the writes of any older incarnation, or of an
//!   older claim of the same one, are refused;
//! - [`JournalStore::append`] writes events if the writer is the newest
//!   claim and they start at the journal's next sequence number;
//! - [`JournalStore::snapshot`] saves a snapshot on the same conditions,
//!   and may drop the events it covers.
//!
//! The embedded store ([`super::Embedded`]) keeps journals in the head
//! group's replicated log; another backend (a SQL database, a cloud
//! key-value store) is one more implementation of this trait, installed
//! with `Node::set_journal_store`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use swarm_protocol::NodeId;

pub use crate::head::wire::journal::{Recovery, StoreError, Stored, Writer};

/// What a store's calls return (run on the calling actor's arbiter).
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>>>>;

/// A journal store: claims, appends and snapshots, each conditional on
/// the writer being the newest claim of the name.
pub trait JournalStore: Send + Sync + 'static {
    /// The backend's name (`embedded`, `postgres`...), for operators: the
    /// console's actor detail and the `backend` label of `/metrics` (so
    /// keep it short and fixed: one label value per backend).
    fn backend(&self) -> &'static str {
        "other"
    }

    /// Claims `name`'s journal for `epoch` and reads it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fenced`] if a newer epoch claimed it,
    /// [`StoreError::Refused`] if the store does not let this node write
    /// it, [`StoreError::Unavailable`].
    fn claim(&self, name: &str, epoch: u64) -> StoreFuture<Recovery>;

    /// Appends `events` (records) from `first_seq` on; answers the next
    /// sequence number.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fenced`], [`StoreError::Conflict`] if `first_seq` is
    /// not the next, [`StoreError::TooLarge`], [`StoreError::Unavailable`].
    fn append(&self, writer: &Writer, first_seq: u64, events: Vec<Vec<u8>>) -> StoreFuture<u64>;

    /// Saves a snapshot (a record) covering the events up to `seq`.
    ///
    /// # Errors
    ///
    /// As [`JournalStore::append`].
    fn snapshot(&self, writer: &Writer, seq: u64, bytes: Vec<u8>) -> StoreFuture<()>;
}

type Stores = RwLock<HashMap<NodeId, Arc<dyn JournalStore>>>;

fn stores() -> &'static Stores {
    static STORES: OnceLock<Stores> = OnceLock::new();
    STORES.get_or_init(Stores::default)
}

/// Sets the store of `node`'s durable actors (replacing any).
pub(crate) fn install(node: NodeId, store: Arc<dyn JournalStore>) {
    stores()
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(node, store);
}

/// Forgets `node`'s store (it shut down).
pub(crate) fn uninstall(node: NodeId) {
    stores()
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&node);
}

/// The store of `node`'s durable actors.
pub(crate) fn store_of(node: NodeId) -> Option<Arc<dyn JournalStore>> {
    stores()
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&node)
        .cloned()
}
