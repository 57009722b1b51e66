//! `swarm demo`: the main job. Starts a local cluster of node processes
//! with a throw-away CA, runs the demo workload across it from an
//! in-process driver node, prints the results, and exits 0 only if every
//! result is right.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use swarm::config::NodeFile;
use swarm::Node;
use swarm_cli::demo::{Add, Adder, Bump, Count, Counter, CounterState, Forward, Relay};
use swarm_cli::local::LocalCluster;

pub(crate) fn run(n: usize, keep: Option<PathBuf>) -> Result<()> {
    ensure!(n >= 2, "the demo needs at least 2 nodes");
    let dir = keep
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("swarm-demo-{}", std::process::id())));
    let exe = std::env::current_exe().context("cannot find the swarm binary")?;
    let started = Instant::now();
    println!(
        "starting {n} node processes on 127.0.0.1 (CA, certificates and configs in {})",
        dir.display()
    );
    let mut cluster = LocalCluster::start(
        &exe,
        &dir,
        n,
        &["--workload", "demo", "--service", "greeter"],
    )?;
    cluster.remove_dir_on_drop(keep.is_none());
    for node in &cluster.nodes {
        println!(
            "  {} pid {:>6} listening on {} id {}",
            node.name,
            node.child.id(),
            node.addr,
            node.id.short()
        );
    }
    let mut mesh = NodeFile::load(&cluster.driver_config())?.mesh_config()?;
    mesh.listen = "127.0.0.1:0".parse()?;
    let nodes: Vec<(String, swarm::NodeId, std::net::SocketAddr)> = cluster
        .nodes
        .iter()
        .map(|c| (c.name.clone(), c.id, c.addr))
        .collect();
    let result = actix::System::new().block_on(async move {
        let driver = Node::start(mesh).await?;
        let outcome = workload(&driver, &nodes).await;
        driver.shutdown();
        outcome
    });
    match &result {
        Ok(()) => println!(
            "demo finished in {:.2} s: all results correct",
            started.elapsed().as_secs_f64()
        ),
        Err(e) => eprintln!("demo failed: {e:#}"),
    }
    drop(cluster);
    result
}

