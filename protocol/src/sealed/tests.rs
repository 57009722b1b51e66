use proptest::prelude::*;

use super::*;

fn key() -> DataKey {
    DataKey::new(&[7u8; 32])
}

#[test]
fn a_value_opens_under_its_key_context_and_kind() {
    let sealed = key().seal(Kind::NodeKey, 3, [1; NONCE_LEN], b"ctx", b"secret");
    assert_eq!(sealed.len(), OVERHEAD + 6);
    let header = parse(&sealed).unwrap();
    assert_eq!(
        header,
        Header {
            kind: Kind::NodeKey,
            term: 3,
            nonce: [1; NONCE_LEN]
        }
    );
    assert_eq!(&key().open(b"ctx", &sealed).unwrap()[..], b"secret");
    assert!(!sealed.windows(6).any(|w| w == b"secret"));
}

#[test]
fn every_flipped_byte_and_every_truncation_is_refused() {
    let sealed = key().seal(Kind::Raft, 1, [9; NONCE_LEN], b"", b"the raft payload");
    for at in 0..sealed.len() {
        let mut bad = sealed.clone();
        bad[at] ^= 0x20;
        assert!(key().open(b"", &bad).is_err(), "flip at {at} opened");
    }
    for len in 0..sealed.len() {
        let err = key().open(b"", &sealed[..len]).unwrap_err();
        assert!(
            matches!(err, SealedError::Truncated { .. } | SealedError::Damaged),
            "{len}: {err}"
        );
    }
}

#[test]
fn header_errors_are_named() {
    let sealed = key().seal(Kind::Audit, 2, [0; NONCE_LEN], b"", b"x");
    let mut format = sealed.clone();
    format[6] = 9;
    assert_eq!(parse(&format), Err(SealedError::Format { found: 9 }));
    let mut kind = sealed.clone();
    kind[7] = 99;
    assert_eq!(parse(&kind), Err(SealedError::UnknownKind(99)));
    assert_eq!(parse(b"# hex file\n00ff"), Err(SealedError::NotSealed));
    assert_eq!(parse(b"SWSE"), Err(SealedError::Truncated { len: 4 }));
    // Another context (or key) fails the tag.
    assert_eq!(key().open(b"other", &sealed), Err(SealedError::Damaged));
    assert_eq!(
        DataKey::new(&[8; 32]).open(b"", &sealed),
        Err(SealedError::Damaged)
    );
    let text = SealedError::WrongKind {
        expected: Kind::JoinSecret,
        found: Kind::NodeKey,
    }
    .to_string();
    assert_eq!(text, "holds a node private key, not a join secret");
}

#[test]
fn kinds_round_trip_through_their_byte() {
    for byte in 0..=255u8 {
        if let Some(kind) = Kind::from_byte(byte) {
            assert_eq!(kind.byte(), byte);
        }
    }
}

proptest! {
    #[test]
    fn parse_and_open_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = parse(&bytes);
        let _ = key().open(b"", &bytes);
    }

    #[test]
    fn values_round_trip(plain in proptest::collection::vec(any::<u8>(), 0..512), term in 1u32.., ctx in proptest::collection::vec(any::<u8>(), 0..16)) {
        let sealed = key().seal(Kind::Raft, term, [3; NONCE_LEN], &ctx, &plain);
        prop_assert_eq!(parse(&sealed).unwrap().term, term);
        prop_assert_eq!(&key().open(&ctx, &sealed).unwrap()[..], &plain[..]);
    }
}
