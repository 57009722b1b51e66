//! The mesh: connections between nodes, each authenticated by the Noise
//! handshake and then owned by one [`Link`](link::Link) actor. A link runs
//! over TCP, or over a circuit through a relay for a node that cannot
//! accept connections (`relay`). [`Mesh`] is its door: other rooms get
//! links, dial, send membership datagrams over links, read counters and
//! report what membership decided, and never touch the tables behind it.
//!
//! ```text
//! Mesh (handle)
//! ├── Router     owns the link table and routes; dials directly or through a
//! │   │          relay, upgrades relayed links, hands over, resolves duplicates
//! │   └── Link × n   one per peer: reader task, writer task, heartbeat
//! ├── Listener   accepts TCP, runs handshakes, hands links to the Router
//! ├── relay      circuit ends here, circuits forwarded for others
//! └── detect     the address to announce, confirmed by a seed's dial-back
//! ```
//!
//! When a Link dies (socket closed, bad input, heartbeat or idle timeout)
//! it tells the Router, which forgets it; the next send dials again. The
//! Listener and Router live until [`Mesh::shutdown`]. All of them run on the
//! node's arbiter, so a message crosses no thread between socket and actor
//! when the target actor lives there too.

pub(crate) mod connect;
mod counters;
mod detect;
mod down;
mod faults;
mod gate;
pub(crate) mod link;
mod listener;
mod refusals;
mod relay;
mod router;
mod settings;
mod table;
mod trust;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::{Actor, Addr};
use swarm_protocol::{HandshakeConfig, NodeId};
use tokio::net::TcpListener;

use crate::directory::{Caller, Directory};
use crate::error::{AskError, ConnectError, Unreachable};
use counters::Counters;
use down::DownSet;
use link::LinkHandle;
use listener::{Listener, StopListener};
use router::{CloseAll, CloseRevoked, Dial, DialNode, PeerDown, PeerUp, Router};

pub(crate) use detect::Detected;
pub(crate) use relay::InboundDatagram;
use table::LinkTable;

pub(crate) use gate::{SessionGate, Unchecked};
pub(crate) use settings::Settings;

pub use counters::MeshStats;
pub use faults::Faults;

/// The handle to a node's mesh. Cheap to clone, usable from any thread.
#[derive(Clone)]
pub(crate) struct Mesh {
    shared: Arc<Shared>,
    router: Addr<Router>,
    listener: Addr<Listener>,
}

/// What the mesh's actors and handles share. Fields are private to the
/// mesh module: only the Router writes `links` and `names`, only the
/// [`Mesh`] door writes `down`.
struct Shared {
    /// This node's id.
    id: NodeId,
    /// This node's certificate name.
    name: String,
    /// Where the listener is bound.
    listen: SocketAddr,
    /// Limits and timers of links.
    config: Settings,
    /// Identity and trust for handshakes, with the bound listen address;
    /// replaced when the node renews its certificate.
    handshake: std::sync::RwLock<Arc<HandshakeConfig>>,
    /// Where inbound messages are dispatched.
    directory: Directory,
    /// Live links by peer.
    links: LinkTable,
    /// Nodes membership holds down or departed; sends to them fail at once.
    down: DownSet,
    /// Counters for operators and tests.
    counters: Counters,
    /// Relayed circuits ending at this node.
    circuits: Arc<relay::CircuitEnds>,
    /// Circuits this node forwards as a relay.
    forwarded: relay::Forwarded,
    /// Where membership datagrams that arrive over links go.
    datagrams: relay::DatagramSink,
    /// The relays a relayed node has links to now (what it announces).
    via: std::sync::Mutex<Vec<NodeId>>,
    /// Address detection for a node bound to a wildcard address.
    detection: detect::Detection,
    /// The address detection settled on, if it ran.
    detected: std::sync::Mutex<Option<SocketAddr>>,
    /// Decides the operator sessions presented on links (the operators
    /// room's, installed by the node).
    gate: Arc<dyn SessionGate>,
    /// An envelope sent first on every new link (an operator node's
    /// session), if any.
    greeting: std::sync::RwLock<Option<Vec<u8>>>,
    /// This node as the caller of its own local dispatches (built once:
    /// local messages take it on every call).
    own_caller: Caller,
    /// The most recently closed links, for operators.
    closed: ClosedLinks,
    /// When the mesh started.
    started: std::time::Instant,
    /// Where a head node runs its direct links to other heads (its Raft's
    /// thread: `link::Seed`); unset elsewhere.
    priority: std::sync::OnceLock<actix::ArbiterHandle>,
}

