//! What the transport is started with: identity and trust for handshakes,
//! the limits and timers of links, relaying, and the doors it reports to
//! (the policy it decides inbound messages with, the audit log, the
//! revocation file). The node's configuration
//! (`MeshConfig`, documented field by field there)
//! hands these over at start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use swarm_protocol::HandshakeConfig;

/// The transport's part of a node's configuration.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) listen: SocketAddr,
    pub(crate) handshake: HandshakeConfig,
    pub(crate) max_message: usize,
    pub(crate) ask_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) link_queue_bytes: usize,
    pub(crate) max_pending_handshakes: usize,
    pub(crate) max_handshakes_per_source: usize,
    pub(crate) max_silent_connections: usize,
    pub(crate) first_byte_timeout: Duration,
    pub(crate) summary_interval: Duration,
    pub(crate) max_inbound_asks: usize,
    pub(crate) advertise: Option<SocketAddr>,
    pub(crate) relay: bool,
    pub(crate) relayed: bool,
    pub(crate) relays: Vec<SocketAddr>,
    pub(crate) relay_links: usize,
    pub(crate) upgrade_interval: Duration,
    pub(crate) faults: Option<Arc<super::Faults>>,
    pub(crate) policy: Arc<crate::policy::Policy>,
    pub(crate) audit: crate::audit::Trail,
    pub(crate) revocations: Option<crate::at_rest::RevocationFile>,
}
