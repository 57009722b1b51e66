//! Fuzz target: gossip datagrams: opening, foca messages in our codec, and metadata items.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    swarm_protocol::fuzzing::gossip(data);
});
