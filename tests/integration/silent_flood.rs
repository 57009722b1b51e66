//! Connections that never send a byte, spread over many loopback addresses
//! (each under the per-source bound), against a node process: new peers
//! still connect, each within 2 s. DESIGN.md, "Failure model": a hostile
//! member (or anyone who can reach the port) cannot keep members from
//! connecting by holding idle connections.
//!
//! The node runs as a child process so that the flood's sockets and the
//! node's accepted ones are counted against two processes' fd limits.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::processes::LoggedNode;
use crate::util::{config, eventually, start};

#[actix_rt::test]
async fn new_peers_connect_within_2s_while_1000_silent_connections_from_100_addresses_are_held() {
    let report = new_peers_during_a_silent_flood("silent1k", 100, 10, 5).await;
    report.assert_all_within(Duration::from_secs(2));
}

/// What the new peers saw.
pub(crate) struct Report {
    /// How long each new peer's connect took, and how it ended.
    pub(crate) peers: Vec<(Duration, Result<(), String>)>,
}

impl Report {
    /// Panics unless every peer connected within `bound`.
    pub(crate) fn assert_all_within(&self, bound: Duration) {
        let failed: Vec<_> = self
            .peers
            .iter()
            .filter(|(took, result)| result.is_err() || *took >= bound)
            .collect();
        assert!(
            failed.is_empty(),
            "{} of {} new peers failed or took {bound:?} or more: {failed:?}",
            failed.len(),
            self.peers.len()
        );
    }
}

/// Starts a node process, holds `addresses` × `per_address` silent
/// connections to it from 127.0.x.y (reopening each one the node closes),
/// and, once every one of them was opened, connects `peers` new in-process
/// nodes to it one after the other, timing each. Prints the figures.
pub(crate) async fn new_peers_during_a_silent_flood(
    name: &str,
    addresses: usize,
    per_address: usize,
    peers: usize,
) -> Report {
    let total = addresses * per_address;
    // The flood's sockets here, the accepted ones in the node process (which
    // inherits this limit), and room for everything else.
    let needed = total + 1_000;
    let limit = open_files_limit();
    assert!(
        limit >= needed,
        "this test holds {total} sockets in this process and {total} in the node's: \
         it needs `ulimit -n` of at least {needed} (it is {limit}); raise it and rerun"
    );
    let node = LoggedNode::start(name, "", "warn");
    let addr: SocketAddr = node.addr.parse().expect("the node's address");
    let flood = SilentFlood::start(addr, addresses, per_address);
    let opened_all = eventually(Duration::from_secs(120), || async {
        flood.connected() == total || flood.error().is_some()
    })
    .await;
    if let Some(error) = flood.error() {
        panic!("the flood could not open its connections: {error}");
    }
    assert!(
        opened_all,
        "the flood opened {} of {total} connections",
        flood.connected()
    );
    let mut report = Report { peers: Vec::new() };
    for i in 0..peers {
        let peer = start(config(&node.ca, &format!("peer{i}"))).await;
        let started = Instant::now();
        let result = peer.node.connect(addr).await;
        let took = started.elapsed();
        report
            .peers
            .push((took, result.map(|_| ()).map_err(|e| e.to_string())));
        peer.kill();
    }
    let held = flood.open();
    drop(flood);
    let mut times: Vec<Duration> = report.peers.iter().map(|(t, _)| *t).collect();
    times.sort();
    let failed = report.peers.iter().filter(|(_, r)| r.is_err()).count();
    eprintln!(
        "{name}: {total} silent connections from {addresses} addresses ({held} open at the end); \
         {peers} new peers: p50 {:?}, max {:?}, {failed} failed; all: {times:?}",
        times.get(times.len() / 2).copied().unwrap_or_default(),
        times.last().copied().unwrap_or_default(),
    );
    report
}

/// Connections that never send a byte, from many loopback addresses, each
/// reopened (at most every 100 ms) when the node closes it; all closed on
/// drop. Runs on its own thread and runtime.
struct SilentFlood {
    stop: tokio::sync::watch::Sender<bool>,
    /// Connections opened at least once.
    connected: Arc<AtomicUsize>,
    /// Connections open now.
    open: Arc<AtomicUsize>,
    /// What stopped the flood from opening a connection (out of fds).
    error: Arc<Mutex<Option<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentFlood {
    fn start(target: SocketAddr, addresses: usize, per_address: usize) -> Self {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let connected = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let error = Arc::new(Mutex::new(None));
        let thread = std::thread::spawn({
            let (connected, open, error) = (connected.clone(), open.clone(), error.clone());
            move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let mut tasks = Vec::new();
                    for a in 0..addresses {
                        // 127.0.1.1, 127.0.1.2, ...: never 127.0.0.1, where the peers dial from.
                        let source = IpAddr::V4(Ipv4Addr::new(
                            127,
                            0,
                            1 + (a / 250) as u8,
                            1 + (a % 250) as u8,
                        ));
                        for _ in 0..per_address {
                            tasks.push(tokio::spawn(hold(
                                source,
                                target,
                                stopped.clone(),
                                connected.clone(),
                                open.clone(),
                                error.clone(),
                            )));
                        }
                    }
                    for task in tasks {
                        let _ = task.await;
                    }
                });
            }
        });
        Self {
            stop,
            connected,
            open,
            error,
            thread: Some(thread),
        }
    }

    fn connected(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn error(&self) -> Option<String> {
        self.error.lock().unwrap().clone()
    }
}

impl Drop for SilentFlood {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One silent connection from `source`, reopened whenever the node closes
/// it, until `stop` is set.
async fn hold(
    source: IpAddr,
    target: SocketAddr,
    mut stop: tokio::sync::watch::Receiver<bool>,
    connected: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    error: Arc<Mutex<Option<String>>>,
) {
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = true;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = pace.tick() => {}
        }
        let socket = match tokio::net::TcpSocket::new_v4()
            .and_then(|s| s.bind(SocketAddr::new(source, 0)).map(|()| s))
        {
            Ok(socket) => socket,
            Err(e) => {
                error
                    .lock()
                    .unwrap()
                    .get_or_insert(format!("socket from {source}: {e}"));
                return;
            }
        };
        let mut stream = tokio::select! {
            _ = stop.changed() => return,
            connect = socket.connect(target) => match connect {
                Ok(stream) => stream,
                // Refused or reset while the node is busy: try again.
                Err(_) => continue,
            },
        };
        if std::mem::take(&mut first) {
            connected.fetch_add(1, Ordering::Relaxed);
        }
        open.fetch_add(1, Ordering::Relaxed);
        // Send nothing; wait until the node closes it.
        let mut byte = [0u8; 1];
        let stopped = tokio::select! {
            _ = stop.changed() => true,
            _ = stream.read(&mut byte) => false,
        };
        open.fetch_sub(1, Ordering::Relaxed);
        if stopped {
            return;
        }
    }
}

/// This process's soft limit on open files (`ulimit -n`), from
/// `/proc/self/limits`.
fn open_files_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(usize::MAX)
}