/// The last [`ClosedLinks::KEPT`] closed links, newest last.
#[derive(Default)]
struct ClosedLinks(std::sync::Mutex<std::collections::VecDeque<crate::inspect::ClosedLink>>);

impl ClosedLinks {
    const KEPT: usize = 32;

    fn push(&self, closed: crate::inspect::ClosedLink) {
        let mut list = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if list.len() == Self::KEPT {
            list.pop_front();
        }
        list.push_back(closed);
    }

    fn list(&self) -> Vec<crate::inspect::ClosedLink> {
        let list = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        list.iter().cloned().collect()
    }
}

/// A connected peer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// Its node id.
    pub id: NodeId,
    /// Its certificate name.
    pub name: String,
    /// Its certificate roles.
    pub roles: Vec<String>,
    /// The remote address of the link's socket.
    pub addr: SocketAddr,
    /// True if this node dialed the link.
    pub dialed: bool,
    /// The relay the link runs through; `None` for a direct link.
    pub via: Option<NodeId>,
    /// Asks sent on the link and still waiting for their replies.
    pub pending_asks: usize,
    /// Bytes written to the link's socket (ciphertext, framing included).
    pub bytes_out: u64,
    /// Bytes read from it.
    pub bytes_in: u64,
}

impl Mesh {
    /// Starts the Router and Listener on the current arbiter, accepting on
    /// `socket`. `config.listen` and `config.handshake.listen` MUST already
    /// hold the bound address.
    pub(crate) fn start(
        config: Settings,
        socket: TcpListener,
        directory: Directory,
        gate: Arc<dyn SessionGate>,
    ) -> Mesh {
        let own_caller = Caller {
            node: config.handshake.key.node_id(),
            roles: config.handshake.cert.body().roles.clone().into(),
            serial: config.handshake.cert.body().serial,
            name: Arc::from(config.handshake.cert.body().name.as_str()),
            addr: config.listen,
            // A node's own calls need no second factor.
            operator: false,
        };
        let shared = Arc::new(Shared {
            id: config.handshake.key.node_id(),
            name: config.handshake.cert.body().name.clone(),
            listen: config.listen,
            handshake: std::sync::RwLock::new(Arc::new(config.handshake.clone())),
            config,
            directory,
            links: LinkTable::default(),
            down: DownSet::default(),
            counters: Counters::default(),
            circuits: Arc::default(),
            forwarded: relay::Forwarded::default(),
            datagrams: relay::DatagramSink::default(),
            via: std::sync::Mutex::default(),
            detection: detect::Detection::default(),
            detected: std::sync::Mutex::default(),
            gate,
            greeting: std::sync::RwLock::default(),
            own_caller,
            closed: ClosedLinks::default(),
            priority: std::sync::OnceLock::new(),
            started: std::time::Instant::now(),
        });
        let router = Router::new(Arc::clone(&shared)).start();
        let listener = Listener::new(socket, Arc::clone(&shared), router.clone()).start();
        Mesh {
            shared,
            router,
            listener,
        }
    }

    /// This node's id.
    pub(crate) fn id(&self) -> NodeId {
        self.shared.id
    }

    /// This node's certificate name.
    pub(crate) fn name(&self) -> &str {
        &self.shared.name
    }

    /// The address the mesh listens on.
    pub(crate) fn listen_addr(&self) -> SocketAddr {
        self.shared.listen
    }

    /// The address other nodes reach this node at: the advertised one, or
    /// the bound one.
    pub(crate) fn advertised_addr(&self) -> SocketAddr {
        let detected = *self
            .shared
            .detected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.shared
            .config
            .advertise
            .or(detected)
            .unwrap_or(self.shared.listen)
    }

    /// Sets the address detection found, to announce from now on.
    pub(crate) fn set_detected(&self, addr: SocketAddr) {
        *self
            .shared
            .detected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(addr);
    }

    /// Whether this node forwards for relayed nodes.
    pub(crate) fn is_relay(&self) -> bool {
        self.shared.config.relay
    }

