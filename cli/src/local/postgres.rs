//! A private PostgreSQL server, for the tests and `swarm bench durable`:
//! a fresh cluster (`initdb`) in a directory of its own, listening on
//! 127.0.0.1 and a socket in that directory only, with a password (SCRAM)
//! for its one role, run as the unprivileged `postgres` user when this
//! process is root (the server refuses root). Dropping the handle stops
//! the server (a fast shutdown, then SIGKILL after 20 s) and removes the
//! directory.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

/// The role every private server has, with [`Postgres::password`].
pub const USER: &str = "swarm";

/// A running private server; stopped and removed on drop.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    server: Child,
    port: u16,
    password: String,
}

/// PostgreSQL's programs (`/usr/lib/postgresql/VERSION/bin`, the newest
/// with `initdb` and `postgres`), if installed.
#[must_use]
pub fn programs() -> Option<PathBuf> {
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

/// The `postgres` user's uid and gid, from `/etc/passwd`.
#[must_use]
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
    /// Starts a server with the programs in `bin`, its files in `dir`
    /// (created; removed on drop), with `settings` (`NAME=VALUE`, passed
    /// as `-c`) beside the loopback-only listener.
    ///
    /// # Errors
    ///
    /// Running as root without a `postgres` user, `initdb` failing, or a
    /// server that does not start (with its log); a port taken between
    /// finding and binding it is tried again, three times.
    pub fn start(bin: &Path, dir: PathBuf, settings: &[&str]) -> Result<Self> {
        Self::start_with(bin, dir, settings, None)
    }

    /// [`Postgres::start`] serving TLS only: `cert` (the server's chain,
    /// PEM) and `key` (its private key, PEM) become its certificate, and
    /// its TCP logins must come over TLS (`hostssl` lines only), so a
    /// client that does not encrypt is refused.
    ///
    /// # Errors
    ///
    /// As [`Postgres::start`]; the files cannot be written.
    pub fn start_tls(
        bin: &Path,
        dir: PathBuf,
        settings: &[&str],
        cert: &str,
        key: &str,
    ) -> Result<Self> {
        Self::start_with(bin, dir, settings, Some((cert, key)))
    }

    fn start_with(
        bin: &Path,
        dir: PathBuf,
        settings: &[&str],
        tls: Option<(&str, &str)>,
    ) -> Result<Self> {
        let as_user = if rustix::process::geteuid().is_root() {
            Some(
                unprivileged()
                    .context("running as root, and no `postgres` user to run the server as")?,
            )
        } else {
            None
        };
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
        // that lives as long as a test or a bench.
        let random = {
            use std::hash::{BuildHasher as _, Hasher as _};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        };
        let password = format!("swarm-{}-{random:x}", std::process::id());
        let pwfile = dir.join("password");
        std::fs::write(&pwfile, &password)?;
        chown(&pwfile)?;
        let data = dir.join("data");
        let out = program(bin, "initdb", as_user)
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth=scram-sha-256", "-E", "UTF8"])
            // The server's own writes are synced; initdb's template files
            // need not be, for a throw-away cluster.
            .arg("--no-sync")
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            bail!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut settings: Vec<String> = settings.iter().map(|s| (*s).to_owned()).collect();
        if let Some((cert, key)) = tls {
            use std::os::unix::fs::PermissionsExt as _;
            let (cert_file, key_file) = (dir.join("server.crt"), dir.join("server.key"));
            std::fs::write(&cert_file, cert)?;
            std::fs::write(&key_file, key)?;
            // The server refuses a key others may read.
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))?;
            chown(&cert_file)?;
            chown(&key_file)?;
            let hba = data.join("pg_hba.conf");
            let rules = std::fs::read_to_string(&hba)?;
            let ssl_only: String = rules
                .lines()
                .map(|line| match line.strip_prefix("host ") {
                    Some(rest) => format!("hostssl {rest}\n"),
                    None => format!("{line}\n"),
                })
                .collect();
            std::fs::write(&hba, ssl_only)?;
            settings.push("ssl=on".to_owned());
            settings.push(format!("ssl_cert_file={}", cert_file.display()));
            settings.push(format!("ssl_key_file={}", key_file.display()));
        }
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let log = std::fs::File::create(dir.join("server.log"))?;
            let mut server = program(bin, "postgres", as_user)
                .arg("-D")
                .arg(&data)
                .arg("-k")
                .arg(&dir)
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
                .args(settings.iter().flat_map(|s| ["-c", s.as_str()]))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?;
            if started(bin, port, &mut server)? {
                return Ok(Self {
                    bin: bin.to_owned(),
                    dir,
                    server,
                    port,
                    password,
                });
            }
            stop(&mut server);
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            if !(log.contains("could not bind") || log.contains("in use")) {
                let _ = std::fs::remove_dir_all(&dir);
                bail!("PostgreSQL did not start on port {port}:\n{log}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        bail!("PostgreSQL found no free port in three tries")
    }

    /// The port it listens on (127.0.0.1).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The password of [`USER`].
    #[must_use]
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Its directory (removed on drop).
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A connection URL for [`USER`] on the `postgres` database, with the
    /// password in it.
    #[must_use]
    pub fn url(&self) -> String {
        format!(
            "postgresql://{USER}:{}@127.0.0.1:{}/postgres",
            self.password, self.port
        )
    }

    /// A `[durable]` section of a node's configuration naming this
    /// server, its password in a 0600 file written in `secrets`.
    ///
    /// # Errors
    ///
    /// The file cannot be written.
    pub fn section(&self, secrets: &Path) -> Result<String> {
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

    /// Runs `sql` through `psql` over TCP with `password`; its output
    /// (unaligned, tuples only), or what it said on failure.
    ///
    /// # Errors
    ///
    /// `psql` failed: its standard error.
    pub fn psql_as(&self, password: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .args(["-d", "postgres", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-c", sql])
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
    ///
    /// # Errors
    ///
    /// As [`Postgres::psql_as`].
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

/// Waits (30 s at most) until the server on `port` accepts connections:
/// false if it exited first.
fn started(bin: &Path, port: u16, server: &mut Child) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if server.try_wait()?.is_some() {
            return Ok(false);
        }
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return Ok(true);
        }
        if Instant::now() > deadline {
            bail!("PostgreSQL did not accept connections within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops `server`: a fast shutdown (SIGINT: open sessions are ended),
/// then SIGKILL if it is still there after 20 s.
fn stop(server: &mut Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(server.id() as i32) {
        if server.try_wait().ok().flatten().is_none() {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::Int);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = server.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = server.wait();
}

/// `name` from PostgreSQL's programs, run as `as_user` where given.
fn program(bin: &Path, name: &str, as_user: Option<(u32, u32)>) -> Command {
    let mut command = Command::new(bin.join(name));
    if let Some((uid, gid)) = as_user {
        command.uid(uid).gid(gid);
    }
    command.env("LC_ALL", "C");
    command
}
