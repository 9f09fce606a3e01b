//! Corruption: a flipped bit in any synced batch other than the last makes open fail with
//! an error naming the segment and the damaged record's offset; `repair` keeps the prefix.

#![allow(
    clippy::unwrap_used,
    reason = "integration tests fail by panicking, helpers included"
)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{Rng, payload};
use flotilla_wal::{GroupId, LogIndex, OpenError, Term, Wal, WalOptions, WriteBatch};

const SEGMENT_BYTES: u64 = 16 << 10;

fn options(repair: bool) -> WalOptions {
    WalOptions {
        segment_size_bytes: SEGMENT_BYTES,
        repair,
        preallocate: false,
        ..WalOptions::default()
    }
}

/// A record: its segment file, byte range of its data, and the entries of group 1 it holds.
struct Written {
    segment: PathBuf,
    start: u64,
    data_end: u64,
    last_index: u64,
}

/// The log [`write_log`] made: its batches, and how many records recovery finds in front
/// of them.
struct Log {
    written: Vec<Written>,
    records_before: u64,
}

/// Appends synced batches and knows where each record lands.
struct Appender {
    wal: Wal,
    /// `stats().bytes` when the active segment got its first record.
    segment_base: u64,
}

impl Appender {
    /// Appends `batch`; returns the segment id it landed in, its start and its length.
    fn append(&mut self, batch: &WriteBatch) -> (u64, u64, u64) {
        let (rotations, bytes_before) = (self.wal.stats().rotations, self.wal.stats().bytes);
        self.wal.append_durable(batch).unwrap();
        if self.wal.stats().rotations != rotations {
            self.segment_base = bytes_before;
        }
        let start = 4096 + (bytes_before - self.segment_base);
        let length = self.wal.stats().bytes - bytes_before;
        (1 + self.wal.stats().rotations, start, length)
    }

    /// Fills several segments with entries of a group it then compacts away and collects,
    /// so that the segments after them are recycled, with those entries as stale records.
    fn fill_segments_to_recycle(&mut self) {
        let filler = GroupId(100);
        let mut index = 0;
        while self.wal.stats().rotations < 5 {
            index += 1;
            let mut batch = WriteBatch::new();
            let bytes = payload(filler, LogIndex(index), 1000);
            batch.add_entry(filler, LogIndex(index), Term(1), &bytes);
            self.append(&batch);
        }
        let mut compaction = WriteBatch::new();
        compaction.compact(filler, LogIndex(index));
        self.append(&compaction);
        // The first call rewrites what the old segments pin (a record, which may move the
        // log to the next segment); the second collects them.
        let (rotations, bytes_before) = (self.wal.stats().rotations, self.wal.stats().bytes);
        self.wal.collect_garbage().unwrap();
        if self.wal.stats().rotations != rotations {
            self.segment_base = bytes_before;
        }
        self.wal.wait_durable(self.wal.submitted_lsn()).unwrap();
        assert!(!self.wal.collect_garbage().unwrap().collected.is_empty());
    }
}

