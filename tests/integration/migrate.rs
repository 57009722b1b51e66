//! Live migration: `control.migrate(name, node)` and `swarm drain` move a
//! durable ledger while callers stream deposits through `Named` handles
//! (several asks in flight each): no ask fails, every acknowledged
//! deposit is in the final balance once (it equals their sum), and each
//! caller's deposits were applied in the order it issued them (its
//! answers grow). Refusals say why; a target that dies before the spawn
//! loses nothing; an old node cut off mid-move does not confirm the
//! hand-over, so the move is refused and the actor keeps running there;
//! a hand-over done but whose confirmation is lost is refused too, and the
//! actor comes back on its node under a new epoch with every deposit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm::control::{ControlError, Named};
use swarm::supervision::{Host, HostHandOver, HOST_ACTOR};
use swarm::{AskError, Faults, NodeId};
use swarm_cli::demo::migration::{pause, Callers, Streamed};
use swarm_cli::demo::{Deposit, Ledger};
use swarm_cli::local::LocalCluster;

use crate::control_faults::runs;
use crate::durable::read_until_answered;
use crate::util::{admin_code, control_cluster, driver, exe, ledger_on, place_ledger, scratch};

/// No ask failed, each caller's deposits applied in issue order, and the
/// ledger's balance is the sum of the acknowledged deposits, exactly.
async fn check(callers: &[Streamed], ledger: &Named<Ledger>) -> u64 {
    check_from(callers, ledger, 0).await
}

