//! The node's side of membership: the mesh follows members (addresses
//! up, links to members down or gone closed), membership changes go to the
//! event log, and a drained node leaves and shuts down.

use super::*;
use crate::inspect::events::EventLog;

/// Subscribes the mesh to membership: addresses of members that are up,
/// and links to members that are down or gone closed at once.
pub(super) fn bridge(mesh: Mesh, log: EventLog, cluster: Cluster) {
    actix_rt::spawn(async move {
        let Ok((members, mut events)) = cluster.events().await else {
            return;
        };
        let me = mesh.id();
        let apply = |member: &Member| {
            if member.node == me {
                return;
            }
            match member.state {
                MemberState::Alive => {
                    let (via, relay) = member
                        .meta
                        .as_ref()
                        .map_or((Vec::new(), false), |m| (m.via.clone(), m.relay));
                    mesh.peer_up(member.node, member.addr, via, relay);
                }
                MemberState::Down | MemberState::Left => mesh.peer_down(member.node),
                _ => {}
            }
        };
        members.iter().for_each(apply);
        while let Some(next) = events.next().await {
            if let Ok(event) = &next {
                membership_event(&log, event);
            }
            match next {
                // Declared down and rejoined: a rumour, often from the
                // side of a partition without quorum. Head placements stay
                // while the lease lasts (the leader moves them only once
                // it ran out), so nothing stops here.
                Ok(ClusterEvent::Rejoined(_)) => {}
                // Metadata says how a member is reached (its relays).
                Ok(event) => apply(event.member()),
                Err(_) => {
                    // Events were lost: the member list says where things stand.
                    if let Ok(members) = cluster.members().await {
                        members.iter().for_each(apply);
                    }
                }
            }
        }
    });
}

/// Once the host says a head asked this node to leave (a drain moved
/// everything off it): leaves membership (waiting for the goodbye), shuts
/// the node down, and says so on `left`. Without this, a drained node
/// kept its mesh, its lease keeper renewed with the head leader (a new
/// link right after it left), and its process never ended.
pub(super) fn leave_when_drained(
    node: Node,
    mut asked: tokio::sync::watch::Receiver<bool>,
    left: tokio::sync::watch::Sender<bool>,
) {
    actix_rt::spawn(async move {
        if asked.wait_for(|asked| *asked).await.is_err() {
            return;
        }
        tracing::info!("drained: leaving the cluster, then shutting down");
        if let Some(cluster) = node.cluster() {
            cluster.leave().await;
        }
        node.shutdown();
        tracing::info!("drained: left the cluster and shut down");
        left.send_replace(true);
    });
}

/// Records a membership change among the node's events.
fn membership_event(log: &crate::inspect::events::EventLog, event: &ClusterEvent) {
    let what = match event {
        ClusterEvent::MemberUp(_) => "up",
        ClusterEvent::Suspect(_) => "suspect",
        ClusterEvent::MemberDown(_) => "down",
        ClusterEvent::MemberLeft(_) => "left",
        ClusterEvent::Rejoined(_) => "rejoined under a renewed identity",
        ClusterEvent::MetadataChanged(_) => return,
    };
    let m = event.member();
    // A member's name comes with its metadata, which may follow its first event.
    let name = match m.meta.as_ref() {
        Some(_) => m.name().to_owned(),
        None => m.node.short(),
    };
    log.record(
        "member",
        name,
        format!("{what} ({}, {})", m.node.short(), m.addr),
    );
}
