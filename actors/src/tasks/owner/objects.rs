//! The kept results a node owns (Ray's ownership rule): where each is,
//! who still needs it (its `TaskRef` handles and the tasks that take it),
//! and who waits for it. When nobody needs one any more, the node that
//! holds it is told to drop it. The value itself never comes here.

use std::collections::HashMap;

use swarm_protocol::NodeId;
use tokio::sync::oneshot;

use super::Effects;
use crate::tasks::error::TaskError;
use crate::tasks::wire::{Arg, ObjectId, TaskId, Token};

/// Where a kept result stands.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ObjectState {
    /// Its task has not ended yet.
    Pending,
    /// On `node`, `size` bytes.
    Ready {
        /// Where it is.
        node: NodeId,
        /// Its encoded size.
        size: u64,
    },
    /// Its task failed, or its node died.
    Failed(TaskError),
}

/// Someone waiting for a kept result to be ready.
pub(crate) type Waiter = oneshot::Sender<Result<(ObjectId, u64), TaskError>>;

struct Object {
    state: ObjectState,
    /// A `TaskRef` handle (and its clones) is alive.
    held: bool,
    /// Tasks not yet ended that take it.
    uses: usize,
    /// Tasks waiting for it before they can be placed.
    dependents: Vec<u64>,
    /// Callers of `TaskRef::get` and `ready`.
    waiters: Vec<Waiter>,
    /// Its read capability: sent with the task that makes it, and with
    /// each task that takes it, to no one else.
    token: Token,
}

/// The table, keyed by the number of the task that makes the result.
pub(crate) struct Objects {
    /// The owner (this node).
    me: NodeId,
    map: HashMap<u64, Object>,
}

impl Objects {
    pub(crate) fn new(me: NodeId) -> Self {
        Self {
            me,
            map: HashMap::new(),
        }
    }

    /// A kept result of task `seq`, about to be made, held by one handle;
    /// answers its read token (for the task that makes it).
    pub(crate) fn create(&mut self, seq: u64) -> Token {
        let token = Token::mint();
        self.map.insert(
            seq,
            Object {
                state: ObjectState::Pending,
                held: true,
                uses: 0,
                dependents: Vec::new(),
                waiters: Vec::new(),
                token,
            },
        );
        token
    }

    /// Where the kept result of `seq` stands (`None`: freed or unknown).
    pub(crate) fn state(&self, seq: u64) -> Option<&ObjectState> {
        self.map.get(&seq).map(|o| &o.state)
    }

    /// Task `user` takes the kept result of `seq`.
    pub(crate) fn use_by(&mut self, seq: u64, user: u64) {
        if let Some(o) = self.map.get_mut(&seq) {
            o.uses += 1;
            if o.state == ObjectState::Pending {
                o.dependents.push(user);
            }
        }
    }

    /// A task that took the kept result of `seq` ended.
    pub(crate) fn unuse(&mut self, seq: u64, fx: &mut Effects) {
        if let Some(o) = self.map.get_mut(&seq) {
            o.uses = o.uses.saturating_sub(1);
        }
        self.maybe_free(seq, fx);
    }

    /// The last handle was dropped.
    pub(crate) fn release(&mut self, seq: u64, fx: &mut Effects) {
        if let Some(o) = self.map.get_mut(&seq) {
            o.held = false;
        }
        self.maybe_free(seq, fx);
    }

    /// The task ended and its result is kept on `node`.
    pub(crate) fn ready(&mut self, seq: u64, node: NodeId, size: u64, fx: &mut Effects) {
        let Some(o) = self.map.get_mut(&seq) else {
            // Nobody needs it any more: drop it where it is.
            fx.free.entry(node).or_default().push(seq);
            return;
        };
        o.state = ObjectState::Ready { node, size };
        let id = ObjectId {
            task: TaskId {
                owner: self.me,
                seq,
            },
            node,
            token: Token::default(),
        };
        for waiter in o.waiters.drain(..) {
            let _ = waiter.send(Ok((id, size)));
        }
        self.maybe_free(seq, fx);
    }

