//! Durable actors' journal writes (`head::journal`): the leader checks a
//! write's size and its sender against the state it holds (so a forged or
//! oversized write never reaches the log), then writes it through the
//! journal's share of the batches; the apply checks again, authoritatively.

use actix::prelude::*;

use super::Supervisor;
use crate::head::journal::{JournalCommand, JournalDone, Recovery, StoreError};
use crate::head::state::{Applied, Command};
use crate::head::wire::journal::{AppendJournal, ClaimJournal, SnapshotJournal};
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
