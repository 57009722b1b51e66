//! Ray-style tasks across real nodes in one process (each on its own
//! arbiter, real TCP and Noise): local-first, spill, GPUs and custom
//! resources, infeasible requests, errors and retries, cancellation, kept
//! results passed by reference node to node, batches.
//! DESIGN.md, "Control plane, placement, supervision" (Tasks).

use std::time::{Duration, Instant};

use swarm::credentials::Throwaway;
use swarm::placement::Placement;
use swarm::protocol::NodeId;
use swarm::tasks::{TaskError, TaskState, Tasks};
use swarm::ResourceOverrides;
use swarm_cli::demo::tasks::{
    add, blob, boom, count_bytes, fail, flaky, gpu_ids, nap, noop, spin, square, where_am_i,
};

use crate::util::{config, eventually, fast_gossip, start, TestNode};

// Registered by nobody.
swarm::task!("test.unknown", fn unknown() {});

/// What a test node offers tasks.
#[derive(Clone, Default)]
pub struct Offer {
    pub cpus: f64,
    pub gpus: u32,
    pub custom: Vec<(String, f64)>,
}

pub fn cpus(cpus: f64) -> Offer {
    Offer {
        cpus,
        ..Offer::default()
    }
}

/// Nodes n1.. with these offers, n2.. joining through n1, each seeing
/// every other as a place for tasks.
pub async fn task_cluster(offers: &[Offer]) -> (Throwaway, Vec<TestNode>) {
    let ca = Throwaway::new("test");
    let mut nodes: Vec<TestNode> = Vec::new();
    for (i, offer) in offers.iter().enumerate() {
        let mut c = config(&ca, &format!("n{}", i + 1));
        let seeds = nodes
            .first()
            .map(|s| s.node.listen_addr())
            .into_iter()
            .collect();
        let mut gossip = fast_gossip(seeds);
        gossip.resources = ResourceOverrides {
            cpus: Some(offer.cpus),
            gpus: Some(offer.gpus),
            memory: None,
            custom: offer.custom.clone(),
        };
        c.cluster = Some(gossip);
        nodes.push(start(c).await);
    }
    for n in &nodes {
        let tasks = n.node.tasks().unwrap().clone();
        let all = offers.len();
        let seen = eventually(Duration::from_secs(10), || {
            let tasks = tasks.clone();
            async move { tasks.list(0).await.is_ok_and(|t| t.nodes == all) }
        })
        .await;
        assert!(seen, "every node sees {all} task nodes");
    }
    (ca, nodes)
}

fn tasks(n: &TestNode) -> Tasks {
    n.node.tasks().unwrap().clone()
}

fn id(n: &TestNode) -> Option<NodeId> {
    Some(n.node.id())
}

#[actix::test]
async fn a_task_runs_where_it_was_submitted_while_that_node_has_room() {
    let (_ca, nodes) = task_cluster(&[cpus(2.0), cpus(2.0), cpus(2.0)]).await;
    for n in &nodes {
        let ran = tasks(n)
            .submit(where_am_i, ())
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(ran, id(n));
    }
    let h = tasks(&nodes[0]).submit(square, 7u64).await.unwrap();
    assert_eq!(h.await.unwrap(), 49);
    let sum = tasks(&nodes[0]).submit(add, (2u64, 3u64)).await.unwrap();
    assert_eq!(sum.await.unwrap(), 5);
}

#[actix::test]
async fn a_node_without_room_spills_and_a_driver_without_cpus_runs_nothing() {
    let (_ca, nodes) = task_cluster(&[cpus(0.0), cpus(1.0), cpus(1.0)]).await;
    let driver = tasks(&nodes[0]);
    let mut handles = Vec::new();
    for _ in 0..4 {
        handles.push(driver.submit(spin, 150u64).await.unwrap());
    }
    let mut ran = Vec::new();
    for h in handles {
        ran.push(h.await.unwrap());
    }
    assert!(
        !ran.contains(&id(&nodes[0])),
        "the driver offers no CPUs: {ran:?}"
    );
    assert!(
        ran.contains(&id(&nodes[1])) && ran.contains(&id(&nodes[2])),
        "{ran:?}"
    );
    // A busy node spills what it cannot run to a node with room.
    let worker = tasks(&nodes[1]);
    let long = worker.submit(spin, 400u64).await.unwrap();
    let other = worker.submit(where_am_i, ()).await.unwrap().await.unwrap();
    assert_eq!(other, id(&nodes[2]));
    assert_eq!(long.await.unwrap(), id(&nodes[1]));
}