async fn workload(
    driver: &Node,
    nodes: &[(String, swarm::NodeId, std::net::SocketAddr)],
) -> Result<()> {
    for (name, id, addr) in nodes {
        let peer = driver
            .connect(*addr)
            .await
            .with_context(|| format!("cannot reach {name}"))?;
        ensure!(
            peer.id == *id,
            "{addr} answered as {} instead of {name}",
            peer.name
        );
    }
    println!("driver connected to every node through authenticated Noise links");

    // 1. Each node's relay asks the adder on the next node: actors on
    //    different nodes asking each other.
    println!("\nrelays asking adders on other nodes:");
    for (i, (name, id, _)) in nodes.iter().enumerate() {
        let (next_name, next_id, _) = &nodes[(i + 1) % nodes.len()];
        let relay = driver.remote::<Relay>(*id, "relay");
        let (a, b) = (10 * (i as u64 + 1), 7);
        let t = Instant::now();
        let (sum, via) = relay
            .send(Forward {
                node: *next_id,
                add: Add { a, b },
            })
            .await?
            .map_err(anyhow::Error::msg)?;
        ensure!(
            sum == a + b && via == *next_name,
            "wrong answer {sum} via {via}"
        );
        println!(
            "  {name}.relay -> {next_name}.adder: {a} + {b} = {sum}  ({:.0} us round trip through two links)",
            t.elapsed().as_secs_f64() * 1e6
        );
    }

    // 2. A distributed sum of squares, spread over every node's adder.
    let adders: Vec<_> = nodes
        .iter()
        .map(|(_, id, _)| driver.remote::<Adder>(*id, "adder"))
        .collect();
    let t = Instant::now();
    let mut asks = Vec::new();
    for k in 1..=300u64 {
        let adder = adders[(k as usize) % adders.len()].clone();
        asks.push(actix_rt::spawn(async move {
            adder.send(Add { a: k * k, b: 0 }).await
        }));
    }
    let mut total = 0u64;
    for ask in asks {
        total += ask.await??;
    }
    let expected: u64 = (1..=300u64).map(|k| k * k).sum();
    ensure!(total == expected, "sum of squares {total} != {expected}");
    println!(
        "\nsum of squares 1..300 = {total}, 300 concurrent asks over {} nodes in {:.1} ms",
        nodes.len(),
        t.elapsed().as_secs_f64() * 1e3
    );

    // 3. Ordered one-way messages.
    let counter = driver.remote::<Counter>(nodes[1].1, "counter");
    let t = Instant::now();
    const TELLS: u64 = 10_000;
    for seq in 0..TELLS {
        counter
            .tell(Bump {
                seq,
                pad: Vec::new(),
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let (received, out_of_order) = loop {
        let state = counter.send(CounterState).await?;
        if state.0 >= TELLS || Instant::now() > deadline {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    ensure!(
        received == TELLS && out_of_order == 0,
        "counter saw {received} tells, {out_of_order} out of order"
    );
    println!(
        "{TELLS} tells to {}.counter arrived in order in {:.1} ms",
        nodes[1].0,
        t.elapsed().as_secs_f64() * 1e3
    );

    println!("\ncalls handled per adder:");
    for ((name, _, _), adder) in nodes.iter().zip(&adders) {
        println!("  {name}: {}", adder.send(Count).await?);
    }
    if received != TELLS {
        bail!("lost tells");
    }
    membership(driver, nodes).await
}

/// 4. Membership and a load-balanced service: every node serves an
///    instance of "greeter"; the driver (a member too) discovers them
///    through gossip and spreads requests with a ServiceRef.
async fn membership(
    driver: &Node,
    nodes: &[(String, swarm::NodeId, std::net::SocketAddr)],
) -> Result<()> {
    let cluster = driver
        .cluster()
        .context("the demo driver runs with membership")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let members = cluster.members().await?;
        let alive = members
            .iter()
            .filter(|m| m.state == swarm::protocol::membership::MemberState::Alive)
            .count();
        let instances = cluster
            .services()
            .iter()
            .find(|(s, _)| s == "greeter")
            .map_or(0, |(_, list)| list.len());
        if alive == nodes.len() + 1 && instances == nodes.len() {
            println!("\nmembership (SWIM over sealed UDP gossip), as the driver sees it:");
            for m in &members {
                let meta = m.meta.as_deref().cloned().unwrap_or_default();
                println!(
                    "  {:<7} {:<21} {:<6} {} CPUs, {} MiB, {} GPUs, {} service(s)",
                    m.name(),
                    m.addr,
                    m.state.as_str(),
                    meta.resources.cpus,
                    meta.resources.memory >> 20,
                    meta.resources.gpus,
                    meta.services.len()
                );
            }
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "membership did not converge: {alive} alive, {instances} greeter instances"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let greeter = cluster.service::<swarm_cli::demo::Worker>("greeter");
    let mut served: std::collections::BTreeMap<String, u64> = Default::default();
    let t = Instant::now();
    let requests: Vec<_> = (0..300)
        .map(|key| {
            let greeter = greeter.clone();
            actix_rt::spawn(async move {
                greeter
                    .send(swarm_cli::demo::Work { key, delay_ms: 1 })
                    .await
            })
        })
        .collect();
    for request in requests {
        *served.entry(request.await??.node).or_default() += 1;
    }
    ensure!(
        served.len() == nodes.len(),
        "requests reached only {served:?}"
    );
    println!(
        "300 concurrent requests to service \"greeter\" through a ServiceRef (P2C on EWMA latency) in {:.1} ms:",
        t.elapsed().as_secs_f64() * 1e3
    );
    for (name, count) in &served {
        println!("  {name}: {count}");
    }
    Ok(())
}