/// As [`check`], for a ledger that opened with `opening`.
async fn check_from(callers: &[Streamed], ledger: &Named<Ledger>, opening: u64) -> u64 {
    for (i, c) in callers.iter().enumerate() {
        assert!(c.failed.is_empty(), "caller {i}: {:?}", c.failed);
        assert!(!c.acked.is_empty(), "caller {i} got nothing through");
        let disorder: Vec<_> = c
            .acked
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w[0].1.total >= w[1].1.total)
            .map(|(at, w)| (at, w[0].1.clone(), w[1].1.clone()))
            .collect();
        assert!(
            c.in_order(),
            "caller {i}'s deposits were applied out of order ({} acks): {disorder:?}",
            c.acked.len()
        );
    }
    let sum: u64 = callers.iter().map(Streamed::sum).sum();
    let total = ledger.send(Deposit(0)).await.unwrap().total;
    assert_eq!(
        total,
        opening + sum,
        "every acknowledged deposit once, nothing else"
    );
    sum
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[actix_rt::test]
async fn a_migrated_ledger_loses_no_deposit_and_callers_see_no_error_in_order() {
    let dir = scratch("migrate-live");
    let (_ca, nodes) = control_cluster(&dir, 1, 3, |_, _| {}).await;
    let admin = nodes[0].node.control().unwrap().clone();
    let (n2, n3) = (nodes[1].node.id(), nodes[2].node.id());
    let caller = nodes[3].node.control().unwrap().clone();
    let ledger = ledger_on(&admin, "live", n2).await;
    let callers = Callers::start(&caller, "live").await.unwrap();
    callers.after(40).await.unwrap();
    let mut moves = Vec::new();
    let mut epoch = ledger.location().unwrap().1;
    for to in [n3, n2, n3, n2] {
        let started = Instant::now();
        let (at, moved) = admin.migrate("live", to).await.unwrap();
        moves.push((started, Instant::now()));
        assert_eq!(at, to);
        assert!(moved > epoch, "a new epoch");
        epoch = moved;
        callers.after(40).await.unwrap();
    }
    let streamed = callers.finish().await.unwrap();
    let sum = check(&streamed, &ledger).await;
    let pauses: Vec<f64> = moves
        .iter()
        .map(|(started, returned)| ms(pause(&streamed, *started, *returned)))
        .collect();
    let asks: usize = streamed.iter().map(|c| c.acked.len()).sum();
    eprintln!("migration_pause_ms (3 callers, 9 asks in flight): {pauses:.1?}; {asks} deposits, sum {sum}");
    assert_eq!(ledger.location().map(|l| l.0), Some(n2));

    // Refusals, each with its reason.
    let same = admin.migrate("live", n2).await;
    assert!(
        matches!(&same, Err(ControlError::Refused { reason }) if reason.contains("already")),
        "{same:?}"
    );
    let nowhere = NodeId::from_bytes([7; 16]);
    let unknown = admin.migrate("live", nowhere).await;
    assert!(
        matches!(&unknown, Err(ControlError::Refused { reason }) if reason.contains("no member")),
        "{unknown:?}"
    );
    let nobody = admin.migrate("nobody", n3).await;
    assert!(
        matches!(nobody, Err(ControlError::NoSuchName { .. })),
        "{nobody:?}"
    );
    // A worker is no admin: refused, and so is a hand-over it forges.
    let forbidden = caller.migrate("live", n3).await;
    assert!(
        matches!(forbidden, Err(ControlError::Forbidden { .. })),
        "{forbidden:?}"
    );
    let forged = nodes[3]
        .node
        .remote::<Host>(n2, HOST_ACTOR)
        .send(HostHandOver {
            name: "live".into(),
            epoch,
            within_ms: 1_000,
        })
        .await;
    assert!(
        matches!(forged, Err(AskError::Forbidden { .. })),
        "{forged:?}"
    );
    assert!(runs(&nodes[1].node, "live").await, "still running on n2");
    assert_eq!(ledger.send(Deposit(1)).await.unwrap().total, sum + 1);

    // The hand-over saved a final snapshot: the journal holds no event
    // after it (the new incarnation restored it, replaying nothing). A
    // claim as the new incarnation's node would make it (which fences
    // that incarnation: the test ends here).
    // Two migrations at once: one moves it, the other is refused (a move
    // under way, or it runs there already).
    let (one, two) = tokio::join!(admin.migrate("live", n3), admin.migrate("live", n3));
    let (moved, refused) = if one.is_ok() { (one, two) } else { (two, one) };
    let (_, last) = moved.unwrap();
    assert!(
        matches!(&refused, Err(ControlError::Refused { reason }) if reason.contains("under way") || reason.contains("already")),
        "{refused:?}"
    );
    let journal = nodes[2].node.journal_store().unwrap();
    let claimed = journal.claim("live", last).await.unwrap();
    let snapshot = claimed.snapshot.expect("a snapshot");
    assert!(
        claimed.events.is_empty(),
        "{} events after the snapshot",
        claimed.events.len()
    );
    assert_eq!(snapshot.seq + 1, claimed.next);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Many migrations under the same callers.
#[actix_rt::test]
#[ignore = "stress: a minute"]
async fn stress_200_migrations_under_streaming_callers() {
    let dir = scratch("migrate-stress");
    let (_ca, nodes) = control_cluster(&dir, 1, 3, |_, _| {}).await;
    let admin = nodes[0].node.control().unwrap().clone();
    let (n2, n3) = (nodes[1].node.id(), nodes[2].node.id());
    let caller = nodes[3].node.control().unwrap().clone();
    let ledger = ledger_on(&admin, "busy", n2).await;
    let callers = Callers::start(&caller, "busy").await.unwrap();
    callers.after(20).await.unwrap();
    let mut moves = Vec::new();
    for i in 0..200 {
        let to = if i % 2 == 0 { n3 } else { n2 };
        let started = Instant::now();
        admin.migrate("busy", to).await.unwrap();
        moves.push((started, Instant::now()));
        callers.after(10).await.unwrap();
    }
    let streamed = callers.finish().await.unwrap();
    let sum = check(&streamed, &ledger).await;
    let mut pauses: Vec<f64> = moves
        .iter()
        .map(|(started, returned)| ms(pause(&streamed, *started, *returned)))
        .collect();
    pauses.sort_by(f64::total_cmp);
    eprintln!(
        "200 migrations: migration_pause_ms p50 {:.1}, p99 {:.1}, max {:.1}; sum {sum}",
        pauses[pauses.len() / 2],
        pauses[pauses.len() * 99 / 100],
        pauses[pauses.len() - 1]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn a_migration_whose_target_dies_before_the_spawn_loses_nothing() {
    let dir = scratch("migrate-target-dies");
    let (_ca, mut nodes) = control_cluster(&dir, 1, 3, |_, _| {}).await;
    let admin = nodes[0].node.control().unwrap().clone();
    let (n2, n3) = (nodes[1].node.id(), nodes[2].node.id());
    let ledger = ledger_on(&admin, "orphan", n2).await;
    let mut acknowledged = 0;
    for amount in 1..=30 {
        acknowledged = ledger.send(Deposit(amount)).await.unwrap().total;
    }
    let moving = tokio::task::spawn_local({
        let admin = admin.clone();
        async move { admin.migrate("orphan", n3).await }
    });
    nodes.remove(2).kill();
    let moved = moving.await.unwrap();
    eprintln!("a migration to a node killed meanwhile: {moved:?}");
    let after = read_until_answered(&ledger, Duration::from_secs(30)).await;
    assert_ne!(after.node, n3, "not on the dead node");
    assert_eq!(after.total, acknowledged, "every acknowledged deposit kept");
    assert_eq!(
        ledger.send(Deposit(5)).await.unwrap().total,
        acknowledged + 5
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A head and two workers, each with a fault switch; leases of 15 s,
/// longer than a refused move takes, so a node cut off meanwhile keeps
/// its lease (and its actor) through it.
async fn faulty(dir: &std::path::Path) -> (Vec<crate::util::TestNode>, Vec<Arc<Faults>>) {
    let mut faults = Vec::new();
    let (_ca, nodes) = control_cluster(dir, 1, 2, |_, c| {
        let f = Arc::new(Faults::default());
        c.faults = Some(f.clone());
        faults.push(f);
        if let Some(head) = c.head.as_mut() {
            head.lease = Duration::from_secs(15);
        }
    })
    .await;
    (nodes, faults)
}

#[actix_rt::test]
async fn an_old_node_cut_off_mid_move_keeps_the_actor_and_the_move_is_refused() {
    let dir = scratch("migrate-cut");
    let (nodes, faults) = faulty(&dir).await;
    let admin = nodes[0].node.control().unwrap().clone();
    let (n2, n3) = (nodes[1].node.id(), nodes[2].node.id());
    let ledger = ledger_on(&admin, "kept", n2).await;
    assert_eq!(ledger.send(Deposit(11)).await.unwrap().total, 11);
    let epoch = ledger.location().unwrap().1;
    // n2 cut off from everyone, both ways.
    let ids: Vec<NodeId> = nodes.iter().map(|n| n.node.id()).collect();
    for (i, id) in ids.iter().enumerate().filter(|(i, _)| *i != 1) {
        faults[1].block_direct(*id);
        faults[i].block_direct(n2);
    }
    let started = Instant::now();
    let refused = admin.migrate("kept", n3).await;
    eprintln!(
        "a migration off a cut-off node: {refused:?} after {:?}",
        started.elapsed()
    );
    assert!(
        matches!(&refused, Err(ControlError::Refused { reason }) if reason.contains("did not confirm")),
        "{refused:?}"
    );
    for (i, id) in ids.iter().enumerate().filter(|(i, _)| *i != 1) {
        faults[1].unblock_direct(*id);
        faults[i].unblock_direct(n2);
    }
    // One incarnation, the old one, on n2; none started on n3.
    assert!(runs(&nodes[1].node, "kept").await, "it keeps running on n2");
    assert!(!runs(&nodes[2].node, "kept").await, "nothing started on n3");
    let located = admin.resolve("kept").await.unwrap();
    assert_eq!((located.node, located.epoch), (n2, epoch));
    let after = read_until_answered(&ledger, Duration::from_secs(20)).await;
    assert_eq!((after.node, after.epoch, after.total), (n2, epoch, 11));
    assert_eq!(ledger.send(Deposit(1)).await.unwrap().total, 12);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The old node hands the ledger over (its mailbox handled, a final
/// snapshot on PostgreSQL, stopped), but what it sends to the head is lost
/// (one way: the head's request arrived), so its confirmation never comes:
/// the move is refused and nothing starts on the target. Once the node is
/// heard again, its renewal does not report the placement running, so the
/// head restarts it there under a new epoch: every acknowledged deposit is
/// in it, and one incarnation runs.
#[actix_rt::test]
async fn a_hand_over_whose_confirmation_is_lost_is_refused_and_the_actor_returns_with_every_deposit(
) {
    let Some(pg) = crate::postgres::start("migrate-lost") else {
        return;
    };
    let dir = scratch("migrate-lost");
    let (nodes, faults) = faulty(&dir).await;
    for n in &nodes {
        let store = swarm::durable::Postgres::new(&pg.url(), None, 2).unwrap();
        n.node.set_journal_store(Arc::new(store));
    }
    let admin = nodes[0].node.control().unwrap().clone();
    let (n1, n2, n3) = (nodes[0].node.id(), nodes[1].node.id(), nodes[2].node.id());
    let ledger = ledger_on(&admin, "unconfirmed", n2).await;
    let mut acknowledged = 0;
    for amount in 1..=20 {
        acknowledged = ledger.send(Deposit(amount)).await.unwrap().total;
    }
    let epoch = ledger.location().unwrap().1;
    faults[1].mute_direct(n1);
    let refused = admin.migrate("unconfirmed", n3).await;
    assert!(
        matches!(&refused, Err(ControlError::Refused { reason }) if reason.contains("did not confirm")),
        "{refused:?}"
    );
    // The hand-over itself was done: n2 runs it no more; nothing on n3.
    assert!(!runs(&nodes[1].node, "unconfirmed").await, "n2 stopped it");
    assert!(!runs(&nodes[2].node, "unconfirmed").await, "nothing on n3");
    faults[1].unblock_direct(n1);
    let after = read_until_answered(&ledger, Duration::from_secs(30)).await;
    assert_eq!(after.total, acknowledged, "every acknowledged deposit kept");
    assert!(after.epoch > epoch, "a new incarnation: {after:?}");
    assert_eq!(after.node, n2, "restarted where it was placed");
    assert!(
        !runs(&nodes[2].node, "unconfirmed").await,
        "one incarnation"
    );
    assert_eq!(
        ledger.send(Deposit(1)).await.unwrap().total,
        acknowledged + 1
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `swarm migrate NAME --to NODE --json` as the admin operator.
fn migrate_cli(cluster: &LocalCluster, name: &str, to: &str) -> (bool, serde_json::Value, String) {
    let seed = cluster.nodes[0].addr.to_string();
    let out = std::process::Command::new(exe())
        .args([
            "migrate", name, "--to", to, "--json", "--node", &seed, "--config",
        ])
        .arg(cluster.admin_config())
        .args(["--totp", &admin_code(&cluster.dir)])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let answer = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.success(), answer, stderr)
}

/// Node processes (one head, n1; two workers, n2 and n3): `swarm migrate`
/// (the target named by an id prefix) then `swarm drain` of the node it
/// moved to, while callers stream deposits from an in-process node.
#[actix_rt::test]
async fn swarm_migrate_and_swarm_drain_move_a_ledger_while_callers_see_no_error() {
    let mut cluster =
        LocalCluster::start_control(&exe(), &scratch("migrate-cli"), 1, 2, &[]).unwrap();
    cluster.remove_dir_on_drop(true);
    place_ledger(&cluster, "moved", "node:n2:soft");
    let driver = driver(&cluster).await;
    let control = driver.control().unwrap().clone();
    let ledger: Named<Ledger> = control.lookup("moved").await.unwrap();
    let id = |name: &str| cluster.nodes.iter().find(|n| n.name == name).unwrap().id;
    let (n2, n3) = (id("n2"), id("n3"));
    assert_eq!(ledger.send(Deposit(0)).await.unwrap().node, n2);
    let cluster = Arc::new(cluster);
    let callers = Callers::start(&control, "moved").await.unwrap();
    callers.after(30).await.unwrap();

    let prefix = n3.to_string()[..8].to_owned();
    let started = Instant::now();
    let (ok, answer, stderr) = tokio::task::spawn_blocking({
        let cluster = Arc::clone(&cluster);
        move || migrate_cli(&cluster, "moved", &prefix)
    })
    .await
    .unwrap();
    let migrated = (started, Instant::now());
    assert!(ok, "{stderr}");
    assert_eq!(answer["node"], n3.to_string(), "{answer}");
    assert_eq!(answer["node_name"], "n3", "{answer}");
    callers.after(30).await.unwrap();

    let started = Instant::now();
    let (ok, report, stderr) = tokio::task::spawn_blocking({
        let cluster = Arc::clone(&cluster);
        move || crate::drain::drain(&cluster, "n3", &[])
    })
    .await
    .unwrap();
    let drained = (started, Instant::now());
    assert!(ok, "{stderr}");
    assert_eq!(
        (report["left"].as_bool(), report["moved"].as_u64()),
        (Some(true), Some(1)),
        "{report}"
    );
    callers.after(30).await.unwrap();
    let streamed = callers.finish().await.unwrap();
    let sum = check_from(&streamed, &ledger, 7).await;
    assert_eq!(ledger.location().map(|l| l.0), Some(n2), "back on n2");
    eprintln!(
        "migration_pause_ms: swarm migrate {:.1}, swarm drain {:.1}; sum {sum}",
        ms(pause(&streamed, migrated.0, migrated.1)),
        ms(pause(&streamed, drained.0, drained.1)),
    );
    driver.close().await;
}
