//! Typed asks and tells between nodes in one process, each on its own
//! thread, over real TCP and Noise. DESIGN.md: "Per sender-receiver pair,
//! messages arrive in order or not at all. An ask has a timeout and fails
//! with a typed error when the link or the target dies."

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use swarm::{AskError, TellError};
use swarm_cli::demo::{
    checksum, Add, Adder, Bump, Count, Counter, CounterState, Echo, Forward, Relay,
};

use crate::util::{cluster, eventually};

#[actix_rt::test]
async fn two_nodes_ask_each_other_both_ways() {
    let (_ca, nodes) = cluster(2).await;
    let (a, b) = (&nodes[0].node, &nodes[1].node);
    let peer = a.connect(b.listen_addr()).await.unwrap();
    assert_eq!(peer.id, b.id());
    assert_eq!(peer.name, "n2");

    let on_b = a.remote::<Adder>(b.id(), "adder");
    assert_eq!(on_b.send(Add { a: 2, b: 3 }).await.unwrap(), 5);
    // The reverse direction reuses the same link.
    let on_a = b.remote::<Adder>(a.id(), "adder");
    assert_eq!(on_a.send(Add { a: 40, b: 2 }).await.unwrap(), 42);
    assert_eq!(a.peers().len(), 1);
    assert_eq!(b.peers().len(), 1);
    assert_eq!(on_b.send(Count).await.unwrap(), 1);
}

