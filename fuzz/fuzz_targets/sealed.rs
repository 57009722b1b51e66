//! Fuzz target: sealed files and keyrings: parse, open, seal round trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    swarm_protocol::fuzzing::sealed(data);
});
