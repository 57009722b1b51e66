//! What a node's host needs from the rest of the node to passivate an
//! idle actor: a way to tell the head ([`ReportPassive`], set by the node
//! once it has a control plane), and, for durable actors, a way to have
//! the incarnation save a final snapshot and to read its journal position
//! (registered by the `durable` room when an incarnation recovered).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, PoisonError, RwLock};

use swarm_protocol::NodeId;
use tokio::sync::{mpsc, oneshot};

/// Tells the head that `(name, epoch)` on this node is idle and drained;
/// answers once the head recorded it passive, or why not.
pub(crate) type ReportPassive = std::sync::Arc<
    dyn Fn(String, u64) -> Pin<Box<dyn Future<Output = Result<(), NotPassive>>>> + Send + Sync,
>;

/// Why a passivation report was not acknowledged.
#[derive(Debug)]
pub(crate) enum NotPassive {
    /// The head refused it: it did not record the name passive.
    Refused(String),
    /// No answer (no quorum, a cut link, a leader change): the head may or
    /// may not have recorded it.
    Unknown(String),
}

/// Asks an incarnation to save a final snapshot; answered once saved.
pub(crate) type SaveRequest = oneshot::Sender<Result<(), String>>;

/// A durable incarnation as the host sees it.
struct Registered {
    epoch: u64,
    /// The next sequence number of its journal.
    next: AtomicU64,
    /// The store's backend.
    backend: &'static str,
    save: mpsc::UnboundedSender<SaveRequest>,
}

/// By node, then name (looked up by `&str`: no allocation per persist or
/// per listed row).
type Incarnations = RwLock<HashMap<NodeId, HashMap<String, Registered>>>;

fn incarnations() -> &'static Incarnations {
    static INCARNATIONS: OnceLock<Incarnations> = OnceLock::new();
    INCARNATIONS.get_or_init(Incarnations::default)
}

/// Registered while its guard lives (dropped with the incarnation).
pub(crate) struct Registration {
    node: NodeId,
    name: String,
    epoch: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = incarnations()
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(names) = map.get_mut(&self.node) else {
            return;
        };
        if names.get(&self.name).is_some_and(|r| r.epoch == self.epoch) {
            names.remove(&self.name);
            if names.is_empty() {
                map.remove(&self.node);
            }
        }
    }
}

/// Registers a recovered durable incarnation: its saves come through
/// `save`, its journal is at `next`.
pub(crate) fn register(
    node: NodeId,
    name: &str,
    epoch: u64,
    (next, backend): (u64, &'static str),
    save: mpsc::UnboundedSender<SaveRequest>,
) -> Registration {
    let mut map = incarnations()
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    let names = map.entry(node).or_default();
    // An older epoch's incarnation gives way (never a newer one's).
    if names.get(name).is_none_or(|r| r.epoch <= epoch) {
        names.insert(
            name.to_owned(),
            Registered {
                epoch,
                next: AtomicU64::new(next),
                backend,
                save,
            },
        );
    }
    Registration {
        node,
        name: name.to_owned(),
        epoch,
    }
}

/// Its journal moved on to `next`.
pub(crate) fn advanced(node: NodeId, name: &str, epoch: u64, next: u64) {
    if let Some(r) = lookup(
        &incarnations()
            .read()
            .unwrap_or_else(PoisonError::into_inner),
        node,
        name,
        epoch,
    ) {
        r.next.store(next, Ordering::Relaxed);
    }
}

/// The journal position (last sequence number written) and backend of
/// `name`'s incarnation `epoch` on `node`, if it is a recovered durable
/// actor.
pub(crate) fn position(node: NodeId, name: &str, epoch: u64) -> Option<(u64, &'static str)> {
    let map = incarnations()
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    lookup(&map, node, name, epoch)
        .map(|r| (r.next.load(Ordering::Relaxed).saturating_sub(1), r.backend))
}

/// Asks `name`'s durable incarnation `epoch` to save a final snapshot:
/// `None` if it is not a recovered durable actor (nothing to save).
pub(crate) fn save(
    node: NodeId,
    name: &str,
    epoch: u64,
) -> Option<oneshot::Receiver<Result<(), String>>> {
    let map = incarnations()
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    let registered = lookup(&map, node, name, epoch)?;
    let (tx, rx) = oneshot::channel();
    registered.save.send(tx).ok()?;
    Some(rx)
}

/// `name`'s incarnation `epoch` on `node`.
fn lookup<'a>(
    map: &'a HashMap<NodeId, HashMap<String, Registered>>,
    node: NodeId,
    name: &str,
    epoch: u64,
) -> Option<&'a Registered> {
    map.get(&node)?.get(name).filter(|r| r.epoch == epoch)
}

/// Incarnations whose type passivates them by default, per node, until
/// the host takes them (`(name, epoch, idle ms)`; bounded by what runs).
type Defaults = std::sync::Mutex<HashMap<NodeId, Vec<(String, u64, u64)>>>;

fn defaults() -> &'static Defaults {
    static DEFAULTS: OnceLock<Defaults> = OnceLock::new();
    DEFAULTS.get_or_init(Defaults::default)
}

/// `name`'s incarnation `epoch` on `node` passivates after `ms` idle unless
/// its spawn said otherwise (`Durable::passivate_after`).
pub(crate) fn idle_by_default(node: NodeId, name: &str, epoch: u64, ms: u64) {
    defaults()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(node)
        .or_default()
        .push((name.to_owned(), epoch, ms));
    // The host looks for idle actors only while it has some to watch.
    if let Some(wake) = wakers()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&node)
    {
        wake();
    }
}

/// How a node's host is told that [`idle_by_default`] has something for it.
pub(crate) type Wake = Box<dyn Fn() + Send + Sync>;

type Wakers = std::sync::Mutex<HashMap<NodeId, Wake>>;

fn wakers() -> &'static Wakers {
    static WAKERS: OnceLock<Wakers> = OnceLock::new();
    WAKERS.get_or_init(Wakers::default)
}

/// Sets how `node`'s host is woken by [`idle_by_default`] (a host started
/// again on the node replaces it).
pub(crate) fn on_idle_default(node: NodeId, wake: Wake) {
    wakers()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(node, wake);
}

/// What `node`'s host has not taken yet of [`idle_by_default`].
pub(crate) fn take_idle_defaults(node: NodeId) -> Vec<(String, u64, u64)> {
    defaults()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&node)
        .unwrap_or_default()
}
