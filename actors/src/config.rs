//! A node's configuration: identity and trust for the handshake, the
//! limits and timers of links, and each room's part (membership, the head,
//! policy, audit). The node hands every room its part at start. Reading it
//! from files is left to the `swarm` crate.

use std::net::SocketAddr;
use std::time::Duration;

use swarm_protocol::HandshakeConfig;

use crate::cluster::ClusterConfig;
use crate::head::HeadConfig;

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// Where to accept peer connections (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Identity, trust, cluster and cipher suite for handshakes. Its
    /// `listen` field is filled with the bound address at start.
    pub handshake: HandshakeConfig,
    /// The largest envelope accepted (reassembled from chunks), in bytes.
    pub max_message: usize,
    /// Default timeout of `send` (asks); per-call timeouts override it.
    ///
    /// Default 5 s. It bounds a handler's work plus the round trip, and
    /// for a [`Named`](crate::control::Named) handle also the following
    /// of a moved actor within one ask: it is longer than the default
    /// lease bound (`lease × 1.1 + 100 ms` = 3.4 s) plus the start of the
    /// new incarnation, so an ask made just after its host was cut off
    /// can still be answered by the new incarnation. Noticing the cut is
    /// not its job but the heartbeat's: an ask on a dead link fails with
    /// `LinkDown` after `heartbeat_timeout`, before this runs out.
    pub ask_timeout: Duration,
    /// A handshake that takes longer is abandoned.
    pub handshake_timeout: Duration,
    /// A ping is sent when nothing was sent for this long: any frame
    /// keeps the peer's heartbeat timeout from firing, a ping only fills
    /// a gap.
    ///
    /// Default 700 ms: above the lease renewal period (a fifth of the
    /// default 3 s lease, 600 ms, plus the grant's round trip), so a link
    /// carrying renewals and grants needs no ping and no pong at all (at
    /// 500 ms, as before, each of them cost a ping and a pong every
    /// period: as many frames again, on the head leader's 5,000 links);
    /// and below `heartbeat_timeout` by 1.3 s, so a live link is closed
    /// only after traffic is 1.3 s late (a busy peer; a segment
    /// retransmitted twice from TCP's 200 ms minimum timeout arrives
    /// 600 ms late). It no longer lets three whole pings be late (1.5 s at
    /// 500 ms). An idle link costs 1.4 small pings a second from the side
    /// that dialed, each answered by a pong (the other side pings on its
    /// own only when those stop, or now and then to time the round trip).
    pub heartbeat_interval: Duration,
    /// A link on which nothing arrives for this long is closed, and asks
    /// waiting on it fail with `LinkDown`.
    ///
    /// Default 2 s: a partition must be noticed within the lease bound.
    /// The head moves a cut-off node's actors `lease × 1.1 + 100 ms` after
    /// its last grant (3.4 s with the default 3 s lease); an ask in flight
    /// at the cut fails by 2 s, and its [`Named`](crate::control::Named)
    /// handle starts asking the head where the actor runs before the
    /// head may move it, so the caller reaches the new incarnation within
    /// one 50 ms poll of the move. With a shorter lease, shorten this too
    /// (below `lease × 1.1`).
    pub heartbeat_timeout: Duration,
    /// A link without user traffic for this long is closed (reopened on demand).
    pub idle_timeout: Duration,
    /// Bytes of envelopes queued per link before tells wait (backpressure).
    pub link_queue_bytes: usize,
    /// Handshakes in progress at once on the listener; a connection takes
    /// a slot once it has sent its first byte, and is refused if none is free.
    pub max_pending_handshakes: usize,
    /// Connections not yet links (silent or in the handshake) from one IP
    /// address at once; more are refused, so one client cannot take every
    /// slot.
    pub max_handshakes_per_source: usize,
    /// Accepted connections that have sent nothing yet, waiting at once
    /// (at most three quarters of the fd limit is used). They hold no
    /// handshake slot; when this many wait, the oldest is closed to admit
    /// a new one, so silent connections cannot keep real peers out.
    pub max_silent_connections: usize,
    /// An accepted connection that sends nothing for this long is closed
    /// (a dialing peer writes its first handshake message at once); less
    /// once the silent connections fill more than half their pool, down to
    /// 100 ms when it is full.
    pub first_byte_timeout: Duration,
    /// How often refused connections beyond the first few are summarised
    /// in one log line, and how often the node logs its counters when
    /// they changed.
    pub summary_interval: Duration,
    /// Asks from one peer waiting for local actors at once; more are
    /// answered at once with `Refused`, so a peer cannot grow memory without bound.
    pub max_inbound_asks: usize,
    /// The address other nodes dial and gossip reaches this node at, when
    /// it differs from `listen` (bound to `0.0.0.0`, or behind a port
    /// mapping). `None`: the bound address.
    pub advertise: Option<SocketAddr>,
    /// This node forwards relayed traffic for nodes that cannot accept
    /// connections (it must be reachable itself).
    pub relay: bool,
    /// This node cannot accept connections (behind NAT or a firewall): it
    /// keeps links to relays and is reached through them.
    pub relayed: bool,
    /// Relays a relayed node dials first (relay-capable members it learns
    /// of through membership are used too).
    pub relays: Vec<SocketAddr>,
    /// How many relays a relayed node keeps links to.
    pub relay_links: usize,
    /// How often a relayed link tries to become direct (connection
    /// reversal: whichever side can dial the other does), at most.
    pub upgrade_interval: Duration,
    /// Faults to inject, for failure tests (`None` in production): the
    /// direct path to a peer can be blocked as a firewall would.
    pub faults: Option<std::sync::Arc<crate::mesh::Faults>>,
    /// Membership, discovery and load balancing (gossip over UDP on the
    /// mesh port); `None` runs the mesh alone.
    pub cluster: Option<ClusterConfig>,
    /// On nodes with the `head` role: keep a replica of the control plane
    /// (needs `cluster`).
    pub head: Option<HeadConfig>,
    /// Who may send what to this node's actors ([`crate::policy`]); the
    /// defaults when no rules are given.
    pub policy: std::sync::Arc<crate::policy::Policy>,
    /// Where operator logins, their mutating commands and policy refusals
    /// are recorded ([`crate::audit`]); `None`: nowhere.
    pub audit: Option<crate::audit::Audit>,
    /// Where the node keeps the certificate serials it learns are revoked
    /// (sealed), so that a restart refuses them from its first handshake;
    /// `None`: in memory only. Loading the list into
    /// `handshake.trust` is the caller's, before `Node::start`.
    pub revocations: Option<crate::at_rest::RevocationFile>,
    /// Per-actor counters for operators ([`crate::inspect`]); on by
    /// default, off only to measure what they cost.
    pub counters: bool,
}

