//! The `swarm.inspect` actor over real links: per-actor counters kept at
//! dispatch (messages, asks, backlog, sampled handler times), per-link
//! traffic, a bounded trace of one actor's messages, and who may ask.

use std::time::Duration;

use swarm::inspect::{Inspect, Inspector, NodeSnapshot, ReadTrace, SetTrace, INSPECT_ACTOR};
use swarm::AskError;
use swarm_cli::demo::{Add, Adder, Bump, Counter};

use crate::util::{control_cluster, eventually, operator, scratch};

fn actor<'a>(snapshot: &'a NodeSnapshot, name: &str) -> &'a swarm::inspect::ActorView {
    snapshot
        .actors
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("{name} is not listed: {snapshot:?}"))
}

/// What `node` answers an operator certificate that did not log in and
/// asks for its snapshot (a refusal's reason).
async fn unlogged_inspect(ca: &swarm::credentials::Throwaway, node: &swarm::Node) -> String {
    let mallory =
        crate::util::start(crate::util::config_with_roles(ca, "mallory", &["operator"])).await;
    mallory.node.connect(node.listen_addr()).await.unwrap();
    let answer = mallory
        .node
        .remote::<Inspector>(node.id(), INSPECT_ACTOR)
        .send(Inspect)
        .await;
    match answer {
        Err(AskError::Forbidden { reason }) => reason,
        other => panic!("an operator without a login inspected a node: {other:?}"),
    }
}

#[actix_rt::test]
async fn an_operator_sees_each_actors_messages_backlog_and_handler_times_and_each_links_traffic() {
    let dir = scratch("inspect-counters");
    let (ca, nodes) = control_cluster(&dir, 1, 1, |_, _| {}).await;
    let (n1, n2) = (&nodes[0].node, &nodes[1].node);
    n1.connect(n2.listen_addr()).await.unwrap();
    let adder = n1.remote::<Adder>(n2.id(), "adder");
    for i in 0..100 {
        assert_eq!(adder.send(Add { a: i, b: 1 }).await.unwrap(), i + 1);
    }
    let counter = n1.remote::<Counter>(n2.id(), "counter");
    for seq in 0..1000 {
        counter
            .tell(Bump {
                seq,
                pad: Vec::new(),
            })
            .await
            .unwrap();
    }

    // Inspection is a read: nodes inspect each other; an operator
    // certificate needs its login first.
    let as_node = n1.remote::<Inspector>(n2.id(), INSPECT_ACTOR);
    assert!(as_node.send(Inspect).await.is_ok());
    let refusal = unlogged_inspect(&ca, n2).await;
    assert!(refusal.contains("second factor"), "{refusal}");

    let alice = operator(&ca, "alice", &["operator"], n2.listen_addr()).await;
    let inspector = alice.node.remote::<Inspector>(n2.id(), INSPECT_ACTOR);
    // The tells are counted as they are dispatched; the backlog falls to
    // zero once a probe behind them is handled.
    let settled = eventually(Duration::from_secs(10), || async {
        let s = inspector.send(Inspect).await.unwrap();
        let c = actor(&s, "counter");
        c.messages == 1000 && c.backlog == 0
    })
    .await;
    assert!(settled, "{:?}", inspector.send(Inspect).await);
    let snapshot = inspector.send(Inspect).await.unwrap();
    assert_eq!(snapshot.node.id, n2.id().to_string());
    assert_eq!(snapshot.node.name, "n2");
    assert!(snapshot.node.counters);

    let a = actor(&snapshot, "adder");
    assert_eq!((a.messages, a.asks, a.errors, a.backlog), (100, 100, 0, 0));
    assert_eq!(a.type_name, "Adder");
    assert_eq!(a.state, "exposed");
    assert!(!a.system);
    // Sequential asks leave the actor idle between messages: each is timed.
    assert_eq!(a.samples, 100, "{a:?}");
    assert!(a.handling_p50_us > 0.0 && a.handling_p99_us >= a.handling_p50_us);
    // The histogram comes only when asked for (metrics): a console's
    // snapshot stays lean.
    assert!(a.handling.is_empty());
    let full = inspector
        .send(swarm::inspect::InspectMetrics)
        .await
        .unwrap();
    let h = &actor(&full, "adder").handling;
    assert_eq!(h.count(), 100, "{h:?}");
    assert!(h.sum_ns > 0);
    let c = actor(&snapshot, "counter");
    assert_eq!((c.messages, c.asks), (1000, 0));
    assert!(c.samples >= 1 && c.samples <= 1000, "{c:?}");
    assert!(actor(&snapshot, INSPECT_ACTOR).system);

    let to_n1 = snapshot
        .links
        .iter()
        .find(|l| l.peer == n1.id().to_string())
        .expect("n2 lists its link to n1");
    assert!(to_n1.msgs_in >= 1100, "{to_n1:?}");
    assert!(to_n1.msgs_out >= 100, "the replies: {to_n1:?}");
    assert!(to_n1.bytes_in > 0 && to_n1.bytes_out > 0);
    assert!(to_n1.cipher.starts_with("Noise_XX"), "{}", to_n1.cipher);
    assert!(snapshot.links.iter().any(|l| l.peer_name == "alice"));
}

