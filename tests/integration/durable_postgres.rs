//! The PostgreSQL journal store against a private server
//! ([`Postgres`](super::postgres::Postgres)): the same rules as the
//! embedded store (claims fence older epochs and older claims, appends
//! take the next sequence number only, snapshots drop what they cover,
//! sizes are bounded), a stale writer racing the claim that fences it,
//! broken connections, and the schema's version.

use std::time::Duration;

use swarm::durable::{JournalStore, Postgres as PgStore, StoreError, Writer, MAX_EVENT_BYTES};

use super::postgres::Postgres;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn events(from: u64, n: u64) -> Vec<Vec<u8>> {
    (from..from + n)
        .map(|i| format!("event {i}").into_bytes())
        .collect()
}

#[test]
fn postgres_journals_fence_older_epochs_and_claims_and_take_only_the_next_sequence_number() {
    let Some(pg) = super::postgres::start("durable-rules") else {
        return;
    };
    runtime().block_on(tokio::task::LocalSet::new().run_until(async {
        let store = PgStore::connect(&pg.url(), None, 2).await.unwrap();
        assert_eq!(store.backend(), "postgres");

        // A new journal: nothing stored, events from 1.
        let first = store.claim("ledger", 3).await.unwrap();
        assert_eq!(
            (first.snapshot.clone(), first.events.len(), first.next),
            (None, 0, 1)
        );
        let w1 = first.writer.clone();
        assert_eq!(store.append(&w1, 1, events(1, 3)).await, Ok(4));
        // Replayed, and with a gap: refused, nothing written.
        assert_eq!(
            store.append(&w1, 1, events(1, 3)).await,
            Err(StoreError::Conflict {
                expected: 4,
                got: 1
            })
        );
        assert_eq!(
            store.append(&w1, 6, events(6, 1)).await,
            Err(StoreError::Conflict {
                expected: 4,
                got: 6
            })
        );
        // A snapshot up to 2 drops events 1 and 2; one past the end is refused.
        assert_eq!(store.snapshot(&w1, 2, b"state at 2".to_vec()).await, Ok(()));
        assert!(matches!(
            store.snapshot(&w1, 4, b"too far".to_vec()).await,
            Err(StoreError::Conflict { got: 4, .. })
        ));
        assert_eq!(store.append(&w1, 4, events(4, 1)).await, Ok(5));

        // The next incarnation (a newer epoch) reads the snapshot and what
        // follows it, and fences the one before.
        let second = store.claim("ledger", 5).await.unwrap();
        let snapshot = second.snapshot.clone().unwrap();
        assert_eq!(
            (snapshot.seq, snapshot.bytes.as_slice()),
            (2, &b"state at 2"[..])
        );
        let seqs: Vec<u64> = second.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [3, 4]);
        assert_eq!(second.events[0].bytes, b"event 3");
        assert_eq!(second.next, 5);
        assert_eq!(
            store.append(&w1, 5, events(5, 1)).await,
            Err(StoreError::Fenced { newest: 5 })
        );
        assert_eq!(
            store.snapshot(&w1, 4, Vec::new()).await,
            Err(StoreError::Fenced { newest: 5 })
        );
        // An older epoch cannot claim it back.
        assert_eq!(
            store.claim("ledger", 4).await.err(),
            Some(StoreError::Fenced { newest: 5 })
        );
        // A restart under the same epoch claims again: the claim before it
        // is fenced too.
        let w2 = second.writer.clone();
        let third = store.claim("ledger", 5).await.unwrap();
        assert_eq!(third.writer.claim, w2.claim + 1);
        assert_eq!(
            store.append(&w2, 5, events(5, 1)).await,
            Err(StoreError::Fenced { newest: 5 })
        );
        assert_eq!(store.append(&third.writer, 5, events(5, 2)).await, Ok(7));

        // A forged writer for a journal nobody claimed.
        let nobody = Writer {
            name: "nobody".into(),
            epoch: 1,
            claim: 1,
        };
        assert!(matches!(
            store.append(&nobody, 1, events(1, 1)).await,
            Err(StoreError::Refused { .. })
        ));

        // Sizes: an event too large never reaches the database; the journal
        // after its snapshot is bounded until a snapshot drops it.
        let huge = vec![vec![0u8; MAX_EVENT_BYTES + 1]];
        assert!(matches!(
            store.append(&third.writer, 7, huge).await,
            Err(StoreError::TooLarge { .. })
        ));
        let mut next = 7;
        let big = || vec![vec![7u8; MAX_EVENT_BYTES]; 3];
        let full = loop {
            match store.append(&third.writer, next, big()).await {
                Ok(n) => next = n,
                Err(e) => break e,
            }
            assert!(next < 1_000, "the journal grew without bound");
        };
        assert!(
            matches!(&full, StoreError::TooLarge { what, .. } if what.contains("snapshot")),
            "{full:?}"
        );
        assert_eq!(
            store
                .snapshot(&third.writer, next - 1, b"all".to_vec())
                .await,
            Ok(())
        );
        assert_eq!(store.append(&third.writer, next, big()).await, Ok(next + 3));
    }));
    // What the tables hold: the snapshot row and only the events after it.
    let kept = pg
        .psql("select count(*) from swarm_durable_journal where name = 'ledger'")
        .unwrap();
    assert_eq!(kept, "3");
}

