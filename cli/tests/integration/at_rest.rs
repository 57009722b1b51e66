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

use crate::util::{control_cluster, scratch, spawn_ready};

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
    let _ = std::fs::remove_dir_all(&dir);
}
