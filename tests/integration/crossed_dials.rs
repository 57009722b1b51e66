//! Two nodes that dial each other at the same moment: each side keeps one
//! of the two links (the one dialed by the lower id) and hands over what
//! the other carried. Per sender-receiver pair, every tell arrives once and
//! in order, and no ask fails, however the two handshakes interleave.

use std::time::Duration;

use swarm::Node;
use swarm_cli::demo::{Add, Adder, Bump, Counter, CounterState};

use crate::util::{config, eventually, start};

/// Asks each side sends per round, alongside its tells.
const ASKS: usize = 8;

/// Sends `tells` tells numbered from `first` to `to`'s counter (one every
/// `pace`, if given), and `ASKS` asks alongside; returns the asks (or the
/// tell) that failed.
async fn burst(
    from: Node,
    to: swarm::NodeId,
    first: u64,
    tells: u64,
    pace: Option<Duration>,
) -> Vec<String> {
    let counter = from.remote::<Counter>(to, "counter");
    let adder = from.remote::<Adder>(to, "adder");
    let asks = actix_rt::spawn(async move {
        let mut failed = Vec::new();
        for i in 0..ASKS as u64 {
            match adder.send(Add { a: i, b: 1 }).await {
                Ok(sum) if sum == i + 1 => {}
                other => failed.push(format!("{other:?}")),
            }
        }
        failed
    });
    let mut tick = pace.map(tokio::time::interval);
    for seq in first..first + tells {
        if let Some(tick) = &mut tick {
            tick.tick().await;
        }
        let bump = Bump {
            seq,
            pad: Vec::new(),
        };
        if let Err(e) = counter.tell(bump).await {
            return vec![format!("tell {seq} refused: {e}")];
        }
    }
    asks.await.unwrap()
}

/// Rounds in which two nodes start sending to each other at once with no
/// link between them; `late` makes the lower id's node hand the links it
/// accepts to its router that much later. Fails at the first round that
/// loses, doubles or reorders a tell or fails an ask.
async fn crossed_rounds(rounds: u64, tells: u64, pace: Option<Duration>, late: Option<Duration>) {
    let ca = swarm::credentials::Throwaway::new("test");
    let faults = std::sync::Arc::new(swarm::Faults::default());
    // Idle links close fast, so that every round starts with no link.
    let quick = |name: &str| {
        let mut c = config(&ca, name);
        c.idle_timeout = Duration::from_millis(150);
        c
    };
    let (mut c1, mut c2) = (quick("n1"), quick("n2"));
    if let Some(late) = late {
        faults.delay_accepts(late);
        let lower = if c1.handshake.key.node_id() < c2.handshake.key.node_id() {
            &mut c1
        } else {
            &mut c2
        };
        lower.faults = Some(faults.clone());
    }
    let a = start(c1).await;
    let b = start(c2).await;
    let (a, b) = (&a.node, &b.node);
    // Each learns where the other listens, then the link goes idle.
    a.connect(b.listen_addr()).await.unwrap();
    let no_links = || async { a.peers().is_empty() && b.peers().is_empty() };
    for round in 0..rounds {
        assert!(
            eventually(Duration::from_secs(5), no_links).await,
            "round {round}: links close when idle"
        );
        let first = 1 + round * tells;
        let (lower, higher) = if a.id() < b.id() { (a, b) } else { (b, a) };
        let from_higher = actix_rt::spawn(burst(higher.clone(), lower.id(), first, tells, pace));
        if late.is_some() {
            // The higher id's dial first: the lower id, which accepts it
            // late, has no link yet and dials too.
            let dialed = || async { !higher.peers().is_empty() };
            assert!(eventually(Duration::from_secs(5), dialed).await);
        }
        let from_lower = actix_rt::spawn(burst(lower.clone(), higher.id(), first, tells, pace));
        let failed = [from_higher.await.unwrap(), from_lower.await.unwrap()];
        let expected = (round + 1) * tells;
        let mut counts = [(0, 0); 2];
        for (slot, (node, sender)) in counts.iter_mut().zip([(b, a), (a, b)]) {
            let counter = sender.remote::<Counter>(node.id(), "counter");
            let seen = std::cell::Cell::new((0, 0));
            eventually(Duration::from_secs(2), || {
                let (counter, seen) = (counter.clone(), &seen);
                async move {
                    if let Ok(state) = counter.send(CounterState).await {
                        seen.set(state);
                    }
                    seen.get().0 >= expected
                }
            })
            .await;
            *slot = seen.get();
        }
        assert!(
            counts == [(expected, 0), (expected, 0)] && failed.iter().all(Vec::is_empty),
            "round {round}: counters (received, out of order) {counts:?}, want {expected} \
             each in order; failed asks {failed:?}"
        );
    }
}

