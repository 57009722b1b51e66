//! `swarm login` against a cluster that is still starting: it waits for
//! the member to listen and its head group to form, then logs in once (the
//! code from `SWARM_TOTP`); a wrong code is refused at once, not waited on.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use swarm::config::NodeFile;

use crate::util::{exe, exit_within, operator_code_sealed, poll_until, scratch};

const PASSPHRASE: &str = "login wait passphrase";

#[test]
fn swarm_login_waits_for_a_starting_head_and_refuses_a_wrong_code_at_once() {
    let dir = scratch("login-wait");
    std::fs::create_dir_all(&dir).unwrap();
    let swarm = |args: &[&str]| {
        let out = Command::new(exe())
            .args(args)
            .args(["--passphrase-env", "SWARM_TEST_PASSPHRASE"])
            .env("SWARM_TEST_PASSPHRASE", PASSPHRASE)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "swarm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    swarm(&["ca", "init", "--dir", "."]);
    swarm(&["cert", "issue", "--name", "n1", "--roles", "worker,head"]);
    swarm(&["operator", "add", "alice", "--roles", "operator"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = |name: &str, listen| {
        NodeFile::render("wait", name, listen, &[], &[])
            .lines()
            .filter(|l| !l.starts_with("keyring_key"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    std::fs::write(
        dir.join("n1.toml"),
        config("n1", port) + &NodeFile::render_head("n1", 1),
    )
    .unwrap();
    std::fs::write(
        dir.join("alice.toml"),
        config("alice", "127.0.0.1:0".parse().unwrap()),
    )
    .unwrap();
    let login = |code: &str| {
        let mut command = Command::new(exe());
        command
            .args([
                "login",
                "--config",
                "alice.toml",
                "--node",
                &port.to_string(),
            ])
            .args(["--passphrase-env", "SWARM_TEST_PASSPHRASE"])
            .env("SWARM_TEST_PASSPHRASE", PASSPHRASE)
            .env("SWARM_TOTP", code)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        command
    };

    // The login starts first and waits for the node.
    let err = dir.join("login.err");
    let mut waiting = login(&operator_code_sealed(&dir, "alice", PASSPHRASE))
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let said = poll_until(Duration::from_secs(30), Duration::from_millis(20), || {
        let said = std::fs::read_to_string(&err).unwrap();
        if said.contains("waiting for the cluster") {
            return Some(());
        }
        assert!(
            waiting.try_wait().unwrap().is_none(),
            "the login ended before the node started: {said}"
        );
        None
    });
    assert!(said.is_some(), "the login never said it waits");
    let mut node = Command::new(exe())
        .args(["node", "start", "--config", "n1.toml"])
        .args(["--passphrase-env", "SWARM_TEST_PASSPHRASE"])
        .env("SWARM_TEST_PASSPHRASE", PASSPHRASE)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = exit_within(&mut waiting, Duration::from_secs(30));
    let said = std::fs::read_to_string(&err).unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}: {said}");
    assert!(said.contains("logged in as alice"), "{said}");
    assert!(dir.join("alice.session").exists(), "the login is kept");

    // A wrong code is not a cluster that is starting: refused at once.
    let started = Instant::now();
    let wrong = login("000000").output().unwrap();
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success());
    assert!(said.contains("wrong TOTP code"), "{said}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    rustix::process::kill_process(
        rustix::process::Pid::from_child(&node),
        rustix::process::Signal::Term,
    )
    .unwrap();
    let stopped = exit_within(&mut node, Duration::from_secs(10));
    let _ = node.kill();
    let _ = node.wait();
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
