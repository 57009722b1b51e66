use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::guard::{Guard, Refusal, FIRST_LOCKOUT};
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

#[test]
fn tokens_bind_node_serial_and_expiry() {
    let key = [9; 32];
    let node = NodeId::from_bytes([1; 16]);
    let token = SessionToken::sign(&key, node, 7, 1_000);
    assert!(token.verify(&key, node, 7, 999));
    assert!(!token.verify(&key, node, 7, 1_000), "expired");
    assert!(!token.verify(&key, node, 8, 999), "another certificate");
    assert!(!token.verify(&key, NodeId::from_bytes([2; 16]), 7, 999));
    assert!(!token.verify(&[8; 32], node, 7, 999), "another key");
    let mut forged = token.clone();
    forged.expires_ms = 5_000;
    assert!(!forged.verify(&key, node, 7, 999));
}

#[test]
fn the_guard_refuses_replays_and_locks_out_after_five_failures_with_growing_backoff() {
    let mut g = Guard::default();
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let t0 = Instant::now();
    assert_eq!(g.check(1, ip, Some(100), None, t0), Ok(100));
    assert_eq!(
        g.check(1, ip, Some(100), Some(100), t0),
        Err(Refusal::Replayed)
    );
    for left in (1..4).rev() {
        assert_eq!(
            g.check(1, ip, None, Some(100), t0),
            Err(Refusal::Wrong { left })
        );
    }
    // The fifth failure in a row locks out; even a right code waits.
    assert_eq!(
        g.check(1, ip, None, Some(100), t0),
        Err(Refusal::Locked(FIRST_LOCKOUT))
    );
    assert!(matches!(
        g.check(1, ip, Some(101), Some(100), t0),
        Err(Refusal::Locked(_))
    ));
    // Another operator from the same address is locked out too.
    assert!(matches!(
        g.check(2, ip, Some(5), None, t0),
        Err(Refusal::Locked(_))
    ));
    // After the lockout, one more failure locks again, twice as long.
    let t1 = t0 + FIRST_LOCKOUT + Duration::from_secs(1);
    assert_eq!(
        g.check(1, ip, None, Some(100), t1),
        Err(Refusal::Locked(FIRST_LOCKOUT * 2))
    );
    // A right code after that lockout clears the count.
    let t2 = t1 + FIRST_LOCKOUT * 2;
    assert_eq!(g.check(1, ip, Some(101), Some(100), t2), Ok(101));
    assert_eq!(
        g.check(1, ip, None, Some(101), t2),
        Err(Refusal::Wrong { left: 4 })
    );
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
