use std::path::PathBuf;

use super::*;

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("swarm-at-rest-{what}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const CHEAP: KdfParams = KdfParams {
    m_kib: 64,
    t: 1,
    p: 1,
};

fn pass(p: &str) -> Unlock {
    Unlock::Passphrase(Zeroizing::new(p.to_owned()))
}

#[test]
fn files_seal_under_the_keyring_and_name_what_is_wrong() {
    let dir = Scratch::new("files");
    let ring_path = dir.0.join("keyring");
    let ring = Keyring::create(&ring_path, &pass("a good passphrase"), CHEAP).unwrap();
    let file = dir.0.join("n1.key");
    ring.write_file(&file, Kind::NodeKey, b"node secret")
        .unwrap();
    assert!(!fs::read(&file).unwrap().windows(6).any(|w| w == b"secret"));
    assert_eq!(
        &ring.read_file(&file, Kind::NodeKey).unwrap()[..],
        b"node secret"
    );

    let wrong = ring
        .read_file(&file, Kind::JoinSecret)
        .unwrap_err()
        .to_string();
    assert!(
        wrong.contains("n1.key holds a node private key, not a join secret"),
        "{wrong}"
    );

    let mut bytes = fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&file, &bytes).unwrap();
    let flipped = ring
        .read_file(&file, Kind::NodeKey)
        .unwrap_err()
        .to_string();
    assert!(
        flipped.contains("n1.key failed authentication"),
        "{flipped}"
    );

    fs::write(&file, &bytes[..10]).unwrap();
    let short = ring
        .read_file(&file, Kind::NodeKey)
        .unwrap_err()
        .to_string();
    assert!(short.contains("n1.key is truncated"), "{short}");

    // Another keyring's file does not open.
    let other = Keyring::create(&dir.0.join("other"), &pass("another passphrase"), CHEAP).unwrap();
    other.write_file(&file, Kind::NodeKey, b"x").unwrap();
    assert!(ring.read_file(&file, Kind::NodeKey).is_err());
}

#[test]
fn the_wrong_passphrase_or_unlock_kind_is_named() {
    let dir = Scratch::new("unlock");
    let path = dir.0.join("keyring");
    assert!(matches!(
        Keyring::create(&path, &pass("short"), CHEAP),
        Err(AtRestError::ShortPassphrase)
    ));
    Keyring::create(&path, &pass("a good passphrase"), CHEAP).unwrap();
    let wrong = Keyring::open(&path, &pass("not the passphrase")).unwrap_err();
    assert!(
        wrong
            .to_string()
            .ends_with("does not open with this passphrase"),
        "{wrong}"
    );
    let key_file = dir.0.join("keyring.key");
    create_key_file(&key_file).unwrap();
    let kind = Keyring::open(&path, &Unlock::KeyFile(key_file.clone())).unwrap_err();
    assert!(
        kind.to_string().contains("is wrapped by a passphrase"),
        "{kind}"
    );
    assert!(matches!(
        Keyring::create(&path, &pass("a good passphrase"), CHEAP),
        Err(AtRestError::Exists { .. })
    ));

    // Rewrap under the key file: the passphrase no longer opens it.
    Keyring::passwd(
        &path,
        &pass("a good passphrase"),
        &Unlock::KeyFile(key_file.clone()),
        CHEAP,
    )
    .unwrap();
    assert!(Keyring::open(&path, &pass("a good passphrase")).is_err());
    Keyring::open(&path, &Unlock::KeyFile(key_file)).unwrap();
}

#[test]
fn a_rotation_reaches_a_running_holder_and_old_terms_still_open() {
    let dir = Scratch::new("rotate");
    let path = dir.0.join("keyring");
    let key_file = dir.0.join("keyring.key");
    create_key_file(&key_file).unwrap();
    let unlock = Unlock::KeyFile(key_file);
    let node = Keyring::create(&path, &unlock, CHEAP).unwrap();
    let old = node.seal(Kind::Raft, b"", b"before");
    assert_eq!(sealed::parse(&old).unwrap().term, 1);

    // Another process (`swarm keys rotate`) adds term 2.
    let operator = Keyring::open(&path, &unlock).unwrap();
    assert_eq!(operator.rotate().unwrap(), 2);
    let new = operator.seal(Kind::Raft, b"", b"after");
    assert_eq!(sealed::parse(&new).unwrap().term, 2);

    // The running holder opens the new term at once (it re-reads the file
    // for a term it lacks) and seals under it from then on.
    assert_eq!(
        &node.open_value(Kind::Raft, b"", &new).unwrap()[..],
        b"after"
    );
    assert_eq!(node.newest(), 2);
    assert_eq!(
        sealed::parse(&node.seal(Kind::Raft, b"", b"x"))
            .unwrap()
            .term,
        2
    );
    assert_eq!(
        &node.open_value(Kind::Raft, b"", &old).unwrap()[..],
        b"before"
    );

    // A file sealed under term 1 is re-sealed under term 2.
    let file = dir.0.join("join.secret");
    fs::write(&file, &old).unwrap();
    assert!(node.reseal_file(&file, Kind::Raft).unwrap());
    assert_eq!(sealed::parse(&fs::read(&file).unwrap()).unwrap().term, 2);

    // A term no keyring holds is named.
    let reopened = Keyring::open(&path, &unlock).unwrap();
    let mut forged = new.clone();
    forged[8..12].copy_from_slice(&9u32.to_be_bytes());
    assert_eq!(
        reopened.open_value(Kind::Raft, b"", &forged).unwrap_err(),
        SealedError::UnknownTerm { term: 9, newest: 2 }
    );
}