#[actix_rt::test]
async fn three_nodes_relay_asks_across_two_links() {
    let (_ca, nodes) = cluster(3).await;
    let (n1, n2, n3) = (&nodes[0].node, &nodes[1].node, &nodes[2].node);
    n1.connect(n2.listen_addr()).await.unwrap();
    n2.connect(n3.listen_addr()).await.unwrap();
    // n3 learned n2's address from the handshake; n1 learns n3's by dialing.
    n1.connect(n3.listen_addr()).await.unwrap();
    let relay_on_n2 = n1.remote::<Relay>(n2.id(), "relay");
    let (sum, via) = relay_on_n2
        .send(Forward {
            node: n3.id(),
            add: Add { a: 20, b: 22 },
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!((sum, via.as_str()), (42, "n3"));
}

#[actix_rt::test]
async fn local_target_is_called_without_a_link() {
    let (_ca, nodes) = cluster(1).await;
    let a = &nodes[0].node;
    let adder = a.remote::<Adder>(a.id(), "adder");
    assert_eq!(adder.send(Add { a: 1, b: 1 }).await.unwrap(), 2);
    adder.tell(Add { a: 1, b: 1 }).await.unwrap();
    assert!(a.peers().is_empty(), "no link for a local call");
}

#[actix_rt::test]
async fn unknown_actor_and_unregistered_message_fail_with_typed_errors() {
    let (_ca, nodes) = cluster(2).await;
    let (a, b) = (&nodes[0].node, &nodes[1].node);
    a.connect(b.listen_addr()).await.unwrap();
    let missing = a.remote::<Adder>(b.id(), "nobody");
    assert_eq!(
        missing.send(Add { a: 1, b: 1 }).await,
        Err(AskError::NoSuchActor {
            name: "nobody".into()
        })
    );
    // The counter is exposed, but does not accept Add: use the wrong type on purpose.
    let wrong = a.remote::<Adder>(b.id(), "counter");
    assert!(matches!(
        wrong.send(Add { a: 1, b: 1 }).await,
        Err(AskError::UnknownMessage { tag }) if tag == "demo.Add"
    ));
}

#[actix_rt::test]
async fn order_is_preserved_under_load() {
    let (_ca, nodes) = cluster(2).await;
    let (a, b) = (&nodes[0].node, &nodes[1].node);
    a.connect(b.listen_addr()).await.unwrap();
    let counter = a.remote::<Counter>(b.id(), "counter");
    const N: u64 = 20_000;
    for seq in 0..N {
        counter
            .tell(Bump {
                seq,
                pad: vec![0; 32],
            })
            .await
            .unwrap();
    }
    let done = eventually(Duration::from_secs(20), || async {
        counter.send(CounterState).await.unwrap().0 == N
    })
    .await;
    let (received, out_of_order) = counter.send(CounterState).await.unwrap();
    assert!(done, "received {received} of {N}");
    assert_eq!(out_of_order, 0);
}

#[actix_rt::test]
async fn ten_mib_message_arrives_intact() {
    let (_ca, nodes) = cluster(2).await;
    let (a, b) = (&nodes[0].node, &nodes[1].node);
    a.connect(b.listen_addr()).await.unwrap();
    let data: Vec<u8> = (0..10u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let expected = (data.len(), checksum(&data));
    let adder = a.remote::<Adder>(b.id(), "adder");
    let answer = adder
        .send_timeout(Echo { data }, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(answer, expected);
}

/// A message whose handler never answers.
#[derive(Serialize, Deserialize, Message)]
#[rtype(result = "()")]
struct Stall;
swarm::remote_message!(Stall => "test.Stall");

/// Never answers; counts the asks it received.
struct Staller(Arc<AtomicUsize>);
impl Actor for Staller {
    type Context = Context<Self>;
}
impl Handler<Stall> for Staller {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Stall, _: &mut Context<Self>) -> Self::Result {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(std::future::pending())
    }
}
swarm::remote_actor!(Staller: Stall);

#[actix_rt::test]
async fn ask_fails_with_typed_error_within_timeout_when_target_node_dies() {
    let (_ca, mut nodes) = cluster(2).await;
    let b = nodes.pop().unwrap();
    let a = nodes.pop().unwrap();
    let b_id = b.node.id();
    a.node.connect(b.node.listen_addr()).await.unwrap();
    let node_b = b.node.clone();
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    node_b.spawn("staller", move |_| Staller(counter)).unwrap();
    let staller = a.node.remote::<Staller>(b_id, "staller");
    let in_flight =
        actix_rt::spawn(async move { staller.send_timeout(Stall, Duration::from_secs(10)).await });
    // Let the ask reach b's actor, then kill b.
    assert!(
        eventually(Duration::from_secs(5), || async {
            received.load(std::sync::atomic::Ordering::SeqCst) == 1
        })
        .await
    );
    let adder = a.node.remote::<Adder>(b_id, "adder");
    let killed = Instant::now();
    b.kill();
    let result = in_flight.await.unwrap();
    assert_eq!(result, Err(AskError::LinkDown { node: b_id }));
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "failed at once, not at the timeout"
    );
    // A new ask cannot reach it either, and says so within its timeout.
    let started = Instant::now();
    let again = adder
        .send_timeout(Add { a: 1, b: 1 }, Duration::from_secs(2))
        .await;
    assert!(
        matches!(
            again,
            Err(AskError::Unreachable { .. }
                | AskError::LinkDown { .. }
                | AskError::Timeout { .. })
        ),
        "{again:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[actix_rt::test]
async fn try_tell_hands_the_message_back_when_no_link_is_up() {
    let (_ca, nodes) = cluster(2).await;
    let (a, b) = (&nodes[0].node, &nodes[1].node);
    // a knows b's address only after a handshake; before, nothing can be sent.
    let counter = a.remote::<Counter>(b.id(), "counter");
    match counter.try_tell(Bump {
        seq: 7,
        pad: vec![],
    }) {
        Err(TellError::Disconnected { msg, .. }) => assert_eq!(msg.seq, 7),
        other => panic!("expected Disconnected, got {other:?}"),
    }
    a.connect(b.listen_addr()).await.unwrap();
    counter
        .try_tell(Bump {
            seq: 8,
            pad: vec![],
        })
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            counter.send(CounterState).await.unwrap().0 == 1
        })
        .await
    );
}

#[actix_rt::test]
async fn simultaneous_dials_leave_one_link_on_each_side() {
    let (_ca, nodes) = cluster(2).await;
    let (a, b) = (&nodes[0].node, &nodes[1].node);
    let (ra, rb) = tokio::join!(a.connect(b.listen_addr()), b.connect(a.listen_addr()));
    ra.unwrap();
    rb.unwrap();
    // Both sides end with the same connection: the one a and b agree on.
    // (For a moment each may hold only the link it dialed, while the one
    // it accepted still shakes hands: poll for the settled state.)
    let settled = || {
        let (pa, pb) = (a.peers(), b.peers());
        pa.len() == 1 && pb.len() == 1 && pa[0].dialed != pb[0].dialed
    };
    assert!(eventually(Duration::from_secs(5), || async { settled() }).await);
    let (pa, pb) = (a.peers().remove(0), b.peers().remove(0));
    assert_ne!(
        pa.dialed, pb.dialed,
        "one side dialed the surviving link, the other accepted it"
    );
    let adder = a.remote::<Adder>(b.id(), "adder");
    assert_eq!(adder.send(Add { a: 1, b: 2 }).await.unwrap(), 3);
    let adder = b.remote::<Adder>(a.id(), "adder");
    assert_eq!(adder.send(Add { a: 1, b: 2 }).await.unwrap(), 3);
}

/// A message whose handler blocks its node's thread until the test lets go:
/// a consumer that stops reading.
#[derive(Debug, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
struct Block {
    #[serde(with = "serde_bytes")]
    pad: Vec<u8>,
}
swarm::remote_message!(Block => "test.Block");

struct Blocker {
    gate: std::sync::mpsc::Receiver<()>,
    handled: std::sync::Arc<std::sync::atomic::AtomicU64>,
}
impl Actor for Blocker {
    type Context = Context<Self>;
}
impl Handler<Block> for Blocker {
    type Result = ();
    fn handle(&mut self, _: Block, _: &mut Context<Self>) {
        if self
            .handled
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            == 0
        {
            let _ = self.gate.recv();
        }
    }
}
swarm::remote_actor!(Blocker: Block);

/// Node a (configured by the caller) linked to node b, which exposes a
/// [`Blocker`]: the first `Block` freezes b's thread until `gate` is sent to.
struct Stalled {
    a: crate::util::TestNode,
    b: crate::util::TestNode,
    gate: std::sync::mpsc::Sender<()>,
    handled: std::sync::Arc<std::sync::atomic::AtomicU64>,
    blocker: swarm::RemoteAddr<Blocker>,
}

async fn stalled(configure: impl FnOnce(&mut swarm::MeshConfig)) -> Stalled {
    let ca = swarm::credentials::Throwaway::new("test");
    let mut a_config = crate::util::config(&ca, "a");
    configure(&mut a_config);
    let a = crate::util::start(a_config).await;
    let b = crate::util::start(crate::util::config(&ca, "b")).await;
    let (gate, gate_rx) = std::sync::mpsc::channel();
    let handled = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (node_b, counter) = (b.node.clone(), handled.clone());
    node_b
        .spawn("blocker", move |_| Blocker {
            gate: gate_rx,
            handled: counter,
        })
        .unwrap();
    a.node.connect(b.node.listen_addr()).await.unwrap();
    let blocker = a.node.remote::<Blocker>(b.node.id(), "blocker");
    Stalled {
        a,
        b,
        gate,
        handled,
        blocker,
    }
}

#[actix_rt::test]
async fn tells_to_a_stalled_node_push_back_instead_of_buffering_without_bound() {
    let Stalled {
        a: _a,
        b: _b,
        gate: gate_tx,
        handled,
        blocker,
    } = stalled(|config| {
        config.link_queue_bytes = 1 << 20;
    })
    .await;
    let mut accepted = 0u64;
    let full = loop {
        match blocker.try_tell(Block {
            pad: vec![0; 64 * 1024],
        }) {
            Ok(()) => accepted += 1,
            Err(TellError::Full(msg)) => break msg,
            Err(e) => panic!("unexpected {e}"),
        }
        assert!(accepted < 100_000, "try_tell never pushed back");
        // Let the writer drain what the socket takes.
        tokio::task::yield_now().await;
    };
    assert_eq!(full.pad.len(), 64 * 1024, "the message comes back");
    // Bounded by the 1 MiB queue plus what the kernel's socket buffers hold.
    assert!(
        accepted * 64 * 1024 < 256 << 20,
        "accepted {accepted} messages"
    );
    gate_tx.send(()).unwrap();
    assert!(
        eventually(Duration::from_secs(20), || async {
            handled.load(std::sync::atomic::Ordering::SeqCst) == accepted
        })
        .await,
        "every accepted tell is delivered once the consumer resumes"
    );
}

#[actix_rt::test]
async fn ask_to_a_hung_node_fails_with_link_down_at_the_heartbeat_timeout() {
    let Stalled {
        a,
        b,
        gate: gate_tx,
        blocker,
        ..
    } = stalled(|config| {
        config.heartbeat_interval = Duration::from_millis(100);
        config.heartbeat_timeout = Duration::from_millis(600);
    })
    .await;
    // Freeze b's thread: its socket stays open but nothing answers.
    blocker.tell(Block { pad: Vec::new() }).await.unwrap();
    let started = Instant::now();
    let result = blocker
        .send_timeout(Block { pad: Vec::new() }, Duration::from_secs(30))
        .await;
    assert_eq!(result, Err(AskError::LinkDown { node: b.node.id() }));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let failed = || async { a.node.stats().links_failed >= 1 };
    assert!(
        eventually(Duration::from_secs(5), failed).await,
        "counted as a failed link"
    );
    gate_tx.send(()).unwrap();
}

#[actix_rt::test]
async fn idle_link_is_closed_and_redialed_on_next_use() {
    let ca = swarm::credentials::Throwaway::new("test");
    let mut a_config = crate::util::config(&ca, "a");
    a_config.heartbeat_interval = Duration::from_millis(50);
    a_config.idle_timeout = Duration::from_millis(300);
    let a = crate::util::start(a_config).await;
    let b = crate::util::start(crate::util::config(&ca, "b")).await;
    let (a, b) = (&a.node, &b.node);
    a.connect(b.listen_addr()).await.unwrap();
    let adder = a.remote::<Adder>(b.id(), "adder");
    assert_eq!(adder.send(Add { a: 1, b: 2 }).await.unwrap(), 3);
    assert!(
        eventually(Duration::from_secs(5), || async { a.peers().is_empty() }).await,
        "idle link closed"
    );
    assert!(eventually(Duration::from_secs(5), || async { b.peers().is_empty() }).await);
    // The next ask dials again, using the address learned in the handshake.
    assert_eq!(adder.send(Add { a: 2, b: 2 }).await.unwrap(), 4);
    assert_eq!(a.peers().len(), 1);
}

/// A message that refuses to be serialized: it can only travel locally.
#[derive(Debug, Deserialize, Message)]
#[rtype(result = "u32")]
struct LocalOnly(u32);
impl Serialize for LocalOnly {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "LocalOnly must not be serialized",
        ))
    }
}
swarm::remote_message!(LocalOnly => "test.LocalOnly");

