//! The policy as one link applies it: every message is decided before
//! anything of it is decoded, from the class its type declares and the
//! caller's certificate, and the decision is remembered per target, tag
//! and login until the directory changes.

use std::sync::Arc;

use swarm_protocol::{RemoteError, Target};

use super::{Access, Decision, Decisions, Policy, Target as PolicyTarget};
use crate::directory::{Caller, Directory};

/// One link's view of the node's policy.
pub(crate) struct LinkPolicy {
    directory: Directory,
    policy: Arc<Policy>,
    decisions: Decisions,
}

/// A message the policy refused: what to count and log.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// The error for the sender.
    pub(crate) error: RemoteError,
    /// Decided now (log it), or remembered (count it only).
    pub(crate) fresh: bool,
}

impl LinkPolicy {
    /// Decides with `policy` about the actors of `directory`.
    pub(crate) fn new(directory: Directory, policy: Arc<Policy>) -> Self {
        LinkPolicy {
            directory,
            policy,
            decisions: Decisions::default(),
        }
    }

    /// Whether the policy lets a message `tag` from `caller` reach `to`
    /// (checked before anything is decoded; decisions are remembered per
    /// target, tag and login until the directory changes). `logged_in`:
    /// the caller proved a second factor. Answers the class the message
    /// declared (audited or not).
    ///
    /// # Errors
    ///
    /// A [`Refusal`] holding [`RemoteError::Forbidden`].
    pub(crate) fn authorize(
        &mut self,
        to: &Target<'_>,
        tag: &str,
        caller: &Caller,
        logged_in: bool,
    ) -> Result<Access, Refusal> {
        self.decide(to, tag, None, caller, logged_in)
    }

    /// As [`LinkPolicy::authorize`], for what the mesh itself handles
    /// rather than an actor (relay frames): `access` is the class the mesh
    /// declares for `tag`, decided with the same policy and remembered the
    /// same way.
    ///
    /// # Errors
    ///
    /// A [`Refusal`] holding [`RemoteError::Forbidden`].
    pub(crate) fn authorize_mesh(
        &mut self,
        name: &str,
        tag: &str,
        access: Access,
        caller: &Caller,
        logged_in: bool,
    ) -> Result<Access, Refusal> {
        self.decide(&Target::Name(name), tag, Some(access), caller, logged_in)
    }

    fn decide(
        &mut self,
        to: &Target<'_>,
        tag: &str,
        declared: Option<Access>,
        caller: &Caller,
        logged_in: bool,
    ) -> Result<Access, Refusal> {
        let generation = self.directory.generation();
        let name = match to {
            Target::Name(name) => *name,
            Target::Id(_) => "",
        };
        let directory = &self.directory;
        let policy = &self.policy;
        let (decision, fresh) =
            self.decisions
                .get(generation, name, tag, logged_in, || -> Decision {
                    // An unknown target or tag is decided as a user message
                    // (nodes then learn it does not exist; others are refused).
                    let access = declared.unwrap_or_else(|| {
                        directory
                            .dispatcher(name)
                            .and_then(|d| d.access(tag))
                            .unwrap_or(Access::User)
                    });
                    let services = directory.services(name);
                    let target = PolicyTarget {
                        name,
                        services: &services,
                        access,
                    };
                    policy
                        .decide(&caller.roles, logged_in, &target, tag)
                        .map(|()| access)
                });
        decision.map_err(|error| Refusal { error, fresh })
    }
}
