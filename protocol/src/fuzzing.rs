//! Entry points for the fuzz targets in `fuzz/` (built with `--cfg fuzzing`)
//! and for the stable smoke test that feeds them random and mutated inputs.
//! Each hook runs one decoder on arbitrary bytes and must never panic.

use std::sync::Arc;

use crate::envelope::Envelope;
use crate::frame::{decode_frame, Decoded};
use crate::identity::{CaKey, CertBody, Certificate, NodeKey, TrustStore};
use crate::noise::{
    decode_version, CipherSuite, Handshake, HandshakeConfig, Hello, PROTOCOL_VERSION,
};
use crate::record::Reassembler;

/// Decodes frames, then records and envelopes inside them, as a link would.
pub fn frame(data: &[u8]) {
    let mut rest = data;
    let mut reassembler = Reassembler::new(1 << 20);
    while let Ok(Decoded::Frame { payload, consumed }) = decode_frame(rest, 65_535) {
        if let Ok(Some(env)) = reassembler.handle_record(payload) {
            let _ = Envelope::decode(env.bytes());
        }
        rest = rest.get(consumed..).unwrap_or_default();
    }
}

/// Decodes one envelope and re-encodes it: the result must decode equal.
pub fn envelope(data: &[u8]) {
    let _ = crate::envelope::peek(data);
    if let Ok(env) = Envelope::decode(data) {
        let mut again = Vec::new();
        env.encode(&mut again);
        assert_eq!(Envelope::decode(&again).ok(), Some(env));
    }
}

/// Decodes handshake payloads, and feeds the bytes to a fresh responder and
/// to an initiator waiting for step 2.
pub fn handshake(data: &[u8]) {
    let _ = Hello::decode(data);
    let _ = decode_version(data);
    let Some(config) = test_config().map(Arc::new) else {
        return;
    };
    if let Ok(mut r) = Handshake::responder(Arc::clone(&config)) {
        let _ = r.handle_frame(data, 1);
        while r.poll_transmit().is_some() {}
    }
    if let Ok(mut i) = Handshake::initiator(config) {
        while i.poll_transmit().is_some() {}
        let _ = i.handle_frame(data, 1);
    }
}

/// Decodes and verifies a certificate.
pub fn certificate(data: &[u8]) {
    if let Ok(cert) = Certificate::from_bytes(data) {
        assert_eq!(
            Certificate::from_bytes(&cert.to_bytes()).ok(),
            Some(cert.clone())
        );
        if let Ok(trust) = TrustStore::new(CaKey::from_seed([1; 32]).public()) {
            let _ = trust.verify(&cert, 1, None);
        }
    }
}

/// Reads bytes as a capability (verified with a fixed key) and as the
/// claims inside one: claims that decode must sign and open again equal.
pub fn capability(data: &[u8]) {
    use crate::capability::{decode_claims, Capability, CapabilityKey};

    let key = CapabilityKey::from_seed(&[5; 32]);
    let _ = Capability::from_bytes(data.to_vec()).open_checked(&key.public(), 1);
    if let Ok(claims) = decode_claims(data) {
        if let Ok(cap) = key.sign(&claims) {
            match cap.verify(&key.public()) {
                Ok(back) => assert_eq!(back, claims),
                // A window the signer does not check is refused on opening.
                Err(e) => assert_eq!(e, crate::capability::CapabilityError::BadWindow),
            }
        }
    }
}

/// Reads bytes as a sealed file (header, then open under a fixed key) and
/// as a keyring (parse, then open with a fixed wrapping key), and seals
/// them: the sealed value must open to the same bytes, and with any byte
/// flipped must not open.
pub fn sealed(data: &[u8]) {
    use crate::sealed::{self, keyring, DataKey, Kind};

    let key = DataKey::new(&[7; 32]);
    let _ = sealed::parse(data);
    let _ = key.open(b"", data);
    if let Ok(locked) = keyring::parse(data) {
        let _ = locked.open(&[7; 32]);
        let _ = locked.keys_with_root(&zeroize::Zeroizing::new([7; 32]));
    }
    let mut value = key.seal(Kind::Audit, 1, [3; sealed::NONCE_LEN], b"ctx", data);
    assert_eq!(
        key.open(b"ctx", &value).ok().as_deref().map(|v| &v[..]),
        Some(data)
    );
    let at = data.first().map_or(0, |b| usize::from(*b)) % value.len();
    if let Some(byte) = value.get_mut(at) {
        *byte ^= 0x01;
    }
    assert!(key.open(b"ctx", &value).is_err(), "a flipped byte opened");
}

