//! The local directory: the actors this node exposes, by name. Each entry
//! has a dispatcher ([`dispatch`]) that turns `(type tag, bytes)` into a
//! typed message for its actix `Addr`. Links look targets up through a
//! per-reader [`Lookup`] cache; what the actors do is theirs.
//!
//! The directory is the bottom room of the crate: it knows nothing of links,
//! membership or nodes. [`Directory`] is its door; nobody else writes the map.

mod access;
pub(crate) mod dispatch;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use swarm_protocol::{NodeId, RemoteError, Target};

pub use access::{Access, NODE_ROLES, OPERATOR_ROLES};
pub use dispatch::{Accepts, RemoteActor, RemoteMessage, Wire};
pub(crate) use dispatch::{Dispatch, Entry, StampCaller};

/// Who sent a message that arrived over a link: the peer's node id and the
/// roles its certificate grants. Authorization and tracing read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The authenticated peer node.
    pub(crate) node: NodeId,
    /// The roles of the peer's certificate.
    pub(crate) roles: Arc<[String]>,
    /// Its certificate's serial.
    pub(crate) serial: u64,
    /// Its certificate's name.
    pub(crate) name: Arc<str>,
    /// Where the link's socket comes from (the relay's, for a relayed link).
    pub(crate) addr: std::net::SocketAddr,
    /// Its certificate has an operator role: those count only with a
    /// login's capability.
    pub(crate) operator: bool,
}

/// The actors exposed on this node, by name. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Directory {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Registered actors by name.
    entries: DashMap<String, Arc<dyn Dispatch>>,
    /// The services each actor serves, by actor name (policy targets).
    services: DashMap<String, Vec<String>>,
    /// Bumped on every change of `entries` or `services`, so readers may
    /// cache lookups and policy decisions.
    generation: AtomicU64,
    /// Per-actor counters are off (`MeshConfig::counters`, `Node::set_counters`).
    uncounted: std::sync::atomic::AtomicBool,
    /// The node's recent events, for operators.
    events: crate::inspect::events::EventLog,
}

impl Directory {
    /// Turns per-actor counters off (or on) for everything exposed, now
    /// and from now on.
    pub(crate) fn set_uncounted(&self, off: bool) {
        self.inner.uncounted.store(off, Ordering::Relaxed);
        for entry in self.inner.entries.iter() {
            entry.value().stats().set_off(off);
        }
    }

    /// Where this node's subsystems record events for operators.
    pub(crate) fn events(&self) -> &crate::inspect::events::EventLog {
        &self.inner.events
    }

    /// Whether per-actor counters are on.
    pub(crate) fn counting(&self) -> bool {
        !self.inner.uncounted.load(Ordering::Relaxed)
    }

    fn prepare(&self, entry: &Arc<dyn Dispatch>) {
        if self.inner.uncounted.load(Ordering::Relaxed) {
            entry.stats().set_off(true);
        }
    }

    /// Every exposed actor, by name.
    pub(crate) fn entries(&self) -> Vec<(String, Arc<dyn Dispatch>)> {
        self.inner
            .entries
            .iter()
            .map(|e| (e.key().clone(), Arc::clone(e.value())))
            .collect()
    }

    /// Publishes `entry` under `name`; false if the name is taken.
    pub(crate) fn insert(&self, name: String, entry: Arc<dyn Dispatch>) -> bool {
        use dashmap::mapref::entry::Entry as Slot;
        self.prepare(&entry);
        match self.inner.entries.entry(name) {
            Slot::Occupied(_) => false,
            Slot::Vacant(slot) => {
                slot.insert(entry);
                self.inner.generation.fetch_add(1, Ordering::AcqRel);
                true
            }
        }
    }

