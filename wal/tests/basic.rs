//! Behaviour of the log through its public API: append, read, reopen, rotate, collect, and
//! the clear errors for bad input.

#![allow(
    clippy::unwrap_used,
    reason = "integration tests fail by panicking, helpers included"
)]

mod common;

use std::fs;

use common::payload;
use flotilla_wal::{
    AppendError, GroupId, HardState, LogIndex, Lsn, OpenError, ReadError, Term, Wal, WalOptions,
    WriteBatch,
};

fn small() -> WalOptions {
    WalOptions {
        segment_size_bytes: 64 << 10,
        ..WalOptions::default()
    }
}

fn append(wal: &mut Wal, group: u64, from: u64, count: u64, len: usize) -> Lsn {
    let mut batch = WriteBatch::new();
    for index in from..from + count {
        batch.add_entry(
            GroupId(group),
            LogIndex(index),
            Term(1),
            &payload(GroupId(group), LogIndex(index), len),
        );
    }
    wal.append_durable(&batch).unwrap()
}

#[test]
fn entries_and_hard_states_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let hard_state = HardState {
        term: Term(4),
        vote: 2,
        commit: LogIndex(3),
    };
    {
        let (mut wal, report) = Wal::open(dir.path(), small()).unwrap();
        assert_eq!(report.records, 0);
        let mut batch = WriteBatch::new();
        for group in 1..=3 {
            for index in 1..=5 {
                batch.add_entry(
                    GroupId(group),
                    LogIndex(index),
                    Term(1),
                    &payload(GroupId(group), LogIndex(index), 10),
                );
            }
        }
        batch.set_hard_state(GroupId(2), hard_state);
        let lsn = wal.submit(&batch).unwrap();
        assert_eq!(lsn, Lsn(1));
        // Readable before it is durable.
        assert_eq!(
            wal.entries(GroupId(1), LogIndex(1), LogIndex(6))
                .unwrap()
                .len(),
            5
        );
        wal.wait_durable(lsn).unwrap();
        assert_eq!(wal.durable_lsn(), Lsn(1));
        wal.close().unwrap();
    }
    let (wal, report) = Wal::open(dir.path(), small()).unwrap();
    assert_eq!(report.records, 1);
    assert_eq!(report.entries, 15);
    assert_eq!(report.torn_tail, None);
    for group in 1..=3 {
        let entries = wal
            .entries(GroupId(group), LogIndex(1), LogIndex(6))
            .unwrap();
        for entry in entries {
            assert_eq!(entry.payload, payload(GroupId(group), entry.index, 10));
        }
    }
    assert_eq!(wal.group(GroupId(2)).unwrap().hard_state, Some(hard_state));
    assert_eq!(wal.group(GroupId(1)).unwrap().hard_state, None);
}

#[test]
fn many_segments_rotate_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open(dir.path(), small()).unwrap();
        for round in 0..200 {
            append(&mut wal, 1, round * 10 + 1, 10, 100);
        }
        assert!(wal.stats().rotations >= 3, "{:?}", wal.stats());
        wal.close().unwrap();
    }
    let (wal, report) = Wal::open(dir.path(), small()).unwrap();
    assert!(report.segments >= 4);
    let entries = wal
        .entries(GroupId(1), LogIndex(1), LogIndex(2001))
        .unwrap();
    assert_eq!(entries.len(), 2000);
    for entry in &entries {
        assert_eq!(entry.payload, payload(GroupId(1), entry.index, 100));
    }
}

#[test]
fn pipelined_submits_are_grouped_into_fewer_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let mut last = Lsn(0);
    for round in 0..200 {
        let mut batch = WriteBatch::new();
        batch.add_entry(GroupId(1), LogIndex(round + 1), Term(1), b"x");
        last = wal.submit(&batch).unwrap();
        wal.poll().unwrap();
    }
    wal.wait_durable(last).unwrap();
    assert_eq!(wal.durable_lsn(), Lsn(200));
    let syncs = wal.stats().syncs;
    assert!((1..200).contains(&syncs), "200 submits took {syncs} syncs");
}

