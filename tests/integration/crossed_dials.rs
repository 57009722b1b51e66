//! Two nodes that dial each other at the same moment: each side keeps one
//! of the two links (the one dialed by the lower id) and hands over what
//! the other carried. Per sender-receiver pair, every tell arrives once and
//! in order, and no ask fails, however the two handshakes interleave.

use std::time::Duration;

use swarm::Node;
use swarm_cli::demo::{Add, Adder, Bump, Counter, CounterState};

use crate::util::{config, eventually, start};

/// Tells and asks each side sends per round, starting before any link exists.
const TELLS: u64 = 40;
const ASKS: usize = 8;

/// Sends `TELLS` tells numbered from `first` to `to`'s counter, and `ASKS`
/// asks alongside; returns the asks (or the tell) that failed.
async fn burst(from: Node, to: swarm::NodeId, first: u64) -> Vec<String> {
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
    for seq in first..first + TELLS {
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

#[actix_rt::test]
async fn crossed_dials_lose_no_tell_and_fail_no_ask() {
    let ca = swarm::credentials::Throwaway::new("test");
    // Idle links close fast, so that every round starts with no link.
    let quick = |name: &str| {
        let mut c = config(&ca, name);
        c.idle_timeout = Duration::from_millis(150);
        c
    };
    let a = start(quick("n1")).await;
    let b = start(quick("n2")).await;
    let (a, b) = (&a.node, &b.node);
    // Each learns where the other listens, then the link goes idle.
    a.connect(b.listen_addr()).await.unwrap();
    let no_links = || async { a.peers().is_empty() && b.peers().is_empty() };
    let rounds = 25;
    let mut lost = Vec::new();
    for round in 0..rounds {
        assert!(
            eventually(Duration::from_secs(5), no_links).await,
            "round {round}: links close when idle"
        );
        let first = 1 + round * TELLS;
        let to_b = actix_rt::spawn(burst(a.clone(), b.id(), first));
        let to_a = actix_rt::spawn(burst(b.clone(), a.id(), first));
        let failed = [to_b.await.unwrap(), to_a.await.unwrap()];
        let expected = (round + 1) * TELLS;
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
        if counts != [(expected, 0), (expected, 0)] || failed.iter().any(|f| !f.is_empty()) {
            lost.push(format!(
                "round {round}: counters {counts:?} (want {expected} each, in order), failed asks {failed:?}"
            ));
            break;
        }
    }
    assert!(lost.is_empty(), "{lost:#?}");
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
