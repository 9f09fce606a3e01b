//! Fuzz target: the transport's frame decoder (header checks, body crc, handshake bodies)
//! and rkyv validation of the archived message batch, then a walk over every field.
//! It must return, never panic, hang or allocate in proportion to a length field.
//! Its corpus is replayed by `net/tests/fuzz_corpus.rs` in the normal test run.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    flotilla_net::fuzzing::decode_frame(data);
});
