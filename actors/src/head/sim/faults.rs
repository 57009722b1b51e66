//! The faults a run injects until [`FAULTS`]: partitions, heals, node
//! crashes and restarts, head failures, message loss; then everything heals.

use super::*;

impl Sim {
    pub(super) fn fault(&mut self) {
        let next = Duration::from_millis(self.rng.random_range(300..3_000));
        if self.now >= FAULTS {
            // Everything heals and comes back.
            self.groups.iter_mut().for_each(|g| *g = 0);
            self.heads_up = [true; HEADS];
            self.loss = 0.0;
            for n in 0..self.hosts.len() {
                if !self.hosts[n].alive {
                    self.restart(n);
                }
            }
            self.log("faults stop: healed, everything up".to_owned());
            return;
        }
        match self.rng.random_range(0..10u8) {
            0..=2 => {
                // A partition: each end on one side or the other.
                for g in &mut self.groups {
                    *g = u8::from(self.rng.random_bool(0.35));
                }
                self.log(format!("partition {:?}", self.groups));
            }
            3 | 4 => {
                self.groups.iter_mut().for_each(|g| *g = 0);
                self.log("heal".to_owned());
            }
            5 => {
                let n = self.rng.random_range(0..self.hosts.len());
                if self.hosts[n].alive {
                    self.hosts[n].alive = false;
                    self.log(format!("n{n} crashes"));
                } else {
                    self.restart(n);
                }
            }
            6 => {
                let h = self.rng.random_range(0..HEADS);
                self.heads_up[h] = !self.heads_up[h];
                self.log(format!("h{h} up: {}", self.heads_up[h]));
            }
            7 => {
                self.loss = self.rng.random_range(0.0..0.3);
                self.log(format!("loss {:.2}", self.loss));
            }
            _ => {}
        }
        self.after(next, Event::Fault);
    }

    pub(super) fn restart(&mut self, n: usize) {
        let host = &mut self.hosts[n];
        host.alive = true;
        host.life += 1;
        host.fencing = Fencing::default();
        host.keeper = Keeper::default();
        host.reporter = Reporter::new(self.rng.random());
        host.pending = None;
        let life = host.life;
        self.log(format!("n{n} restarts (life {life})"));
        self.after(Duration::from_millis(10), Event::Renewal { node: n, life });
    }
}
