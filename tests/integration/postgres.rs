//! A private PostgreSQL server for a test: a fresh cluster (`initdb`) in a
//! scratch directory, listening on 127.0.0.1 and a socket in that
//! directory only, with a password (SCRAM) for its one role, run as the
//! unprivileged `postgres` user when the test runs as root (the server
//! refuses root). [`Postgres::start`] finds the programs through
//! [`tools::require`](super::tools::require) (which installs them through
//! `.ci/test-tools postgres`); dropping the handle stops the server (a fast
//! shutdown, then SIGKILL after a deadline) and removes the directory,
//! whether the test passed or not.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::tools::{self, Tool};
use super::util::{poll_until, scratch};

/// The role every private server has, with [`Postgres::password`].
pub const USER: &str = "swarm";

/// A running private server; stopped and removed on drop.
pub struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    server: Child,
    port: u16,
    password: String,
}

/// The `postgres` user's uid and gid, from `/etc/passwd`.
pub fn unprivileged() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() != Some(&"postgres") || fields.len() < 4 {
            return None;
        }
        Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
    })
}

impl Postgres {
    /// Starts a server for `test` (its name names the directory). `None`
    /// only where the person opted out of PostgreSQL (see
    /// [`tools::OPT_OUT`]).
    ///
    /// # Panics
    ///
    /// If PostgreSQL is missing and cannot be installed, or the server
    /// does not start (with its log).
    pub fn start(test: &str) -> Option<Self> {
        let bin = tools::require(Tool::Postgres, test)?;
        let as_user = tools::is_root()
            .then(|| unprivileged().expect("tools::require checked the postgres user"));
        let dir = scratch(&format!("pg-{test}"));
        std::fs::create_dir_all(&dir).unwrap();
        if let Some((uid, gid)) = as_user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        // SipHash under a random key: random enough for a loopback server
        // that lives as long as a test.
        let random = {
            use std::hash::{BuildHasher as _, Hasher as _};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        };
        let password = format!("swarm-{}-{random:x}", std::process::id());
        let pwfile = dir.join("password");
        std::fs::write(&pwfile, &password).unwrap();
        if let Some((uid, gid)) = as_user {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).unwrap();
        }
        let data = dir.join("data");
        let out = program(&bin, "initdb", as_user)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                USER,
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // A free port may be taken between finding and binding it: try again.
        for _ in 0..3 {
            let port = free_port();
            let log = std::fs::File::create(dir.join("server.log")).unwrap();
            let mut server = program(&bin, "postgres", as_user)
                .arg("-D")
                .arg(&data)
                .arg("-k")
                .arg(&dir)
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
                .args(["-c", "shared_buffers=16MB", "-c", "max_connections=64"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            let ready = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
                if server.try_wait().ok().flatten().is_some() {
                    return Some(false);
                }
                ready(&bin, port).then_some(true)
            });
            if ready == Some(true) {
                return Some(Self {
                    bin,
                    dir,
                    server,
                    port,
                    password,
                });
            }
            stop(&mut server);
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            let taken = log.contains("could not bind") || log.contains("in use");
            if !taken {
                let _ = std::fs::remove_dir_all(&dir);
                panic!("PostgreSQL did not start on port {port}:\n{log}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!("PostgreSQL found no free port in three tries");
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The password of [`USER`].
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A connection URL for [`USER`] on the `postgres` database.
    pub fn url(&self) -> String {
        format!(
            "postgresql://{USER}:{}@127.0.0.1:{}/postgres",
            self.password, self.port
        )
    }

    /// Runs `sql` through `psql` over TCP with `password`; its output
    /// (unaligned, tuples only), or what it said on failure.
    pub fn psql_as(&self, password: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .args([
                "-d",
                "postgres",
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// [`Postgres::psql_as`] with the right password.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        self.psql_as(&self.password, sql)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        stop(&mut self.server);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the server on `port` accepts connections.
fn ready(bin: &Path, port: u16) -> bool {
    Command::new(bin.join("pg_isready"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Stops `server`: a fast shutdown (SIGINT: open sessions are ended),
/// then SIGKILL if it is still there after 20 s.
fn stop(server: &mut Child) {
    if server.try_wait().ok().flatten().is_some() {
        return;
    }
    if let Some(pid) = rustix::process::Pid::from_raw(server.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::Int);
    }
    let gone = poll_until(Duration::from_secs(20), Duration::from_millis(20), || {
        server.try_wait().ok().flatten()
    });
    if gone.is_none() {
        let _ = server.kill();
        let _ = server.wait();
    }
}

/// `name` from PostgreSQL's programs, run as `as_user` where given.
fn program(bin: &Path, name: &str, as_user: Option<(u32, u32)>) -> Command {
    use std::os::unix::process::CommandExt as _;
    let mut command = Command::new(bin.join(name));
    if let Some((uid, gid)) = as_user {
        command.uid(uid).gid(gid);
    }
    command.env("LC_ALL", "C");
    command
}

/// A port nothing listens on now (on 127.0.0.1).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

#[test]
fn a_private_server_starts_answers_only_its_password_and_is_gone_after_drop() {
    let Some(pg) = Postgres::start("private") else {
        return;
    };
    assert_eq!(pg.psql("select 40 + 2").as_deref(), Ok("42"));
    assert_eq!(
        pg.psql_as(pg.password(), "select current_user").as_deref(),
        Ok(USER)
    );
    let url = format!(
        "postgresql://{USER}:{}@127.0.0.1:{}/postgres",
        pg.password(),
        pg.port()
    );
    assert_eq!(pg.url(), url);
    let refused = pg.psql_as("wrong", "select 1").unwrap_err();
    assert!(
        refused.contains("password authentication failed"),
        "{refused}"
    );
    let (dir, port) = (pg.dir.clone(), pg.port());
    drop(pg);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "something still listens on {port}"
    );
}
