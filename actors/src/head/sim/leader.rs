//! The simulated head leader: grants (with the real `reconcile::plan`),
//! elections, and moves off nodes whose lease expired.

use super::*;

impl Sim {
    /// The leader answers a renewal that reached it with a quorum.
    pub(super) fn grant(&mut self, node: usize, life: u64, req: u64, report: &Report, seen: u64) {
        let Some(now) = self.leader_now() else {
            return;
        };
        let id = self.hosts[node].id;
        let index = self.index;
        let Some(leader) = self.leader.as_mut() else {
            return;
        };
        // A stale report gets no answer; a delta onto one this leader
        // lacks gets the lease alone and a request for the full list.
        let running = match leader.reported.take(id, report) {
            Err(Refusal::Stale | Refusal::TooMany { .. }) => return,
            Err(Refusal::Resync) => None,
            Ok(running) => Some(running),
        };
        leader.leases.granted(id, now);
        let head = leader.head;
        let Some(running) = running else {
            let grant = Msg::Grant {
                life,
                req,
                seq: report.seq,
                resync: true,
                lease: LEASE,
                index,
                start: Vec::new(),
                stop: Vec::new(),
            };
            return self.send(End::Head(head), End::Node(node), grant);
        };
        let plan = reconcile::plan(
            &self.state,
            id,
            &running,
            seen,
            index,
            &mut self.deliveries[head],
            |_| false,
        );
        for (name, epoch) in &plan.restart {
            if let Some(new) = self.place(name, node, Some(*epoch)) {
                self.log(format!("n{node} lost {name}@{epoch}: restarted as @{new}"));
            }
        }
        let grant = Msg::Grant {
            life,
            req,
            seq: report.seq,
            resync: false,
            lease: LEASE,
            index,
            start: plan.start,
            stop: plan.stop,
        };
        self.send(End::Head(head), End::Node(node), grant);
    }

    /// Elections, then the leader's moves.
    pub(super) fn tick(&mut self) {
        let has_leader = self
            .leader
            .as_ref()
            .is_some_and(|l| self.heads_up[l.head] && self.quorum(l.head));
        if has_leader {
            self.leaderless_since = None;
        } else {
            let since = *self.leaderless_since.get_or_insert(self.now);
            if self.leader.as_ref().is_some_and(|l| !self.heads_up[l.head]) {
                self.leader = None;
            }
            if self.now >= since + ELECTION {
                if let Some(head) = (0..HEADS).find(|h| self.quorum(*h)) {
                    let mut leases = Leases::new(LEASE);
                    leases.became_leader(self.local(self.head_clocks[head]));
                    let reported = Reported::default();
                    self.log(format!("h{head} elected leader"));
                    // The old leader learns of the new term; the new one
                    // knows of no delivery.
                    if let Some(old) = self.leader.as_ref().map(|l| l.head) {
                        self.deliveries[old].clear();
                    }
                    self.deliveries[head].clear();
                    self.leader = Some(Leader {
                        head,
                        leases,
                        reported,
                    });
                    self.leaderless_since = None;
                }
            }
            return;
        }
        let Some(now) = self.leader_now() else {
            return;
        };
        let nodes: Vec<NodeId> = self.state.nodes_with_placements().collect();
        for id in nodes {
            let Some(from) = self.node_of(id) else {
                continue;
            };
            let Some(head) = self.leader.as_ref().map(|l| l.head) else {
                return;
            };
            // A probe finds a dead process's address refusing connections
            // (a cut-off one does not answer at all).
            let refuses =
                !self.hosts[from].alive && self.reachable(End::Head(head), End::Node(from));
            let Some(leader) = self.leader.as_mut() else {
                return;
            };
            if !leader.leases.expired(id, now) {
                if leader.leases.probe_due(id, now) && refuses {
                    leader.leases.mark_dead(id);
                    self.log(format!("crash evidence: n{from}"));
                }
                continue;
            }
            let placed: Vec<(String, u64)> = self
                .state
                .placed_on(id)
                .map(|(n, r)| (n.clone(), r.epoch))
                .collect();
            for (name, epoch) in placed {
                let Some(to) = self.target(Some(from)) else {
                    break;
                };
                if let Some(new) = self.place(&name, to, Some(epoch)) {
                    self.log(format!("moved {name}@{epoch} n{from} -> n{to} @{new}"));
                }
            }
        }
    }
}
