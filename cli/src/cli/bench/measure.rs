//! The cluster benchmark behind `swarm bench link`: two nodes on loopback,
//! each on its own thread, measured in one run against the bare Noise
//! baseline (snow over a TCP socket pair, no actors) so the figures compare.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use actix::Arbiter;
use anyhow::{anyhow, Context as _, Result};
use serde::Serialize;

use swarm::credentials::Throwaway;
use swarm::{MeshConfig, Node, TellError};
use swarm_cli::demo::{Add, Adder, Bump, Counter, CounterState, Echo};

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LinkReport {
    /// Median round trip of a 64-byte ask/reply between actors on two nodes.
    pub ask_rtt_p50_us: f64,
    /// 99th percentile of the same.
    pub ask_rtt_p99_us: f64,
    /// 64-byte tells per second over one link, sender to handler.
    pub(crate) tell_msgs_per_s: f64,
    /// Throughput of 1 MiB messages, sender to handler, MB (10^6 bytes) per second.
    pub(crate) bulk_mb_per_s: f64,
    /// Median time to connect and complete the Noise handshake.
    pub(crate) handshake_us: f64,
    /// Resident memory of an idle `swarm node start` process (0 if not measured).
    pub(crate) idle_node_rss_mib: f64,
    /// Median round trip of 64-byte messages over bare snow on TCP.
    pub raw_noise_rtt_p50_us: f64,
    /// 64-byte Noise messages per second over bare snow on TCP, one direction.
    pub(crate) raw_noise_msgs_per_s: f64,
    /// With `--relay`: the ask round trip through a relay (a third node),
    /// the endpoints' own Noise session inside the relay's links.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) relayed_ask_rtt_p50_us: Option<f64>,
    /// With `--relay`: tells per second through the relay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) relayed_tell_msgs_per_s: Option<f64>,
    /// With `--relay`: 1 MiB messages through the relay, MB (10^6 bytes) per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) relayed_bulk_mb_per_s: Option<f64>,
    /// With `--relay`, the platform's own cost of a hop: bare TCP through
    /// a forwarding thread, as a fraction of bare TCP direct (same run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) raw_tcp_hop_ratio: Option<f64>,
}

impl LinkReport {
    /// A table for people, with the targets of the foundation issue.
    pub(crate) fn table(&self) -> String {
        let rows = [
            (
                "ask RTT p50 (64 B)",
                format!("{:.1} us", self.ask_rtt_p50_us),
                "<= 30 us",
            ),
            (
                "ask RTT p99 (64 B)",
                format!("{:.1} us", self.ask_rtt_p99_us),
                "",
            ),
            (
                "tells/s (64 B, one link)",
                format!("{:.0}", self.tell_msgs_per_s),
                ">= 2,000,000",
            ),
            (
                "bulk (1 MiB messages)",
                format!("{:.0} MB/s", self.bulk_mb_per_s),
                ">= 800 MB/s",
            ),
            (
                "connect + handshake",
                format!("{:.0} us", self.handshake_us),
                "",
            ),
            (
                "idle node RSS",
                format!("{:.1} MiB", self.idle_node_rss_mib),
                "<= 20 MiB",
            ),
            (
                "raw Noise RTT p50 (baseline)",
                format!("{:.1} us", self.raw_noise_rtt_p50_us),
                "",
            ),
            (
                "raw Noise msgs/s (baseline)",
                format!("{:.0}", self.raw_noise_msgs_per_s),
                "",
            ),
        ];
        let mut rows = rows.to_vec();
        if let (Some(ask), Some(tells), Some(bulk)) = (
            self.relayed_ask_rtt_p50_us,
            self.relayed_tell_msgs_per_s,
            self.relayed_bulk_mb_per_s,
        ) {
            rows.extend([
                (
                    "relayed ask RTT p50 (64 B)",
                    format!("{ask:.1} us ({:.2}x)", ask / self.ask_rtt_p50_us),
                    "<= 2.2x direct",
                ),
                (
                    "relayed tells/s (64 B)",
                    format!("{tells:.0} ({:.0}%)", 100.0 * tells / self.tell_msgs_per_s),
                    ">= 50% of direct",
                ),
                (
                    "relayed bulk (1 MiB messages)",
                    format!("{bulk:.0} MB/s ({:.0}%)", 100.0 * bulk / self.bulk_mb_per_s),
                    ">= 50% of direct",
                ),
            ]);
            if let Some(ratio) = self.raw_tcp_hop_ratio {
                rows.push((
                    "raw TCP hop / direct (baseline)",
                    format!("{:.0}%", 100.0 * ratio),
                    "",
                ));
            }
        }
        let mut out = format!("{:<32} {:>16}   {}\n", "metric", "measured", "target");
        for (name, value, target) in rows {
            out.push_str(&format!("{name:<32} {value:>16}   {target}\n"));
        }
        out
    }
}

