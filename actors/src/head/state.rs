//! The head's replicated state: what must not be lost or doubled. Every
//! head applies the same [`Command`]s in the same order to a
//! [`ControlState`]; applying is a pure function, tested without a cluster.
//!
//! - named actors: type, arguments, spec, node, epoch, state;
//! - resource reservations per node (derived, kept up to date on apply);
//! - placement groups (all bundles reserved at once, or none);
//! - drain marks.
//!
//! Epochs come from one counter, so a newer placement always has a larger
//! epoch than any before it, cluster-wide.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use swarm_protocol::NodeId;

pub(crate) use super::wire::ActorSpec;
use super::wire::GroupRefusal;
use crate::placement::{GroupStrategy, NodeView, ResourceSet};

/// Where a named actor stands, as the head records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum RecordState {
    /// Placed on a node under an epoch.
    Placed,
    /// Not running anywhere, for this reason (escalated, no node fits).
    Failed {
        /// Why.
        reason: String,
    },
    /// Passivated: stopped after it was idle, its state kept in its
    /// journal. No node runs it or holds capacity for it, nothing moves
    /// it; the next call places it again (`node` and `epoch` stay those
    /// of its last placement).
    Passive,
}

/// One named actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ActorRecord {
    /// What it is.
    pub(crate) spec: ActorSpec,
    /// The node it is placed on (the last one, once failed).
    pub(crate) node: NodeId,
    /// Its placement's epoch.
    pub(crate) epoch: u64,
    /// Placed or failed.
    pub(crate) state: RecordState,
    /// How often the head placed it (1 on first placement).
    pub(crate) placements: u64,
}

/// A placement group: bundles reserved together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct GroupRecord {
    /// How its bundles were spread.
    pub(crate) strategy: GroupStrategy,
    /// The bundles, in order.
    pub(crate) bundles: Vec<ResourceSet>,
    /// The node of each bundle.
    pub(crate) nodes: Vec<NodeId>,
}

/// A change to the state, as the log carries it. (Placements are most of
/// the log: boxing their spec would only add an allocation per entry.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Command {
    /// Places `name` on `node` with a new epoch. `expect`: `None` to create
    /// (refused if the name exists), `Some(epoch)` to move the placement
    /// that has that epoch (refused if it changed since).
    Place {
        /// The name.
        name: String,
        /// What it is.
        spec: ActorSpec,
        /// Where it goes.
        node: NodeId,
        /// The epoch it replaces, if any.
        expect: Option<u64>,
    },
    /// Marks the placement with `epoch` failed.
    Fail {
        /// The name.
        name: String,
        /// The placement that failed.
        epoch: u64,
        /// Why.
        reason: String,
    },
    /// Forgets `name` (any epoch if `None`).
    Remove {
        /// The name.
        name: String,
        /// The placement to forget, if only that one.
        epoch: Option<u64>,
    },
    /// Reserves a placement group's bundles on these nodes.
    ReserveGroup {
        /// The group's name.
        name: String,
        /// How.
        strategy: GroupStrategy,
        /// Its bundles.
        bundles: Vec<ResourceSet>,
        /// The node of each bundle.
        nodes: Vec<NodeId>,
    },
    /// Releases a placement group (refused while actors run in it).
    RemoveGroup {
        /// The group's name.
        name: String,
    },
    /// Marks a node draining (no new placements) or clears the mark.
    Drain {
        /// The node.
        node: NodeId,
        /// Draining or not.
        on: bool,
    },
    /// Several commands in one log entry, applied in order.
    Batch(Vec<Command>),
    /// An operator's TOTP step was used: codes of it or earlier are refused.
    TotpUsed {
        /// The operator certificate's serial.
        serial: u64,
        /// The step.
        step: u64,
    },
    /// Sets an operator's admin-API password (replacing any it had).
    SetPassword {
        /// The operator certificate's name.
        name: String,
        /// Its certificate and the hash.
        entry: PasswordEntry,
    },
    /// Revokes a certificate serial: every node closes its holder's links
    /// and refuses its handshakes (learned with the next lease renewal).
    Revoke {
        /// The serial.
        serial: u64,
        /// Who held it, as the operator named it (for listings).
        name: String,
    },
    /// Moves the head group's capability key to its next generation: every
    /// capability signed before stops verifying (operators log in again).
    RotateCapabilityKey,
    /// Locks a login path out until `until_ms` (Unix ms; the leader's
    /// guard decided it), and forgets the lockouts over at `now_ms`.
    Lockout {
        /// What is locked.
        lock: crate::operators::guard::Lock,
        /// Until when.
        until_ms: u64,
        /// When the leader decided it.
        now_ms: u64,
    },
    /// A durable actor's journal write (`head::journal`).
    Journal(super::journal::JournalCommand),
    /// The node running `name` under `epoch` stopped it, idle: it is
    /// recorded passive (refused unless the record places that epoch on
    /// `node`, the report's authenticated sender).
    Passivate {
        /// The name.
        name: String,
        /// The placement that passivated.
        epoch: u64,
        /// The node that reported it.
        node: NodeId,
    },
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub(crate) enum Applied {
    /// Nothing to report (membership entries, blanks).
    #[default]
    Done,
    /// Placed under this epoch.
    Placed {
        /// The new epoch.
        epoch: u64,
    },
    /// The name exists: here is its record.
    Exists(Box<ActorRecord>),
    /// The placement changed since (another head decision won).
    Stale,
    /// The name or group is unknown.
    Unknown,
    /// The group bundle does not exist or the group is in use.
    Refused {
        /// Why.
        reason: GroupRefusal,
    },
    /// What each command of a batch did, in order.
    Batch(Vec<Applied>),
    /// What a journal write did.
    Journal(Result<super::journal::JournalDone, super::journal::StoreError>),
    /// A report about a placement from a node that does not run it (or
    /// about one that is not running): refused.
    NotOwner,
}

