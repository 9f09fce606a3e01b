//! Torn writes: a log cut at every byte offset of its last batches recovers exactly the
//! whole batches before the cut, reports the cut, and never fails.
//!
//! A torn write on a preallocated segment leaves the unwritten bytes as they were (zero);
//! a file cut short by a tool is also accepted for the last segment. Both are tried.

#![allow(
    clippy::unwrap_used,
    reason = "integration tests fail by panicking, helpers included"
)]

mod common;

use std::fs;
use std::path::Path;

use common::payload;
use flotilla_wal::{GroupId, HardState, LogIndex, Term, Wal, WalOptions, WriteBatch};

const SEGMENT_BYTES: u64 = 64 << 10;
const BATCHES: u64 = 12;
const GROUPS: u64 = 3;

fn options() -> WalOptions {
    WalOptions {
        segment_size_bytes: SEGMENT_BYTES,
        preallocate: false,
        ..WalOptions::default()
    }
}

/// Batch `b` gives every group entries `b*2+1` and `b*2+2` (payload sizes vary) and a hard
/// state; its last operation is an entry, so the record's data ends in a non-zero byte.
fn batch(b: u64) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for group in 1..=GROUPS {
        batch.set_hard_state(
            GroupId(group),
            HardState {
                term: Term(b + 1),
                vote: group,
                commit: LogIndex(b),
            },
        );
        for index in [b * 2 + 1, b * 2 + 2] {
            let len = (1 + (index * 7 + group * 13) % 40) as usize;
            batch.add_entry(
                GroupId(group),
                LogIndex(index),
                Term(b + 1),
                &payload(GroupId(group), LogIndex(index), len),
            );
        }
    }
    batch
}

/// Writes the log and returns the byte range [start, data end) of each record.
fn write_log(dir: &Path) -> Vec<(u64, u64)> {
    let (mut wal, _) = Wal::open(dir, options()).unwrap();
    let mut records = Vec::new();
    let mut offset = 4096;
    for b in 0..BATCHES {
        wal.append_durable(&batch(b)).unwrap();
        let end = 4096 + wal.stats().bytes;
        records.push((offset, end));
        offset = end;
    }
    wal.close().unwrap();
    let bytes = fs::read(common::only_segment(dir)).unwrap();
    // Data end = last non-zero byte + 1 (payloads hold no zero byte; padding is zero).
    records
        .into_iter()
        .map(|(start, end)| {
            let last = bytes[start as usize..end as usize]
                .iter()
                .rposition(|&b| b != 0)
                .unwrap();
            (start, start + last as u64 + 1)
        })
        .collect()
}

fn check_recovered(dir: &Path, whole: u64, cut: u64, records: &[(u64, u64)]) {
    let (wal, report) =
        Wal::open(dir, options()).unwrap_or_else(|e| panic!("cut at {cut}: recovery failed: {e}"));
    assert_eq!(report.records, whole, "cut at {cut}: {report:?}");
    let inside = records
        .iter()
        .find(|(start, end)| *start < cut && cut < *end);
    match (inside, &report.torn_tail) {
        (Some((start, _)), Some(torn)) => {
            assert_eq!(torn.offset, *start, "cut at {cut}");
            assert!(torn.bytes > 0, "cut at {cut}");
        }
        (None, None) => {}
        (expected, found) => panic!("cut at {cut}: torn record {expected:?}, report {found:?}"),
    }
    for group in 1..=GROUPS {
        let state = wal.group(GroupId(group));
        if whole == 0 {
            assert_eq!(state, None);
            continue;
        }
        let state = state.unwrap();
        assert_eq!(state.last_index, LogIndex(whole * 2), "cut at {cut}");
        assert_eq!(state.hard_state.unwrap().term, Term(whole), "cut at {cut}");
        wal.read_entries(
            GroupId(group),
            LogIndex(1),
            LogIndex(whole * 2 + 1),
            |index, _, bytes| {
                let len = (1 + (index.0 * 7 + group * 13) % 40) as usize;
                assert_eq!(bytes, payload(GroupId(group), index, len), "cut at {cut}");
            },
        )
        .unwrap();
    }
}

#[test]
fn every_cut_in_the_last_batches_recovers_the_whole_batches_before_it() {
    let source = tempfile::tempdir().unwrap();
    let records = write_log(source.path());
    let segment = common::only_segment(source.path());
    let name = segment.file_name().unwrap().to_owned();
    let original = fs::read(&segment).unwrap();
    let marker = fs::read(source.path().join("FLOTILLA_WAL")).unwrap();

    let first_cut = records[records.len() - 3].0;
    let last_cut = records.last().unwrap().1;
    let work = tempfile::tempdir().unwrap();
    let mut tried = 0;
    for cut in first_cut..=last_cut {
        let whole = records.iter().filter(|(_, end)| *end <= cut).count() as u64;
        for truncate_file in [false, true] {
            let dir = work.path().join(format!("cut-{cut}-{truncate_file}"));
            fs::create_dir(&dir).unwrap();
            fs::write(dir.join("FLOTILLA_WAL"), &marker).unwrap();
            let mut bytes = original[..cut as usize].to_vec();
            if !truncate_file {
                bytes.resize(original.len(), 0);
            }
            fs::write(dir.join(&name), &bytes).unwrap();
            check_recovered(&dir, whole, cut, &records);
            fs::remove_dir_all(&dir).unwrap();
            tried += 1;
        }
    }
    assert!(tried > 200, "only {tried} cuts");
}

#[test]
fn a_log_cut_mid_batch_accepts_new_batches_and_recovers_them() {
    let source = tempfile::tempdir().unwrap();
    let records = write_log(source.path());
    let segment = common::only_segment(source.path());
    let original = fs::read(&segment).unwrap();
    let (start, end) = records[records.len() - 2];
    let cut = (start + end) / 2;
    let mut bytes = original[..cut as usize].to_vec();
    bytes.resize(original.len(), 0);
    fs::write(&segment, &bytes).unwrap();

    let whole = BATCHES - 2;
    {
        let (mut wal, report) = Wal::open(source.path(), options()).unwrap();
        assert_eq!(report.records, whole);
        assert!(report.torn_tail.is_some());
        // The torn batch is written again, then one more.
        wal.append_durable(&batch(whole)).unwrap();
        wal.append_durable(&batch(whole + 1)).unwrap();
        wal.close().unwrap();
    }
    let (wal, report) = Wal::open(source.path(), options()).unwrap();
    assert_eq!(report.records, whole + 2);
    assert_eq!(
        report.torn_tail, None,
        "the cut tail was erased, not left in front of new data"
    );
    assert_eq!(
        wal.group(GroupId(1)).unwrap().last_index,
        LogIndex((whole + 2) * 2)
    );
}
