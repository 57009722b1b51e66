//! Placement decisions as pure functions: which node an actor goes to, and
//! where the bundles of a placement group go, given what each node offers
//! and what is reserved on it already. No actor, clock or I/O: the
//! placement supervisor (control plane) feeds them the head's view and
//! applies the answer; tests call them directly.
//!
//! - [`place`] puts one request on one node by a [`Placement`] strategy.
//! - [`place_group`] puts every bundle of a group, or none
//!   ([`GroupStrategy`]: pack, spread, strict pack, strict spread).
//! - A request no node could ever hold is [`PlacementError::Unschedulable`]
//!   (never a silent wait); one that would fit an idle cluster but not what
//!   is free now is [`PlacementError::NoCapacity`].
//!
//! An actor that asks for no resources is placed by count (the node with
//! the fewest placed actors), whatever the strategy, and heads take
//! actors only when no other node can (see [`Placement`]). Ties are broken
//! by node id, so the same view always gives the same answer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use swarm_protocol::gossip::meta::Resources;
use swarm_protocol::NodeId;

mod error;

pub use error::{Infeasible, PlacementError, Shortage};

/// Amounts of resources: what a request needs, a node offers, or is reserved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceSet {
    /// Logical CPUs.
    pub cpus: f64,
    /// Memory, bytes.
    pub memory: u64,
    /// GPUs.
    pub gpus: u32,
    /// Custom resources by name (`tpu`, ...).
    pub custom: BTreeMap<String, f64>,
}

/// Slack for sums of fractional amounts (0.1 + 0.2 must fit in 0.3).
const EPSILON: f64 = 1e-9;

impl ResourceSet {
    /// `cpus` CPUs and nothing else.
    pub fn cpus(cpus: f64) -> Self {
        Self {
            cpus,
            ..Self::default()
        }
    }

    /// Adds `amount` of the custom resource `name`.
    pub fn with(mut self, name: &str, amount: f64) -> Self {
        *self.custom.entry(name.to_owned()).or_default() += amount;
        self
    }

    /// Whether every amount is a finite number, zero or more (amounts from
    /// the network or a caller are checked before any accounting).
    pub fn is_valid(&self) -> bool {
        let ok = |a: f64| a.is_finite() && a >= 0.0;
        ok(self.cpus) && self.custom.values().all(|a| ok(*a))
    }

    /// Whether it asks for nothing (within rounding).
    pub fn is_empty(&self) -> bool {
        self.cpus <= EPSILON
            && self.memory == 0
            && self.gpus == 0
            && self.custom.values().all(|a| *a <= EPSILON)
    }

    /// Whether `self` fits in `available`.
    pub fn fits_in(&self, available: &ResourceSet) -> bool {
        self.cpus <= available.cpus + EPSILON
            && self.memory <= available.memory
            && self.gpus <= available.gpus
            && self.custom.iter().all(|(name, amount)| {
                *amount <= EPSILON
                    || available
                        .custom
                        .get(name)
                        .is_some_and(|have| *amount <= *have + EPSILON)
            })
    }

    /// The first amount of `self` that does not fit in `available`, named
    /// for an error message: `4 CPUs (at most 2)`.
    pub(crate) fn shortfall(&self, available: &ResourceSet) -> Option<String> {
        self.first_short(available)
            .map(|(need, what, have)| format!("{need} {what} (at most {have})"))
    }

    /// The first amount of `self` that is not free in `free`, named for a
    /// "waiting for" message: `1 CPUs (0.5 free)`.
    pub(crate) fn missing(&self, free: &ResourceSet) -> Option<String> {
        self.first_short(free)
            .map(|(need, what, have)| format!("{need} {what} ({have} free)"))
    }

    /// (amount needed, what, amount there) of the first resource short.
    fn first_short(&self, available: &ResourceSet) -> Option<(String, String, String)> {
        let short = |need: String, what: &str, have: String| Some((need, what.to_owned(), have));
        if self.cpus > available.cpus + EPSILON {
            return short(self.cpus.to_string(), "CPUs", available.cpus.to_string());
        }
        if self.memory > available.memory {
            return short(
                self.memory.to_string(),
                "bytes of memory",
                available.memory.to_string(),
            );
        }
        if self.gpus > available.gpus {
            return short(self.gpus.to_string(), "GPUs", available.gpus.to_string());
        }
        self.custom.iter().find_map(|(name, amount)| {
            let have = available.custom.get(name).copied().unwrap_or(0.0);
            (*amount > have + EPSILON).then(|| (amount.to_string(), name.clone(), have.to_string()))
        })
    }