impl MeshConfig {
    /// Defaults for everything but identity and address.
    pub fn new(listen: SocketAddr, handshake: HandshakeConfig) -> Self {
        Self {
            listen,
            handshake,
            max_message: 64 << 20,
            ask_timeout: ASK_TIMEOUT,
            handshake_timeout: Duration::from_secs(5),
            heartbeat_interval: HEARTBEAT_INTERVAL,
            heartbeat_timeout: HEARTBEAT_TIMEOUT,
            idle_timeout: Duration::from_secs(300),
            link_queue_bytes: 8 << 20,
            max_pending_handshakes: 256,
            max_handshakes_per_source: 16,
            max_silent_connections: 16_384,
            first_byte_timeout: Duration::from_secs(2),
            summary_interval: Duration::from_secs(10),
            max_inbound_asks: 4096,
            advertise: None,
            relay: false,
            relayed: false,
            relays: Vec::new(),
            relay_links: 2,
            upgrade_interval: Duration::from_secs(5),
            faults: None,
            cluster: None,
            head: None,
            policy: std::sync::Arc::default(),
            audit: None,
            revocations: None,
            counters: true,
        }
    }
}

impl MeshConfig {
    /// The transport's part.
    pub(crate) fn mesh(&self) -> crate::mesh::Settings {
        crate::mesh::Settings {
            listen: self.listen,
            handshake: self.handshake.clone(),
            max_message: self.max_message,
            ask_timeout: self.ask_timeout,
            handshake_timeout: self.handshake_timeout,
            heartbeat_interval: self.heartbeat_interval,
            heartbeat_timeout: self.heartbeat_timeout,
            idle_timeout: self.idle_timeout,
            link_queue_bytes: self.link_queue_bytes,
            max_pending_handshakes: self.max_pending_handshakes,
            max_handshakes_per_source: self.max_handshakes_per_source,
            max_silent_connections: self.max_silent_connections,
            first_byte_timeout: self.first_byte_timeout,
            summary_interval: self.summary_interval,
            max_inbound_asks: self.max_inbound_asks,
            advertise: self.advertise,
            relay: self.relay,
            relayed: self.relayed,
            relays: self.relays.clone(),
            relay_links: self.relay_links,
            upgrade_interval: self.upgrade_interval,
            faults: self.faults.clone(),
            policy: std::sync::Arc::clone(&self.policy),
            audit: crate::audit::Trail::new(self.audit.clone()),
            revocations: self.revocations.clone(),
        }
    }
}

/// The default ask timeout (argued at `MeshConfig::ask_timeout`).
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// The default heartbeat interval (argued at `MeshConfig::heartbeat_interval`).
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(700);

/// The default heartbeat timeout (argued at `MeshConfig::heartbeat_timeout`).
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::leases::{DRIFT, MARGIN};

    /// When the leader may move a cut-off node's actors, with the default
    /// lease, after its last grant.
    fn lease_bound() -> Duration {
        HeadConfig::new("unused").lease.mul_f64(1.0 + DRIFT) + MARGIN
    }

    #[test]
    fn default_heartbeat_notices_a_cut_before_the_default_lease_bound() {
        assert!(HEARTBEAT_TIMEOUT < lease_bound());
        // Traffic may be over a second late before a live link is closed.
        assert!(HEARTBEAT_TIMEOUT >= HEARTBEAT_INTERVAL + Duration::from_millis(1300));
    }

    #[test]
    fn default_lease_renewals_need_no_heartbeat_pings() {
        // The renewal period, with 100 ms for the grant's round trip, fits
        // in the heartbeat interval on both sides of the link.
        let renew_every = HeadConfig::new("unused").lease / 5;
        assert!(renew_every + Duration::from_millis(100) <= HEARTBEAT_INTERVAL);
    }

    #[test]
    fn default_ask_timeout_outlasts_the_default_lease_bound() {
        // An ask made just after the cut can be answered by the new
        // incarnation, with a second to start it.
        assert!(ASK_TIMEOUT >= lease_bound() + Duration::from_secs(1));
        // And a dead link fails an ask before its timeout does.
        assert!(HEARTBEAT_TIMEOUT < ASK_TIMEOUT);
    }
}
