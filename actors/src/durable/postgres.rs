//! The PostgreSQL journal store, for clusters whose durable state
//! outgrows the heads: journals in two tables of a database the operator
//! runs, reached through `tokio-postgres`.
//!
//! ```text
//! swarm_durable_snapshots  name (key), epoch, claim, next_seq, kept_bytes, snapshot_seq, snapshot
//! swarm_durable_journal    name, seq (key: name, seq), bytes
//! ```
//!
//! A journal's row in `swarm_durable_snapshots` says who owns it (the
//! newest epoch and claim), where it stands (the next sequence number, the
//! bytes of events after the snapshot) and holds the latest snapshot. Each
//! write is **one statement** whose `UPDATE` of that row carries every
//! condition (the writer's epoch and claim are the newest, the sequence
//! number is the next, the journal stays within its bound): the row lock
//! orders it against a concurrent claim, and PostgreSQL re-checks the
//! conditions on the newest row version, so a write from a stale
//! incarnation is refused even when it races the claim that fences it.
//! Nothing is read and then written across two statements; what follows a
//! refused write (reading the row) only names the reason.
//!
//! The tables are created at first use, under an advisory lock, and
//! recorded in `swarm_schema` (a database migrated by a newer swarm is
//! refused). Connections: a few, each pipelining concurrent statements
//! (prepared once per connection), re-opened when one breaks.
//!
//! Who may write: whoever holds the database's credentials, which are the
//! trust boundary here (the embedded store also checks the head's
//! placement record; a database cannot). The connection: TLS when the
//! operator names the CA that signed the server's certificate
//! ([`Postgres::with_tls`], `[durable] ca_file`; [`tls`] says how it is
//! checked), else in the clear, where a host other than loopback or a Unix
//! socket is refused unless the URL says `sslmode=disable`.

mod tls;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config, NoTls, Statement};

use super::store::{JournalStore, Recovery, StoreError, StoreFuture, Stored, Writer};
use crate::head::wire::journal::{check_append, check_snapshot, MAX_JOURNAL_BYTES};

/// The schema version this build writes and reads.
const SCHEMA: i32 = 1;

/// How long one call waits for the database.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections opened by default.
pub const DEFAULT_CONNECTIONS: usize = 4;

/// Creates the tables (once per database, under an advisory lock).
const MIGRATE: &str = "
BEGIN;
SELECT pg_advisory_xact_lock(7453171820264563);
CREATE TABLE IF NOT EXISTS swarm_schema (
    component text PRIMARY KEY,
    version integer NOT NULL
);
CREATE TABLE IF NOT EXISTS swarm_durable_snapshots (
    name text PRIMARY KEY,
    epoch bigint NOT NULL,
    claim bigint NOT NULL,
    next_seq bigint NOT NULL,
    kept_bytes bigint NOT NULL,
    snapshot_seq bigint,
    snapshot bytea
);
CREATE TABLE IF NOT EXISTS swarm_durable_journal (
    name text NOT NULL,
    seq bigint NOT NULL,
    bytes bytea NOT NULL,
    PRIMARY KEY (name, seq)
);
INSERT INTO swarm_schema (component, version) VALUES ('durable', 1)
    ON CONFLICT (component) DO NOTHING;
COMMIT;
";

/// Claims a journal: a new row, or the existing one if its epoch is not
/// newer; answers the claim and the journal's position and snapshot.
const CLAIM: &str = "
INSERT INTO swarm_durable_snapshots AS s (name, epoch, claim, next_seq, kept_bytes)
VALUES ($1, $2, 1, 1, 0)
ON CONFLICT (name) DO UPDATE SET epoch = excluded.epoch, claim = s.claim + 1
    WHERE s.epoch <= excluded.epoch
RETURNING claim, next_seq, snapshot_seq, snapshot";

/// The events after a snapshot, in order.
const EVENTS: &str = "
SELECT seq, bytes FROM swarm_durable_journal WHERE name = $1 AND seq > $2 ORDER BY seq";

