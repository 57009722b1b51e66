//! Where a task goes, as pure functions: [`choose`] takes what each node
//! offers, what this owner has in flight there, the task's needs and
//! placement, and answers a node, a wait, or "never". No actor, clock or
//! randomness of its own (the caller passes a roll); tests call it directly.
//!
//! The default policy is Ray's hybrid one: this node if the task fits
//! here; otherwise pack onto the first other node (by id) until its use
//! passes a threshold, then pick at random among the `k` least used. [`Policy::Spread`] always takes the least used node,
//! [`Policy::Pack`] the fullest that fits.

use swarm_protocol::NodeId;

use crate::placement::{Infeasible, Placement, ResourceSet};

/// How to choose among nodes that can run a task now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    /// Pack until use passes `threshold`, then one of the `top_k` least used.
    Hybrid {
        /// Use (0–1) below which nodes count as equally good.
        threshold: f64,
        /// How many of the least used nodes to choose among.
        top_k: usize,
    },
    /// The least used node.
    Spread,
    /// The fullest node that fits.
    Pack,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::Hybrid {
            threshold: 0.5,
            top_k: 3,
        }
    }
}

/// One node as a task owner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The node.
    pub node: NodeId,
    /// What it offers tasks in all.
    pub total: ResourceSet,
    /// What is in use there: this owner's tasks in flight (for the local
    /// node: what its own executor holds).
    pub used: ResourceSet,
    /// Tasks sent there beyond what fits (queued there, pipelined).
    pub ahead: usize,
    /// Its roles, for [`Placement::Label`].
    pub labels: Vec<String>,
    /// False while it is suspect or leaving: nothing new goes there.
    pub schedulable: bool,
}

/// What a task asks of the policy.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// What it holds while it runs.
    pub need: &'a ResourceSet,
    /// Where it may go (`None`: the policy decides).
    pub placement: Option<&'a Placement>,
    /// The node choosing (it runs tasks itself when it can).
    pub local: NodeId,
    /// Where its largest argument is (run there if it fits now).
    pub near: Option<NodeId>,
    /// Nodes it must not go to (they handed it back).
    pub skip: &'a [NodeId],
    /// How many tasks may wait in a node's queue beyond what fits there.
    pub pipeline: usize,
}

/// The policy's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    /// Send it there.
    Run(NodeId),
    /// Some node could run it, but none can take it now.
    Wait {
        /// What it waits for.
        reason: String,
    },
    /// No node could ever run it.
    Unschedulable {
        /// What no node offers.
        cause: Infeasible,
    },
}

/// Where `request` goes among `nodes`.
pub fn choose(request: &Request<'_>, nodes: &[Candidate], policy: Policy, roll: u64) -> Choice {
    let need = request.need;
    let allowed: Vec<&Candidate> = nodes
        .iter()
        .filter(|n| !request.skip.contains(&n.node))
        .filter(|n| match request.placement {
            Some(Placement::Node { node, hard: true }) => n.node == *node,
            Some(Placement::Label { label, hard: true }) => n.labels.contains(label),
            _ => true,
        })
        .collect();
    let feasible: Vec<&Candidate> = allowed
        .iter()
        .copied()
        .filter(|n| need.fits_in(&n.total))
        .collect();
    if feasible.is_empty() {
        return Choice::Unschedulable {
            cause: infeasible(request, &allowed),
        };
    }
    let now: Vec<&Candidate> = feasible
        .iter()
        .copied()
        .filter(|n| n.schedulable && need.fits_in(&n.total.minus(&n.used)))
        .collect();
    if let Some(near) = request.near {
        if now.iter().any(|n| n.node == near) {
            return Choice::Run(near);
        }
    }
    let preferred: Vec<&Candidate> = match request.placement {
        Some(Placement::Node { node, hard: false }) => {
            now.iter().copied().filter(|n| n.node == *node).collect()
        }
        Some(Placement::Label { label, hard: false }) => now
            .iter()
            .copied()
            .filter(|n| n.labels.contains(label))
            .collect(),
        _ => Vec::new(),
    };
    let pool = if preferred.is_empty() { now } else { preferred };
    let policy = match request.placement {
        Some(Placement::Spread) => Policy::Spread,
        Some(Placement::Pack) => Policy::Pack,
        _ => policy,
    };
    if let Some(node) = pick(&pool, request, policy, roll) {
        return Choice::Run(node);
    }
    // Nothing fits now: queue behind running work where the queue is shortest.
    let queue = feasible
        .iter()
        .filter(|n| n.schedulable && n.ahead < request.pipeline)
        .min_by(|a, b| {
            a.ahead
                .cmp(&b.ahead)
                .then(use_after(a, need).total_cmp(&use_after(b, need)))
                .then(local_first(a, b, request.local))
        });
    if let Some(n) = queue {
        return Choice::Run(n.node);
    }
    let busy = feasible.iter().filter(|n| n.schedulable).count();
    Choice::Wait {
        reason: if busy == 0 {
            format!(
                "the {} node(s) that could run it take no new work",
                feasible.len()
            )
        } else {
            let missing = feasible
                .iter()
                .find_map(|n| need.missing(&n.total.minus(&n.used)))
                .unwrap_or_default();
            format!("waiting for {missing} on one of {busy} node(s)")
        },
    }
}

