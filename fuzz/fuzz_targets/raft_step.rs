//! Fuzz target: one Raft replica driven by arbitrary messages, ticks, proposals, reads,
//! transfers and persistence acknowledgements (`flotilla::raft::fuzzing::drive`). It must
//! never panic. Its corpus is replayed by `engine/tests/fuzz_corpus.rs` in the normal test run.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    flotilla::raft::fuzzing::drive(data);
});