#[actix::test]
async fn gpu_and_custom_resource_tasks_run_only_where_they_are_offered() {
    let gpu = Offer {
        cpus: 2.0,
        gpus: 2,
        ..Offer::default()
    };
    let tpu = Offer {
        cpus: 2.0,
        custom: vec![("tpu".into(), 1.0)],
        ..Offer::default()
    };
    let (_ca, nodes) = task_cluster(&[cpus(2.0), gpu, tpu]).await;
    let t = tasks(&nodes[0]);
    for _ in 0..3 {
        let ids = t
            .task(gpu_ids)
            .gpus(1)
            .submit(())
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(ids.len(), 1);
        assert!(ids[0] < 2, "{ids:?}");
        let both = t
            .task(gpu_ids)
            .gpus(2)
            .submit(())
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(both.len(), 2);
        let on = t
            .task(where_am_i)
            .gpus(1)
            .submit(())
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(on, id(&nodes[1]));
        let on = t
            .task(where_am_i)
            .resource("tpu", 1.0)
            .submit(())
            .await
            .unwrap();
        assert_eq!(on.await.unwrap(), id(&nodes[2]));
    }
}

#[actix::test]
async fn a_request_no_node_can_meet_fails_at_once() {
    let (_ca, nodes) = task_cluster(&[cpus(2.0), cpus(2.0)]).await;
    let t = tasks(&nodes[0]);
    let started = Instant::now();
    let e = t.task(square).gpus(1).submit(3u64).await.unwrap_err();
    assert!(matches!(e, TaskError::Unschedulable { .. }), "{e}");
    let e = t.task(square).cpus(64.0).submit(3u64).await.unwrap_err();
    assert!(matches!(e, TaskError::Unschedulable { .. }), "{e}");
    let e = t
        .task(square)
        .resource("tpu", 1.0)
        .submit(3u64)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("tpu"), "{e}");
    let e = t.task(square).cpus(-1.0).submit(3u64).await.unwrap_err();
    assert!(matches!(e, TaskError::Unschedulable { .. }), "{e}");
    let e = t
        .task(square)
        .resource("tpu", f64::NAN)
        .submit(3u64)
        .await
        .unwrap_err();
    assert!(matches!(e, TaskError::Unschedulable { .. }), "{e}");
    let e = t.submit(unknown, ()).await.unwrap().await.unwrap_err();
    assert!(matches!(e, TaskError::Unregistered { .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[actix::test]
async fn failures_are_typed_and_retry_on_error_retries_them() {
    let (_ca, nodes) = task_cluster(&[cpus(2.0), cpus(2.0)]).await;
    let t = tasks(&nodes[0]);
    let e = t
        .submit(fail, "no".to_owned())
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(
        e,
        TaskError::Failed {
            message: "no".into()
        }
    );
    let e = t.submit(boom, ()).await.unwrap().await.unwrap_err();
    assert!(
        matches!(e, TaskError::Panicked { ref message } if message == "boom"),
        "{e}"
    );
    // Without retry_on_error the task's own error is final.
    let e = t.submit(flaky, 2u32).await.unwrap().await.unwrap_err();
    assert!(matches!(e, TaskError::Failed { .. }), "{e}");
    let ok = t
        .task(flaky)
        .retry_on_error(true)
        .retries(3)
        .submit(2u32)
        .await
        .unwrap();
    assert_eq!(ok.await.unwrap(), 2, "the third run succeeds");
    let e = t
        .task(flaky)
        .retry_on_error(true)
        .retries(1)
        .submit(5u32)
        .await
        .unwrap();
    assert!(matches!(e.await, Err(TaskError::Failed { .. })));
}

#[actix::test]
async fn cancelled_tasks_never_run_or_stop_and_free_their_resources() {
    let (_ca, nodes) = task_cluster(&[cpus(0.0), cpus(1.0)]).await;
    let t = tasks(&nodes[0]);
    let running = t.submit(spin, 30_000u64).await.unwrap();
    let waiting = t.submit(spin, 30_000u64).await.unwrap();
    let worker = tasks(&nodes[1]);
    let busy = eventually(Duration::from_secs(5), || {
        let worker = worker.clone();
        async move {
            worker
                .list(0)
                .await
                .is_ok_and(|table| table.rows.iter().any(|r| r.state == TaskState::Running))
        }
    })
    .await;
    assert!(busy, "the first task runs");
    let started = Instant::now();
    waiting.cancel().await.unwrap();
    assert_eq!(waiting.await.unwrap_err(), TaskError::Cancelled);
    running.cancel().await.unwrap();
    assert_eq!(running.await.unwrap_err(), TaskError::Cancelled);
    // The running one saw its cancellation: the CPU is free again, long
    // before its 30 s, and nothing is queued.
    let freed = eventually(Duration::from_secs(5), || {
        let worker = worker.clone();
        async move {
            worker.list(10).await.is_ok_and(|table| {
                table.free.cpus >= 1.0
                    && !table
                        .rows
                        .iter()
                        .any(|r| matches!(r.state, TaskState::Running | TaskState::Queued))
            })
        }
    })
    .await;
    assert!(freed, "the cancelled tasks released the worker");
    assert!(started.elapsed() < Duration::from_secs(10));
    // An async task is dropped at once.
    let napping = t.submit(nap, 30_000u64).await.unwrap();
    let asleep = eventually(Duration::from_secs(5), || {
        let worker = worker.clone();
        async move { worker.list(0).await.is_ok_and(|t| t.free.cpus < 1.0) }
    })
    .await;
    assert!(asleep);
    napping.cancel().await.unwrap();
    assert_eq!(napping.await.unwrap_err(), TaskError::Cancelled);
    let freed = eventually(Duration::from_secs(5), || {
        let worker = worker.clone();
        async move { worker.list(0).await.is_ok_and(|t| t.free.cpus >= 1.0) }
    })
    .await;
    assert!(freed);
    // The worker still runs new work.
    assert_eq!(t.submit(square, 4u64).await.unwrap().await.unwrap(), 16);
}

#[actix::test]
async fn a_kept_result_travels_from_its_maker_to_its_consumer_directly_and_is_freed() {
    let (_ca, nodes) = task_cluster(&[cpus(0.0), cpus(1.0), cpus(1.0)]).await;
    let (driver, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let t = tasks(driver);
    let on = |n: &TestNode| Placement::Node {
        node: n.node.id(),
        hard: true,
    };
    const SIZE: u64 = 4 << 20;
    let bytes_in = |at: &TestNode, from: &TestNode| {
        at.node
            .peers()
            .iter()
            .find(|p| p.id == from.node.id())
            .map_or(0, |p| p.bytes_in)
    };
    let before_c = bytes_in(c, b);
    let before_driver = bytes_in(driver, b) + bytes_in(driver, c);
    let r = t
        .task(blob)
        .placement(on(b))
        .keep()
        .submit(SIZE)
        .await
        .unwrap();
    let (holder, size) = r.ready().await.unwrap();
    assert_eq!(holder, b.node.id());
    assert!(size >= SIZE);
    let (len, sum, ran) = t
        .task(count_bytes)
        .placement(on(c))
        .submit(&r)
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(len, SIZE);
    let expected: u64 = (0..SIZE).map(|i| i % 251).sum();
    assert_eq!(sum, expected);
    assert_eq!(ran, id(c));
    let moved_to_c = bytes_in(c, b) - before_c;
    let through_driver = bytes_in(driver, b) + bytes_in(driver, c) - before_driver;
    assert!(moved_to_c >= SIZE, "C read {moved_to_c} bytes from B");
    assert!(
        through_driver < SIZE / 8,
        "the driver carried {through_driver} bytes"
    );
    // Without a pin the consumer goes where the value is.
    let (_, _, ran) = t
        .submit(count_bytes, r.clone())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ran, id(b));
    // The driver can read it too.
    let value = r.get().await.unwrap();
    assert_eq!(value.len() as u64, SIZE);
    // Dropping the last handle frees it on B.
    let held = tasks(b).list(0).await.unwrap().objects;
    assert_eq!(held.0, 1);
    drop(r);
    let freed = eventually(Duration::from_secs(5), || {
        let b = tasks(b);
        async move { b.list(0).await.is_ok_and(|t| t.objects == (0, 0)) }
    })
    .await;
    assert!(freed, "the value was freed on B");
}

#[actix::test]
async fn a_task_whose_node_dies_runs_again_elsewhere_or_fails_typed() {
    let (_ca, mut nodes) = task_cluster(&[cpus(0.0), cpus(2.0), cpus(1.0)]).await;
    let t = tasks(&nodes[0]);
    let doomed = nodes[1].node.id();
    let pinned = Placement::Node {
        node: doomed,
        hard: false,
    };
    let retried = t
        .task(spin)
        .placement(pinned)
        .submit(1_500u64)
        .await
        .unwrap();
    let final_ = t
        .task(spin)
        .placement(Placement::Node {
            node: doomed,
            hard: true,
        })
        .retries(0)
        .submit(1_500u64)
        .await
        .unwrap();
    let worker = tasks(&nodes[1]);
    let running = eventually(Duration::from_secs(5), || {
        let worker = worker.clone();
        async move {
            worker.list(0).await.is_ok_and(|t| {
                t.rows
                    .iter()
                    .filter(|r| r.state != TaskState::Finished)
                    .count()
                    >= 2
            })
        }
    })
    .await;
    assert!(running, "both tasks reached the doomed node");
    nodes.remove(1).kill();
    let within = tokio::time::timeout(Duration::from_secs(20), retried).await;
    assert_eq!(within.expect("the retry ends").unwrap(), id(&nodes[1]));
    let within = tokio::time::timeout(Duration::from_secs(20), final_).await;
    let e = within
        .expect("the submitter never waits for ever")
        .unwrap_err();
    assert!(
        matches!(e, TaskError::NodeDied { node, attempts: 1 } if node == doomed),
        "{e}"
    );
}

#[actix::test]
async fn a_batch_runs_across_nodes_and_comes_back_in_order() {
    let (_ca, nodes) = task_cluster(&[cpus(0.0), cpus(2.0), cpus(2.0)]).await;
    let t = tasks(&nodes[0]);
    let all = t
        .submit_many(square, 0..20_000u64)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 20_000);
    assert!(all
        .iter()
        .enumerate()
        .all(|(i, v)| *v == (i as u64) * (i as u64)));
    let mut stream = t.submit_many(noop, (0..5_000).map(|_| ())).await.unwrap();
    let mut seen = vec![false; 5_000];
    while let Some((i, r)) = stream.next_completed().await {
        r.unwrap();
        assert!(!seen[i], "index {i} twice");
        seen[i] = true;
    }
    assert!(seen.iter().all(|s| *s));
    for n in &nodes[1..] {
        let table = tasks(n).list(0).await.unwrap();
        assert!(
            table.finished > 1_000,
            "both workers ran a share: {}",
            table.finished
        );
    }
}

/// Resident memory of this process, bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Run alone in a child process by the test below (the process's memory
/// must not include other tests running beside it).
#[actix::test]
#[ignore = "run by a_million_tasks_submitted_faster_than_they_run_hold_bounded_memory"]
async fn child_million_tasks() {
    let (_ca, nodes) = task_cluster(&[cpus(0.0), cpus(1.0)]).await;
    let t = tasks(&nodes[0]);
    const N: usize = 1_000_000;
    // Warm up allocator pools and links.
    t.submit_many(noop, (0..20_000).map(|_| ()))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let before = rss();
    let mut peak = before;
    let started = Instant::now();
    let mut stream = t.submit_many(noop, (0..N).map(|_| ())).await.unwrap();
    let mut done = 0;
    while let Some((_, r)) = stream.next_completed().await {
        r.unwrap();
        done += 1;
        if done % 50_000 == 0 {
            peak = peak.max(rss());
            // The driver never holds more than a window of tasks.
            let owned = t.list(0).await.unwrap();
            assert!(owned.submitted as usize <= done + 40_000);
        }
    }
    assert_eq!(done, N);
    let grew = peak.saturating_sub(before);
    println!("MILLION {} {:.1}", grew, started.elapsed().as_secs_f64());
}

#[test]
fn a_million_tasks_submitted_faster_than_they_run_hold_bounded_memory() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tasks::child_million_tasks",
            "--ignored",
            "--nocapture",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("MILLION "))
        .unwrap_or_else(|| panic!("the child did not finish: {stdout}"));
    let mut fields = line.split(' ');
    let grew: u64 = fields.next().unwrap().parse().unwrap();
    eprintln!(
        "1,000,000 tasks in {} s; resident memory grew {} KiB at most",
        fields.next().unwrap(),
        grew / 1024
    );
    // Unbounded, a million queued tasks would hold hundreds of MiB.
    assert!(grew < 64 << 20, "memory grew by {grew} bytes");
}