struct Doubler;
impl Actor for Doubler {
    type Context = Context<Self>;
}
impl Handler<LocalOnly> for Doubler {
    type Result = u32;
    fn handle(&mut self, LocalOnly(n): LocalOnly, _: &mut Context<Self>) -> u32 {
        n * 2
    }
}
swarm::remote_actor!(Doubler: LocalOnly);

#[actix_rt::test]
async fn local_target_skips_serialization_and_remote_reports_encode_errors() {
    let (_ca, nodes) = cluster(2).await;
    let (a, b) = (&nodes[0].node, &nodes[1].node);
    a.spawn("doubler", |_| Doubler).unwrap();
    let local = a.remote::<Doubler>(a.id(), "doubler");
    assert_eq!(local.send(LocalOnly(21)).await.unwrap(), 42);
    local.tell(LocalOnly(1)).await.unwrap();

    b.connect(a.listen_addr()).await.unwrap();
    let remote = b.remote::<Doubler>(a.id(), "doubler");
    assert!(matches!(
        remote.send(LocalOnly(21)).await,
        Err(AskError::Encode { .. })
    ));
    match remote.tell(LocalOnly(5)).await {
        Err(TellError::Encode { msg, .. }) => assert_eq!(msg.0, 5, "the message comes back"),
        other => panic!("expected an encode error, got {other:?}"),
    }
    // The link is unharmed by the failed encodes.
    let adder = b.remote::<Adder>(a.id(), "adder");
    assert_eq!(adder.send(Add { a: 1, b: 1 }).await.unwrap(), 2);
}