/// The node `policy` takes among `pool` (all fit now).
fn pick(pool: &[&Candidate], request: &Request<'_>, policy: Policy, roll: u64) -> Option<NodeId> {
    let need = request.need;
    let local = request.local;
    match policy {
        Policy::Pack => pool
            .iter()
            .max_by(|a, b| {
                use_after(a, need)
                    .total_cmp(&use_after(b, need))
                    .then(local_first(b, a, local))
            })
            .map(|n| n.node),
        Policy::Spread => pool
            .iter()
            .min_by(|a, b| {
                use_after(a, need)
                    .total_cmp(&use_after(b, need))
                    .then(local_first(a, b, local))
            })
            .map(|n| n.node),
        Policy::Hybrid { threshold, top_k } => {
            // Local first: a task runs where it was submitted if it fits.
            if pool.iter().any(|n| n.node == local) {
                return Some(local);
            }
            // Below the threshold every node scores the same, so the first
            // in order (this node, then by id) takes the task: packing.
            let score = |n: &Candidate| use_after(n, need).max(threshold);
            let mut ranked: Vec<&Candidate> = pool.to_vec();
            ranked.sort_by(|a, b| score(a).total_cmp(&score(b)).then(local_first(a, b, local)));
            let first = ranked.first()?;
            if score(first) <= threshold {
                return Some(first.node);
            }
            let k = top_k.clamp(1, ranked.len());
            let index = usize::try_from(roll % k as u64).unwrap_or(0);
            ranked.get(index).map(|n| n.node)
        }
    }
}

/// How full `n` would be with `need` added (0 = idle, 1 = full).
fn use_after(n: &Candidate, need: &ResourceSet) -> f64 {
    n.total.minus(&n.used).minus(need).fullness(&n.total)
}

/// Orders `local` before other nodes, then by id.
fn local_first(a: &Candidate, b: &Candidate, local: NodeId) -> std::cmp::Ordering {
    (b.node == local)
        .cmp(&(a.node == local))
        .then(a.node.cmp(&b.node))
}

/// Why no node in `allowed` could ever run the request.
fn infeasible(request: &Request<'_>, allowed: &[&Candidate]) -> Infeasible {
    if allowed.is_empty() {
        return match request.placement {
            Some(Placement::Node { node, hard: true }) => Infeasible::NotAMember { node: *node },
            Some(Placement::Label { label, hard: true }) => Infeasible::NoLabel {
                label: label.clone(),
            },
            _ if !request.skip.is_empty() => Infeasible::HandedBack,
            _ => Infeasible::NoNodes,
        };
    }
    // Name a resource no node has enough of, against the most any offers.
    let mut most = ResourceSet::default();
    for n in allowed {
        most.cpus = most.cpus.max(n.total.cpus);
        most.memory = most.memory.max(n.total.memory);
        most.gpus = most.gpus.max(n.total.gpus);
        for (name, amount) in &n.total.custom {
            let m = most.custom.entry(name.clone()).or_default();
            *m = m.max(*amount);
        }
    }
    match request.need.shortfall(&most) {
        Some(short) => Infeasible::TooLarge {
            missing: short.to_string(),
        },
        None => Infeasible::NoSingleNode,
    }
}

#[cfg(test)]
mod tests;
