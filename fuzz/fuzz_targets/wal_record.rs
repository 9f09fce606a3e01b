//! Fuzz target: the WAL record decoder (header, crc, body operations) on arbitrary bytes.
//! It must return an error, never panic, hang or allocate in proportion to a length field.
//! Its corpus is replayed by `wal/tests/fuzz_corpus.rs` in the normal test run.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    flotilla_wal::fuzzing::decode_any(data);
});
