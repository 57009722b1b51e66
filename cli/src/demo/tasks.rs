//! The demo's tasks: every `swarm` node registers them, so tests, the
//! bench and the examples can run them anywhere. Each says where it ran.

use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;
use swarm_actors::tasks::{context, Bytes, Tasks};
use swarm_protocol::NodeId;

/// The node the calling task runs on.
fn here() -> Option<NodeId> {
    context().map(|c| c.node())
}

swarm_actors::task!("demo.noop", pub fn noop() {});

swarm_actors::task!(
    "demo.square",
    pub fn square(x: u64) -> u64 {
        x * x
    }
);

swarm_actors::task!(
    "demo.add",
    pub fn add(a: u64, b: u64) -> u64 {
        a + b
    }
);

swarm_actors::task!(
    "demo.where_am_i",
    pub fn where_am_i() -> Option<NodeId> {
        here()
    }
);

swarm_actors::task!(
    "demo.spin",
    /// Holds its task thread for `ms` milliseconds without using a CPU (it
    /// sleeps, checking for cancellation every millisecond); answers where
    /// it ran, or fails if cancelled. For CPU work, see [`churn`].
    pub fn spin(ms: u64) -> Result<Option<NodeId>, String> {
        spin_for(ms)
    }
);

swarm_actors::task!(
    "demo.churn",
    /// A fixed amount of CPU work: `rounds` rounds of [`churn_rounds`]
    /// (checking for cancellation every 65,536 rounds); answers the mixed
    /// value, or fails if cancelled.
    pub fn churn(rounds: u64) -> Result<u64, String> {
        let mut x = 0;
        let mut done = 0;
        while done < rounds {
            if context().is_some_and(|c| c.is_cancelled()) {
                return Err("cancelled".to_owned());
            }
            let step = (rounds - done).min(CHURN_CHUNK);
            x ^= churn_rounds(x, step);
            done += step;
        }
        Ok(x)
    }
);

/// `rounds` rounds of SplitMix64 from `seed`: CPU work with no memory
/// traffic, each round depending on the one before (the compiler cannot
/// shorten it). Its time on one core is what a [`churn`] task costs.
pub fn churn_rounds(seed: u64, rounds: u64) -> u64 {
    let mut x = seed;
    for _ in 0..std::hint::black_box(rounds) {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x = z ^ (z >> 31);
    }
    x
}

fn spin_for(ms: u64) -> Result<Option<NodeId>, String> {
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until {
        if context().is_some_and(|c| c.is_cancelled()) {
            return Err("cancelled".to_owned());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(here())
}

swarm_actors::task!(
    "demo.nap",
    pub async fn nap(ms: u64) -> Option<NodeId> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        here()
    }
);

swarm_actors::task!(
    "demo.fail",
    pub fn fail(message: String) -> Result<(), String> {
        Err(message)
    }
);

swarm_actors::task!(
    "demo.flaky",
    /// Fails on its first `failures` runs, then answers its run number.
    pub fn flaky(failures: u32) -> Result<u32, String> {
        let attempt = context().map_or(0, |c| c.attempt());
        if attempt < failures {
            Err(format!("run {attempt} fails"))
        } else {
            Ok(attempt)
        }
    }
);

swarm_actors::task!(
    "demo.stall",
    /// Works for `ms` milliseconds on its first run only (a retry answers
    /// at once); answers where it ran.
    pub fn stall(ms: u64) -> Result<Option<NodeId>, String> {
        if context().is_some_and(|c| c.attempt() > 0) {
            return Ok(here());
        }
        spin_for(ms)
    }
);

swarm_actors::task!(
    "demo.size_of",
    /// The length of `data` (it has been moved here whole, and is read
    /// where it arrived, without a copy).
    pub fn size_of(data: Bytes) -> u64 {
        data.len() as u64
    }
);

swarm_actors::task!(
    "demo.boom",
    pub fn boom() -> u64 {
        panic!("boom")
    }
);

swarm_actors::task!(
    "demo.gpu_ids",
    pub fn gpu_ids() -> Vec<u32> {
        context().map(|c| c.gpu_ids().to_vec()).unwrap_or_default()
    }
);

swarm_actors::task!(
    "demo.blob",
    /// `size` bytes (a pattern), to keep and pass by reference.
    pub fn blob(size: u64) -> ByteBuf {
        ByteBuf::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
    }
);

swarm_actors::task!(
    "demo.count_bytes",
    /// The length of `data` and a checksum, and where it was counted.
    pub fn count_bytes(data: ByteBuf) -> (u64, u64, Option<NodeId>) {
        let sum = data.iter().map(|b| u64::from(*b)).sum();
        (data.len() as u64, sum, here())
    }
);

/// Registers every demo task on a node's scheduler.
pub fn register(tasks: &Tasks) {
    tasks.register(noop);
    tasks.register(square);
    tasks.register(add);
    tasks.register(where_am_i);
    tasks.register(spin);
    tasks.register(churn);
    tasks.register(nap);
    tasks.register(fail);
    tasks.register(flaky);
    tasks.register(stall);
    tasks.register(size_of);
    tasks.register(boom);
    tasks.register(gpu_ids);
    tasks.register(blob);
    tasks.register(count_bytes);
}

/// Rounds [`churn`] runs between two looks at cancellation.
const CHURN_CHUNK: u64 = 1 << 16;
