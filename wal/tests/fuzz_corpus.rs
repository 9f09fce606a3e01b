//! Replays the corpus of the `wal_record` fuzz target (fuzz/corpus/wal_record) through the
//! same entry point the fuzzer drives, plus seeds built here from valid batches and their
//! truncations and bit flips. A crash the fuzzer finds is added to the corpus and so
//! becomes a regression test here.
//!
//! `WAL_WRITE_FUZZ_SEEDS=1` writes the built seeds into the corpus directory.

#![allow(
    clippy::unwrap_used,
    reason = "integration tests fail by panicking, helpers included"
)]

use std::fs;
use std::path::PathBuf;

use flotilla_wal::format::{RECORD_HEADER_BYTES, RecordHeader};
use flotilla_wal::{GroupId, HardState, LogIndex, Lsn, Term, WriteBatch};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/wal_record")
}

/// Valid records of a few shapes.
fn seeds() -> Vec<Vec<u8>> {
    let mut batches = Vec::new();
    let mut one = WriteBatch::new();
    one.add_entry(GroupId(1), LogIndex(1), Term(1), b"hi");
    batches.push(one);
    let mut mixed = WriteBatch::new();
    for group in 1..4 {
        for index in 1..4 {
            mixed.add_entry(
                GroupId(group),
                LogIndex(index),
                Term(index),
                &[group as u8; 7],
            );
        }
        mixed.set_hard_state(
            GroupId(group),
            HardState {
                term: Term(3),
                vote: 1,
                commit: LogIndex(2),
            },
        );
    }
    mixed.truncate(GroupId(2), LogIndex(2));
    mixed.compact(GroupId(3), LogIndex(1));
    mixed.drop_group(GroupId(1));
    batches.push(mixed);
    // Appends only: indexed in one pass, and applied a second time (which the first run
    // refuses after the hard state took effect) to exercise taking a batch back.
    let mut appends = WriteBatch::new();
    let hard_state = HardState {
        term: Term(2),
        vote: 3,
        commit: LogIndex(1),
    };
    appends.set_hard_state(GroupId(5), hard_state);
    for index in 1..4 {
        appends.add_entry(GroupId(1), LogIndex(index), Term(2), b"abc");
    }
    appends.set_hard_state(GroupId(1), hard_state);
    appends.add_entry(GroupId(2), LogIndex(1), Term(1), b"d");
    batches.push(appends);
    let mut empty_payloads = WriteBatch::new();
    for index in 1..20 {
        empty_payloads.add_entry(GroupId(9), LogIndex(index), Term(1), b"");
    }
    batches.push(empty_payloads);

    batches
        .iter()
        .enumerate()
        .map(|(k, batch)| {
            let body = batch.body();
            let mut record = vec![0u8; RECORD_HEADER_BYTES + body.len()];
            record[RECORD_HEADER_BYTES..].copy_from_slice(body);
            let (header, body) = record.split_at_mut(RECORD_HEADER_BYTES);
            RecordHeader::encode_into(header, 1, Lsn(k as u64 + 1), Lsn(k as u64), body);
            record
        })
        .collect()
}

#[test]
fn corpus_and_seeds_decode_without_panics() {
    let seeds = seeds();
    if std::env::var("WAL_WRITE_FUZZ_SEEDS").is_ok() {
        fs::create_dir_all(corpus_dir()).unwrap();
        for (k, seed) in seeds.iter().enumerate() {
            fs::write(corpus_dir().join(format!("seed-record-{k}")), seed).unwrap();
            fs::write(
                corpus_dir().join(format!("seed-body-{k}")),
                &seed[RECORD_HEADER_BYTES..],
            )
            .unwrap();
        }
    }
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for seed in &seeds {
        assert!(
            flotilla_wal::fuzzing::decode_any(seed) > 0,
            "a valid seed decodes"
        );
        for cut in 0..seed.len() {
            inputs.push(seed[..cut].to_vec());
        }
        for bit in 0..seed.len() * 8 {
            let mut flipped = seed.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            inputs.push(flipped);
        }
    }
    let mut files = 0;
    for entry in fs::read_dir(corpus_dir()).unwrap() {
        inputs.push(fs::read(entry.unwrap().path()).unwrap());
        files += 1;
    }
    assert!(
        files >= 6,
        "the fuzz corpus at {} is missing",
        corpus_dir().display()
    );
    for input in &inputs {
        flotilla_wal::fuzzing::decode_any(input);
    }
}
