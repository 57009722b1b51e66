//! Local supervision: a handler that panics fails its actor alone; the
//! request it held fails with `ActorFailed`, the node and its other actors
//! carry on, and the actor is restarted by its policy until it escalates.

use std::time::Duration;

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use swarm::supervision::{
    ActorRow, Backoff, Host, HostSpawn, Incarnation, ListActors, Restart, SpawnError, Spawnable,
    SupervisedState, HOST_ACTOR,
};
use swarm::{AskError, RemoteSpawnError};
use swarm_cli::demo::{Add, Adder};

use crate::util::{cluster, eventually};

/// Counts pokes; panics when asked to.
#[derive(Default)]
struct Fragile {
    pokes: u64,
}

impl Actor for Fragile {
    type Context = Context<Self>;
}

#[derive(Debug, Serialize, Deserialize, Message)]
#[rtype(result = "u64")]
struct Poke {
    panic: bool,
}

swarm::remote_message!(Poke => "test.Poke");

impl Handler<Poke> for Fragile {
    type Result = u64;

    fn handle(&mut self, msg: Poke, _: &mut Context<Self>) -> u64 {
        assert!(!msg.panic, "a handler bug (this panic is on purpose)");
        self.pokes += 1;
        self.pokes
    }
}

swarm::remote_actor!(Fragile: Poke);

#[actix_rt::test]
async fn a_panicking_handler_fails_its_actor_alone_and_it_restarts_until_it_escalates() {
    let (_ca, nodes) = cluster(2).await;
    let (host, client) = (&nodes[0].node, &nodes[1].node);
    client.connect(host.listen_addr()).await.unwrap();
    let policy = Restart::on_failure()
        .max(2)
        .within(Duration::from_secs(60))
        .backoff(Backoff::exponential(
            Duration::from_millis(10),
            Duration::from_millis(50),
        ));
    let supervised = host
        .supervise("fragile", policy, Fragile::default)
        .await
        .unwrap();
    let fragile = client.remote::<Fragile>(host.id(), "fragile");
    let neighbour = client.remote::<Adder>(host.id(), "adder");
    assert_eq!(fragile.send(Poke { panic: false }).await.unwrap(), 1);
    assert_eq!(fragile.send(Poke { panic: false }).await.unwrap(), 2);

    for restart in 1..=2u64 {
        // The ask that hits the panic fails with a typed error...
        let err = fragile.send(Poke { panic: true }).await.unwrap_err();
        assert_eq!(err, AskError::ActorFailed);
        // ...the neighbour on the same node keeps answering...
        assert_eq!(neighbour.send(Add { a: 2, b: 2 }).await.unwrap(), 4);
        // ...and a new incarnation (fresh state) answers after the backoff.
        assert!(
            eventually(Duration::from_secs(5), || {
                let fragile = fragile.clone();
                async move { fragile.send(Poke { panic: false }).await == Ok(1) }
            })
            .await,
            "restart {restart}"
        );
        assert_eq!(supervised.restarts(), restart);
        assert_eq!(supervised.state(), SupervisedState::Running);
    }
    // A third failure within the window escalates: no more restarts.
    let err = fragile.send(Poke { panic: true }).await.unwrap_err();
    assert_eq!(err, AskError::ActorFailed);
    assert!(
        eventually(Duration::from_secs(5), || async {
            supervised.state() == SupervisedState::Failed
        })
        .await
    );
    assert!(matches!(
        fragile.send(Poke { panic: false }).await,
        Err(AskError::NoSuchActor { .. })
    ));
    assert_eq!(supervised.restarts(), 2);
    // The node itself is fine.
    assert_eq!(neighbour.send(Add { a: 1, b: 1 }).await.unwrap(), 2);
}

#[actix_rt::test]
async fn a_supervised_actor_stops_on_request_and_is_not_restarted() {
    let (_ca, nodes) = cluster(2).await;
    let (host, client) = (&nodes[0].node, &nodes[1].node);
    client.connect(host.listen_addr()).await.unwrap();
    let supervised = host
        .supervise("fragile", Restart::on_failure(), Fragile::default)
        .await
        .unwrap();
    assert!(
        host.supervise("fragile", Restart::never(), Fragile::default)
            .await
            .is_err(),
        "the name is taken"
    );
    let fragile = client.remote::<Fragile>(host.id(), "fragile");
    assert_eq!(fragile.send(Poke { panic: false }).await.unwrap(), 1);
    supervised.stop();
    assert!(
        eventually(Duration::from_secs(5), || async {
            supervised.state() == SupervisedState::Stopped
        })
        .await
    );
    assert!(matches!(
        fragile.send(Poke { panic: false }).await,
        Err(AskError::NoSuchActor { .. })
    ));
    assert_eq!(supervised.restarts(), 0);
}