    /// The task failed: its kept result never comes.
    pub(crate) fn fail(&mut self, seq: u64, error: TaskError, fx: &mut Effects) {
        if let Some(o) = self.map.get_mut(&seq) {
            for waiter in o.waiters.drain(..) {
                let _ = waiter.send(Err(error.clone()));
            }
            o.state = ObjectState::Failed(error);
        }
        self.maybe_free(seq, fx);
    }

    /// The tasks that waited for `seq` (each told once).
    pub(crate) fn take_dependents(&mut self, seq: u64) -> Vec<u64> {
        self.map
            .get_mut(&seq)
            .map(|o| std::mem::take(&mut o.dependents))
            .unwrap_or_default()
    }

    /// `node` died: every result kept there is lost. Returns them, with the
    /// error their dependents get.
    pub(crate) fn lost_on(&mut self, node: NodeId) -> Vec<(u64, TaskError)> {
        let me = self.me;
        let mut lost = Vec::new();
        for (seq, o) in &mut self.map {
            if matches!(o.state, ObjectState::Ready { node: n, .. } if n == node) {
                let error = TaskError::ObjectLost {
                    task: TaskId {
                        owner: me,
                        seq: *seq,
                    },
                    node,
                };
                o.state = ObjectState::Failed(error.clone());
                lost.push((*seq, error));
            }
        }
        lost
    }

    /// Waits for the kept result of `seq` (answered at once if it is
    /// ready, failed or unknown).
    pub(crate) fn wait(&mut self, seq: u64, waiter: Waiter) {
        let me = self.me;
        let Some(o) = self.map.get_mut(&seq) else {
            let _ = waiter.send(Err(TaskError::ObjectLost {
                task: TaskId { owner: me, seq },
                node: me,
            }));
            return;
        };
        match &o.state {
            ObjectState::Pending => o.waiters.push(waiter),
            ObjectState::Ready { node, size } => {
                let id = ObjectId {
                    task: TaskId { owner: me, seq },
                    node: *node,
                    token: Token::default(),
                };
                let _ = waiter.send(Ok((id, *size)));
            }
            ObjectState::Failed(e) => {
                let _ = waiter.send(Err(e.clone()));
            }
        }
    }

    /// Fills in where each kept argument is, and its read token: the
    /// node the task goes to may read it (and only for that task's sake).
    pub(crate) fn locate_args(&self, args: &mut [Arg]) {
        for arg in args {
            if let Arg::Ref(object) = arg {
                if object.task.owner != self.me {
                    continue;
                }
                if let Some(o) = self.map.get(&object.task.seq) {
                    if let ObjectState::Ready { node, .. } = o.state {
                        object.node = node;
                        object.token = o.token;
                    }
                }
            }
        }
    }

    /// The node holding the largest kept argument among `args`.
    pub(crate) fn largest_location(&self, args: &[Arg]) -> Option<NodeId> {
        args.iter()
            .filter_map(|a| match a {
                Arg::Ref(object) => match self.state(object.task.seq) {
                    Some(ObjectState::Ready { node, size }) => Some((*size, *node)),
                    _ => None,
                },
                Arg::Value(_) => None,
            })
            .max_by_key(|(size, _)| *size)
            .map(|(_, node)| node)
    }

    /// Drops the entry once nothing needs it, telling its node.
    fn maybe_free(&mut self, seq: u64, fx: &mut Effects) {
        let Some(o) = self.map.get(&seq) else {
            return;
        };
        if o.held || o.uses > 0 || o.state == ObjectState::Pending {
            return;
        }
        if let ObjectState::Ready { node, .. } = o.state {
            fx.free.entry(node).or_default().push(seq);
        }
        self.map.remove(&seq);
    }
}
