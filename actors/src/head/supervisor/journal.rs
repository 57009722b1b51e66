//! Durable actors' journal writes (`head::journal`): the leader checks a
//! write's size and its sender against the state it holds (so a forged or
//! oversized write never reaches the log), then writes it through the
//! journal's share of the batches; the apply checks again, authoritatively.

use actix::prelude::*;

use super::Supervisor;
use crate::head::journal::{JournalCommand, JournalDone, Recovery, StoreError};
use crate::head::state::{Applied, Command};
use crate::head::wire::journal::{
    check_group, AppendJournal, AppendJournals, ClaimJournal, SnapshotJournal,
};
use crate::head::wire::ControlError;

type Answer<T> = ResponseFuture<Result<Result<T, StoreError>, ControlError>>;

impl Supervisor {
    /// Writes a journal command (after the checks apply makes, on this
    /// leader's state: a refusal here costs no log entry).
    fn journal(&self, command: JournalCommand) -> Answer<JournalDone> {
        if let Err(e) = self.leading() {
            return Box::pin(async move { Err(e) });
        }
        if let Err(e) = command.check_size() {
            return Box::pin(async move { Ok(Err(e)) });
        }
        if let Some(refusal) = self.read(|m| m.state.journal_precheck(&command)) {
            return Box::pin(async move { Ok(Err(refusal)) });
        }
        let writes = self.writes.clone();
        Box::pin(async move {
            match writes.write_journal(Command::Journal(command)).await? {
                (_, Applied::Journal(done)) => Ok(done),
                (_, other) => Err(ControlError::Refused {
                    reason: format!("a journal write was answered with {other:?}"),
                }),
            }
        })
    }
}

impl Handler<ClaimJournal> for Supervisor {
    type Result = Answer<Recovery>;

    fn handle(&mut self, claim: ClaimJournal, _: &mut Context<Self>) -> Self::Result {
        let done = self.journal(JournalCommand::Claim {
            name: claim.name,
            epoch: claim.epoch,
            node: claim.node,
        });
        Box::pin(async move {
            Ok(match done.await? {
                Ok(JournalDone::Claimed(recovery)) => Ok(*recovery),
                Ok(other) => Err(unexpected(&other)),
                Err(e) => Err(e),
            })
        })
    }
}

impl Handler<AppendJournal> for Supervisor {
    type Result = Answer<u64>;

    fn handle(&mut self, append: AppendJournal, _: &mut Context<Self>) -> Self::Result {
        let done = self.journal(JournalCommand::Append {
            writer: append.writer,
            node: append.node,
            first_seq: append.first_seq,
            events: append.events,
        });
        Box::pin(async move {
            Ok(match done.await? {
                Ok(JournalDone::Appended { next }) => Ok(next),
                Ok(other) => Err(unexpected(&other)),
                Err(e) => Err(e),
            })
        })
    }
}

/// A node's group of appends: each checked (size, sender, fencing) as a
/// lone [`AppendJournal`] would be, the ones that pass written through the
/// journal's share of the batches (queued at once, so they share them),
/// each answered on its own; a group over its bounds is refused whole.
impl Handler<AppendJournals> for Supervisor {
    type Result = ResponseFuture<Result<Vec<Result<u64, StoreError>>, ControlError>>;

    fn handle(&mut self, group: AppendJournals, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.leading().and_then(|()| check_group(&group.appends)) {
            return Box::pin(async move { Err(e) });
        }
        let node = group.node;
        let commands: Vec<JournalCommand> = group
            .appends
            .into_iter()
            .map(|a| JournalCommand::Append {
                writer: a.writer,
                node,
                first_seq: a.first_seq,
                events: a.events,
            })
            .collect();
        // Refused before the log (each on its own), or written.
        let refusals: Vec<Option<StoreError>> = self.read(|m| {
            commands
                .iter()
                .map(|c| c.check_size().err().or_else(|| m.state.journal_precheck(c)))
                .collect()
        });
        let writes = self.writes.clone();
        Box::pin(async move {
            // In the appends' order: refused here (`Some`), or written.
            let mut answers = Vec::with_capacity(commands.len());
            let mut passed = Vec::new();
            for (command, refusal) in commands.into_iter().zip(refusals) {
                if refusal.is_none() {
                    passed.push(Command::Journal(command));
                }
                answers.push(refusal.map(Err));
            }
            let mut written = writes.write_journals(passed).await.into_iter();
            let mut out = Vec::with_capacity(answers.len());
            for answer in answers {
                out.push(match answer {
                    Some(refused) => refused,
                    None => match written.next() {
                        Some(Ok((_, Applied::Journal(Ok(JournalDone::Appended { next }))))) => {
                            Ok(next)
                        }
                        Some(Ok((_, Applied::Journal(Ok(other))))) => Err(unexpected(&other)),
                        Some(Ok((_, Applied::Journal(Err(e))))) => Err(e),
                        Some(Ok((_, other))) => Err(StoreError::Unavailable {
                            reason: format!("a journal write was answered with {other:?}"),
                        }),
                        // Leadership moved: the whole group goes to the new
                        // leader (what was written meanwhile comes back as
                        // a conflict its writer recognises, as for a lone
                        // append whose answer was lost).
                        Some(Err(e @ ControlError::NotLeader { .. })) => return Err(e),
                        Some(Err(e)) => Err(StoreError::from(e)),
                        None => Err(StoreError::Unavailable {
                            reason: "a journal write went unanswered".to_owned(),
                        }),
                    },
                });
            }
            Ok(out)
        })
    }
}

impl Handler<SnapshotJournal> for Supervisor {
    type Result = Answer<()>;

    fn handle(&mut self, snapshot: SnapshotJournal, _: &mut Context<Self>) -> Self::Result {
        let done = self.journal(JournalCommand::Snapshot {
            writer: snapshot.writer,
            node: snapshot.node,
            seq: snapshot.seq,
            bytes: snapshot.bytes,
        });
        Box::pin(async move {
            Ok(match done.await? {
                Ok(JournalDone::Snapshotted) => Ok(()),
                Ok(other) => Err(unexpected(&other)),
                Err(e) => Err(e),
            })
        })
    }
}

fn unexpected(done: &JournalDone) -> StoreError {
    StoreError::Unavailable {
        reason: format!("the head answered a journal write with {done:?}"),
    }
}
