//! Criterion micro benches of `swarm-protocol` (no sockets): frames,
//! envelopes, record packing, Noise seal/open, and operator capabilities. The cluster benchmark is
//! `swarm bench link`.

use criterion::{criterion_group, criterion_main};

mod suites;

criterion_group!(
    benches,
    suites::bench_frame,
    suites::bench_envelope,
    suites::bench_pack,
    suites::bench_noise,
    suites::bench_capability
);
criterion_main!(benches);
