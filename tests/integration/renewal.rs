//! `swarm cert renew`: a node switches to a new certificate for its key
//! while it runs; its node id, links and actors stay, and new handshakes
//! present the new certificate (the old serial can then be revoked).

use swarm::credentials::{issue, random_serial, Throwaway};
use swarm_cli::demo::{Add, Adder};

use crate::util::{config, exe, poll_until, scratch, start};

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

/// The node process follows its certificate file: `swarm cert renew`
/// rewrites it and the node switches (told by inotify on Linux, without a
/// timer of its own).
#[test]
fn a_node_process_switches_when_swarm_cert_renew_rewrites_its_certificate_file() {
    let dir = scratch("renew-file");
    let mut cluster =
        swarm_cli::local::LocalCluster::start_members_logged(&exe(), &dir, 1, &[]).unwrap();
    cluster.remove_dir_on_drop(true);
    let renewed = std::process::Command::new(exe())
        .args([
            "cert", "renew", "--name", "n1", "--ca-dir", ".", "--out", ".",
        ])
        .args(["--key-file", swarm::credentials::THROWAWAY_KEY_FILE])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        renewed.status.success(),
        "{}",
        String::from_utf8_lossy(&renewed.stderr)
    );
    let log = cluster.log_path("n1");
    let switched = poll_until(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_millis(50),
        || {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|text| text.contains("switched to the renewed certificate"))
        },
    );
    assert!(
        switched.is_some(),
        "n1 did not switch: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