/// The replicated state. (De)serialized as its fields minus the derived
/// index, which is rebuilt when a snapshot is read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub(crate) struct ControlState {
    /// Boxed: a map node holds 11 entries and is about two thirds full,
    /// so a record inline (280 bytes, mostly its spec) cost its size and
    /// half again in empty slots; boxed, a slot is a pointer. Encoded
    /// the same (a box is its content to serde).
    actors: BTreeMap<String, Box<ActorRecord>>,
    /// The placed actors of each node, by name (derived from `actors`, not
    /// stored): a node's renewal plans over its own actors, not over all.
    #[serde(skip)]
    by_node: BTreeMap<NodeId, BTreeSet<Box<str>>>,
    groups: BTreeMap<String, GroupRecord>,
    draining: BTreeSet<NodeId>,
    /// Reserved per node: placed actors outside groups, plus group bundles.
    reserved: BTreeMap<NodeId, ResourceSet>,
    /// Placed actors per node.
    placed: BTreeMap<NodeId, usize>,
    /// The last epoch handed out.
    epoch: u64,
    /// Revoked certificate serials, in the order revoked, with names.
    #[serde(default)]
    revoked: Vec<(u64, String)>,
    /// The last TOTP step each operator (by serial) used.
    #[serde(default)]
    totp_steps: BTreeMap<u64, u64>,
    /// Operators' admin-API passwords, by certificate name.
    #[serde(default)]
    passwords: BTreeMap<String, PasswordEntry>,
    /// The generation of the head group's capability key.
    #[serde(default)]
    capability_generation: u64,
    /// Login lockouts in force, until when (Unix ms): kept here so that a
    /// new leader keeps them.
    #[serde(default)]
    lockouts: BTreeMap<crate::operators::guard::Lock, u64>,
    /// Durable actors' journals, by name.
    #[serde(default)]
    journals: super::journal::Journals,
}

/// An operator's password, with the certificate that set it (whose serial
/// its TOTP seed and lockouts go by).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PasswordEntry {
    /// The certificate's serial.
    pub(crate) serial: u64,
    /// Its node id.
    pub(crate) node: NodeId,
    /// Its roles.
    pub(crate) roles: Vec<String>,
    /// The hash.
    pub(crate) hash: crate::operators::password::PasswordHash,
}

