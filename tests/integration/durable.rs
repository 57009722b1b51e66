//! Durable actors on the embedded store (journals in the head group's
//! log): acknowledged deposits survive a SIGKILL of the hosting process
//! and a panic; a stale, forged or replayed journal write is refused at
//! the heads.

use std::time::{Duration, Instant};

use swarm::control::{Named, Spawn};
use swarm::durable::codec::{self, Kind};
use swarm::durable::StoreError;
use swarm::placement::Placement;
use swarm::supervision::Restart;
use swarm::AskError;
use swarm_cli::demo::{Balance, Crash, Deposit, Ledger, LedgerArgs, LedgerEvent};
use swarm_cli::local::LocalCluster;

use crate::util::{control_cluster, driver, exe, ledger_on, scratch, spawn_ready};

/// Asks with a deposit of 0 (a read) until an incarnation answers.
pub(crate) async fn read_until_answered(ledger: &Named<Ledger>, within: Duration) -> Balance {
    let deadline = Instant::now() + within;
    let mut poll = tokio::time::interval(Duration::from_millis(5));
    loop {
        poll.tick().await;
        if let Ok(balance) = ledger.send(Deposit(0)).await {
            return balance;
        }
        assert!(Instant::now() < deadline, "the ledger never answered again");
    }
}

#[actix_rt::test]
async fn every_acknowledged_deposit_survives_a_sigkill_of_the_hosting_process() {
    let mut cluster =
        LocalCluster::start_control(&exe(), &scratch("durable-kill"), 3, 2, &[]).unwrap();
    cluster.remove_dir_on_drop(true);
    deposits_survive_a_sigkill(&mut cluster, "durable", || {}).await;
}

/// Places a durable ledger `name` (opening 1000) on a worker of `cluster`,
/// deposits 150 times (past its snapshot, every 100 events, so the next
/// incarnation restores a snapshot and replays the events after it), runs
/// `stored` (the store's own checks), SIGKILLs the hosting process, and
/// checks that a new incarnation elsewhere answers every acknowledged
/// deposit and goes on from there. Answers the balances before and after.
pub(crate) async fn deposits_survive_a_sigkill(
    cluster: &mut LocalCluster,
    name: &str,
    stored: impl FnOnce(),
) -> (Balance, Balance) {
    let driver = driver(cluster).await;
    let control = driver.control().unwrap().clone();
    let ledger = spawn_ready(&control, || {
        Spawn::<Ledger>::named(name)
            .args(LedgerArgs { opening: 1000 })
            .placement(Placement::Label {
                label: "worker".to_owned(),
                hard: true,
            })
    })
    .await;
    let mut acknowledged = 1000;
    let mut last = None;
    for amount in 1..=150u64 {
        let balance = ledger.send(Deposit(amount)).await.unwrap();
        acknowledged += amount;
        assert_eq!(balance.total, acknowledged);
        last = Some(balance);
    }
    let before = last.unwrap();
    stored();
    let i = cluster
        .nodes
        .iter()
        .position(|n| n.id == before.node)
        .expect("the ledger runs on a cluster process");
    let killed_at = Instant::now();
    cluster.kill(i).unwrap();
    let after = read_until_answered(&ledger, Duration::from_secs(20)).await;
    let took = killed_at.elapsed();
    eprintln!("durable failover (SIGKILL to the next answer, state restored): {took:?}");
    assert_ne!(after.node, before.node);
    assert!(after.epoch > before.epoch);
    assert_eq!(after.total, acknowledged, "every acknowledged deposit kept");
    // And it goes on from there.
    assert_eq!(
        ledger.send(Deposit(7)).await.unwrap().total,
        acknowledged + 7
    );
    (before, after)
}

