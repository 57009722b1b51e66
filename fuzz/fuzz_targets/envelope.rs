//! Fuzz target: One envelope; a decoded envelope must re-encode to an equal one.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    swarm_protocol::fuzzing::envelope(data);
});
