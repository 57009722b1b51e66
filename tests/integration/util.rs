//! Helpers: start nodes on their own arbiters, poll until a condition holds.

use std::future::Future;
use std::time::{Duration, Instant};

use actix::Arbiter;
use swarm::credentials::Throwaway;
use swarm::{MeshConfig, Node};

/// A node and the arbiter (thread) it runs on.
pub struct TestNode {
    pub node: Node,
    pub arbiter: Arbiter,
}

impl TestNode {
    /// Stops the node's thread: its sockets close as if the process died.
    pub fn kill(self) {
        self.arbiter.stop();
        let _ = self.arbiter.join();
    }
}

/// A mesh configuration on 127.0.0.1:0 with short test timers.
pub fn config(ca: &Throwaway, name: &str) -> MeshConfig {
    config_with_roles(ca, name, &["worker"])
}

/// As [`config`], with these certificate roles.
pub fn config_with_roles(ca: &Throwaway, name: &str, roles: &[&str]) -> MeshConfig {
    let mut config = MeshConfig::new("127.0.0.1:0".parse().unwrap(), ca.node(name, roles));
    config.ask_timeout = Duration::from_secs(5);
    config
}

/// Starts a node with `config` on a new arbiter and exposes the demo workload there.
pub async fn start(config: MeshConfig) -> TestNode {
    let arbiter = Arbiter::new();
    let node = Node::start_on(&arbiter.handle(), config)
        .await
        .expect("node starts");
    if let Some(tasks) = node.tasks() {
        swarm_cli::demo::tasks::register(tasks);
    }
    on(&arbiter, {
        let node = node.clone();
        move || {
            swarm_cli::demo::expose_info(&node).unwrap();
            swarm_cli::demo::expose_workload(&node).unwrap();
        }
    })
    .await;
    TestNode { node, arbiter }
}

/// Starts `n` nodes of one throw-away cluster named n1..nN.
pub async fn cluster(n: usize) -> (Throwaway, Vec<TestNode>) {
    let ca = Throwaway::new("test");
    let mut nodes = Vec::new();
    for i in 1..=n {
        nodes.push(start(config(&ca, &format!("n{i}"))).await);
    }
    (ca, nodes)
}

/// Runs `f` on `arbiter` and waits for it.
pub async fn on<T: Send + 'static>(arbiter: &Arbiter, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = tokio::sync::oneshot::channel();
    assert!(arbiter.spawn_fn(move || {
        let _ = tx.send(f());
    }));
    rx.await.expect("arbiter ran the closure")
}

/// Polls `check` every 10 ms until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut poll = tokio::time::interval(Duration::from_millis(10));
    loop {
        poll.tick().await;
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
    }
}

/// As [`eventually`], for tests without a runtime: asks `check` every
/// `every` until it answers `Some` or `within` passes (then `None`, after
/// one last try). The one place a blocking test paces its polls.
pub fn poll_until<T>(
    within: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::park_timeout(every.min(deadline - now));
    }
}

/// Membership settings for tests: fast probes, a 1 s suspicion.
pub fn fast_gossip(seeds: Vec<std::net::SocketAddr>) -> swarm::ClusterConfig {
    let mut cluster = swarm::ClusterConfig {
        seeds,
        ..swarm::ClusterConfig::default()
    };
    let g = &mut cluster.gossip;
    g.probe_period = Duration::from_millis(200);
    g.probe_rtt = Duration::from_millis(100);
    g.gossip_interval = Duration::from_millis(50);
    g.suspect_timeout = Some(Duration::from_secs(1));
    g.meta_pull_interval = Duration::from_millis(50);
    cluster
}

/// Starts `n` nodes with membership (fast settings), n2..nN joining through n1.
pub async fn members(n: usize) -> (Throwaway, Vec<TestNode>) {
    let ca = Throwaway::new("test");
    let mut nodes: Vec<TestNode> = Vec::new();
    for i in 1..=n {
        let mut c = config(&ca, &format!("n{i}"));
        let seeds = nodes
            .first()
            .map(|s| s.node.listen_addr())
            .into_iter()
            .collect();
        c.cluster = Some(fast_gossip(seeds));
        nodes.push(start(c).await);
    }
    (ca, nodes)
}

/// Whether `node` lists exactly `alive` members alive (itself included).
pub async fn sees_alive(node: &Node, alive: usize) -> bool {
    node.cluster().unwrap().members().await.is_ok_and(|m| {
        m.iter()
            .filter(|m| m.state == swarm::protocol::membership::MemberState::Alive)
            .count()
            == alive
    })
}

/// The built `swarm` binary.
pub fn exe() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_swarm"))
}

