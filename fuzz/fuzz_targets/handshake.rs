//! Fuzz target: Handshake payloads, and arbitrary bytes fed to a responder and an initiator.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    swarm_protocol::fuzzing::handshake(data);
});