/// Runs every measurement. `scale` multiplies the iteration counts; `exe`
/// is the `swarm` binary for the idle-memory figure (skipped if `None`).
///
/// # Errors
///
/// If a node cannot start or a measurement fails.
pub(crate) fn link(scale: f64, exe: Option<&Path>, relay: bool) -> Result<LinkReport> {
    let n = move |base: u64| ((base as f64 * scale).max(1.0)) as u64;
    let (raw_noise_rtt_p50_us, raw_noise_msgs_per_s) = raw_noise(n(20_000), n(1_000_000))?;
    let idle_node_rss_mib = match exe {
        Some(exe) => idle_rss(exe)?,
        None => 0.0,
    };
    let mut report = actix::System::new().block_on(async move {
        let ca = Throwaway::new("bench");
        let a_thread = Arbiter::new();
        let b_thread = Arbiter::new();
        let a = Node::start_on(&a_thread.handle(), config(&ca, "a")).await?;
        let b = Node::start_on(&b_thread.handle(), config(&ca, "b")).await?;
        let b2 = b.clone();
        on(&b_thread, move || swarm_cli::demo::expose_workload(&b2)).await??;
        a.connect(b.listen_addr()).await?;
        let target = b.id();
        let a2 = a.clone();
        let report = on_async(&a_thread, move || measure(a2, target, n)).await??;
        let handshake_us = {
            let ca2 = Throwaway {
                ca: swarm_protocol::CaKey::from_seed(ca.ca.seed()),
                cluster: ca.cluster.clone(),
                secret: ca.secret,
                trust: ca.trust.clone(),
                totp: ca.totp,
            };
            let addr = b.listen_addr();
            let rounds = n(50).min(200);
            on_async(&a_thread, move || handshakes(ca2, addr, rounds)).await??
        };
        a.shutdown();
        b.shutdown();
        a_thread.stop();
        b_thread.stop();
        let relayed = if relay {
            Some(relayed(&ca, scale).await?)
        } else {
            None
        };
        let raw_tcp_hop_ratio = if relay {
            Some(raw_tcp_hop(n(1024) as usize)?)
        } else {
            None
        };
        Ok::<_, anyhow::Error>(LinkReport {
            handshake_us,
            relayed_ask_rtt_p50_us: relayed.as_ref().map(|r| r.ask_rtt_p50_us),
            relayed_tell_msgs_per_s: relayed.as_ref().map(|r| r.tell_msgs_per_s),
            relayed_bulk_mb_per_s: relayed.as_ref().map(|r| r.bulk_mb_per_s),
            raw_tcp_hop_ratio,
            ..report
        })
    })?;
    report.raw_noise_rtt_p50_us = raw_noise_rtt_p50_us;
    report.raw_noise_msgs_per_s = raw_noise_msgs_per_s;
    report.idle_node_rss_mib = idle_node_rss_mib;
    Ok(report)
}

/// The same measurements between two nodes whose link runs through a
/// relay: three nodes, each on its own thread; the pair's link never
/// becomes direct (its upgrade interval is an hour).
async fn relayed(ca: &Throwaway, scale: f64) -> Result<LinkReport> {
    let n = move |base: u64| ((base as f64 * scale).max(1.0)) as u64;
    let threads = [Arbiter::new(), Arbiter::new(), Arbiter::new()];
    let mut relay_config = config(ca, "relay");
    relay_config.relay = true;
    let relay = Node::start_on(&threads[0].handle(), relay_config).await?;
    let endpoint = |name: &str| {
        let mut c = config(ca, name);
        c.upgrade_interval = Duration::from_secs(3600);
        c
    };
    let a = Node::start_on(&threads[1].handle(), endpoint("ra")).await?;
    let b = Node::start_on(&threads[2].handle(), endpoint("rb")).await?;
    let b2 = b.clone();
    on(&threads[2], move || swarm_cli::demo::expose_workload(&b2)).await??;
    a.connect(relay.listen_addr()).await?;
    b.connect(relay.listen_addr()).await?;
    let link = a.connect_via(relay.id(), b.id()).await?;
    if link.via != Some(relay.id()) {
        return Err(anyhow!("the benchmark link is not relayed: {link:?}"));
    }
    let (a2, target) = (a.clone(), b.id());
    let report = on_async(&threads[1], move || measure(a2, target, n)).await??;
    let forwarded = relay.stats().relay_bytes;
    if forwarded == 0 {
        return Err(anyhow!("nothing went through the relay"));
    }
    for node in [&a, &b, &relay] {
        node.close().await;
    }
    for thread in &threads {
        thread.stop();
    }
    Ok(report)
}