impl Serialize for ControlState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ControlState::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for ControlState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut state = ControlState::deserialize(deserializer)?;
        state.reindex();
        Ok(state)
    }
}

impl ControlState {
    /// Rebuilds the index of placed actors by node from the records.
    fn reindex(&mut self) {
        self.by_node.clear();
        for (name, record) in &self.actors {
            if record.state == RecordState::Placed {
                self.by_node
                    .entry(record.node)
                    .or_default()
                    .insert(name.as_str().into());
            }
        }
    }

    /// Applies one command.
    pub(crate) fn apply(&mut self, command: Command) -> Applied {
        match command {
            Command::Place {
                name,
                spec,
                node,
                expect,
            } => self.place(name, spec, node, expect),
            Command::Fail {
                name,
                epoch,
                reason,
            } => {
                let Some(record) = self.actors.get(&name) else {
                    return Applied::Unknown;
                };
                if record.epoch != epoch {
                    return Applied::Stale;
                }
                if record.state == RecordState::Placed {
                    let record = record.clone();
                    self.release(&name, &record);
                }
                if let Some(record) = self.actors.get_mut(&name) {
                    record.state = RecordState::Failed { reason };
                }
                Applied::Done
            }
            Command::Remove { name, epoch } => match self.actors.get(&name) {
                None => Applied::Unknown,
                Some(r) if epoch.is_some_and(|e| e != r.epoch) => Applied::Stale,
                Some(_) => {
                    self.journals.forget(&name);
                    if let Some(record) = self.actors.remove(&name) {
                        if record.state == RecordState::Placed {
                            self.release(&name, &record);
                        }
                    }
                    Applied::Done
                }
            },
            Command::ReserveGroup {
                name,
                strategy,
                bundles,
                nodes,
            } => {
                if self.groups.contains_key(&name) {
                    return Applied::Refused {
                        reason: GroupRefusal::Exists { group: name },
                    };
                }
                if bundles.len() != nodes.len() {
                    return Applied::Refused {
                        reason: GroupRefusal::NodeCount {
                            bundles: bundles.len(),
                            nodes: nodes.len(),
                        },
                    };
                }
                for (bundle, node) in bundles.iter().zip(&nodes) {
                    self.reserve(*node, bundle);
                }
                self.groups.insert(
                    name,
                    GroupRecord {
                        strategy,
                        bundles,
                        nodes,
                    },
                );
                Applied::Done
            }
            Command::RemoveGroup { name } => {
                if !self.groups.contains_key(&name) {
                    return Applied::Unknown;
                }
                let users: Vec<String> = self
                    .actors
                    .iter()
                    .filter(|(_, r)| {
                        r.state == RecordState::Placed
                            && r.spec.bundle.as_ref().is_some_and(|(g, _)| *g == name)
                    })
                    .map(|(n, _)| n.clone())
                    .collect();
                if !users.is_empty() {
                    return Applied::Refused {
                        reason: GroupRefusal::InUse {
                            group: name,
                            actors: users,
                        },
                    };
                }
                if let Some(group) = self.groups.remove(&name) {
                    for (bundle, node) in group.bundles.iter().zip(&group.nodes) {
                        self.unreserve(*node, bundle);
                    }
                }
                Applied::Done
            }
            Command::Batch(commands) => {
                Applied::Batch(commands.into_iter().map(|c| self.apply(c)).collect())
            }
            Command::Drain { node, on } => {
                if on {
                    self.draining.insert(node);
                } else {
                    self.draining.remove(&node);
                }
                Applied::Done
            }
            Command::TotpUsed { serial, step } => {
                if self
                    .totp_steps
                    .get(&serial)
                    .is_some_and(|last| *last >= step)
                {
                    return Applied::Stale;
                }
                self.totp_steps.insert(serial, step);
                Applied::Done
            }
            Command::SetPassword { name, entry } => {
                self.passwords.insert(name, entry);
                Applied::Done
            }
            Command::Revoke { serial, name } => {
                if self.revoked.iter().any(|(s, _)| *s == serial) {
                    return Applied::Stale;
                }
                self.revoked.push((serial, name));
                Applied::Done
            }
            Command::RotateCapabilityKey => {
                self.capability_generation = self.capability_generation.saturating_add(1);
                Applied::Done
            }
            Command::Lockout {
                lock,
                until_ms,
                now_ms,
            } => {
                self.lockouts.retain(|_, until| *until > now_ms);
                if self.lockouts.len() >= MAX_LOCKOUTS && !self.lockouts.contains_key(&lock) {
                    // Bounded: the lockout ending first makes room.
                    let first = self
                        .lockouts
                        .iter()
                        .min_by_key(|(_, until)| **until)
                        .map(|(l, _)| l.clone());
                    if let Some(first) = first {
                        self.lockouts.remove(&first);
                    }
                }
                let until = self.lockouts.entry(lock).or_insert(until_ms);
                *until = (*until).max(until_ms);
                Applied::Done
            }
            Command::Journal(command) => {
                let placed = self.journal_owner(command.name());
                Applied::Journal(self.journals.apply(command, placed))
            }
            Command::Passivate { name, epoch, node } => self.passivate(&name, epoch, node),
        }
    }