/// Writes `batches` synced batches of group 1 across several small segments; with
/// `recycled`, into segments recycled from collected ones.
fn write_log(dir: &Path, batches: u64, recycled: bool) -> Log {
    let (wal, _) = Wal::open(dir, options(false)).unwrap();
    let mut appender = Appender {
        wal,
        segment_base: 0,
    };
    if recycled {
        appender.fill_segments_to_recycle();
    }
    let mut written = Vec::new();
    let mut last_index = 0;
    for b in 0..batches {
        let mut batch = WriteBatch::new();
        let count = 1 + b % 5;
        for _ in 0..count {
            last_index += 1;
            batch.add_entry(
                GroupId(1),
                LogIndex(last_index),
                Term(1),
                &payload(GroupId(1), LogIndex(last_index), 300),
            );
        }
        let (segment_id, start, length) = appender.append(&batch);
        written.push(Written {
            segment: dir.join(format!("{segment_id:020}.seg")),
            start,
            data_end: start + length,
            last_index,
        });
    }
    if recycled {
        assert!(
            appender.wal.stats().segments_recycled >= 3,
            "{:?}",
            appender.wal.stats()
        );
    }
    appender.wal.close().unwrap();
    // Narrow each range to its data (drop the zero padding, which no crc covers).
    for record in &mut written {
        let bytes = fs::read(&record.segment).unwrap();
        let last = bytes[record.start as usize..record.data_end as usize]
            .iter()
            .rposition(|&b| b != 0)
            .unwrap();
        record.data_end = record.start + last as u64 + 1;
    }
    let (_, report) = Wal::open(dir, options(false)).unwrap();
    let records_before = report.records - batches;
    Log {
        written,
        records_before,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() && entry.file_name() != "LOCK" {
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn bit_flips_in_synced_batches_are_reported_with_file_and_offset() {
    bit_flips_are_reported(false);
}

#[test]
fn bit_flips_in_recycled_segments_are_reported_with_file_and_offset() {
    bit_flips_are_reported(true);
}

fn bit_flips_are_reported(recycled: bool) {
    let source = tempfile::tempdir().unwrap();
    let Log {
        written,
        records_before,
    } = write_log(source.path(), 60, recycled);
    let segments: std::collections::BTreeSet<_> =
        written.iter().map(|w| w.segment.clone()).collect();
    assert!(segments.len() >= 3, "the log should span several segments");

    let mut rng = Rng::new(7);
    let work = tempfile::tempdir().unwrap();
    for trial in 0..150 {
        // Any record but the last (whose damage is indistinguishable from a torn write).
        let victim = rng.range(0, written.len() as u64 - 1) as usize;
        let record = &written[victim];
        let offset = rng.range(record.start, record.data_end);
        let bit = rng.range(0, 8);

        let dir = work.path().join(format!("trial-{trial}"));
        copy_dir(source.path(), &dir);
        let damaged = dir.join(record.segment.file_name().unwrap());
        let mut bytes = fs::read(&damaged).unwrap();
        bytes[offset as usize] ^= 1 << bit;
        fs::write(&damaged, &bytes).unwrap();
        let before = snapshot(&dir);

        let err = Wal::open(&dir, options(false)).err().unwrap_or_else(|| {
            panic!("trial {trial}: flip at {offset} in record {victim} went unnoticed")
        });
        match &err {
            OpenError::Corruption {
                path,
                offset: reported,
                ..
            } => {
                assert_eq!(path, &damaged, "trial {trial}: {err}");
                assert_eq!(*reported, record.start, "trial {trial}: {err}");
            }
            other => panic!("trial {trial}: expected corruption, got {other}"),
        }
        let message = err.to_string();
        assert!(
            message.contains(damaged.to_str().unwrap())
                && message.contains(&record.start.to_string())
        );
        assert_eq!(
            snapshot(&dir),
            before,
            "trial {trial}: a failed open changed files"
        );

        // With repair the log opens and keeps exactly the records before the damage.
        let (wal, report) = Wal::open(&dir, options(true)).unwrap();
        let repair = report.repaired.as_ref().expect("a repair was made");
        assert_eq!(repair.offset, record.start);
        assert!(!repair.quarantined.is_empty());
        assert_eq!(report.records, records_before + victim as u64);
        let kept = if victim == 0 {
            0
        } else {
            written[victim - 1].last_index
        };
        match wal.group(GroupId(1)) {
            None => assert_eq!(kept, 0),
            Some(state) => assert_eq!(state.last_index, LogIndex(kept), "trial {trial}"),
        }
        if kept > 0 {
            wal.read_entries(
                GroupId(1),
                LogIndex(1),
                LogIndex(kept + 1),
                |index, _, bytes| {
                    assert_eq!(bytes, payload(GroupId(1), index, 300));
                },
            )
            .unwrap();
        }
        drop(wal);
        fs::remove_dir_all(&dir).unwrap();
    }
}

/// Names and contents of the segment files in `dir`.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_missing_middle_segment_is_reported() {
    let source = tempfile::tempdir().unwrap();
    let written = write_log(source.path(), 60, false).written;
    let middle = &written[written.len() / 2].segment;
    fs::remove_file(middle).unwrap();
    let err = Wal::open(source.path(), options(false)).err().unwrap();
    assert!(matches!(err, OpenError::Corruption { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
}
