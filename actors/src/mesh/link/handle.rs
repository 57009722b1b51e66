//! [`LinkHandle`]: what callers on any thread hold to use a link: queue
//! envelopes (bounded in bytes), send asks and wait for their replies. An
//! ask that its caller abandons (its future dropped) unregisters itself.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use swarm_protocol::envelope::encode_request;
use swarm_protocol::{NodeId, RemoteError, Target};
use tokio::sync::{mpsc, oneshot, watch};

use super::outbox::Outbox;
use crate::error::AskError;
use crate::mesh::PeerInfo;

/// Why an ask on a link did not get its answer.
#[derive(Debug)]
pub(crate) enum AskFailure {
    /// The link handed its peer over to a successor before the ask was
    /// queued: nothing was sent; ask again on the successor.
    HandedOver,
    /// The ask failed.
    Failed(AskError),
}

impl From<AskError> for AskFailure {
    fn from(e: AskError) -> Self {
        AskFailure::Failed(e)
    }
}

/// A reply on its way to the asking caller.
pub(super) type ReplySender = oneshot::Sender<Result<Vec<u8>, RemoteError>>;

/// A cheap handle to one link.
#[derive(Clone)]
pub(crate) struct LinkHandle {
    pub(super) shared: Arc<LinkShared>,
}

/// The part of a link that other threads may touch.
pub(super) struct LinkShared {
    /// Unique per node, to tell two links to the same peer apart.
    pub(super) id: u64,
    /// The authenticated peer.
    pub(super) peer: NodeId,
    /// The peer's certificate serial (revocation names it).
    pub(super) peer_serial: u64,
    /// The peer's certificate name.
    pub(super) peer_name: String,
    /// The peer's roles from its certificate.
    pub(super) peer_roles: Arc<[String]>,
    /// The node that dialed this link; decides duplicate links.
    pub(super) initiator: NodeId,
    /// When the handshake finished.
    pub(super) established_at: Instant,
    /// The socket's remote address (for a relayed link, the relay's).
    pub(super) remote_addr: std::net::SocketAddr,
    /// The relay a relayed link runs through; `None` for a direct link.
    pub(super) via: Option<NodeId>,
    /// The largest envelope this link sends (the cluster's `max_message`):
    /// a larger one is refused to its caller instead of breaking the link.
    pub(super) max_message: usize,
    /// Encoded envelopes for the writer, bounded in bytes so tells push back.
    pub(super) outbox: Outbox,
    /// Asks waiting for their reply, by correlation.
    pub(super) pending: DashMap<u64, ReplySender>,
    /// The next correlation id.
    next_correlation: AtomicU64,
    /// Set once the link is closing: nothing more is dispatched or awaited.
    pub(super) closed: AtomicBool,
    /// Set when a successor link took over: senders use the successor,
    /// while this link still delivers what was sent on it before.
    draining: AtomicBool,
    /// Links to the same peer that a crossed dial left behind, still
    /// delivering what the peer sent on them: the reader dispatches nothing
    /// more until they stop (`held` says there are some, cheaply).
    held: std::sync::Mutex<Vec<watch::Receiver<bool>>>,
    held_any: AtomicBool,
    /// Set before the link closes because membership declared the peer
    /// down: asks waiting on it fail with `NodeDown` instead of `LinkDown`.
    member_down: AtomicBool,
    /// Bytes written to the socket (ciphertext), for operators and tests.
    pub(super) bytes_out: AtomicU64,
    /// Bytes read from the socket (ciphertext).
    pub(super) bytes_in: AtomicU64,
    /// Envelopes received (tells, asks, replies).
    pub(super) msgs_in: AtomicU64,
    /// Envelopes written.
    pub(super) msgs_out: AtomicU64,
    /// The last heartbeat's round trip, nanoseconds (0: none yet).
    pub(super) rtt_ns: AtomicU64,
    /// An operator peer's session ends then (Unix ms; 0: none).
    pub(super) session_until_ms: AtomicU64,
}

/// Who is at the other end of a new link.
pub(crate) struct PeerIdentity {
    pub(crate) peer: NodeId,
    pub(crate) serial: u64,
    pub(crate) name: String,
    pub(crate) roles: Arc<[String]>,
    pub(crate) initiator: NodeId,
    pub(crate) remote_addr: std::net::SocketAddr,
    pub(crate) via: Option<NodeId>,
}

impl LinkShared {
    pub(super) fn new(id: u64, who: PeerIdentity, max_message: usize, outbox: Outbox) -> Self {
        Self {
            id,
            peer: who.peer,
            peer_serial: who.serial,
            peer_name: who.name,
            peer_roles: who.roles,
            initiator: who.initiator,
            established_at: Instant::now(),
            remote_addr: who.remote_addr,
            via: who.via,
            max_message,
            outbox,
            pending: DashMap::new(),
            next_correlation: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            held: std::sync::Mutex::new(Vec::new()),
            held_any: AtomicBool::new(false),
            member_down: AtomicBool::new(false),
            bytes_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            msgs_in: AtomicU64::new(0),
            msgs_out: AtomicU64::new(0),
            rtt_ns: AtomicU64::new(0),
            session_until_ms: AtomicU64::new(0),
        }
    }

