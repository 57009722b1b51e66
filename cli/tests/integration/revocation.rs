//! Revocation in seconds: an admin revokes a node's certificate while it
//! carries traffic; every node closes its links at its next lease renewal
//! (a fifth of the lease), it cannot reconnect, and the cluster carries on.

use std::time::{Duration, Instant};

use swarm::control::ControlError;
use swarm::AskError;
use swarm_cli::demo::{Add, Adder};

use crate::util::{control_cluster, eventually, operator, scratch};

#[actix_rt::test]
async fn a_revoked_node_is_dropped_by_every_node_within_two_seconds_and_cannot_return() {
    let dir = scratch("revoke");
    let mut serials = Vec::new();
    let (ca, nodes) = control_cluster(&dir, 1, 3, |_, c| {
        serials.push(c.handshake.cert.body().serial);
    })
    .await;
    let victim = nodes[3].node.clone();
    let victim_serial = serials[3];
    let member = nodes[0].node.listen_addr();
    // Every node talks to the victim: links everywhere, traffic flowing.
    for n in &nodes[..3] {
        n.node.connect(victim.listen_addr()).await.unwrap();
        let adder = n.node.remote::<Adder>(victim.id(), "adder");
        assert_eq!(adder.send(Add { a: 1, b: 1 }).await.unwrap(), 2);
    }
    let traffic = {
        let from = nodes[1].node.clone();
        let to = victim.id();
        actix_rt::spawn(async move {
            let adder = from.remote::<Adder>(to, "adder");
            let mut ok = 0u64;
            while adder
                .send_timeout(Add { a: 1, b: 2 }, Duration::from_secs(2))
                .await
                .is_ok()
            {
                ok += 1;
            }
            ok
        })
    };

    // An operator without admin may not revoke.
    let op = operator(&ca, "op", &["operator"], member).await;
    let op_control = op.node.control_through(member).await.unwrap();
    assert!(matches!(
        op_control.revoke(victim_serial, "n4").await,
        Err(ControlError::Forbidden { .. })
    ));
    let admin = operator(&ca, "root", &["operator", "admin"], member).await;
    let control = admin.node.control_through(member).await.unwrap();
    let started = Instant::now();
    assert!(control.revoke(victim_serial, "n4").await.unwrap());
    assert!(!control.revoke(victim_serial, "n4").await.unwrap(), "once");

    let others: Vec<swarm::Node> = nodes[..3].iter().map(|n| n.node.clone()).collect();
    let dropped = eventually(Duration::from_secs(10), || {
        let others = others.clone();
        let victim = victim.id();
        async move {
            others
                .iter()
                .all(|n| n.peers().iter().all(|p| p.id != victim))
        }
    })
    .await;
    let took = started.elapsed();
    let kept: Vec<&str> = others
        .iter()
        .filter(|n| n.peers().iter().any(|p| p.id == victim.id()))
        .map(|n| n.name())
        .collect();
    assert!(dropped, "{kept:?} kept their link to the revoked node");
    println!("every node dropped the revoked node's links {took:?} after the revocation");
    assert!(
        took < Duration::from_secs(2),
        "revocation took {took:?}, the documented bound is 2 s"
    );
    let carried = traffic.await.unwrap();
    assert!(carried > 0, "traffic flowed before the revocation");

    // It cannot reconnect, in either direction.
    let back = nodes[1].node.connect(victim.listen_addr()).await;
    assert!(back.is_err(), "a node dialed the revoked node: {back:?}");
    let adder = victim.remote::<Adder>(nodes[2].node.id(), "adder");
    let refused = adder.send(Add { a: 1, b: 1 }).await;
    assert!(
        matches!(
            refused,
            Err(AskError::Unreachable { .. } | AskError::LinkDown { .. })
        ),
        "{refused:?}"
    );
    // The cluster carries on.
    let adder = nodes[1].node.remote::<Adder>(nodes[2].node.id(), "adder");
    assert_eq!(adder.send(Add { a: 2, b: 2 }).await.unwrap(), 4);
    assert_eq!(
        control.revoked().await.unwrap(),
        vec![(victim_serial, "n4".to_owned())]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