#[test]
fn invalid_batches_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), small()).unwrap();
    append(&mut wal, 1, 1, 3, 8);
    let mut gap = WriteBatch::new();
    gap.add_entry(GroupId(1), LogIndex(5), Term(1), b"gap");
    let err = wal.submit(&gap).unwrap_err();
    assert!(
        matches!(
            err,
            AppendError::InvalidBatch {
                group: GroupId(1),
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("does not follow the last index 3"),
        "{err}"
    );

    let mut start = WriteBatch::new();
    start.add_entry(GroupId(2), LogIndex(7), Term(1), b"x");
    assert!(matches!(
        wal.submit(&start),
        Err(AppendError::InvalidBatch {
            group: GroupId(2),
            ..
        })
    ));

    let mut compact_then_truncate = WriteBatch::new();
    compact_then_truncate.compact(GroupId(1), LogIndex(2));
    compact_then_truncate.truncate(GroupId(1), LogIndex(2));
    assert!(wal.submit(&compact_then_truncate).is_err());

    let too_large = vec![7u8; 70 << 10];
    let mut big = WriteBatch::new();
    big.add_entry(GroupId(1), LogIndex(4), Term(1), &too_large);
    assert!(matches!(
        wal.submit(&big),
        Err(AppendError::TooLarge { .. })
    ));

    // The log is still usable and unchanged.
    assert_eq!(wal.group(GroupId(1)).unwrap().last_index, LogIndex(3));
    assert_eq!(wal.group(GroupId(2)), None);
    append(&mut wal, 1, 4, 1, 8);
    assert_eq!(wal.submitted_lsn(), Lsn(2));
}

#[test]
fn truncate_then_overwrite_and_compact() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open(dir.path(), small()).unwrap();
        append(&mut wal, 1, 1, 10, 8);
        let mut batch = WriteBatch::new();
        batch.truncate(GroupId(1), LogIndex(6));
        batch.add_entry(GroupId(1), LogIndex(6), Term(2), b"new six");
        batch.compact(GroupId(1), LogIndex(3));
        wal.append_durable(&batch).unwrap();
        wal.close().unwrap();
    }
    let (wal, _) = Wal::open(dir.path(), small()).unwrap();
    let state = wal.group(GroupId(1)).unwrap();
    assert_eq!(
        (state.first_index, state.last_index),
        (LogIndex(4), LogIndex(6))
    );
    assert_eq!(wal.term(GroupId(1), LogIndex(6)).unwrap(), Term(2));
    assert_eq!(
        wal.entries(GroupId(1), LogIndex(6), LogIndex(7)).unwrap()[0].payload,
        b"new six"
    );
    assert_eq!(
        wal.term(GroupId(1), LogIndex(3)),
        Err(ReadError::Compacted {
            group: GroupId(1),
            index: LogIndex(3),
            first: LogIndex(4)
        })
    );
    assert_eq!(
        wal.term(GroupId(1), LogIndex(7)),
        Err(ReadError::Unavailable {
            group: GroupId(1),
            index: LogIndex(7),
            last: LogIndex(6)
        })
    );
    assert_eq!(
        wal.term(GroupId(9), LogIndex(1)),
        Err(ReadError::UnknownGroup(GroupId(9)))
    );
}

#[test]
fn garbage_collection_deletes_compacted_segments_and_keeps_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let hard_state = HardState {
        term: Term(9),
        vote: 3,
        commit: LogIndex(1),
    };
    {
        let (mut wal, _) = Wal::open(dir.path(), small()).unwrap();
        // Group 2 writes its hard state once, early, and then stays idle.
        let mut batch = WriteBatch::new();
        batch.set_hard_state(GroupId(2), hard_state);
        wal.append_durable(&batch).unwrap();
        for round in 0..100 {
            append(&mut wal, 1, round * 10 + 1, 10, 100);
        }
        let before = wal.stats().rotations + 1;
        // Group 1 compacts everything but its last entry.
        let mut compact = WriteBatch::new();
        compact.compact(GroupId(1), LogIndex(999));
        wal.append_durable(&compact).unwrap();
        let first = wal.collect_garbage().unwrap();
        assert!(first.pending && first.rewritten_groups >= 1, "{first:?}");
        wal.wait_durable(wal.submitted_lsn()).unwrap();
        let second = wal.collect_garbage().unwrap();
        assert!(
            second.collected.len() as u64 >= before - 2,
            "{second:?} of {before} segments"
        );
        assert_eq!(wal.group(GroupId(2)).unwrap().hard_state, Some(hard_state));
        wal.close().unwrap();
    }
    let (wal, report) = Wal::open(dir.path(), small()).unwrap();
    assert!(report.segments <= 2, "{report:?}");
    assert_eq!(wal.group(GroupId(2)).unwrap().hard_state, Some(hard_state));
    let state = wal.group(GroupId(1)).unwrap();
    assert_eq!(
        (state.first_index, state.last_index),
        (LogIndex(1000), LogIndex(1000))
    );
    assert_eq!(
        wal.entries(GroupId(1), LogIndex(1000), LogIndex(1001))
            .unwrap()[0]
            .payload,
        payload(GroupId(1), LogIndex(1000), 100)
    );
}

