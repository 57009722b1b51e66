//! Leaks and unbounded paths: each test fails without the fix it names.
//! STYLE.md: "Every future that registers something (a pending ask, an
//! outstanding count) unregisters it in a drop guard, so a caller that
//! gives up leaks nothing."

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use swarm::{AskError, DialError, TellError};
use swarm_cli::demo::{Add, Adder, Bump, Counter};

use crate::util::{cluster, config, eventually, members, start};

/// Never answers.
#[derive(Serialize, Deserialize, Message)]
#[rtype(result = "()")]
struct Hang;
swarm::remote_message!(Hang => "leaks.Hang");

struct Hanger;
impl Actor for Hanger {
    type Context = Context<Self>;
}
impl Handler<Hang> for Hanger {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Hang, _: &mut Context<Self>) -> Self::Result {
        Box::pin(std::future::pending())
    }
}
swarm::remote_actor!(Hanger: Hang);

#[actix_rt::test]
async fn a_dropped_ask_future_forgets_its_pending_entry_at_once() {
    let (_ca, nodes) = cluster(2).await;
    let (a, b) = (&nodes[0].node, &nodes[1].node);
    b.spawn("hanger", |_| Hanger).unwrap();
    a.connect(b.listen_addr()).await.unwrap();
    let hanger = a.remote::<Hanger>(b.id(), "hanger");
    for _ in 0..50 {
        // The caller gives up long before the ask's own 60 s timeout.
        let gave_up = tokio::time::timeout(
            Duration::from_millis(5),
            hanger.send_timeout(Hang, Duration::from_secs(60)),
        )
        .await;
        assert!(gave_up.is_err());
    }
    let pending = a.peers().first().map(|p| p.pending_asks);
    assert_eq!(pending, Some(0), "abandoned asks stay registered");
}

#[actix_rt::test]
async fn a_dropped_service_request_does_not_stay_outstanding() {
    let (_ca, nodes) = members(2).await;
    let (client, server) = (&nodes[0].node, &nodes[1].node);
    server.spawn("hanger", |_| Hanger).unwrap();
    let cluster = server.cluster().unwrap();
    cluster.register_service("hang", "hanger").await.unwrap();
    let service = client.cluster().unwrap().service::<Hanger>("hang");
    assert!(
        eventually(Duration::from_secs(10), || async {
            !service.instances().is_empty()
        })
        .await
    );
    for _ in 0..20 {
        let gave_up = tokio::time::timeout(Duration::from_millis(5), service.send(Hang)).await;
        assert!(gave_up.is_err());
    }
    let instance = service.instances().remove(0);
    assert_eq!(instance.sent(), 20);
    assert_eq!(
        instance.outstanding(),
        0,
        "abandoned requests skew the balancer"
    );
}

/// A listener that never accepts, with its accept queue full: the kernel
/// drops further SYNs, so a connect to it hangs until the caller gives up.
struct BlackHole {
    addr: SocketAddr,
    _listener: TcpListener,
    _queued: Vec<TcpStream>,
}

fn black_hole_at(addr: SocketAddr) -> std::io::Result<BlackHole> {
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    let mut queued = Vec::new();
    // std listens with a backlog of 128; fill it (and a margin).
    for _ in 0..200 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(50)) {
            Ok(stream) => queued.push(stream),
            Err(_) => break,
        }
    }
    Ok(BlackHole {
        addr,
        _listener: listener,
        _queued: queued,
    })
}

#[actix_rt::test]
async fn connect_to_a_black_hole_fails_within_the_handshake_timeout() {
    let ca = swarm::credentials::Throwaway::new("test");
    let mut c = config(&ca, "a");
    c.handshake_timeout = Duration::from_millis(500);
    let a = start(c).await;
    let hole = black_hole_at("127.0.0.1:0".parse().unwrap()).unwrap();
    let started = Instant::now();
    // Without a deadline on the TCP connect, this waits for the kernel's
    // SYN retries (about two minutes).
    let result = tokio::time::timeout(Duration::from_secs(10), a.node.connect(hole.addr)).await;
    let err = result.expect("connect gave up by itself").unwrap_err();
    assert_eq!(err.cause, DialError::Timeout(Duration::from_millis(500)));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[actix_rt::test]
async fn try_tell_retries_start_one_background_dial_not_one_each() {
    let (_ca, mut nodes) = cluster(2).await;
    let b = nodes.pop().unwrap();
    let a = nodes.pop().unwrap();
    a.node.connect(b.node.listen_addr()).await.unwrap();
    let counter = a.node.remote::<Counter>(b.node.id(), "counter");
    let b_addr = b.node.listen_addr();
    b.kill();
    assert!(
        eventually(Duration::from_secs(5), || async {
            a.node.peers().is_empty()
        })
        .await
    );
    // b's address (still in a's address book) now leads into a black hole:
    // a dial to it hangs until the handshake timeout.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    let hole = loop {
        poll.tick().await;
        match black_hole_at(b_addr) {
            Ok(hole) => break hole,
            Err(e) => assert!(Instant::now() < deadline, "cannot rebind {b_addr}: {e}"),
        }
    };
    let before = a.node.stats().background_dials;
    for seq in 0..10_000 {
        match counter.try_tell(Bump {
            seq,
            pad: Vec::new(),
        }) {
            Err(TellError::Disconnected { msg, .. }) => assert_eq!(msg.seq, seq),
            other => panic!("expected Disconnected, got {other:?}"),
        }
    }
    let started = a.node.stats().background_dials - before;
    assert_eq!(started, 1, "each retry started a dial of its own");
    assert_eq!(hole.addr, b_addr);
}

#[actix_rt::test]
async fn local_targets_fail_typed_when_missing_or_of_another_type() {
    let (_ca, nodes) = cluster(1).await;
    let a = &nodes[0].node;
    let missing = a.remote::<Adder>(a.id(), "nobody");
    assert_eq!(
        missing.send(Add { a: 1, b: 1 }).await.unwrap_err(),
        AskError::NoSuchActor {
            name: "nobody".into()
        }
    );
    match missing.try_tell(Add { a: 1, b: 1 }) {
        Err(TellError::Disconnected {
            cause: AskError::NoSuchActor { .. },
            ..
        }) => {}
        other => panic!("expected NoSuchActor, got {other:?}"),
    }
    // "counter" is a Counter: an Add to it fails as it would from another node.
    let wrong = a.remote::<Adder>(a.id(), "counter");
    assert_eq!(
        wrong.send(Add { a: 1, b: 1 }).await.unwrap_err(),
        AskError::UnknownMessage {
            tag: "demo.Add".into()
        }
    );
}
