//! `swarm demo`: the main job. Starts a local cluster of node processes
//! (three heads keeping the control plane, and workers) with a throw-away
//! CA, runs the demo workload across it from an in-process driver node,
//! then places a named actor by resources, SIGKILLs its node and times
//! until it answers again from another node. Prints the results, and exits
//! 0 only if every result is right.

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
        "starting {} node processes on 127.0.0.1: 3 heads and {n} workers (CA, certificates and configs in {})",
        n + 3,
        dir.display()
    );
    // The last two workers offer a TPU each: the named actor needs one.
    let tpus = move |i: usize| {
        if i + 2 >= n + 3 {
            vec!["--resource".to_owned(), "tpu=1".to_owned()]
        } else {
            Vec::new()
        }
    };
    let mut cluster = LocalCluster::start_control_with(
        &exe,
        &dir,
        (3, n),
        &["--workload", "demo", "--service", "greeter"],
        &tpus,
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
    // The driver submits tasks but runs none: they go to the workers.
    if let Some(c) = mesh.cluster.as_mut() {
        c.resources.cpus = Some(0.0);
    }
    let nodes: Vec<(String, swarm::NodeId, std::net::SocketAddr)> = cluster
        .nodes
        .iter()
        .map(|c| (c.name.clone(), c.id, c.addr))
        .collect();
    let result = actix::System::new().block_on(async {
        let driver = Node::start(mesh).await?;
        let mut outcome = workload(&driver, &nodes).await;
        if outcome.is_ok() {
            outcome = tasks(&driver, &cluster).await;
        }
        if outcome.is_ok() {
            outcome = control_plane(&driver, &mut cluster).await;
        }
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
    // Nodes learn each other's addresses by gossip: wait until every node
    // knows every other alive before they call each other.
    let deadline = Instant::now() + Duration::from_secs(20);
    for (name, id, _) in nodes {
        let agent =
            driver.remote::<swarm::cluster::ClusterAgent>(*id, swarm::cluster::CLUSTER_ACTOR);
        loop {
            let alive = agent
                .send(swarm::cluster::ListMembers)
                .await
                .map_or(0, |rows| rows.iter().filter(|m| m.state == "alive").count());
            if alive >= nodes.len() {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "{name} sees {alive} of {} members alive after 20 s",
                nodes.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

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

/// 5. Ray-style tasks from the driver (which offers no CPUs): a batch
///    spread over the workers, and a kept result passed by reference
///    between two.
async fn tasks(driver: &Node, cluster: &LocalCluster) -> Result<()> {
    use std::collections::BTreeMap;

    use swarm::placement::Placement;
    use swarm_cli::demo::tasks::{blob, size_of, square, where_am_i};

    let t = driver
        .tasks()
        .context("the demo driver runs with membership")?;
    let name_of = |id: Option<swarm::NodeId>| {
        cluster
            .nodes
            .iter()
            .find(|n| Some(n.id) == id)
            .map_or_else(|| "?".to_owned(), |n| n.name.clone())
    };
    // Membership tells the driver's scheduler about every node first.
    let deadline = Instant::now() + Duration::from_secs(30);
    while t.list(0).await.map_or(0, |table| table.nodes) < cluster.nodes.len() + 1 {
        ensure!(
            Instant::now() < deadline,
            "the scheduler never saw every node"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    const N: u64 = 100_000;
    let started = Instant::now();
    let squares = t.submit_many(square, 0..N).await?.collect().await?;
    let took = started.elapsed().as_secs_f64();
    let sum: u64 = squares.iter().sum();
    ensure!(
        sum == (0..N).map(|i| i * i).sum::<u64>(),
        "wrong sum of squares {sum}"
    );
    println!(
        "\ntasks: {N} squares submitted from the driver (no CPUs), run by the workers in {:.0} ms ({:.0} tasks/s); sum correct",
        took * 1e3,
        N as f64 / took
    );
    let mut by_node: BTreeMap<String, usize> = BTreeMap::new();
    for ran in t
        .submit_many(where_am_i, (0..400).map(|_| ()))
        .await?
        .collect()
        .await?
    {
        *by_node.entry(name_of(ran)).or_default() += 1;
    }
    println!("  400 tasks by where they ran: {by_node:?}");
    let (maker, consumer) = match cluster.nodes.get(3..5) {
        Some([a, b]) => (a.id, b.id),
        _ => bail!("the demo needs two workers"),
    };
    let pin = |node| Placement::Node { node, hard: true };
    let size = 16u64 << 20;
    let kept = t
        .task(blob)
        .placement(pin(maker))
        .keep()
        .submit(size)
        .await?;
    let started = Instant::now();
    let len = t
        .task(size_of)
        .placement(pin(consumer))
        .submit(&kept)
        .await?
        .await?;
    ensure!(len == size, "the consumer saw {len} bytes");
    println!(
        "  a 16 MiB result kept on {} was read by a task on {} in {:.1} ms, fetched node to node (not through the driver)",
        name_of(Some(maker)),
        name_of(Some(consumer)),
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

/// 6. The control plane: a named durable actor placed by resources, its
///    node SIGKILLed, the actor answering again from another node with its
///    acknowledged balance.
async fn control_plane(driver: &Node, cluster: &mut LocalCluster) -> Result<()> {
    use swarm::control::Spawn;
    use swarm::supervision::Restart;
    use swarm_cli::demo::{Deposit, Ledger, LedgerArgs};

    let control = driver
        .control()
        .context("the demo driver runs with membership")?
        .clone();
    let name_of = |id: swarm::NodeId, cluster: &LocalCluster| {
        cluster
            .nodes
            .iter()
            .find(|n| n.id == id)
            .map_or_else(|| id.short(), |n| n.name.clone())
    };
    let spawn = || {
        Spawn::<Ledger>::named("account")
            .args(LedgerArgs { opening: 100 })
            .cpus(0.5)
            .resource("tpu", 1.0)
            .restart(Restart::on_failure().max(3))
    };
    // The head group forms and the workers take leases first.
    let deadline = Instant::now() + Duration::from_secs(30);
    let t = Instant::now();
    let account = loop {
        match control.spawn(spawn()).await {
            Ok(account) => break account,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "control plane not ready yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => bail!("the control plane never placed the actor: {e}"),
        }
    };
    let heads = control.head_status().await;
    let leader = heads.iter().find_map(|(id, row)| {
        row.as_ref()
            .ok()
            .filter(|r| r.role == "leader")
            .map(|_| *id)
    });
    println!(
        "\ncontrol plane: {} heads (Raft over mesh links, redb logs), leader {}",
        heads.len(),
        leader.map_or_else(|| "?".to_owned(), |l| name_of(l, cluster))
    );
    let (node, epoch) = account
        .location()
        .context("a placed actor has a location")?;
    println!(
        "  spawned named actor \"account\" (needs 1 TPU, 0.5 CPU) in {:.1} ms: placed on {} (one of the two TPU nodes), epoch {epoch}",
        t.elapsed().as_secs_f64() * 1e3,
        name_of(node, cluster)
    );
    let balance = account.send(Deposit(5)).await?;
    ensure!(
        balance.total == 105 && balance.node == node,
        "wrong balance {balance:?}"
    );
    println!(
        "  deposit 5 -> balance {} from {} (epoch {})",
        balance.total,
        name_of(balance.node, cluster),
        balance.epoch
    );
    let i = cluster
        .nodes
        .iter()
        .position(|n| n.id == node)
        .context("the actor runs on a cluster process")?;
    let victim = name_of(node, cluster);
    let killed_at = Instant::now();
    let killed = cluster.kill(i)?;
    println!("  SIGKILL {victim} (pid {})", killed.child.id());
    let failed = account.send(Deposit(5)).await;
    ensure!(
        failed.as_ref().is_err_and(swarm::AskError::is_node_failure),
        "the ask after the kill should fail with a node failure: {failed:?}"
    );
    println!(
        "  the next ask failed at once, typed: {}",
        failed.err().map(|e| e.to_string()).unwrap_or_default()
    );
    // Asked with a deposit of 0 (a read: nothing is written) until the
    // next incarnation answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    let moved = loop {
        if let Ok(balance) = account.send(Deposit(0)).await {
            break balance;
        }
        ensure!(
            Instant::now() < deadline,
            "the actor did not answer again within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let took = killed_at.elapsed();
    ensure!(
        moved.node != node && moved.epoch > epoch,
        "expected a new incarnation elsewhere: {moved:?}"
    );
    ensure!(
        moved.total == balance.total,
        "the acknowledged balance {} was not kept: {moved:?}",
        balance.total
    );
    println!(
        "  \"account\" answered again from {} after {:.0} ms (epoch {} -> {}) with its balance kept: {} \
         (a durable actor: the new incarnation replayed its journal from the head group before its first message)",
        name_of(moved.node, cluster),
        took.as_secs_f64() * 1e3,
        epoch,
        moved.epoch,
        moved.total
    );
    let after = account.send(Deposit(5)).await?;
    ensure!(after.total == balance.total + 5, "wrong balance {after:?}");
    println!(
        "  deposit 5 -> balance {} from {} (epoch {})",
        after.total,
        name_of(after.node, cluster),
        after.epoch
    );
    let placed = control.placed().await?;
    println!("  what the head records (swarm actors):");
    for row in placed {
        println!(
            "    {:<10} {:<12} on {:<4} {:<7} epoch {}",
            row.name,
            row.type_name,
            name_of(row.node, cluster),
            row.state,
            row.epoch
        );
    }
    control.stop("account").await?;
    Ok(())
}
