//! Fuzz target: Certificates: decode, re-encode, verify.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    swarm_protocol::fuzzing::certificate(data);
});
