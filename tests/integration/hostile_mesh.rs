//! A hostile member against the mesh's relays, gossip routes and kept task
//! results: a raw client with a real certificate that speaks the link
//! protocol itself (handshake, sealed envelopes) and sends crafted relay
//! frames, and a worker that forges `swarm.FetchObject` (the test declares
//! a message with the same tag and layout). Each attempt is refused, typed
//! and counted, and the cluster carries on.
//! DESIGN.md, "The mesh" (relays), "Membership and discovery", "Identity
//! and trust", "Control plane" (tasks).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use swarm::credentials::Throwaway;
use swarm::placement::Placement;
use swarm::protocol::gossip::{GossipKey, KeyRing};
use swarm::protocol::relay::{CircuitId, RelayFrame, RelayOp};
use swarm::protocol::session::{RecvHalf, SendHalf};
use swarm::protocol::{decode_frame, Decoded, Envelope, HandshakeConfig, NodeId};
use swarm::tasks::{TaskError, TaskId};
use swarm_actors::cluster::{ClusterAgent, ListMembers, CLUSTER_ACTOR};
use swarm_cli::demo::tasks::{blob, count_bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tasks::{cpus, task_cluster};
use crate::util::{config, eventually, members, sees_alive, start, TestNode};

const WITHIN: Duration = Duration::from_secs(15);

/// A link driven by hand: a real handshake with a real certificate, then
/// sealed envelopes both ways, with no node behind it.
struct RawLink {
    stream: TcpStream,
    send: SendHalf,
    recv: RecvHalf,
    buf: Vec<u8>,
}

impl RawLink {
    async fn connect(addr: SocketAddr, config: HandshakeConfig) -> Self {
        let (stream, est, buf) = crate::util::raw_handshake(addr, config).await;
        Self {
            stream,
            send: SendHalf::new(est.sender),
            recv: RecvHalf::new(est.receiver, 1 << 20),
            buf,
        }
    }

    /// Seals and sends encoded envelopes.
    async fn send(&mut self, envelopes: &[Vec<u8>]) {
        let mut out = Vec::new();
        for envelope in envelopes {
            self.send.push(envelope, &mut out).unwrap();
        }
        self.send.flush(&mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// Reads what the node sent within `wait`; answers how many relay
    /// frames among it were addressed to `dest`.
    async fn relayed_to(&mut self, dest: NodeId, wait: Duration) -> usize {
        let mut chunk = [0u8; 64 * 1024];
        if let Ok(Ok(n)) = tokio::time::timeout(wait, self.stream.read(&mut chunk)).await {
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let mut found = 0;
        let mut plain = Vec::new();
        while let Decoded::Frame { payload, consumed } = decode_frame(&self.buf, 1 << 20).unwrap() {
            let payload = payload.to_vec();
            self.buf.drain(..consumed);
            let Some(assembled) = self.recv.handle_frame(&payload, &mut plain).unwrap() else {
                continue;
            };
            let Ok(envelope) = Envelope::decode(assembled.bytes()) else {
                continue;
            };
            let items = match envelope {
                Envelope::Batch(items) => items,
                single => vec![single],
            };
            found += items
                .iter()
                .filter(|e| matches!(e, Envelope::Relay(f) if f.dest == dest))
                .count();
        }
        found
    }
}

/// A membership datagram over the mesh for `dest` that claims to come
/// from `origin` at `addr`.
fn datagram(dest: NodeId, origin: NodeId, addr: SocketAddr, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    RelayFrame {
        op: RelayOp::Datagram,
        dest,
        origin,
        circuit: CircuitId {
            number: 0,
            opener: origin,
        },
        addr: Some(addr),
        body,
    }
    .encode(&mut out);
    out
}

/// A metadata request (kind 1, no body), sealed with the cluster's gossip
/// key as any member holding the join secret can: it opens, is fresh, and
/// is answered.
fn sealed_meta_request(ring: &KeyRing, n: u64) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&n.to_be_bytes());
    nonce[8..].copy_from_slice(&std::process::id().to_be_bytes());
    let now_ms = swarm::credentials::unix_now() * 1000;
    let mut out = Vec::new();
    ring.seal(&[1], nonce, now_ms, &mut out);
    out
}

async fn gossip_unsealed(node: &swarm::Node) -> u64 {
    let rows = node
        .remote::<ClusterAgent>(node.id(), CLUSTER_ACTOR)
        .send(ListMembers)
        .await
        .unwrap();
    rows.iter()
        .find_map(|r| r.counters.as_ref())
        .map_or(0, |c| c.gossip_unsealed)
}

#[actix_rt::test]
async fn a_forged_gossip_datagram_learns_no_route_through_its_sender_and_the_member_stays_up() {
    let (ca, nodes) = members(3).await;
    let (victim, member) = (&nodes[0].node, &nodes[1].node);
    for n in &nodes {
        assert!(eventually(WITHIN, || sees_alive(&n.node, 3)).await);
    }
    let member_addr = victim
        .cluster()
        .unwrap()
        .members()
        .await
        .unwrap()
        .iter()
        .find(|m| m.node == member.id())
        .unwrap()
        .addr;
    // Mallory: a worker certificate and the join secret (so the gossip key).
    let cfg = ca.node("mallory", &["worker"]);
    let ring = KeyRing::new(GossipKey::derive(&cfg.join_secret, &cfg.cluster));
    let mut link = RawLink::connect(victim.listen_addr(), cfg).await;
    let mut steered = 0;

    // 1. Garbage that does not open: dropped before any route is weighed.
    let unsealed_before = gossip_unsealed(victim).await;
    let refused_before = victim.stats().relay_refused;
    let deadline = Instant::now() + WITHIN;
    let mut n = 0u64;
    while gossip_unsealed(victim).await < unsealed_before + 10 {
        assert!(Instant::now() < deadline, "garbled datagrams never arrived");
        n += 1;
        let forged = datagram(victim.id(), member.id(), member_addr, &[0xA5; 64]);
        link.send(&[forged]).await;
        steered += link
            .relayed_to(member.id(), Duration::from_millis(50))
            .await;
    }
    assert_eq!(steered, 0, "a garbled datagram steered the member's gossip");
    assert_eq!(
        victim.stats().relay_refused,
        refused_before,
        "an unauthenticated datagram was weighed as a route"
    );

    // 2. Sealed with the gossip key, claiming the member's address and
    // origin, carried by mallory (no relay, and not the member's): opened,
    // answered, but no route through mallory.
    let before = victim.stats().relay_refused;
    let deadline = Instant::now() + WITHIN;
    while victim.stats().relay_refused < before + 10 {
        assert!(
            Instant::now() < deadline,
            "forged routes were not refused: {:?}",
            victim.stats()
        );
        n += 1;
        let body = sealed_meta_request(&ring, n);
        let forged = datagram(victim.id(), member.id(), member_addr, &body);
        link.send(&[forged]).await;
        steered += link
            .relayed_to(member.id(), Duration::from_millis(50))
            .await;
    }
    // The victim never sent the member's gossip (or answers to it) to mallory.
    assert_eq!(
        steered, 0,
        "the victim routed the member's gossip through mallory"
    );
    assert!(sees_alive(victim, 3).await, "the member stays up");
}

#[actix_rt::test]
async fn relay_frames_from_an_operator_certificate_are_refused_and_counted() {
    let ca = Throwaway::new("test");
    let mut c = config(&ca, "r1");
    c.relay = true;
    let relay = start(c).await;
    let target = start(config(&ca, "n2")).await;
    let (r, t) = (&relay.node, &target.node);
    t.connect(r.listen_addr()).await.unwrap();
    // An operator's certificate (logged in or not, it is not a node).
    let cfg = ca.node("eve", &["operator", "admin"]);
    let eve = cfg.key.node_id();
    let before = r.stats();
    let target_before = t.stats();
    let mut link = RawLink::connect(r.listen_addr(), cfg).await;
    let open = {
        let mut out = Vec::new();
        RelayFrame {
            op: RelayOp::Open,
            dest: t.id(),
            origin: eve,
            circuit: CircuitId {
                number: 1,
                opener: eve,
            },
            addr: None,
            body: &[],
        }
        .encode(&mut out);
        out
    };
    let dgram = datagram(t.id(), eve, "127.0.0.1:9".parse().unwrap(), b"x");
    link.send(&[open, dgram]).await;
    assert!(
        eventually(WITHIN, || async {
            let s = r.stats();
            s.relay_refused >= before.relay_refused + 2 && s.forbidden >= before.forbidden + 2
        })
        .await,
        "{:?}",
        r.stats()
    );
    // Nothing reached the target: no circuit, no datagram.
    let after = t.stats();
    assert_eq!(after.circuits, target_before.circuits);
    assert_eq!(after.datagrams_relayed, target_before.datagrams_relayed);
    assert_eq!(r.stats().relay_frames, before.relay_frames);
}

/// What a forger puts on the wire as `swarm.FetchObject`: the task, the
/// range, a token, and a claim of who asks (the holder stamps it).
#[derive(Debug, Serialize, Deserialize, actix::Message)]
#[rtype(result = "Result<ForgedChunk, TaskError>")]
struct ForgedFetch {
    task: TaskId,
    offset: u64,
    len: u32,
    token: [u8; 16],
    from: NodeId,
}
swarm::remote_message!(ForgedFetch => "swarm.FetchObject");

#[derive(Debug, Serialize, Deserialize)]
struct ForgedChunk {
    size: u64,
    bytes: serde_bytes::ByteBuf,
}

/// What a forger puts on the wire as `swarm.SubmitTasks`: tasks to run,
/// and a claim of whose they are (the receiver stamps it).
#[derive(Debug, Serialize, Deserialize, actix::Message)]
#[rtype(result = "()")]
struct ForgedSubmit {
    owner: NodeId,
    tasks: Vec<ForgedSpec>,
}
swarm::remote_message!(ForgedSubmit => "swarm.SubmitTasks");

#[derive(Debug, Serialize, Deserialize)]
struct ForgedSpec {
    seq: u64,
    attempt: u32,
    tag: String,
    args: Vec<ForgedArg>,
    need: swarm::placement::ResourceSet,
    keep: bool,
    token: [u8; 16],
}

#[derive(Debug, Serialize, Deserialize)]
enum ForgedArg {
    #[allow(dead_code)]
    Value(serde_bytes::ByteBuf),
    Ref(ForgedObject),
}

#[derive(Debug, Serialize, Deserialize)]
struct ForgedObject {
    task: TaskId,
    node: NodeId,
    token: [u8; 16],
}

/// A stand-in for the scheduler, so a `RemoteAddr` may send the forgery.
struct Tasks;
impl actix::Actor for Tasks {
    type Context = actix::Context<Self>;
}
impl actix::Handler<ForgedFetch> for Tasks {
    type Result = Result<ForgedChunk, TaskError>;
    fn handle(&mut self, _: ForgedFetch, _: &mut Self::Context) -> Self::Result {
        Err(TaskError::Stopped)
    }
}
impl actix::Handler<ForgedSubmit> for Tasks {
    type Result = ();
    fn handle(&mut self, _: ForgedSubmit, _: &mut Self::Context) {}
}
swarm::remote_actor!(Tasks: ForgedFetch, ForgedSubmit);

#[actix_rt::test]
async fn a_worker_fetching_another_owners_kept_result_is_refused_while_owner_and_consumer_read_it()
{
    let (_ca, nodes) = task_cluster(&[cpus(0.0), cpus(1.0), cpus(1.0), cpus(1.0)]).await;
    let (owner, holder, consumer, thief) = (&nodes[0], &nodes[1], &nodes[2], &nodes[3]);
    let t = owner.node.tasks().unwrap().clone();
    let on = |n: &TestNode| Placement::Node {
        node: n.node.id(),
        hard: true,
    };
    const SIZE: u64 = 4096;
    let r = t
        .task(blob)
        .placement(on(holder))
        .keep()
        .submit(SIZE)
        .await
        .unwrap();
    let (at, _) = r.ready().await.unwrap();
    assert_eq!(at, holder.node.id());
    // The owner reads it.
    assert_eq!(r.get().await.unwrap().len() as u64, SIZE);
    // A task the owner sends elsewhere reads it (with the token it carries).
    let (len, _, ran) = t
        .task(count_bytes)
        .placement(on(consumer))
        .submit(&r)
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!((len, ran), (SIZE, Some(consumer.node.id())));
    // Another worker that knows the (listed) task id is refused, typed,
    // whoever it claims to be and whatever token it guesses.
    let before = holder.node.stats().forbidden;
    let holder_tasks = thief
        .node
        .remote::<Tasks>(holder.node.id(), swarm::tasks::TASKS_ACTOR);
    for token in [[0u8; 16], [0x5A; 16]] {
        let forged = ForgedFetch {
            task: r.id(),
            offset: 0,
            len: 1024,
            token,
            from: owner.node.id(),
        };
        let answer = holder_tasks.send(forged).await.unwrap();
        match answer {
            Err(TaskError::Forbidden { task }) => assert_eq!(task, r.id()),
            other => panic!("expected Forbidden, got {other:?}"),
        }
    }
    assert!(holder.node.stats().forbidden >= before + 2, "counted");
    // Nor can it read the result through a task of its own that names it,
    // run where the result is held.
    let before = holder.node.stats().forbidden;
    let submit = ForgedSubmit {
        owner: owner.node.id(),
        tasks: vec![ForgedSpec {
            seq: 1_000,
            attempt: 0,
            tag: "demo.count_bytes".into(),
            args: vec![ForgedArg::Ref(ForgedObject {
                task: r.id(),
                node: holder.node.id(),
                token: [0; 16],
            })],
            need: swarm::placement::ResourceSet::default(),
            keep: false,
            token: [0; 16],
        }],
    };
    holder_tasks.tell(submit).await.unwrap();
    let refused = eventually(WITHIN, || async { holder.node.stats().forbidden > before }).await;
    assert!(refused, "the thief's task was refused the result");
    // The owner still reads it.
    assert_eq!(r.get().await.unwrap().len() as u64, SIZE);
}
