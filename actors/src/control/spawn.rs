//! [`Spawn`]: what to spawn, built step by step (type, name, arguments,
//! resources, placement, restart policy, group bundle, passivation).

use std::marker::PhantomData;
use std::time::Duration;

#[cfg(doc)]
use super::Named;
use super::{ActorSpec, ControlError};
use crate::placement::{Placement, ResourceSet};
use crate::supervision::{Restart, Spawnable};

/// What to spawn: a registered type, its name, arguments and needs.
pub struct Spawn<A: Spawnable> {
    pub(super) name: String,
    pub(super) args: Result<Vec<u8>, ControlError>,
    pub(super) spec: ActorSpec,
    pub(super) get_if_exists: bool,
    _type: PhantomData<fn() -> A>,
}

impl<A: Spawnable> Spawn<A> {
    /// An actor of type `A` named `name`: no resources, placed by
    /// [`Placement::Pack`], never restarted, re-placed when it escalates.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            args: rmp_serde::to_vec_named(&()).map_err(encode_error),
            spec: ActorSpec {
                type_name: A::TYPE.to_owned(),
                args: Vec::new(),
                resources: ResourceSet::default(),
                placement: Placement::Pack,
                restart: Restart::never(),
                bundle: None,
                replace_on_escalation: true,
                idle_after_ms: None,
            },
            get_if_exists: false,
            _type: PhantomData,
        }
    }

    /// Its arguments.
    pub fn args(mut self, args: A::Args) -> Self {
        self.args = rmp_serde::to_vec_named(&args).map_err(encode_error);
        self
    }

    /// Logical CPUs it needs.
    pub fn cpus(mut self, cpus: f64) -> Self {
        self.spec.resources.cpus = cpus;
        self
    }

    /// Memory it needs, bytes.
    pub fn memory(mut self, bytes: u64) -> Self {
        self.spec.resources.memory = bytes;
        self
    }

    /// GPUs it needs.
    pub fn gpus(mut self, gpus: u32) -> Self {
        self.spec.resources.gpus = gpus;
        self
    }

    /// An amount of a custom resource it needs.
    pub fn resource(mut self, name: &str, amount: f64) -> Self {
        self.spec.resources = self.spec.resources.with(name, amount);
        self
    }

    /// Where it may go.
    pub fn placement(mut self, placement: Placement) -> Self {
        self.spec.placement = placement;
        self
    }

    /// Its local restart policy.
    pub fn restart(mut self, restart: Restart) -> Self {
        self.spec.restart = restart;
        self
    }

    /// Runs it in bundle `bundle` of the placement group `group` (on that
    /// bundle's node, from its resources).
    pub fn in_group(mut self, group: &str, bundle: usize) -> Self {
        self.spec.bundle = Some((group.to_owned(), bundle));
        self
    }

    /// Past its restart policy, mark it failed instead of re-placing it.
    pub fn fail_on_escalation(mut self) -> Self {
        self.spec.replace_on_escalation = false;
        self
    }

    /// If an actor of this type has the name already, answer it instead of
    /// [`ControlError::NameTaken`] (Ray's `get_if_exists`).
    pub fn get_if_exists(mut self) -> Self {
        self.get_if_exists = true;
        self
    }

    /// Passivates it after `idle` without a message: its node stops it
    /// (a durable actor saves a snapshot first), the head records it
    /// passive (no node, no capacity, not failed over), and the next call
    /// through a [`Named`] places it again, recovered from its journal.
    /// At least 1 ms.
    pub fn passivate_after(mut self, idle: Duration) -> Self {
        let ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX).max(1);
        self.spec.idle_after_ms = Some(ms);
        self
    }
}

fn encode_error(e: rmp_serde::encode::Error) -> ControlError {
    ControlError::Spawn(crate::supervision::SpawnError::Encode {
        reason: e.to_string(),
    })
}
