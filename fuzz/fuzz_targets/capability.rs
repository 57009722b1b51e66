//! Fuzz target: operator capabilities: verify, and claims decode, sign, open.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    swarm_protocol::fuzzing::capability(data);
});