    /// `self + other`.
    pub fn plus(&self, other: &ResourceSet) -> ResourceSet {
        let mut sum = self.clone();
        sum.cpus += other.cpus;
        sum.memory = sum.memory.saturating_add(other.memory);
        sum.gpus = sum.gpus.saturating_add(other.gpus);
        for (name, amount) in &other.custom {
            *sum.custom.entry(name.clone()).or_default() += amount;
        }
        sum
    }

    /// `self - other`, never below zero.
    pub fn minus(&self, other: &ResourceSet) -> ResourceSet {
        let mut rest = self.clone();
        rest.cpus = (rest.cpus - other.cpus).max(0.0);
        rest.memory = rest.memory.saturating_sub(other.memory);
        rest.gpus = rest.gpus.saturating_sub(other.gpus);
        for (name, amount) in &other.custom {
            let have = rest.custom.entry(name.clone()).or_default();
            *have = (*have - amount).max(0.0);
        }
        rest
    }

    /// A single number for "how full": the largest used fraction of any
    /// resource the node has.
    pub(crate) fn fullness(&self, total: &ResourceSet) -> f64 {
        let fraction = |free: f64, total: f64| {
            if total <= EPSILON {
                0.0
            } else {
                1.0 - free / total
            }
        };
        let mut worst = fraction(self.cpus, total.cpus)
            .max(fraction(self.memory as f64, total.memory as f64))
            .max(fraction(f64::from(self.gpus), f64::from(total.gpus)));
        for (name, amount) in &total.custom {
            let free = self.custom.get(name).copied().unwrap_or(0.0);
            worst = worst.max(fraction(free, *amount));
        }
        worst
    }
}

impl From<&Resources> for ResourceSet {
    fn from(r: &Resources) -> Self {
        Self {
            cpus: r.cpus,
            memory: r.memory,
            gpus: r.gpus,
            custom: r.custom.iter().cloned().collect(),
        }
    }
}

/// One node as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    /// The node.
    pub node: NodeId,
    /// What it offers in all.
    pub total: ResourceSet,
    /// What the head has reserved on it already.
    pub reserved: ResourceSet,
    /// Its labels (for [`Placement::Label`]); [`HEAD_LABEL`] marks a head,
    /// which takes actors only when no other node can.
    pub labels: Vec<String>,
    /// Placed actors on it now, decisions in flight included: what
    /// [`Placement::Spread`] and actors that ask for no resources balance.
    pub placed: usize,
    /// False while it drains, is suspect or down: nothing new goes there.
    pub schedulable: bool,
}

impl NodeView {
    fn free(&self) -> ResourceSet {
        self.total.minus(&self.reserved)
    }

    fn is_head(&self) -> bool {
        self.labels.iter().any(|l| l == HEAD_LABEL)
    }
}

/// The label (certificate role) of a head: a node that runs a replica of
/// the control plane's Raft log.
pub const HEAD_LABEL: &str = "head";

/// Where one actor goes.
///
/// Pack and Spread are about resources. An actor that asks for none
/// ([`ResourceSet::is_empty`]) has nothing to pack: under every strategy
/// it goes to the node with the fewest placed actors among those it may
/// go to, so N such actors are balanced by count (within one) over the
/// nodes that can host them, never piled on one node. Pack with resources
/// packs (the fullest node that fits), its ties going to the node with
/// the fewest actors.
///
/// Heads (nodes labelled [`HEAD_LABEL`]) are the last resort: an actor goes
/// to a head only if no other node it may go to can take it now (a
/// cluster of heads only, workers draining, down or full, its type only on
/// heads), or if its placement names that head or the `head` label. A
/// head's process also runs the control plane (the Raft log, lease
/// renewals, and on the leader every placement): its memory and CPU are
/// the whole cluster's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Placement {
    /// Fill nodes before using new ones (the fullest node that fits; ties
    /// and actors that ask for no resources: the fewest placed actors).
    #[default]
    Pack,
    /// Even out: the node with the fewest placed actors that fits.
    Spread,
    /// On this node; `hard`: there or nowhere, else there if it fits.
    Node {
        /// The node.
        node: NodeId,
        /// Refuse rather than place elsewhere.
        hard: bool,
    },
    /// On a node with this label; `hard`: only there.
    Label {
        /// The label.
        label: String,
        /// Refuse rather than place on a node without it.
        hard: bool,
    },
}

