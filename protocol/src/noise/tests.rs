//! Handshake tests on an in-memory pair driver: no sockets, virtual time,
//! and a hook that can alter or drop any frame in transit.

use std::sync::Arc;

use super::*;
use crate::frame::{decode_frame, Decoded};
use crate::identity::{CaKey, CertBody};

const NOW: u64 = 1_000_000;

struct Fixture {
    ca: CaKey,
    trust: Arc<TrustStore>,
}

impl Fixture {
    fn new() -> Self {
        let ca = CaKey::from_seed([1; 32]);
        let trust = Arc::new(TrustStore::new(ca.public()).unwrap());
        Self { ca, trust }
    }

    fn cert(
        &self,
        ca: &CaKey,
        key: &NodeKey,
        name: &str,
        serial: u64,
        valid: (u64, u64),
    ) -> Certificate {
        ca.issue(CertBody {
            serial,
            node_id: key.node_id(),
            name: name.into(),
            static_key: *key.public(),
            roles: vec!["worker".into()],
            not_before: valid.0,
            not_after: valid.1,
            issuer: [0; 32],
        })
    }

    fn config(&self, seed: u8, name: &str) -> HandshakeConfig {
        let key = NodeKey::from_secret([seed; 32]);
        let cert = self.cert(&self.ca, &key, name, u64::from(seed), (0, NOW * 2));
        HandshakeConfig {
            cluster: "test".into(),
            join_secret: [7; 32],
            key,
            cert,
            trust: Arc::clone(&self.trust),
            suite: CipherSuite::AesGcm,
            listen: format!("127.0.0.1:{}", 7000 + u16::from(seed)),
            version: PROTOCOL_VERSION,
        }
    }
}

/// Which way a frame travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    ToResponder,
    ToInitiator,
}

/// Two handshakes wired back to back.
struct Pair {
    initiator: Handshake,
    responder: Handshake,
    initiator_error: Option<HandshakeError>,
    responder_error: Option<HandshakeError>,
    /// Frames delivered so far, in order, with their direction.
    delivered: Vec<Dir>,
}

impl Pair {
    fn new(i: HandshakeConfig, r: HandshakeConfig) -> Self {
        Self {
            initiator: Handshake::initiator(Arc::new(i)).unwrap(),
            responder: Handshake::responder(Arc::new(r)).unwrap(),
            initiator_error: None,
            responder_error: None,
            delivered: Vec::new(),
        }
    }

