use std::path::{Path, PathBuf};

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

#[test]
fn a_new_root_key_keeps_sealed_files_open_and_shuts_out_the_old_secret_and_root() {
    let dir = Scratch::new("new-root");
    let path = dir.0.join("keyring");
    let ring = Keyring::create(&path, &pass("the old passphrase"), CHEAP).unwrap();
    let file = dir.0.join("n1.key");
    ring.write_file(&file, Kind::NodeKey, b"node secret")
        .unwrap();
    let value = ring.seal(Kind::Raft, b"log 1", b"entry");
    let before = keyring::parse(&fs::read(&path).unwrap()).unwrap();

    Keyring::passwd_new_root(
        &path,
        &pass("the old passphrase"),
        &pass("the new passphrase"),
        CHEAP,
    )
    .unwrap();

    // What was sealed before opens after, under the new passphrase.
    let after = Keyring::open(&path, &pass("the new passphrase")).unwrap();
    assert_eq!(
        &after.read_file(&file, Kind::NodeKey).unwrap()[..],
        b"node secret"
    );
    assert_eq!(
        &after.open_value(Kind::Raft, b"log 1", &value).unwrap()[..],
        b"entry"
    );
    assert_eq!(after.terms(), vec![1]);

    // The old passphrase does not open it.
    let old = Keyring::open(&path, &pass("the old passphrase")).unwrap_err();
    assert!(
        old.to_string()
            .ends_with("does not open with this passphrase"),
        "{old}"
    );
    // The old root key does not open the new key list: the file's data
    // keys are sealed under a root the old one is not.
    let locked = keyring::parse(&fs::read(&path).unwrap()).unwrap();
    assert!(locked.keys_with_root(&ring.inner.root).is_err());
    assert!(before.keys_with_root(&ring.inner.root).is_ok());
    assert_ne!(ring.inner.root[..], after.inner.root[..]);
    // A holder of the old root (a node still running) cannot add a term.
    let rotate = ring.rotate().unwrap_err().to_string();
    assert!(
        rotate.contains("data keys failed authentication"),
        "{rotate}"
    );
    // The new holder can, and the old holder still opens what it sealed.
    assert_eq!(after.rotate().unwrap(), 2);
    assert_eq!(
        &ring.open_value(Kind::Raft, b"log 1", &value).unwrap()[..],
        b"entry"
    );

    // A plain passwd keeps the root key.
    Keyring::passwd(
        &path,
        &pass("the new passphrase"),
        &pass("a third passphrase"),
        CHEAP,
    )
    .unwrap();
    let third = Keyring::open(&path, &pass("a third passphrase")).unwrap();
    assert_eq!(third.inner.root[..], after.inner.root[..]);
}

#[cfg(unix)]
#[test]
fn an_atomic_write_follows_no_planted_symlink_and_leaves_a_0600_file_in_a_0700_dir() {
    use std::os::unix::fs::{symlink, PermissionsExt as _};

    let dir = Scratch::new("symlink");
    let victim = dir.0.join("victim");
    fs::write(&victim, b"untouched").unwrap();
    let sub = dir.0.join("node").join("keys");
    let ring = Keyring::create(&sub.join("keyring"), &pass("a good passphrase"), CHEAP).unwrap();
    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sub), 0o700);
    assert_eq!(mode(&dir.0.join("node")), 0o700);
    assert_eq!(mode(&sub.join("keyring")), 0o600);

    // Symlinks at the names the old code used (pid-named temporary
    // files), and one at the destination itself.
    let target = sub.join("n1.key");
    let planted = sub.join(format!(".n1.key.{}.tmp", std::process::id()));
    symlink(&victim, &planted).unwrap();
    symlink(&victim, &target).unwrap();
    ring.write_file(&target, Kind::NodeKey, b"node secret")
        .unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"untouched");
    let meta = fs::symlink_metadata(&target).unwrap();
    assert!(meta.file_type().is_file(), "the symlink was replaced");
    assert_eq!(mode(&target), 0o600);
    assert_eq!(
        &ring.read_file(&target, Kind::NodeKey).unwrap()[..],
        b"node secret"
    );
    // The temporary file is gone, the planted link untouched.
    let names: Vec<String> = fs::read_dir(&sub)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(fs::symlink_metadata(&planted)
        .unwrap()
        .file_type()
        .is_symlink());

    // The temporary file's open refuses a symlink (even a dangling one)
    // and any existing file.
    let dangling = sub.join("dangling");
    symlink(dir.0.join("nowhere"), &dangling).unwrap();
    assert!(create_private_file(&dangling).is_err());
    assert!(!dir.0.join("nowhere").exists());
    assert!(create_private_file(&planted).is_err());
    assert_eq!(fs::read(&victim).unwrap(), b"untouched");
    // Repeated writes beside the planted links succeed and leave nothing
    // behind.
    for _ in 0..20 {
        ring.write_file(&target, Kind::NodeKey, b"again").unwrap();
    }
    assert_eq!(fs::read_dir(&sub).unwrap().count(), 4);
}
