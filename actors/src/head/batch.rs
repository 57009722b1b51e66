//! Group writes: openraft 0.9 appends and flushes each client write on its
//! own, so the log's throughput would be one write per fsync. The head
//! keeps one Raft write in flight and puts every command that arrives
//! meanwhile into the next one ([`Command::Batch`]); each caller gets its
//! own answer. Throughput then grows with the number of callers, and a
//! lone write costs what it did. A batch stops at [`MAX_BATCH`] commands
//! or at the byte bound it is started with (what one Raft message to a
//! head may carry, [`HeadConfig::message_bytes`]), so that one entry can
//! always be replicated within a heartbeat.
//!
//! [`HeadConfig::message_bytes`]: super::HeadConfig::message_bytes

use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot};

use super::state::{Applied, Command};
use super::types::Raft;
use super::wire::ControlError;

/// How long a write waits for a quorum before it fails with `NoQuorum`.
const QUORUM_WAIT: Duration = Duration::from_secs(3);

/// The most commands in one log entry.
const MAX_BATCH: usize = 1024;

type Answer = Result<(u64, Applied), ControlError>;

/// A command and where its answer goes.
type Queued = (Command, oneshot::Sender<Answer>);

/// The most journal writes (durable actors' events, `head::journal`) in
/// one log entry.
const JOURNAL_PER_BATCH: usize = 256;

/// The door to the head's log. Cheap to clone.
///
/// Two queues feed it: the control plane's commands (placements, leases'
/// consequences, operators' changes) and durable actors' journal writes.
/// Each batch takes the control plane's waiting commands first, then
/// journal writes in what is left of it, at most [`JOURNAL_PER_BATCH`].
/// So however many journal writes wait, a placement waits for at most
/// the one batch in flight before its own goes (what it waited before
/// journals existed), and a batch's journal share is bounded in count and
/// by the bytes the control plane left; journal writes take the spare
/// capacity of every batch, and the whole of an idle control plane's.
#[derive(Clone)]
pub(crate) struct Writes {
    queue: mpsc::UnboundedSender<Queued>,
    journal: mpsc::UnboundedSender<Queued>,
}