/// Every process of the cluster (3 heads, 2 workers) SIGKILLed at once
/// and started again: the heads reopen their stores, the ledger is placed
/// again, and recovers every acknowledged deposit from the journal in the
/// head group's log.
#[actix_rt::test]
async fn a_whole_cluster_killed_and_restarted_keeps_every_acknowledged_deposit() {
    let mut cluster =
        LocalCluster::start_control(&exe(), &scratch("durable-restart-all"), 3, 2, &[]).unwrap();
    cluster.remove_dir_on_drop(true);
    let driver = driver(&cluster).await;
    let control = driver.control().unwrap().clone();
    let ledger = spawn_ready(&control, || {
        Spawn::<Ledger>::named("whole")
            .args(LedgerArgs { opening: 10 })
            .placement(Placement::Label {
                label: "worker".to_owned(),
                hard: true,
            })
    })
    .await;
    let mut acknowledged = 10;
    for amount in 1..=120u64 {
        acknowledged = ledger.send(Deposit(amount)).await.unwrap().total;
    }
    assert_eq!(acknowledged, 10 + 120 * 121 / 2);
    let before = ledger.send(Deposit(0)).await.unwrap();
    // All at once, then heads first (the others join through n1).
    let mut killed = Vec::new();
    while !cluster.nodes.is_empty() {
        killed.push(cluster.kill(0).unwrap());
    }
    for node in &killed {
        cluster.restart(node).unwrap();
    }
    let after = read_until_answered(&ledger, Duration::from_secs(60)).await;
    assert!(after.epoch > before.epoch, "a new incarnation");
    assert_eq!(after.total, acknowledged, "every acknowledged deposit kept");
    assert_eq!(
        ledger.send(Deposit(5)).await.unwrap().total,
        acknowledged + 5
    );
}