/// The round trip `asked` measured on its link to `peer`, as its snapshot
/// shows it to `asker` (0 when not measured, or no such link).
async fn rtt_us(asker: &swarm::Node, asked: &swarm::Node, peer: swarm::NodeId) -> f64 {
    let snapshot = asker
        .remote::<Inspector>(asked.id(), INSPECT_ACTOR)
        .send(Inspect)
        .await
        .unwrap();
    let peer = peer.to_string();
    snapshot
        .links
        .iter()
        .find(|l| l.peer == peer)
        .map_or(0.0, |l| l.rtt_us)
}

#[actix_rt::test]
async fn a_busy_link_shows_its_measured_round_trip_at_both_ends() {
    let dir = scratch("inspect-rtt");
    let (ca, nodes) = control_cluster(&dir, 1, 1, |_, _| {}).await;
    let (n1, n2) = (&nodes[0].node, &nodes[1].node);
    // A fresh link kept busy both ways from its start (asks one way,
    // replies the other): neither end ever goes a heartbeat interval
    // without sending, so only the pings that time the round trip go.
    let bob = crate::util::start(crate::util::config_with_roles(&ca, "bob", &["worker"])).await;
    bob.node.connect(n2.listen_addr()).await.unwrap();
    let busy = std::rc::Rc::new(std::cell::Cell::new(true));
    let adder = bob.node.remote::<Adder>(n2.id(), "adder");
    let running = std::rc::Rc::clone(&busy);
    let traffic = actix_rt::spawn(async move {
        let mut asks = 0u64;
        while running.get() {
            assert_eq!(adder.send(Add { a: 1, b: 1 }).await.unwrap(), 2);
            asks += 1;
        }
        asks
    });
    let (bob_id, n2_id) = (bob.node.id(), n2.id());
    let timed = eventually(Duration::from_secs(15), || async {
        rtt_us(n1, n2, bob_id).await > 0.0 && rtt_us(n2, &bob.node, n2_id).await > 0.0
    })
    .await;
    busy.set(false);
    let asks = traffic.await.unwrap();
    assert!(
        timed,
        "n2 -> bob {} us, bob -> n2 {} us after {asks} asks",
        rtt_us(n1, n2, bob_id).await,
        rtt_us(n2, &bob.node, n2_id).await
    );
    assert!(asks > 0);
}

#[actix_rt::test]
async fn a_trace_records_one_actors_messages_only_while_it_is_on() {
    let dir = scratch("inspect-trace");
    let (ca, nodes) = control_cluster(&dir, 1, 1, |_, _| {}).await;
    let (n1, n2) = (&nodes[0].node, &nodes[1].node);
    let alice = operator(&ca, "alice", &["operator"], n2.listen_addr()).await;
    let inspector = alice.node.remote::<Inspector>(n2.id(), INSPECT_ACTOR);
    let adder = n1.remote::<Adder>(n2.id(), "adder");

    adder.send(Add { a: 1, b: 1 }).await.unwrap();
    let trace = |after| ReadTrace {
        actor: "adder".into(),
        after,
    };
    assert!(inspector.send(trace(0)).await.unwrap().unwrap().is_empty());

    let on = |on| SetTrace {
        actor: "adder".into(),
        on,
    };
    inspector.send(on(true)).await.unwrap().unwrap();
    for i in 0..5 {
        adder.send(Add { a: i, b: 2 }).await.unwrap();
    }
    let entries = inspector.send(trace(0)).await.unwrap().unwrap();
    assert_eq!(entries.len(), 5, "{entries:?}");
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
        assert_eq!((e.tag.as_str(), e.kind.as_str()), ("demo.Add", "ask"));
        assert_eq!(e.from, n1.id().to_string());
        assert_eq!(e.result, "handled");
        assert!(e.bytes > 0 && e.handled_us > 0.0);
    }
    // Reading on from the last sequence number returns only what is new.
    adder.send(Add { a: 9, b: 9 }).await.unwrap();
    let newer = inspector.send(trace(5)).await.unwrap().unwrap();
    assert_eq!(newer.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![6]);

    inspector.send(on(false)).await.unwrap().unwrap();
    adder.send(Add { a: 1, b: 1 }).await.unwrap();
    assert!(inspector.send(trace(0)).await.unwrap().unwrap().is_empty());
    let missing = SetTrace {
        actor: "nobody".into(),
        on: true,
    };
    assert!(inspector.send(missing).await.unwrap().is_err());
}