/// Opens a gossip datagram with a sealed machine (seal, freshness and
/// replay checks), then hands the bytes, sealed with the right key and as
/// plaintext with each kind byte in front, to membership machines (foca
/// with our codec, metadata items, sync lists), as a node's socket would.
pub fn gossip(data: &[u8]) {
    use crate::gossip::{GossipKey, KeyRing, MemberId, MetaItem, NodeMeta};
    use crate::membership::{Membership, MembershipConfig};
    use std::time::Duration;

    const NOW_MS: u64 = 1_767_225_600_000;
    let key = GossipKey::from_bytes([7; 32]);
    let _ = MetaItem::decode(data);
    let me = MemberId {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 7001)),
        node: crate::identity::NodeId::from_bytes([1; 16]),
        bump: 1,
    };
    let from = std::net::SocketAddr::from(([127, 0, 0, 2], 7002));
    let config = MembershipConfig::default();
    let Ok(mut sealed) = Membership::new(
        config.clone(),
        me,
        NodeMeta::default(),
        1,
        KeyRing::new(key.clone()),
    ) else {
        return;
    };
    let _ = sealed.handle_datagram(from, &mut data.to_vec(), Duration::from_secs(1), NOW_MS);
    let mut datagram = Vec::new();
    KeyRing::new(key).seal(data, [3; 12], NOW_MS, &mut datagram);
    let _ = sealed.handle_datagram(from, &mut datagram.clone(), Duration::from_secs(1), NOW_MS);
    // The same datagram again is a replay.
    let _ = sealed.handle_datagram(from, &mut datagram, Duration::from_secs(1), NOW_MS);
    let Ok(mut plain) = Membership::new_unsealed(config, me, NodeMeta::default(), 1) else {
        return;
    };
    for kind in 0u8..5 {
        let mut framed = Vec::with_capacity(data.len() + 1);
        framed.push(kind);
        framed.extend_from_slice(data);
        let _ = plain.handle_datagram(from, &mut framed, Duration::from_secs(2), NOW_MS);
    }
    for machine in [&mut sealed, &mut plain] {
        while machine.poll_transmit([9; 12], NOW_MS).is_some() {}
        while machine.poll_event().is_some() {}
    }
}

fn test_config() -> Option<HandshakeConfig> {
    let ca = CaKey::from_seed([1; 32]);
    let key = NodeKey::from_secret([2; 32]);
    let cert = ca.issue(CertBody {
        serial: 1,
        node_id: key.node_id(),
        name: "fuzz".into(),
        static_key: *key.public(),
        roles: Vec::new(),
        not_before: 0,
        not_after: u64::MAX,
        issuer: [0; 32],
    });
    let trust = Arc::new(TrustStore::new(ca.public()).ok()?);
    Some(HandshakeConfig {
        cluster: "fuzz".into(),
        join_secret: [3; 32],
        key,
        cert,
        trust,
        suite: CipherSuite::AesGcm,
        listen: String::new(),
        version: PROTOCOL_VERSION,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::envelope::{Control, Target};

    /// Valid inputs for each target, to mutate from.
    fn seeds() -> Vec<Vec<u8>> {
        let mut env = Vec::new();
        Envelope::Batch(vec![
            Envelope::Tell {
                to: Target::Name("a"),
                tag: "t",
                body: &[1, 2],
            },
            Envelope::Control(Control::Ping { nonce: 1 }),
        ])
        .encode(&mut env);
        let mut frame = Vec::new();
        crate::frame::encode_frame(&[&[1u8][..], &env].concat(), 65_535, &mut frame).unwrap();
        let config = test_config().unwrap();
        let hello = Hello {
            version: 1,
            cluster: "fuzz",
            cert: &config.cert.to_bytes(),
            listen: "x",
        }
        .encode();
        let mut relay = Vec::new();
        crate::relay::RelayFrame {
            op: crate::relay::RelayOp::Datagram,
            dest: crate::NodeId::from_bytes([1; 16]),
            origin: crate::NodeId::from_bytes([2; 16]),
            circuit: crate::relay::CircuitId {
                number: 3,
                opener: crate::NodeId::from_bytes([2; 16]),
            },
            addr: Some(([127, 0, 0, 1], 7001).into()),
            body: &[4, 5, 6],
        }
        .encode(&mut relay);
        vec![
            env,
            frame,
            config.cert.to_bytes(),
            hello,
            gossip_seed(),
            relay,
        ]
    }

    /// A real foca message (an announce with its header) from one machine.
    fn gossip_seed() -> Vec<u8> {
        use crate::gossip::{MemberId, NodeMeta};
        use crate::membership::{Membership, MembershipConfig};
        let me = MemberId {
            addr: std::net::SocketAddr::from(([127, 0, 0, 2], 7002)),
            node: crate::identity::NodeId::from_bytes([2; 16]),
            bump: 1,
        };
        let mut m =
            Membership::new_unsealed(MembershipConfig::default(), me, NodeMeta::default(), 3)
                .unwrap();
        m.join(
            &[std::net::SocketAddr::from(([127, 0, 0, 1], 7001))],
            std::time::Duration::ZERO,
        );
        let (_, datagram) = m.poll_transmit([0; 12], 0).unwrap();
        // Without the kind byte: the hook adds it.
        datagram[1..].to_vec()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        #[test]
        fn random_inputs_never_panic_any_target(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            frame(&data);
            envelope(&data);
            handshake(&data);
            certificate(&data);
            capability(&data);
            gossip(&data);
            sealed(&data);
        }

        #[test]
        fn mutated_valid_inputs_never_panic_any_target(seed in 0usize..5, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
            let mut data = seeds()[seed].clone();
            for (at, xor) in flips {
                let n = data.len();
                data[at % n] ^= xor;
            }
            data.truncate(cut % (data.len() + 1) + data.len() / 2);
            frame(&data);
            envelope(&data);
            handshake(&data);
            certificate(&data);
            capability(&data);
            gossip(&data);
            sealed(&data);
        }
    }
}
