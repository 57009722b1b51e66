//! A private PostgreSQL server for `swarm bench durable` (as the tests'
//! harness does it): a fresh cluster (`initdb`) in a temporary directory,
//! listening on 127.0.0.1 only with a password for its one role, run as
//! the unprivileged `postgres` user when the bench runs as root (the
//! server refuses root). Dropping it stops the server and removes the
//! directory.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

/// The role of the private server.
pub(super) const USER: &str = "swarm";

/// A running private server.
pub(super) struct Server {
    dir: PathBuf,
    server: Child,
    pub(super) port: u16,
    pub(super) password: String,
}

/// PostgreSQL's programs (`/usr/lib/postgresql/VERSION/bin`, the newest).
pub(super) fn programs() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").exists() && bin.join("postgres").exists())
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, bin)| bin)
}

/// The `postgres` user's uid and gid, where the bench runs as root.
fn unprivileged() -> Result<Option<(u32, u32)>> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let found = passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.first() == Some(&"postgres") && f.len() >= 4)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    });
    found
        .map(Some)
        .context("running as root, and no `postgres` user to run the server as")
}

fn program(bin: &Path, name: &str, as_user: Option<(u32, u32)>) -> Command {
    let mut command = Command::new(bin.join(name));
    if let Some((uid, gid)) = as_user {
        command.uid(uid).gid(gid);
    }
    command.env("LC_ALL", "C");
    command
}

impl Server {
    /// Starts a server with the programs in `bin`.
    pub(super) fn start(bin: &Path) -> Result<Self> {
        let as_user = unprivileged()?;
        let dir = std::env::temp_dir().join(format!("swarm-bench-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let chown = |p: &Path| -> Result<()> {
            if let Some((uid, gid)) = as_user {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))?;
            }
            Ok(())
        };
        chown(&dir)?;
        // SipHash under a random key: random enough for a loopback server
        // that lives as long as a bench.
        let random = {
            use std::hash::{BuildHasher as _, Hasher as _};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        };
        let password = format!("swarm-bench-{}-{random:x}", std::process::id());
        let pwfile = dir.join("password");
        std::fs::write(&pwfile, &password)?;
        chown(&pwfile)?;
        let data = dir.join("data");
        let out = program(bin, "initdb", as_user)
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth=scram-sha-256", "-E", "UTF8"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(dir.join("server.log"))?;
        let server = program(bin, "postgres", as_user)
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&dir)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "max_connections=100"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let mut me = Self {
            dir,
            server,
            port,
            password,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if me.server.try_wait()?.is_some() {
                let log = std::fs::read_to_string(me.dir.join("server.log")).unwrap_or_default();
                bail!("PostgreSQL exited at start:\n{log}");
            }
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(me);
            }
            if Instant::now() > deadline {
                bail!("PostgreSQL did not accept connections within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A `[durable]` section naming this server, its password in a 0600
    /// file in `secrets`.
    pub(super) fn section(&self, secrets: &Path) -> Result<String> {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::create_dir_all(secrets)?;
        let file = secrets.join("pg.password");
        std::fs::write(&file, format!("{}\n", self.password))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
        Ok(format!(
            "[durable]\nstore = \"postgres\"\nurl = \"postgresql://{USER}@127.0.0.1:{}/postgres\"\npassword_file = \"{}\"\n",
            self.port,
            file.display()
        ))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.server.id() as i32) {
            // A fast shutdown (open sessions are ended).
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::Int);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.server.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
