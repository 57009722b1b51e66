//! Security at rest: after real cluster runs (in process, and the `swarm
//! demo` processes), no private key, join secret, TOTP secret or Raft
//! payload is anywhere in the data directories in clear; every sealed file
//! kind refuses a flipped byte, a truncation and a key term it lacks, with
//! an error that names the file, and nothing starts.

use std::path::{Path, PathBuf};
use std::process::Command;

use swarm::config::NodeFile;
use swarm::control::Spawn;
use swarm::credentials::{read_secret, Throwaway};
use swarm_cli::demo::{Ledger, LedgerArgs};
use swarm_protocol::sealed::Kind;

use crate::util::{control_cluster, poll_until, scratch, spawn_ready};

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Fails if any file under `dir` holds one of `needles` (raw, or as lower
/// or upper hex); returns how many files were searched.
fn assert_nowhere_in_clear(dir: &Path, needles: &[(String, Vec<u8>)]) -> usize {
    let all = files(dir);
    for path in &all {
        let bytes = std::fs::read(path).unwrap();
        let text = String::from_utf8_lossy(&bytes).to_lowercase();
        for (what, needle) in needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == &needle[..]),
                "{what} is in clear in {}",
                path.display()
            );
            let hex = swarm_protocol::identity::hex(needle);
            if needle.len() >= 16 {
                assert!(
                    !text.contains(&hex),
                    "{what} is in {} as hex",
                    path.display()
                );
            }
        }
    }
    all.len()
}

/// The secrets a directory written by [`Throwaway::write_identities`] holds,
/// read back through its keyring.
fn secrets_of(dir: &Path, names: &[&str]) -> Vec<(String, Vec<u8>)> {
    let keyring = Throwaway::keyring(dir).unwrap();
    let mut out = vec![
        (
            "the CA key".to_owned(),
            read_secret(&keyring, &dir.join("ca.key"), Kind::CaKey)
                .unwrap()
                .to_vec(),
        ),
        (
            "the join secret".to_owned(),
            read_secret(&keyring, &dir.join("join.secret"), Kind::JoinSecret)
                .unwrap()
                .to_vec(),
        ),
        (
            "the TOTP secret".to_owned(),
            read_secret(&keyring, &dir.join("totp.secret"), Kind::TotpSecret)
                .unwrap()
                .to_vec(),
        ),
    ];
    for name in names {
        out.push((
            format!("the node key of {name}"),
            read_secret(&keyring, &dir.join(format!("{name}.key")), Kind::NodeKey)
                .unwrap()
                .to_vec(),
        ));
    }
    out
}