#[test]
fn a_stale_writer_racing_the_claim_that_fences_it_loses_nothing_it_was_told_was_durable() {
    let Some(pg) = super::postgres::start("durable-race") else {
        return;
    };
    runtime().block_on(tokio::task::LocalSet::new().run_until(async {
        let store = PgStore::connect(&pg.url(), None, 4).await.unwrap();
        for round in 0..5u64 {
            let name = format!("race-{round}");
            let old = store.claim(&name, 1).await.unwrap().writer;
            // The old incarnation appends one event at a time, as fast as
            // it can, on its own connections; the new one claims meanwhile.
            let progress = std::rc::Rc::new(std::cell::Cell::new(0u64));
            let writer = {
                let (store, progress) = (store.clone(), progress.clone());
                tokio::task::spawn_local(async move {
                    let mut acked = Vec::new();
                    let mut next = 1;
                    loop {
                        match store.append(&old, next, events(next, 1)).await {
                            Ok(n) => {
                                acked.push(next);
                                next = n;
                                progress.set(acked.len() as u64);
                            }
                            Err(StoreError::Fenced { newest: 2 }) => return acked,
                            Err(e) => panic!("round {round}: {e}"),
                        }
                        assert!(
                            next < 100_000,
                            "round {round}: the old writer was never fenced"
                        );
                    }
                })
            };
            // Let it write a little first (a few more each round).
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while progress.get() < 3 + round * 5 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the old writer made no progress"
                );
                tokio::task::yield_now().await;
            }
            let recovered = store.claim(&name, 2).await.unwrap();
            let acked = writer.await.unwrap();
            let seen: Vec<u64> = recovered.events.iter().map(|e| e.seq).collect();
            // Everything acknowledged is recovered, in order, nothing else.
            assert_eq!(seen, acked, "round {round}");
            assert_eq!(recovered.next, acked.len() as u64 + 1);
        }
    }));
}

