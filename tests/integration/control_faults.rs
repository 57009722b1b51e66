//! Fencing and partitions, in one process with a fault-injecting transport
//! (`swarm::Faults`: the direct mesh path between two nodes drops
//! everything, as a firewall would; membership's UDP still flows, so only
//! the control plane's own evidence - leases - decides).
//!
//! - A worker cut off from the head quorum stops its head-placed actors
//!   before the majority places them again; after healing exactly one
//!   incarnation runs and a stale handle re-resolves.
//! - The minority side of a head partition cannot place anything.
//! - A leader cut off from the other heads answers reads with `NoQuorum`
//!   (never a stale location) and does not call itself leader; after
//!   healing, reads answer what the majority decided.
//! - With default settings, a `Named` handle whose host is cut off reaches
//!   the new incarnation by itself, after one error for the ask that was
//!   in flight; a handle on the cut-off side hears `NoQuorum`, typed.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm::control::{Control, ControlError, Spawn};
use swarm::supervision::{Host, ListActors, HOST_ACTOR};
use swarm::{AskError, Faults, Node};
use swarm_cli::demo::{Deposit, Ledger, LedgerArgs};

use crate::util::{control_cluster, ledger_on, scratch, TestNode};

/// Cuts (or heals) the direct paths between `a` and each of `others`, both ways.
fn cut(faults: &[Arc<Faults>], nodes: &[TestNode], a: usize, others: &[usize], on: bool) {
    for &b in others {
        let (ida, idb) = (nodes[a].node.id(), nodes[b].node.id());
        if on {
            faults[a].block_direct(idb);
            faults[b].block_direct(ida);
        } else {
            faults[a].unblock_direct(idb);
            faults[b].unblock_direct(ida);
        }
    }
}

/// Whether `node` runs `name` (asked of its own host, locally).
pub(crate) async fn runs(node: &Node, name: &str) -> bool {
    let host = node.remote::<Host>(node.id(), HOST_ACTOR);
    host.send(ListActors)
        .await
        .is_ok_and(|rows| rows.iter().any(|r| r.name == name && r.state == "running"))
}

/// A cluster of 3 heads and 2 workers, each with its own fault switch,
/// with 1 s leases.
async fn faulty(dir: &std::path::Path) -> (Vec<TestNode>, Vec<Arc<Faults>>) {
    let mut faults = Vec::new();
    let (_ca, nodes) = control_cluster(dir, 3, 2, |_, c| {
        let f = Arc::new(Faults::default());
        c.faults = Some(f.clone());
        faults.push(f);
        if let Some(head) = c.head.as_mut() {
            head.lease = Duration::from_secs(1);
        }
    })
    .await;
    (nodes, faults)
}

