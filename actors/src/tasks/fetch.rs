//! Moving a kept result to where it is needed: read from this node's store,
//! or fetched from the node that holds it in chunks ([`FetchObject`]),
//! directly (never through the owner). The holder's scheduler answers;
//! callers name its actor type (`H`), so this file does not depend on it.

use actix::Message;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use swarm_protocol::NodeId;

use super::error::TaskError;
use super::store::Store;
use super::task::Blob;
use super::wire::{Arg, ObjectId, TaskId, Token, TASKS_ACTOR};
use crate::directory::{Accepts, Caller, StampCaller};
use crate::error::AskError;
use crate::mesh::Mesh;
use crate::remote::RemoteAddr;

/// Bytes per fetch message: the size of a link's write and bulk read, so
/// a chunk is sealed, written and read in one piece (measured here with
/// a 64 MiB value, in MiB/s as the bench then reported it: 256 KiB x 8
/// in flight 660-820 MiB/s (690-860 MB/s), 1 MiB x 8 540-660, 8 MiB x 3
/// 260-310).
pub(crate) const CHUNK: u32 = 256 << 10;
/// Bytes reserved before the first chunks arrive, at most.
const PREALLOC: usize = 256 << 20;
/// Chunks asked for at once.
const IN_FLIGHT: usize = 8;

/// Reads part of a kept result: the holder answers its owner, and a node
/// that presents the result's token (one the owner sent a task that takes
/// it); anyone else gets [`TaskError::Forbidden`].
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Chunk, TaskError>")]
pub(crate) struct FetchObject {
    /// The task whose result it is.
    pub(crate) task: TaskId,
    /// From this byte.
    pub(crate) offset: u64,
    /// At most this many bytes.
    pub(crate) len: u32,
    /// The result's token, as the owner handed it over in a task.
    pub(crate) token: Token,
    /// The reader (stamped from the link).
    pub(crate) from: NodeId,
}

/// Part of a kept result.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Chunk {
    /// The whole value's size.
    pub(crate) size: u64,
    /// The bytes from the offset asked for.
    pub(crate) bytes: ChunkBytes,
}

/// A chunk's bytes: a range of the held value when sent (not copied
/// before encoding), owned when received.
pub(crate) enum ChunkBytes {
    /// `value[start..end]` of a held value.
    Shared(Blob, std::ops::Range<usize>),
    /// Received bytes.
    Owned(Vec<u8>),
}

impl ChunkBytes {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            ChunkBytes::Shared(blob, range) => blob.get(range.clone()).unwrap_or_default(),
            ChunkBytes::Owned(bytes) => bytes,
        }
    }
}

impl std::fmt::Debug for ChunkBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkBytes({} bytes)", self.as_slice().len())
    }
}

impl Serialize for ChunkBytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.as_slice())
    }
}

impl<'de> Deserialize<'de> for ChunkBytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ByteBuf::deserialize(deserializer).map(|b| ChunkBytes::Owned(b.into_vec()))
    }
}

impl StampCaller for FetchObject {
    fn stamp_caller(&mut self, caller: &Caller) {
        self.from = caller.node;
    }
}

crate::system_message! {
    FetchObject => "swarm.FetchObject", Nodes;
}

/// How this node reads the kept results it owns (a [`TaskRef`]'s value):
/// from its store, or from their holders. Cheap to clone.
///
/// [`TaskRef`]: super::TaskRef
#[derive(Clone)]
pub(crate) struct Reader {
    mesh: Mesh,
    store: Store,
}

impl Reader {
    pub(crate) fn new(mesh: Mesh, store: Store) -> Self {
        Self { mesh, store }
    }

    /// The value of `object`, a kept result this node owns, from wherever
    /// it is (`H` as for [`resolve`]).
    ///
    /// # Errors
    ///
    /// As [`fetch`].
    pub(crate) async fn owned<H: Accepts<FetchObject>>(
        &self,
        object: ObjectId,
    ) -> Result<Blob, TaskError> {
        fetch::<H>(&self.mesh, &self.store, self.mesh.id(), object).await
    }
}

/// Every argument's value for a task `owner` sent: values as they are,
/// kept results fetched (one after the other) with the tokens the owner
/// put in the task.
///
/// `H` is the actor type holders answer [`FetchObject`] with under
/// [`TASKS_ACTOR`] (the scheduler).
///
/// # Errors
///
/// The first fetch's error.
pub(crate) async fn resolve<H: Accepts<FetchObject>>(
    mesh: &Mesh,
    store: &Store,
    owner: NodeId,
    args: &[Arg],
) -> Result<Vec<Blob>, TaskError> {
    let mut values = Vec::with_capacity(args.len());
    for arg in args {
        values.push(match arg {
            Arg::Value(bytes) => std::sync::Arc::new(bytes.to_vec()),
            Arg::Ref(object) => fetch::<H>(mesh, store, owner, *object).await?,
        });
    }
    Ok(values)
}