    /// The durable actors' journals.
    pub(crate) fn journals(&self) -> &super::journal::Journals {
        &self.journals
    }

    /// The generation of the head group's capability key.
    pub(crate) fn capability_generation(&self) -> u64 {
        self.capability_generation
    }

    /// Until when (Unix ms) `lock` is locked out, if after `now_ms`.
    pub(crate) fn locked_until(
        &self,
        lock: &crate::operators::guard::Lock,
        now_ms: u64,
    ) -> Option<u64> {
        self.lockouts.get(lock).copied().filter(|u| *u > now_ms)
    }

    /// The last TOTP step the operator with `serial` used.
    pub(crate) fn totp_step(&self, serial: u64) -> Option<u64> {
        self.totp_steps.get(&serial).copied()
    }

    /// An operator's password entry, by certificate name.
    pub(crate) fn password(&self, name: &str) -> Option<&PasswordEntry> {
        self.passwords.get(name)
    }

    /// Revoked serials with names, in the order revoked: a list that only
    /// grows, so a node that holds the first `n` needs the rest.
    pub(crate) fn revoked(&self) -> &[(u64, String)] {
        &self.revoked
    }

    fn place(
        &mut self,
        name: String,
        spec: ActorSpec,
        node: NodeId,
        expect: Option<u64>,
    ) -> Applied {
        let previous = self.actors.get(&name).map(|r| ActorRecord::clone(r));
        match (&previous, expect) {
            (Some(record), None) => return Applied::Exists(Box::new(record.clone())),
            (None, Some(_)) => return Applied::Unknown,
            (Some(record), Some(epoch)) if record.epoch != epoch => return Applied::Stale,
            _ => {}
        }
        if let Some((group, index)) = &spec.bundle {
            match self.groups.get(group).and_then(|g| g.nodes.get(*index)) {
                Some(bundle_node) if *bundle_node == node => {}
                Some(_) => {
                    return Applied::Refused {
                        reason: GroupRefusal::BundleElsewhere {
                            group: group.clone(),
                            index: *index,
                        },
                    }
                }
                None => {
                    return Applied::Refused {
                        reason: GroupRefusal::NoBundle {
                            group: group.clone(),
                            index: *index,
                        },
                    }
                }
            }
        }
        let placements = match &previous {
            Some(record) => {
                if record.state == RecordState::Placed {
                    self.release(&name, record);
                }
                record.placements + 1
            }
            None => 1,
        };
        self.epoch += 1;
        let record = ActorRecord {
            spec,
            node,
            epoch: self.epoch,
            state: RecordState::Placed,
            placements,
        };
        self.hold(&name, &record);
        self.actors.insert(name, Box::new(record));
        Applied::Placed { epoch: self.epoch }
    }

    fn hold(&mut self, name: &str, record: &ActorRecord) {
        *self.placed.entry(record.node).or_default() += 1;
        self.by_node
            .entry(record.node)
            .or_default()
            .insert(name.into());
        if record.spec.bundle.is_none() {
            self.reserve(record.node, &record.spec.resources);
        }
    }