/// A fresh scratch directory for a test's files.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("swarm-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A control-plane cluster in one process: `heads` nodes with the head
/// role (a Raft replica each, stores under `dir`), then `workers` workers;
/// all register the demo's spawnable types. `tune` adjusts each config.
pub async fn control_cluster(
    dir: &std::path::Path,
    heads: usize,
    workers: usize,
    mut tune: impl FnMut(usize, &mut MeshConfig),
) -> (Throwaway, Vec<TestNode>) {
    let ca = Throwaway::new("test");
    let mut nodes: Vec<TestNode> = Vec::new();
    for i in 0..heads + workers {
        let name = format!("n{}", i + 1);
        let roles: &[&str] = if i < heads {
            &["head", "worker"]
        } else {
            &["worker"]
        };
        let mut c = config_with_roles(&ca, &name, roles);
        let seeds = nodes
            .first()
            .map(|s| s.node.listen_addr())
            .into_iter()
            .collect();
        c.cluster = Some(fast_gossip(seeds));
        if i < heads {
            let mut head = swarm::control::HeadConfig::new(dir.join(&name));
            head.voters = heads;
            // Sealed like a configured node's: the scan test reads these
            // directories for payloads in clear.
            head.seal = std::sync::Arc::new(Throwaway::keyring(dir).expect("a keyring"));
            head.totp = Some(std::sync::Arc::new(zeroize::Zeroizing::new(ca.totp)));
            c.head = Some(head);
        }
        tune(i, &mut c);
        let node = start(c).await;
        on(&node.arbiter, {
            let node = node.node.clone();
            move || swarm_cli::demo::register_types(&node)
        })
        .await;
        nodes.push(node);
    }
    (ca, nodes)
}

/// The TOTP code of the operator certificate in `config` now.
pub fn totp_code(ca: &Throwaway, config: &MeshConfig) -> String {
    let body = config.handshake.cert.body();
    let seed = swarm::operators::seed(&ca.totp, body.serial, &body.name);
    swarm::operators::code_at(&seed, swarm::credentials::unix_now())
}

/// Starts an operator node (no membership) with `roles` and logs it in
/// through `member` with a current TOTP code.
pub async fn operator(
    ca: &Throwaway,
    name: &str,
    roles: &[&str],
    member: std::net::SocketAddr,
) -> TestNode {
    let config = config_with_roles(ca, name, roles);
    let code = totp_code(ca, &config);
    let op = start(config).await;
    // The heads and the member's lease (its session key) may still be
    // settling: retry a refused login only while nothing says the code
    // itself is wrong.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    loop {
        poll.tick().await;
        match op.node.login(member, &code).await {
            Ok(_) => break,
            Err(e)
                if tokio::time::Instant::now() < deadline
                    && !matches!(
                        e,
                        swarm::LoginError::Refused(swarm::control::ControlError::Login(_))
                    ) => {}
            Err(e) => panic!("{name} did not log in: {e}"),
        }
    }
    // The member takes the login once it knows the head group's key (its
    // first lease grant).
    let id = op
        .node
        .connect(member)
        .await
        .expect("the member answers")
        .id;
    let agent = op
        .node
        .remote::<swarm::cluster::ClusterAgent>(id, swarm::cluster::CLUSTER_ACTOR);
    loop {
        if agent.send(swarm::cluster::ListMembers).await.is_ok() {
            return op;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}'s login never reached the member"
        );
        poll.tick().await;
    }
}

/// Spawns until the control plane places it: the head group forms and the
/// nodes renew their leases first (30 s at most).
pub async fn spawn_ready<A: swarm::supervision::Spawnable>(
    control: &swarm::control::Control,
    spawn: impl Fn() -> swarm::control::Spawn<A>,
) -> swarm::control::Named<A> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    loop {
        poll.tick().await;
        match control.spawn(spawn()).await {
            Ok(named) => return named,
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "never placed: {e}"),
        }
    }
}

/// The leader of the head group, by asking each head.
pub async fn leader(control: &swarm::control::Control) -> Option<swarm::NodeId> {
    control
        .head_status()
        .await
        .into_iter()
        .find_map(|(node, row)| row.ok().filter(|r| r.role == "leader").map(|_| node))
}

