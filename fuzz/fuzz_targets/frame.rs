//! Fuzz target: Frames, then records and envelopes inside them, as a link decodes them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    swarm_protocol::fuzzing::frame(data);
});