    fn release(&mut self, name: &str, record: &ActorRecord) {
        if let Some(count) = self.placed.get_mut(&record.node) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.placed.remove(&record.node);
            }
        }
        if let Some(names) = self.by_node.get_mut(&record.node) {
            names.remove(name);
            if names.is_empty() {
                self.by_node.remove(&record.node);
            }
        }
        if record.spec.bundle.is_none() {
            self.unreserve(record.node, &record.spec.resources);
        }
    }

    fn reserve(&mut self, node: NodeId, resources: &ResourceSet) {
        let entry = self.reserved.entry(node).or_default();
        *entry = entry.plus(resources);
    }

    fn unreserve(&mut self, node: NodeId, resources: &ResourceSet) {
        let entry = self.reserved.entry(node).or_default();
        *entry = entry.minus(resources);
        if entry.is_empty() {
            self.reserved.remove(&node);
        }
    }

    /// The record of `name`.
    pub(crate) fn actor(&self, name: &str) -> Option<&ActorRecord> {
        self.actors.get(name).map(|r| &**r)
    }

    /// All named actors, by name.
    pub(crate) fn actors(&self) -> impl Iterator<Item = (&String, &ActorRecord)> {
        self.actors.iter().map(|(name, r)| (name, &**r))
    }

    /// A page of the named actors by name: at most `limit` (at least one)
    /// after `after` (from the first without), and whether more follow.
    /// Costs the page, not every record.
    pub(crate) fn actors_page<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> (Vec<(&'a String, &'a ActorRecord)>, bool) {
        use std::ops::Bound;
        let limit = limit.max(1);
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut page: Vec<_> = self
            .actors
            .range::<str, _>((from, Bound::Unbounded))
            .take(limit.saturating_add(1))
            .map(|(name, r)| (name, &**r))
            .collect();
        let more = page.len() > limit;
        page.truncate(limit);
        (page, more)
    }

    /// The placed actors on `node`, by name: through the index, so a
    /// node's renewal costs its own actors, not every record.
    pub(crate) fn placed_on(&self, node: NodeId) -> impl Iterator<Item = (&String, &ActorRecord)> {
        self.by_node
            .get(&node)
            .into_iter()
            .flatten()
            .filter_map(|name| self.actors.get_key_value(&**name))
            .map(|(name, r)| (name, &**r))
            .filter(move |(_, r)| r.node == node && r.state == RecordState::Placed)
    }

    /// The nodes with placed actors.
    pub(crate) fn nodes_with_placements(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.placed.keys().copied()
    }

    /// The group `name`.
    pub(crate) fn group(&self, name: &str) -> Option<&GroupRecord> {
        self.groups.get(name)
    }

    /// Whether `node` is marked draining.
    pub(crate) fn is_draining(&self, node: NodeId) -> bool {
        self.draining.contains(&node)
    }

    /// The nodes marked draining.
    #[cfg(test)]
    pub(crate) fn draining(&self) -> impl Iterator<Item = &NodeId> {
        self.draining.iter()
    }

    /// What the head has reserved on `node`.
    pub(crate) fn reserved_on(&self, node: NodeId) -> ResourceSet {
        self.reserved.get(&node).cloned().unwrap_or_default()
    }

    /// Placed actors on `node`.
    pub(crate) fn placed_count(&self, node: NodeId) -> usize {
        self.placed.get(&node).copied().unwrap_or(0)
    }

    /// The last epoch handed out.
    #[cfg(test)]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Placement's view of `nodes` (id, what it offers, its labels, whether
    /// it takes placements), with this state's reservations.
    pub(crate) fn views(
        &self,
        nodes: impl IntoIterator<Item = (NodeId, ResourceSet, Vec<String>, bool)>,
    ) -> Vec<NodeView> {
        nodes
            .into_iter()
            .map(|(node, total, labels, healthy)| NodeView {
                node,
                total,
                reserved: self.reserved_on(node),
                labels,
                placed: self.placed_count(node),
                schedulable: healthy && !self.is_draining(node),
            })
            .collect()
    }
}

/// Most lockouts the state holds (the ones ending first make room).
const MAX_LOCKOUTS: usize = 65_536;

mod passivation;
#[cfg(test)]
mod tests;