pub(super) fn config(ca: &Throwaway, name: &str) -> MeshConfig {
    let mut config = MeshConfig::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        ca.node(name, &["worker"]),
    );
    config.ask_timeout = Duration::from_secs(30);
    config
}

pub(super) async fn on<T: Send + 'static>(
    arbiter: &Arbiter,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    arbiter.spawn_fn(move || {
        let _ = tx.send(f());
    });
    rx.await.map_err(|_| anyhow!("arbiter stopped"))
}

pub(super) async fn on_async<T, F, Fut>(arbiter: &Arbiter, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    arbiter.spawn_fn(move || {
        actix_rt::spawn(async move {
            let _ = tx.send(f().await);
        });
    });
    rx.await.map_err(|_| anyhow!("arbiter stopped"))
}

/// Ask p50 (us) and tells/s from a node a to a node b ([`measure`]), each
/// on its own thread; `tune` adjusts b's configuration.
pub(super) fn pair(
    tune: impl FnOnce(&mut MeshConfig),
    n: impl Fn(u64) -> u64 + Send + 'static,
) -> Result<(f64, f64)> {
    actix::System::new().block_on(async move {
        let ca = Throwaway::new("bench");
        let threads = [Arbiter::new(), Arbiter::new()];
        let mut b_config = config(&ca, "b");
        tune(&mut b_config);
        let a = Node::start_on(&threads[0].handle(), config(&ca, "a")).await?;
        let b = Node::start_on(&threads[1].handle(), b_config).await?;
        let b2 = b.clone();
        on(&threads[1], move || swarm_cli::demo::expose_workload(&b2)).await??;
        a.connect(b.listen_addr()).await?;
        let target = b.id();
        let a2 = a.clone();
        let report = on_async(&threads[0], move || measure(a2, target, n)).await;
        a.shutdown();
        b.shutdown();
        for thread in &threads {
            thread.stop();
        }
        let report = report??;
        Ok((report.ask_rtt_p50_us, report.tell_msgs_per_s))
    })
}

