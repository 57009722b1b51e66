//! Ray-style tasks in one process: a driver that offers no CPUs and two
//! workers (2 CPUs each, one with a GPU), each node on its own thread.
//! Tasks spill from the driver to the workers; a GPU task learns its GPU;
//! a request no node can meet fails at once; a result kept on one worker
//! is read by a task on the other; a running task is cancelled; a batch
//! comes back in order.
//!
//! Run it with:
//!
//! ```sh
//! cargo run --example tasks
//! ```

use std::time::{Duration, Instant};

use actix::prelude::*;
use swarm::credentials::Throwaway;
use swarm::placement::Placement;
use swarm::tasks::{context, ByteBuf, Bytes, TaskError};
use swarm::{ClusterConfig, MeshConfig, Node};

// Tasks: plain functions, declared once. The tag names them on the wire.
swarm::task!(
    fn square(x: u64) -> u64 {
        x * x
    }
);

swarm::task!(
    /// Where it ran and which GPUs it was given.
    fn gpu_job() -> (String, Vec<u32>) {
        let ctx = context().expect("runs as a task");
        (ctx.node().short(), ctx.gpu_ids().to_vec())
    }
);

swarm::task!(
    /// `mb` MiB of data, to keep where it is made (`ByteBuf`: it travels
    /// as one byte string, and `Bytes` reads it where it lands).
    fn make(mb: u64) -> ByteBuf {
        ByteBuf::from(vec![7; (mb << 20) as usize])
    }
);

swarm::task!(
    /// Sums bytes it reads where they arrived, without a copy.
    fn checksum(data: Bytes) -> (u64, String) {
        let sum = data.iter().map(|b| u64::from(*b)).sum();
        (sum, context().map(|c| c.node().short()).unwrap_or_default())
    }
);

swarm::task!(
    /// Works until cancelled (checking every 10 ms).
    fn patient() -> Result<(), String> {
        while !context().is_some_and(|c| c.is_cancelled()) {
            std::thread::sleep(Duration::from_millis(10));
        }
        Err("cancelled".to_owned())
    }
);

#[actix::main]
async fn main() -> anyhow::Result<()> {
    // Three nodes of one throw-away cluster, n2 and n3 joining through n1.
    let ca = Throwaway::new("example");
    let mut threads = Vec::new();
    let mut nodes: Vec<Node> = Vec::new();
    for (name, cpus, gpus) in [("driver", 0.0, 0), ("w1", 2.0, 0), ("w2", 2.0, 1)] {
        let mut config = MeshConfig::new("127.0.0.1:0".parse()?, ca.node(name, &["worker"]));
        let mut cluster = ClusterConfig {
            seeds: nodes.first().map(Node::listen_addr).into_iter().collect(),
            ..ClusterConfig::default()
        };
        cluster.resources.cpus = Some(cpus);
        cluster.resources.gpus = Some(gpus);
        config.cluster = Some(cluster);
        let thread = Arbiter::new();
        let node = Node::start_on(&thread.handle(), config).await?;
        // Every node that runs them registers them (the driver runs none).
        let tasks = node.tasks().expect("membership");
        for registered in [
            tasks.register(square),
            tasks.register(gpu_job),
            tasks.register(make),
            tasks.register(checksum),
            tasks.register(patient),
        ] {
            assert!(registered);
        }
        println!(
            "{name} started on {} ({cpus} CPUs, {gpus} GPUs)",
            node.listen_addr()
        );
        nodes.push(node);
        threads.push(thread);
    }
    let tasks = nodes[0].tasks().expect("membership").clone();
    let (w1, w2) = (nodes[1].id(), nodes[2].id());

    // Wait until membership has told the driver about both workers.
    nodes[0]
        .cluster()
        .expect("membership")
        .wait_for_members(3, Duration::from_secs(10))
        .await?;

    // 1. A task, with the defaults: 1 CPU (the driver has none: it spills).
    println!("square(7) = {}", tasks.submit(square, 7u64).await?.await?);

    // 2. A GPU task runs where the GPU is and learns which one it has.
    let (node, gpus) = tasks.task(gpu_job).gpus(1).submit(()).await?.await?;
    println!("gpu_job ran on {node} with GPUs {gpus:?}");

    // 3. No node could ever run it: refused at once, not a silent wait.
    match tasks.task(square).gpus(4).submit(1u64).await {
        Err(e @ TaskError::Unschedulable { .. }) => println!("4 GPUs: {e}"),
        other => anyhow::bail!("expected Unschedulable, got {other:?}"),
    }

    // 4. A result kept on w1, read by a task pinned to w2: fetched from w1
    //    directly, never through the driver.
    let kept = tasks
        .task(make)
        .placement(Placement::Node {
            node: w1,
            hard: true,
        })
        .keep()
        .submit(8u64)
        .await?;
    let started = Instant::now();
    let (sum, at) = tasks
        .task(checksum)
        .placement(Placement::Node {
            node: w2,
            hard: true,
        })
        .submit(&kept)
        .await?
        .await?;
    println!(
        "8 MiB kept on w1, summed on {at} in {:?}: {sum}",
        started.elapsed()
    );
    drop(kept); // the last handle: w1 frees it

    // 5. Cancel a running task: it sees it through its context.
    let running = tasks.submit(patient, ()).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    running.cancel().await?;
    println!("cancelled: {:?}", running.await);

    // 6. A batch: submitted as it is consumed, results in order.
    let started = Instant::now();
    let all = tasks
        .submit_many(square, 0..50_000u64)
        .await?
        .collect()
        .await?;
    println!(
        "50,000 squares in {:?}; the last is {}",
        started.elapsed(),
        all[49_999]
    );
    System::current().stop();
    Ok(())
}