/// A registered type: a counter that starts at its argument and knows its epoch.
struct Tally {
    count: u64,
    epoch: u64,
}

impl Actor for Tally {
    type Context = Context<Self>;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TallyArgs {
    start: u64,
}

#[derive(Debug, Serialize, Deserialize, Message)]
#[rtype(result = "(u64, u64)")]
struct Next;

swarm::remote_message!(Next => "test.Next");

impl Handler<Next> for Tally {
    type Result = MessageResult<Next>;

    fn handle(&mut self, _: Next, _: &mut Context<Self>) -> Self::Result {
        self.count += 1;
        MessageResult((self.count, self.epoch))
    }
}

swarm::remote_actor!(Tally: Next);

impl Spawnable for Tally {
    const TYPE: &'static str = "test.Tally";
    type Args = TallyArgs;

    fn build(args: &TallyArgs, incarnation: &Incarnation) -> Self {
        Tally {
            count: args.start,
            epoch: incarnation.epoch,
        }
    }
}

#[actix_rt::test]
async fn a_head_starts_a_registered_type_on_another_node_and_bad_requests_are_refused() {
    let (ca, nodes) = cluster(1).await;
    let host = &nodes[0].node;
    assert!(host.register::<Tally>());
    assert!(!host.register::<Tally>(), "registered once");
    let head = crate::util::start(crate::util::config_with_roles(&ca, "head-1", &["head"])).await;
    let head = &head.node;
    head.connect(host.listen_addr()).await.unwrap();

    let tally = head
        .spawn_on::<Tally>(
            host.id(),
            "tally",
            &TallyArgs { start: 41 },
            7,
            Restart::on_failure(),
        )
        .await
        .unwrap();
    assert_eq!(
        tally.send(Next).await.unwrap(),
        (42, 7),
        "built from its args, with its epoch"
    );
    // What `swarm actors` lists.
    let rows = head
        .remote::<Host>(host.id(), HOST_ACTOR)
        .send(ListActors)
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![ActorRow {
            name: "tally".into(),
            type_name: "test.Tally".into(),
            state: "running".into(),
            restarts: 0,
            epoch: 7,
            supervisor: "this node's host: restarted on failure, at most 5 within 60s".into(),
            placed: false,
            history: Vec::new(),
            journal: None,
        }]
    );

    // The name is taken now.
    let err = head
        .spawn_on::<Tally>(
            host.id(),
            "tally",
            &TallyArgs { start: 0 },
            8,
            Restart::never(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        RemoteSpawnError::Refused(SpawnError::NameTaken {
            name: "tally".into()
        })
    );
    // A type the node does not know.
    let err = head
        .spawn_on::<Fragile2>(host.id(), "f", &(), 1, Restart::never())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        RemoteSpawnError::Refused(SpawnError::UnknownType {
            type_name: "test.Fragile2".into()
        })
    );
    // Arguments that do not decode.
    let bad = HostSpawn {
        type_name: "test.Tally".into(),
        name: "tally-2".into(),
        args: vec![0xc1],
        epoch: 1,
        restart: Restart::never(),
        fence: None,
        idle_after_ms: None,
    };
    let reply = head
        .remote::<Host>(host.id(), HOST_ACTOR)
        .send(bad)
        .await
        .unwrap();
    assert!(
        matches!(reply, Err(SpawnError::BadArgs { .. })),
        "{reply:?}"
    );
    // A worker's certificate may not start actors.
    let err = {
        let w = crate::util::start(crate::util::config_with_roles(&ca, "w-2", &["worker"])).await;
        w.node.connect(host.listen_addr()).await.unwrap();
        w.node
            .spawn_on::<Tally>(
                host.id(),
                "tally-3",
                &TallyArgs { start: 0 },
                1,
                Restart::never(),
            )
            .await
            .unwrap_err()
    };
    assert!(
        matches!(&err, RemoteSpawnError::Ask(AskError::Forbidden { reason }) if reason.contains("head")),
        "{err:?}"
    );
    assert!(
        matches!(
            head.remote::<Tally>(host.id(), "tally-3").send(Next).await,
            Err(AskError::NoSuchActor { .. })
        ),
        "nothing was started"
    );
}

/// A type nobody registered.
#[derive(Default)]
struct Fragile2;

impl Actor for Fragile2 {
    type Context = Context<Self>;
}

impl Handler<Next> for Fragile2 {
    type Result = MessageResult<Next>;

    fn handle(&mut self, _: Next, _: &mut Context<Self>) -> Self::Result {
        MessageResult((0, 0))
    }
}

swarm::remote_actor!(Fragile2: Next);

impl Spawnable for Fragile2 {
    const TYPE: &'static str = "test.Fragile2";
    type Args = ();

    fn build(_: &(), _: &Incarnation) -> Self {
        Fragile2
    }
}