/// Runs on node a's thread, so the caller pays no thread hop.
pub(super) async fn measure(
    a: Node,
    target: swarm_protocol::NodeId,
    n: impl Fn(u64) -> u64,
) -> Result<LinkReport> {
    let adder = a.remote::<Adder>(target, "adder");
    let counter = a.remote::<Counter>(target, "counter");

    // Ask round trips, 64-byte payload.
    let payload = vec![7u8; 64];
    for _ in 0..n(2_000) {
        adder
            .send(Echo {
                data: payload.clone(),
            })
            .await?;
    }
    let rounds = n(20_000) as usize;
    let mut rtts = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        adder
            .send(Echo {
                data: payload.clone(),
            })
            .await?;
        rtts.push(t.elapsed());
    }
    rtts.sort();
    let pct = |p: f64| rtts[((rtts.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
    let (ask_rtt_p50_us, ask_rtt_p99_us) = (pct(0.5), pct(0.99));

    // Tells: 64-byte messages, as fast as the link takes them.
    let tells = n(1_000_000);
    let sent = blast(&counter, tells, 0, 64).await?;
    let t = Instant::now();
    let sent2 = blast(&counter, tells, sent, 64).await?;
    wait_count(&counter, sent + sent2).await?;
    let tell_msgs_per_s = tells as f64 / t.elapsed().as_secs_f64();

    // Bulk: 1 MiB messages.
    let bulk = n(300);
    let before = counter.send(CounterState).await?.0;
    let t = Instant::now();
    blast(&counter, bulk, before, 1 << 20).await?;
    wait_count(&counter, before + bulk).await?;
    let bulk_mb_per_s = super::mb_per_s(bulk << 20, t.elapsed().as_secs_f64());
    // Keep the adder honest: it must still answer.
    adder.send(Add { a: 1, b: 1 }).await?;

    Ok(LinkReport {
        ask_rtt_p50_us,
        ask_rtt_p99_us,
        tell_msgs_per_s,
        bulk_mb_per_s,
        handshake_us: 0.0,
        idle_node_rss_mib: 0.0,
        raw_noise_rtt_p50_us: 0.0,
        raw_noise_msgs_per_s: 0.0,
        relayed_ask_rtt_p50_us: None,
        relayed_tell_msgs_per_s: None,
        relayed_bulk_mb_per_s: None,
        raw_tcp_hop_ratio: None,
    })
}

/// Sends `count` tells with sequence numbers from `first`; returns `count`.
pub(super) async fn blast(
    counter: &swarm::RemoteAddr<Counter>,
    count: u64,
    first: u64,
    size: usize,
) -> Result<u64> {
    let pad = vec![0u8; size.saturating_sub(12)];
    for seq in first..first + count {
        let msg = Bump {
            seq,
            pad: pad.clone(),
        };
        match counter.try_tell(msg) {
            Ok(()) => {}
            Err(TellError::Full(msg)) => counter.tell(msg).await.map_err(|e| anyhow!("{e}"))?,
            Err(e) => return Err(anyhow!("{e}")),
        }
    }
    Ok(count)
}

pub(super) async fn wait_count(counter: &swarm::RemoteAddr<Counter>, total: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (received, out_of_order) = counter.send(CounterState).await?;
        if out_of_order != 0 {
            return Err(anyhow!("{out_of_order} tells out of order"));
        }
        if received >= total {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(anyhow!("only {received} of {total} tells arrived"));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Median connect + handshake time from fresh client nodes.
async fn handshakes(ca: Throwaway, addr: SocketAddr, rounds: u64) -> Result<f64> {
    let mut times = Vec::new();
    for i in 0..rounds {
        let client = Node::start(config(&ca, &format!("client{i}"))).await?;
        let t = Instant::now();
        client.connect(addr).await?;
        times.push(t.elapsed());
        client.shutdown();
    }
    times.sort();
    Ok(times[times.len() / 2].as_secs_f64() * 1e6)
}

/// Starts an idle node process and reads its resident memory.
fn idle_rss(exe: &Path) -> Result<f64> {
    let dir = std::env::temp_dir().join(format!("swarm-bench-{}", std::process::id()));
    let mut cluster = swarm_cli::local::LocalCluster::start(exe, &dir, 1, &[])?;
    cluster.remove_dir_on_drop(true);
    let pid = cluster.nodes[0].child.id();
    // Let start-up allocations settle before reading.
    std::thread::sleep(Duration::from_millis(500));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("no /proc")?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS"))?;
    Ok(kib / 1024.0)
}

/// The platform's cost of one hop: `mib` MiB over bare TCP on loopback,
/// direct and then through a thread that reads and writes them on (the
/// least a relay does), as the ratio of the two throughputs.
fn raw_tcp_hop(mib: usize) -> Result<f64> {
    const CHUNK: usize = 256 * 1024;
    let total = mib << 20;
    let sink = |listener: TcpListener| {
        std::thread::spawn(move || -> std::io::Result<()> {
            let (mut s, _) = listener.accept()?;
            let mut buf = vec![0u8; CHUNK];
            while s.read(&mut buf)? > 0 {}
            Ok(())
        })
    };
    let send = |addr: SocketAddr| -> Result<f64> {
        let mut s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        let buf = vec![7u8; CHUNK];
        let t = Instant::now();
        for _ in 0..total / CHUNK {
            s.write_all(&buf)?;
        }
        drop(s);
        Ok(total as f64 / t.elapsed().as_secs_f64())
    };
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let listener = TcpListener::bind(loopback)?;
    let addr = listener.local_addr()?;
    let done = sink(listener);
    let direct = send(addr)?;
    done.join().map_err(|_| anyhow!("sink panicked"))??;
    let listener = TcpListener::bind(loopback)?;
    let dest = listener.local_addr()?;
    let done = sink(listener);
    let hop = TcpListener::bind(loopback)?;
    let hop_addr = hop.local_addr()?;
    let forward = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut from, _) = hop.accept()?;
        let mut to = TcpStream::connect(dest)?;
        to.set_nodelay(true)?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = from.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            to.write_all(buf.get(..n).unwrap_or_default())?;
        }
    });
    let relayed = send(hop_addr)?;
    forward
        .join()
        .map_err(|_| anyhow!("forwarder panicked"))??;
    done.join().map_err(|_| anyhow!("sink panicked"))??;
    Ok(relayed / direct)
}