#[actix_rt::test]
async fn a_worker_cut_off_from_the_heads_stops_its_actors_before_they_run_elsewhere() {
    let dir = scratch("control-fence");
    let (nodes, faults) = faulty(&dir).await;
    let worker = &nodes[3].node;
    let control = nodes[4].node.control().unwrap().clone();
    let (at, epoch) = ledger_on(&control, "ledger", worker.id())
        .await
        .location()
        .unwrap();
    assert_eq!(at, worker.id());
    // A handle made on the worker itself, which will go stale.
    let stale = worker
        .control()
        .unwrap()
        .lookup::<Ledger>("ledger")
        .await
        .unwrap();
    assert_eq!(stale.send(Deposit(1)).await.unwrap().epoch, epoch);
    let handle = control.lookup::<Ledger>("ledger").await.unwrap();

    cut(&faults, &nodes, 3, &[0, 1, 2], true);
    let cut_at = Instant::now();
    // Watched on its own, every 5 ms: an ask below can take longer than the
    // 200 ms between the worker's stop and the leader's move, and must not
    // hide the order of the two.
    let stopped = Rc::new(Cell::new(None));
    let watch = {
        let (worker, stopped) = (worker.clone(), stopped.clone());
        actix_rt::spawn(async move {
            let mut poll = tokio::time::interval(Duration::from_millis(5));
            loop {
                poll.tick().await;
                if !runs(&worker, "ledger").await {
                    stopped.set(Some(cut_at.elapsed()));
                    break;
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut poll = tokio::time::interval(Duration::from_millis(10));
    let moved = loop {
        poll.tick().await;
        if let Ok(balance) = handle.send(Deposit(1)).await {
            if balance.node != worker.id() {
                break balance;
            }
        }
        assert!(Instant::now() < deadline, "the actor never moved");
    };
    let moved_at = cut_at.elapsed();
    let stopped_at = stopped
        .get()
        .expect("the cut-off worker stopped it before it moved");
    watch.abort();
    eprintln!("fenced: stopped after {stopped_at:?}, answered elsewhere after {moved_at:?}");
    assert!(stopped_at < moved_at);
    assert!(moved.epoch > epoch);

    cut(&faults, &nodes, 3, &[0, 1, 2], false);
    // After healing: one incarnation; the stale handle is told, then re-resolves.
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        poll.tick().await;
        match stale.send(Deposit(1)).await {
            Ok(balance) if balance.epoch == moved.epoch => break,
            Ok(balance) => panic!("a stale incarnation answered: {balance:?}"),
            Err(e) => assert!(Instant::now() < deadline, "never re-resolved: {e}"),
        }
    }
    let mut running = 0;
    for n in &nodes {
        running += usize::from(runs(&n.node, "ledger").await);
    }
    assert_eq!(running, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn the_minority_side_of_a_head_partition_places_nothing() {
    let dir = scratch("control-minority");
    let (nodes, faults) = faulty(&dir).await;
    let control = nodes[4].node.control().unwrap().clone();
    ledger_on(&control, "warmup", nodes[4].node.id()).await;
    // Head n1 and worker n4 on one side; heads n2, n3 and worker n5 on the other.
    for (a, others) in [(0, vec![1, 2, 4]), (3, vec![1, 2, 4])] {
        cut(&faults, &nodes, a, &others, true);
    }
    let minority = nodes[3].node.control().unwrap();
    let refused = minority
        .spawn(Spawn::<Ledger>::named("minority").args(LedgerArgs { opening: 0 }))
        .await;
    assert!(
        matches!(
            refused,
            Err(ControlError::NoQuorum { .. } | ControlError::NoHead { .. })
        ),
        "got {refused:?}"
    );
    // The majority still places.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    loop {
        poll.tick().await;
        let spawn = Spawn::<Ledger>::named("majority").args(LedgerArgs { opening: 0 });
        match control.spawn(spawn).await {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "the majority never placed: {e}"),
        }
    }
    let names: Vec<String> = control
        .placed()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert!(names.contains(&"majority".to_owned()));
    assert!(!names.contains(&"minority".to_owned()));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The index of the head whose row says it leads, once exactly one does.
pub(crate) async fn leader_of(control: &Control, nodes: &[TestNode]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    loop {
        poll.tick().await;
        let leaders: Vec<_> = control
            .head_status()
            .await
            .into_iter()
            .filter_map(|(node, row)| row.ok().filter(|r| r.role == "leader").map(|_| node))
            .collect();
        if let [leader] = leaders.as_slice() {
            return nodes.iter().position(|n| n.node.id() == *leader).unwrap();
        }
        assert!(Instant::now() < deadline, "no single head leader");
    }
}

/// What a deposed leader may answer a read.
fn refused(answer: &Result<swarm::control::Located, ControlError>) -> bool {
    matches!(
        answer,
        Err(ControlError::NoQuorum { .. } | ControlError::NotLeader { .. })
    )
}

/// DESIGN.md, "Failure model": the minority side never elects a second
/// placement supervisor; nor does a deposed one answer for the majority.
#[actix_rt::test]
async fn a_leader_cut_off_from_the_other_heads_answers_no_quorum_never_a_stale_location() {
    let dir = scratch("control-deposed");
    let (nodes, faults) = faulty(&dir).await;
    let majority = nodes[4].node.control().unwrap().clone();
    let before = ledger_on(&majority, "ledger", nodes[4].node.id())
        .await
        .location()
        .unwrap();
    let leader = leader_of(&majority, &nodes).await;
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    // The client on worker n4 asks the leader (its hint follows the head
    // that answered).
    let client = nodes[3].node.control().unwrap().clone();
    assert_eq!(client.resolve("ledger").await.unwrap().node, before.0);

    // The leader and n4 on one side; the other heads and n5 on the other.
    let mut far = others.clone();
    far.push(4);
    cut(&faults, &nodes, leader, &far, true);
    cut(&faults, &nodes, 3, &far, true);
    // Within the read lease of its last quorum round (one election
    // timeout, before any other head can lead) it may still answer what
    // it knew; then it refuses.
    let cut_at = Instant::now();
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        poll.tick().await;
        match client.resolve("ledger").await {
            answer if refused(&answer) => break,
            Ok(at) => assert_eq!(at.node, before.0),
            other => panic!("the cut-off leader answered {other:?}"),
        }
        let took = cut_at.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "still answering after {took:?}"
        );
    }

    // The majority elects a leader of its own, stops the ledger and
    // places another actor.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        poll.tick().await;
        match majority.stop("ledger").await {
            Ok(()) | Err(ControlError::NoSuchName { .. }) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "the majority never stopped it: {e}"
            ),
        }
    }
    let fresh = loop {
        poll.tick().await;
        let spawn = Spawn::<Ledger>::named("fresh").args(LedgerArgs { opening: 0 });
        match majority.spawn(spawn).await {
            Ok(named) => break named.location().unwrap(),
            Err(e) => assert!(Instant::now() < deadline, "the majority never placed: {e}"),
        }
    };
    // The deposed leader still answers n4, and never from its stale state.
    for name in ["ledger", "fresh"] {
        let answer = client.resolve(name).await;
        assert!(
            refused(&answer),
            "the deposed leader answered {answer:?} for {name}"
        );
    }
    let placed = client.placed().await;
    assert!(
        matches!(
            placed,
            Err(ControlError::NoQuorum { .. } | ControlError::NotLeader { .. })
        ),
        "the deposed leader listed {placed:?}"
    );
    let rows = client.head_status().await;
    let deposed = nodes[leader].node.id();
    let row = rows
        .iter()
        .find_map(|(node, row)| row.as_ref().ok().filter(|_| *node == deposed))
        .expect("the deposed leader answers n4");
    assert_ne!(row.role, "leader", "{row:?}");
    assert_eq!(row.leader, None, "{row:?}");

    // After healing, n4 reads what the majority decided.
    cut(&faults, &nodes, leader, &far, false);
    cut(&faults, &nodes, 3, &far, false);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        poll.tick().await;
        match client.resolve("fresh").await {
            Ok(at) => {
                assert_eq!((at.node, at.epoch), fresh);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "reads never came back: {e}"),
        }
    }
    let gone = client.resolve("ledger").await;
    assert!(
        matches!(gone, Err(ControlError::NoSuchName { .. })),
        "got {gone:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// DESIGN.md, "Control plane, placement, supervision" (fencing: the leader
/// moves a cut-off node's actors after `lease x 1.1 + 100 ms`) and
/// "Failure model" (`ask` tells the caller of every failure, a message is
/// delivered at most once): with the default lease, heartbeat and ask
/// timeout, a handle whose host is cut off (not crashed) fails the ask in
/// flight with `LinkDown` (the heartbeat notices the cut before the ask
/// times out), and its next ask is answered by the new incarnation; the
/// caller does nothing but ask. On the cut-off worker, a handle hears
/// `NoQuorum`, never a stale `NoSuchActor`.
#[actix_rt::test]
async fn a_named_handle_whose_host_is_cut_off_reaches_the_new_incarnation_by_itself() {
    let dir = scratch("control-handle-cut");
    let mut faults = Vec::new();
    // Default lease (3 s) and mesh timers; only the fault switch is added.
    let (_ca, nodes) = control_cluster(&dir, 3, 2, |_, c| {
        let f = Arc::new(Faults::default());
        c.faults = Some(f.clone());
        faults.push(f);
    })
    .await;
    let worker = &nodes[3].node;
    let control = nodes[4].node.control().unwrap().clone();
    let handle = ledger_on(&control, "ledger", worker.id()).await;
    let (_, epoch) = handle.location().unwrap();
    assert_eq!(handle.send(Deposit(1)).await.unwrap().node, worker.id());
    // A handle on the worker that will be cut off.
    let inside = worker
        .control()
        .unwrap()
        .lookup::<Ledger>("ledger")
        .await
        .unwrap();

    cut(&faults, &nodes, 3, &[0, 1, 2, 4], true);
    let cut_at = Instant::now();
    let mut errors = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let moved = loop {
        match handle.send(Deposit(1)).await {
            Ok(balance) if balance.node != worker.id() => break balance,
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
        assert!(Instant::now() < deadline, "never moved: {errors:?}");
    };
    eprintln!(
        "cut to the new incarnation through the handle: {:?}, errors {errors:?}",
        cut_at.elapsed()
    );
    assert!(moved.epoch > epoch);
    // One ask was in flight on the dead link (or went on it before the
    // heartbeat closed it): it may have run, so it fails; nothing else does.
    assert!(
        matches!(errors.as_slice(), [] | [AskError::LinkDown { .. }]),
        "the caller saw {errors:?}"
    );

    // The cut-off side has no head at all: the handle says so, typed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match inside.send(Deposit(1)).await {
            Err(AskError::NoQuorum { name, .. }) => {
                assert_eq!(name, "ledger");
                break;
            }
            // Its own incarnation, until its lease ran out.
            Ok(balance) => assert_eq!(balance.epoch, epoch),
            Err(e) => panic!("the cut-off side got {e:?}, not NoQuorum"),
        }
        assert!(Instant::now() < deadline, "never told NoQuorum");
    }
    cut(&faults, &nodes, 3, &[0, 1, 2, 4], false);
    let _ = std::fs::remove_dir_all(&dir);
}

/// DESIGN.md, "Failure model": the minority side never elects a second
/// placement supervisor, and `ask` tells the caller of every failure. A
/// caller on the deposed leader's side resolving through its handle gets
/// `NoQuorum`, typed, never `NoSuchActor` or a stale location.
#[actix_rt::test]
async fn a_handle_on_the_side_without_quorum_gets_no_quorum_typed() {
    let dir = scratch("control-handle-minority");
    let (nodes, faults) = faulty(&dir).await;
    let majority = nodes[4].node.control().unwrap().clone();
    ledger_on(&majority, "ledger", nodes[4].node.id()).await;
    let leader = leader_of(&majority, &nodes).await;
    let mut far: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    far.push(4);
    // n4 asks the leader (its hint follows the head that answered).
    let client = nodes[3].node.control().unwrap().clone();
    let handle = client.lookup::<Ledger>("ledger").await.unwrap();
    assert_eq!(
        handle.send(Deposit(1)).await.unwrap().node,
        nodes[4].node.id()
    );

    cut(&faults, &nodes, leader, &far, true);
    cut(&faults, &nodes, 3, &far, true);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let asked = Instant::now();
        match handle.send(Deposit(1)).await {
            Err(AskError::NoQuorum { name, reason }) => {
                eprintln!("NoQuorum after {:?}: {reason}", asked.elapsed());
                assert_eq!(name, "ledger");
                break;
            }
            // The ask in flight at the cut, or before the handle learned.
            Err(e @ (AskError::LinkDown { .. } | AskError::Unreachable { .. })) => seen.push(e),
            other => panic!("the side without quorum got {other:?} (before: {seen:?})"),
        }
        assert!(Instant::now() < deadline, "never told NoQuorum: {seen:?}");
    }
    // And again at once, while the partition lasts.
    let again = handle.send(Deposit(1)).await;
    assert!(
        matches!(again, Err(AskError::NoQuorum { .. })),
        "then got {again:?}"
    );
    cut(&faults, &nodes, leader, &far, false);
    cut(&faults, &nodes, 3, &far, false);
    let _ = std::fs::remove_dir_all(&dir);
}