    /// Whether nothing more is dispatched from this link.
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Links this one's reader must wait for before its next dispatch
    /// (taken: the reader waits once for each).
    pub(super) fn take_held(&self) -> Vec<watch::Receiver<bool>> {
        if !self.held_any.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        self.held_any.store(false, Ordering::Release);
        std::mem::take(&mut *held)
    }

    /// Whether senders must not use this link (closed, or handed over).
    fn refuses_senders(&self) -> bool {
        self.is_closed() || self.draining.load(Ordering::Acquire)
    }
}

/// Removes a pending ask when the asking future ends, however it ends
/// (reply, timeout, or dropped by its caller).
struct PendingAsk<'a> {
    shared: &'a LinkShared,
    correlation: u64,
}

impl Drop for PendingAsk<'_> {
    fn drop(&mut self) {
        self.shared.pending.remove(&self.correlation);
    }
}

impl LinkHandle {
    pub(crate) fn id(&self) -> u64 {
        self.shared.id
    }

    /// The operator peer has a session until `until_ms`.
    pub(crate) fn set_session(&self, until_ms: u64) {
        self.shared
            .session_until_ms
            .fetch_max(until_ms, Ordering::AcqRel);
    }

    /// The operator peer's session ends now (it presents again).
    pub(crate) fn end_session(&self) {
        self.shared.session_until_ms.store(0, Ordering::Release);
    }

    /// The peer's certificate serial.
    pub(crate) fn serial(&self) -> u64 {
        self.shared.peer_serial
    }

    pub(crate) fn peer(&self) -> NodeId {
        self.shared.peer
    }

    pub(crate) fn peer_name(&self) -> &str {
        &self.shared.peer_name
    }

    /// The relay this link runs through; `None` if it is direct.
    pub(crate) fn via(&self) -> Option<NodeId> {
        self.shared.via
    }

    pub(crate) fn initiator(&self) -> NodeId {
        self.shared.initiator
    }

    pub(crate) fn established_at(&self) -> Instant {
        self.shared.established_at
    }