/// The time from `killed_at` (a head leader's kill) to the first spawn
/// the control plane acknowledges (`after-1`, `after-2`, ...); fails the
/// test after 20 s, with the heads' status.
pub async fn first_write_after<A: swarm::supervision::Spawnable>(
    control: &swarm::control::Control,
    killed_at: Instant,
    spawn: impl Fn(String) -> swarm::control::Spawn<A>,
) -> Duration {
    for i in 1.. {
        if control.spawn(spawn(format!("after-{i}"))).await.is_ok() {
            return killed_at.elapsed();
        }
        if killed_at.elapsed() > Duration::from_secs(20) {
            let heads = control.head_status().await;
            panic!("no write acknowledged within 20 s of the leader's kill; heads: {heads:?}");
        }
    }
    unreachable!("the spawns' numbers ran out")
}

/// Spawns `spawns` demo ledgers named `b` + the index padded to `width`
/// digits (long names make a long log), `lanes` at a time; answers how
/// many were acknowledged. A spawn may fail after its placement committed
/// (its host refused the push, an election): the log holds it all the same.
pub async fn spawn_many(
    control: &swarm::control::Control,
    spawns: usize,
    lanes: usize,
    width: usize,
) -> usize {
    use swarm::control::Spawn;
    use swarm_cli::demo::{Ledger, LedgerArgs};
    let mut running = tokio::task::JoinSet::new();
    for lane in 0..lanes {
        let control = control.clone();
        running.spawn_local(async move {
            let mut acknowledged = 0;
            for i in (lane..spawns).step_by(lanes) {
                let spawn = Spawn::<Ledger>::named(format!("b{i:0>width$}"))
                    .args(LedgerArgs { opening: 0 });
                if control.spawn(spawn).await.is_ok() {
                    acknowledged += 1;
                }
            }
            acknowledged
        });
    }
    let mut acknowledged = 0;
    while let Some(lane) = running.join_next().await {
        acknowledged += lane.unwrap();
    }
    acknowledged
}

/// A demo ledger named `name` on `node`, free to move: a hard affinity
/// first (it waits for `node`'s lease), then, stopped and spawned again,
/// a soft one.
pub async fn ledger_on(
    control: &swarm::control::Control,
    name: &str,
    node: swarm::NodeId,
) -> swarm::control::Named<swarm_cli::demo::Ledger> {
    use swarm::control::Spawn;
    use swarm::placement::Placement;
    use swarm_cli::demo::{Ledger, LedgerArgs};
    let on = |hard| {
        Spawn::<Ledger>::named(name)
            .args(LedgerArgs { opening: 0 })
            .placement(Placement::Node { node, hard })
    };
    spawn_ready(control, || on(true)).await;
    control.stop(name).await.unwrap();
    let named = control.spawn(on(false)).await.unwrap();
    assert_eq!(named.location().map(|l| l.0), Some(node));
    named
}

/// An in-process node with the identity of a local cluster's driver
/// (an operator), joined to its membership.
pub async fn driver(cluster: &swarm_cli::local::LocalCluster) -> Node {
    let mut mesh = swarm::config::NodeFile::load(&cluster.driver_config())
        .unwrap()
        .mesh_config()
        .unwrap();
    mesh.listen = "127.0.0.1:0".parse().unwrap();
    mesh.ask_timeout = Duration::from_secs(5);
    Node::start(mesh).await.unwrap()
}

