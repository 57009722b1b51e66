//! The head's state machine and store at scale, in one process: the heap a
//! placed actor costs a head (anonymous RSS before and after applying N
//! placements), and how long a snapshot of N actors takes to build and
//! write, to install on a follower's fresh store, and to read back when a
//! head restarts. `swarm bench control --actors N` prints it; the Raft
//! network, the leases and the hosts are left to the cluster benchmarks.

use std::path::Path;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, RaftSnapshotBuilder};
use serde::Serialize;
use swarm_protocol::NodeId;

use super::{open, Plain, StateMachine};
use crate::head::state::{ActorSpec, Command};
use crate::head::types::{Entry, HeadId, StorageError};
use crate::placement::{Placement, ResourceSet};
use crate::supervision::Restart;

/// What [`measure`] found.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct HeadScale {
    /// Placed actors.
    pub actors: usize,
    /// Nodes they were spread over.
    pub nodes: usize,
    /// Anonymous RSS (heap) of this process before the placements, bytes
    /// (Linux; `None` elsewhere).
    pub rss_anon_before: Option<u64>,
    /// The same once all are applied.
    pub rss_anon_after: Option<u64>,
    /// `(after - before) / actors`.
    pub bytes_per_actor: Option<f64>,
    /// Applying the placements (one log entry each, 1,024 per call).
    pub apply_s: f64,
    /// The encoded snapshot's size, bytes.
    pub snapshot_bytes: usize,
    /// Building the snapshot and writing it durably (the leader's part).
    pub snapshot_write_s: f64,
    /// Installing it on a follower's fresh store: decode, write, swap in.
    pub snapshot_install_s: f64,
    /// Opening the follower's store again (a restart reads the snapshot).
    pub reopen_s: f64,
}

/// Why [`measure`] stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScaleError {
    /// The store failed at this step.
    #[error("{step}: {source}")]
    Storage {
        /// What was being done.
        step: &'static str,
        /// The store's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A store holds another number of actors than were placed.
    #[error("{step}: {found} actors, {expected} placed")]
    Lost {
        /// Where they were counted.
        step: &'static str,
        /// How many were placed.
        expected: usize,
        /// How many the store holds.
        found: usize,
    },
}

/// Places `actors` named actors over `nodes` nodes on a fresh store in
/// `dir` (plain, unsealed), snapshots it, installs the snapshot on a
/// second fresh store and reopens that one; `dir` is left to the caller
/// to remove. MUST run on a tokio runtime (the store writes on its
/// blocking pool).
///
/// # Errors
///
/// When a store cannot be created, written or read, or loses actors.
pub async fn measure(actors: usize, nodes: usize, dir: &Path) -> Result<HeadScale, ScaleError> {
    let nodes = nodes.max(1);
    let failed = |step: &'static str| {
        move |e: StorageError| ScaleError::Storage {
            step,
            source: Box::new(e),
        }
    };
    let (_, mut leader) = open(&dir.join("leader"), Arc::new(Plain)).map_err(failed("open"))?;
    let rss_anon_before = rss_anon();
    let started = Instant::now();
    let mut index = 0u64;
    let mut batch = Vec::with_capacity(APPLY_BATCH);
    for i in 0..actors {
        index += 1;
        batch.push(placement(i, nodes, index));
        if batch.len() == APPLY_BATCH || i + 1 == actors {
            leader
                .apply(std::mem::take(&mut batch))
                .await
                .map_err(failed("apply"))?;
        }
    }
    let apply_s = started.elapsed().as_secs_f64();
    let rss_anon_after = rss_anon();
    count(&leader, "applied", actors)?;

    let started = Instant::now();
    let snapshot = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .map_err(failed("snapshot"))?;
    let snapshot_write_s = started.elapsed().as_secs_f64();
    drop(leader);
    let data = snapshot.snapshot;
    let snapshot_bytes = data.len();

    let follower_dir = dir.join("follower");
    let (_, mut follower) = open(&follower_dir, Arc::new(Plain)).map_err(failed("open"))?;
    let started = Instant::now();
    let _ = follower
        .begin_receiving_snapshot()
        .await
        .map_err(failed("receive"))?;
    follower
        .install_snapshot(&snapshot.meta, data)
        .await
        .map_err(failed("install"))?;
    let snapshot_install_s = started.elapsed().as_secs_f64();
    count(&follower, "installed", actors)?;
    drop(follower);

    let started = Instant::now();
    let (_, reopened) = open(&follower_dir, Arc::new(Plain)).map_err(failed("reopen"))?;
    let reopen_s = started.elapsed().as_secs_f64();
    count(&reopened, "reopened", actors)?;

    let bytes_per_actor = match (rss_anon_before, rss_anon_after) {
        (Some(before), Some(after)) if actors > 0 => {
            Some(after.saturating_sub(before) as f64 / actors as f64)
        }
        _ => None,
    };
    Ok(HeadScale {
        actors,
        nodes,
        rss_anon_before,
        rss_anon_after,
        bytes_per_actor,
        apply_s,
        snapshot_bytes,
        snapshot_write_s,
        snapshot_install_s,
        reopen_s,
    })
}

