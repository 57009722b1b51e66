//! The control plane's head: nodes with the `head` role (1, 3 or 5) form a
//! Raft group (openraft) over mesh links, with redb as the crash-safe log
//! and snapshot store. Its replicated state names every placed actor, its
//! node and epoch, the reservations, placement groups and drains.
//!
//! ```text
//! Head (handle)
//! ├── Raft          openraft core (log in redb, state in memory + snapshots)
//! ├── RaftPeer      `swarm.raft`: RPCs from the other heads (role head)
//! ├── Supervisor    `swarm.control`: placement, leases, failover (leader only)
//! └── bootstrap     task: initializes the group once `voters` heads are members
//! ```
//!
//! Workers never vote and never store the log; messages between actors
//! never pass through Raft.

pub(crate) mod batch;
pub(crate) mod journal;
pub(crate) mod leases;
pub(crate) mod network;
pub(crate) mod reconcile;
pub(crate) mod reported;
#[cfg(test)]
mod sim;
pub(crate) mod state;
pub(crate) mod store;
pub(crate) mod supervisor;
pub(crate) mod types;
pub(crate) mod wire;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor as _, Addr, Recipient};
use openraft::BasicNode;
use swarm_protocol::membership::MemberState;
use swarm_protocol::NodeId;

pub use store::{Plain, Seal};

use crate::cluster::Cluster;
use crate::directory::{Directory, Entry};
use crate::error::{HeadStartError, StartError};
use crate::mesh::Mesh;
use network::{Network, RaftPeer, RAFT_ACTOR};
use supervisor::{Members, Supervisor};
use types::{HeadId, Raft};
use wire::CONTROL_ACTOR;

/// How a head node keeps the control plane.
#[derive(Clone)]
pub struct HeadConfig {
    /// Where the log and snapshots live (`head.redb`).
    pub dir: PathBuf,
    /// How many heads vote: 1, 3 or 5. The group forms once that many
    /// nodes with the `head` role are members.
    pub voters: usize,
    /// How long a node's lease lasts without renewal; its head-placed
    /// actors stop when it runs out, and may move elsewhere after it.
    pub lease: Duration,
    /// Move a node's actors at once when its renewals stopped and its
    /// address refuses connections (a killed process), instead of waiting
    /// for its lease. Turn off where a firewall may answer for a live node
    /// with TCP resets (`REJECT --reject-with tcp-reset`).
    pub crash_evidence: bool,
    /// Raft election timeout, lower bound (the upper is twice it); the
    /// leader heartbeats every fifth of it.
    pub election_timeout: Duration,
    /// How long after a quorum confirmed the leader's term it answers reads
    /// (where a named actor runs, the heads' rows) without asking a quorum
    /// again: at most `election_timeout` (a longer one is cut to it), zero
    /// to confirm each batch of reads. Why it holds, and the one case it
    /// does not cover (a follower restarted during a partition), is in
    /// `head/supervisor/reads.rs`.
    pub read_lease: Duration,
    /// What stored values pass through.
    pub seal: Arc<dyn Seal>,
    /// The cluster's TOTP secret (`totp.secret`): operators log in through
    /// heads that hold it ([`crate::operators`]).
    pub totp: Option<Arc<zeroize::Zeroizing<[u8; 32]>>>,
    /// How many admin-API password checks (argon2id, 19 MiB and a core
    /// for ~30-60 ms each) the leader runs at once; more at the same time
    /// are refused at once as busy. At least 1.
    pub login_pool: usize,
}

impl std::fmt::Debug for HeadConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadConfig")
            .field("dir", &self.dir)
            .field("voters", &self.voters)
            .field("lease", &self.lease)
            .field("crash_evidence", &self.crash_evidence)
            .field("election_timeout", &self.election_timeout)
            .field("read_lease", &self.read_lease)
            .field("login_pool", &self.login_pool)
            .finish_non_exhaustive()
    }
}

