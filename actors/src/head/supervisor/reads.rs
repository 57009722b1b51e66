//! Reads that confirm leadership first: a leader cut off from the quorum
//! keeps its Raft state until it hears of a newer term, so it must not
//! answer from its state machine on its own word. A read waits for a
//! quorum round of openraft's `ensure_linearizable` begun after it arrived
//! (a read index); one round serves every read waiting for it, so many
//! readers at once cost one round per batch, not one each. For a lease
//! after a round began (shorter than the leader lease openraft's followers
//! grant), reads answer at once. What is read, and who may read it, is
//! left to the handlers.
//!
//! Why the lease holds: each follower that acknowledged the round got its
//! heartbeat after the round began, and openraft's followers refuse votes
//! for `election_timeout_max` (twice [`HeadConfig::election_timeout`])
//! after a heartbeat, so no other leader exists until the round's start
//! plus that (less 10% per clock for rates that differ: at least 1.6 x
//! `election_timeout`). The lease is at most one `election_timeout`
//! ([`HeadConfig::read_lease`]; zero turns it off). A follower
//! that restarts forgets when it last heard the leader, and may vote at
//! once: a restart on the majority's side during a partition can shorten
//! that bound, and a read within the lease may then be stale.
//!
//! [`HeadConfig::election_timeout`]: crate::head::HeadConfig::election_timeout
//! [`HeadConfig::read_lease`]: crate::head::HeadConfig::read_lease

use tokio::sync::oneshot;

use super::*;

/// The reads of one head waiting for a quorum round.
pub(super) struct Reads {
    /// A round is in flight: reads arriving now wait for the next one (the
    /// round in flight may have begun before they arrived).
    in_flight: bool,
    /// Reads the next round serves.
    waiting: Vec<oneshot::Sender<Result<(), ControlError>>>,
    /// How long after a confirmed round began reads answer without one.
    lease: Duration,
    /// When the last confirmed round began, and in which term.
    confirmed: Option<(Instant, u64)>,
}

impl Reads {
    /// No round yet; reads answer without one for `lease` after a round
    /// began (at most the election timeout's lower bound; zero for none).
    pub(super) fn new(lease: Duration) -> Self {
        Self {
            in_flight: false,
            waiting: Vec::new(),
            lease,
            confirmed: None,
        }
    }
}

/// Answers once a quorum confirmed, after the read was asked, that this
/// head leads (and its state machine applied what was committed then).
pub(super) type Confirmation = oneshot::Receiver<Result<(), ControlError>>;

impl Supervisor {
    /// Confirmed at once within the lease of the last round; else joins
    /// the next round, starting it if none is in flight.
    pub(super) fn confirm(&mut self, ctx: &mut Context<Self>) -> Confirmation {
        let (tx, rx) = oneshot::channel();
        if self.leased() {
            let _ = tx.send(Ok(()));
            return rx;
        }
        self.reads.waiting.push(tx);
        if !self.reads.in_flight {
            self.round(ctx);
        }
        rx
    }

    /// A read of the state machine once the leadership is confirmed: `f`
    /// runs on the state as applied after the confirmation.
    ///
    /// # Errors
    ///
    /// [`ControlError::NotLeader`] at once on a head that does not lead by
    /// its own state; [`ControlError::NoQuorum`] (or `NotLeader`, when a
    /// newer term answered) when no quorum confirmed it.
    pub(super) fn confirmed_read<T: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&Machine) -> Result<T, ControlError> + 'static,
    ) -> ResponseFuture<Result<T, ControlError>> {
        if let Err(e) = self.leading() {
            return Box::pin(async move { Err(e) });
        }
        let confirmation = self.confirm(ctx);
        let machine = Arc::clone(&self.machine);
        Box::pin(async move {
            confirmed(confirmation).await?;
            f(&machine.read().unwrap_or_else(PoisonError::into_inner))
        })
    }

    /// Whether a round confirmed this head's leadership in its current
    /// term less than a lease ago.
    pub(super) fn leased(&self) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics.state == ServerState::Leader
            && self.reads.confirmed.is_some_and(|(began, term)| {
                term == metrics.current_term && began.elapsed() < self.reads.lease
            })
    }

    /// Starts a round for the reads waiting now.
    fn round(&mut self, ctx: &mut Context<Self>) {
        let batch = std::mem::take(&mut self.reads.waiting);
        self.reads.in_flight = true;
        let raft = self.raft.clone();
        let me = self.id;
        // Taken before the round: its heartbeats leave after this.
        let began = Instant::now();
        let term = raft.metrics().borrow().current_term;
        ctx.spawn(
            async move { quorum_round(&raft, me).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    act.reads.confirmed = result.is_ok().then_some((began, term));
                    for read in batch {
                        let _ = read.send(result.clone());
                    }
                    act.reads.in_flight = false;
                    if !act.reads.waiting.is_empty() {
                        act.round(ctx);
                    }
                }),
        );
    }
}

/// What a confirmation answered; a supervisor that stopped meanwhile
/// confirmed nothing.
pub(super) async fn confirmed(confirmation: Confirmation) -> Result<(), ControlError> {
    confirmation.await.unwrap_or_else(|_| {
        Err(ControlError::NoQuorum {
            reason: "the head stopped before a quorum confirmed it".to_owned(),
        })
    })
}

/// One quorum round: openraft heartbeats the voters and answers once a
/// quorum acknowledged this leader's term, then waits until the state
/// machine applied the read index.
async fn quorum_round(raft: &Raft, me: NodeId) -> Result<(), ControlError> {
    use openraft::error::{CheckIsLeaderError, RaftError};
    match tokio::time::timeout(QUORUM_WAIT, raft.ensure_linearizable()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(to)))) => {
            Err(ControlError::NotLeader {
                leader: to.leader_id.map(|l| l.0).filter(|l| *l != me),
            })
        }
        Ok(Err(e)) => Err(ControlError::NoQuorum {
            reason: e.to_string(),
        }),
        Err(_) => Err(ControlError::NoQuorum {
            reason: "no quorum confirmed the leader".to_owned(),
        }),
    }
}

/// A head that leads by its own Raft state says so only once a quorum
/// confirms it; otherwise its row says `unconfirmed`, with no leader.
impl Handler<HeadStatus> for Supervisor {
    type Result = ResponseFuture<HeadRow>;

    fn handle(&mut self, _: HeadStatus, ctx: &mut Context<Self>) -> Self::Result {
        let metrics = self.raft.metrics().borrow().clone();
        let last_log = metrics.last_log_index.unwrap_or(0);
        let lag = metrics
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .filter(|(id, _)| id.0 != self.id)
                    .map(|(id, matched)| {
                        (
                            id.0,
                            last_log.saturating_sub(matched.map_or(0, |l| l.index)),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let row = HeadRow {
            node: self.id,
            role: format!("{:?}", metrics.state).to_lowercase(),
            leader: metrics.current_leader.map(|l| l.0),
            term: metrics.current_term,
            voters: metrics
                .membership_config
                .membership()
                .voter_ids()
                .map(|v: HeadId| v.0)
                .collect(),
            last_log,
            applied: metrics.last_applied.map_or(0, |l| l.index),
            lag,
        };
        if metrics.state != ServerState::Leader {
            return Box::pin(async move { row });
        }
        let confirmation = self.confirm(ctx);
        Box::pin(async move {
            match confirmed(confirmation).await {
                Ok(()) => row,
                Err(_) => HeadRow {
                    role: UNCONFIRMED.to_owned(),
                    leader: None,
                    ..row
                },
            }
        })
    }
}
