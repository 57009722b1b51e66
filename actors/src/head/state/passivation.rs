//! Passivation in the replicated state: a placed actor recorded passive
//! on its node's report (`Command::Passivate`).

use swarm_protocol::NodeId;

use super::{ActorRecord, Applied, ControlState, RecordState};

impl ControlState {
    /// Records `name` passive if its record places `epoch` on `node`:
    /// `Stale` for another epoch (a replayed or overtaken report),
    /// `NotOwner` for another node (a forged one) or a record not placed.
    pub(super) fn passivate(&mut self, name: &str, epoch: u64, node: NodeId) -> Applied {
        let Some(record) = self.actors.get(name) else {
            return Applied::Unknown;
        };
        if record.epoch != epoch {
            return Applied::Stale;
        }
        if record.node != node || record.state != RecordState::Placed {
            return Applied::NotOwner;
        }
        let record = ActorRecord::clone(record);
        self.release(name, &record);
        if let Some(record) = self.actors.get_mut(name) {
            record.state = RecordState::Passive;
        }
        Applied::Done
    }
}