/// Appends: the owner row moves on only if every condition holds, and the
/// events are inserted only with it. ($1 name, $2 epoch, $3 claim, $4
/// first seq, $5 events, $6 their bytes, $7 the journal's bound.)
const APPEND: &str = "
WITH owner AS (
    UPDATE swarm_durable_snapshots
    SET next_seq = next_seq + cardinality($5::bytea[]), kept_bytes = kept_bytes + $6
    WHERE name = $1 AND epoch = $2 AND claim = $3 AND next_seq = $4 AND kept_bytes + $6 <= $7
    RETURNING name
)
INSERT INTO swarm_durable_journal (name, seq, bytes)
SELECT owner.name, $4 + e.ord - 1, e.bytes
FROM owner, unnest($5::bytea[]) WITH ORDINALITY AS e(bytes, ord)";

/// Saves a snapshot covering the events up to `$4` and drops them, in one
/// statement; answers 1 if it was saved.
const SNAPSHOT: &str = "
WITH owner AS (
    UPDATE swarm_durable_snapshots s
    SET snapshot_seq = $4, snapshot = $5,
        kept_bytes = s.kept_bytes - coalesce((
            SELECT sum(length(j.bytes)) FROM swarm_durable_journal j
            WHERE j.name = $1 AND j.seq > coalesce(s.snapshot_seq, 0) AND j.seq <= $4), 0)
    WHERE name = $1 AND epoch = $2 AND claim = $3 AND $4 < next_seq
        AND $4 >= coalesce(snapshot_seq, 0)
    RETURNING name
), dropped AS (
    DELETE FROM swarm_durable_journal j USING owner WHERE j.name = owner.name AND j.seq <= $4
)
SELECT count(*) FROM owner";

/// Where a journal stands, to name why a write was refused.
const STANDING: &str = "
SELECT epoch, claim, next_seq, kept_bytes, coalesce(snapshot_seq, 0)
FROM swarm_durable_snapshots WHERE name = $1";

/// One connection and its prepared statements.
struct Conn {
    client: Client,
    claim: Statement,
    events: Statement,
    append: Statement,
    snapshot: Statement,
    standing: Statement,
}

impl Conn {
    /// Prepares this store's statements on `client`.
    async fn prepare(client: Client) -> Result<Self, StoreError> {
        let prepare = |sql: &'static str| client.prepare(sql);
        let failed = |e| unavailable("preparing the statements", &e);
        Ok(Self {
            claim: prepare(CLAIM).await.map_err(failed)?,
            events: prepare(EVENTS).await.map_err(failed)?,
            append: prepare(APPEND).await.map_err(failed)?,
            snapshot: prepare(SNAPSHOT).await.map_err(failed)?,
            standing: prepare(STANDING).await.map_err(failed)?,
            client,
        })
    }
}