    /// Whether the link takes no more messages (it is closed, or a
    /// successor link took over).
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.refuses_senders()
    }

    /// Whether the link stopped delivering (closed, not merely handed over).
    pub(crate) fn stopped_delivering(&self) -> bool {
        self.shared.is_closed()
    }

    /// The socket's remote address (for a relayed link, the relay's).
    pub(crate) fn remote_addr(&self) -> std::net::SocketAddr {
        self.shared.remote_addr
    }

    /// A successor link took over: senders stop using this one at once;
    /// it still delivers and answers what was sent on it before.
    pub(crate) fn mark_draining(&self) {
        self.shared.draining.store(true, Ordering::Release);
    }

    /// A crossed dial left another link to this peer, which still delivers
    /// what the peer sent on it: this link's reader dispatches nothing more
    /// until `done` closes (that link stopped), so the peer's messages keep
    /// their order. The peer only moves its traffic here after everything
    /// it sent there (its goodbye on that link comes last).
    pub(crate) fn hold_for(&self, done: watch::Receiver<bool>) {
        let mut held = self
            .shared
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.push(done);
        self.shared.held_any.store(true, Ordering::Release);
    }

    /// Stops dispatching on this link at once (it is being replaced or closed).
    pub(crate) fn mark_closed(&self) {
        self.shared.closed.store(true, Ordering::Release);
    }

    /// Membership declared the peer down: asks failing from now on fail
    /// with `NodeDown`.
    pub(crate) fn mark_member_down(&self) {
        self.shared.member_down.store(true, Ordering::Release);
    }

    /// Whether the peer's certificate has `role`.
    pub(crate) fn peer_has_role(&self, role: &str) -> bool {
        self.shared.peer_roles.iter().any(|r| r == role)
    }

    pub(crate) fn info(&self) -> PeerInfo {
        let s = &self.shared;
        PeerInfo {
            id: s.peer,
            name: s.peer_name.clone(),
            roles: s.peer_roles.to_vec(),
            addr: s.remote_addr,
            dialed: s.initiator != s.peer,
            via: s.via,
            pending_asks: s.pending.len(),
            bytes_out: s.bytes_out.load(Ordering::Relaxed),
            bytes_in: s.bytes_in.load(Ordering::Relaxed),
        }
    }

    /// The link as the console's Links view shows it, seen from `node`.
    pub(crate) fn view(&self, node: NodeId, cipher: &str) -> crate::inspect::LinkView {
        let s = &self.shared;
        crate::inspect::LinkView {
            node: node.to_string(),
            peer: s.peer.to_string(),
            peer_name: s.peer_name.clone(),
            peer_roles: s.peer_roles.to_vec(),
            addr: s.remote_addr.to_string(),
            via: s.via.map(|v| v.to_string()),
            dialed: s.initiator != s.peer,
            age_s: s.established_at.elapsed().as_secs_f64(),
            rtt_us: s.rtt_ns.load(Ordering::Relaxed) as f64 / 1e3,
            msgs_in: s.msgs_in.load(Ordering::Relaxed),
            msgs_out: s.msgs_out.load(Ordering::Relaxed),
            bytes_in: s.bytes_in.load(Ordering::Relaxed),
            bytes_out: s.bytes_out.load(Ordering::Relaxed),
            queue_bytes: s.outbox.queued() as u64,
            cipher: cipher.to_owned(),
        }
    }

    fn down_error(&self) -> AskError {
        let s = &self.shared;
        if s.member_down.load(Ordering::Acquire) {
            AskError::NodeDown { node: s.peer }
        } else {
            AskError::LinkDown { node: s.peer }
        }
    }

    /// Sends an ask whose body `write_body` encodes (`size_hint` bytes
    /// expected) and waits for its reply until `deadline`.
    ///
    /// # Errors
    ///
    /// `Encode` or `TooLarge` before anything is sent; `Timeout`,
    /// `LinkDown`/`NodeDown` or the remote's error after;
    /// [`AskFailure::HandedOver`] if nothing was sent because a successor
    /// link took over.
    pub(crate) async fn ask(
        &self,
        to: &str,
        tag: &str,
        size_hint: usize,
        write_body: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<Vec<u8>, AskFailure> {
        let s = &self.shared;
        let correlation = s.next_correlation.fetch_add(1, Ordering::Relaxed);
        let mut buf = Vec::with_capacity(size_hint.max(64) + to.len() + tag.len() + 24);
        encode_request(
            &mut buf,
            Some(correlation),
            Target::Name(to),
            tag,
            write_body,
        )
        .map_err(|reason| AskError::Encode { reason })?;
        self.check_size(&buf)
            .map_err(|(size, max)| AskError::TooLarge { size, max })?;
        let (reply_tx, reply_rx) = oneshot::channel();
        s.pending.insert(correlation, reply_tx);
        let _pending = PendingAsk {
            shared: s,
            correlation,
        };
        // Only a full queue needs a timer for the wait.
        let open = || !s.refuses_senders();
        let queued = match s.outbox.try_send_if(buf, open) {
            Ok(()) => Ok(Ok(())),
            Err(mpsc::error::TrySendError::Full(buf)) => {
                tokio::time::timeout_at(deadline, s.outbox.send_if(buf, open)).await
            }
            Err(mpsc::error::TrySendError::Closed(buf)) => Ok(Err(buf)),
        };
        match queued {
            // Queued: the link delivers it, even if a successor took over since.
            Ok(Ok(())) if !s.is_closed() => {}
            Ok(_) if self.handed_over() => return Err(AskFailure::HandedOver),
            Ok(_) => return Err(self.down_error().into()),
            Err(_) => return Err(AskError::Timeout { after: timeout }.into()),
        }
        let reply = match tokio::time::timeout_at(deadline, reply_rx).await {
            Ok(Ok(Ok(bytes))) => Ok(bytes),
            Ok(Ok(Err(remote))) => Err(remote.into()),
            Ok(Err(_)) => Err(self.down_error()),
            Err(_) => Err(AskError::Timeout { after: timeout }),
        };
        Ok(reply?)
    }

    /// Checks an encoded envelope against the link's message limit.
    ///
    /// # Errors
    ///
    /// `(size, max)` when it is too large to send.
    pub(crate) fn check_size(&self, envelope: &[u8]) -> Result<(), (usize, usize)> {
        if envelope.len() > self.shared.max_message {
            Err((envelope.len(), self.shared.max_message))
        } else {
            Ok(())
        }
    }

    /// Whether a successor link took this one's peer over (and this one
    /// is not closed yet): a send it refused belongs on the successor.
    pub(crate) fn handed_over(&self) -> bool {
        self.shared.draining.load(Ordering::Acquire)
    }

    /// Queues an encoded envelope, waiting for space. Refused (the
    /// envelope comes back) if the link closes or hands over first.
    pub(crate) async fn send(&self, envelope: Vec<u8>) -> Result<(), Vec<u8>> {
        if self.is_closed() {
            return Err(envelope);
        }
        let s = &self.shared;
        s.outbox.send_if(envelope, || !s.refuses_senders()).await
    }

    /// Queues an encoded envelope if there is space.
    pub(crate) fn try_send(
        &self,
        envelope: Vec<u8>,
    ) -> Result<(), mpsc::error::TrySendError<Vec<u8>>> {
        let s = &self.shared;
        s.outbox.try_send_if(envelope, || !s.refuses_senders())
    }
}
