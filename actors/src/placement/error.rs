//! [`PlacementError`]: why a request was not placed, with its cause as a
//! type a caller can match ([`Infeasible`], [`Shortage`]). The head's
//! `ControlError` carries it whole.

use serde::{Deserialize, Serialize};
use swarm_protocol::NodeId;

/// Why a request was not placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    /// No node could ever hold it, even with nothing else placed: asking
    /// again will not help.
    #[error("unschedulable: {0}")]
    Unschedulable(Infeasible),
    /// A node could hold it, but not with what is free now: ask again
    /// later.
    #[error("no capacity now: {0}")]
    NoCapacity(Shortage),
}

/// Why no node could ever hold a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Infeasible {
    /// The cluster has no nodes.
    #[error("the cluster has no nodes")]
    NoNodes,
    /// Its placement requires a node that is not a member.
    #[error("node {} is not a member", .node.short())]
    NotAMember {
        /// The node.
        node: NodeId,
    },
    /// Its placement requires a label no node has.
    #[error("no node has the label {label:?}")]
    NoLabel {
        /// The label.
        label: String,
    },
    /// No node it may go to offers what it needs, even empty.
    #[error("no node can ever offer {missing}")]
    TooLarge {
        /// The first amount missing, e.g. `2 GPUs (at most 1)`.
        missing: String,
    },
    /// A strict-pack group's bundles together are more than any node offers.
    #[error("strict pack: no node can ever offer {missing}")]
    StrictPack {
        /// The first amount missing.
        missing: String,
    },
    /// A strict-spread group has more bundles than the cluster has nodes.
    #[error("strict spread of {bundles} bundles over {nodes} nodes")]
    StrictSpread {
        /// Its bundles.
        bundles: usize,
        /// The nodes.
        nodes: usize,
    },
    /// A drain: its placement requires the node being drained.
    #[error("its placement requires node {name}")]
    Pinned {
        /// The node.
        node: NodeId,
        /// Its certificate name (its short id before membership knows it).
        name: String,
    },
    /// A drain: its placement group's bundle is on the node being drained.
    #[error("its placement group {group:?} has bundle {index} on node {name}")]
    BundlePinned {
        /// The group.
        group: String,
        /// The bundle.
        index: usize,
        /// The node.
        node: NodeId,
        /// Its certificate name (its short id before membership knows it).
        name: String,
    },
    /// Tasks: every node that could run it handed it back (none has its
    /// function registered).
    #[error("every node that could run it handed it back")]
    HandedBack,
    /// Each resource is offered somewhere, but no single node offers all
    /// of them at once.
    #[error("no single node offers all of it at once")]
    NoSingleNode,
    /// Its resource amounts are not finite and non-negative.
    #[error("resource amounts must be finite and not negative: {need}")]
    BadAmounts {
        /// What it asked for.
        need: String,
    },
}

/// Why a request that some node could hold is not placed now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Shortage {
    /// Its placement requires a node that takes no new placements.
    #[error(
        "its placement requires node {}, which takes no new placements \
         (draining, suspect, down or without a lease)",
        .node.short()
    )]
    NodeClosed {
        /// The node.
        node: NodeId,
    },
    /// Its placement requires a label, and no node with it takes new
    /// placements.
    #[error(
        "its placement requires the label {label:?}, and no node with it takes new placements"
    )]
    LabelClosed {
        /// The label.
        label: String,
    },
    /// No node has enough free now.
    #[error("needs {missing} free{}", draining_note(*.draining))]
    Busy {
        /// The first amount missing, e.g. `1 CPUs (0.5 free)`.
        missing: String,
        /// How many of the nodes it may go to take no new placements.
        draining: usize,
    },
    /// A bundle of a group does not fit what is free.
    #[error("bundle {index} of {bundles} does not fit what is free")]
    Bundle {
        /// The bundle.
        index: usize,
        /// The group's bundles.
        bundles: usize,
    },
    /// A new head leader has not heard from any node yet: it does not know
    /// what is free.
    #[error("no node has renewed its lease with the new head leader yet")]
    LeasesUnsettled,
}

fn draining_note(draining: usize) -> String {
    if draining > 0 {
        format!(" ({draining} node(s) take no new placements)")
    } else {
        String::new()
    }
}
