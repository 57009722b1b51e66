//! The kept results this node holds for their owners, by task, each beside
//! its read capability ([`Token`]). Owners free them
//! ([`FreeObjects`](super::wire::FreeObjects)); an owner's death frees all
//! of its. Reads share the bytes, they never copy them; a read names who
//! asks and is refused unless that is the owner or it presents the token.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use swarm_protocol::NodeId;

use super::error::TaskError;
use super::task::Blob;
use super::wire::{TaskId, Token};

/// Kept results by task. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Store {
    map: Arc<DashMap<TaskId, (Blob, Token)>>,
    /// Bytes held, summed.
    bytes: Arc<AtomicU64>,
}

impl Store {
    pub(crate) fn insert(&self, task: TaskId, value: Blob, token: Token) {
        let size = value.len() as u64;
        if let Some((old, _)) = self.map.insert(task, (value, token)) {
            self.bytes.fetch_sub(old.len() as u64, Ordering::Relaxed);
        }
        self.bytes.fetch_add(size, Ordering::Relaxed);
    }

    /// The kept result of `task` held here (on node `here`), for `reader`
    /// presenting `token`.
    ///
    /// # Errors
    ///
    /// [`TaskError::ObjectLost`] if it is not here (freed, never made);
    /// [`TaskError::Forbidden`] if `reader` is not its owner and `token`
    /// is not its token.
    pub(crate) fn read(
        &self,
        task: &TaskId,
        here: NodeId,
        reader: NodeId,
        token: &Token,
    ) -> Result<Blob, TaskError> {
        let Some(entry) = self.map.get(task) else {
            return Err(TaskError::ObjectLost {
                task: *task,
                node: here,
            });
        };
        let (value, kept) = entry.value();
        if reader != task.owner && !kept.admits(token) {
            return Err(TaskError::Forbidden { task: *task });
        }
        Ok(Arc::clone(value))
    }

    pub(crate) fn remove(&self, task: &TaskId) {
        if let Some((_, (old, _))) = self.map.remove(task) {
            self.bytes.fetch_sub(old.len() as u64, Ordering::Relaxed);
        }
    }

    /// Frees everything `owner` owns (it died or left).
    pub(crate) fn drop_owner(&self, owner: NodeId) {
        let mut freed = 0;
        self.map.retain(|task, (value, _)| {
            let keep = task.owner != owner;
            if !keep {
                freed += value.len() as u64;
            }
            keep
        });
        self.bytes.fetch_sub(freed, Ordering::Relaxed);
    }

    /// How many results are held, and their bytes.
    pub(crate) fn stats(&self) -> (usize, u64) {
        (self.map.len(), self.bytes.load(Ordering::Relaxed))
    }
}