/// Runs the built `swarm` with `args`, asserts it succeeded, and parses
/// its JSON output.
pub fn swarm_json(args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(exe())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "swarm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The admin operator's TOTP code `steps` steps (of 30 s) from now: a
/// second login in the same step needs the next step's code (each step
/// logs in once; the heads accept one step either side).
pub fn admin_code_in(dir: &std::path::Path, steps: u64) -> String {
    operator_code_in(dir, "admin", steps)
}

/// Operator `name`'s TOTP code `steps` steps from now (`NAME.cert` in a
/// local cluster's `dir`).
pub fn operator_code_in(dir: &std::path::Path, name: &str, steps: u64) -> String {
    let keyring = Throwaway::keyring(dir).unwrap();
    let totp = swarm::credentials::read_secret(
        &keyring,
        &dir.join("totp.secret"),
        swarm_protocol::sealed::Kind::TotpSecret,
    )
    .unwrap();
    let cert = swarm::credentials::read_cert(&dir.join(format!("{name}.cert"))).unwrap();
    let seed = swarm::operators::seed(&totp, cert.body().serial, &cert.body().name);
    swarm::operators::code_at(&seed, swarm::credentials::unix_now() + 30 * steps)
}

/// Operator `name`'s TOTP code now, from `NAME.cert` and the sealed
/// `totp.secret` in `dir`, whose keyring opens with `passphrase` (a CA
/// directory made by `swarm ca init`, not a throw-away one).
pub fn operator_code_sealed(dir: &std::path::Path, name: &str, passphrase: &str) -> String {
    let unlock =
        swarm::credentials::Unlock::Passphrase(zeroize::Zeroizing::new(passphrase.to_owned()));
    let keyring = swarm::credentials::CaDir::new(dir)
        .keyring(&unlock)
        .unwrap();
    let totp = swarm::credentials::read_secret(
        &keyring,
        &dir.join("totp.secret"),
        swarm_protocol::sealed::Kind::TotpSecret,
    )
    .unwrap();
    let cert = swarm::credentials::read_cert(&dir.join(format!("{name}.cert"))).unwrap();
    let seed = swarm::operators::seed(&totp, cert.body().serial, &cert.body().name);
    swarm::operators::code_at(&seed, swarm::credentials::unix_now())
}

/// The TOTP code now of a local cluster's admin operator (`admin.cert` in
/// `dir`, the cluster's sealed `totp.secret`).
pub fn admin_code(dir: &std::path::Path) -> String {
    operator_code_in(dir, "admin", 0)
}

/// Runs the command `build` makes (afresh each time: a TOTP code may have
/// to change) until it succeeds, 60 s at most: the head group may still
/// be forming, or a code's step be used already. Answers its stdout.
pub fn until_ok(what: &str, build: impl Fn() -> std::process::Command) -> Vec<u8> {
    let mut stderr = Vec::new();
    poll_until(Duration::from_secs(60), Duration::from_millis(200), || {
        let out = build().output().unwrap();
        stderr = out.stderr;
        out.status.success().then_some(out.stdout)
    })
    .unwrap_or_else(|| panic!("{what}: {}", String::from_utf8_lossy(&stderr)))
}

/// Places a supervised ledger called `account` (opening balance 7, five
/// restarts) on a worker of a local cluster, as its driver.
pub fn place_account(cluster: &swarm_cli::local::LocalCluster) {
    place_ledger(cluster, "account", "label:worker");
}

/// Places a supervised ledger called `name` (opening balance 7, five
/// restarts) by `placement` (as `swarm spawn --placement` takes it) on a
/// local cluster, as its driver: retried until the head group places it.
pub fn place_ledger(cluster: &swarm_cli::local::LocalCluster, name: &str, placement: &str) {
    let seed = cluster.nodes[0].addr.to_string();
    let driver = cluster.driver_config();
    until_ok("never placed", || {
        let mut spawn = std::process::Command::new(exe());
        spawn
            .args(["spawn", "--config"])
            .arg(&driver)
            .args(["--node", &seed])
            .args(["--type", "demo.Ledger", "--name", name])
            .args(["--args", r#"{"opening": 7}"#])
            .args(["--placement", placement, "--restarts", "5"]);
        spawn
    });
}

/// The exit status of a child process once it exits, polled until
/// `within` passes; `None` if it still runs then.
pub fn exit_within(
    child: &mut std::process::Child,
    within: Duration,
) -> Option<std::process::ExitStatus> {
    poll_until(within, Duration::from_millis(20), || {
        child.try_wait().unwrap()
    })
}

/// A hand-driven peer: completes a real Noise handshake with `addr` as the
/// initiator over a bare TCP stream, so a test can send what no node would.
/// Answers the stream, the session and the bytes read past the handshake.
pub async fn raw_handshake(
    addr: std::net::SocketAddr,
    config: swarm::protocol::HandshakeConfig,
) -> (tokio::net::TcpStream, swarm::protocol::Established, Vec<u8>) {
    use swarm::protocol::{decode_frame, Decoded, Handshake};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut hs = Handshake::initiator(std::sync::Arc::new(config)).unwrap();
    let mut buf = Vec::new();
    loop {
        while let Some(frame) = hs.poll_transmit() {
            stream.write_all(&frame).await.unwrap();
        }
        if hs.is_established() {
            break;
        }
        let consumed = loop {
            match decode_frame(&buf, 65_535).unwrap() {
                Decoded::Frame { payload, consumed } => {
                    hs.handle_frame(payload, swarm::credentials::unix_now())
                        .unwrap();
                    break consumed;
                }
                Decoded::Incomplete { .. } => {
                    let mut chunk = [0u8; 4096];
                    let n = stream.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "the node hung up during the handshake");
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        };
        buf.drain(..consumed);
    }
    (stream, hs.into_established().unwrap(), buf)
}

/// The README's crash failover bound ("Failover bounds": ≤ 1 s from
/// SIGKILL to the next answer through a `Named` handle; 0.43-0.77 s over
/// 50 runs), tripled for debug builds on a loaded machine: what a default
/// test of that failover asserts.
pub const CRASH_FAILOVER_BOUND: Duration = Duration::from_secs(3);