    /// Whether this node is reached through relays.
    pub(crate) fn is_relayed(&self) -> bool {
        self.shared.config.relayed
    }

    /// The relays this node has links to now, if it is relayed.
    pub(crate) fn via(&self) -> Vec<NodeId> {
        self.shared
            .via
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Membership datagrams that arrive over links (from or for nodes
    /// that UDP cannot reach). Only the last subscriber receives them.
    pub(crate) fn subscribe_datagrams(&self) -> tokio::sync::mpsc::Receiver<InboundDatagram> {
        self.shared.datagrams.subscribe()
    }

    /// Sends a sealed membership datagram to `dest` over the mesh: on a
    /// link to it, else through one of `via` (its relays), else (when
    /// this node is relayed) through this node's own relays. Without a
    /// link now, a dial starts (to its first relay, or to it) and this
    /// datagram is dropped, as UDP would drop it.
    pub(crate) fn send_datagram(
        &self,
        dest: NodeId,
        via: &[NodeId],
        from: SocketAddr,
        datagram: &[u8],
    ) -> bool {
        use swarm_protocol::relay::{CircuitId, RelayFrame, RelayOp};
        let s = &self.shared;
        let direct = |n: &NodeId| s.links.live(*n).filter(|l| l.via().is_none());
        let own = self.via();
        let link = s
            .links
            .live(dest)
            .or_else(|| via.iter().find_map(direct))
            .or_else(|| own.iter().find_map(direct));
        let Some(link) = link else {
            // Dial for the next one: the destination's relay, or the
            // destination itself (a relayed node without relay links yet
            // can still dial out).
            s.counters.datagram_dropped();
            drop(self.link_now(via.first().copied().unwrap_or(dest)));
            return false;
        };
        let mut out = Vec::with_capacity(RelayFrame::encoded_len(datagram.len()));
        RelayFrame {
            op: RelayOp::Datagram,
            dest,
            origin: s.id,
            circuit: CircuitId {
                number: 0,
                opener: s.id,
            },
            addr: Some(from),
            body: datagram,
        }
        .encode(&mut out);
        if link.try_send(out).is_ok() {
            s.counters.datagram_relayed();
            true
        } else {
            s.counters.datagram_dropped();
            false
        }
    }

    /// The node of the direct link dialed to `addr`, if there is one;
    /// otherwise a dial to it starts in the background.
    pub(crate) fn node_at(&self, addr: SocketAddr) -> Option<NodeId> {
        let found = self
            .shared
            .links
            .all()
            .into_iter()
            .find(|l| l.via().is_none() && !l.is_closed() && l.remote_addr() == addr)
            .map(|l| l.peer());
        if found.is_none() {
            self.router.do_send(Dial(addr));
        }
        found
    }

    /// The handshake configuration (identity, trust, cluster).
    pub(crate) fn handshake(&self) -> Arc<HandshakeConfig> {
        self.shared.handshake()
    }

    /// This node as the caller of its own local dispatches.
    pub(crate) fn own_caller(&self) -> Caller {
        self.shared.own_caller.clone()
    }

    /// Switches to `cert` for every handshake from now on (links up stay):
    /// it must be for this node's key and verify against the CA.
    ///
    /// # Errors
    ///
    /// Why the certificate does not fit.
    pub(crate) fn renew_certificate(
        &self,
        cert: swarm_protocol::Certificate,
    ) -> Result<(), swarm_protocol::CertError> {
        let current = self.handshake();
        if cert.body().static_key != *current.key.public() {
            return Err(swarm_protocol::CertError::KeyMismatch);
        }
        current
            .trust
            .verify(&cert, unix_now(), Some(current.key.public()))?;
        let mut next = (*current).clone();
        next.cert = cert;
        *self
            .shared
            .handshake
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(next);
        Ok(())
    }

    /// The default ask timeout.
    pub(crate) fn ask_timeout(&self) -> Duration {
        self.shared.config.ask_timeout
    }

    /// The largest message a link carries.
    pub(crate) fn max_message(&self) -> usize {
        self.shared.config.max_message
    }

    /// Counts a message the policy refused (one an operator's delegate
    /// brought, decided outside a link's reader).
    pub(crate) fn count_forbidden(&self) {
        self.shared.counters.forbidden();
    }

    /// Counts a relayed datagram whose route membership refused (it named
    /// a member it cannot speak for, or came through a node that is not
    /// that member's relay).
    pub(crate) fn count_relay_refused(&self) {
        self.shared.counters.relay_refused();
    }

    /// The dispatcher of the actor exposed here under `name` (a message
    /// to this node is delivered without a link).
    pub(crate) fn local(&self, name: &str) -> Option<Arc<dyn crate::directory::Dispatch>> {
        self.shared.directory.dispatcher(name)
    }

    /// Counters of refused and dropped traffic.
    pub(crate) fn stats(&self) -> MeshStats {
        let circuits = self.shared.circuits.len() + self.shared.forwarded.len();
        self.shared
            .counters
            .snapshot(self.shared.links.len(), circuits)
    }

    /// Dials `addr` (or reuses an existing link to it) and returns who answered.
    pub(crate) async fn connect(&self, addr: SocketAddr) -> Result<PeerInfo, ConnectError> {
        match self.router.send(Dial(addr)).await {
            Ok(Ok(link)) => Ok(link.info()),
            Ok(Err(cause)) => Err(ConnectError { addr, cause }),
            Err(_) => Err(ConnectError {
                addr,
                cause: crate::error::DialError::Stopped,
            }),
        }
    }

    /// Opens a link to `node` through the relay `relay`, whatever the
    /// routes say; a direct link to `node` that exists is kept instead.
    pub(crate) async fn connect_via(
        &self,
        relay: NodeId,
        node: NodeId,
    ) -> Result<PeerInfo, crate::error::DialError> {
        match self.router.send(router::Through { node, relay }).await {
            Ok(result) => result.map(|link| link.info()),
            Err(_) => Err(crate::error::DialError::Stopped),
        }
    }

    /// Every live link as the console's Links view shows it.
    pub(crate) fn link_views(&self) -> Vec<crate::inspect::LinkView> {
        let cipher = self.handshake().suite.noise_name();
        let me = self.id();
        let mut links: Vec<_> = self
            .shared
            .links
            .all()
            .iter()
            .map(|l| l.view(me, cipher))
            .collect();
        links.sort_by(|a, b| a.peer_name.cmp(&b.peer_name));
        links
    }

    /// The most recently closed links, newest last.
    pub(crate) fn closed_links(&self) -> Vec<crate::inspect::ClosedLink> {
        self.shared.closed.list()
    }

    /// How long the mesh has run.
    pub(crate) fn uptime(&self) -> Duration {
        self.shared.started.elapsed()
    }

    /// The peers this node has a link to.
    pub(crate) fn peers(&self) -> Vec<PeerInfo> {
        self.shared
            .links
            .all()
            .iter()
            .map(LinkHandle::info)
            .collect()
    }

    /// The id of a peer seen under this certificate name.
    pub(crate) fn peer_named(&self, name: &str) -> Option<NodeId> {
        self.shared.links.named(name)
    }

    /// Whether membership holds `node` down or departed.
    pub(crate) fn is_down(&self, node: NodeId) -> bool {
        self.shared.down.contains(node)
    }

    /// The live link to `node`, if there is one.
    pub(crate) fn live_link(&self, node: NodeId) -> Option<LinkHandle> {
        self.shared.links.live(node)
    }

    /// The live link to `node`, dialing it if there is none.
    ///
    /// # Errors
    ///
    /// [`AskError::Unreachable`] if no link can be made.
    pub(crate) async fn link(&self, node: NodeId) -> Result<LinkHandle, AskError> {
        if let Some(link) = self.live_link(node) {
            return Ok(link);
        }
        match self.router.send(DialNode::new(node)).await {
            Ok(result) => result.map_err(|cause| AskError::Unreachable { node, cause }),
            Err(_) => Err(AskError::Unreachable {
                node,
                cause: Unreachable::Dial(crate::error::DialError::Stopped),
            }),
        }
    }

    /// The live link to `node` if there is one; otherwise starts dialing it
    /// in the background, unless a background dial to it is under way
    /// already (so a retry loop cannot flood the Router).
    pub(crate) fn link_now(&self, node: NodeId) -> Option<LinkHandle> {
        let link = self.live_link(node);
        if link.is_none() && self.shared.links.begin_background_dial(node) {
            self.shared.counters.background_dial();
            self.router.do_send(DialNode::background(node));
        }
        link
    }

    /// Membership learned that `node` is alive, listens at `addr` (or is
    /// reached through the relays `via`), and whether it is a relay.
    pub(crate) fn peer_up(&self, node: NodeId, addr: SocketAddr, via: Vec<NodeId>, relay: bool) {
        self.shared.down.set(node, false);
        self.router.do_send(PeerUp {
            node,
            addr,
            via,
            relay,
        });
    }

    /// Membership declared `node` down or departed: sends to it fail at
    /// once, and the link to it closes (asks waiting on it fail with
    /// [`AskError::NodeDown`]).
    pub(crate) fn peer_down(&self, node: NodeId) {
        self.shared.down.set(node, true);
        if let Some(link) = self.shared.links.live(node) {
            // Before the Router closes it: waiting asks then fail with NodeDown.
            link.mark_member_down();
        }
        self.router.do_send(PeerDown(node));
    }

    /// Revokes certificate serials: links to their holders close now and
    /// their handshakes are refused from now on. Returns how many were new
    /// to the trust store (which nodes of one process may share, so links
    /// are checked whatever it returns).
    pub(crate) fn revoke(&self, serials: &[u64]) -> usize {
        let new = self
            .shared
            .handshake()
            .trust
            .revoke(serials.iter().copied());
        self.router.do_send(CloseRevoked);
        self.shared.keep_revocations();
        new
    }

    /// Whether the listener still runs.
    pub(crate) fn listening(&self) -> bool {
        self.listener.connected()
    }

    /// Runs the direct links to heads made from now on on `thread` (a
    /// head node's Raft thread); once, before any link.
    pub(crate) fn set_priority_thread(&self, thread: actix::ArbiterHandle) {
        let _ = self.shared.priority.set(thread);
    }

    /// The thread links to heads run on, if set.
    pub(crate) fn priority_thread(&self) -> Option<actix::ArbiterHandle> {
        self.shared.priority.get().cloned()
    }

    /// Stops accepting connections and closes every link.
    pub(crate) fn shutdown(&self) {
        self.listener.do_send(StopListener);
        self.router.do_send(CloseAll);
    }
}

impl Shared {
    /// The handshake configuration now.
    pub(crate) fn handshake(&self) -> Arc<HandshakeConfig> {
        Arc::clone(
            &self
                .handshake
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Writes the trust store's revoked serials to the node's revocation
    /// file, if it keeps one and lacks some. A failed write is logged: the
    /// serials stay refused in memory, and the next revocation tries again.
    fn keep_revocations(&self) {
        if let Some(file) = &self.config.revocations {
            let serials = self.handshake().trust.revoked_serials();
            match file.keep(serials) {
                Ok(wrote) => {
                    tracing::debug!(path = %file.path().display(), wrote, "revocation list kept");
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot keep the revocation list: after a restart this node would refuse the new serials only once a head tells it again");
                }
            }
        }
    }

    /// Appends to the audit log, if the node keeps one.
    pub(crate) fn audit(&self, record: impl FnOnce() -> crate::audit::AuditRecord) {
        self.config.audit.record(record);
    }

    /// Whether a test blocked the direct path to `peer`.
    fn blocked(&self, peer: NodeId) -> bool {
        self.config.faults.as_ref().is_some_and(|f| f.blocks(peer))
    }

    /// Whether a test holds the readers of direct links to `peer`.
    fn reads_held(&self, peer: NodeId) -> bool {
        self.config
            .faults
            .as_ref()
            .is_some_and(|f| f.holds_reads(peer))
    }

    /// Whether a test drops what this node writes to `peer` directly.
    fn muted(&self, peer: NodeId) -> bool {
        self.config.faults.as_ref().is_some_and(|f| f.mutes(peer))
    }
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("id", &self.shared.id)
            .field("name", &self.shared.name)
            .field("listen", &self.shared.listen)
            .finish()
    }
}

/// Milliseconds since the Unix epoch (one clock for the crate, kept in the
/// bottom room).
pub(crate) use crate::inspect::unix_now_ms;

/// Seconds since the Unix epoch, for certificate validity.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