    /// Publishes `entry` under `name`, replacing what was there (a
    /// supervised actor's next incarnation).
    pub(crate) fn replace(&self, name: String, entry: Arc<dyn Dispatch>) {
        self.prepare(&entry);
        self.inner.entries.insert(name, entry);
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Removes a registration; returns whether the name was registered.
    pub(crate) fn remove(&self, name: &str) -> bool {
        let removed = self.inner.entries.remove(name).is_some();
        if removed {
            self.inner.generation.fetch_add(1, Ordering::AcqRel);
        }
        removed
    }

    /// Removes `name` only if `entry` is what is registered under it (a
    /// supervisor unexposing its own incarnation, never a successor's).
    pub(crate) fn remove_entry(&self, name: &str, entry: &Arc<dyn Dispatch>) -> bool {
        let removed = self
            .inner
            .entries
            .remove_if(name, |_, current| Arc::ptr_eq(current, entry))
            .is_some();
        if removed {
            self.inner.generation.fetch_add(1, Ordering::AcqRel);
        }
        removed
    }

    /// Records that the actor `name` serves (or no longer serves) `service`:
    /// policy rules name targets by service.
    pub(crate) fn set_service(&self, name: &str, service: &str, present: bool) {
        let mut list = self.inner.services.entry(name.to_owned()).or_default();
        list.retain(|s| s != service);
        if present {
            list.push(service.to_owned());
        }
        drop(list);
        self.inner.services.remove_if(name, |_, l| l.is_empty());
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether an actor is exposed under `name`.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.inner.entries.contains_key(name)
    }

    /// How many actors are exposed.
    pub(crate) fn len(&self) -> usize {
        self.inner.entries.len()
    }

    /// The untyped dispatcher of the actor exposed under `name`.
    pub(crate) fn dispatcher(&self, name: &str) -> Option<Arc<dyn Dispatch>> {
        self.inner.entries.get(name).map(|d| Arc::clone(d.value()))
    }

    /// A lookup cache for one reader (one link).
    pub(crate) fn lookup(&self) -> Lookup {
        Lookup {
            directory: self.clone(),
            cache: None,
        }
    }

    /// Bumped on every change of the exposed actors or their services:
    /// what was decided about a target holds while it stays the same.
    pub(crate) fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// The services the actor `name` serves (policy rules name targets by
    /// service).
    pub(crate) fn services(&self, name: &str) -> Vec<String> {
        self.inner
            .services
            .get(name)
            .map(|s| s.value().clone())
            .unwrap_or_default()
    }
}

/// Finds dispatchers by target, remembering the last one while the
/// directory does not change (a stream of messages usually has one target).
pub(crate) struct Lookup {
    directory: Directory,
    /// (directory generation, name, dispatcher) of the last hit.
    cache: Option<(u64, String, Arc<dyn Dispatch>)>,
}

impl Lookup {
    /// The dispatcher for `to`.
    ///
    /// # Errors
    ///
    /// [`RemoteError::NoSuchActor`] if nothing is exposed under the target.
    pub(crate) fn find(&mut self, to: &Target<'_>) -> Result<&dyn Dispatch, RemoteError> {
        let name = match to {
            Target::Name(name) => *name,
            Target::Id(id) => {
                return Err(RemoteError::NoSuchActor {
                    name: format!("#{id}"),
                })
            }
        };
        let inner = &self.directory.inner;
        let generation = inner.generation.load(Ordering::Acquire);
        let hit = matches!(&self.cache, Some((g, n, _)) if *g == generation && n == name);
        if !hit {
            let dispatch = inner
                .entries
                .get(name)
                .map(|d| Arc::clone(d.value()))
                .ok_or_else(|| RemoteError::NoSuchActor {
                    name: name.to_owned(),
                })?;
            self.cache = Some((generation, name.to_owned(), dispatch));
        }
        match &self.cache {
            Some((_, _, dispatch)) => Ok(dispatch.as_ref()),
            None => Err(RemoteError::NoSuchActor {
                name: name.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use actix::{Actor, Addr, Context, Handler, Message};
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Serialize, Deserialize, Message)]
    #[rtype(result = "u32")]
    struct Double(u32);
    crate::remote_message!(Double => "test.Double");

    struct Doubler;
    impl Actor for Doubler {
        type Context = Context<Self>;
    }
    impl Handler<Double> for Doubler {
        type Result = u32;
        fn handle(&mut self, Double(x): Double, _: &mut Context<Self>) -> u32 {
            x * 2
        }
    }

    crate::remote_actor!(Doubler: Double, WhoAmI);

    struct Other;
    impl Actor for Other {
        type Context = Context<Self>;
    }

    /// Answers who sent it, as the message says.
    #[derive(Serialize, Deserialize, Message)]
    #[rtype(result = "NodeId")]
    struct WhoAmI(NodeId);
    crate::remote_message!(WhoAmI => "test.WhoAmI");
    impl StampCaller for WhoAmI {
        fn stamp_caller(&mut self, caller: &Caller) {
            self.0 = caller.node;
        }
    }
    impl Handler<WhoAmI> for Doubler {
        type Result = actix::MessageResult<WhoAmI>;
        fn handle(&mut self, WhoAmI(who): WhoAmI, _: &mut Context<Self>) -> Self::Result {
            actix::MessageResult(who)
        }
    }

    #[actix::test]
    async fn a_stamped_message_names_the_authenticated_caller_whatever_it_claims() {
        let real = NodeId::from_bytes([7; 16]);
        let claimed = NodeId::from_bytes([9; 16]);
        let caller = Caller {
            node: real,
            roles: Arc::from(Vec::new()),
            serial: 1,
            name: Arc::from("test"),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
            operator: false,
        };
        let body = rmp_serde::to_vec(&WhoAmI(claimed)).unwrap_or_default();
        let mut plain = Entry::new(Doubler.start());
        plain.accept::<WhoAmI>();
        let stamped = {
            let mut e = Entry::new(Doubler.start());
            e.accept::<WhoAmI>();
            e.stamped::<WhoAmI>()
        };
        let answer = |entry: &dyn Dispatch| entry.ask(&caller, "test.WhoAmI", &body);
        let plain = answer(&plain).unwrap_or_else(|e| panic!("{e}")).await;
        let stamped = answer(&stamped).unwrap_or_else(|e| panic!("{e}")).await;
        let decode = |r: Result<Vec<u8>, RemoteError>| {
            rmp_serde::from_slice::<NodeId>(&r.unwrap_or_default()).ok()
        };
        assert_eq!(decode(plain), Some(claimed));
        assert_eq!(decode(stamped), Some(real));
    }

    #[actix::test]
    async fn lookup_cache_follows_changes_and_entries_keep_their_type() {
        let dir = Directory::default();
        let mut entry = Entry::new(Doubler.start());
        entry.accept::<Double>();
        assert!(dir.insert("d".into(), Arc::new(entry)));
        assert!(!dir.insert("d".into(), Arc::new(Entry::new(Doubler.start()))));
        let mut lookup = dir.lookup();
        assert!(lookup.find(&Target::Name("d")).is_ok());
        let d = dir.dispatcher("d").map(|d| d.addr().is::<Addr<Doubler>>());
        assert_eq!(d, Some(true));
        let other = dir.dispatcher("d").map(|d| d.addr().is::<Addr<Other>>());
        assert_eq!(other, Some(false));
        assert!(dir.dispatcher("x").is_none());
        assert!(dir.remove("d"));
        assert!(matches!(
            lookup.find(&Target::Name("d")),
            Err(RemoteError::NoSuchActor { .. })
        ));
        assert_eq!(dir.len(), 0);
    }
}
