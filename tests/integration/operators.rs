//! Operators with two factors, over real operator connections: the
//! certificate in the handshake and a TOTP code checked by the head
//! leader. Nothing but the login reaches a node before it; a code works
//! once, within ±1 step; five failures lock the operator (and its
//! address) out; the session is presented on every link opened after.

use swarm::control::{ControlError, LoginRefusal};
use swarm::supervision::{Host, ListActors, HOST_ACTOR};
use swarm::{AskError, LoginError};
use swarm_actors::cluster::{ClusterAgent, ListMembers, CLUSTER_ACTOR};

use std::time::Duration;

use crate::util::{config_with_roles, control_cluster, eventually, scratch, start, totp_code};

/// Why the head refused a login (the type a caller branches on).
fn refused(r: Result<swarm::operators::Capability, LoginError>) -> LoginRefusal {
    match r {
        Err(LoginError::Refused(ControlError::Login(why))) => why,
        other => panic!("expected a refused login, got {other:?}"),
    }
}

/// A login the head group, still forming, could not decide yet.
fn undecided(r: &Result<swarm::operators::Capability, LoginError>) -> bool {
    matches!(
        r,
        Err(LoginError::Refused(
            ControlError::NoHead { .. }
                | ControlError::NoQuorum { .. }
                | ControlError::NotLeader { .. }
        ))
    )
}

#[actix_rt::test]
async fn totp_logins_are_checked_once_within_the_skew_and_locked_out_after_five_failures() {
    let dir = scratch("operators-totp");
    let (ca, nodes) = control_cluster(&dir, 1, 2, |_, _| {}).await;
    let member = nodes[1].node.listen_addr();
    let config = config_with_roles(&ca, "alice", &["operator"]);
    let body = config.handshake.cert.body().clone();
    let seed = swarm::operators::seed(&ca.totp, body.serial, &body.name);
    let alice = start(config.clone()).await;

    // Before a login nothing but the login reaches the member.
    alice.node.connect(member).await.unwrap();
    let agent = alice
        .node
        .remote::<ClusterAgent>(nodes[1].node.id(), CLUSTER_ACTOR);
    match agent.send(ListMembers).await {
        Err(AskError::Forbidden { reason }) => {
            assert!(reason.contains("second factor"), "{reason}")
        }
        other => panic!("an operator read members without a second factor: {other:?}"),
    }

    // Wrong, and outside the skew window (two steps old).
    let now = swarm::credentials::unix_now();
    let wrong = format!(
        "{:06}",
        (swarm::operators::code_at(&seed, now)
            .parse::<u32>()
            .unwrap()
            + 1)
            % 1_000_000
    );
    let mut first = alice.node.login(member, &wrong).await;
    // The head group may still be forming at the first attempt.
    while undecided(&first) {
        first = alice.node.login(member, &wrong).await;
    }
    let reason = refused(first);
    assert_eq!(reason, LoginRefusal::WrongCode { left: 4 });
    assert!(
        reason.to_string().contains("wrong TOTP code (4 more"),
        "{reason}"
    );
    let old = swarm::operators::code_at(&seed, now - 2 * swarm::operators::STEP);
    if old != swarm::operators::code_at(&seed, now) {
        let reason = refused(alice.node.login(member, &old).await);
        assert_eq!(reason, LoginRefusal::WrongCode { left: 3 });
    }

    // The right code works once; the session reaches other nodes' links.
    let code = totp_code(&ca, &config);
    alice.node.login(member, &code).await.unwrap();
    let listed = crate::util::eventually(std::time::Duration::from_secs(10), || {
        let agent = agent.clone();
        async move { agent.send(ListMembers).await.is_ok_and(|m| !m.is_empty()) }
    })
    .await;
    assert!(listed, "the member took the login");
    alice
        .node
        .connect(nodes[2].node.listen_addr())
        .await
        .unwrap();
    let host = alice.node.remote::<Host>(nodes[2].node.id(), HOST_ACTOR);
    // (That node checks sessions once its first lease grant brought the key.)
    assert!(
        eventually(Duration::from_secs(10), || {
            let host = host.clone();
            async move { host.send(ListActors).await.is_ok() }
        })
        .await
    );
    let reason = refused(alice.node.login(member, &code).await);
    assert_eq!(reason, LoginRefusal::CodeUsed);

    // Brute force: five failures in a row lock the operator out; then even
    // the right code is refused.
    let bob_config = config_with_roles(&ca, "bob", &["operator"]);
    let bob = start(bob_config.clone()).await;
    let mut last = None;
    for guess in 0..5u32 {
        last = Some(refused(
            bob.node.login(member, &format!("{guess:06}")).await,
        ));
    }
    assert!(
        matches!(last, Some(LoginRefusal::LockedOut { retry_after_s }) if retry_after_s >= 1),
        "{last:?}"
    );
    let reason = refused(bob.node.login(member, &totp_code(&ca, &bob_config)).await);
    assert!(matches!(reason, LoginRefusal::LockedOut { .. }), "{reason}");
    // The lockout is bob's certificate's alone: another operator from the
    // same address logs in (failures there need bob's private key, so
    // nobody else can lock carol out through them).
    let carol_config = config_with_roles(&ca, "carol", &["operator"]);
    let carol = start(carol_config.clone()).await;
    carol
        .node
        .login(member, &totp_code(&ca, &carol_config))
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn a_rotated_capability_key_ends_the_sessions_operators_hold_on_links() {
    let dir = scratch("operators-rotate");
    let (ca, nodes) = control_cluster(&dir, 1, 1, |_, _| {}).await;
    let (head, member) = (&nodes[0].node, &nodes[1].node);
    let config = config_with_roles(&ca, "alice", &["operator"]);
    let alice = start(config.clone()).await;
    alice.node.connect(member.listen_addr()).await.unwrap();
    let agent = alice
        .node
        .remote::<ClusterAgent>(member.id(), CLUSTER_ACTOR);
    let logged_in = eventually(Duration::from_secs(20), || {
        let (alice, config, ca) = (&alice, &config, &ca);
        async move {
            alice
                .node
                .login(member.listen_addr(), &totp_code(ca, config))
                .await
                .is_ok()
        }
    })
    .await;
    assert!(logged_in, "alice never logged in");
    let served = eventually(Duration::from_secs(10), || {
        let agent = agent.clone();
        async move { agent.send(ListMembers).await.is_ok() }
    })
    .await;
    assert!(served, "the member never took alice's session");

    // The head group's key changes: what alice presented was signed under
    // the old one, so the member ends her link's session and her operator
    // roles count for nothing until she logs in again.
    let control = head.control().unwrap();
    assert_eq!(control.rotate_capability_key().await.unwrap(), 1);
    let ended = eventually(Duration::from_secs(10), || {
        let agent = agent.clone();
        async move {
            matches!(
                agent.send(ListMembers).await,
                Err(AskError::Forbidden { reason }) if reason.contains("second factor")
            )
        }
    })
    .await;
    assert!(ended, "a session signed under the old key still counts");
    let _ = std::fs::remove_dir_all(&dir);
}
