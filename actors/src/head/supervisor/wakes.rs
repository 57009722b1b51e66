//! When the supervisor ticks. It used to tick every [`TICK`] on every
//! head, leading or not: 20 wake-ups a second of an idle head. It now
//! ticks only when something may be due:
//!
//! - at once when Raft's role changes (openraft's server metrics: state,
//!   vote, leader, membership), and then every [`TICK`] while Raft leads
//!   but the supervisor does not act yet (catching up, confirming);
//! - within [`TICK`] of a change of the applied state on the leader (a
//!   placement, move or removal; the revocations go to the mesh at once,
//!   on every head);
//! - on the leader, at the first moment a node with placements may need a
//!   crash probe or a move ([`Leases::due`]), or a move waits to be tried
//!   again, never sooner than [`TICK`] after the last tick: a node whose
//!   lease ran out is looked at every [`TICK`] until its actors moved, as
//!   before;
//! - at once on crash evidence, and after a queued move ended.
//!
//! A renewal only pushes a node's moment later, so the timer set for it
//! fires once, finds nothing due and is set again: about one tick per
//! renewal interval of each node holding placements.
//!
//! [`Leases::due`]: crate::head::leases::Leases::due

use super::*;

/// Why the supervisor woke up.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) enum Wake {
    /// Raft's role, term, leader or membership changed.
    Role,
    /// The state machine applied entries or installed a snapshot.
    Applied,
}

impl Supervisor {
    /// Wakes this supervisor on Raft's role changes and on changes of the
    /// applied state, for as long as it runs.
    pub(super) fn watch(&mut self, ctx: &mut Context<Self>) {
        let mut server = self.raft.server_metrics();
        let me = ctx.address().downgrade();
        ctx.spawn(fut::wrap_future(async move {
            // Ends when Raft shuts down (or the supervisor stopped).
            while server.changed().await.is_ok() {
                let Some(me) = me.upgrade() else { return };
                me.do_send(Wake::Role);
            }
        }));
        let applied = Arc::clone(&self.applied);
        let me = ctx.address().downgrade();
        ctx.spawn(fut::wrap_future(async move {
            loop {
                applied.notified().await;
                let Some(me) = me.upgrade() else { return };
                me.do_send(Wake::Applied);
            }
        }));
    }

    /// Runs a tick at `at` (or sooner, if one is set sooner already).
    pub(super) fn tick_at(&mut self, at: Instant, ctx: &mut Context<Self>) {
        if let Some((armed, handle)) = self.next_tick {
            if armed <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = at.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(delay, |act, ctx| {
            act.next_tick = None;
            act.tick(ctx);
        });
        self.next_tick = Some((at, handle));
    }

    /// Sets the next tick by what may be due, at least [`TICK`] from now;
    /// none while nothing is (a follower, an idle leader without
    /// placements).
    pub(super) fn schedule(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        if let Some(due) = self.due() {
            self.tick_at(due.max(now + TICK), ctx);
        }
    }

    /// Whether Raft's role, as its server metrics say, is the leader's.
    /// Raft runs on a thread of its own (`crate::head::Head::start`): the
    /// role that woke this supervisor may be newer than the full metrics
    /// it reads next, so a leader still catching up keeps looking (every
    /// tick) until they show its first entry applied, instead of waiting
    /// for a role change that already came.
    fn raft_leads(&self) -> bool {
        self.raft.server_metrics().borrow().state == ServerState::Leader
    }

    /// The first moment a tick may have something to do.
    fn due(&self) -> Option<Instant> {
        if !self.leases.is_leading() {
            // Catching up or confirming the leadership: look again soon.
            return self.raft_leads().then(Instant::now);
        }
        let nodes: Vec<NodeId> = self.read(|m| m.state.nodes_with_placements().collect());
        let leases = &self.leases;
        nodes
            .into_iter()
            .filter_map(|node| leases.due(node))
            .chain(self.retry_after.values().copied())
            .min()
    }
}

impl Handler<Wake> for Supervisor {
    type Result = ();

    fn handle(&mut self, wake: Wake, ctx: &mut Context<Self>) {
        match wake {
            Wake::Role => self.tick(ctx),
            Wake::Applied => {
                self.apply_revocations();
                if self.leases.is_leading() || self.raft_leads() {
                    self.tick_at(Instant::now() + TICK, ctx);
                }
            }
        }
    }
}
