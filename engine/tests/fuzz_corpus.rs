//! Replays the `raft_step` fuzz corpus (fuzz/corpus/raft_step) through the same entry point
//! the fuzz target uses, plus a few thousand seeded random inputs, so that CI re-checks every
//! input the fuzzer found interesting: the replica must never panic.

use std::path::Path;

use flotilla::raft::fuzzing::drive;

#[test]
fn the_raft_step_corpus_never_panics() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/raft_step");
    let mut files = 0;
    for entry in std::fs::read_dir(&corpus).expect("the corpus directory exists") {
        let path = entry.expect("readable directory entry").path();
        let data = std::fs::read(&path).expect("readable corpus file");
        drive(&data);
        files += 1;
    }
    assert!(files > 0, "empty corpus at {}", corpus.display());
}

#[test]
fn seeded_random_inputs_never_panic() {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut taken = 0;
    for _ in 0..3000 {
        let len = usize::try_from(next() % 600).expect("small");
        let data: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
        taken += drive(&data);
    }
    assert!(
        taken > 0,
        "no message was ever taken: the decoder is not reaching the replica"
    );
}