#[test]
fn broken_connections_are_unavailable_then_reopened_and_a_newer_schema_is_refused() {
    let Some(pg) = super::postgres::start("durable-conn") else {
        return;
    };
    let url = pg.url();
    runtime().block_on(tokio::task::LocalSet::new().run_until(async {
        // Two stores connecting at once both create (or find) the tables.
        let (a, b) = tokio::join!(PgStore::connect(&url, None, 1), PgStore::connect(&url, None, 1));
        let (store, _other) = (a.unwrap(), b.unwrap());
        let w = store.claim("conn", 1).await.unwrap().writer;
        assert_eq!(store.append(&w, 1, events(1, 1)).await, Ok(2));

        // The server ends every session: the next call fails as
        // unavailable (or already reconnects); the one after succeeds.
        pg.psql("select pg_terminate_backend(pid) from pg_stat_activity where usename = 'swarm' and pid <> pg_backend_pid()")
            .unwrap();
        let mut next = 2;
        let mut answered = false;
        for _ in 0..3 {
            match store.append(&w, next, events(next, 1)).await {
                Ok(n) => {
                    next = n;
                    answered = true;
                    break;
                }
                Err(StoreError::Unavailable { reason }) => assert!(reason.contains("PostgreSQL"), "{reason}"),
                Err(e) => panic!("{e}"),
            }
        }
        assert!(answered, "the store did not reconnect");
        assert_eq!(next, 3);

        // A wrong password is unavailable with the server's words.
        let wrong = url.replace(pg.password(), "wrong");
        let refused = PgStore::connect(&wrong, None, 1).await.unwrap_err();
        assert!(refused.to_string().contains("password"), "{refused}");
        // The password may come apart from the URL.
        let bare = url.replace(&format!(":{}@", pg.password()), "@");
        PgStore::connect(&bare, Some(pg.password()), 1).await.unwrap();

        // A store made while its database is unreachable starts; its calls
        // are unavailable until the database answers.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let down = PgStore::new(&format!("postgresql://swarm@127.0.0.1:{free}/postgres"), None, 1).unwrap();
        assert!(matches!(down.claim("x", 1).await, Err(StoreError::Unavailable { .. })));
        let lazy = PgStore::new(&url, None, 1).unwrap();
        assert_eq!(lazy.claim("lazy", 1).await.unwrap().next, 1);

        // A hostaddr that is not loopback, under a loopback host name, too.
        let hidden = PgStore::new("postgresql://swarm@localhost/db?hostaddr=192.0.2.7", None, 1).unwrap_err();
        assert!(matches!(&hidden, StoreError::Refused { reason } if reason.contains("hostaddr")), "{hidden}");
        // A wrong password is refused (trying again cannot help).
        let wrong = url.replace(pg.password(), "wrong");
        assert!(matches!(PgStore::new(&wrong, None, 1).unwrap().claim("x", 1).await, Err(StoreError::Refused { .. })));

        // A host that is not loopback would carry journals in the clear.
        let remote = PgStore::connect("postgresql://swarm@192.0.2.7/db", None, 1).await.unwrap_err();
        assert!(
            matches!(&remote, StoreError::Refused { reason } if reason.contains("sslmode=disable")),
            "{remote}"
        );
    }));
    // A database a newer swarm migrated is refused, saying so.
    pg.psql("update swarm_schema set version = 99 where component = 'durable'")
        .unwrap();
    runtime().block_on(tokio::task::LocalSet::new().run_until(async {
        let newer = PgStore::connect(&url, None, 1).await.unwrap_err();
        assert!(
            matches!(&newer, StoreError::Refused { reason } if reason.contains("version 99")),
            "{newer}"
        );
    }));
}

/// The demo's durable ledger on five `swarm` processes whose
/// configuration names the PostgreSQL store: acknowledged deposits
/// survive a SIGKILL of the hosting process, and the journal is in the
/// database (not the head group's log).
#[actix_rt::test]
async fn a_ledger_on_postgres_keeps_every_acknowledged_deposit_through_a_sigkill() {
    let Some(pg) = super::postgres::start("durable-ledger") else {
        return;
    };
    let (mut cluster, secrets) = on_postgres(&pg, "durable-pg-kill");
    cluster.remove_dir_on_drop(true);
    let (_, after) = crate::durable::deposits_survive_a_sigkill(&mut cluster, "on-postgres", || {
        let stored = pg
            .psql(
                "select next_seq, snapshot_seq from swarm_durable_snapshots where name = 'on-postgres'",
            )
            .unwrap();
        assert_eq!(stored, "151|100", "the journal is in PostgreSQL");
    })
    .await;
    let epoch = pg
        .psql("select epoch from swarm_durable_snapshots where name = 'on-postgres'")
        .unwrap();
    assert_eq!(
        epoch,
        after.epoch.to_string(),
        "the new incarnation claimed it"
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&secrets);
}

/// 3 heads and 2 workers, each `swarm` process's file naming `pg` as its
/// journal store (the password in a 0600 file, in the second directory
/// answered: remove it after the cluster).
fn on_postgres(pg: &Postgres, name: &str) -> (swarm_cli::local::LocalCluster, std::path::PathBuf) {
    use crate::util::{exe, scratch};

    let secrets = scratch(&format!("{name}-secret"));
    let section = pg.section(&secrets).unwrap();
    let cluster = swarm_cli::local::LocalCluster::start_control_configured(
        &exe(),
        &scratch(name),
        (3, 2),
        &section,
    )
    .unwrap();
    (cluster, secrets)
}

/// `stress_durable_ledger_through_50_sigkills_under_deposits` with the
/// PostgreSQL store.
#[actix_rt::test]
#[ignore = "stress: a few minutes"]
async fn stress_durable_ledger_on_postgres_through_50_sigkills_under_deposits() {
    let Some(pg) = super::postgres::start("durable-stress") else {
        return;
    };
    let (mut cluster, secrets) = on_postgres(&pg, "durable-pg-stress");
    cluster.remove_dir_on_drop(true);
    crate::durable::ledger_through_sigkills(&mut cluster, 50).await;
    drop(cluster);
    let _ = std::fs::remove_dir_all(&secrets);
}