#[actix::test]
async fn a_task_that_must_wait_is_listed_pending_with_the_reason() {
    let (_ca, nodes) = task_cluster(&[cpus(0.0), cpus(1.0)]).await;
    let t = tasks(&nodes[0]);
    let worker = tasks(&nodes[1]);
    let running = t.submit(spin, 30_000u64).await.unwrap();
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(t.submit(spin, 10u64).await.unwrap());
    }
    // Beyond what the worker queues, the rest wait on their owner.
    let visible = eventually(Duration::from_secs(5), || {
        let (t, worker) = (t.clone(), worker.clone());
        async move {
            let owner = t.list(0).await.unwrap();
            let here = worker.list(0).await.unwrap();
            let pending = owner.rows.iter().any(|r| {
                r.state == TaskState::Pending
                    && r.reason
                        .as_deref()
                        .is_some_and(|w| w.contains("1 CPUs (0 free) on one"))
            });
            let queued = here.rows.iter().any(|r| {
                r.state == TaskState::Queued
                    && r.reason
                        .as_deref()
                        .is_some_and(|w| w.contains("1 CPUs (0 free) here"))
            });
            pending && queued
        }
    })
    .await;
    assert!(
        visible,
        "pending and queued tasks say what they wait for: {:?} / {:?}",
        t.list(10).await.unwrap().rows,
        worker.list(10).await.unwrap()
    );
    running.cancel().await.unwrap();
    for h in waiting {
        assert!(h.await.unwrap().is_some());
    }
}
