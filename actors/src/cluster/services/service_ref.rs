//! [`ServiceRef`]: a typed handle to a named service that sends each
//! request to one live instance, chosen by its [`Strategy`].

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::ring::{key_hash, Ring};
use super::strategy::{self, Strategy};
use super::table::{Instance, ServiceTable};
use crate::directory::{Accepts, RemoteActor, RemoteMessage, Wire};
use crate::error::AskError;
use crate::mesh::Mesh;
use crate::remote::RemoteAddr;

/// A message that carries its own routing key for consistent hashing.
pub trait Keyed {
    /// The key's type.
    type Key: Hash;
    /// The key requests with the same value are routed by.
    fn key(&self) -> Self::Key;
}

/// A typed handle to a named service: sends each request to one live
/// instance. Cheap to clone; clones share their round-robin position and
/// hash ring.
pub struct ServiceRef<A> {
    mesh: Mesh,
    table: Arc<ServiceTable>,
    service: String,
    strategy: Strategy,
    timeout: Duration,
    cursor: Arc<AtomicUsize>,
    rng: Arc<AtomicU64>,
    ring: Arc<Mutex<Option<Arc<Ring>>>>,
    _actor: PhantomData<fn() -> A>,
}

impl<A> Clone for ServiceRef<A> {
    fn clone(&self) -> Self {
        Self {
            mesh: self.mesh.clone(),
            table: Arc::clone(&self.table),
            service: self.service.clone(),
            strategy: self.strategy,
            timeout: self.timeout,
            cursor: Arc::clone(&self.cursor),
            rng: Arc::clone(&self.rng),
            ring: Arc::clone(&self.ring),
            _actor: PhantomData,
        }
    }
}

impl<A> std::fmt::Debug for ServiceRef<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceRef")
            .field("service", &self.service)
            .field("strategy", &self.strategy)
            .finish()
    }
}

impl<A: RemoteActor> ServiceRef<A> {
    pub(crate) fn new(mesh: Mesh, table: Arc<ServiceTable>, service: String) -> Self {
        let seed = {
            let mut h = DefaultHasher::new();
            (std::process::id(), Instant::now(), &service).hash(&mut h);
            h.finish() | 1
        };
        Self {
            timeout: mesh.ask_timeout(),
            mesh,
            table,
            service,
            strategy: Strategy::default(),
            cursor: Arc::default(),
            rng: Arc::new(AtomicU64::new(seed)),
            ring: Arc::default(),
            _actor: PhantomData,
        }
    }

    /// The same service with another strategy.
    #[must_use]
    pub fn with_strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The same service with another per-request timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The service name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The strategy in use.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The instances requests may go to now.
    pub fn instances(&self) -> Vec<Instance> {
        self.table
            .instances(&self.service)
            .iter()
            .filter(|i| self.table.admissible(&self.mesh, i.node))
            .cloned()
            .collect()
    }

    fn random(&self) -> u64 {
        // xorshift64*: choices, not secrets.
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.store(x, Ordering::Relaxed);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The instance the next request would go to (`key` for consistent
    /// hashing), or `None` when no instance is live.
    pub fn pick(&self, key: Option<u64>) -> Option<Instance> {
        let all = self.table.instances(&self.service);
        if let (Strategy::ConsistentHash, Some(key)) = (self.strategy, key) {
            let ring = self.ring_for(&all);
            return ring
                .walk(key)
                .filter_map(|index| all.get(index))
                .find(|i| self.table.admissible(&self.mesh, i.node))
                .cloned();
        }
        let live: Vec<&Instance> = all
            .iter()
            .filter(|i| self.table.admissible(&self.mesh, i.node))
            .collect();
        let chosen = match self.strategy {
            Strategy::RoundRobin | Strategy::ConsistentHash => {
                strategy::round_robin(live.len(), self.cursor.fetch_add(1, Ordering::Relaxed))
            }
            Strategy::LeastOutstanding => {
                let outstanding: Vec<u32> = live.iter().map(|i| i.outstanding()).collect();
                let cursor = self.cursor.fetch_add(1, Ordering::Relaxed);
                strategy::least_outstanding(&outstanding, cursor)
            }
            Strategy::PowerOfTwoEwma => {
                let scores: Vec<u128> = live.iter().map(|i| i.stats.score()).collect();
                strategy::power_of_two(&scores, self.random(), self.random())
            }
        };
        chosen
            .and_then(|index| live.get(index))
            .map(|i| (*i).clone())
    }

    fn ring_for(&self, all: &[Instance]) -> Arc<Ring> {
        let generation = self.table.generation();
        let mut cached = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        match cached.as_ref() {
            Some(ring) if ring.generation == generation => Arc::clone(ring),
            _ => {
                let ring = Arc::new(Ring::build(
                    generation,
                    all.iter().map(|i| (i.node, i.actor.as_str())),
                ));
                *cached = Some(Arc::clone(&ring));
                ring
            }
        }
    }

    /// Sends `msg` to one live instance and waits for the reply.
    ///
    /// # Errors
    ///
    /// [`AskError::NoInstance`] when no instance is live; otherwise the
    /// instance's [`AskError`]. A request is sent once: one that fails
    /// because the instance's node died is not retried elsewhere (the
    /// handler may have run), but the node is ejected so no later request
    /// goes there.
    pub async fn send<M>(&self, msg: M) -> Result<M::Result, AskError>
    where
        A: Accepts<M>,
        M: RemoteMessage,
        M::Result: Wire,
    {
        let instance = self.pick(None).ok_or_else(|| AskError::NoInstance {
            service: self.service.clone(),
        })?;
        self.send_to(instance, msg).await
    }

    /// Sends `msg` to the instance owning its key (with
    /// [`Strategy::ConsistentHash`]; other strategies ignore the key).
    ///
    /// # Errors
    ///
    /// As [`ServiceRef::send`].
    pub async fn send_keyed<M>(&self, msg: M) -> Result<M::Result, AskError>
    where
        A: Accepts<M>,
        M: RemoteMessage + Keyed,
        M::Result: Wire,
    {
        let key = key_hash(&msg.key());
        let instance = self.pick(Some(key)).ok_or_else(|| AskError::NoInstance {
            service: self.service.clone(),
        })?;
        self.send_to(instance, msg).await
    }

    async fn send_to<M>(&self, instance: Instance, msg: M) -> Result<M::Result, AskError>
    where
        A: Accepts<M>,
        M: RemoteMessage,
        M::Result: Wire,
    {
        let target = RemoteAddr::<A>::new(self.mesh.clone(), instance.node, &instance.actor);
        let stats = &instance.stats;
        let in_flight = stats.begin();
        let started = Instant::now();
        let result = target.send_timeout(msg, self.timeout).await;
        drop(in_flight);
        match &result {
            Err(e) if e.is_node_failure() => self.table.eject(instance.node),
            Err(AskError::Timeout { .. }) => stats.record(self.timeout),
            _ => stats.record(started.elapsed()),
        }
        result
    }
}