/// Journals in a PostgreSQL database. Cheap to clone.
#[derive(Clone)]
pub struct Postgres {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    /// TLS, when the operator named the server's CA.
    tls: Option<tls::Tls>,
    slots: Vec<Mutex<Option<Arc<Conn>>>>,
    next: AtomicUsize,
    /// The tables exist at a version this build reads (checked once).
    migrated: tokio::sync::OnceCell<()>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("hosts", &self.inner.config.get_hosts())
            .field("connections", &self.inner.slots.len())
            .field("tls", &self.inner.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// A store for the database at `url` (a `postgresql://` URL or a
    /// `key=value` string; the password may come from `password`, e.g.
    /// read from a file, rather than the URL) keeping up to `connections`
    /// connections, in the clear. Nothing is dialed yet: the first call
    /// connects and creates the tables if missing, so a node starts while
    /// its database is down, and its durable actors' recovery waits for it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Refused`] for a URL that does not parse or a host
    /// that would carry journals unencrypted (not loopback, not a Unix
    /// socket, and no `sslmode=disable`): use [`Postgres::with_tls`].
    pub fn new(url: &str, password: Option<&str>, connections: usize) -> Result<Self, StoreError> {
        Self::build(url, password, connections, None)
    }

    /// [`Postgres::new`] over TLS: the server's certificate must chain to
    /// a certificate of `ca_pem` (PEM; the system's roots are not trusted)
    /// and name the URL's host, and a server that does not speak TLS is
    /// refused, never used in the clear.
    ///
    /// # Errors
    ///
    /// [`StoreError::Refused`] for a URL that does not parse, one that
    /// says `sslmode=disable`, or a CA bundle with no usable certificate.
    pub fn with_tls(
        url: &str,
        password: Option<&str>,
        connections: usize,
        ca_pem: &[u8],
    ) -> Result<Self, StoreError> {
        let tls =
            tls::Tls::trusting(ca_pem).map_err(|e| refused(format!("PostgreSQL TLS: {e}")))?;
        Self::build(url, password, connections, Some(tls))
    }

    fn build(
        url: &str,
        password: Option<&str>,
        connections: usize,
        tls: Option<tls::Tls>,
    ) -> Result<Self, StoreError> {
        let mut config: Config = url
            .parse()
            .map_err(|e| refused(format!("the PostgreSQL URL: {e}")))?;
        if let Some(password) = password {
            config.password(password);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CALL_TIMEOUT);
        }
        if tls.is_some() {
            if config.get_ssl_mode() == SslMode::Disable {
                return Err(refused(
                    "the PostgreSQL URL says sslmode=disable, but a CA to check the server against is given: \
                     drop one of the two"
                        .to_owned(),
                ));
            }
            // Never the clear after a refused TLS request (`prefer` would).
            config.ssl_mode(SslMode::Require);
        } else {
            check_plain(&config)?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                tls,
                slots: (0..connections.max(1)).map(|_| Mutex::new(None)).collect(),
                next: AtomicUsize::new(0),
                migrated: tokio::sync::OnceCell::new(),
            }),
        })
    }

    /// [`Postgres::new`], then connects once (creating the tables if
    /// missing), so a wrong URL, password or schema shows at once.
    ///
    /// # Errors
    ///
    /// As [`Postgres::new`]; [`StoreError::Refused`] for a database
    /// migrated by a newer swarm, [`StoreError::Unavailable`] if it cannot
    /// connect.
    pub async fn connect(
        url: &str,
        password: Option<&str>,
        connections: usize,
    ) -> Result<Self, StoreError> {
        let store = Self::new(url, password, connections)?;
        store.inner.conn().await?;
        Ok(store)
    }
}

/// Creates the tables if missing and checks their version, on `client`.
/// Where they exist at this version nothing is created, so a role without
/// the right to create tables works once an administrator made them.
async fn migrate(client: &Client) -> Result<(), StoreError> {
    let present = client
        .query_opt(
            "SELECT version FROM swarm_schema WHERE component = 'durable'",
            &[],
        )
        .await
        .ok()
        .flatten()
        .map(|row| row.get::<_, i32>(0));
    if present != Some(SCHEMA) {
        client
            .batch_execute(MIGRATE)
            .await
            .map_err(|e| unavailable("creating the tables", &e))?;
    }
    let row = client
        .query_one(
            "SELECT version FROM swarm_schema WHERE component = 'durable'",
            &[],
        )
        .await
        .map_err(|e| unavailable("reading the schema version", &e))?;
    let version: i32 = row.get(0);
    if version > SCHEMA {
        return Err(refused(format!(
            "the database's durable tables are at version {version}, newer than this swarm's {SCHEMA}: upgrade swarm"
        )));
    }
    Ok(())
}

