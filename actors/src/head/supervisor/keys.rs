//! Rotating the head group's capability key: a Raft command moves every
//! head to the key's next generation (derived from the TOTP secret), and
//! nodes take its public half with their next lease grant, so every
//! capability signed before stops verifying.

use actix::prelude::*;

use super::Supervisor;
use crate::head::state::Command;
use crate::head::wire::{ControlError, RotateCapabilityKey};

impl Handler<RotateCapabilityKey> for Supervisor {
    type Result = ResponseActFuture<Self, Result<u64, ControlError>>;

    fn handle(&mut self, _: RotateCapabilityKey, _: &mut Context<Self>) -> Self::Result {
        let leading = self.leading().and_then(|()| {
            if self.totp.is_some() {
                Ok(())
            } else {
                Err(ControlError::Refused {
                    reason: "the head leader holds no TOTP secret: there is no capability key"
                        .into(),
                })
            }
        });
        let writes = self.writes.clone();
        Box::pin(
            async move {
                leading?;
                writes.write(Command::RotateCapabilityKey).await?;
                Ok(())
            }
            .into_actor(self)
            .map(|written: Result<(), ControlError>, act, _| {
                written?;
                let generation = act.read(|m| m.state.capability_generation());
                if let Some(key) = act.group_key() {
                    act.sessions.set_key(key.public());
                }
                tracing::warn!(generation, "capability key rotated: operators log in again");
                Ok(generation)
            }),
        )
    }
}

impl Supervisor {
    /// The head group's capability key of the generation the state names
    /// (from the TOTP secret; none without one).
    pub(super) fn group_key(&self) -> Option<swarm_protocol::capability::CapabilityKey> {
        let generation = self.read(|m| m.state.capability_generation());
        self.totp
            .as_ref()
            .map(|t| crate::operators::capability_key(t, generation))
    }

    /// The public half of [`Supervisor::group_key`], as every grant carries
    /// it. Derived once per generation: deriving it (an ed25519 base point
    /// multiplication) for every grant was most of the leader's CPU at
    /// thousands of renewals a second.
    pub(super) fn group_public(&self) -> Option<[u8; 32]> {
        let totp = self.totp.as_ref()?;
        let generation = self.read(|m| m.state.capability_generation());
        if let Some((cached, public)) = self.group_public.get() {
            if cached == generation {
                return Some(public);
            }
        }
        let public = crate::operators::capability_key(totp, generation).public();
        self.group_public.set(Some((generation, public)));
        Some(public)
    }
}
