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

/// The door to the head's log. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Writes {
    queue: mpsc::UnboundedSender<Queued>,
}

impl Writes {
    /// Starts the batching task, with batches of at most `max_bytes` of
    /// commands (a single larger command goes alone); it ends when every
    /// handle is dropped.
    pub(crate) fn start(raft: Raft, max_bytes: usize) -> Self {
        let (queue, mut commands) = mpsc::unbounded_channel::<Queued>();
        actix::spawn(async move {
            // The command that did not fit in the last batch: the next
            // one starts with it.
            let mut carried: Option<Queued> = None;
            loop {
                let first = match carried.take() {
                    Some(first) => first,
                    None => match commands.recv().await {
                        Some(first) => first,
                        None => break,
                    },
                };
                let mut bytes = encoded_len(&first.0);
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    let Ok(next) = commands.try_recv() else {
                        break;
                    };
                    bytes = bytes.saturating_add(encoded_len(&next.0));
                    if bytes > max_bytes {
                        carried = Some(next);
                        break;
                    }
                    batch.push(next);
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
        Self { queue }
    }

    /// Writes `command` through Raft: its log index and what applying it did.
    pub(crate) async fn write(&self, command: Command) -> Answer {
        let (answer, wait) = oneshot::channel();
        let stopped = || ControlError::NoQuorum {
            reason: "the head is shutting down".to_owned(),
        };
        self.queue.send((command, answer)).map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
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