impl Inner {
    /// A live connection, round-robin, opened (again) if needed.
    async fn conn(&self) -> Result<Arc<Conn>, StoreError> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        let mut slot = slot.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| !c.client.is_closed()) {
            return Ok(Arc::clone(conn));
        }
        let client = self.open().await?;
        self.migrated.get_or_try_init(|| migrate(&client)).await?;
        let conn = Conn::prepare(client).await?;
        let conn = Arc::new(conn);
        *slot = Some(Arc::clone(&conn));
        Ok(conn)
    }

    /// A new connection, its driver task spawned on this thread's runtime.
    async fn open(&self) -> Result<Client, StoreError> {
        let client = match &self.tls {
            Some(tls) => {
                let (client, connection) = self
                    .config
                    .connect(tls.clone())
                    .await
                    .map_err(|e| unavailable("connecting over TLS", &e))?;
                tokio::spawn(drive(connection));
                client
            }
            None => {
                let (client, connection) = self
                    .config
                    .connect(NoTls)
                    .await
                    .map_err(|e| unavailable("connecting", &e))?;
                tokio::spawn(drive(connection));
                client
            }
        };
        Ok(client)
    }

    /// Why a write by `writer` was refused, read after the fact: the
    /// decision was the write statement's.
    async fn why_refused(
        conn: &Conn,
        writer: &Writer,
        seq: u64,
        adding: usize,
    ) -> Result<StoreError, StoreError> {
        let row = conn
            .client
            .query_opt(&conn.standing, &[&writer.name])
            .await
            .map_err(|e| unavailable("reading the journal", &e))?;
        let Some(row) = row else {
            return Ok(refused(format!("{:?} has no claimed journal", writer.name)));
        };
        let (epoch, claim, next, kept, covered) = (
            to_u64(row.get(0)),
            to_u64(row.get(1)),
            to_u64(row.get(2)),
            to_u64(row.get(3)),
            to_u64(row.get(4)),
        );
        Ok(if epoch != writer.epoch || claim != writer.claim {
            StoreError::Fenced { newest: epoch }
        } else if adding > 0 && seq != next {
            StoreError::Conflict {
                expected: next,
                got: seq,
            }
        } else if adding > 0 {
            StoreError::too_large(
                "the journal after its snapshot (save a snapshot)",
                usize::try_from(kept)
                    .unwrap_or(usize::MAX)
                    .saturating_add(adding),
                MAX_JOURNAL_BYTES,
            )
        } else {
            // A snapshot outside what the journal holds.
            let _ = covered;
            StoreError::Conflict {
                expected: next.saturating_sub(1),
                got: seq,
            }
        })
    }

    async fn claim_now(&self, name: String, epoch: u64) -> Result<Recovery, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .client
            .query_opt(&conn.claim, &[&name, &to_i64(epoch)?])
            .await
            .map_err(|e| unavailable("claiming", &e))?;
        let Some(row) = row else {
            let newest = conn
                .client
                .query_opt(&conn.standing, &[&name])
                .await
                .map_err(|e| unavailable("reading the journal", &e))?
                .map_or(epoch, |row| to_u64(row.get(0)));
            return Err(StoreError::Fenced { newest });
        };
        let claim = to_u64(row.get(0));
        let next = to_u64(row.get(1));
        let snapshot_seq: Option<i64> = row.get(2);
        let snapshot: Option<Vec<u8>> = row.get(3);
        let snapshot = snapshot_seq.zip(snapshot).map(|(seq, bytes)| Stored {
            seq: to_u64(seq),
            bytes,
        });
        let after = snapshot.as_ref().map_or(0, |s| s.seq);
        let rows = conn
            .client
            .query(&conn.events, &[&name, &to_i64(after)?])
            .await
            .map_err(|e| unavailable("reading the journal", &e))?;
        let events = rows
            .into_iter()
            .map(|row| Stored {
                seq: to_u64(row.get(0)),
                bytes: row.get(1),
            })
            .collect();
        Ok(Recovery {
            writer: Writer { name, epoch, claim },
            snapshot,
            events,
            next,
        })
    }

    async fn append_now(
        &self,
        writer: Writer,
        first_seq: u64,
        events: Vec<Vec<u8>>,
    ) -> Result<u64, StoreError> {
        check_append(&events)?;
        let conn = self.conn().await?;
        if events.is_empty() {
            // Nothing to write; still answer for the writer's standing.
            return match Self::why_refused(&conn, &writer, first_seq, 0).await? {
                StoreError::Conflict { expected, .. } if expected + 1 == first_seq => Ok(first_seq),
                refusal => Err(refusal),
            };
        }
        let bytes: usize = events.iter().map(Vec::len).sum();
        let count = events.len();
        let inserted = conn
            .client
            .execute(
                &conn.append,
                &[
                    &writer.name,
                    &to_i64(writer.epoch)?,
                    &to_i64(writer.claim)?,
                    &to_i64(first_seq)?,
                    &events,
                    &(bytes as i64),
                    &(MAX_JOURNAL_BYTES as i64),
                ],
            )
            .await
            .map_err(|e| unavailable("appending", &e))?;
        if inserted as usize == count {
            return Ok(first_seq + count as u64);
        }
        Err(Self::why_refused(&conn, &writer, first_seq, bytes.max(1)).await?)
    }

    async fn snapshot_now(
        &self,
        writer: Writer,
        seq: u64,
        bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        check_snapshot(&bytes)?;
        let conn = self.conn().await?;
        let row = conn
            .client
            .query_one(
                &conn.snapshot,
                &[
                    &writer.name,
                    &to_i64(writer.epoch)?,
                    &to_i64(writer.claim)?,
                    &to_i64(seq)?,
                    &bytes,
                ],
            )
            .await
            .map_err(|e| unavailable("saving a snapshot", &e))?;
        let saved: i64 = row.get(0);
        if saved == 1 {
            return Ok(());
        }
        Err(Self::why_refused(&conn, &writer, seq, 0).await?)
    }
}