#[actix_rt::test]
async fn slow_local_actor_does_not_make_the_link_time_out_its_peer() {
    let ca = swarm::credentials::Throwaway::new("test");
    let a = crate::util::start(crate::util::config(&ca, "a")).await;
    let mut b_config = crate::util::config(&ca, "b");
    b_config.heartbeat_interval = Duration::from_millis(50);
    b_config.heartbeat_timeout = Duration::from_millis(300);
    let b = crate::util::start(b_config).await;
    // The blocker runs on a thread of its own, so b's links keep running
    // while its mailbox is full and the link's reader waits.
    let actor_thread = Arbiter::new();
    let (gate_tx, gate_rx) = std::sync::mpsc::channel();
    let handled = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = handled.clone();
    let blocker = crate::util::on(&actor_thread, move || {
        Blocker {
            gate: gate_rx,
            handled: counter,
        }
        .start()
    })
    .await;
    b.node.expose("blocker", blocker).unwrap();
    a.node.connect(b.node.listen_addr()).await.unwrap();
    let remote = a.node.remote::<Blocker>(b.node.id(), "blocker");
    for _ in 0..100 {
        remote.tell(Block { pad: Vec::new() }).await.unwrap();
    }
    // Three heartbeat timeouts pass with b's reader stuck on the mailbox.
    let waited = Instant::now();
    eventually(Duration::from_secs(3), || async {
        waited.elapsed() > Duration::from_millis(900) || b.node.stats().links_failed > 0
    })
    .await;
    assert_eq!(b.node.stats().links_failed, 0, "b kept the link to a");
    gate_tx.send(()).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            handled.load(std::sync::atomic::Ordering::SeqCst) == 100
        })
        .await
    );
    assert_eq!(a.node.peers().len(), 1);
    actor_thread.stop();
}

