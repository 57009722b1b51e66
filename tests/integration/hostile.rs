//! A hostile member: a node with a real worker certificate that sends
//! crafted messages through the real link code (the test declares a
//! message with the same tag and layout as the system one it forges).
//! Each attempt is refused with a typed error and counted, and the cluster
//! carries on.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use swarm::operators::{capability_key, Capability, Claims};
use swarm::protocol::capability::CapabilityKey;
use swarm::{AskError, NodeId};

use crate::util::{control_cluster, eventually, scratch};

/// What a forger puts on the wire as `swarm.Delegated`: the capability,
/// then the inner message's target, tag and body (the receiver stamps the
/// sender from the link).
#[derive(Debug, Clone, Serialize, Deserialize, actix::Message)]
#[rtype(result = "Result<serde_bytes::ByteBuf, swarm::protocol::RemoteError>")]
struct ForgedDelegated {
    capability: Capability,
    to: String,
    tag: String,
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
    from: Option<(NodeId, String)>,
}
swarm::remote_message!(ForgedDelegated => "swarm.Delegated");

/// A stand-in for the session actor, so a `RemoteAddr` may send the forgery.
struct Session;
impl actix::Actor for Session {
    type Context = actix::Context<Self>;
}
impl actix::Handler<ForgedDelegated> for Session {
    type Result = Result<serde_bytes::ByteBuf, swarm::protocol::RemoteError>;
    fn handle(&mut self, _: ForgedDelegated, _: &mut Self::Context) -> Self::Result {
        Ok(serde_bytes::ByteBuf::new())
    }
}
swarm::remote_actor!(Session: ForgedDelegated);

/// Claims for an admin operator `name`, valid for a minute, that `delegate`
/// may present.
fn admin_claims(name: &str, serial: u64, delegate: NodeId) -> Claims {
    let now = swarm::credentials::unix_now() * 1000;
    Claims {
        name: name.to_owned(),
        serial,
        node: NodeId::from_bytes([7; 16]),
        roles: vec!["operator".into(), "admin".into()],
        source: std::net::IpAddr::from([127, 0, 0, 1]),
        term: 1,
        issued_ms: now,
        expires_ms: now + 60_000,
        delegate: Some(delegate),
    }
}

/// Sends a delegated `swarm.ListRevoked` (a read) or `swarm.RevokeCert`
/// from `from` to `to`'s control plane through its session actor.
async fn delegated(
    from: &swarm::Node,
    to: NodeId,
    capability: Capability,
    tag: &str,
) -> Result<serde_bytes::ByteBuf, AskError> {
    delegated_to(from, to, capability, "swarm.control", tag).await
}

/// Sends a delegated `tag` (without arguments, or `swarm.RevokeCert`'s)
/// from `from` to the actor `actor` on `to`, through its session actor.
async fn delegated_to(
    from: &swarm::Node,
    to: NodeId,
    capability: Capability,
    actor: &str,
    tag: &str,
) -> Result<serde_bytes::ByteBuf, AskError> {
    let body = match tag {
        "swarm.RevokeCert" => rmp_serde::to_vec(&(1u64, "n1")).unwrap(),
        _ => rmp_serde::to_vec(&()).unwrap(),
    };
    let forged = ForgedDelegated {
        capability,
        to: actor.into(),
        tag: tag.into(),
        body,
        // A claim of who sent it: the receiver overwrites it from the link.
        from: Some((to, "n1".into())),
    };
    let answer = from
        .remote::<Session>(to, "swarm.session")
        .send_timeout(forged, Duration::from_secs(5))
        .await?;
    answer.map_err(|e| AskError::Forbidden {
        reason: e.to_string(),
    })
}

