//! A lease holder without a host, for `swarm bench control --holders`:
//! it renews a node's lease over its real mesh link with the real
//! renewal protocol (the keeper's timing, delta reports, resyncs), runs no
//! actor and can start no type, so the head never places anything on it.
//! It skips what the lease task does with a grant: the host's starts and
//! stops, revocations and the capability key.

use std::time::{Duration, Instant};

use swarm_protocol::NodeId;

use super::Control;
use crate::head::wire::{ControlError, Renew};
use crate::supervision::{Keeper, Reporter};

/// One lease holder: call [`LeaseHolder::renew`] after each
/// [`LeaseHolder::wait`].
#[derive(Debug)]
pub struct LeaseHolder {
    control: Control,
    node: NodeId,
    keeper: Keeper,
    reporter: Reporter,
    /// The newest grant's index (what a host would have seen).
    seen_index: u64,
    /// How many revocations the grants listed.
    revoked_known: usize,
}

impl LeaseHolder {
    /// Renews as `node` (the node whose link `control` uses; the head
    /// takes the renewing node from the link, whatever this says), its
    /// report session drawn from `session`.
    pub fn new(control: Control, node: NodeId, session: u64) -> Self {
        Self {
            control,
            node,
            keeper: Keeper::default(),
            reporter: Reporter::new(session),
            seen_index: 0,
            revoked_known: 0,
        }
    }

    /// How long to wait before the next renewal.
    pub fn wait(&self) -> Duration {
        self.keeper.wait()
    }

    /// One renewal: answers how long the grant took.
    ///
    /// # Errors
    ///
    /// The control plane's answer when no grant came.
    pub async fn renew(&mut self) -> Result<Duration, ControlError> {
        self.keeper.renewing();
        let report = self.reporter.report(&[], &[]);
        let seq = report.seq;
        let renew = Renew {
            node: self.node,
            report,
            seen_index: self.seen_index,
            revoked_known: self.revoked_known,
            roles: Vec::new(),
        };
        let sent = Instant::now();
        match self.control.call(renew, self.keeper.answer_within()).await {
            Ok(grant) => {
                let took = sent.elapsed();
                self.keeper
                    .granted(sent, Duration::from_millis(grant.lease_ms));
                self.reporter.granted(seq, grant.resync);
                if grant.resync {
                    self.keeper.resync();
                }
                self.seen_index = grant.index;
                self.revoked_known += grant.revoked.len();
                Ok(took)
            }
            Err(e) => {
                self.keeper.failed();
                self.reporter.failed();
                Err(e)
            }
        }
    }
}