/// A durable actor started by a node's own spawn (no head placement: its
/// epoch is whatever the sender said, here the largest PostgreSQL takes)
/// stops instead of claiming its journal: with a store that cannot check
/// the head's placement record, its claim would fence every later
/// incarnation of the name.
#[actix_rt::test]
async fn a_durable_actor_the_head_did_not_place_never_claims_its_journal() {
    use swarm::supervision::Restart;

    use crate::durable_rules::{Add, Tally};
    use crate::util::{control_cluster, scratch};

    let Some(pg) = super::postgres::start("durable-rogue") else {
        return;
    };
    let dir = scratch("durable-rogue");
    let (_ca, nodes) = control_cluster(&dir, 1, 1, |_, _| {}).await;
    for n in &nodes {
        n.node.set_journal_store(std::sync::Arc::new(
            PgStore::new(&pg.url(), None, 1).unwrap(),
        ));
        n.node.register::<Tally>();
    }
    // The head node sends it, so the host admits it; it carries no fence,
    // so it is no placement.
    let rogue = nodes[0]
        .node
        .spawn_on::<Tally>(
            nodes[1].node.id(),
            "rogue",
            &(),
            i64::MAX as u64,
            Restart::Never,
        )
        .await
        .expect("the host starts it");
    // It stopped in `started`: nothing answers.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        poll.tick().await;
        match rogue.send(Add(1)).await {
            Err(_) => break,
            Ok(answer) => assert!(
                std::time::Instant::now() < deadline,
                "an unplaced durable actor answered: {answer:?}"
            ),
        }
    }
    // And it never claimed the name's journal.
    let claimed = pg
        .psql("select count(*) from swarm_durable_snapshots where name = 'rogue'")
        .unwrap_or_else(|e| e);
    assert!(
        claimed == "0" || claimed.contains("does not exist"),
        "{claimed}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn postgres_over_tls_checks_the_servers_certificate_and_never_falls_back_to_the_clear() {
    let Some((pg, ca)) = super::postgres::start_tls("durable-tls") else {
        return;
    };
    runtime().block_on(tokio::task::LocalSet::new().run_until(async {
        // The CA that signed the server's certificate: journals over TLS.
        let store = PgStore::with_tls(&pg.url(), None, 1, ca.as_bytes()).unwrap();
        let claimed = store.claim("ledger", 1).await.unwrap();
        assert_eq!(store.append(&claimed.writer, 1, events(1, 2)).await, Ok(3));
        let sessions = pg
            .psql(
                "select count(*) from pg_stat_ssl s join pg_stat_activity a using (pid) \
                   where s.ssl and a.application_name <> 'psql'",
            )
            .unwrap();
        assert_eq!(sessions, "1", "the store's one connection is encrypted");

        // In the clear: the server (hostssl lines only) refuses the login.
        let plain = PgStore::new(&pg.url(), None, 1).unwrap();
        let refused = plain.claim("ledger", 2).await.unwrap_err();
        assert!(
            refused.to_string().contains("no encryption") || refused.to_string().contains("pg_hba"),
            "{refused}"
        );

        // Another CA: the handshake fails on the certificate, nothing is
        // sent, and the store does not retry in the clear.
        let (_, other_ca) = swarm_admin::tls::AdminCa::generate("someone else").unwrap();
        let stranger = PgStore::with_tls(&pg.url(), None, 1, other_ca.as_bytes()).unwrap();
        let untrusted = stranger.claim("ledger", 2).await.unwrap_err();
        assert!(
            matches!(untrusted, StoreError::Unavailable { .. })
                && untrusted.to_string().to_lowercase().contains("certificate"),
            "{untrusted}"
        );
        // The journal is as the first store left it: nothing was claimed.
        let again = store.claim("ledger", 3).await.unwrap();
        assert_eq!(again.next, 3);
    }));

    // Settings, without dialing: TLS lets a remote host in, the clear does
    // not; TLS with sslmode=disable, or a bundle without a certificate, is
    // refused.
    let remote = "postgresql://swarm@10.1.2.3:5432/swarm";
    assert!(PgStore::with_tls(remote, None, 1, ca.as_bytes()).is_ok());
    let clear = PgStore::new(remote, None, 1).unwrap_err();
    assert!(clear.to_string().contains("ca_file"), "{clear}");
    let both = PgStore::with_tls(&format!("{remote}?sslmode=disable"), None, 1, ca.as_bytes())
        .unwrap_err();
    assert!(both.to_string().contains("sslmode=disable"), "{both}");
    let empty = PgStore::with_tls(remote, None, 1, b"not a certificate").unwrap_err();
    assert!(empty.to_string().contains("no certificate"), "{empty}");
}
