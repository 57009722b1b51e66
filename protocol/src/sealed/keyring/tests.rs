use proptest::prelude::*;

use super::*;

/// Cheap parameters: these tests check the format, not the cost.
const CHEAP: KdfParams = KdfParams {
    m_kib: 64,
    t: 1,
    p: 1,
};

fn opened(terms: &[u32]) -> Opened {
    Opened {
        root: Zeroizing::new([5; 32]),
        keys: terms
            .iter()
            .map(|t| (*t, Zeroizing::new([*t as u8; 32])))
            .collect(),
    }
}

const NONCES: Nonces = Nonces {
    root: [1; NONCE_LEN],
    keys: [2; NONCE_LEN],
};

fn passphrase_ring(pass: &str) -> Vec<u8> {
    let wrap = Wrap::Passphrase {
        salt: [4; SALT_LEN],
        params: CHEAP,
    };
    let kek = passphrase_kek(pass.as_bytes(), &[4; SALT_LEN], CHEAP).unwrap();
    encode(&wrap, &kek, &opened(&[1, 2]), NONCES)
}

#[test]
fn a_passphrase_keyring_opens_with_its_passphrase_only() {
    let bytes = passphrase_ring("correct horse");
    let locked = parse(&bytes).unwrap();
    let Wrap::Passphrase { salt, params } = locked.wrap else {
        panic!("wrap {:?}", locked.wrap)
    };
    assert_eq!(params, CHEAP);
    let kek = passphrase_kek(b"correct horse", &salt, params).unwrap();
    let ring = locked.open(&kek).unwrap();
    assert_eq!(ring.newest(), 2);
    assert_eq!(*ring.keys[&1], [1; 32]);
    let wrong = passphrase_kek(b"wrong", &salt, params).unwrap();
    assert_eq!(
        locked.open(&wrong).unwrap_err(),
        KeyringError::WrongSecret("passphrase")
    );
}

#[test]
fn a_key_file_keyring_opens_with_its_key_file_only() {
    let kek = key_file_kek(&[9; 32]);
    let bytes = encode(&Wrap::KeyFile, &kek, &opened(&[1]), NONCES);
    let locked = parse(&bytes).unwrap();
    assert_eq!(locked.open(&kek).unwrap().newest(), 1);
    assert_eq!(
        locked.open(&key_file_kek(&[8; 32])).unwrap_err(),
        KeyringError::WrongSecret("key file")
    );
}

#[test]
fn every_flipped_byte_and_truncation_is_refused() {
    let kek = key_file_kek(&[9; 32]);
    let bytes = encode(&Wrap::KeyFile, &kek, &opened(&[1, 2, 3]), NONCES);
    for at in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[at] ^= 1;
        let result = parse(&bad).and_then(|l| l.open(&kek));
        assert!(result.is_err(), "flip at {at} opened");
    }
    for len in 0..bytes.len() {
        assert!(parse(&bytes[..len]).and_then(|l| l.open(&kek)).is_err());
    }
}

#[test]
fn forged_costs_are_refused_before_any_allocation() {
    let wrap = Wrap::Passphrase {
        salt: [4; SALT_LEN],
        params: KdfParams {
            m_kib: u32::MAX,
            t: 1,
            p: 1,
        },
    };
    let bytes = encode(&wrap, &[0; 32], &opened(&[1]), NONCES);
    assert!(matches!(parse(&bytes), Err(KeyringError::Params(_))));
    assert!(KdfParams::DEFAULT.validate().is_ok());
}

proptest! {
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(locked) = parse(&bytes) {
            let _ = locked.open(&[0; 32]);
        }
    }
}

#[test]
fn a_kek_derived_in_kept_scratch_memory_is_the_same_as_a_fresh_one() {
    let params = KdfParams {
        m_kib: 64,
        t: 1,
        p: 1,
    };
    let salt = [7u8; SALT_LEN];
    let mut scratch = KdfScratch::default();
    for passphrase in [&b"one"[..], b"two"] {
        let fresh = passphrase_kek(passphrase, &salt, params).unwrap();
        let kept = passphrase_kek_in(passphrase, &salt, params, &mut scratch).unwrap();
        assert_eq!(*fresh, *kept);
    }
}
