//! Bad input over real sockets: each is refused with a logged reason, no
//! byte reaches an actor, and the node keeps serving its good peers.
//! DESIGN.md: "No unauthenticated byte reaches an actor. No malformed byte
//! panics a node." and "A node needs BOTH the secret and a valid certificate."

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use swarm::credentials::{issue, random32, Throwaway};
use swarm::protocol::{
    decode_frame, Decoded, Handshake, HandshakeConfig, HandshakeError, NodeKey, TrustStore,
};
use swarm_cli::demo::{Add, Adder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::{cluster, config, eventually, start};

/// Drives a client handshake by hand over TCP; returns the client's error,
/// or "closed" if the server hung up first.
async fn raw_handshake(addr: SocketAddr, config: HandshakeConfig) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut hs = Handshake::initiator(Arc::new(config)).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    loop {
        while let Some(frame) = hs.poll_transmit() {
            if stream.write_all(&frame).await.is_err() {
                return Err("closed".into());
            }
        }
        if hs.is_established() {
            return Ok(());
        }
        let consumed = loop {
            match decode_frame(&buf, 65_535).map_err(|e| e.to_string())? {
                Decoded::Frame { payload, consumed } => {
                    hs.handle_frame(payload, swarm::credentials::unix_now())
                        .map_err(|e: HandshakeError| e.to_string())?;
                    break consumed;
                }
                Decoded::Incomplete { .. } => {
                    let mut chunk = [0u8; 4096];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return Err("closed".into()),
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            }
        };
        buf.drain(..consumed);
    }
}

/// Waits until the server closes the socket; true if it did within 5 s.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut sink = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[actix_rt::test]
async fn garbage_from_raw_clients_does_not_disturb_traffic_between_good_nodes() {
    let ca = Throwaway::new("test");
    let a = start(config(&ca, "a")).await;
    let mut b_config = config(&ca, "b");
    b_config.handshake_timeout = Duration::from_millis(500);
    let b = start(b_config).await;
    let (a, b) = (&a.node, &b.node);
    a.connect(b.listen_addr()).await.unwrap();
    let adder = a.remote::<Adder>(b.id(), "adder");

    let target = b.listen_addr();
    let mut garbage = TcpStream::connect(target).await.unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut oversized = TcpStream::connect(target).await.unwrap();
    oversized
        .write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3])
        .await
        .unwrap();
    let mut truncated = TcpStream::connect(target).await.unwrap();
    truncated
        .write_all(&[0, 0, 0, 48, 1, 2, 3, 4])
        .await
        .unwrap();
    let mut silent = TcpStream::connect(target).await.unwrap();

    // Traffic between the good nodes keeps flowing meanwhile.
    for i in 0..200 {
        assert_eq!(adder.send(Add { a: i, b: 1 }).await.unwrap(), i + 1);
    }
    assert!(
        closed_by_server(&mut garbage).await,
        "garbage client closed"
    );
    assert!(
        closed_by_server(&mut oversized).await,
        "oversized length prefix closed"
    );
    truncated.shutdown().await.unwrap();
    assert!(
        closed_by_server(&mut silent).await,
        "silent client closed by the handshake timeout"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            b.stats().handshakes_refused >= 4
        })
        .await,
        "refusals counted: {:?}",
        b.stats()
    );
    assert_eq!(b.stats().tells_dropped, 0);
    assert_eq!(adder.send(Add { a: 1, b: 1 }).await.unwrap(), 2);
    assert_eq!(b.peers().len(), 1, "only the good peer has a link");
}

#[actix_rt::test]
async fn wrong_join_secret_is_refused_and_the_node_keeps_serving() {
    let (ca, nodes) = cluster(2).await;
    let (a, b) = (&nodes[0].node, &nodes[1].node);
    a.connect(b.listen_addr()).await.unwrap();
    let mut intruder = ca.node("intruder", &["worker"]);
    intruder.join_secret = random32();
    assert_eq!(
        raw_handshake(b.listen_addr(), intruder).await,
        Err("closed".into())
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            b.stats().handshakes_refused == 1
        })
        .await
    );
    let adder = a.remote::<Adder>(b.id(), "adder");
    assert_eq!(adder.send(Add { a: 1, b: 2 }).await.unwrap(), 3);
}

#[actix_rt::test]
async fn each_bad_certificate_is_refused_over_tcp() {
    let (ca, nodes) = cluster(1).await;
    let b = &nodes[0].node;
    let mut cases: Vec<(&str, HandshakeConfig)> = Vec::new();

    // A certificate from another CA, with the right join secret.
    let mut foreign = Throwaway::new("test").node("foreign", &["worker"]);
    foreign.join_secret = ca.secret;
    foreign.trust = Arc::clone(&ca.trust);
    cases.push(("foreign CA", foreign));

    // An expired certificate (zero days of validity).
    let mut expired = ca.node("expired", &["worker"]);
    expired.cert = issue(&ca.ca, &expired.key, "expired", &[], 0, 77);
    cases.push(("expired", expired));

    // A certificate whose key is not the key proven in the handshake.
    let mut stolen = ca.node("thief", &["worker"]);
    stolen.key = NodeKey::from_secret(random32());
    cases.push(("key mismatch", stolen));

    // Another protocol version.
    let mut future = ca.node("future", &["worker"]);
    future.version = 99;
    cases.push(("version", future));

    for (i, (what, config)) in cases.into_iter().enumerate() {
        let result = raw_handshake(b.listen_addr(), config).await;
        assert!(result.is_err(), "{what}: accepted");
        if what == "version" {
            assert!(
                result.as_ref().unwrap_err().contains("version mismatch"),
                "{what}: the client learns why: {result:?}"
            );
        }
        let expected = i as u64 + 1;
        assert!(
            eventually(Duration::from_secs(5), || async {
                b.stats().handshakes_refused == expected
            })
            .await,
            "{what}: refusal counted"
        );
    }
    assert!(b.peers().is_empty());
}