#[actix_rt::test]
async fn a_node_with_counters_off_counts_nothing() {
    let dir = scratch("inspect-off");
    let (ca, nodes) = control_cluster(&dir, 1, 1, |i, c| c.counters = i == 0).await;
    let (n1, n2) = (&nodes[0].node, &nodes[1].node);
    let adder = n1.remote::<Adder>(n2.id(), "adder");
    for i in 0..10 {
        adder.send(Add { a: i, b: 1 }).await.unwrap();
    }
    let alice = operator(&ca, "alice", &["operator"], n2.listen_addr()).await;
    let s = alice
        .node
        .remote::<Inspector>(n2.id(), INSPECT_ACTOR)
        .send(Inspect)
        .await
        .unwrap();
    assert!(!s.node.counters);
    let a = actor(&s, "adder");
    assert_eq!((a.messages, a.samples, a.backlog), (0, 0, 0));
}

#[actix_rt::test]
async fn only_an_admin_restarts_a_supervised_actor_and_the_restart_is_counted() {
    use swarm::supervision::{Host, HostRestart, HOST_ACTOR};
    use swarm_cli::demo::Deposit;

    let dir = scratch("inspect-restart");
    let (ca, nodes) = control_cluster(&dir, 1, 1, |_, _| {}).await;
    let n2 = &nodes[1].node;
    let control = nodes[0].node.control().unwrap().clone();
    let ledger = crate::util::ledger_on(&control, "book", n2.id()).await;
    assert_eq!(ledger.send(Deposit(5)).await.unwrap().total, 5);

    let restart = || HostRestart {
        name: "book".into(),
    };
    let alice = operator(&ca, "alice", &["operator"], n2.listen_addr()).await;
    match alice
        .node
        .remote::<Host>(n2.id(), HOST_ACTOR)
        .send(restart())
        .await
    {
        Err(AskError::Forbidden { reason }) => assert!(reason.contains("admin"), "{reason}"),
        other => panic!("an operator without admin restarted an actor: {other:?}"),
    }
    let root = operator(&ca, "root", &["operator", "admin"], n2.listen_addr()).await;
    let host = root.node.remote::<Host>(n2.id(), HOST_ACTOR);
    assert_eq!(host.send(restart()).await.unwrap(), Ok(1));
    let missing = HostRestart {
        name: "nobody".into(),
    };
    assert!(host.send(missing).await.unwrap().is_err());

    // The next incarnation answers (its state recovered), and the console
    // sees the restart.
    let inspector = root.node.remote::<Inspector>(n2.id(), INSPECT_ACTOR);
    let counted = eventually(Duration::from_secs(10), || async {
        let s = inspector.send(Inspect).await.unwrap();
        s.actors
            .iter()
            .any(|a| a.name == "book" && a.restarts == 1 && a.state == "running")
    })
    .await;
    assert!(counted, "{:?}", inspector.send(Inspect).await);
    let answered = eventually(Duration::from_secs(10), || async {
        ledger.send(Deposit(1)).await.is_ok()
    })
    .await;
    assert!(answered);

    // Its detail: who supervises it, that the head placed it, its restarts.
    let s = inspector.send(Inspect).await.unwrap();
    let book = actor(&s, "book");
    assert!(book.placed);
    assert!(
        book.supervisor.starts_with("this node's host: "),
        "{}",
        book.supervisor
    );
    assert_eq!(book.history.len(), 1);
    assert_eq!(book.history[0].reason, "on an operator's request");

    // Its state, through its inspect hook (the restarted incarnation
    // recovered its journal: 5 + 1).
    use swarm::inspect::{InspectActor, InspectError};
    let state = |actor: &str| InspectActor {
        actor: actor.into(),
    };
    let json = inspector
        .send(state("book"))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["balance"], 6, "{json}");
    assert_eq!(inspector.send(state("adder")).await.unwrap(), Ok(None));
    assert!(matches!(
        inspector.send(state("nobody")).await.unwrap(),
        Err(InspectError::NoSuchActor { .. })
    ));
}