    /// Moves frames until neither side has anything to send. `hook` sees
    /// each frame (header included) and returns false to drop it.
    fn drive(&mut self, mut hook: impl FnMut(Dir, usize, &mut Vec<u8>) -> bool) {
        let mut n = 0;
        loop {
            let mut progressed = false;
            while let Some(mut f) = self.initiator.poll_transmit() {
                progressed = true;
                n += 1;
                if hook(Dir::ToResponder, n, &mut f) && self.responder_error.is_none() {
                    self.delivered.push(Dir::ToResponder);
                    if let Err(e) = self.responder.handle_frame(payload(&f), NOW) {
                        self.responder_error = Some(e);
                    }
                }
            }
            while let Some(mut f) = self.responder.poll_transmit() {
                progressed = true;
                n += 1;
                if hook(Dir::ToInitiator, n, &mut f) && self.initiator_error.is_none() {
                    self.delivered.push(Dir::ToInitiator);
                    if let Err(e) = self.initiator.handle_frame(payload(&f), NOW) {
                        self.initiator_error = Some(e);
                    }
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn run(mut self) -> Self {
        self.drive(|_, _, _| true);
        self
    }
}

/// Two established sessions of one handshake: (initiator, responder).
pub(crate) fn established_pair() -> (Established, Established) {
    let fx = Fixture::new();
    let pair = Pair::new(fx.config(2, "a"), fx.config(3, "b")).run();
    (
        pair.initiator.into_established().unwrap(),
        pair.responder.into_established().unwrap(),
    )
}

fn payload(frame: &[u8]) -> &[u8] {
    match decode_frame(frame, MAX_NOISE_MESSAGE) {
        Ok(Decoded::Frame { payload, .. }) => payload,
        // A truncated frame still goes in whole; the state machine must cope.
        _ => frame.get(4..).unwrap_or_default(),
    }
}

#[test]
fn matching_nodes_establish_and_exchange_records_both_ways() {
    let fx = Fixture::new();
    let pair = Pair::new(fx.config(2, "n2"), fx.config(3, "n3")).run();
    assert_eq!(pair.initiator_error, None);
    assert_eq!(pair.responder_error, None);
    assert_eq!(pair.delivered.len(), 4, "four handshake steps");
    assert!(pair.initiator.is_established() && pair.responder.is_established());

    let mut i = pair.initiator.into_established().unwrap();
    let mut r = pair.responder.into_established().unwrap();
    assert_eq!(i.peer.node_id, NodeKey::from_secret([3; 32]).node_id());
    assert_eq!(r.peer.node_id, NodeKey::from_secret([2; 32]).node_id());
    assert_eq!(i.peer.cert.body().name, "n3");
    assert_eq!(r.peer.listen, "127.0.0.1:7002");
    assert!(i.initiator && !r.initiator);

    for (from, to) in [
        (&mut i.sender, &mut r.receiver),
        (&mut r.sender, &mut i.receiver),
    ] {
        for n in 0..3u8 {
            let mut wire = Vec::new();
            from.seal_frame(&[n; 100], &mut wire).unwrap();
            let mut buf = Vec::new();
            assert_eq!(to.open(payload(&wire), &mut buf).unwrap(), &[n; 100]);
        }
    }
}

#[test]
fn chachapoly_suite_establishes() {
    let fx = Fixture::new();
    let (mut a, mut b) = (fx.config(2, "a"), fx.config(3, "b"));
    a.suite = CipherSuite::ChaChaPoly;
    b.suite = CipherSuite::ChaChaPoly;
    let pair = Pair::new(a, b).run();
    assert!(pair.initiator.is_established() && pair.responder.is_established());
}

#[test]
fn mismatched_suites_fail_to_decrypt() {
    let fx = Fixture::new();
    let mut a = fx.config(2, "a");
    a.suite = CipherSuite::ChaChaPoly;
    let pair = Pair::new(a, fx.config(3, "b")).run();
    assert!(pair.initiator_error.is_some() || pair.responder_error.is_some());
    assert!(!pair.initiator.is_established() && !pair.responder.is_established());
}

#[test]
fn wrong_join_secret_is_refused_by_responder_and_initiator_never_established() {
    let fx = Fixture::new();
    let mut a = fx.config(2, "a");
    a.join_secret = [8; 32];
    let pair = Pair::new(a, fx.config(3, "b")).run();
    assert_eq!(pair.responder_error, Some(HandshakeError::Decrypt));
    assert!(
        !pair.initiator.is_established(),
        "no welcome without the secret"
    );
    assert!(!pair.responder.is_established());
}

#[test]
fn certificate_from_foreign_ca_is_refused() {
    let fx = Fixture::new();
    let mut a = fx.config(2, "a");
    a.cert = fx.cert(&CaKey::from_seed([9; 32]), &a.key, "a", 2, (0, NOW * 2));
    let pair = Pair::new(a, fx.config(3, "b")).run();
    assert_eq!(
        pair.responder_error,
        Some(HandshakeError::Certificate(CertError::ForeignCa))
    );
    assert!(!pair.initiator.is_established());
}

#[test]
fn responder_with_foreign_certificate_is_refused_by_initiator() {
    let fx = Fixture::new();
    let mut b = fx.config(3, "b");
    b.cert = fx.cert(&CaKey::from_seed([9; 32]), &b.key, "b", 3, (0, NOW * 2));
    let pair = Pair::new(fx.config(2, "a"), b).run();
    assert_eq!(
        pair.initiator_error,
        Some(HandshakeError::Certificate(CertError::ForeignCa))
    );
    // The initiator stopped at step 2: it never sent its certificate.
    assert_eq!(pair.delivered.len(), 2);
}

#[test]
fn expired_certificate_is_refused() {
    let fx = Fixture::new();
    let mut a = fx.config(2, "a");
    a.cert = fx.cert(&fx.ca, &a.key, "a", 2, (0, NOW - 1));
    let pair = Pair::new(a, fx.config(3, "b")).run();
    assert!(matches!(
        pair.responder_error,
        Some(HandshakeError::Certificate(CertError::Expired { .. }))
    ));
}

#[test]
fn revoked_certificate_is_refused() {
    let fx = Fixture::new();
    let mut b = fx.config(3, "b");
    let trust = (*fx.trust).clone();
    trust.revoke([2]);
    b.trust = Arc::new(trust);
    let pair = Pair::new(fx.config(2, "a"), b).run();
    assert_eq!(
        pair.responder_error,
        Some(HandshakeError::Certificate(CertError::Revoked {
            serial: 2
        }))
    );
}

#[test]
fn certificate_for_another_key_is_refused() {
    let fx = Fixture::new();
    let mut a = fx.config(2, "a");
    // A valid certificate, but for node 4's key: a stolen certificate.
    a.cert = fx.config(4, "n4").cert;
    let pair = Pair::new(a, fx.config(3, "b")).run();
    assert_eq!(
        pair.responder_error,
        Some(HandshakeError::Certificate(CertError::KeyMismatch))
    );
}

#[test]
fn version_mismatch_is_a_clear_error_on_both_sides() {
    let fx = Fixture::new();
    let mut a = fx.config(2, "a");
    a.version = 2;
    let pair = Pair::new(a, fx.config(3, "b")).run();
    assert_eq!(
        pair.responder_error,
        Some(HandshakeError::VersionMismatch { ours: 1, theirs: 2 })
    );
    assert_eq!(
        pair.initiator_error,
        Some(HandshakeError::VersionMismatch { ours: 2, theirs: 1 })
    );
}

#[test]
fn cluster_mismatch_is_refused() {
    let fx = Fixture::new();
    let mut b = fx.config(3, "b");
    b.cluster = "other".into();
    let pair = Pair::new(fx.config(2, "a"), b).run();
    assert!(matches!(
        pair.initiator_error,
        Some(HandshakeError::ClusterMismatch { .. })
    ));
}

#[test]
fn altered_frame_at_each_step_is_refused() {
    for step in 1..=4 {
        let fx = Fixture::new();
        let mut pair = Pair::new(fx.config(2, "a"), fx.config(3, "b"));
        pair.drive(|_, n, f| {
            if n == step {
                let last = f.len() - 1;
                f[last] ^= 1;
            }
            true
        });
        assert!(
            pair.initiator_error.is_some() || pair.responder_error.is_some(),
            "step {step}"
        );
        assert!(!pair.initiator.is_established(), "step {step}");
    }
}

#[test]
fn truncated_handshake_frame_is_refused() {
    for step in 1..=3 {
        let fx = Fixture::new();
        let mut pair = Pair::new(fx.config(2, "a"), fx.config(3, "b"));
        pair.drive(|_, n, f| {
            if n == step {
                f.truncate(f.len() / 2);
            }
            true
        });
        assert!(
            pair.initiator_error.is_some() || pair.responder_error.is_some(),
            "step {step}"
        );
        assert!(!pair.responder.is_established(), "step {step}");
    }
}

#[test]
fn dropped_welcome_leaves_initiator_waiting() {
    let fx = Fixture::new();
    let mut pair = Pair::new(fx.config(2, "a"), fx.config(3, "b"));
    pair.drive(|_, n, _| n != 4);
    assert!(pair.responder.is_established());
    assert!(!pair.initiator.is_established());
}

#[test]
fn garbage_first_message_is_refused() {
    let fx = Fixture::new();
    let mut r = Handshake::responder(Arc::new(fx.config(3, "b"))).unwrap();
    assert!(r.handle_frame(b"GET / HTTP/1.1\r\n\r\n", NOW).is_err());
    // Once failed, it stays failed.
    assert!(matches!(
        r.handle_frame(&[0; 32], NOW),
        Err(HandshakeError::Unexpected { state: "Failed" })
    ));
}

#[test]
fn replayed_transport_frame_fails_authentication() {
    let fx = Fixture::new();
    let pair = Pair::new(fx.config(2, "a"), fx.config(3, "b")).run();
    let mut i = pair.initiator.into_established().unwrap();
    let mut r = pair.responder.into_established().unwrap();
    let mut wire = Vec::new();
    i.sender.seal_frame(b"once", &mut wire).unwrap();
    let mut buf = Vec::new();
    r.receiver.open(payload(&wire), &mut buf).unwrap();
    assert_eq!(
        r.receiver.open(payload(&wire), &mut buf),
        Err(CipherError::Decrypt)
    );
}

#[test]
fn large_envelope_is_sealed_and_opened_through_the_reassembler() {
    use crate::envelope::{Envelope, Target};
    use crate::record::{Packer, Reassembler};
    let fx = Fixture::new();
    let pair = Pair::new(fx.config(2, "a"), fx.config(3, "b")).run();
    let mut i = pair.initiator.into_established().unwrap();
    let mut r = pair.responder.into_established().unwrap();
    let body: Vec<u8> = (0..300_000u32).map(|n| n as u8).collect();
    let small = [1u8; 10];
    let mut envs = Vec::new();
    for b in [&small[..], &body[..], &small[..]] {
        let mut e = Vec::new();
        Envelope::Tell {
            to: Target::Id(1),
            tag: "t",
            body: b,
        }
        .encode(&mut e);
        envs.push(e);
    }
    let mut wire = Vec::new();
    let mut packer = Packer::new();
    for e in &envs {
        packer
            .push(e, &mut |rec| i.sender.seal_frame(rec, &mut wire))
            .unwrap();
        packer
            .flush(&mut |rec| i.sender.seal_frame(rec, &mut wire))
            .unwrap();
    }
    let mut reassembler = Reassembler::new(1 << 20);
    let mut scratch = Vec::new();
    let mut got = Vec::new();
    let mut rest = &wire[..];
    while !rest.is_empty() {
        let Ok(Decoded::Frame { payload, consumed }) = decode_frame(rest, MAX_NOISE_MESSAGE) else {
            panic!("bad frame");
        };
        if let Some(env) = reassembler
            .handle_frame(&mut r.receiver, payload, &mut scratch)
            .unwrap()
        {
            got.push(env.bytes().to_vec());
        }
        rest = &rest[consumed..];
    }
    assert_eq!(got, envs);
}

#[test]
fn altered_continuation_fails_authentication() {
    use crate::envelope::{Envelope, Target};
    use crate::record::{Packer, Reassembler, RecordError};
    let fx = Fixture::new();
    let pair = Pair::new(fx.config(2, "a"), fx.config(3, "b")).run();
    let mut i = pair.initiator.into_established().unwrap();
    let mut r = pair.responder.into_established().unwrap();
    let mut e = Vec::new();
    Envelope::Tell {
        to: Target::Id(1),
        tag: "t",
        body: &[7u8; 100_000],
    }
    .encode(&mut e);
    let mut frames = Vec::new();
    let mut packer = Packer::new();
    packer
        .push(&e, &mut |rec| {
            let mut f = Vec::new();
            i.sender.seal_frame(rec, &mut f)?;
            frames.push(f);
            Ok::<_, CipherError>(())
        })
        .unwrap();
    let last = frames[1].len() - 1;
    frames[1][last] ^= 1;
    let mut reassembler = Reassembler::new(1 << 20);
    let mut scratch = Vec::new();
    assert!(reassembler
        .handle_frame(&mut r.receiver, payload(&frames[0]), &mut scratch)
        .unwrap()
        .is_none());
    assert_eq!(
        reassembler
            .handle_frame(&mut r.receiver, payload(&frames[1]), &mut scratch)
            .unwrap_err(),
        RecordError::Decrypt
    );
}