/// A starved process's reactor hands out readiness in batches, so a
/// link's liveness timer can run before its reader learnt that bytes wait.
/// Here a's reader never hears it (`Faults::hold_reads`): every silence
/// verdict first has it read what waits, so b's pongs and tells keep the
/// link up through several heartbeat timeouts and arrive in order.
#[actix_rt::test]
async fn a_link_whose_reader_lags_reads_what_waits_before_calling_its_peer_silent() {
    let ca = swarm::credentials::Throwaway::new("test");
    let faults = Arc::new(swarm::Faults::default());
    let mut a_config = crate::util::config(&ca, "a");
    a_config.heartbeat_interval = Duration::from_millis(50);
    a_config.heartbeat_timeout = Duration::from_millis(300);
    a_config.faults = Some(faults.clone());
    let a = crate::util::start(a_config).await;
    let b = crate::util::start(crate::util::config(&ca, "b")).await;
    b.node.connect(a.node.listen_addr()).await.unwrap();
    let on_a = b.node.remote::<Adder>(a.node.id(), "adder");
    assert_eq!(on_a.send(Add { a: 1, b: 2 }).await.unwrap(), 3);

    faults.hold_reads(b.node.id());
    let held = Instant::now();
    let counter = b.node.remote::<Counter>(a.node.id(), "counter");
    const N: u64 = 100;
    for seq in 0..N {
        counter
            .tell(Bump {
                seq,
                pad: Vec::new(),
            })
            .await
            .unwrap();
    }
    let local = a.node.remote::<Counter>(a.node.id(), "counter");
    // Three heartbeat timeouts with a's reader held, and every tell in.
    let done = eventually(Duration::from_secs(10), || async {
        a.node.stats().links_failed > 0
            || held.elapsed() > Duration::from_millis(900)
                && local.send(CounterState).await.unwrap().0 == N
    })
    .await;
    assert!(done, "the tells arrived");
    assert_eq!(a.node.stats().links_failed, 0, "a kept its link to b");
    assert_eq!(b.node.stats().links_failed, 0, "b kept its link to a");
    let (received, out_of_order) = local.send(CounterState).await.unwrap();
    assert_eq!((received, out_of_order), (N, 0));

    faults.unblock_direct(b.node.id());
    assert_eq!(on_a.send(Add { a: 2, b: 2 }).await.unwrap(), 4);
    assert_eq!(a.node.peers().len(), 1);
    assert_eq!(a.node.stats().links_failed, 0);
}