/// Where the bundles of a placement group go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum GroupStrategy {
    /// As few nodes as possible.
    #[default]
    Pack,
    /// As many nodes as possible.
    Spread,
    /// All bundles on one node, or none.
    StrictPack,
    /// Every bundle on a different node, or none.
    StrictSpread,
}

/// The node `request` goes to under `placement`.
///
/// # Errors
///
/// [`PlacementError::Unschedulable`] if no node that the strategy allows
/// could ever hold it; [`PlacementError::NoCapacity`] if one could, but
/// not now.
pub fn place(
    request: &ResourceSet,
    placement: &Placement,
    nodes: &[NodeView],
) -> Result<NodeId, PlacementError> {
    let allowed: Vec<&NodeView> = match placement {
        Placement::Node { node, hard: true } => nodes.iter().filter(|n| n.node == *node).collect(),
        Placement::Label { label, hard: true } => {
            nodes.iter().filter(|n| n.labels.contains(label)).collect()
        }
        _ => nodes.iter().collect(),
    };
    if allowed.is_empty() {
        return Err(PlacementError::Unschedulable(match placement {
            Placement::Node { node, .. } => Infeasible::NotAMember { node: *node },
            Placement::Label { label, .. } => Infeasible::NoLabel {
                label: label.clone(),
            },
            _ => Infeasible::NoNodes,
        }));
    }
    check_feasible(request, &allowed)?;
    let fits: Vec<&NodeView> = allowed
        .iter()
        .copied()
        .filter(|n| n.schedulable && request.fits_in(&n.free()))
        .collect();
    let preferred: Vec<&NodeView> = match placement {
        Placement::Node { node, hard: false } => {
            fits.iter().copied().filter(|n| n.node == *node).collect()
        }
        Placement::Label { label, hard: false } => fits
            .iter()
            .copied()
            .filter(|n| n.labels.contains(label))
            .collect(),
        _ => Vec::new(),
    };
    let pool = if preferred.is_empty() {
        heads_last(fits)
    } else {
        preferred
    };
    let chosen = if request.is_empty() || *placement == Placement::Spread {
        pool.iter().min_by(|a, b| fewest_actors(a, b))
    } else {
        pool.iter().max_by(|a, b| {
            let after = |n: &NodeView| n.free().minus(request).fullness(&n.total);
            after(a).total_cmp(&after(b)).then(fewest_actors(b, a))
        })
    };
    chosen
        .map(|n| n.node)
        .ok_or_else(|| PlacementError::NoCapacity(no_capacity(request, placement, &allowed)))
}

/// `pool` without its heads, unless it holds nothing else.
fn heads_last(pool: Vec<&NodeView>) -> Vec<&NodeView> {
    if pool.iter().all(|n| n.is_head()) {
        return pool;
    }
    pool.into_iter().filter(|n| !n.is_head()).collect()
}

/// Orders nodes by placed actors, then by id: the first takes the next.
fn fewest_actors(a: &NodeView, b: &NodeView) -> std::cmp::Ordering {
    a.placed.cmp(&b.placed).then(a.node.cmp(&b.node))
}

/// Unschedulable unless some allowed node could hold `request` when empty.
fn check_feasible(request: &ResourceSet, allowed: &[&NodeView]) -> Result<(), PlacementError> {
    if allowed.iter().any(|n| request.fits_in(&n.total)) {
        return Ok(());
    }
    let largest = allowed
        .iter()
        .filter_map(|n| request.shortfall(&n.total))
        .next()
        .unwrap_or_default();
    Err(PlacementError::Unschedulable(Infeasible::TooLarge {
        missing: largest,
    }))
}

/// What is missing for `request`. When a hard constraint allows only
/// nodes that take no new placements, that constraint is the reason (a
/// drained node's actor pinned to it, say), not the resources.
fn no_capacity(request: &ResourceSet, placement: &Placement, allowed: &[&NodeView]) -> Shortage {
    let draining = allowed.iter().filter(|n| !n.schedulable).count();
    if draining == allowed.len() {
        match placement {
            Placement::Node { node, hard: true } => return Shortage::NodeClosed { node: *node },
            Placement::Label { label, hard: true } => {
                return Shortage::LabelClosed {
                    label: label.clone(),
                }
            }
            _ => {}
        }
    }
    let missing = allowed
        .iter()
        .filter(|n| n.schedulable)
        .find_map(|n| request.shortfall(&n.free()))
        .unwrap_or_else(|| "a schedulable node".to_owned());
    Shortage::Busy { missing, draining }
}

