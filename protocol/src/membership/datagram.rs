//! Datagrams in: a sealed datagram is opened, checked for freshness and
//! replays, then dispatched by its first byte, its kind: 0 a foca message,
//! 1 a metadata request, 2 a metadata item, 3 a member-list request, 4 part
//! of a member list (see `sync` for both).

use std::net::SocketAddr;
use std::sync::PoisonError;
use std::time::Duration;

use super::{GossipError, Membership};
use crate::gossip::{SealError, SEAL_OVERHEAD};

/// The first byte of every plaintext gossip datagram.
pub(super) mod kind {
    pub(in crate::membership) const FOCA: u8 = 0;
    pub(in crate::membership) const META_REQUEST: u8 = 1;
    pub(in crate::membership) const META_REPLY: u8 = 2;
    pub(in crate::membership) const SYNC_REQUEST: u8 = 3;
    pub(in crate::membership) const SYNC_REPLY: u8 = 4;
}

impl Membership {
    /// Handles one datagram from `from` as it came off the socket: opens
    /// it (in place), refuses it if it is stale or replayed, and applies
    /// it. `unix_ms` is the receiver's clock (Unix milliseconds) for the
    /// replay check; `now` drives everything else. Every refusal is counted
    /// in [`Membership::stats`].
    ///
    /// # Errors
    ///
    /// [`GossipError`] says why the datagram was dropped.
    pub fn handle_datagram(
        &mut self,
        from: SocketAddr,
        datagram: &mut [u8],
        now: Duration,
        unix_ms: u64,
    ) -> Result<(), GossipError> {
        self.now = now;
        let Some(seal) = self.seal.as_mut() else {
            return self.handle_message(from, datagram);
        };
        let max = self.config.max_packet + 1 + SEAL_OVERHEAD;
        let opened = match seal.ring.open(datagram, max) {
            Ok(opened) => opened,
            Err(SealError::TooLarge { len, .. }) => {
                self.stats.dropped_oversized += 1;
                return Err(GossipError::TooLarge(len));
            }
            Err(e) => {
                self.stats.dropped_unsealed += 1;
                return Err(GossipError::Unsealed(e));
            }
        };
        if let Err(e) = seal.replay.check(&opened, unix_ms) {
            self.stats.dropped_replayed += 1;
            return Err(GossipError::Unsealed(e));
        }
        self.handle_message(from, opened.message)
    }

    /// Handles one opened message (a plaintext datagram).
    pub(super) fn handle_message(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), GossipError> {
        if datagram.len() > self.config.max_packet + 1 {
            self.stats.dropped_oversized += 1;
            return Err(GossipError::TooLarge(datagram.len()));
        }
        let Some((&kind, body)) = datagram.split_first() else {
            self.stats.dropped_malformed += 1;
            return Err(GossipError::Malformed("empty datagram".into()));
        };
        let result = match kind {
            kind::FOCA => {
                let result = self.foca.handle_data(body, &mut self.io);
                let ok = result.is_ok();
                self.drain_observed(ok);
                if ok {
                    self.settle_indirect_probe(body);
                }
                self.drain();
                result.map_err(|err| match err {
                    foca::Error::Decode(_)
                    | foca::Error::MalformedPacket
                    | foca::Error::CustomBroadcast(_)
                    | foca::Error::DataTooBig => GossipError::Malformed(err.to_string()),
                    other => GossipError::Refused(other.to_string()),
                })
            }
            kind::META_REQUEST if body.is_empty() => {
                if let Ok(bytes) = self.own_meta.encode() {
                    let mut reply = Vec::with_capacity(bytes.len() + 1);
                    reply.push(kind::META_REPLY);
                    reply.extend_from_slice(&bytes);
                    self.queue_out(from, reply);
                }
                Ok(())
            }
            kind::SYNC_REQUEST => super::sync::parse_request(body).map(|wanted| {
                self.serve_sync(from, wanted);
            }),
            kind::SYNC_REPLY => self.apply_sync(body),
            kind::META_REPLY => {
                let offered = self
                    .metas
                    .0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .offer(body);
                self.drain();
                offered
                    .map(|_| ())
                    .map_err(|err| GossipError::Malformed(err.to_string()))
            }
            other => Err(GossipError::Malformed(format!("unknown kind {other}"))),
        };
        match &result {
            Ok(()) => {
                self.stats.received += 1;
                self.stats.received_bytes += datagram.len() as u64;
            }
            Err(GossipError::Malformed(_)) => self.stats.dropped_malformed += 1,
            Err(_) => {}
        }
        result
    }
}
