//! `swarm cert renew`: a node switches to a new certificate for its key
//! while it runs; its node id, links and actors stay, and new handshakes
//! present the new certificate (the old serial can then be revoked).

use swarm::credentials::{issue, random_serial, Throwaway};
use swarm_cli::demo::{Add, Adder};

use crate::util::{config, start};

#[actix_rt::test]
async fn a_node_switches_to_a_renewed_certificate_without_dropping_anything() {
    let ca = Throwaway::new("test");
    let a_config = config(&ca, "a");
    let key = a_config.handshake.key.clone();
    let old_serial = a_config.handshake.cert.body().serial;
    let a = start(a_config).await;
    let b = start(config(&ca, "b")).await;
    b.node.connect(a.node.listen_addr()).await.unwrap();
    let adder = b.node.remote::<Adder>(a.node.id(), "adder");
    assert_eq!(adder.send(Add { a: 1, b: 1 }).await.unwrap(), 2);

    // A certificate for another key does not fit.
    let other = ca.node("a", &["worker"]);
    assert!(a.node.renew_certificate(other.cert).is_err());

    let new_serial = random_serial();
    let renewed = issue(&ca.ca, &key, "a", &["worker".to_owned()], 30, new_serial);
    a.node.renew_certificate(renewed).unwrap();
    // The old serial is revoked (this process's nodes share one trust store).
    ca.trust.revoke([old_serial]);

    // The link up stays and the actor keeps its count.
    assert_eq!(adder.send(Add { a: 2, b: 2 }).await.unwrap(), 4);
    // A new node's handshake sees the renewed certificate and accepts it.
    let c = start(config(&ca, "c")).await;
    let peer = c.node.connect(a.node.listen_addr()).await.unwrap();
    assert_eq!(peer.id, a.node.id(), "the same node id");
    let from_c = c.node.remote::<Adder>(a.node.id(), "adder");
    assert_eq!(from_c.send(Add { a: 3, b: 3 }).await.unwrap(), 6);
}