#[actix_rt::test]
async fn a_ledger_restarted_after_a_panic_keeps_its_balance() {
    let dir = scratch("durable-panic");
    let (_ca, nodes) = control_cluster(&dir, 1, 1, |_, _| {}).await;
    let control = nodes[1].node.control().unwrap().clone();
    let ledger = spawn_ready(&control, || {
        Spawn::<Ledger>::named("panicky")
            .args(LedgerArgs { opening: 0 })
            .restart(Restart::on_failure())
    })
    .await;
    for _ in 0..5 {
        ledger.send(Deposit(10)).await.unwrap();
    }
    let before = ledger.send(Deposit(0)).await.unwrap();
    assert_eq!(before.total, 50);
    assert_eq!(ledger.send(Crash).await, Err(AskError::ActorFailed));
    let after = read_until_answered(&ledger, Duration::from_secs(10)).await;
    assert_eq!(after.epoch, before.epoch, "restarted locally, same epoch");
    assert_eq!(after.total, 50, "the balance came back from the journal");
    assert_eq!(ledger.send(Deposit(1)).await.unwrap().total, 51);
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn stale_forged_and_replayed_journal_writes_are_refused() {
    let dir = scratch("durable-fence");
    let (_ca, nodes) = control_cluster(&dir, 1, 2, |_, _| {}).await;
    let (a, b) = (&nodes[1].node, &nodes[2].node);
    let control = nodes[0].node.control().unwrap().clone();
    let ledger = ledger_on(&control, "fenced", a.id()).await;
    assert_eq!(ledger.send(Deposit(5)).await.unwrap().total, 5);
    let (_, epoch) = ledger.location().unwrap();
    let store_a = a.journal_store().expect("a node with membership has one");
    let store_b = b.journal_store().unwrap();
    assert_eq!(store_a.backend(), "embedded");

    // Node b is not where the head placed it: it can neither claim the
    // journal nor write it with a writer it copied.
    let refused = store_b.claim("fenced", epoch).await;
    assert!(
        matches!(refused, Err(StoreError::Refused { .. })),
        "{refused:?}"
    );

    // A new claim from node a (as a restarted incarnation would make)
    // fences the running incarnation's claim.
    let claimed = store_a.claim("fenced", epoch).await.unwrap();
    assert_eq!(claimed.events.len(), 1);
    let writer = claimed.writer.clone();
    let forged = store_b.append(&writer, claimed.next, vec![event(1)]).await;
    assert!(
        matches!(forged, Err(StoreError::Refused { .. })),
        "{forged:?}"
    );

    // The running incarnation's next deposit is refused (fenced): it
    // stops without acknowledging, comes back (placed again, as its
    // policy says) and recovers, and the deposit sent again is counted
    // once.
    assert!(ledger.send(Deposit(7)).await.is_err());
    let again = read_until_answered(&ledger, Duration::from_secs(10)).await;
    assert_eq!(again.total, 5, "the refused deposit was not applied");
    assert_eq!(ledger.send(Deposit(7)).await.unwrap().total, 12);

    // Our claim is now older than the incarnation's: fenced.
    let stale = store_a.append(&writer, claimed.next, vec![event(1)]).await;
    assert!(matches!(stale, Err(StoreError::Fenced { .. })), "{stale:?}");

    // A replayed write: the same append twice, from the newest claim.
    let (at, now) = control
        .resolve("fenced")
        .await
        .map(|l| (l.node, l.epoch))
        .unwrap();
    let store = if at == a.id() { &store_a } else { &store_b };
    let newest = store.claim("fenced", now).await.unwrap();
    let next = newest.next;
    let first = store.append(&newest.writer, next, vec![event(3)]).await;
    assert_eq!(first, Ok(next + 1));
    let replayed = store.append(&newest.writer, next, vec![event(3)]).await;
    assert_eq!(
        replayed,
        Err(StoreError::Conflict {
            expected: next + 1,
            got: next
        })
    );

    // Moved to node b under a newer epoch: the old epoch is fenced, even
    // from the node the name is on now.
    control.stop("fenced").await.unwrap();
    let moved = ledger_on(&control, "fenced", b.id()).await;
    let (_, newer) = moved.location().unwrap();
    assert!(newer > epoch);
    let old = store_b.claim("fenced", now).await;
    assert_eq!(old, Err(StoreError::Fenced { newest: newer }));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A node's concurrent appends leave in one group (`AppendJournals`);
/// each is still checked against the head's record on its own: an append
/// for an actor the sending node does not host is refused while the
/// group's other append is written, and the same group sent again is
/// refused append by append (a conflict, a refusal), writing nothing.
#[actix_rt::test]
async fn a_group_of_appends_carrying_a_forged_one_or_replayed_writes_only_the_owned_once() {
    let dir = scratch("durable-group");
    let (_ca, nodes) = control_cluster(&dir, 1, 2, |_, _| {}).await;
    let (a, b) = (&nodes[1].node, &nodes[2].node);
    let control = nodes[0].node.control().unwrap().clone();
    let mine = ledger_on(&control, "mine", a.id()).await;
    let theirs = ledger_on(&control, "theirs", b.id()).await;
    assert_eq!(mine.send(Deposit(1)).await.unwrap().total, 1);
    assert_eq!(theirs.send(Deposit(2)).await.unwrap().total, 2);
    let store_a = a.journal_store().unwrap();
    let store_b = b.journal_store().unwrap();
    // Claims as the hosts' next incarnations would make them (this fences
    // the running ones: the test writes in their place).
    let own = store_a
        .claim("mine", mine.location().unwrap().1)
        .await
        .unwrap();
    let copied = store_b
        .claim("theirs", theirs.location().unwrap().1)
        .await
        .unwrap();

    // Node a sends both at once: one group.
    let group = || async {
        tokio::join!(
            store_a.append(&own.writer, own.next, vec![event(3)]),
            store_a.append(&copied.writer, copied.next, vec![event(100)]),
        )
    };
    let (written, forged) = group().await;
    assert_eq!(written, Ok(own.next + 1));
    assert!(
        matches!(&forged, Err(StoreError::Refused { reason }) if reason.contains("not on the writing node")),
        "{forged:?}"
    );
    // The same group replayed: nothing is written twice or forged.
    let (again, forged) = group().await;
    assert_eq!(
        again,
        Err(StoreError::Conflict {
            expected: own.next + 1,
            got: own.next
        })
    );
    assert!(
        matches!(forged, Err(StoreError::Refused { .. })),
        "{forged:?}"
    );
    // What the stores hold: `mine` gained one event, `theirs` none.
    let mine_now = store_a
        .claim("mine", mine.location().unwrap().1)
        .await
        .unwrap();
    assert_eq!(mine_now.next, own.next + 1);
    let theirs_now = store_b
        .claim("theirs", theirs.location().unwrap().1)
        .await
        .unwrap();
    assert_eq!(theirs_now.next, copied.next);
    let _ = std::fs::remove_dir_all(&dir);
}

fn event(amount: u64) -> Vec<u8> {
    codec::encode(Kind::Event, "demo.Ledger", &LedgerEvent::Deposited(amount)).unwrap()
}

#[actix_rt::test]
async fn a_snapshot_of_the_largest_size_replicates_to_three_heads_and_writes_go_on() {
    let dir = scratch("durable-large");
    let (_ca, nodes) = control_cluster(&dir, 3, 1, |_, _| {}).await;
    let worker = &nodes[3].node;
    let control = nodes[0].node.control().unwrap().clone();
    let ledger = ledger_on(&control, "large", worker.id()).await;
    assert_eq!(ledger.send(Deposit(1)).await.unwrap().total, 1);
    let (_, epoch) = ledger.location().unwrap();
    let store = worker.journal_store().unwrap();
    let claimed = store.claim("large", epoch).await.unwrap();
    let seq = claimed.next - 1;
    let big = vec![7u8; swarm::durable::MAX_SNAPSHOT_BYTES];
    let t = Instant::now();
    store
        .snapshot(&claimed.writer, seq, big.clone())
        .await
        .unwrap();
    let took = t.elapsed();
    let t = Instant::now();
    let next = store
        .append(&claimed.writer, claimed.next, vec![event(2)])
        .await
        .unwrap();
    eprintln!(
        "a {} KiB snapshot committed in {took:?}; the next append in {:?}",
        big.len() / 1024,
        t.elapsed()
    );
    assert_eq!(next, claimed.next + 1);
    // One byte more is refused whole.
    let over = store
        .snapshot(&claimed.writer, seq, vec![0; big.len() + 1])
        .await;
    assert!(matches!(over, Err(StoreError::TooLarge { .. })), "{over:?}");
    let again = store.claim("large", epoch).await.unwrap();
    assert_eq!(again.snapshot.map(|s| s.bytes.len()), Some(big.len()));
    assert_eq!(again.events.len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// 50 SIGKILLs of the process hosting a durable ledger while a stream of
/// deposits (1 each, one at a time) goes on: after each failover the
/// balance holds every acknowledged deposit and at most the unacknowledged
/// ones on top (an ask that failed may have been written: never twice).
#[actix_rt::test]
#[ignore = "stress: a few minutes"]
async fn stress_durable_ledger_through_50_sigkills_under_deposits() {
    let mut cluster =
        LocalCluster::start_control(&exe(), &scratch("durable-stress"), 3, 2, &[]).unwrap();
    cluster.remove_dir_on_drop(true);
    ledger_through_sigkills(&mut cluster, 50).await;
}

/// The stress above on `cluster`, `rounds` times (its journal store is
/// what the cluster's files name).
pub(crate) async fn ledger_through_sigkills(cluster: &mut LocalCluster, rounds: usize) {
    use std::cell::Cell;
    use std::rc::Rc;

    let driver = driver(cluster).await;
    let control = driver.control().unwrap().clone();
    let ledger = spawn_ready(&control, || {
        Spawn::<Ledger>::named("stream")
            .args(LedgerArgs { opening: 0 })
            .placement(Placement::Label {
                label: "worker".to_owned(),
                hard: true,
            })
    })
    .await;
    // Acknowledged and failed deposits, counted by the stream.
    let acked = Rc::new(Cell::new(0u64));
    let failed = Rc::new(Cell::new(0u64));
    let stream = {
        let (ledger, acked, failed) = (ledger.clone(), acked.clone(), failed.clone());
        actix_rt::spawn(async move {
            let mut pace = tokio::time::interval(Duration::from_millis(2));
            loop {
                pace.tick().await;
                match ledger.send(Deposit(1)).await {
                    Ok(_) => acked.set(acked.get() + 1),
                    Err(_) => failed.set(failed.get() + 1),
                }
            }
        })
    };
    let mut took = Vec::new();
    for round in 0..rounds {
        // Twenty deposits acknowledged by this incarnation first.
        let start = acked.get();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut poll = tokio::time::interval(Duration::from_millis(5));
        while acked.get() < start + 20 {
            poll.tick().await;
            assert!(
                Instant::now() < deadline,
                "round {round}: the stream stalled"
            );
        }
        let before = read_until_answered(&ledger, Duration::from_secs(30)).await;
        let i = cluster
            .nodes
            .iter()
            .position(|n| n.id == before.node)
            .expect("the ledger runs on a cluster process");
        let killed_at = Instant::now();
        let killed = cluster.kill(i).unwrap();
        let after = loop {
            let balance = read_until_answered(&ledger, Duration::from_secs(30)).await;
            if balance.epoch > before.epoch {
                break balance;
            }
        };
        took.push(killed_at.elapsed());
        // Read once more after the stream's ask in flight settled.
        let (a, f) = (acked.get(), failed.get());
        let now = ledger
            .send(Deposit(0))
            .await
            .map(|b| b.total)
            .unwrap_or(after.total);
        assert!(
            now >= a && now <= acked.get() + failed.get() + 1,
            "round {round}: balance {now}, {a} acknowledged, {f} failed"
        );
        cluster.restart(&killed).unwrap();
    }
    stream.abort();
    took.sort();
    eprintln!(
        "durable failover under deposits, {rounds} SIGKILLs: p50 {:?}, max {:?}; {} acknowledged, {} failed",
        took[took.len() / 2],
        took[took.len() - 1],
        acked.get(),
        failed.get()
    );
}

/// Many ledgers deposit at once, so that several journal batches are in
/// the head leader's pipeline (written to its log, not yet answered), when
/// the leader is SIGKILLed: once the next leader takes over, every
/// ledger's balance holds every acknowledged deposit and at most the
/// unacknowledged ones on top (an ask that failed may have been written:
/// never twice).
#[actix_rt::test]
async fn a_leader_sigkill_with_journal_batches_in_flight_loses_and_doubles_no_deposit() {
    use std::cell::Cell;
    use std::rc::Rc;

    const LEDGERS: usize = 24;
    let mut cluster =
        LocalCluster::start_control(&exe(), &scratch("durable-leader-kill"), 3, 2, &[]).unwrap();
    cluster.remove_dir_on_drop(true);
    let driver = driver(&cluster).await;
    let control = driver.control().unwrap().clone();
    let mut ledgers = Vec::new();
    for i in 0..LEDGERS {
        ledgers.push(
            spawn_ready(&control, || {
                Spawn::<Ledger>::named(format!("pipe{i}"))
                    .args(LedgerArgs { opening: 0 })
                    .placement(Placement::Label {
                        label: "worker".to_owned(),
                        hard: true,
                    })
            })
            .await,
        );
    }
    // Per ledger: deposits of 1, one at a time, acknowledged and failed.
    let stop = Rc::new(Cell::new(false));
    let counts: Vec<_> = (0..LEDGERS)
        .map(|_| (Rc::new(Cell::new(0u64)), Rc::new(Cell::new(0u64))))
        .collect();
    let mut streams = Vec::new();
    for (ledger, (acked, failed)) in ledgers.iter().zip(&counts) {
        let (ledger, acked, failed, stop) =
            (ledger.clone(), acked.clone(), failed.clone(), stop.clone());
        streams.push(actix_rt::spawn(async move {
            while !stop.get() {
                match ledger.send(Deposit(1)).await {
                    Ok(balance) => {
                        acked.set(acked.get() + 1);
                        assert!(balance.total >= acked.get(), "a deposit was lost");
                    }
                    Err(_) => failed.set(failed.get() + 1),
                }
            }
        }));
    }
    // Acknowledged and failed, per ledger.
    type Counts = (Rc<Cell<u64>>, Rc<Cell<u64>>);
    let total = |counts: &[Counts]| counts.iter().map(|(a, _)| a.get()).sum::<u64>();
    let until_acked = |at_least: u64, what: &'static str| {
        let counts = &counts;
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut poll = tokio::time::interval(Duration::from_millis(5));
            while total(counts) < at_least {
                poll.tick().await;
                assert!(Instant::now() < deadline, "the deposits stalled {what}");
            }
        }
    };
    until_acked(1_000, "before the kill").await;
    let old = control
        .head_status()
        .await
        .into_iter()
        .find_map(|(node, row)| row.ok().filter(|r| r.role == "leader").map(|_| node))
        .expect("a leader");
    let at = cluster.nodes.iter().position(|n| n.id == old).unwrap();
    let killed = cluster.kill(at).unwrap();
    let after_kill = total(&counts);
    until_acked(after_kill + 1_000, "after the leader's kill").await;
    stop.set(true);
    for stream in streams {
        stream.await.unwrap();
    }
    let failed: u64 = counts.iter().map(|(_, f)| f.get()).sum();
    eprintln!(
        "{} deposits acknowledged ({after_kill} before the leader's kill), {failed} failed",
        total(&counts)
    );
    for (i, (ledger, (acked, failed))) in ledgers.iter().zip(&counts).enumerate() {
        let balance = read_until_answered(ledger, Duration::from_secs(30)).await;
        let (a, f) = (acked.get(), failed.get());
        assert!(
            balance.total >= a && balance.total <= a + f,
            "ledger {i}: balance {}, {a} acknowledged, {f} failed",
            balance.total
        );
    }
    cluster.restart(&killed).unwrap();
}
