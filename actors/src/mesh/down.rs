//! The nodes membership holds down or departed. Sends to them fail at once
//! with `NodeDown`; it is read on every send, so the common case (nobody
//! down) costs one atomic load.

use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;
use swarm_protocol::NodeId;

/// A set of node ids with a cheap emptiness check.
#[derive(Debug, Default)]
pub(super) struct DownSet {
    nodes: DashMap<NodeId, ()>,
    /// `nodes.len()`, read without touching the map.
    count: AtomicUsize,
}

impl DownSet {
    pub(super) fn set(&self, node: NodeId, down: bool) {
        if down {
            if self.nodes.insert(node, ()).is_none() {
                self.count.fetch_add(1, Ordering::AcqRel);
            }
        } else if self.nodes.remove(&node).is_some() {
            self.count.fetch_sub(1, Ordering::AcqRel);
        }
    }

    pub(super) fn contains(&self, node: NodeId) -> bool {
        self.count.load(Ordering::Acquire) > 0 && self.nodes.contains_key(&node)
    }
}
