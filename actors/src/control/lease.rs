//! The lease keeper: a task on every node with membership that renews the
//! node's lease with the head leader, reporting the head-placed actors it
//! runs, and hands each grant to the host (which starts and stops what the
//! grant lists, and stops every head-placed actor when the lease runs out).
//!
//! The lease counts from when the renewal was sent, so a slow answer only
//! shortens it. What it runs goes as a delta against the last report the
//! leader answered, or in full on any doubt (`crate::supervision::Reporter`).

use std::time::{Duration, Instant};

use actix::Addr;
use swarm_protocol::NodeId;

use super::Control;
use crate::head::wire::Renew;
use crate::supervision::{ApplyGrant, Host, Keeper, LeaseRunning, Reporter};

/// Renews until the host stops.
pub(crate) fn spawn(control: Control, host: Addr<Host>, node: NodeId) {
    actix::spawn(async move {
        let mut keeper = Keeper::default();
        let mut reporter = Reporter::new(session());
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
            let Ok(local) = host.send(LeaseRunning).await else {
                return;
            };
            let sent = Instant::now();
            let report = reporter.report(&local.running, &local.types);
            let seq = report.seq;
            let renew = Renew {
                node,
                report,
                seen_index: local.seen_index,
                revoked_known,
                // What a head answering locally reads; over a link, the
                // head takes them from the certificate.
                roles: control.mesh.handshake().cert.body().roles.clone(),
            };
            match control.call(renew, keeper.answer_within()).await {
                Ok(grant) => {
                    let until = keeper.granted(sent, Duration::from_millis(grant.lease_ms));
                    reporter.granted(seq, grant.resync);
                    if grant.resync {
                        keeper.resync();
                    }
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
                    reporter.failed();
                    tracing::debug!(error = %e, "lease renewal failed");
                }
            }
        }
    });
}

/// A new keeper life's report session: random, so the leader tells this
/// life's reports from an earlier life's (a clock could repeat).
fn session() -> u64 {
    let mut bytes = [0u8; 8];
    // Without randomness the time still tells lives apart.
    if getrandom::fill(&mut bytes).is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
    }
    u64::from_le_bytes(bytes)
}