#[actix_rt::test]
async fn a_snapshot_carries_the_nodes_events_balancers_and_task_table() {
    use swarm_cli::demo::{Work, Worker};

    let dir = scratch("inspect-events");
    let (ca, nodes) = control_cluster(&dir, 1, 2, |_, _| {}).await;
    let (n1, n2, n3) = (&nodes[0].node, &nodes[1].node, &nodes[2].node);

    // A service on n3, called from n2.
    let server = n3.clone();
    crate::util::on(&nodes[2].arbiter, move || {
        actix_rt::spawn(async move { swarm_cli::demo::serve(&server, "greet").await.unwrap() });
    })
    .await;
    let balancer = n2.cluster().unwrap().service::<Worker>("greet");
    let served = eventually(Duration::from_secs(10), || async {
        balancer
            .send(Work {
                key: 1,
                delay_ms: 0,
            })
            .await
            .is_ok()
    })
    .await;
    assert!(served);
    // A refusal on n2; a placement recorded by the head (n1).
    let refusal = unlogged_inspect(&ca, n2).await;
    assert!(refusal.contains("second factor"), "{refusal}");
    let control = n1.control().unwrap().clone();
    crate::util::ledger_on(&control, "book", n2.id()).await;

    let alice = operator(&ca, "alice", &["operator"], n2.listen_addr()).await;
    alice.node.connect(n1.listen_addr()).await.unwrap();
    let inspect = |node: swarm::NodeId| {
        let inspector = alice.node.remote::<Inspector>(node, INSPECT_ACTOR);
        async move { inspector.send(Inspect).await.unwrap() }
    };
    let on_n2 = inspect(n2.id()).await;
    let kinds = |s: &NodeSnapshot, kind: &str| -> Vec<String> {
        s.events
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| format!("{} {}", e.subject, e.detail))
            .collect()
    };
    let refusals = kinds(&on_n2, "refused");
    assert!(
        refusals
            .iter()
            .any(|r| r.contains("swarm.Inspect to swarm.inspect") && r.contains("mallory")),
        "{refusals:?}"
    );
    assert!(on_n2.events.iter().all(|e| e.node == n2.id().to_string()));
    let members = kinds(&on_n2, "member");
    // Named once its metadata arrived, by its short id before.
    let n3_up =
        |m: &String| m.starts_with("n3 up") || m.starts_with(&format!("{} up", n3.id().short()));
    assert!(members.iter().any(n3_up), "{members:?}");

    let service = on_n2
        .services
        .iter()
        .find(|s| s.service == "greet")
        .expect("n2's balancer lists greet");
    assert_eq!(service.instance_node, n3.id().to_string());
    assert!(service.sent >= 1 && service.outstanding == 0 && !service.ejected);
    let tasks = on_n2
        .tasks
        .as_ref()
        .expect("a member reports its task table");
    assert_eq!(tasks.node, Some(n2.id()));

    // The head leader recorded where it placed the ledger.
    let placed = eventually(Duration::from_secs(10), || async {
        kinds(&inspect(n1.id()).await, "placed")
            .iter()
            .any(|p| p.starts_with("book on"))
    })
    .await;
    assert!(placed, "{:?}", inspect(n1.id()).await.events);
}

#[actix_rt::test]
async fn calls_from_the_actors_own_node_are_counted_as_well() {
    let dir = scratch("inspect-local");
    let (ca, nodes) = control_cluster(&dir, 1, 1, |_, _| {}).await;
    let n2 = &nodes[1].node;
    // The local shortcut: no serialization, the typed address.
    let adder = n2.remote::<Adder>(n2.id(), "adder");
    for i in 0..20 {
        assert_eq!(adder.send(Add { a: i, b: 1 }).await.unwrap(), i + 1);
    }
    let counter = n2.remote::<Counter>(n2.id(), "counter");
    for seq in 0..30 {
        counter
            .try_tell(Bump {
                seq,
                pad: Vec::new(),
            })
            .unwrap();
    }
    let alice = operator(&ca, "alice", &["operator"], n2.listen_addr()).await;
    let inspector = alice.node.remote::<Inspector>(n2.id(), INSPECT_ACTOR);
    let counted = eventually(Duration::from_secs(10), || async {
        let s = inspector.send(Inspect).await.unwrap();
        let (a, c) = (actor(&s, "adder"), actor(&s, "counter"));
        (a.messages, a.asks, c.messages, c.backlog) == (20, 20, 30, 0) && a.samples == 20
    })
    .await;
    assert!(counted, "{:?}", inspector.send(Inspect).await);
}
