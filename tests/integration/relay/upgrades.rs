//! Relayed links becoming direct, and direct links falling back to a
//! relay: the handover under traffic keeps order and loses nothing.

use super::*;

#[actix_rt::test]
async fn a_relayed_link_becomes_direct_when_one_side_can_dial_and_keeps_order() {
    // The node behind NAT cannot dial the public one until traffic flows
    // (a firewall rule lifted later): otherwise it could upgrade the link
    // (100 ms after it formed) before the first ask, or before the
    // traffic starts, and no handover would happen under traffic.
    let ca = Throwaway::new("test");
    let mut c = config(&ca, "p1");
    let p_id = c.handshake.key.node_id();
    let faults = Arc::new(swarm::Faults::default());
    faults.block_direct(p_id);
    let t = topology_with(ca, Some(faults.clone())).await;
    let natted = &t.natted[0].node;
    // A node that accepts connections joins.
    c.cluster = Some(fast_gossip(vec![t.relays[0].node.listen_addr()]));
    c.upgrade_interval = Duration::from_millis(500);
    let public = start(c).await;
    let p = &public.node;
    assert!(eventually(WITHIN, || sees_alive(p, 5)).await);
    // Alive comes before p's router learns how the node behind NAT is
    // reached (its relays, from membership metadata): until then p dials
    // the announced address (refused) or has none. Ask until it answers.
    let counter = p.remote::<Counter>(natted.id(), "counter");
    let adder = p.remote::<Adder>(natted.id(), "adder");
    let first = std::cell::RefCell::new(None);
    let answered = eventually(WITHIN, || {
        let (counter, first) = (counter.clone(), &first);
        async move {
            let answer = counter
                .send_timeout(CounterState, Duration::from_secs(1))
                .await;
            let ok = answer.is_ok();
            *first.borrow_mut() = Some(answer);
            ok
        }
    })
    .await;
    let first = first.into_inner().expect("asked at least once");
    assert!(answered, "the first ask: {first:?}");
    let first = first.unwrap();
    assert_eq!(first, (0, 0));
    let relayed = p.peers().into_iter().find(|x| x.id == natted.id()).unwrap();
    assert!(relayed.via.is_some(), "first through a relay: {relayed:?}");
    // Tells and asks flow without pause while the node behind NAT dials
    // back and the link is handed over.
    let stop = std::rc::Rc::new(std::cell::Cell::new(false));
    let tells = actix_rt::spawn({
        let (counter, stop) = (counter.clone(), stop.clone());
        async move {
            let mut sent = 0u64;
            while !stop.get() {
                let bump = Bump {
                    seq: sent + 1,
                    pad: Vec::new(),
                };
                counter.tell(bump).await.expect("every tell is queued");
                sent += 1;
                if sent.is_multiple_of(64) {
                    tokio::task::yield_now().await;
                }
            }
            sent
        }
    });
    let asks = actix_rt::spawn({
        let (adder, stop) = (adder.clone(), stop.clone());
        async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            while !stop.get() {
                match adder.send(Add { a: 1, b: 2 }).await {
                    Ok(3) => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed)
        }
    });
    // Traffic flows through the relay, then the direct path opens.
    assert!(
        eventually(WITHIN, || async {
            counter
                .send(CounterState)
                .await
                .is_ok_and(|(received, _)| received >= 100)
        })
        .await,
        "tells arrive through the relay"
    );
    assert!(p
        .peers()
        .iter()
        .any(|x| x.id == natted.id() && x.via.is_some()));
    faults.unblock_direct(p_id);
    let upgraded = eventually(WITHIN, || async {
        p.peers()
            .iter()
            .any(|x| x.id == natted.id() && x.via.is_none())
    })
    .await;
    assert!(upgraded, "the link became direct: {:?}", p.peers());
    // Some traffic on the direct link too.
    let mut settle = tokio::time::interval(Duration::from_millis(200));
    settle.tick().await;
    settle.tick().await;
    stop.set(true);
    let sent = tells.await.unwrap();
    let (asked, failed) = asks.await.unwrap();
    let (received, out_of_order) = counter.send(CounterState).await.unwrap();
    assert_eq!(out_of_order, 0, "order kept across the handover");
    assert_eq!(
        received, sent,
        "no tell lost or doubled across the handover"
    );
    assert!(
        failed.is_empty(),
        "asks failed during the handover: {failed:?}"
    );
    assert!(asked > 0 && sent > 0);
    let stats = p.stats();
    assert_eq!(stats.relay_refused, 0, "{stats:?}");
}

