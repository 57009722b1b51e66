//! The node's periodic summary log line: its refusal and drop counters
//! (mesh, gossip, cluster events), logged once per `summary_interval` when
//! any of them changed, so an operator reading the log sees traffic being
//! refused without asking the node. A quiet node logs nothing.

use std::time::Duration;

use crate::cluster::{Cluster, NodeCounters};
use crate::mesh::Mesh;

/// Starts the summary task on the current arbiter. It runs as long as the
/// arbiter, or until membership stops.
pub(crate) fn spawn(mesh: Mesh, cluster: Option<Cluster>, interval: Duration) {
    actix_rt::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let mut last = NodeCounters::default();
        loop {
            ticks.tick().await;
            let now = match &cluster {
                Some(cluster) => match cluster.counters().await {
                    Ok(counters) => counters,
                    // Membership stopped: the node is leaving.
                    Err(_) => return,
                },
                None => NodeCounters {
                    mesh: mesh.stats(),
                    ..NodeCounters::default()
                },
            };
            if now.gossip_replayed > last.gossip_replayed {
                // Replays are an attack; a steady stream of refusals is far
                // more often a member whose clock is off.
                tracing::warn!(
                    refused = now.gossip_replayed - last.gossip_replayed,
                    "gossip datagrams refused as stale or replayed: check that the \
                     members' clocks agree within max_clock_skew (30 s by default)"
                );
            }
            if drops(&now) != drops(&last) {
                let m = &now.mesh;
                tracing::info!(
                    links = m.links,
                    handshakes_refused = m.handshakes_refused,
                    silent_dropped = m.silent_dropped,
                    links_failed = m.links_failed,
                    tells_dropped = m.tells_dropped,
                    gossip_unsealed = now.gossip_unsealed,
                    gossip_oversized = now.gossip_oversized,
                    gossip_malformed = now.gossip_malformed,
                    gossip_replayed = now.gossip_replayed,
                    events_lost = now.events_lost,
                    "node counters"
                );
            }
            last = now;
        }
    });
}

/// The counters that only grow when something was refused or lost.
fn drops(c: &NodeCounters) -> [u64; 8] {
    [
        c.mesh.handshakes_refused,
        c.mesh.links_failed,
        c.mesh.tells_dropped,
        c.gossip_unsealed,
        c.gossip_oversized,
        c.gossip_malformed,
        c.gossip_replayed,
        c.events_lost,
    ]
}
