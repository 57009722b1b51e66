//! Tasks across real processes of the built `swarm` binary: SIGKILL the
//! worker running a long task; `swarm tasks --json` afterwards.
//! DESIGN.md, "Control plane, placement, supervision" (Tasks) and
//! "Failure model".

use std::time::Duration;

use swarm::placement::Placement;
use swarm::tasks::{ListTasks, Scheduler, TaskError, TaskState, TASKS_ACTOR};
use swarm::Node;
use swarm_cli::demo::tasks::stall;
use swarm_cli::local::LocalCluster;

use crate::util::{eventually, exe, scratch, swarm_json};

/// An in-process driver (operator identity) that offers no CPUs.
async fn task_driver(cluster: &LocalCluster) -> Node {
    let mut mesh = swarm::config::NodeFile::load(&cluster.driver_config())
        .unwrap()
        .mesh_config()
        .unwrap();
    mesh.listen = "127.0.0.1:0".parse().unwrap();
    if let Some(c) = mesh.cluster.as_mut() {
        c.resources.cpus = Some(0.0);
    }
    Node::start(mesh).await.unwrap()
}

#[actix::test]
async fn a_sigkilled_workers_task_finishes_elsewhere_or_fails_typed() {
    let mut cluster = LocalCluster::start_members(
        &exe(),
        &scratch("tasks-kill"),
        2,
        &["--workload", "demo", "--cpus", "2"],
    )
    .unwrap();
    cluster.remove_dir_on_drop(true);
    let driver = task_driver(&cluster).await;
    let t = driver.tasks().unwrap().clone();
    let seen = eventually(Duration::from_secs(20), || {
        let t = t.clone();
        async move { t.list(0).await.is_ok_and(|table| table.nodes == 3) }
    })
    .await;
    assert!(seen, "the driver sees both workers");
    let victim = cluster.nodes[0].id;
    let survivor = cluster.nodes[1].id;
    let retried = t
        .task(stall)
        .placement(Placement::Node {
            node: victim,
            hard: false,
        })
        .submit(60_000u64)
        .await
        .unwrap();
    let final_ = t
        .task(stall)
        .placement(Placement::Node {
            node: victim,
            hard: true,
        })
        .retries(0)
        .submit(60_000u64)
        .await
        .unwrap();
    let scheduler = driver.remote::<Scheduler>(victim, TASKS_ACTOR);
    let running = eventually(Duration::from_secs(10), || {
        let scheduler = scheduler.clone();
        async move {
            scheduler
                .send(ListTasks { recent: 0 })
                .await
                .is_ok_and(|t| {
                    t.rows
                        .iter()
                        .filter(|r| r.state == TaskState::Running)
                        .count()
                        == 2
                })
        }
    })
    .await;
    assert!(running, "both tasks run on the victim");
    cluster.kill(0).unwrap();
    let ran = tokio::time::timeout(Duration::from_secs(30), retried)
        .await
        .expect("the retry answers")
        .unwrap();
    assert_eq!(ran, Some(survivor));
    let e = tokio::time::timeout(Duration::from_secs(30), final_)
        .await
        .expect("the submitter never waits for ever")
        .unwrap_err();
    assert!(
        matches!(e, TaskError::NodeDied { node, attempts: 1 } if node == victim),
        "{e}"
    );
    let table = t.list(10).await.unwrap();
    assert!(table
        .rows
        .iter()
        .any(|r| r.state == TaskState::Failed
            && r.reason.as_deref().is_some_and(|w| w.contains("died"))));
    driver.shutdown();

    // The operator's view: the survivor ran one task and offers 2 CPUs.
    let config = cluster.driver_config();
    let seed = cluster.nodes[0].addr.to_string();
    let listed = swarm_json(&[
        "tasks",
        "--config",
        config.to_str().unwrap(),
        "--node",
        &seed,
        "--json",
    ]);
    let nodes = listed.as_array().expect("one entry per member");
    let own = nodes
        .iter()
        .find(|n| n["node"] == survivor.to_string())
        .expect("the survivor is listed");
    let table = &own["tasks"]["Ok"];
    assert_eq!(table["finished"], 1, "{own}");
    assert_eq!(table["total"]["cpus"], 2.0, "{own}");
}