impl HeadConfig {
    /// Defaults: one voter, 3 s leases, 300 ms election timeout and read
    /// lease, stored as is, [`DEFAULT_LOGIN_POOL`] password checks at once.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            voters: 1,
            lease: Duration::from_secs(3),
            crash_evidence: true,
            election_timeout: Duration::from_millis(300),
            read_lease: Duration::from_millis(300),
            seal: Arc::new(Plain),
            totp: None,
            login_pool: DEFAULT_LOGIN_POOL,
        }
    }

    /// How often the Raft leader heartbeats: a fifth of the election
    /// timeout, at least 10 ms.
    pub(crate) fn heartbeat(&self) -> Duration {
        (self.election_timeout / 5).max(Duration::from_millis(10))
    }

    /// The most bytes one Raft message to a head carries: one per
    /// microsecond of the heartbeat (60 kB at the default 60 ms), except
    /// that a single log entry larger than that goes alone.
    ///
    /// openraft gives an AppendEntries one heartbeat to be answered,
    /// whatever it carries, and sends the same one again after a timeout.
    /// A new leader's first AppendEntries to a head carries the second half
    /// of the log (up to 256 entries); with 5,000 spawns in the log that
    /// was 710-830 kB, which an unoptimised build ships, decodes and
    /// answers in 90-400 ms: it was never answered in time, and no write
    /// was acknowledged again. Cut to 60 kB, the same catch-up took 5-15 ms
    /// a message there. Snapshot chunks and batched writes (one log entry)
    /// are cut to the same size.
    pub(crate) fn message_bytes(&self) -> usize {
        usize::try_from(self.heartbeat().as_micros()).unwrap_or(usize::MAX)
    }
}

/// How long the Raft thread outlives a head's shutdown: its links to
/// other heads close after it, with a goodbye (written within a second).
const THREAD_GRACE: Duration = Duration::from_secs(2);

/// Password checks the head leader runs at once by default (one per core
/// of a small head machine).
pub const DEFAULT_LOGIN_POOL: usize = 2;

/// The running head of this node.
#[derive(Clone)]
pub(crate) struct Head {
    raft: Raft,
    supervisor: Addr<Supervisor>,
    /// The arbiter Raft runs on.
    arbiter: actix::ArbiterHandle,
}

/// A head's store, opened and checked whole, not yet handed to Raft.
pub(crate) struct Store {
    log: store::LogStore,
    sm: store::StateMachine,
}

/// Checks the head's settings and opens its store (checking it whole:
/// [`store::open`]). A node does this before it starts any actor, so a
/// damaged store stops the start with nothing to tear down.
///
/// # Errors
///
/// If `voters` is not 1, 3 or 5, or the store does not open.
pub(crate) fn open_store(config: &HeadConfig) -> Result<Store, StartError> {
    if ![1, 3, 5].contains(&config.voters) {
        return Err(HeadStartError::Voters {
            voters: config.voters,
        }
        .into());
    }
    let (log, sm) =
        store::open(&config.dir, Arc::clone(&config.seal)).map_err(|e| HeadStartError::Store {
            dir: config.dir.clone(),
            reason: e.to_string(),
        })?;
    Ok(Store { log, sm })
}

/// What the node hands its head: the transport, the operator sessions
/// it keeps the group's key in, the directory it exposes its actors in,
/// and the audit trail of logins.
#[derive(Clone)]
pub(crate) struct Doors {
    pub(crate) mesh: Mesh,
    pub(crate) sessions: crate::operators::sessions::Sessions,
    pub(crate) directory: Directory,
    pub(crate) audit: crate::audit::Trail,
}