impl JournalStore for Postgres {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn claim(&self, name: &str, epoch: u64) -> StoreFuture<Recovery> {
        let this = Arc::clone(&self.inner);
        let name = name.to_owned();
        Box::pin(timed(async move { this.claim_now(name, epoch).await }))
    }

    fn append(&self, writer: &Writer, first_seq: u64, events: Vec<Vec<u8>>) -> StoreFuture<u64> {
        let this = Arc::clone(&self.inner);
        let writer = writer.clone();
        Box::pin(timed(async move {
            this.append_now(writer, first_seq, events).await
        }))
    }

    fn snapshot(&self, writer: &Writer, seq: u64, bytes: Vec<u8>) -> StoreFuture<()> {
        let this = Arc::clone(&self.inner);
        let writer = writer.clone();
        Box::pin(timed(
            async move { this.snapshot_now(writer, seq, bytes).await },
        ))
    }
}

/// Runs a connection until it closes.
async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(e) = connection.await {
        tracing::warn!(error = %e, "a PostgreSQL journal connection closed");
    }
}

/// Refuses a configuration that would send journals in the clear over a
/// network: TCP to a host other than loopback needs TLS
/// ([`Postgres::with_tls`]) or `sslmode=disable` said out loud.
fn check_plain(config: &Config) -> Result<(), StoreError> {
    if config.get_ssl_mode() == SslMode::Disable {
        return Ok(());
    }
    // `hostaddr` is what the driver dials when it is given.
    for addr in config.get_hostaddrs() {
        if !addr.is_loopback() {
            return Err(refused(format!(
                "the PostgreSQL hostaddr {addr} is not loopback, and this store does not encrypt its connection: \
                 name the CA of its certificate for TLS ([durable] ca_file), use a Unix socket or a loopback address, \
                 or add sslmode=disable to the URL to send journals in the clear"
            )));
        }
    }
    for host in config.get_hosts() {
        if let Host::Tcp(name) = host {
            let loopback = name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(refused(format!(
                    "the PostgreSQL host {name} is not loopback, and this store does not encrypt its connection: \
                     name the CA of its certificate for TLS ([durable] ca_file), use a Unix socket or a loopback address, \
                     or add sslmode=disable to the URL to send journals in the clear"
                )));
            }
        }
    }
    Ok(())
}

/// `call`, or [`StoreError::Unavailable`] after [`CALL_TIMEOUT`].
async fn timed<T>(
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable {
                reason: format!("PostgreSQL did not answer within {CALL_TIMEOUT:?}"),
            })
        })
}

fn to_i64(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| refused(format!("{n} does not fit PostgreSQL's bigint")))
}

/// A stored bigint (never negative as this store writes them).
fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn refused(reason: String) -> StoreError {
    StoreError::Refused { reason }
}

/// A driver error: `Refused` where trying again cannot help (the server
/// refused the login, SQLSTATE class 28, or the statement, class 42: no
/// such table, no privilege), else `Unavailable`.
fn unavailable(doing: &str, e: &tokio_postgres::Error) -> StoreError {
    // The driver's own words for a server error are only "db error".
    let Some(db) = e.as_db_error() else {
        // The driver's words ("error performing TLS handshake") and why
        // (the certificate's issuer is unknown).
        let mut reason = format!("PostgreSQL, {doing}: {e}");
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            reason.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        return StoreError::Unavailable { reason };
    };
    let code = db.code().code();
    let reason = format!("PostgreSQL, {doing}: {} ({code})", db.message());
    if code.starts_with("28") || code.starts_with("42") {
        StoreError::Refused { reason }
    } else {
        StoreError::Unavailable { reason }
    }
}
