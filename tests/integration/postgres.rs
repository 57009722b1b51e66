//! A private PostgreSQL server for a test
//! ([`swarm_cli::local::postgres::Postgres`], which `swarm bench durable`
//! uses too): [`start`] finds the programs through
//! [`tools::require`](super::tools::require) (which installs them through
//! `.ci/test-tools postgres`) and puts the server's files in the test's
//! scratch directory; dropping the handle stops the server and removes
//! the directory, whether the test passed or not.

pub use swarm_cli::local::postgres::{unprivileged, Postgres, USER};

use super::tools::{self, Tool};
use super::util::scratch;

/// Starts a server for `test` (its name names the directory). `None`
/// only where the person opted out of PostgreSQL (see
/// [`tools::OPT_OUT`]).
///
/// # Panics
///
/// If PostgreSQL is missing and cannot be installed, or the server does
/// not start (with its log).
pub fn start(test: &str) -> Option<Postgres> {
    let bin = tools::require(Tool::Postgres, test)?;
    let settings = ["shared_buffers=16MB", "max_connections=64"];
    Some(Postgres::start(&bin, scratch(&format!("pg-{test}")), &settings).unwrap())
}

/// [`start`] serving TLS only, with a certificate for 127.0.0.1 and
/// `localhost` from a CA of its own; also gives that CA (PEM).
///
/// # Panics
///
/// As [`start`].
pub fn start_tls(test: &str) -> Option<(Postgres, String)> {
    use base64::Engine as _;
    let bin = tools::require(Tool::Postgres, test)?;
    let (ca, ca_pem) = swarm_admin::tls::AdminCa::generate("postgres").unwrap();
    let hosts = ["127.0.0.1".to_owned(), "localhost".to_owned()];
    let (chain, key) = ca.issue("postgres", &hosts).unwrap();
    let key = base64::engine::general_purpose::STANDARD.encode(key.as_slice());
    let lines: Vec<&str> = key
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let key_pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    let settings = ["shared_buffers=16MB", "max_connections=64"];
    let dir = scratch(&format!("pg-{test}"));
    let pg = Postgres::start_tls(&bin, dir, &settings, &chain, &key_pem).unwrap();
    Some((pg, ca_pem))
}

#[test]
fn a_private_server_starts_answers_only_its_password_and_is_gone_after_drop() {
    let Some(pg) = start("private") else {
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
    let (dir, port) = (pg.dir().to_owned(), pg.port());
    drop(pg);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "something still listens on {port}"
    );
}
