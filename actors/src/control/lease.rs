//! The lease keeper: a task on every node with membership that renews the
//! node's lease with the head leader, reporting the head-placed actors it
//! runs, and hands each grant to the host (which starts and stops what the
//! grant lists, and stops every head-placed actor when the lease runs out).
//!
//! The lease counts from when the renewal was sent, so a slow answer only
//! shortens it.

use std::time::{Duration, Instant};

use actix::Addr;
use swarm_protocol::NodeId;

use super::Control;
use crate::head::wire::Renew;
use crate::supervision::{ApplyGrant, Host, LeaseRunning};

/// How often to look for heads while none is known: from the first
/// value, doubling up to the second (an idle cluster without a control
/// plane should not wake up for it).
const IDLE: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(5));

/// The lease keeper's timing as a pure machine (the control-plane
/// simulator drives the same one): when to renew next, and how long a
/// grant holds.
#[derive(Debug, Clone)]
pub(crate) struct Keeper {
    every: Duration,
    idle: Duration,
    leased: bool,
}

impl Default for Keeper {
    fn default() -> Self {
        Self {
            every: Duration::from_millis(200),
            idle: IDLE.0,
            leased: false,
        }
    }
}

impl Keeper {
    /// How long to wait before the next step.
    pub(crate) fn wait(&self) -> Duration {
        self.every
    }

    /// Whether the next step needs to know of a head first (no lease: the
    /// leader is not known from renewals).
    pub(crate) fn needs_heads(&self) -> bool {
        !self.leased
    }

    /// No head is known: wait longer each time, up to [`IDLE`]'s bound.
    pub(crate) fn no_heads(&mut self) {
        self.every = self.idle;
        self.idle = (self.idle * 2).min(IDLE.1);
    }

    /// A renewal goes out now.
    pub(crate) fn renewing(&mut self) {
        self.idle = IDLE.0;
    }

    /// How long to wait for a renewal's answer.
    pub(crate) fn answer_within(&self) -> Duration {
        self.every * 2
    }

    /// The renewal sent at `sent` got a lease of `lease`: answers until
    /// when it holds (counted from the sending, so a slow answer only
    /// shortens it); the next renewal comes a fifth of it later.
    pub(crate) fn granted(&mut self, sent: Instant, lease: Duration) -> Instant {
        self.every = (lease / 5).max(Duration::from_millis(20));
        self.leased = true;
        sent + lease
    }

    /// The renewal failed: ask again soon.
    pub(crate) fn failed(&mut self) {
        self.leased = false;
        self.every = self.every.min(Duration::from_millis(200));
    }
}

/// Renews until the host stops.
pub(crate) fn spawn(control: Control, host: Addr<Host>, node: NodeId) {
    actix::spawn(async move {
        let mut keeper = Keeper::default();
        // How many of the head's revocations this node holds.
        let mut revoked_known = 0usize;
        loop {
            tokio::time::sleep(keeper.wait()).await;
            // While renewals succeed the leader is known: no member list needed.
            if keeper.needs_heads() && control.heads().await.is_empty() {
                keeper.no_heads();
                continue;
            }
            keeper.renewing();
            let Ok(report) = host.send(LeaseRunning).await else {
                return;
            };
            let sent = Instant::now();
            let renew = Renew {
                node,
                running: report.running,
                types: report.types,
                seen_index: report.seen_index,
                revoked_known,
                // What a head answering locally reads; over a link, the
                // head takes them from the certificate.
                roles: control.mesh.handshake().cert.body().roles.clone(),
            };
            match control.call(renew, keeper.answer_within()).await {
                Ok(grant) => {
                    let until = keeper.granted(sent, Duration::from_millis(grant.lease_ms));
                    if let Some(key) = grant.capability_key {
                        control.sessions.set_key(key);
                    }
                    if !grant.revoked.is_empty() {
                        revoked_known += grant.revoked.len();
                        let new = control.mesh.revoke(&grant.revoked);
                        tracing::warn!(serials = ?grant.revoked, new, "certificates revoked by the head group: their links are closed and their handshakes refused");
                    }
                    if host.send(ApplyGrant { until, grant }).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    keeper.failed();
                    tracing::debug!(error = %e, "lease renewal failed");
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_counts_from_the_sending_and_a_failure_renews_soon() {
        let mut keeper = Keeper::default();
        assert!(keeper.needs_heads());
        keeper.no_heads();
        keeper.no_heads();
        assert_eq!(keeper.wait(), IDLE.0 * 2, "idle waits grow");
        keeper.renewing();
        let sent = Instant::now();
        let lease = Duration::from_secs(3);
        assert_eq!(keeper.granted(sent, lease), sent + lease);
        assert!(!keeper.needs_heads());
        assert_eq!(keeper.wait(), lease / 5);
        assert_eq!(keeper.answer_within(), lease / 5 * 2);
        keeper.failed();
        assert!(keeper.needs_heads());
        assert_eq!(keeper.wait(), Duration::from_millis(200));
    }
}
