//! The embedded journal store: journals in the head group's replicated
//! state (openraft + redb on the heads, sealed at rest with the rest of
//! the head's store), written through the control client like any other
//! control-plane request. The head leader checks each write against its
//! placement record: only the node the head placed the name on, under the
//! write's epoch, may write it (`head::journal`).
//!
//! A node's appends go to the head in groups ([`AppendJournals`]): the
//! appends its actors ask for while the node is busy (typically the many
//! persists that follow one group's answers) leave in one message, each
//! still checked, fenced and answered on its own. Nothing waits to fill a
//! group: a flush is queued behind the work the node already has, so a
//! lone append leaves at once.

use std::sync::{Arc, Mutex, PoisonError};

use serde_bytes::ByteBuf;
use tokio::sync::oneshot;

use super::store::{JournalStore, Recovery, StoreError, StoreFuture, Writer};
use crate::control::{Control, CALL_WITHIN};
use crate::head::wire::journal::{
    check_append, Append, AppendJournals, ClaimJournal, SnapshotJournal, MAX_GROUP_APPENDS,
    MAX_GROUP_BYTES,
};

/// An append waiting for its group, and where its answer goes.
type Waiting = (Append, oneshot::Sender<Result<u64, StoreError>>);

/// The appends waiting for the next group, and whether a flush is queued.
#[derive(Default)]
struct Pending {
    appends: Vec<Waiting>,
    flushing: bool,
}

/// Journals in the head group's log, reached through `control`.
#[derive(Clone)]
pub struct Embedded {
    control: Control,
    /// This node: what a head answering locally reads (over a link the
    /// head stamps the link's authenticated peer instead).
    node: swarm_protocol::NodeId,
    pending: Arc<Mutex<Pending>>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded").finish_non_exhaustive()
    }
}

impl Embedded {
    /// A store reached through `control`, node `node`'s own client.
    pub(crate) fn new(control: Control, node: swarm_protocol::NodeId) -> Self {
        Self {
            control,
            node,
            pending: Arc::default(),
        }
    }

    /// Sends every waiting append, in groups within the bounds.
    async fn flush(self) {
        let waiting = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.flushing = false;
            std::mem::take(&mut pending.appends)
        };
        let mut group: Vec<Waiting> = Vec::new();
        let mut bytes = 0usize;
        for append in waiting {
            let more = bytes.saturating_add(append.0.bytes());
            if !group.is_empty() && (group.len() == MAX_GROUP_APPENDS || more > MAX_GROUP_BYTES) {
                actix::spawn(self.clone().send(std::mem::take(&mut group)));
                bytes = append.0.bytes();
            } else {
                bytes = more;
            }
            group.push(append);
        }
        if !group.is_empty() {
            self.send(group).await;
        }
    }

    /// One group to the head; each append gets its own answer.
    async fn send(self, group: Vec<Waiting>) {
        let (appends, answers): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        let request = AppendJournals {
            node: self.node,
            appends,
        };
        match self.control.call(request, CALL_WITHIN).await {
            Ok(results) if results.len() == answers.len() => {
                for (answer, result) in answers.into_iter().zip(results) {
                    let _ = answer.send(result);
                }
            }
            Ok(results) => {
                let e = StoreError::Unavailable {
                    reason: format!(
                        "the head answered {} of a group of {} appends",
                        results.len(),
                        answers.len()
                    ),
                };
                for answer in answers {
                    let _ = answer.send(Err(e.clone()));
                }
            }
            Err(e) => {
                let e = StoreError::from(e);
                for answer in answers {
                    let _ = answer.send(Err(e.clone()));
                }
            }
        }
    }
}

impl JournalStore for Embedded {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    fn claim(&self, name: &str, epoch: u64) -> StoreFuture<Recovery> {
        let control = self.control.clone();
        let request = ClaimJournal {
            node: self.node,
            name: name.to_owned(),
            epoch,
        };
        Box::pin(async move { control.call(request, CALL_WITHIN).await? })
    }

    fn append(&self, writer: &Writer, first_seq: u64, events: Vec<Vec<u8>>) -> StoreFuture<u64> {
        let this = self.clone();
        let append = Append {
            writer: writer.clone(),
            first_seq,
            events: events.into_iter().map(ByteBuf::from).collect(),
        };
        Box::pin(async move {
            // Refused here as the head would (a group over its bounds is
            // refused whole, so an append over them never joins one).
            check_append(&append.events)?;
            let (answer, wait) = oneshot::channel();
            let flush = {
                let mut pending = this.pending.lock().unwrap_or_else(PoisonError::into_inner);
                pending.appends.push((append, answer));
                !std::mem::replace(&mut pending.flushing, true)
            };
            // Queued behind what this node already has to do: the appends
            // asked for meanwhile join the group.
            if flush {
                actix::spawn(this.flush());
            }
            wait.await.unwrap_or_else(|_| {
                Err(StoreError::Unavailable {
                    reason: "the journal's group was dropped unanswered".to_owned(),
                })
            })
        })
    }

    fn snapshot(&self, writer: &Writer, seq: u64, bytes: Vec<u8>) -> StoreFuture<()> {
        let control = self.control.clone();
        let request = SnapshotJournal {
            node: self.node,
            writer: writer.clone(),
            seq,
            bytes,
        };
        Box::pin(async move { control.call(request, CALL_WITHIN).await? })
    }
}
