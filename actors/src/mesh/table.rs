//! The link table: the live link to each peer, the peers' certificate
//! names, and the background dials under way. Senders on any thread read
//! it; only the Router writes links and names.

use dashmap::DashMap;
use swarm_protocol::NodeId;

use super::link::LinkHandle;

/// Links by peer, readable from any thread.
#[derive(Default)]
pub(super) struct LinkTable {
    links: DashMap<NodeId, LinkHandle>,
    /// Peer certificate names to ids.
    names: DashMap<String, NodeId>,
    /// Peers with a background dial under way.
    dialing: DashMap<NodeId, ()>,
}

impl LinkTable {
    /// The live link to `node`.
    pub(super) fn live(&self, node: NodeId) -> Option<LinkHandle> {
        self.links
            .get(&node)
            .filter(|link| !link.is_closed())
            .map(|link| link.clone())
    }

    pub(super) fn all(&self) -> Vec<LinkHandle> {
        self.links.iter().map(|l| l.value().clone()).collect()
    }

    pub(super) fn len(&self) -> usize {
        self.links.len()
    }

    pub(super) fn named(&self, name: &str) -> Option<NodeId> {
        self.names.get(name).map(|id| *id)
    }

    /// Router only: publishes the link to its peer.
    pub(super) fn insert(&self, link: LinkHandle) {
        self.names.insert(link.peer_name().to_owned(), link.peer());
        self.links.insert(link.peer(), link);
    }

    /// Router only: forgets the link `id` to `peer`, unless replaced since.
    pub(super) fn remove(&self, peer: NodeId, id: u64) {
        self.links.remove_if(&peer, |_, h| h.id() == id);
    }

    /// Router only: forgets every link.
    pub(super) fn clear(&self) {
        self.links.clear();
    }

    /// Marks a background dial to `node` as under way; false if one is.
    pub(super) fn begin_background_dial(&self, node: NodeId) -> bool {
        self.dialing.insert(node, ()).is_none()
    }

    /// The background dial to `node` ended.
    pub(super) fn end_background_dial(&self, node: NodeId) {
        self.dialing.remove(&node);
    }
}