#[actix_rt::test]
async fn revoked_certificate_is_refused() {
    let ca = Throwaway::new("test");
    let client = ca.node("revoked", &["worker"]);
    let trust = TrustStore::clone(&ca.trust);
    trust.revoke([client.cert.body().serial]);
    let mut server_config = config(&ca, "server");
    server_config.handshake.trust = Arc::new(trust);
    let server = start(server_config).await;
    assert_eq!(
        raw_handshake(server.node.listen_addr(), client).await,
        Err("closed".into())
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            server.node.stats().handshakes_refused == 1
        })
        .await
    );
}

#[actix_rt::test]
async fn node_refuses_to_dial_a_peer_of_another_cluster() {
    let ca = Throwaway::new("test");
    let a = start(config(&ca, "a")).await;
    let other = Throwaway::new("other");
    let b = start(config(&other, "b")).await;
    let err = a.node.connect(b.node.listen_addr()).await.unwrap_err();
    assert_eq!(err.addr, b.node.listen_addr());
    assert!(
        matches!(
            err.cause,
            swarm::DialError::Handshake(swarm::HandshakeFailure::Refused(
                swarm::protocol::HandshakeError::ClusterMismatch { .. }
            ))
        ),
        "{err}"
    );
    assert!(a.node.peers().is_empty() && b.node.peers().is_empty());
}

/// Keeps `n` connections from `source` open to `target` that send `first`
/// (nothing, or the start of a frame) and then nothing more, reopening each
/// one the node closes, until `stop` is set.
fn idle_flood(
    source: std::net::IpAddr,
    target: SocketAddr,
    n: usize,
    first: &'static [u8],
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for _ in 0..n {
                let (stop, opened) = (stop.clone(), opened.clone());
                tasks.push(tokio::spawn(async move {
                    // Reconnects at most every 10 ms per connection.
                    let mut pace = tokio::time::interval(Duration::from_millis(10));
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        pace.tick().await;
                        let socket = tokio::net::TcpSocket::new_v4().unwrap();
                        socket.bind(SocketAddr::new(source, 0)).unwrap();
                        let Ok(mut stream) = socket.connect(target).await else {
                            continue;
                        };
                        opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if stream.write_all(first).await.is_err() {
                            continue;
                        }
                        // Hold it until the node closes it (or the flood stops).
                        let mut buf = [0u8; 64];
                        let _ =
                            tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf))
                                .await;
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            match tokio::time::timeout(
                                Duration::from_millis(100),
                                stream.read(&mut buf),
                            )
                            .await
                            {
                                Ok(Ok(0)) | Ok(Err(_)) => break,
                                _ => {}
                            }
                        }
                    }
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
            opened.load(std::sync::atomic::Ordering::Relaxed)
        })
    })
}

#[actix_rt::test]
async fn a_client_holding_idle_connections_cannot_lock_other_peers_out() {
    let ca = Throwaway::new("test");
    let a = start(config(&ca, "a")).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // 300 silent connections from another loopback address: more than the
    // global bound of 256 handshakes.
    let flood = idle_flood(
        "127.0.0.2".parse().unwrap(),
        a.node.listen_addr(),
        300,
        b"",
        stop.clone(),
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            a.node.stats().handshakes_refused > 100
        })
        .await,
        "the flood did not start"
    );
    // New peers from elsewhere still get in, again and again.
    for i in 0..3 {
        let b = start(config(&ca, &format!("b{i}"))).await;
        let started = std::time::Instant::now();
        let peer = b.node.connect(a.node.listen_addr()).await;
        assert!(peer.is_ok(), "locked out by the flood: {peer:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        b.kill();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(flood.join().unwrap() >= 300);
}

#[actix_rt::test]
async fn an_overloaded_node_tells_the_dialer_it_is_overloaded() {
    let ca = Throwaway::new("test");
    let mut c = config(&ca, "a");
    c.max_pending_handshakes = 2;
    c.handshake_timeout = Duration::from_secs(30);
    let a = start(c).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Two connections that sent the first byte of a frame take both
    // handshake slots (silent ones would take none).
    let flood = idle_flood(
        "127.0.0.2".parse().unwrap(),
        a.node.listen_addr(),
        2,
        &[0],
        stop.clone(),
    );
    let b = start(config(&ca, "b")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    let err = loop {
        poll.tick().await;
        match b.node.connect(a.node.listen_addr()).await {
            Err(e) => break e,
            // The flood's connections were not accepted yet.
            Ok(_) => {
                assert!(std::time::Instant::now() < deadline, "never refused");
                b.node.shutdown();
            }
        }
    };
    assert_eq!(
        err.cause,
        swarm::DialError::Handshake(swarm::HandshakeFailure::ClosedUnanswered)
    );
    assert!(err.to_string().contains("overloaded"), "{err}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flood.join().unwrap();
}