/// The physical baseline: bare snow transport over a TCP socket pair.
fn raw_noise(rtt_rounds: u64, messages: u64) -> Result<(f64, f64)> {
    const PARAMS: &str = "Noise_XXpsk3_25519_AESGCM_SHA256";
    let psk = [9u8; 32];
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let builder = snow::Builder::new(PARAMS.parse()?);
        let key = builder.generate_keypair()?;
        let mut hs = builder
            .local_private_key(&key.private)?
            .psk(3, &psk)?
            .build_responder()?;
        let mut buf = vec![0u8; 65_535];
        let mut msg = vec![0u8; 65_535];
        let n = read_frame(&mut s, &mut buf)?;
        hs.read_message(&buf[..n], &mut msg)?;
        let n = hs.write_message(&[], &mut buf)?;
        write_frame(&mut s, &buf[..n])?;
        let n = read_frame(&mut s, &mut buf)?;
        hs.read_message(&buf[..n], &mut msg)?;
        let mut t = hs.into_transport_mode()?;
        for _ in 0..rtt_rounds {
            let n = read_frame(&mut s, &mut buf)?;
            let m = t.read_message(&buf[..n], &mut msg)?;
            let n = t.write_message(&msg[..m], &mut buf)?;
            write_frame(&mut s, &buf[..n])?;
        }
        // Throughput: decrypt everything, then acknowledge once.
        let mut reader = std::io::BufReader::with_capacity(1 << 20, s.try_clone()?);
        for _ in 0..messages {
            let n = read_frame(&mut reader, &mut buf)?;
            t.read_message(&buf[..n], &mut msg)?;
        }
        let n = t.write_message(b"done", &mut buf)?;
        write_frame(&mut s, &buf[..n])?;
        Ok(())
    });
    let mut c = TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    let builder = snow::Builder::new(PARAMS.parse()?);
    let key = builder.generate_keypair()?;
    let mut hs = builder
        .local_private_key(&key.private)?
        .psk(3, &psk)?
        .build_initiator()?;
    let mut buf = vec![0u8; 65_535];
    let mut msg = vec![0u8; 65_535];
    let n = hs.write_message(&[], &mut buf)?;
    write_frame(&mut c, &buf[..n])?;
    let n = read_frame(&mut c, &mut buf)?;
    hs.read_message(&buf[..n], &mut msg)?;
    let n = hs.write_message(&[], &mut buf)?;
    write_frame(&mut c, &buf[..n])?;
    let mut t = hs.into_transport_mode()?;
    let payload = [5u8; 64];
    let mut rtts = Vec::with_capacity(rtt_rounds as usize);
    for _ in 0..rtt_rounds {
        let start = Instant::now();
        let n = t.write_message(&payload, &mut buf)?;
        write_frame(&mut c, &buf[..n])?;
        let n = read_frame(&mut c, &mut buf)?;
        t.read_message(&buf[..n], &mut msg)?;
        rtts.push(start.elapsed());
    }
    rtts.sort();
    let rtt = rtts[rtts.len() / 2].as_secs_f64() * 1e6;
    let start = Instant::now();
    let mut out = Vec::with_capacity(1 << 20);
    for i in 0..messages {
        let n = t.write_message(&payload, &mut buf)?;
        out.extend_from_slice(&(n as u32).to_be_bytes());
        out.extend_from_slice(&buf[..n]);
        if out.len() > (1 << 20) - 256 || i + 1 == messages {
            c.write_all(&out)?;
            out.clear();
        }
    }
    let n = read_frame(&mut c, &mut buf)?;
    t.read_message(&buf[..n], &mut msg)?;
    let rate = messages as f64 / start.elapsed().as_secs_f64();
    server
        .join()
        .map_err(|_| anyhow!("baseline server panicked"))??;
    Ok((rtt, rate))
}

fn write_frame(s: &mut impl Write, bytes: &[u8]) -> Result<()> {
    let mut frame = Vec::with_capacity(bytes.len() + 4);
    frame.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    frame.extend_from_slice(bytes);
    s.write_all(&frame)?;
    Ok(())
}

fn read_frame(s: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    let slot = buf
        .get_mut(..len)
        .ok_or_else(|| anyhow!("frame too large"))?;
    s.read_exact(slot)?;
    Ok(len)
}