/// The value of `object`, from this node's store or its holder, for a
/// task `reader` sent (or for `reader` itself): held here, this node checks
/// what its holder would. `H` as for [`resolve`].
///
/// # Errors
///
/// [`TaskError::ObjectLost`] if the holder does not have it (freed, or it
/// died); [`TaskError::Forbidden`] if the holder refused the reader;
/// [`TaskError::Codec`] if it sent something inconsistent.
pub(crate) async fn fetch<H: Accepts<FetchObject>>(
    mesh: &Mesh,
    store: &Store,
    reader: NodeId,
    object: ObjectId,
) -> Result<Blob, TaskError> {
    if object.node == mesh.id() {
        let read = store.read(&object.task, object.node, reader, &object.token);
        if let Err(TaskError::Forbidden { task }) = &read {
            // A task from a node that names a result it was not given.
            mesh.count_forbidden();
            tracing::debug!(%task, reader = %reader.short(), "kept result refused to a task");
        }
        return read;
    }
    let holder: RemoteAddr<H> = RemoteAddr::new(mesh.clone(), object.node, TASKS_ACTOR);
    let first = ask(&holder, object, 0).await?;
    let size = first.size;
    if first.bytes.as_slice().len() as u64 == size {
        if let ChunkBytes::Owned(bytes) = first.bytes {
            return Ok(std::sync::Arc::new(bytes));
        }
    }
    let capacity = usize::try_from(size).map_err(|_| codec("too large for this machine"))?;
    // The size is the holder's word: reserve at most PREALLOC up front and
    // let bytes that really arrive grow the rest.
    let mut value = Vec::with_capacity(capacity.min(PREALLOC));
    value.extend_from_slice(first.bytes.as_slice());
    let mut received = value.len() as u64;
    // Chunks are copied into the value on a thread of their own: the
    // arbiter decrypts and decodes the next ones meanwhile (the copy and its
    // page faults are a third of the work).
    let (chunks, assemble) = std::sync::mpsc::channel::<Vec<u8>>();
    let (done, assembled) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("swarm-fetch".to_owned())
        .spawn(move || {
            for chunk in assemble {
                value.extend_from_slice(&chunk);
            }
            let _ = done.send(value);
        })
        .map_err(|e| codec(&format!("cannot start a copy thread: {e}")))?;
    // A few chunks in flight, so the link never idles between them.
    let mut offsets = (received..size).step_by(CHUNK as usize);
    let mut in_flight = std::collections::VecDeque::new();
    loop {
        while in_flight.len() < IN_FLIGHT {
            let Some(offset) = offsets.next() else { break };
            let holder = holder.clone();
            in_flight.push_back(actix::spawn(
                async move { ask(&holder, object, offset).await },
            ));
        }
        let Some(pending) = in_flight.pop_front() else {
            break;
        };
        let chunk = pending
            .await
            .map_err(|_| codec("the fetch was stopped"))??;
        let bytes = match chunk.bytes {
            ChunkBytes::Owned(bytes) => bytes,
            ChunkBytes::Shared(..) => return Err(codec("a chunk that was not received")),
        };
        if chunk.size != size || bytes.is_empty() {
            return Err(codec("the holder's chunks disagree"));
        }
        received += bytes.len() as u64;
        if received > size {
            return Err(codec("the holder sent more than the value"));
        }
        if chunks.send(bytes).is_err() {
            return Err(codec("the copy thread stopped"));
        }
    }
    drop(chunks);
    let value = assembled
        .await
        .map_err(|_| codec("the copy thread stopped"))?;
    if value.len() as u64 != size {
        return Err(codec("the holder sent less than the value"));
    }
    Ok(std::sync::Arc::new(value))
}

async fn ask<H: Accepts<FetchObject>>(
    holder: &RemoteAddr<H>,
    object: ObjectId,
    offset: u64,
) -> Result<Chunk, TaskError> {
    let asked = holder
        .send(FetchObject {
            task: object.task,
            offset,
            len: CHUNK,
            token: object.token,
            // Stamped by the holder from the link.
            from: object.node,
        })
        .await;
    match asked {
        Ok(answer) => answer,
        Err(
            AskError::NodeDown { .. } | AskError::LinkDown { .. } | AskError::Unreachable { .. },
        ) => Err(TaskError::ObjectLost {
            task: object.task,
            node: object.node,
        }),
        Err(e) => Err(codec(&format!("fetching from {}: {e}", short(object.node)))),
    }
}

fn short(node: NodeId) -> String {
    node.short().to_string()
}

fn codec(reason: &str) -> TaskError {
    TaskError::Codec {
        reason: reason.to_owned(),
    }
}