impl Head {
    /// Starts Raft on the store ([`open_store`]) and the supervisor,
    /// exposes both, and bootstraps the group once `voters` heads are
    /// members.
    pub(crate) async fn start(
        doors: Doors,
        cluster: Cluster,
        config: HeadConfig,
        store: Store,
    ) -> Result<Head, StartError> {
        let mesh = doors.mesh.clone();
        let directory = doors.directory.clone();
        let store_error = |e: &dyn std::fmt::Display| {
            StartError::from(HeadStartError::Store {
                dir: config.dir.clone(),
                reason: e.to_string(),
            })
        };
        let Store { log, sm } = store;
        let log = log.limit_appends(config.message_bytes());
        let machine = sm.machine();
        let applied = sm.applied();
        let election = config.election_timeout.as_millis() as u64;
        let raft_config = openraft::Config {
            cluster_name: "swarm-head".to_owned(),
            heartbeat_interval: config.heartbeat().as_millis() as u64,
            election_timeout_min: election,
            // Followers refuse votes for this long after a heartbeat
            // (openraft's leader lease): the reads' lease relies on it.
            election_timeout_max: election * 2,
            max_payload_entries: 256,
            snapshot_max_chunk_size: config.message_bytes() as u64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(10_000),
            ..Default::default()
        }
        .validate()
        .map_err(|e| store_error(&e))?;
        let id = mesh.id();
        // Raft runs on a thread of its own, as do the links to the other
        // heads (`mesh::link::Seed`): on a leader busy with thousands of
        // lease renewals its heartbeats, their answers and the quorum
        // rounds never wait behind them.
        let thread = mesh.priority_thread().unwrap_or_else(|| {
            let thread = actix::Arbiter::new().handle();
            mesh.set_priority_thread(thread.clone());
            thread
        });
        let (started, raft) = tokio::sync::oneshot::channel();
        let network = Network::new(mesh.clone());
        let raft_config = Arc::new(raft_config);
        let spawned = thread.spawn(async move {
            let raft = Raft::new(HeadId(id), raft_config, network, log, sm).await;
            let raft = raft.map(|raft| {
                let peer = RaftPeer::new(raft.clone()).start();
                (raft, peer)
            });
            let _ = started.send(raft);
        });
        if !spawned {
            return Err(store_error(&"the Raft thread stopped"));
        }
        let (raft, peer) = match raft.await {
            Ok(raft) => raft.map_err(|e| store_error(&e))?,
            Err(_) => return Err(store_error(&"the Raft thread stopped")),
        };
        let entry = Arc::new(Entry::declared(peer));
        directory.insert(RAFT_ACTOR.to_owned(), entry);
        // A head verifies operators' capabilities with the group's key from
        // its own TOTP secret at once (other nodes learn the public half
        // with their lease grants).
        if let Some(totp) = &config.totp {
            let generation = machine
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .state
                .capability_generation();
            doors
                .sessions
                .set_key(crate::operators::capability_key(totp, generation).public());
        }
        let supervisor =
            Supervisor::new(id, raft.clone(), (machine, applied), doors, &config).start();
        let entry = Entry::declared(supervisor.clone())
            .stamped::<wire::Renew>()
            .stamped::<wire::journal::ClaimJournal>()
            .stamped::<wire::journal::AppendJournal>()
            .stamped::<wire::journal::AppendJournals>()
            .stamped::<wire::journal::SnapshotJournal>()
            .stamped::<wire::passivation::Passivated>()
            .stamped::<crate::head::wire::operators::SetPassword>()
            .stamped::<crate::head::wire::operators::Delegate>()
            .stamped::<crate::head::wire::operators::VerifyLogin>()
            .stamped::<crate::head::wire::operators::VerifyPassword>();
        let entry = Arc::new(entry);
        directory.insert(CONTROL_ACTOR.to_owned(), entry);
        match cluster.subscribe(supervisor.clone().recipient()).await {
            Ok(members) => supervisor.do_send(Members(members)),
            Err(e) => return Err(store_error(&e)),
        }
        actix::spawn(bootstrap(
            raft.clone(),
            cluster,
            mesh.clone(),
            id,
            config.voters,
        ));
        tracing::info!(dir = %config.dir.display(), voters = config.voters, "head started");
        Ok(Head {
            raft,
            supervisor,
            arbiter: thread,
        })
    }