#[actix_rt::test]
async fn a_blocked_direct_path_moves_to_a_relay_in_order_and_back() {
    let ca = Throwaway::new("test");
    let short_heartbeat = |c: &mut MeshConfig| {
        c.heartbeat_interval = Duration::from_millis(100);
        c.heartbeat_timeout = Duration::from_millis(600);
    };
    let r1 = start(relay_config(&ca, "r1", vec![])).await;
    let seeds = vec![r1.node.listen_addr()];
    let r2 = start(relay_config(&ca, "r2", seeds.clone())).await;
    let mut c = config(&ca, "p1");
    c.cluster = Some(fast_gossip(seeds.clone()));
    c.upgrade_interval = Duration::from_millis(500);
    short_heartbeat(&mut c);
    let public = start(c).await;
    // The node behind NAT, with a fault injector standing in for iptables.
    let faults = Arc::new(swarm::Faults::default());
    let relays = vec![r1.node.listen_addr(), r2.node.listen_addr()];
    let mut c = natted_config(&ca, "a1", relays);
    c.faults = Some(faults.clone());
    short_heartbeat(&mut c);
    let natted = start(c).await;
    let (n, p) = (&natted.node, &public.node);
    for node in [&r1.node, &r2.node, p, n] {
        assert!(eventually(WITHIN, || sees_alive(node, 4)).await);
    }
    let counter = n.remote::<Counter>(p.id(), "counter");
    assert_eq!(counter.send(CounterState).await.unwrap(), (0, 0));
    let reach = || {
        n.peers()
            .into_iter()
            .find(|x| x.id == p.id())
            .map(|x| x.via.is_some())
    };
    assert_eq!(
        reach(),
        Some(false),
        "the NATed node dials the public one directly"
    );
    // Tells flow without pause; the sequence numbers show any reordering.
    let stop = std::rc::Rc::new(std::cell::Cell::new(false));
    let stream = actix_rt::spawn({
        let (counter, stop) = (counter.clone(), stop.clone());
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            let mut seq = 0u64;
            while !stop.get() {
                tick.tick().await;
                seq += 1;
                let _ = counter.try_tell(Bump {
                    seq,
                    pad: Vec::new(),
                });
            }
            seq
        }
    });
    let received = || {
        let counter = counter.clone();
        async move {
            counter
                .send_timeout(CounterState, Duration::from_millis(300))
                .await
                .map(|s| s.0)
                .ok()
        }
    };
    faults.block_direct(p.id());
    assert!(
        eventually(WITHIN, || async { reach() == Some(true) }).await,
        "traffic moved to a relay: {:?}",
        n.peers()
    );
    let before = received().await.unwrap_or(0);
    assert!(
        eventually(WITHIN, || async {
            received().await.is_some_and(|r| r >= before + 50)
        })
        .await,
        "tells arrive through the relay"
    );
    assert_eq!(reach(), Some(true));
    faults.unblock_direct(p.id());
    assert!(
        eventually(WITHIN, || async { reach() == Some(false) }).await,
        "back to the direct path once it works: {:?}",
        n.peers()
    );
    stop.set(true);
    let sent = stream.await.unwrap();
    let (received, out_of_order) = counter.send(CounterState).await.unwrap();
    assert_eq!(out_of_order, 0, "order kept through both switches");
    assert!(received <= sent && received > 0, "{received} of {sent}");
    drop((r1, r2));
}

/// Streams tells (with sequence numbers) and asks from `from` to `to`'s
/// demo actors until `stop`; returns (tells queued, asks answered, asks failed).
fn stream(
    from: &Node,
    to: &Node,
    stop: std::rc::Rc<std::cell::Cell<bool>>,
) -> actix_rt::task::JoinHandle<(u64, u64, Vec<String>)> {
    let counter = from.remote::<Counter>(to.id(), "counter");
    let adder = from.remote::<Adder>(to.id(), "adder");
    actix_rt::spawn(async move {
        let (mut sent, mut asked, mut failed) = (0u64, 0u64, Vec::new());
        while !stop.get() {
            let bump = Bump {
                seq: sent + 1,
                pad: Vec::new(),
            };
            match counter.tell(bump).await {
                Ok(()) => sent += 1,
                Err(e) => failed.push(format!("tell: {e}")),
            }
            if sent % 16 == 0 {
                match adder.send(Add { a: 1, b: 1 }).await {
                    Ok(2) => asked += 1,
                    other => failed.push(format!("ask: {other:?}")),
                }
            }
        }
        (sent, asked, failed)
    })
}

#[actix_rt::test]
async fn when_both_sides_can_dial_one_upgrades_and_nothing_is_lost() {
    let ca = Throwaway::new("test");
    let relay = start(relay_config(&ca, "r1", vec![])).await;
    let endpoint = |name: &str| {
        let mut c = config(&ca, name);
        c.upgrade_interval = Duration::from_millis(300);
        c
    };
    let x = start(endpoint("x")).await;
    let y = start(endpoint("y")).await;
    let (x, y) = (&x.node, &y.node);
    x.connect(relay.node.listen_addr()).await.unwrap();
    y.connect(relay.node.listen_addr()).await.unwrap();
    // A relayed link between two nodes that can dial each other: both
    // sides try the direct path, at about the same time.
    let link = x.connect_via(relay.node.id(), y.id()).await.unwrap();
    assert_eq!(link.via, Some(relay.node.id()));
    let stop = std::rc::Rc::new(std::cell::Cell::new(false));
    let x_to_y = stream(x, y, stop.clone());
    let y_to_x = stream(y, x, stop.clone());
    let direct = |a: &Node, b: &Node| a.peers().iter().any(|p| p.id == b.id() && p.via.is_none());
    assert!(
        eventually(WITHIN, || async { direct(x, y) && direct(y, x) }).await,
        "both sides use a direct link"
    );
    let mut settle = tokio::time::interval(Duration::from_millis(300));
    settle.tick().await;
    settle.tick().await;
    stop.set(true);
    for ((sent, asked, failed), (sender, receiver)) in [
        (x_to_y.await.unwrap(), (x, y)),
        (y_to_x.await.unwrap(), (y, x)),
    ] {
        assert!(
            failed.is_empty(),
            "{} -> {}: {failed:?}",
            sender.name(),
            receiver.name()
        );
        let counter = sender.remote::<Counter>(receiver.id(), "counter");
        let (received, out_of_order) = counter.send(CounterState).await.unwrap();
        assert_eq!(
            (received, out_of_order),
            (sent, 0),
            "{} -> {}",
            sender.name(),
            receiver.name()
        );
        assert!(asked > 0);
    }
}