impl HeadScale {
    /// The figures as `swarm bench control --actors` prints them.
    pub fn table(&self) -> String {
        let per_actor = self
            .bytes_per_actor
            .map_or_else(|| "-".to_owned(), |b| format!("{b:.0}"));
        format!(
            "head state machine, in this process: {} named actors over {} nodes\n\
             head_bytes_per_actor     {:>10}   (anonymous RSS after minus before, per actor; target <= 1024)\n\
             apply_s                  {:>10.3}   (one Place entry each)\n\
             snapshot_bytes           {:>10}\n\
             snapshot_write_s         {:>10.3}   (encode and write durably)\n\
             snapshot_install_s       {:>10.3}   (a follower's fresh store: decode, write, swap in)\n\
             reopen_s                 {:>10.3}   (a restarted head reads the snapshot back)\n",
            self.actors,
            self.nodes,
            per_actor,
            self.apply_s,
            self.snapshot_bytes,
            self.snapshot_write_s,
            self.snapshot_install_s,
            self.reopen_s,
        )
    }
}

/// The `i`th placement: a ledger-like actor (short MessagePack arguments,
/// a hard label placement) on node `i % nodes`, at log index `index`.
pub(super) fn placement(i: usize, nodes: usize, index: u64) -> Entry {
    let node = u64::try_from(i % nodes).unwrap_or(0);
    let mut id = [0u8; 16];
    id[8..].copy_from_slice(&node.to_be_bytes());
    Entry {
        log_id: openraft::LogId::new(CommittedLeaderId::new(1, HeadId::from(1)), index),
        payload: EntryPayload::Normal(Command::Place {
            name: format!("actor-{i:07}"),
            spec: ActorSpec {
                type_name: "demo.Ledger".to_owned(),
                // {"opening": 0}, as rmp_serde writes it named.
                args: vec![0x81, 0xa7, b'o', b'p', b'e', b'n', b'i', b'n', b'g', 0x00],
                resources: ResourceSet::default(),
                placement: Placement::Label {
                    label: "worker".to_owned(),
                    hard: true,
                },
                restart: Restart::never(),
                bundle: None,
                replace_on_escalation: true,
                idle_after_ms: None,
            },
            node: NodeId::from_bytes(id),
            expect: None,
        }),
    }
}

/// Fails unless `machine` holds `expected` actors.
fn count(machine: &StateMachine, step: &'static str, expected: usize) -> Result<(), ScaleError> {
    let found = machine
        .machine
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .state
        .actors()
        .count();
    if found == expected {
        Ok(())
    } else {
        Err(ScaleError::Lost {
            step,
            expected,
            found,
        })
    }
}

/// This process's anonymous resident memory (`RssAnon`), bytes: the heap
/// and other private pages, without mapped files.
fn rss_anon() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Entries per `apply` call (openraft hands over committed runs of entries).
const APPLY_BATCH: usize = 1024;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::head::store::tests::Scratch;

    /// How long [`measure`] of a million actors may take in the stress
    /// test (a shared, loaded machine; a quiet one takes a fraction of it).
    const MILLION_WITHIN: Duration = Duration::from_secs(600);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_of_placed_actors_installs_and_reopens_whole() {
        let dir = Scratch::new("scale");
        let report = measure(2_000, 7, &dir.0).await.expect("measured");
        assert_eq!(report.actors, 2_000);
        assert!(report.snapshot_bytes > 2_000 * 20, "{report:?}");
    }

    /// A million placed actors: the snapshot is written, installed on a
    /// follower and read back; prints the figures (head bytes per actor,
    /// times) for the record.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "stress: a million actors, about a minute and 1 GiB"]
    async fn stress_a_million_placed_actors_snapshot_installs_and_reopens() {
        let dir = Scratch::new("scale-million");
        let started = Instant::now();
        let report = measure(1_000_000, 1_000, &dir.0).await.expect("measured");
        eprintln!("{}", report.table());
        assert!(started.elapsed() < MILLION_WITHIN, "{report:?}");
        if let Some(per_actor) = report.bytes_per_actor {
            assert!(per_actor <= 1024.0, "{per_actor:.0} bytes per actor");
        }
    }
}