    /// Where the head answers about its Raft state.
    pub(crate) fn status(&self) -> Recipient<wire::HeadStatus> {
        self.supervisor.clone().recipient()
    }

    /// Stops the supervisor and Raft (the store closes with it).
    pub(crate) fn shutdown(&self) {
        self.supervisor.do_send(supervisor::Stop);
        let raft = self.raft.clone();
        // The caller may be on any thread: Raft stops on its own arbiter,
        // which stops once the links to heads on it had time to say
        // goodbye (the node closes them after this).
        self.arbiter.spawn(async move {
            let _ = raft.shutdown().await;
            tokio::time::sleep(THREAD_GRACE).await;
            actix::Arbiter::current().stop();
        });
    }
}

/// Initializes the group once exactly `voters` alive members carry the
/// `head` role: every head does the same with the same set (openraft
/// allows that), and a head already initialized (from its store or a
/// leader's log) stops looking. More heads than `voters` is a
/// configuration error: nothing is initialized, and the log says why.
async fn bootstrap(raft: Raft, cluster: Cluster, mesh: Mesh, id: NodeId, voters: usize) {
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    let mut warned = false;
    loop {
        interval.tick().await;
        match raft.is_initialized().await {
            Ok(false) => {}
            Ok(true) | Err(_) => return,
        }
        let Ok(members) = cluster.members().await else {
            return;
        };
        let claimed: Vec<NodeId> = members
            .iter()
            .filter(|m| m.state == MemberState::Alive || m.node == id)
            .filter(|m| {
                m.meta
                    .as_ref()
                    .is_some_and(|meta| meta.roles.iter().any(|r| r == "head"))
            })
            .map(|m| m.node)
            .collect();
        // A voter is a node whose certificate has the head role, as its
        // link proves it: a member gossiping itself as a head gets no vote.
        let mut heads = Vec::with_capacity(claimed.len());
        for node in claimed {
            if mesh.certified_head(node).await.unwrap_or(false) {
                heads.push(node);
            }
        }
        if !heads.contains(&id) {
            heads.push(id);
        }
        if heads.len() > voters && !warned {
            warned = true;
            tracing::error!(
                heads = heads.len(),
                voters,
                "more head nodes than voters: not forming the head group (set voters to match)"
            );
        }
        if heads.len() != voters {
            continue;
        }
        let group: BTreeMap<HeadId, BasicNode> = heads
            .iter()
            .map(|n| (HeadId(*n), BasicNode::new(n.to_string())))
            .collect();
        match raft.initialize(group).await {
            Ok(()) => {
                tracing::info!(voters, "head group initialized");
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "head group not initialized by this head");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_that_cannot_start_says_why_as_a_type() {
        let dir = std::env::temp_dir().join(format!("swarm-head-voters-{}", std::process::id()));
        let config = HeadConfig {
            voters: 2,
            ..HeadConfig::new(&dir)
        };
        match open_store(&config) {
            Err(StartError::Head(HeadStartError::Voters { voters: 2 })) => {}
            Err(other) => panic!("expected Voters, got {other}"),
            Ok(_) => panic!("two voters must be refused"),
        }
        // Refused before anything is written.
        assert!(!dir.exists());
        let file = std::env::temp_dir().join(format!("swarm-head-file-{}", std::process::id()));
        std::fs::write(&file, b"not a directory").unwrap();
        let refused = open_store(&HeadConfig::new(&file));
        let _ = std::fs::remove_file(&file);
        match refused {
            Err(StartError::Head(HeadStartError::Store { dir, reason })) => {
                assert_eq!(dir, file);
                assert!(!reason.is_empty());
            }
            Err(other) => panic!("expected Store, got {other}"),
            Ok(_) => panic!("a file is not a head's directory"),
        }
    }
}
