//! Two nodes in one process, each on its own thread, with a typed actor on
//! one called from the other over an authenticated, encrypted Noise link.
//!
//! Run it with:
//!
//! ```sh
//! cargo run --example ping_pong
//! ```
//!
//! For nodes in separate processes or on separate machines, see the
//! "Launch nodes by hand" section of the README (`swarm ca init`,
//! `swarm cert issue`, `swarm node start`, `swarm ping`).

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use swarm::credentials::Throwaway;
use swarm::{MeshConfig, Node};

// 1. Messages: serde types with an actix result type and a stable wire tag.
#[derive(Debug, Serialize, Deserialize, Message)]
#[rtype(result = "Pong")]
struct Ping {
    n: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Pong {
    n: u32,
    from: String,
}

#[derive(Debug, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
struct Note(String);

swarm::remote_message!(Ping => "example.Ping", Note => "example.Note");

// 2. The actor: a plain actix actor.
struct Ponger {
    name: String,
}

impl Actor for Ponger {
    type Context = Context<Self>;
}

// 3. Its handlers.
impl Handler<Ping> for Ponger {
    type Result = MessageResult<Ping>;

    fn handle(&mut self, ping: Ping, _: &mut Context<Self>) -> Self::Result {
        MessageResult(Pong {
            n: ping.n + 1,
            from: self.name.clone(),
        })
    }
}

impl Handler<Note> for Ponger {
    type Result = ();

    fn handle(&mut self, Note(text): Note, _: &mut Context<Self>) {
        println!("{} got a note: {text}", self.name);
    }
}

// The messages other nodes may send a Ponger; anything else does not compile.
swarm::remote_actor!(Ponger: Ping, Note);

#[actix::main]
async fn main() -> anyhow::Result<()> {
    // A throw-away CA and join secret; real clusters use `swarm ca init`.
    let ca = Throwaway::new("example");
    let config =
        |name: &str| MeshConfig::new("127.0.0.1:0".parse().unwrap(), ca.node(name, &["worker"]));

    // Start two nodes, each on its own thread (arbiter).
    let (left_thread, right_thread) = (Arbiter::new(), Arbiter::new());
    let left = Node::start_on(&left_thread.handle(), config("left")).await?;
    let right = Node::start_on(&right_thread.handle(), config("right")).await?;

    // Start the actor on the right node's thread and expose it with its
    // remote protocol (Ping and Note, declared once below the actor).
    let name = right.name().to_owned();
    right.spawn("ponger", move |_| Ponger { name })?;

    // Connect (Noise XXpsk3 handshake, both certificates checked) and call.
    let peer = left.connect(right.listen_addr()).await?;
    println!("left connected to {} ({})", peer.name, peer.id.short());
    let ponger = left.remote::<Ponger>(peer.id, "ponger");
    for n in 0..3 {
        let pong = ponger.send(Ping { n }).await?;
        println!("ping {n} -> pong {} from {}", pong.n, pong.from);
    }
    ponger
        .tell(Note("hello from left".into()))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // An ask after the tell returns after it: per-pair order.
    ponger.send(Ping { n: 99 }).await?;

    left.shutdown();
    right.shutdown();
    System::current().stop();
    Ok(())
}
