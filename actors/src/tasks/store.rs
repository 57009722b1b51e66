//! The kept results this node holds for their owners, by task. Owners
//! free them ([`FreeObjects`](super::wire::FreeObjects)); an owner's death
//! frees all of its. Reads share the bytes, they never copy them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use swarm_protocol::NodeId;

use super::task::Blob;
use super::wire::TaskId;

/// Kept results by task. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Store {
    map: Arc<DashMap<TaskId, Blob>>,
    /// Bytes held, summed.
    bytes: Arc<AtomicU64>,
}

impl Store {
    pub(crate) fn insert(&self, task: TaskId, value: Blob) {
        let size = value.len() as u64;
        if let Some(old) = self.map.insert(task, value) {
            self.bytes.fetch_sub(old.len() as u64, Ordering::Relaxed);
        }
        self.bytes.fetch_add(size, Ordering::Relaxed);
    }

    pub(crate) fn get(&self, task: &TaskId) -> Option<Blob> {
        self.map.get(task).map(|v| Arc::clone(v.value()))
    }

    pub(crate) fn remove(&self, task: &TaskId) {
        if let Some((_, old)) = self.map.remove(task) {
            self.bytes.fetch_sub(old.len() as u64, Ordering::Relaxed);
        }
    }

    /// Frees everything `owner` owns (it died or left).
    pub(crate) fn drop_owner(&self, owner: NodeId) {
        let mut freed = 0;
        self.map.retain(|task, value| {
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
