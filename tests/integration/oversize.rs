//! Messages over the size limit fail alone, with a typed error to their
//! caller, and never break the link that carries everything else.
//! DESIGN.md: "a frame over the configured maximum is an error, never an
//! allocation"; README delivery contract: `TooLarge`.

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use swarm::{AskError, TellError};
use swarm_cli::demo::{checksum, Add, Adder, Echo};

use crate::util::{config, start};

const LIMIT: usize = 64 * 1024;

/// Answers with `0` bytes of the given length.
#[derive(Serialize, Deserialize, Message)]
#[rtype(result = "Blob")]
struct Blow(usize);

#[derive(Debug, Serialize, Deserialize)]
struct Blob(#[serde(with = "serde_bytes")] Vec<u8>);

/// Answers once the blower's gate opens.
#[derive(Serialize, Deserialize, Message)]
#[rtype(result = "u32")]
struct Slow(u32);

swarm::remote_message!(Blow => "oversize.Blow", Slow => "oversize.Slow");

struct Blower {
    gate: tokio::sync::watch::Receiver<bool>,
}
impl Actor for Blower {
    type Context = Context<Self>;
}
impl Handler<Blow> for Blower {
    type Result = MessageResult<Blow>;
    fn handle(&mut self, Blow(n): Blow, _: &mut Context<Self>) -> Self::Result {
        MessageResult(Blob(vec![0; n]))
    }
}
impl Handler<Slow> for Blower {
    type Result = ResponseFuture<u32>;
    fn handle(&mut self, Slow(n): Slow, _: &mut Context<Self>) -> Self::Result {
        let mut gate = self.gate.clone();
        Box::pin(async move {
            let _ = gate.wait_for(|open| *open).await;
            n
        })
    }
}
swarm::remote_actor!(Blower: Blow, Slow);

/// Nodes a and b, linked, with message limits `a_max` and `b_max`; b runs
/// a `Blower` whose `Slow` answers wait for the returned gate.
async fn pair(
    a_max: usize,
    b_max: usize,
) -> (
    crate::util::TestNode,
    crate::util::TestNode,
    tokio::sync::watch::Sender<bool>,
) {
    let ca = swarm::credentials::Throwaway::new("test");
    let mut a = config(&ca, "a");
    a.max_message = a_max;
    let mut b = config(&ca, "b");
    b.max_message = b_max;
    let (a, b) = (start(a).await, start(b).await);
    let (open, gate) = tokio::sync::watch::channel(false);
    b.node.spawn("blower", move |_| Blower { gate }).unwrap();
    a.node.connect(b.node.listen_addr()).await.unwrap();
    (a, b, open)
}

fn echo(len: usize) -> Echo {
    Echo { data: vec![7; len] }
}

#[actix_rt::test]
async fn oversize_requests_and_replies_fail_alone_and_the_link_stays() {
    let (a, b, open) = pair(LIMIT, LIMIT).await;
    let link = a.node.peers()[0].clone();
    let adder = a.node.remote::<Adder>(b.node.id(), "adder");
    let blower = a.node.remote::<Blower>(b.node.id(), "blower");
    // An ask in flight on the same link while the over-size ones fail.
    let in_flight = actix_rt::spawn({
        let blower = blower.clone();
        async move { blower.send(Slow(5)).await }
    });
    // Refused by the sender before anything is sent.
    match adder.send(echo(LIMIT + 1)).await {
        Err(AskError::TooLarge { size, max }) => assert!(size > LIMIT && max == LIMIT),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    match adder.tell(echo(LIMIT + 1)).await {
        Err(TellError::TooLarge { msg, .. }) => assert_eq!(msg.data.len(), LIMIT + 1),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // A reply over the limit is replaced by an error for that ask alone.
    match blower.send(Blow(LIMIT + 1)).await {
        Err(AskError::TooLarge { max, .. }) => assert_eq!(max, LIMIT),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    open.send(true).unwrap();
    assert_eq!(in_flight.await.unwrap(), Ok(5));
    let data = vec![7; 1000];
    assert_eq!(
        adder.send(echo(1000)).await.unwrap(),
        (1000, checksum(&data))
    );
    let now = a.node.peers();
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].addr, link.addr, "the link was replaced");
    assert_eq!(a.node.stats().links_failed + b.node.stats().links_failed, 0);
}

#[actix_rt::test]
async fn a_receiver_with_a_smaller_limit_refuses_the_message_and_keeps_the_link() {
    // a may send 256 KiB; b accepts 64 KiB.
    let (a, b, _open) = pair(4 * LIMIT, LIMIT).await;
    let link = a.node.peers()[0].clone();
    let adder = a.node.remote::<Adder>(b.node.id(), "adder");
    match adder.send(echo(2 * LIMIT)).await {
        Err(AskError::TooLarge { size, max }) => {
            assert!(size > 2 * LIMIT, "{size}");
            assert_eq!(max, LIMIT);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // b's reply over b's own limit is refused by b; one over a's limit by a.
    let blower = a.node.remote::<Blower>(b.node.id(), "blower");
    assert!(matches!(
        blower.send(Blow(2 * LIMIT)).await,
        Err(AskError::TooLarge { .. })
    ));
    assert_eq!(adder.send(Add { a: 2, b: 2 }).await.unwrap(), 4);
    let now = a.node.peers();
    assert_eq!((now.len(), now[0].addr), (1, link.addr));
    assert_eq!(a.node.stats().links_failed + b.node.stats().links_failed, 0);
}