#[actix_rt::test]
async fn crossed_dials_lose_no_tell_and_fail_no_ask() {
    crossed_rounds(25, 40, None, None).await;
}

/// The higher id dials first and the lower id, which accepts late, dials
/// too before it has seen that link: the higher id has its own dial first
/// and the lower id's second, and hands over from the first to the second
/// while the lower id has not even seen the first: the higher id must not
/// write on the second before the lower id read the first.
#[actix_rt::test]
async fn crossed_dials_keep_order_when_one_side_accepts_late() {
    let pace = Some(Duration::from_millis(1));
    crossed_rounds(4, 200, pace, Some(Duration::from_millis(100))).await;
}

/// Completes a Noise handshake as the initiator with `addr`, or says why not.
async fn try_handshake(
    addr: std::net::SocketAddr,
    config: swarm::protocol::HandshakeConfig,
) -> Result<(), String> {
    use swarm::protocol::{decode_frame, Decoded, Handshake};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut hs = Handshake::initiator(std::sync::Arc::new(config)).unwrap();
    let mut buf = Vec::new();
    loop {
        while let Some(frame) = hs.poll_transmit() {
            stream.write_all(&frame).await.map_err(|e| e.to_string())?;
        }
        if hs.is_established() {
            break;
        }
        let consumed = loop {
            match decode_frame(&buf, 65_535).map_err(|e| e.to_string())? {
                Decoded::Frame { payload, consumed } => {
                    hs.handle_frame(payload, swarm::credentials::unix_now())
                        .map_err(|e| e.to_string())?;
                    break consumed;
                }
                Decoded::Incomplete { .. } => {
                    let mut chunk = [0u8; 4096];
                    match stream.read(&mut chunk).await {
                        Ok(0) => return Err("hung up".into()),
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        Err(e) => return Err(e.to_string()),
                    }
                }
            }
        };
        buf.drain(..consumed);
    }
    // Established on this side: the node refuses the link once it reads
    // the last handshake message, so wait for its verdict.
    let mut chunk = [0u8; 4096];
    let verdict = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut chunk)).await;
    match verdict {
        Ok(Ok(0)) | Ok(Err(_)) => Err("hung up after the handshake".into()),
        _ => Ok(()),
    }
}

#[actix_rt::test]
async fn a_crossed_dial_with_a_forged_identity_is_refused_and_the_link_carries_on() {
    let ca = swarm::credentials::Throwaway::new("test");
    let a = start(config(&ca, "n1")).await;
    let b_config = config(&ca, "n2");
    // B's certificate (public), with a key that is not B's.
    let mut forged = b_config.handshake.clone();
    forged.key = swarm::protocol::NodeKey::from_secret([7; 32]);
    let b = start(b_config).await;
    let (a, b) = (&a.node, &b.node);
    b.connect(a.listen_addr()).await.unwrap();
    let counter = b.remote::<Counter>(a.id(), "counter");
    let link = || {
        a.peers()
            .into_iter()
            .map(|p| (p.id, p.via))
            .collect::<Vec<_>>()
    };
    // The acceptor installs its end just after the dialer.
    assert!(eventually(Duration::from_secs(5), || async { !a.peers().is_empty() }).await);
    let before = link();
    let mut seq = 0;
    for _ in 0..5 {
        for _ in 0..20 {
            seq += 1;
            counter
                .tell(Bump {
                    seq,
                    pad: Vec::new(),
                })
                .await
                .unwrap();
        }
        let refused = try_handshake(a.listen_addr(), forged.clone()).await;
        assert!(refused.is_err(), "a forged B got a link: {:?}", a.peers());
    }
    let (received, out_of_order) = counter.send(CounterState).await.unwrap();
    assert_eq!((received, out_of_order), (seq, 0));
    assert_eq!(link(), before, "the real link stays");
}