/// The node of each bundle of a placement group, in bundle order: all of
/// them, or an error and nothing.
///
/// # Errors
///
/// [`PlacementError::Unschedulable`] if the group could never be placed
/// (a bundle larger than any node, a strict pack larger than any node, a
/// strict spread over more bundles than nodes); [`PlacementError::NoCapacity`]
/// if it could be on an idle cluster but not now.
pub fn place_group(
    bundles: &[ResourceSet],
    strategy: GroupStrategy,
    nodes: &[NodeView],
) -> Result<Vec<NodeId>, PlacementError> {
    if bundles.is_empty() {
        return Ok(Vec::new());
    }
    let all: Vec<&NodeView> = nodes.iter().collect();
    for bundle in bundles {
        check_feasible(bundle, &all)?;
    }
    let sum = bundles
        .iter()
        .fold(ResourceSet::default(), |sum, b| sum.plus(b));
    match strategy {
        GroupStrategy::StrictPack => {
            check_feasible(&sum, &all).map_err(|e| match e {
                PlacementError::Unschedulable(Infeasible::TooLarge { missing }) => {
                    PlacementError::Unschedulable(Infeasible::StrictPack { missing })
                }
                other => other,
            })?;
            let node = place(&sum, &Placement::Pack, nodes)?;
            Ok(vec![node; bundles.len()])
        }
        GroupStrategy::StrictSpread | GroupStrategy::Spread => {
            let strict = strategy == GroupStrategy::StrictSpread;
            if strict && bundles.len() > nodes.len() {
                return Err(PlacementError::Unschedulable(Infeasible::StrictSpread {
                    bundles: bundles.len(),
                    nodes: nodes.len(),
                }));
            }
            assign(bundles, nodes, |free, used, node| {
                // Fewest bundles of this group first, then the emptiest node.
                let uses = used.iter().filter(|u| **u == node.node).count();
                if strict && uses > 0 {
                    return None;
                }
                Some((uses, free.fullness(&node.total)))
            })
        }
        GroupStrategy::Pack => {
            if let Ok(node) = place(&sum, &Placement::Pack, nodes) {
                return Ok(vec![node; bundles.len()]);
            }
            assign(bundles, nodes, |free, used, node| {
                // Nodes already holding bundles of this group first, then the fullest.
                let uses = used.iter().filter(|u| **u == node.node).count();
                Some((usize::MAX - uses, -free.fullness(&node.total)))
            })
        }
    }
}

/// Assigns bundles one by one (largest first) to the schedulable node that
/// fits and scores lowest, updating a scratch copy of what is free; all or
/// nothing.
fn assign(
    bundles: &[ResourceSet],
    nodes: &[NodeView],
    score: impl Fn(&ResourceSet, &[NodeId], &NodeView) -> Option<(usize, f64)>,
) -> Result<Vec<NodeId>, PlacementError> {
    let mut free: Vec<ResourceSet> = nodes.iter().map(NodeView::free).collect();
    let mut order: Vec<usize> = (0..bundles.len()).collect();
    let size = |b: &ResourceSet| (b.gpus, b.cpus, b.memory);
    order.sort_by(|a, b| {
        let (x, y) = (size(&bundles[*b]), size(&bundles[*a]));
        x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)).then(x.2.cmp(&y.2))
    });
    let mut chosen: Vec<Option<NodeId>> = vec![None; bundles.len()];
    let mut used: Vec<NodeId> = Vec::new();
    for i in order {
        let bundle = &bundles[i];
        let best = nodes
            .iter()
            .enumerate()
            .filter(|(j, n)| n.schedulable && bundle.fits_in(&free[*j]))
            .filter_map(|(j, n)| score(&free[j], &used, n).map(|s| (s, j)))
            .min_by(|((a1, a2), ja), ((b1, b2), jb)| {
                a1.cmp(b1)
                    .then(a2.total_cmp(b2))
                    .then(nodes[*ja].node.cmp(&nodes[*jb].node))
            });
        let Some((_, j)) = best else {
            return Err(PlacementError::NoCapacity(Shortage::Bundle {
                index: i,
                bundles: bundles.len(),
            }));
        };
        free[j] = free[j].minus(bundle);
        used.push(nodes[j].node);
        chosen[i] = Some(nodes[j].node);
    }
    Ok(chosen.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests;
