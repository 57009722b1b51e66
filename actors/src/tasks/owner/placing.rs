//! How the owner's book places tasks: the waiting classes, the policy's
//! choice for each, and the in-flight accounting per node that the policy
//! reads (what fits there now, what waits in its queue).

use std::collections::VecDeque;

use swarm_protocol::NodeId;

use super::{Class, Effects, Owner, Stage, MAX_PIPELINE, PIPELINE_MICROS};
use crate::placement::{Infeasible, ResourceSet};
use crate::tasks::error::TaskError;
use crate::tasks::policy::{self, Choice, Request};

impl Owner {
    /// Gives back what a task held on `node` in this owner's accounting.
    pub(super) fn returned(&mut self, node: NodeId, need: &ResourceSet, ahead: bool) {
        let count = self.outstanding.entry(node).or_default();
        *count = count.saturating_sub(1);
        let idle = *count == 0;
        if let Some(c) = self.nodes.iter_mut().find(|c| c.node == node) {
            if idle {
                c.used = ResourceSet::default();
                c.ahead = 0;
            } else if ahead || c.ahead > 0 {
                // A task queued there took the freed room.
                c.ahead = c.ahead.saturating_sub(1).min(MAX_PIPELINE);
            } else {
                c.used = c.used.minus(need);
            }
        }
    }

    pub(super) fn enqueue(&mut self, seq: u64) {
        let Some(task) = self.tasks.get(&seq) else {
            return;
        };
        let class = self
            .classes
            .iter_mut()
            .find(|c| c.need == task.spec.need && c.placement == task.placement);
        match class {
            Some(class) => class.queue.push_back(seq),
            None => self.classes.push(Class {
                need: task.spec.need.clone(),
                placement: task.placement.clone(),
                queue: VecDeque::from([seq]),
                reason: None,
            }),
        }
    }

    pub(super) fn unqueue(&mut self, seq: u64) {
        for class in &mut self.classes {
            class.queue.retain(|s| *s != seq);
        }
    }

    pub(super) fn place_class_of(&mut self, seq: u64, fx: &mut Effects) {
        let Some(task) = self.tasks.get(&seq) else {
            return;
        };
        let index = self
            .classes
            .iter()
            .position(|c| c.need == task.spec.need && c.placement == task.placement);
        if let Some(index) = index {
            self.place_class(index, fx);
        }
    }

    /// Sends every waiting task that has a node now.
    pub(crate) fn place_pending(&mut self, fx: &mut Effects) {
        for index in 0..self.classes.len() {
            self.place_class(index, fx);
        }
        self.classes.retain(|c| !c.queue.is_empty());
    }

    fn place_class(&mut self, index: usize, fx: &mut Effects) {
        loop {
            let Some(seq) = self
                .classes
                .get(index)
                .and_then(|c| c.queue.front().copied())
            else {
                return;
            };
            let Some(task) = self.tasks.get(&seq) else {
                if let Some(c) = self.classes.get_mut(index) {
                    c.queue.pop_front();
                }
                continue;
            };
            let pipeline = self.pipeline(&task.spec.tag);
            let near = self.objects.largest_location(&task.spec.args);
            self.roll = self.roll.rotate_left(13) ^ 0x9E37_79B9_7F4A_7C15;
            let request = Request {
                need: &task.spec.need,
                placement: task.placement.as_ref(),
                local: self.me,
                near,
                skip: &task.skip,
                pipeline,
            };
            let choice = policy::choose(&request, &self.nodes, self.policy, self.roll);
            match choice {
                Choice::Run(node) => {
                    if let Some(c) = self.classes.get_mut(index) {
                        c.queue.pop_front();
                        c.reason = None;
                    }
                    self.send(seq, node, fx);
                }
                Choice::Wait { reason } => {
                    if let Some(c) = self.classes.get_mut(index) {
                        c.reason = Some(reason);
                    }
                    return;
                }
                Choice::Unschedulable { cause } => {
                    if let Some(c) = self.classes.get_mut(index) {
                        c.queue.pop_front();
                    }
                    let skipped = task.skip.len();
                    let error = if skipped > 0 && cause == Infeasible::HandedBack {
                        TaskError::Unregistered {
                            function: task.spec.tag.clone(),
                        }
                    } else {
                        TaskError::Unschedulable { cause }
                    };
                    self.end(seq, Err(error), fx);
                }
            }
        }
    }

    /// How many tasks of `tag` may wait in a node's queue.
    fn pipeline(&self, tag: &str) -> usize {
        match self.runtime.get(tag) {
            // Not run yet: one, until its run time is known.
            None => 1,
            Some(micros) => {
                let depth = PIPELINE_MICROS / micros.max(1.0);
                (depth as usize).clamp(1, MAX_PIPELINE)
            }
        }
    }

    fn send(&mut self, seq: u64, node: NodeId, fx: &mut Effects) {
        let Some(task) = self.tasks.get_mut(&seq) else {
            return;
        };
        let Some(c) = self.nodes.iter_mut().find(|c| c.node == node) else {
            return;
        };
        let fits = task.spec.need.fits_in(&c.total.minus(&c.used));
        if fits {
            c.used = c.used.plus(&task.spec.need);
        } else {
            c.ahead += 1;
        }
        *self.outstanding.entry(node).or_default() += 1;
        task.state = Stage::Sent { node, ahead: !fits };
        let mut spec = task.spec.clone();
        self.objects.locate_args(&mut spec.args);
        fx.run.entry(node).or_default().push(spec);
    }
}