#[actix_rt::test]
async fn no_secret_or_raft_payload_is_in_clear_after_an_in_process_cluster_run() {
    let dir = scratch("at-rest-scan");
    let (ca, nodes) = control_cluster(&dir, 3, 1, |_, _| {}).await;
    // The files a configured node would read, beside the heads' stores.
    ca.write_files(&dir, &["w1"]).unwrap();
    let control = nodes[3].node.control().unwrap().clone();
    let canary = "canary-ledger-7f3a";
    let ledger = spawn_ready(&control, || {
        Spawn::<Ledger>::named(canary).args(LedgerArgs { opening: 424_242 })
    })
    .await;
    assert_eq!(
        ledger
            .send(swarm_cli::demo::Deposit(1))
            .await
            .unwrap()
            .total,
        424_243
    );
    for n in nodes {
        n.node.shutdown();
        n.kill();
    }
    let mut needles = secrets_of(&dir, &["w1"]);
    needles.push(("the in-memory CA's key".into(), ca.ca.seed().to_vec()));
    needles.push((
        "the spawned actor's name (a Raft payload)".into(),
        canary.into(),
    ));
    needles.push((
        "the actor's type (a Raft payload)".into(),
        b"demo.Ledger".to_vec(),
    ));
    let searched = assert_nowhere_in_clear(&dir, &needles);
    assert!(
        files(&dir).iter().any(|p| p.ends_with("head.redb")),
        "the heads' stores were searched too"
    );
    assert!(searched >= 8, "{searched} files");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_secret_or_raft_payload_is_in_clear_after_the_demo() {
    let dir = scratch("at-rest-demo");
    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["demo", "--keep"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut needles = secrets_of(&dir, &["n1", "n2", "n3", "driver"]);
    // The demo spawns "account" of type demo.Ledger through the heads.
    needles.push((
        "the Raft payload demo.Ledger".into(),
        b"demo.Ledger".to_vec(),
    ));
    assert_nowhere_in_clear(&dir, &needles);
    assert!(files(&dir).iter().any(|p| p.ends_with("head.redb")));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A configured node's directory: keyring, sealed key and join secret.
fn node_dir(name: &str) -> (PathBuf, PathBuf) {
    let dir = scratch(name);
    Throwaway::new("c").write_files(&dir, &["n1"]).unwrap();
    let config = dir.join("n1.toml");
    std::fs::write(
        &config,
        NodeFile::render("c", "n1", "127.0.0.1:0".parse().unwrap(), &[], &[]),
    )
    .unwrap();
    (dir, config)
}

fn start_error(config: &Path) -> String {
    match NodeFile::load(config).unwrap().mesh_config() {
        Ok(_) => panic!("a node configuration with a bad sealed file loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_sealed_file_kind_refuses_damage_with_its_name_and_nothing_starts() {
    for (file, kind) in [
        ("n1.key", Kind::NodeKey),
        ("join.secret", Kind::JoinSecret),
        ("keyring", Kind::DataKeys),
    ] {
        let (dir, config) = node_dir(&format!("at-rest-{file}"));
        let path = dir.join(file);
        let good = std::fs::read(&path).unwrap();
        assert!(NodeFile::load(&config).unwrap().mesh_config().is_ok());

        for at in [0, 7, 12, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            let err = start_error(&config);
            assert!(err.contains(file), "flip at {at} of {file}: {err}");
        }
        std::fs::write(&path, &good[..good.len() - 3]).unwrap();
        let err = start_error(&config);
        assert!(err.contains(file), "{err}");
        assert!(
            err.contains("truncated") || err.contains("failed authentication"),
            "{err}"
        );

        if kind != Kind::DataKeys {
            // A term the keyring does not hold.
            let mut forged = good.clone();
            forged[8..12].copy_from_slice(&7u32.to_be_bytes());
            std::fs::write(&path, &forged).unwrap();
            let err = start_error(&config);
            assert!(
                err.contains(&format!(
                    "{file} is sealed with data-key term 7, which this keyring does not hold"
                )),
                "{err}"
            );
            // Another kind of sealed file in its place.
            let other = if kind == Kind::NodeKey {
                "join.secret"
            } else {
                "n1.key"
            };
            std::fs::copy(dir.join(other), &path).unwrap();
            let err = start_error(&config);
            assert!(err.contains(&format!("{file} holds ")), "{err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_ca_key_and_totp_secret_refuse_damage_when_issuing() {
    let dir = scratch("at-rest-ca");
    Throwaway::new("c").write_files(&dir, &[]).unwrap();
    let issue = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_swarm"))
            .args([
                "cert", "issue", "--name", "h1", "--roles", "head", "--ca-dir",
            ])
            .arg(&dir)
            .arg("--out")
            .arg(dir.join("h1"))
            .arg("--key-file")
            .arg(dir.join("keyring.key"))
            .args(extra)
            .output()
            .unwrap()
    };
    for file in ["ca.key", "totp.secret"] {
        let path = dir.join(file);
        let good = std::fs::read(&path).unwrap();
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let out = issue(&[]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("{file} failed authentication")),
            "{stderr}"
        );
        std::fs::write(&path, &good).unwrap();
    }
    let out = issue(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keys_rotate_reseal_and_passwd_work_from_the_command_line() {
    let dir = scratch("at-rest-keys");
    std::fs::create_dir_all(&dir).unwrap();
    let swarm = |args: &[&str], pass: &str| {
        Command::new(env!("CARGO_BIN_EXE_swarm"))
            .args(args)
            .args(["--passphrase-env", "PASS"])
            .env("PASS", pass)
            .current_dir(&dir)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    ok(swarm(&["ca", "init", "--dir", "."], "first passphrase"));
    let term = |file: &str| {
        swarm_protocol::sealed::parse(&std::fs::read(dir.join(file)).unwrap())
            .unwrap()
            .term
    };
    assert_eq!(term("ca.key"), 1);
    let rotated = ok(swarm(&["keys", "rotate", "--reseal"], "first passphrase"));
    assert!(rotated.contains("new data-key term 2"), "{rotated}");
    assert!(rotated.contains("re-sealed 3 files"), "{rotated}");
    assert_eq!(term("ca.key"), 2);
    // The CA still issues: its key opens under the new term.
    ok(swarm(
        &["cert", "issue", "--name", "n1"],
        "first passphrase",
    ));
    assert_eq!(term("n1.key"), 2);

    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args([
            "keys",
            "passwd",
            "--passphrase-env",
            "PASS",
            "--new-passphrase-env",
            "NEW",
        ])
        .env("PASS", "first passphrase")
        .env("NEW", "second passphrase")
        .current_dir(&dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    ok(out);
    let old = swarm(&["keys", "status"], "first passphrase");
    assert!(!old.status.success());
    assert!(String::from_utf8_lossy(&old.stderr).contains("does not open with this passphrase"));
    let status = ok(swarm(&["keys", "status"], "second passphrase"));
    assert!(status.contains("data-key terms [1, 2]"), "{status}");

    // --new-root: a fresh root key wraps the same data keys.
    let root_before = std::fs::read(dir.join("keyring")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["keys", "passwd", "--new-root", "--passphrase-env", "PASS"])
        .args(["--new-passphrase-env", "NEW"])
        .env("PASS", "second passphrase")
        .env("NEW", "third passphrase")
        .current_dir(&dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let said = ok(out);
    assert!(said.contains("under a new root key"), "{said}");
    let old = swarm(&["keys", "status"], "second passphrase");
    assert!(!old.status.success());
    // The data keys are sealed under another root: the key list differs.
    let root_after = std::fs::read(dir.join("keyring")).unwrap();
    assert_ne!(
        root_before[root_before.len() - 80..],
        root_after[root_after.len() - 80..]
    );
    let status = ok(swarm(&["keys", "status"], "third passphrase"));
    assert!(status.contains("data-key terms [1, 2]"), "{status}");
    // Files sealed before still open: the CA key issues, n1.key reads.
    ok(swarm(
        &["cert", "issue", "--name", "n2"],
        "third passphrase",
    ));
    let ring = swarm::credentials::Keyring::open(
        &dir.join("keyring"),
        &swarm::credentials::Unlock::Passphrase(zeroize::Zeroizing::new(
            "third passphrase".to_owned(),
        )),
    )
    .unwrap();
    read_secret(&ring, &dir.join("n1.key"), Kind::NodeKey).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stored value as it is on disk: its table, key and (sealed) bytes.
type RawValue = (String, Vec<u8>, Vec<u8>);

/// Every (table, key, value) of a head store, read raw with redb's
/// integrity check (sealed values stay sealed: equal bytes are equal
/// values, bound to the same places).
fn raw_store(file: &Path) -> Result<Vec<RawValue>, String> {
    use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};
    const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("log");
    const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
    let db = redb::Database::builder()
        .set_check_integrity_on_open(true)
        .create(file)
        .map_err(|e| e.to_string())?;
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for item in txn
        .open_table(LOG)
        .map_err(|e| e.to_string())?
        .iter()
        .map_err(|e| e.to_string())?
    {
        let (k, v) = item.map_err(|e| e.to_string())?;
        out.push((
            "log".into(),
            k.value().to_be_bytes().to_vec(),
            v.value().to_vec(),
        ));
    }
    for item in txn
        .open_table(META)
        .map_err(|e| e.to_string())?
        .iter()
        .map_err(|e| e.to_string())?
    {
        let (k, v) = item.map_err(|e| e.to_string())?;
        out.push((
            "meta".into(),
            k.value().as_bytes().to_vec(),
            v.value().to_vec(),
        ));
    }
    Ok(out)
}

/// Mode bits of a path.
#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// A real head node process writes its store; after it is killed, a byte
/// flipped at any of many offsets of `head.redb` makes `swarm node start`
/// fail cleanly (exit status 1, the file named, no panic) unless the byte
/// was provably unused (the node starts and every stored value is
/// byte-identical to the undamaged file's). Also: every file the node
/// created is 0600 and every directory 0700, and the running node has
/// core dumps off.
#[cfg(target_os = "linux")]
#[test]
fn a_flipped_byte_in_a_real_head_store_stops_the_node_naming_the_file_without_a_panic() {
    use swarm_cli::local::LocalCluster;

    let dir = scratch("at-rest-head-flips");
    let exe = Path::new(env!("CARGO_BIN_EXE_swarm"));
    let mut cluster = LocalCluster::start_control(exe, &dir, 1, 0, &[]).unwrap();
    let store = dir.join("n1-head");
    let file = store.join("head.redb");
    // The running node: no core file, not dumpable.
    let pid = cluster.nodes[0].child.id();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>();
    assert_eq!(core[4..6], ["0", "0"], "{limits}");
    // Read raw from a copy (redb's check commits to the file it opens).
    let copy = dir.join("copy.redb");
    let raw_of = |bytes: &[u8]| {
        std::fs::write(&copy, bytes).unwrap();
        let raw = raw_store(&copy);
        let _ = std::fs::remove_file(&copy);
        raw
    };
    // Wait until the head has voted, logged and noted a commit (alone, it
    // elects itself and commits its membership).
    let values = || std::fs::read(&file).ok().and_then(|b| raw_of(&b).ok());
    poll_until(
        std::time::Duration::from_secs(20),
        std::time::Duration::from_millis(20),
        || values().filter(|v| v.len() >= 4),
    )
    .expect("the head wrote no store");
    cluster.kill(0).unwrap();

    // Modes of everything the node and its tools created.
    for name in [
        "keyring",
        "n1.key",
        "join.secret",
        "totp.secret",
        "ca.key",
        "n1.audit",
    ] {
        let path = dir.join(name);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{name}");
        } else {
            assert_ne!(name, "n1.audit", "the node keeps an audit log");
        }
    }
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&store), 0o700);
    assert_eq!(mode(&file), 0o600);

    let pristine = std::fs::read(&file).unwrap();
    let expected = raw_of(&pristine).unwrap();
    assert!(expected.len() >= 4, "{} values", expected.len());
    let mut offsets: Vec<usize> = (0..pristine.len()).step_by(pristine.len() / 24).collect();
    offsets.extend(0..8);
    for at in (0..pristine.len() - 6).filter(|&at| &pristine[at..at + 6] == b"SWSEAL") {
        offsets.extend([at + 7, at + 30]);
    }
    offsets.retain(|&at| at < pristine.len());
    let config = dir.join("n1.toml");
    let (mut refused, mut unused) = (0, 0);
    for &at in &offsets {
        let mut bad = pristine.clone();
        bad[at] ^= 0x08;
        let raw = raw_of(&bad);
        std::fs::write(&file, &bad).unwrap();
        let mut child = Command::new(exe)
            .args(["node", "start", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // It either exits (refused) or prints READY (started).
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        if line.starts_with("READY") {
            child.kill().unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "flip at {at}: {stderr}");
        if line.starts_with("READY") {
            assert_eq!(
                raw.as_ref(),
                Ok(&expected),
                "a flip at {at} started on a different store"
            );
            unused += 1;
        } else {
            assert_eq!(out.status.code(), Some(1), "flip at {at}: {stderr}");
            assert!(
                stderr.contains("head.redb: "),
                "flip at {at}: the error does not name the file: {stderr}"
            );
            refused += 1;
        }
    }
    eprintln!(
        "head.redb of {} bytes: {} flips, {refused} refused, {unused} unused",
        pristine.len(),
        offsets.len()
    );
    assert!(
        refused > offsets.len() / 3,
        "{refused} of {}",
        offsets.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
