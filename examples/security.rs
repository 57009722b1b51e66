//! The security layer in one process: a head whose control-plane store is
//! sealed under a keyring (a passphrase, argon2id), a worker with a policy
//! that opens one service to a custom role, an operator who logs in with a
//! TOTP code before anything else reaches the cluster, and a revocation
//! that every node applies at its next lease renewal.
//!
//! Run it with:
//!
//! ```sh
//! cargo run --example security
//! ```

use std::time::{Duration, Instant};

use actix::prelude::*;
use swarm::control::{ControlError, HeadConfig};
use swarm::credentials::{Keyring, Throwaway, Unlock};
use swarm::policy::{Policy, PolicyFile, Rule};
use swarm::{AskError, ClusterConfig, LoginError, MeshConfig, Node};
use swarm_protocol::sealed::keyring::KdfParams;

/// A billing service: answers the price of an item.
struct Billing;

impl Actor for Billing {
    type Context = Context<Self>;
}

#[derive(serde::Serialize, serde::Deserialize, Message)]
#[rtype(result = "u64")]
struct Price(String);

swarm::remote_message!(Price => "example.billing.Price");

impl Handler<Price> for Billing {
    type Result = u64;

    fn handle(&mut self, Price(item): Price, _: &mut Context<Self>) -> u64 {
        item.len() as u64 * 100
    }
}

swarm::remote_actor!(Billing: Price);

fn config(ca: &Throwaway, name: &str, roles: &[&str]) -> MeshConfig {
    MeshConfig::new("127.0.0.1:0".parse().unwrap(), ca.node(name, roles))
}

#[actix::main]
async fn main() {
    let ca = Throwaway::new("example");
    let dir = std::env::temp_dir().join(format!("swarm-example-security-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // 1. Sealed at rest: the head's Raft log and snapshots go through a
    //    keyring wrapped by a passphrase (argon2id, OWASP's minimum cost).
    let started = Instant::now();
    let passphrase = Unlock::Passphrase(zeroize::Zeroizing::new("a long passphrase".into()));
    let keyring = Keyring::create(&dir.join("keyring"), &passphrase, KdfParams::DEFAULT).unwrap();
    println!("keyring created (argon2id) in {:?}", started.elapsed());
    let mut head = config(&ca, "head", &["head"]);
    head.cluster = Some(ClusterConfig::default());
    let mut head_config = HeadConfig::new(dir.join("head"));
    head_config.seal = std::sync::Arc::new(keyring);
    // Operators' TOTP codes are checked by heads holding the TOTP secret.
    head_config.totp = Some(std::sync::Arc::new(zeroize::Zeroizing::new(ca.totp)));
    head.head = Some(head_config);
    let head = Node::start(head).await.unwrap();

    // 2. Roles on every message: the worker's policy lets certificates with
    //    the custom role `billing-client` reach the billing service only.
    let mut worker = config(&ca, "worker", &["worker"]);
    worker.cluster = Some(ClusterConfig {
        seeds: vec![head.listen_addr()],
        ..ClusterConfig::default()
    });
    worker.policy = std::sync::Arc::new(
        Policy::new(&PolicyFile {
            allow: vec![Rule {
                roles: vec!["billing-client".into()],
                to: vec!["service:billing".into()],
                tags: vec![">".into()],
            }],
            deny: Vec::new(),
        })
        .unwrap(),
    );
    let worker = Node::start(worker).await.unwrap();
    worker.spawn("billing-1", |_| Billing).unwrap();
    worker.spawn("ledger", |_| Billing).unwrap();
    let cluster = worker.cluster().unwrap().clone();
    cluster
        .register_service("billing", "billing-1")
        .await
        .unwrap();
    let shop = config(&ca, "shop", &["billing-client"]);
    let shop_serial = shop.handshake.cert.body().serial;
    let client = Node::start(shop).await.unwrap();
    client.connect(worker.listen_addr()).await.unwrap();
    let billing = client.remote::<Billing>(worker.id(), "billing-1");
    println!(
        "shop -> billing: price {}",
        billing.send(Price("book".into())).await.unwrap()
    );
    let ledger = client.remote::<Billing>(worker.id(), "ledger");
    match ledger.send(Price("book".into())).await {
        Err(AskError::Forbidden { reason }) => println!("shop -> ledger: forbidden ({reason})"),
        other => println!("shop -> ledger: {other:?}"),
    }

    // 3. Operators with two factors: nothing but the login reaches a node
    //    until the operator proves a current TOTP code.
    let op_config = config(&ca, "alice", &["operator", "admin"]);
    let body = op_config.handshake.cert.body().clone();
    let seed = swarm::operators::seed(&ca.totp, body.serial, &body.name);
    println!(
        "alice enrolls: {}",
        swarm::operators::otpauth_uri(&seed, "example", "alice")
    );
    let alice = Node::start(op_config).await.unwrap();
    let member = worker.listen_addr();
    let control = alice.control_through(member).await.unwrap();
    println!("before logging in: {:?}", control.revoked().await);
    let code = swarm::operators::code_at(&seed, swarm::credentials::unix_now());
    // The head group forms and the worker takes its first lease: retry.
    loop {
        match alice.login(member, &code).await {
            Ok(_) => break,
            // Not yet decided (no head leads yet): try again. A refusal of
            // the code itself ends it.
            Err(e) if !matches!(e, LoginError::Refused(ControlError::Login(_))) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    println!(
        "alice logged in with {code}; the same code again: {:?}",
        alice
            .login(member, &code)
            .await
            .err()
            .map(|e| e.to_string())
    );

    // 4. Revocation in seconds: every node drops the shop's links at its
    //    next lease renewal and refuses its handshakes.
    let revoked_at = Instant::now();
    println!(
        "alice revokes the shop's certificate: {:?}",
        control.revoke(shop_serial, "shop").await
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while worker.peers().iter().any(|p| p.id == client.id()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // (and the shop saw its end close)
    while !client.peers().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "the worker dropped the shop's link {:?} later",
        revoked_at.elapsed()
    );
    println!(
        "the shop dials again: {}",
        match client.connect(worker.listen_addr()).await {
            Ok(_) => "connected (unexpected)".to_owned(),
            Err(e) => format!("refused ({e})"),
        }
    );

    for node in [client, alice, worker, head] {
        node.shutdown();
    }
    let _ = std::fs::remove_dir_all(&dir);
    System::current().stop();
}