#[test]
fn a_directory_that_is_not_a_log_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let err = Wal::open(dir.path(), small()).err().unwrap();
    assert!(matches!(err, OpenError::NotALog { .. }), "{err}");
    assert!(err.to_string().contains("no FLOTILLA_WAL marker"), "{err}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn unknown_versions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    Wal::open(dir.path(), small()).unwrap().0.close().unwrap();
    fs::write(dir.path().join("FLOTILLA_WAL"), "flotilla-wal\nversion 7\n").unwrap();
    let err = Wal::open(dir.path(), small()).err().unwrap();
    assert!(
        matches!(
            err,
            OpenError::UnsupportedVersion {
                found: 7,
                supported: 2,
                ..
            }
        ),
        "{err}"
    );

    fs::write(dir.path().join("FLOTILLA_WAL"), "flotilla-wal\nversion 2\n").unwrap();
    let segment = common::only_segment(dir.path());
    let mut bytes = fs::read(&segment).unwrap();
    bytes[12] = 9; // The segment header's version field.
    let crc = crc32fast::hash(&bytes[0..40]);
    bytes[40..44].copy_from_slice(&crc.to_le_bytes());
    fs::write(&segment, &bytes).unwrap();
    let err = Wal::open(dir.path(), small()).err().unwrap();
    assert!(
        matches!(err, OpenError::UnsupportedVersion { found: 9, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(segment.to_str().unwrap()), "{err}");
}

#[test]
fn a_sealed_segment_of_the_wrong_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open(dir.path(), small()).unwrap();
        for round in 0..20 {
            append(&mut wal, 1, round * 10 + 1, 10, 500);
        }
        wal.close().unwrap();
    }
    let first = dir.path().join(format!("{:020}.seg", 1));
    let file = fs::OpenOptions::new().write(true).open(&first).unwrap();
    file.set_len((64 << 10) + 4096).unwrap();
    let err = Wal::open(dir.path(), small()).err().unwrap();
    assert!(
        matches!(
            err,
            OpenError::SegmentSize {
                expected: 65536,
                found: 69632,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_second_open_of_the_same_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_wal, _) = Wal::open(dir.path(), small()).unwrap();
    let err = Wal::open(dir.path(), small()).err().unwrap();
    assert!(matches!(err, OpenError::Locked { .. }), "{err}");
}

#[test]
fn invalid_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for size in [0, 4096, (64 << 10) + 1, 1 << 40] {
        let options = WalOptions {
            segment_size_bytes: size,
            ..WalOptions::default()
        };
        let err = Wal::open(dir.path(), options).err().unwrap();
        assert!(matches!(err, OpenError::InvalidOptions(_)), "{err}");
    }
}

#[test]
fn dropped_groups_are_gone_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open(dir.path(), small()).unwrap();
        append(&mut wal, 1, 1, 3, 8);
        append(&mut wal, 2, 1, 3, 8);
        let mut batch = WriteBatch::new();
        batch.drop_group(GroupId(1));
        wal.append_durable(&batch).unwrap();
        assert_eq!(wal.group(GroupId(1)), None);
        // A dropped group starts again at index 1.
        append(&mut wal, 1, 1, 1, 8);
        wal.close().unwrap();
    }
    let (wal, _) = Wal::open(dir.path(), small()).unwrap();
    assert_eq!(wal.group(GroupId(1)).unwrap().last_index, LogIndex(1));
    assert_eq!(wal.group(GroupId(2)).unwrap().last_index, LogIndex(3));
}

#[test]
fn batches_the_decoder_refuses_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), small()).unwrap();
    let mut zero = WriteBatch::new();
    zero.add_entry(GroupId(1), LogIndex(0), Term(1), b"x");
    assert!(matches!(
        wal.submit(&zero),
        Err(AppendError::InvalidBatch { .. })
    ));
    let mut truncate_zero = WriteBatch::new();
    truncate_zero.truncate(GroupId(1), LogIndex(0));
    assert!(matches!(
        wal.submit(&truncate_zero),
        Err(AppendError::InvalidBatch { .. })
    ));
    append(&mut wal, 1, 1, 1, 8);
}

#[test]
fn an_interrupted_first_open_does_not_block_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    // Interrupted while writing the marker.
    fs::write(dir.path().join("FLOTILLA_WAL.tmp"), "flotilla-w").unwrap();
    Wal::open(dir.path(), small()).unwrap();
    // Interrupted while creating the first segment (the marker is written before it).
    fs::remove_file(dir.path().join("00000000000000000001.seg")).unwrap();
    fs::write(dir.path().join("00000000000000000001.seg.tmp"), "half").unwrap();
    let (mut wal, _) = Wal::open(dir.path(), small()).unwrap();
    append(&mut wal, 1, 1, 1, 8);
    wal.close().unwrap();
    assert!(!dir.path().join("00000000000000000001.seg.tmp").exists());
    Wal::open(dir.path(), small()).unwrap();
}