fn refused(r: Result<serde_bytes::ByteBuf, AskError>) -> String {
    match r {
        Err(AskError::Forbidden { reason }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Whether `to` serves `from`'s delegated `tag` to `actor` with
/// `capability` within 20 s (a new node learns the group's key with its
/// first lease grant).
async fn served(
    from: &swarm::Node,
    to: NodeId,
    capability: &Capability,
    actor: &str,
    tag: &str,
) -> bool {
    eventually(Duration::from_secs(20), || {
        let capability = capability.clone();
        async move { delegated_to(from, to, capability, actor, tag).await.is_ok() }
    })
    .await
}

#[actix_rt::test]
async fn a_worker_cannot_act_as_an_admin_with_a_capability_it_minted_itself() {
    let dir = scratch("hostile-mint");
    let (_ca, nodes) = control_cluster(&dir, 1, 1, |_, _| {}).await;
    let (head, worker) = (&nodes[0].node, &nodes[1].node);
    worker.connect(head.listen_addr()).await.unwrap();
    // The worker signs admin claims for "alice" with a key of its own (a
    // worker holds no key of the head group's: there is none to steal).
    let own = CapabilityKey::from_seed(&[42; 32]);
    let forged = own.sign(&admin_claims("alice", 1, worker.id())).unwrap();
    let before = head.stats().forbidden;
    let reason = refused(delegated(worker, head.id(), forged, "swarm.RevokeCert").await);
    assert!(reason.contains("not signed by the head group"), "{reason}");
    assert!(head.stats().forbidden > before, "counted");
    // Nothing was revoked, and the cluster answers as before.
    let control = head.control().unwrap();
    assert!(control.revoked().await.unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn a_genuine_capability_serves_only_its_delegate_only_until_it_ends_or_is_revoked() {
    let dir = scratch("hostile-delegate");
    let (ca, nodes) = control_cluster(&dir, 1, 2, |_, _| {}).await;
    let (head, n2, n3) = (&nodes[0].node, &nodes[1].node, &nodes[2].node);
    for n in [n2, n3] {
        n.connect(head.listen_addr()).await.unwrap();
    }
    // What the head group would sign for root's login through n2's admin
    // API (the test holds the cluster's TOTP secret, as heads do).
    let group = capability_key(&ca.totp, 0);
    let genuine = group.sign(&admin_claims("root", 99, n2.id())).unwrap();
    // The head learns nothing from a lease here: it holds the key itself.
    let ok = served(
        n2,
        head.id(),
        &genuine,
        "swarm.control",
        "swarm.ListRevoked",
    )
    .await;
    assert!(ok, "the delegate's read is served");
    // Another node replaying it (it saw it, say) is refused, whatever it
    // claims to be.
    let reason = refused(delegated(n3, head.id(), genuine.clone(), "swarm.ListRevoked").await);
    assert!(reason.contains("delegate"), "{reason}");
    // An expired one, even from its delegate.
    let mut old = admin_claims("root", 99, n2.id());
    old.issued_ms -= 120_000;
    old.expires_ms = old.issued_ms + 60_000;
    let expired = group.sign(&old).unwrap();
    let reason = refused(delegated(n2, head.id(), expired, "swarm.ListRevoked").await);
    assert!(reason.contains("expired"), "{reason}");
    // Revoked: refused on its next use.
    let control = head.control().unwrap();
    control.revoke(99, "root").await.unwrap();
    let revoked = eventually(Duration::from_secs(10), || {
        let genuine = genuine.clone();
        async move {
            matches!(
                delegated(n2, head.id(), genuine, "swarm.ListRevoked").await,
                Err(AskError::Forbidden { reason }) if reason.contains("revoked")
            )
        }
    })
    .await;
    assert!(revoked, "a revoked operator's capability still served");
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn a_mixed_worker_operator_certificate_reaches_operator_targets_only_after_a_login() {
    let dir = scratch("hostile-mixed");
    let (ca, nodes) = control_cluster(&dir, 1, 1, |_, _| {}).await;
    let head = &nodes[0].node;
    let config = crate::util::config_with_roles(&ca, "mixed", &["worker", "operator", "admin"]);
    let code = crate::util::totp_code(&ca, &config);
    let mixed = crate::util::start(config).await;
    mixed.node.connect(head.listen_addr()).await.unwrap();
    // An admin-class message (revoking) from the mixed certificate without
    // a login: its operator roles count for nothing.
    let control = mixed
        .node
        .control_through(head.listen_addr())
        .await
        .unwrap();
    match control.revoke(1234, "nobody").await {
        Err(swarm::control::ControlError::Forbidden { reason }) => {
            assert!(reason.contains("second factor"), "{reason}")
        }
        other => panic!("a mixed certificate revoked without a login: {other:?}"),
    }
    // After a TOTP login it may.
    let logged = eventually(Duration::from_secs(20), || {
        let (node, code, addr) = (mixed.node.clone(), code.clone(), head.listen_addr());
        async move { node.login(addr, &code).await.is_ok() }
    })
    .await;
    assert!(logged);
    assert!(control.revoke(1234, "nobody").await.unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn a_member_gossiping_itself_as_a_head_is_never_taken_for_one() {
    let dir = scratch("hostile-head");
    // n3 has a worker certificate but gossips the head role.
    let (_ca, nodes) = control_cluster(&dir, 1, 2, |i, c| {
        if i == 2 {
            let faults = std::sync::Arc::new(swarm::Faults::default());
            faults.claim_roles(&["head", "worker"]);
            c.faults = Some(faults);
        }
    })
    .await;
    let (n1, n2, n3) = (&nodes[0].node, &nodes[1].node, &nodes[2].node);
    // Gossip believes it...
    let gossiped = eventually(Duration::from_secs(20), || {
        let cluster = n2.cluster().unwrap().clone();
        let n3 = n3.id();
        async move {
            cluster.members().await.is_ok_and(|members| {
                members.iter().any(|m| {
                    m.node == n3
                        && m.meta
                            .as_ref()
                            .is_some_and(|meta| meta.roles.iter().any(|r| r == "head"))
                })
            })
        }
    })
    .await;
    assert!(gossiped, "n3's claim never reached n2");
    // ...the certificate does not: once n2 holds a link to it, the control
    // client lists n1 alone, and its calls are answered by n1.
    n2.connect(n3.listen_addr()).await.unwrap();
    let control = n2.control().unwrap();
    assert_eq!(control.heads().await, vec![n1.id()]);
    let placed = eventually(Duration::from_secs(20), || {
        let control = control.clone();
        async move { control.placed().await.is_ok() }
    })
    .await;
    assert!(placed);
    // The leader refuses the gossiped roles when n3 renews its lease with
    // its certificate's, and counts the false claim.
    let counted = eventually(Duration::from_secs(20), || async move {
        n1.stats().false_claims >= 1
    })
    .await;
    assert!(counted, "the leader never noticed n3's false claim");
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn a_rotated_capability_key_ends_every_capability_signed_before() {
    let dir = scratch("hostile-rotate");
    let (ca, nodes) = control_cluster(&dir, 1, 1, |_, _| {}).await;
    let (head, n2) = (&nodes[0].node, &nodes[1].node);
    n2.connect(head.listen_addr()).await.unwrap();
    let (old, new) = (capability_key(&ca.totp, 0), capability_key(&ca.totp, 1));
    // Served before the rotation, at the head and at the worker (which
    // learnt the key with its lease grant).
    let at_head = old.sign(&admin_claims("root", 99, n2.id())).unwrap();
    let at_worker = old.sign(&admin_claims("root", 99, head.id())).unwrap();
    for (from, to, cap) in [(n2, head, &at_head), (head, n2, &at_worker)] {
        let ok = served(from, to.id(), cap, "swarm.cluster", "swarm.ListMembers").await;
        assert!(ok, "a capability of the current key is served");
    }
    let control = head.control().unwrap();
    assert_eq!(control.rotate_capability_key().await.unwrap(), 1);
    // Refused everywhere once each node took the new key; the new key's
    // capabilities are served.
    for (from, to, cap) in [(n2, head, &at_head), (head, n2, &at_worker)] {
        let refused = eventually(Duration::from_secs(10), || {
            let cap = cap.clone();
            async move {
                matches!(
                    delegated_to(from, to.id(), cap, "swarm.cluster", "swarm.ListMembers").await,
                    Err(AskError::Forbidden { reason }) if reason.contains("not signed by the head group")
                )
            }
        })
        .await;
        assert!(refused, "a capability of the old key still served");
        let fresh = new.sign(&admin_claims("root", 99, from.id())).unwrap();
        assert!(
            delegated_to(from, to.id(), fresh, "swarm.cluster", "swarm.ListMembers")
                .await
                .is_ok()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn a_delegate_cannot_renew_its_operators_capability_or_set_its_password() {
    let dir = scratch("hostile-renew");
    let (ca, nodes) = control_cluster(&dir, 1, 1, |_, _| {}).await;
    let (head, n2) = (&nodes[0].node, &nodes[1].node);
    n2.connect(head.listen_addr()).await.unwrap();
    // n2 holds root's capability for its admin API, as after a login there.
    let genuine = capability_key(&ca.totp, 0)
        .sign(&admin_claims("root", 99, n2.id()))
        .unwrap();
    assert!(
        served(
            n2,
            head.id(),
            &genuine,
            "swarm.control",
            "swarm.ListRevoked"
        )
        .await
    );
    // What an operator does for its own account, a node cannot do for it:
    // a fresh capability (delegating to itself again), a new password.
    for tag in ["swarm.Delegate", "swarm.SetPassword"] {
        let reason = refused(delegated(n2, head.id(), genuine.clone(), tag).await);
        assert!(reason.contains("own link"), "{tag}: {reason}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A login as a forging member would send it: an operator's identity and
/// a code (the head takes the identity from the link).
#[derive(Debug, Clone, Serialize, Deserialize, actix::Message)]
#[rtype(result = "Result<Capability, swarm::control::ControlError>")]
struct ForgedLogin {
    operator: (NodeId, u64, String, Vec<String>, std::net::IpAddr),
    code: String,
}
swarm::remote_message!(ForgedLogin => "swarm.VerifyLogin");

struct Control;
impl actix::Actor for Control {
    type Context = actix::Context<Self>;
}
impl actix::Handler<ForgedLogin> for Control {
    type Result = Result<Capability, swarm::control::ControlError>;
    fn handle(&mut self, _: ForgedLogin, _: &mut Self::Context) -> Self::Result {
        Err(swarm::control::ControlError::NoHead {
            reason: String::new(),
        })
    }
}
swarm::remote_actor!(Control: ForgedLogin);

#[actix_rt::test]
async fn a_worker_cannot_try_an_operators_codes_or_lock_it_out() {
    let dir = scratch("hostile-codes");
    let (ca, nodes) = control_cluster(&dir, 1, 1, |_, _| {}).await;
    let (head, n2) = (&nodes[0].node, &nodes[1].node);
    n2.connect(head.listen_addr()).await.unwrap();
    let config = crate::util::config_with_roles(&ca, "alice", &["operator", "admin"]);
    let body = config.handshake.cert.body().clone();
    // Ten wrong codes "for alice" from the worker: each is decided as the
    // worker's own login (no operator certificate), none counts for alice.
    let forged = ForgedLogin {
        operator: (
            body.node_id,
            body.serial,
            body.name.clone(),
            body.roles.clone(),
            std::net::IpAddr::from([127, 0, 0, 1]),
        ),
        code: "000000".into(),
    };
    let leader = eventually(Duration::from_secs(20), || async move {
        head.control().unwrap().placed().await.is_ok()
    })
    .await;
    assert!(leader);
    for _ in 0..10 {
        match n2
            .remote::<Control>(head.id(), "swarm.control")
            .send(forged.clone())
            .await
        {
            Ok(Err(swarm::control::ControlError::NotAnOperator)) => {}
            other => panic!("a worker's login for alice: {other:?}"),
        }
    }
    // Alice (this very certificate) is not locked out: her own login works.
    let code = crate::util::totp_code(&ca, &config);
    let alice = crate::util::start(config).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    loop {
        poll.tick().await;
        match alice.node.login(head.listen_addr(), &code).await {
            Ok(_) => break,
            Err(e) => {
                // Only the head group still forming may delay it: never a
                // refusal of the code or a lockout.
                assert!(
                    !matches!(
                        e,
                        swarm::LoginError::Refused(swarm::control::ControlError::Login(_))
                    ),
                    "{e}"
                );
                assert!(std::time::Instant::now() < deadline, "{e}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
