use super::*;

#[test]
fn codes_match_within_one_step_either_side_and_rfc_6238_vectors_hold() {
    // RFC 6238 appendix B, SHA-1, 8 digits: the seed is "12345678901234567890".
    let rfc: [u8; 20] = *b"12345678901234567890";
    let t = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 8, 0, 30, rfc.to_vec()).unwrap();
    assert_eq!(t.generate(59), "94287082");
    assert_eq!(t.generate(1_111_111_109), "07081804");

    let seed = seed(&[3; 32], 42, "alice");
    let now = 1_800_000_000;
    let code = code_at(&seed, now);
    assert_eq!(code.len(), DIGITS);
    assert_eq!(matching_step(&seed, &code, now), Some(now / STEP));
    assert_eq!(matching_step(&seed, &code, now + STEP), Some(now / STEP));
    assert_eq!(matching_step(&seed, &code, now - STEP), Some(now / STEP));
    assert_eq!(
        matching_step(&seed, &code, now + 2 * STEP),
        None,
        "outside the skew"
    );
    // Another operator (serial or name) has another seed.
    assert_ne!(*seed, *super::seed(&[3; 32], 43, "alice"));
    assert_ne!(*seed, *super::seed(&[3; 32], 42, "bob"));
    let uri = otpauth_uri(&seed, "swarm demo", "alice");
    assert!(
        uri.starts_with("otpauth://totp/swarm%20demo:alice?secret="),
        "{uri}"
    );
    assert!(uri.ends_with("&issuer=swarm%20demo&algorithm=SHA1&digits=6&period=30"));
}

fn claims(roles: &[&str], delegate: Option<swarm_protocol::NodeId>) -> Claims {
    let now = unix_ms();
    Claims {
        name: "alice".into(),
        serial: 7,
        node: swarm_protocol::NodeId::from_bytes([1; 16]),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        source: std::net::IpAddr::from([127, 0, 0, 1]),
        term: 1,
        issued_ms: now,
        expires_ms: now + 60_000,
        delegate,
    }
}

#[test]
fn capabilities_open_only_with_the_groups_key_for_unrevoked_operators() {
    let group = capability_key(&[9; 32], 0);
    assert_eq!(group.public(), capability_key(&[9; 32], 0).public());
    assert_ne!(group.public(), capability_key(&[9; 32], 1).public());
    let forger = capability_key(&[8; 32], 0);
    let key = Some(group.public());
    let cap = group.sign(&claims(&["operator"], None)).unwrap();
    assert_eq!(open_capability(&cap, key, |_| false).unwrap().name, "alice");
    // Not signed by the group (a worker's own key, say).
    let forged = forger.sign(&claims(&["operator", "admin"], None)).unwrap();
    let err = open_capability(&forged, key, |_| false).unwrap_err();
    assert!(err.contains("not signed by the head group"), "{err}");
    // Revoked, checked on every open.
    let err = open_capability(&cap, key, |s| s == 7).unwrap_err();
    assert!(err.contains("revoked"), "{err}");
    // A node's claims are no operator's.
    let node = group.sign(&claims(&["worker"], None)).unwrap();
    assert!(open_capability(&node, key, |_| false).is_err());
    // No key yet.
    assert!(open_capability(&cap, None, |_| false).is_err());
}

#[test]
fn a_link_takes_only_its_own_certificates_undelegated_capability() {
    let group = capability_key(&[9; 32], 0);
    let key = Some(group.public());
    let caller = crate::directory::Caller {
        node: swarm_protocol::NodeId::from_bytes([1; 16]),
        roles: std::sync::Arc::from(vec!["operator".to_owned()]),
        serial: 7,
        name: std::sync::Arc::from("alice"),
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
        operator: true,
    };
    let present =
        |cap: Capability| rmp_serde::to_vec(&sessions::Present { capability: cap }).unwrap();
    let own = present(group.sign(&claims(&["operator"], None)).unwrap());
    assert!(sessions::check_present(key, &|_| false, &caller, &own).is_ok());
    let other = crate::directory::Caller {
        serial: 8,
        ..caller.clone()
    };
    assert!(sessions::check_present(key, &|_| false, &other, &own).is_err());
    let delegated = present(
        group
            .sign(&claims(
                &["operator"],
                Some(swarm_protocol::NodeId::from_bytes([2; 16])),
            ))
            .unwrap(),
    );
    assert!(sessions::check_present(key, &|_| false, &caller, &delegated).is_err());
}

#[test]
fn operator_certificates_are_those_with_an_operator_role_whatever_else_they_hold() {
    let r = |x: &[&str]| x.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert!(is_operator(&r(&["operator"])));
    assert!(is_operator(&r(&["operator", "admin"])));
    assert!(is_operator(&r(&["worker", "operator"])));
    assert!(!is_operator(&r(&["worker"])));
    assert!(!is_operator(&r(&["billing"])));
}
