//! Starting registered actor types on request: the hands of the control
//! plane. A node registers the types the cluster may start on it
//! ([`Spawnable`], declared once next to the remote protocol); its `Host`
//! actor (`swarm.host`) starts one under local supervision when a peer
//! with the `head` or `operator` role asks ([`HostSpawn`]).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use actix::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Restart, Supervised};
use crate::directory::{Directory, RemoteActor};

/// The name every node's host actor is exposed under.
pub const HOST_ACTOR: &str = "swarm.host";

/// The certificate roles allowed to start actors on a node.
pub const SPAWN_ROLES: &[&str] = &["head", "operator"];

/// Who an incarnation is: its name and its placement epoch, a fencing
/// token for side effects outside the cluster (a newer incarnation always
/// has a larger epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incarnation {
    /// The name it is exposed under.
    pub name: String,
    /// Its placement's epoch.
    pub epoch: u64,
}

/// An actor type the cluster may start: a stable type name, serde
/// arguments, and how an incarnation is built from them.
pub trait Spawnable: RemoteActor {
    /// The type's name on the wire (stable, like message tags).
    const TYPE: &'static str;
    /// What each incarnation is built from.
    type Args: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// Builds an incarnation.
    fn build(args: &Self::Args, incarnation: &Incarnation) -> Self;
}

/// Asks a node's host to start a registered type (answered by `swarm.host`).
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<(), SpawnError>")]
pub struct HostSpawn {
    /// The registered type ([`Spawnable::TYPE`]).
    pub type_name: String,
    /// The name to expose it under.
    pub name: String,
    /// Its arguments, MessagePack.
    pub args: Vec<u8>,
    /// The placement's epoch.
    pub epoch: u64,
    /// Its restart policy.
    pub restart: Restart,
}

/// Why a host did not start an actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The node has no such type registered.
    #[error("no actor type {type_name:?} is registered on the node")]
    UnknownType {
        /// The type asked for.
        type_name: String,
    },
    /// The arguments do not decode as the type's arguments.
    #[error("the arguments do not decode: {reason}")]
    BadArgs {
        /// The decoder's words.
        reason: String,
    },
    /// The name is taken on the node.
    #[error("an actor named {name:?} is already registered")]
    NameTaken {
        /// The name.
        name: String,
    },
    /// The arguments could not be encoded by the caller.
    #[error("the arguments do not encode: {reason}")]
    Encode {
        /// The encoder's words.
        reason: String,
    },
}

type StartFuture = Pin<Box<dyn Future<Output = Result<Supervised, SpawnError>>>>;
type Starter = Arc<dyn Fn(&Directory, &ArbiterHandle, HostSpawn) -> StartFuture + Send + Sync>;

/// The types a node may start, by type name. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    types: Arc<RwLock<HashMap<&'static str, Starter>>>,
}

impl Registry {
    /// Registers `A`; true if it was not registered yet.
    pub(crate) fn register<A: Spawnable>(&self) -> bool {
        let start: Starter = Arc::new(|directory, arbiter, request| {
            let args: A::Args = match rmp_serde::from_slice(&request.args) {
                Ok(args) => args,
                Err(e) => {
                    let reason = e.to_string();
                    return Box::pin(async move { Err(SpawnError::BadArgs { reason }) });
                }
            };
            let incarnation = Incarnation {
                name: request.name.clone(),
                epoch: request.epoch,
            };
            let factory = move || A::build(&args, &incarnation);
            let directory = directory.clone();
            let arbiter = arbiter.clone();
            Box::pin(async move {
                if directory.contains(&request.name) {
                    return Err(SpawnError::NameTaken { name: request.name });
                }
                Ok(super::start(directory, &arbiter, request.name, request.restart, factory).await)
            })
        });
        self.types
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(A::TYPE, start)
            .is_none()
    }

    fn starter(&self, type_name: &str) -> Option<Starter> {
        self.types
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(type_name)
            .cloned()
    }
}

/// A node's host: starts registered types under local supervision.
pub struct Host {
    registry: Registry,
    directory: Directory,
    arbiter: ArbiterHandle,
    /// The actors it started, by name: type, epoch and supervisor.
    started: HashMap<String, (String, u64, Supervised)>,
}

/// One actor a host started, as `swarm actors` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorRow {
    /// The name it is exposed under.
    pub name: String,
    /// Its registered type.
    pub type_name: String,
    /// running, restarting, failed or stopped.
    pub state: String,
    /// Restarts since it was started.
    pub restarts: u64,
    /// Its placement's epoch.
    pub epoch: u64,
}

/// Asks a node's host for the actors it started.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Vec<ActorRow>")]
pub struct ListActors;

impl Handler<ListActors> for Host {
    type Result = MessageResult<ListActors>;

    fn handle(&mut self, _: ListActors, _: &mut Context<Self>) -> Self::Result {
        let mut rows: Vec<ActorRow> = self
            .started
            .iter()
            .map(|(name, (type_name, epoch, supervised))| ActorRow {
                name: name.clone(),
                type_name: type_name.clone(),
                state: format!("{:?}", supervised.state()).to_lowercase(),
                restarts: supervised.restarts(),
                epoch: *epoch,
            })
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        MessageResult(rows)
    }
}

impl Host {
    pub(crate) fn new(registry: Registry, directory: Directory, arbiter: ArbiterHandle) -> Self {
        Self {
            registry,
            directory,
            arbiter,
            started: HashMap::new(),
        }
    }
}

impl Actor for Host {
    type Context = Context<Self>;
}

impl Handler<HostSpawn> for Host {
    type Result = ResponseActFuture<Self, Result<(), SpawnError>>;

    fn handle(&mut self, request: HostSpawn, _: &mut Context<Self>) -> Self::Result {
        let Some(start) = self.registry.starter(&request.type_name) else {
            tracing::warn!(type_name = %request.type_name, name = %request.name, "spawn refused: unknown type");
            let type_name = request.type_name;
            return Box::pin(fut::ready(Err(SpawnError::UnknownType { type_name })));
        };
        let (type_name, name, epoch) = (
            request.type_name.clone(),
            request.name.clone(),
            request.epoch,
        );
        let starting = start(&self.directory, &self.arbiter, request);
        Box::pin(
            starting
                .into_actor(self)
                .map(move |result, act, _| match result {
                    Ok(supervised) => {
                        tracing::info!(%type_name, %name, "actor started on request");
                        act.started.insert(name, (type_name, epoch, supervised));
                        Ok(())
                    }
                    Err(e) => {
                        tracing::warn!(%type_name, %name, error = %e, "spawn refused");
                        Err(e)
                    }
                }),
        )
    }
}

crate::remote_message!(
    HostSpawn => "swarm.HostSpawn",
    ListActors => "swarm.ListActors",
);
crate::remote_actor!(Host: HostSpawn, ListActors);
