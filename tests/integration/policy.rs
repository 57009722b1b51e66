//! Roles on every message, over real links: the receiving node checks its
//! policy before decoding; a refused ask is typed at the sender
//! (`AskError::Forbidden`), a refused tell is dropped, and both are counted
//! at the receiver (and logged there once per link, target and tag).

use std::time::Duration;

use swarm::control::{ControlError, Spawn};
use swarm::policy::{Policy, PolicyFile, Rule};
use swarm::supervision::Restart;
use swarm::{AskError, RemoteSpawnError};
use swarm_cli::demo::{Add, Adder, Bump, Count, Counter, CounterState, Ledger, LedgerArgs};

use crate::util::{
    config_with_roles, control_cluster, eventually, fast_gossip, operator, scratch, spawn_ready,
    start,
};

fn rule(roles: &[&str], to: &[&str], tags: &[&str]) -> Rule {
    let v = |x: &[&str]| x.iter().map(|s| (*s).to_owned()).collect();
    Rule {
        roles: v(roles),
        to: v(to),
        tags: v(tags),
    }
}

fn forbidden<T: std::fmt::Debug>(r: Result<T, AskError>) -> String {
    match r {
        Err(AskError::Forbidden { reason }) => reason,
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

#[actix_rt::test]
async fn a_worker_is_refused_by_system_actors_it_has_no_role_for() {
    let ca = swarm::credentials::Throwaway::new("test");
    let head = start(config_with_roles(&ca, "h", &["head"])).await;
    let worker = start(config_with_roles(&ca, "w", &["worker"])).await;
    worker.node.connect(head.node.listen_addr()).await.unwrap();
    // Starting actors on a host is for heads and admin operators.
    let err = worker
        .node
        .spawn_on::<Ledger>(
            head.node.id(),
            "l",
            &LedgerArgs { opening: 0 },
            1,
            Restart::never(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RemoteSpawnError::Ask(AskError::Forbidden { reason }) if reason.contains("swarm.HostSpawn")),
        "{err:?}"
    );
    // The user actors stay open to it.
    let adder = worker.node.remote::<Adder>(head.node.id(), "adder");
    assert_eq!(adder.send(Add { a: 1, b: 2 }).await.unwrap(), 3);
    assert!(head.node.stats().forbidden >= 1);
}

#[actix_rt::test]
async fn deny_beats_allow_and_refused_tells_are_dropped_and_counted() {
    let ca = swarm::credentials::Throwaway::new("test");
    let mut config = config_with_roles(&ca, "a", &["worker"]);
    config.policy = std::sync::Arc::new(
        Policy::new(&PolicyFile {
            allow: vec![rule(&["worker"], &[">"], &["demo.>"])],
            deny: vec![
                rule(&["worker"], &["adder"], &["demo.Add"]),
                rule(&["*"], &["counter"], &["demo.Bump"]),
            ],
        })
        .unwrap(),
    );
    let a = start(config).await;
    let b = start(config_with_roles(&ca, "b", &["worker"])).await;
    b.node.connect(a.node.listen_addr()).await.unwrap();
    let adder = b.node.remote::<Adder>(a.node.id(), "adder");
    let reason = forbidden(adder.send(Add { a: 1, b: 1 }).await);
    assert_eq!(reason, "demo.Add to adder is denied by policy rule deny[0]");
    // Allowed by the allow rule, denied by nothing.
    assert_eq!(
        adder.send(Count).await.unwrap(),
        0,
        "the refused Add never ran"
    );
    // Tells: dropped before decoding, counted; nothing reaches the counter.
    let counter = b.node.remote::<Counter>(a.node.id(), "counter");
    let before = a.node.stats().forbidden;
    for seq in 0..50 {
        counter
            .try_tell(Bump {
                seq,
                pad: Vec::new(),
            })
            .unwrap();
    }
    assert!(
        eventually(Duration::from_secs(5), || {
            let a = a.node.clone();
            async move { a.stats().forbidden >= before + 50 }
        })
        .await
    );
    assert_eq!(counter.send(CounterState).await.unwrap().0, 0);
}

#[actix_rt::test]
async fn a_custom_role_reaches_one_service_only() {
    let ca = swarm::credentials::Throwaway::new("test");
    let mut config = config_with_roles(&ca, "svc", &["worker"]);
    config.cluster = Some(fast_gossip(Vec::new()));
    config.policy = std::sync::Arc::new(
        Policy::new(&PolicyFile {
            allow: vec![rule(&["billing-client"], &["service:billing"], &[">"])],
            deny: Vec::new(),
        })
        .unwrap(),
    );
    let svc = start(config).await;
    let cluster = svc.node.cluster().unwrap().clone();
    cluster.register_service("billing", "adder").await.unwrap();
    cluster.register_service("audit", "counter").await.unwrap();
    // A client without membership whose certificate has only the custom role.
    let client = start(config_with_roles(&ca, "client", &["billing-client"])).await;
    client.node.connect(svc.node.listen_addr()).await.unwrap();
    let billing = client.node.remote::<Adder>(svc.node.id(), "adder");
    assert_eq!(billing.send(Add { a: 20, b: 22 }).await.unwrap(), 42);
    let audit = client.node.remote::<Counter>(svc.node.id(), "counter");
    let reason = forbidden(audit.send(CounterState).await);
    assert!(reason.contains("user actor counter"), "{reason}");
    // Withdrawn from the service: the rule no longer covers it.
    cluster
        .deregister_service("billing", "adder")
        .await
        .unwrap();
    forbidden(billing.send(Add { a: 1, b: 1 }).await);
}

#[actix_rt::test]
async fn an_operator_certificate_never_joins_and_without_admin_only_reads() {
    let dir = scratch("policy-operator");
    let (ca, nodes) = control_cluster(&dir, 1, 1, |_, _| {}).await;
    let control = nodes[1].node.control().unwrap().clone();
    spawn_ready(&control, || {
        Spawn::<Ledger>::named("kept").args(LedgerArgs { opening: 1 })
    })
    .await;
    let member = nodes[0].node.listen_addr();

    // An operator certificate cannot join as a node.
    let mut joining = config_with_roles(&ca, "op", &["operator"]);
    joining.cluster = Some(fast_gossip(vec![member]));
    let refused = swarm::Node::start(joining).await.err();
    assert!(
        matches!(refused, Some(swarm::StartError::NotANode { .. })),
        "{refused:?}"
    );

    // It reads; stopping is for admins.
    let op = operator(&ca, "op", &["operator"], member).await;
    let op_control = op.node.control_through(member).await.unwrap();
    let placed = op_control.placed().await.unwrap();
    assert_eq!(placed.len(), 1);
    match op_control.stop("kept").await {
        Err(ControlError::Forbidden { reason }) => {
            assert!(reason.contains("only an admin"), "{reason}")
        }
        other => panic!("an operator stopped an actor: {other:?}"),
    }
    assert_eq!(control.placed().await.unwrap().len(), 1, "still placed");
    let admin = operator(&ca, "root", &["operator", "admin"], member).await;
    let admin_control = admin.node.control_through(member).await.unwrap();
    admin_control.stop("kept").await.unwrap();
    assert!(control.placed().await.unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every system message declares its access class with its tag: a head
/// with membership, tasks, inspection and logins exposes every system
/// actor there is, and none of their messages falls back to the user
/// class (a new message without a class fails here).
#[actix_rt::test]
async fn every_system_message_declares_its_access_class() {
    let dir = scratch("policy-classes");
    let (_ca, nodes) = control_cluster(&dir, 1, 0, |_, _| {}).await;
    let protocols = nodes[0].node.protocols();
    let system: Vec<_> = protocols
        .iter()
        .filter(|(actor, tag, _)| actor.starts_with("swarm.") || tag.starts_with("swarm."))
        .collect();
    for actor in [
        "swarm.host",
        "swarm.cluster",
        "swarm.inspect",
        "swarm.session",
        "swarm.raft",
        "swarm.control",
        "swarm.tasks",
    ] {
        assert!(
            system.iter().any(|(a, _, _)| a == actor),
            "{actor} is not exposed: {system:?}"
        );
    }
    let undeclared: Vec<_> = system
        .iter()
        .filter(|(_, _, access)| *access == swarm::Access::User)
        .collect();
    assert!(
        undeclared.is_empty(),
        "system messages without an access class: {undeclared:?}"
    );
    assert!(system.len() >= 39, "{} system messages", system.len());
    let _ = std::fs::remove_dir_all(&dir);
}
