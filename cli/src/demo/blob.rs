//! A durable actor with a large state, for `swarm bench durable`'s
//! recovery figure: its whole state (bytes) saved as one snapshot, and
//! small events after it that are never folded into a snapshot by count.

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use swarm_actors::durable::{self, Durable, Journal, StoreError};
use swarm_protocol::NodeId;

/// A state of `bytes` and a running total of events.
pub struct Blob {
    bytes: Vec<u8>,
    total: u64,
    node: NodeId,
    journal: Journal,
}

/// What a [`Blob`] starts from: nothing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BlobArgs {}

/// Replaces the state with `len` bytes (a pattern; at most a snapshot's
/// bound) and saves it whole
/// (one snapshot); answers once durable.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Fill(pub u32);

/// Persists `count` events (one write; at most an append's bound) of one
/// each; answers the total.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "Result<u64, StoreError>")]
pub struct AddMany(pub u32);

/// Reads the state: its length, the total, the journal's next sequence
/// number and the node it runs on.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "BlobState")]
pub struct ReadBlob;

/// What [`ReadBlob`] answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobState {
    /// The state's length in bytes.
    pub len: u64,
    /// Events applied.
    pub total: u64,
    /// The journal's next sequence number.
    pub next_seq: u64,
    /// Where it runs.
    pub node: NodeId,
}

swarm_actors::remote_message!(Fill => "demo.Fill", AddMany => "demo.AddMany", ReadBlob => "demo.ReadBlob");

/// A [`Blob`]'s event.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum BlobEvent {
    /// One more.
    Added,
}

impl Durable for Blob {
    const JOURNAL: &'static str = "demo.Blob";
    type Event = BlobEvent;
    type Snapshot = (ByteBuf, u64);

    fn apply(&mut self, BlobEvent::Added: &BlobEvent) {
        self.total += 1;
    }

    fn snapshot(&self) -> (ByteBuf, u64) {
        (ByteBuf::from(self.bytes.clone()), self.total)
    }

    fn restore(&mut self, (bytes, total): (ByteBuf, u64)) {
        self.bytes = bytes.into_vec();
        self.total = total;
    }

    /// Only whole-state saves (and the store's bound on bytes after a
    /// snapshot) make snapshots.
    fn snapshot_every() -> u64 {
        u64::MAX
    }

    fn journal(&mut self) -> &mut Journal {
        &mut self.journal
    }
}

impl Actor for Blob {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        durable::recover(self, ctx);
    }
}

impl Handler<Fill> for Blob {
    type Result = ResponseActFuture<Self, Result<(), StoreError>>;

    fn handle(&mut self, Fill(len): Fill, ctx: &mut Context<Self>) -> Self::Result {
        // Bounded by what a snapshot may hold (larger is refused anyway).
        let len = len.min(durable::MAX_SNAPSHOT_BYTES as u32);
        self.bytes = (0..len)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        durable::persist_state(self, ctx)
    }
}

impl Handler<AddMany> for Blob {
    type Result = ResponseActFuture<Self, Result<u64, StoreError>>;

    fn handle(&mut self, AddMany(count): AddMany, ctx: &mut Context<Self>) -> Self::Result {
        // Bounded by what one append may hold (more is refused anyway).
        let count = (count as usize).min(durable::MAX_APPEND_EVENTS);
        let events = vec![BlobEvent::Added; count];
        durable::persist_then(self, ctx, events, |act: &mut Self| act.total)
    }
}

impl Handler<ReadBlob> for Blob {
    type Result = MessageResult<ReadBlob>;

    fn handle(&mut self, _: ReadBlob, _: &mut Context<Self>) -> Self::Result {
        MessageResult(BlobState {
            len: self.bytes.len() as u64,
            total: self.total,
            next_seq: self.journal.next_seq(),
            node: self.node,
        })
    }
}

swarm_actors::remote_actor!(Blob: Fill, AddMany, ReadBlob);

impl swarm_actors::supervision::Spawnable for Blob {
    const TYPE: &'static str = "demo.Blob";
    type Args = BlobArgs;

    fn build(_: &BlobArgs, incarnation: &swarm_actors::supervision::Incarnation) -> Self {
        Blob {
            bytes: Vec::new(),
            total: 0,
            node: incarnation.node,
            journal: Journal::new(incarnation),
        }
    }
}