impl Writes {
    /// Starts the batching task, with batches of at most `max_bytes` of
    /// commands (a single larger command goes alone); it ends when every
    /// handle is dropped.
    pub(crate) fn start(raft: Raft, max_bytes: usize) -> Self {
        let (queue, mut commands) = mpsc::unbounded_channel::<Queued>();
        let (journal, mut journals) = mpsc::unbounded_channel::<Queued>();
        actix::spawn(async move {
            // The commands that did not fit in the last batch (of each
            // queue): the next one starts with them.
            let mut carried: Option<Queued> = None;
            let mut carried_journal: Option<Queued> = None;
            let mut open = (true, true);
            loop {
                let mut batch: Vec<Queued> = Vec::new();
                let mut bytes = 0usize;
                if let Some(first) = carried.take() {
                    bytes = encoded_len(&first.0);
                    batch.push(first);
                }
                if batch.is_empty() && carried_journal.is_none() {
                    let first = tokio::select! {
                        biased;
                        c = commands.recv(), if open.0 => c.ok_or(0),
                        j = journals.recv(), if open.1 => {
                            match j {
                                Some(j) => { carried_journal = Some(j); Err(2) }
                                None => Err(1),
                            }
                        }
                        else => break,
                    };
                    match first {
                        Ok(first) => {
                            bytes = encoded_len(&first.0);
                            batch.push(first);
                        }
                        Err(0) => {
                            open.0 = false;
                            continue;
                        }
                        Err(1) => {
                            open.1 = false;
                            continue;
                        }
                        Err(_) => {}
                    }
                }
                // The control plane's commands first.
                while batch.len() < MAX_BATCH {
                    let Ok(next) = commands.try_recv() else {
                        break;
                    };
                    let more = bytes.saturating_add(encoded_len(&next.0));
                    if more > max_bytes && !batch.is_empty() {
                        carried = Some(next);
                        break;
                    }
                    bytes = more;
                    batch.push(next);
                }
                // Then journal writes, in what is left.
                let mut journaled = 0usize;
                if carried.is_none() {
                    while journaled < JOURNAL_PER_BATCH && batch.len() < MAX_BATCH {
                        let next = match carried_journal.take() {
                            Some(next) => next,
                            None => match journals.try_recv() {
                                Ok(next) => next,
                                Err(_) => break,
                            },
                        };
                        let more = bytes.saturating_add(encoded_len(&next.0));
                        if more > max_bytes && !batch.is_empty() {
                            carried_journal = Some(next);
                            break;
                        }
                        bytes = more;
                        batch.push(next);
                        journaled += 1;
                    }
                }
                if batch.is_empty() {
                    continue;
                }
                if batch.len() == 1 {
                    let (command, answer) = batch.remove(0);
                    let _ = answer.send(commit(&raft, command).await);
                    continue;
                }
                let (commands_, answers): (Vec<Command>, Vec<_>) = batch.into_iter().unzip();
                match commit(&raft, Command::Batch(commands_)).await {
                    Ok((index, Applied::Batch(results))) if results.len() == answers.len() => {
                        for (answer, result) in answers.into_iter().zip(results) {
                            let _ = answer.send(Ok((index, result)));
                        }
                    }
                    Ok((_, other)) => {
                        for answer in answers {
                            let _ = answer.send(Err(ControlError::Refused {
                                reason: format!("a batch was answered with {other:?}"),
                            }));
                        }
                    }
                    Err(e) => {
                        for answer in answers {
                            let _ = answer.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        Self { queue, journal }
    }

    /// Writes `command` through Raft: its log index and what applying it did.
    pub(crate) async fn write(&self, command: Command) -> Answer {
        Self::send(&self.queue, command).await
    }

    /// Writes a journal command through Raft, in the journal's share of
    /// the batches.
    pub(crate) async fn write_journal(&self, command: Command) -> Answer {
        Self::send(&self.journal, command).await
    }

    /// Writes journal commands as [`Writes::write_journal`] each, queued
    /// at once (so they share batches): their answers, in order.
    pub(crate) async fn write_journals(&self, commands: Vec<Command>) -> Vec<Answer> {
        let waits: Vec<_> = commands
            .into_iter()
            .map(|command| Self::queue(&self.journal, command))
            .collect();
        let mut answers = Vec::with_capacity(waits.len());
        for wait in waits {
            answers.push(Self::answer(wait).await);
        }
        answers
    }

    async fn send(queue: &mpsc::UnboundedSender<Queued>, command: Command) -> Answer {
        Self::answer(Self::queue(queue, command)).await
    }

    /// Queues `command`: where its answer will come (`None`: the batching
    /// task is gone).
    fn queue(
        queue: &mpsc::UnboundedSender<Queued>,
        command: Command,
    ) -> Option<oneshot::Receiver<Answer>> {
        let (answer, wait) = oneshot::channel();
        queue.send((command, answer)).ok().map(|()| wait)
    }

    async fn answer(wait: Option<oneshot::Receiver<Answer>>) -> Answer {
        let stopped = || ControlError::NoQuorum {
            reason: "the head is shutting down".to_owned(),
        };
        wait.ok_or_else(stopped)?.await.map_err(|_| stopped())?
    }
}

/// How many bytes `command` takes in the log (MessagePack, as stored),
/// counted without keeping them.
fn encoded_len(command: &Command) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(bytes.len());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Encoding to a counter fails only where storing the entry would: that
    // write reports it.
    let _ = rmp_serde::encode::write(&mut count, command);
    count.0
}

/// One Raft write.
async fn commit(raft: &Raft, command: Command) -> Answer {
    match tokio::time::timeout(QUORUM_WAIT, raft.client_write(command)).await {
        Err(_) => Err(ControlError::NoQuorum {
            reason: format!("no quorum acknowledged the write within {QUORUM_WAIT:?}"),
        }),
        Ok(Ok(response)) => Ok((response.log_id.index, response.data)),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            Err(ControlError::NotLeader {
                leader: f.leader_id.map(|l| l.0),
            })
        }
        Ok(Err(e)) => Err(ControlError::NoQuorum {
            reason: e.to_string(),
        }),
    }
}
