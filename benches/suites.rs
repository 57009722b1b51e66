//! The bench suites, one function per area; groups are named `area/case`
//! and parameterized by payload size. Throughput is in decimal units
//! (MB/s = 10^6 bytes per second), as every `_mb_per_s` figure.

use std::sync::Arc;

use criterion::{black_box, BenchmarkId, Criterion, Throughput};
use swarm::credentials::Throwaway;
use swarm::protocol::envelope::encode_request;
use swarm::protocol::{
    decode_frame, encode_frame, Envelope, Established, Handshake, Packer, Target, MAX_RECORD,
};

const SIZES: [usize; 3] = [64, 1024, 16 * 1024];

pub fn bench_frame(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame/decode");
    for size in [64, 1024, MAX_RECORD] {
        let mut wire = Vec::new();
        encode_frame(&vec![1u8; size], 65_535, &mut wire).unwrap();
        group.throughput(Throughput::BytesDecimal(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &wire, |b, wire| {
            b.iter(|| decode_frame(black_box(wire), 65_535).unwrap())
        });
    }
    group.finish();
}

pub fn bench_envelope(c: &mut Criterion) {
    let mut group = c.benchmark_group("envelope/encode");
    for size in SIZES {
        let body = vec![3u8; size];
        group.throughput(Throughput::BytesDecimal(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &body, |b, body| {
            let mut out = Vec::with_capacity(size + 64);
            b.iter(|| {
                out.clear();
                encode_request(
                    &mut out,
                    Some(7),
                    Target::Name("adder"),
                    "example.Add",
                    |o| {
                        o.extend_from_slice(body);
                        Ok(())
                    },
                )
                .unwrap();
                black_box(&out);
            })
        });
    }
    group.finish();
    let mut group = c.benchmark_group("envelope/decode");
    for size in SIZES {
        let mut wire = Vec::new();
        Envelope::Ask {
            correlation: 7,
            to: Target::Name("adder"),
            tag: "example.Add",
            body: &vec![3u8; size],
        }
        .encode(&mut wire);
        group.throughput(Throughput::BytesDecimal(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &wire, |b, wire| {
            b.iter(|| Envelope::decode(black_box(wire)).unwrap())
        });
    }
    group.finish();
}

pub fn bench_pack(c: &mut Criterion) {
    let mut group = c.benchmark_group("record/pack_batch_of_64");
    for size in [64, 1024] {
        let mut env = Vec::new();
        Envelope::Tell {
            to: Target::Name("counter"),
            tag: "demo.Bump",
            body: &vec![0u8; size],
        }
        .encode(&mut env);
        group.throughput(Throughput::BytesDecimal((size * 64) as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &env, |b, env| {
            let mut packer = Packer::new();
            let mut records = 0usize;
            b.iter(|| {
                let mut emit = |r: &[u8]| -> Result<(), ()> {
                    records += r.len();
                    Ok(())
                };
                for _ in 0..64 {
                    packer.push(env, &mut emit).unwrap();
                }
                packer.flush(&mut emit).unwrap();
            });
            black_box(records);
        });
    }
    group.finish();
}

pub fn bench_noise(c: &mut Criterion) {
    let (mut a, mut b) = established_pair();
    let mut group = c.benchmark_group("noise/seal_open");
    for size in [64, 1024, MAX_RECORD] {
        let plain = vec![9u8; size];
        group.throughput(Throughput::BytesDecimal(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &plain, |bench, plain| {
            let mut wire = Vec::with_capacity(size + 32);
            let mut opened = Vec::with_capacity(size + 32);
            bench.iter(|| {
                wire.clear();
                a.sender.seal_frame(plain, &mut wire).unwrap();
                let n = b.receiver.open(&wire[4..], &mut opened).unwrap().len();
                black_box(n);
            })
        });
    }
    group.finish();
}

/// Two sessions that completed a real handshake in memory.
fn established_pair() -> (Established, Established) {
    let ca = Throwaway::new("bench");
    let mut i = Handshake::initiator(Arc::new(ca.node("a", &[]))).unwrap();
    let mut r = Handshake::responder(Arc::new(ca.node("b", &[]))).unwrap();
    let now = swarm::credentials::unix_now();
    while !(i.is_established() && r.is_established()) {
        while let Some(f) = i.poll_transmit() {
            r.handle_frame(&f[4..], now).unwrap();
        }
        while let Some(f) = r.poll_transmit() {
            i.handle_frame(&f[4..], now).unwrap();
        }
    }
    (i.into_established().unwrap(), r.into_established().unwrap())
}

/// An operator capability: what a node pays per delegated call to verify
/// one (ed25519 signature, window, claims), and the head's cost to sign.
pub fn bench_capability(c: &mut Criterion) {
    use swarm::protocol::capability::{CapabilityKey, Claims};

    let key = CapabilityKey::from_seed(&[7; 32]);
    let claims = Claims {
        name: "alice".into(),
        serial: 42,
        node: swarm::NodeId::from_bytes([3; 16]),
        roles: vec!["operator".into(), "admin".into()],
        source: std::net::IpAddr::from([127, 0, 0, 1]),
        term: 3,
        issued_ms: 1_000_000,
        expires_ms: 1_000_000 + 60_000,
        delegate: Some(swarm::NodeId::from_bytes([4; 16])),
    };
    let capability = key.sign(&claims).unwrap();
    let public = key.public();
    let mut group = c.benchmark_group("capability");
    group.throughput(Throughput::BytesDecimal(capability.as_bytes().len() as u64));
    group.bench_function("open", |b| {
        b.iter(|| {
            black_box(&capability)
                .open_checked(&public, 1_000_001)
                .unwrap()
        })
    });
    group.bench_function("sign", |b| b.iter(|| key.sign(black_box(&claims)).unwrap()));
    group.finish();
}