/// Answers only once the gate opens.
#[derive(Debug, Serialize, Deserialize, Message)]
#[rtype(result = "u32")]
struct Wait(u32);
swarm::remote_message!(Wait => "test.Wait");

struct Gate {
    open: tokio::sync::watch::Receiver<bool>,
}
impl Actor for Gate {
    type Context = Context<Self>;
}
impl Handler<Wait> for Gate {
    type Result = ResponseFuture<u32>;
    fn handle(&mut self, Wait(n): Wait, _: &mut Context<Self>) -> Self::Result {
        let mut open = self.open.clone();
        Box::pin(async move {
            let _ = open.wait_for(|o| *o).await;
            n
        })
    }
}
swarm::remote_actor!(Gate: Wait);

#[actix_rt::test]
async fn asks_beyond_the_in_flight_limit_are_refused_and_the_link_recovers() {
    let ca = swarm::credentials::Throwaway::new("test");
    let a = crate::util::start(crate::util::config(&ca, "a")).await;
    let mut b_config = crate::util::config(&ca, "b");
    b_config.max_inbound_asks = 8;
    let b = crate::util::start(b_config).await;
    let (open_tx, open_rx) = tokio::sync::watch::channel(false);
    let node_b = b.node.clone();
    node_b
        .spawn("gate", move |_| Gate { open: open_rx })
        .unwrap();
    a.node.connect(b.node.listen_addr()).await.unwrap();
    let gate = a.node.remote::<Gate>(b.node.id(), "gate");
    let asks: Vec<_> = (0..20)
        .map(|n| {
            let gate = gate.clone();
            actix_rt::spawn(
                async move { gate.send_timeout(Wait(n), Duration::from_secs(30)).await },
            )
        })
        .collect();
    // Refusals come back at once, while eight asks still wait at the gate
    // (the gate opens only once the twelve refusals are back, so no slot
    // is freed early).
    assert!(
        eventually(Duration::from_secs(10), || async {
            asks.iter().filter(|ask| ask.is_finished()).count() == 12
        })
        .await,
        "twelve refusals did not come back while the gate was closed"
    );
    let mut pending = Vec::new();
    for ask in asks {
        if ask.is_finished() {
            assert!(matches!(ask.await.unwrap(), Err(AskError::Refused { .. })));
        } else {
            pending.push(ask);
        }
    }
    open_tx.send(true).unwrap();
    let mut answered = Vec::new();
    for ask in pending {
        answered.push(ask.await.unwrap().expect("an admitted ask is answered"));
    }
    assert_eq!(answered.len(), 8, "the limit admits exactly eight");
    // Slots are free again once the answers are sent.
    let adder = a.node.remote::<Adder>(b.node.id(), "adder");
    assert_eq!(adder.send(Add { a: 1, b: 1 }).await.unwrap(), 2);
    assert_eq!(gate.send(Wait(99)).await.unwrap(), 99);
}
