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
    check_groups(&wal, whole, cut);
}

/// Groups 1..=GROUPS hold exactly `batch(0..whole)`.
fn check_groups(wal: &Wal, whole: u64, cut: u64) {
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

/// A log whose last segment was recycled: what it held before, and where the batches went.
struct RecycledLog {
    /// The recycled segment's file name.
    name: String,
    /// Its bytes as the file held them just before it was recycled (stale records).
    stale: Vec<u8>,
    /// Byte range [start, data end) of each of `batch(0..BATCHES)` in it.
    records: Vec<(u64, u64)>,
    /// Records recovery finds in front of the batches.
    records_before: u64,
}

/// Small segments, so that a few filler batches fill one.
fn recycling_options() -> WalOptions {
    WalOptions {
        segment_size_bytes: 16 << 10,
        preallocate: false,
        ..WalOptions::default()
    }
}

/// Appends one filler entry of 700 bytes; returns the record's start in its segment when
/// the append moved the log to a new segment.
fn append_filler(wal: &mut Wal, index: u64) -> Option<u64> {
    let filler = GroupId(100);
    let rotations = wal.stats().rotations;
    let mut batch = WriteBatch::new();
    let bytes = payload(filler, LogIndex(index), 700);
    batch.add_entry(filler, LogIndex(index), Term(1), &bytes);
    wal.append_durable(&batch).unwrap();
    (wal.stats().rotations != rotations).then_some(4096)
}

/// Fills two segments with a filler group, compacts it away and collects them, fills the
/// active segment until the log moves to a recycled one, and writes `batch(0..BATCHES)`
/// there, over the filler's stale records. With `pipelined_tail`, the last two batches are
/// submitted together and synced once.
fn write_recycled_log(dir: &Path, pipelined_tail: bool) -> RecycledLog {
    let (mut wal, _) = Wal::open(dir, recycling_options()).unwrap();
    let mut index = 0;
    while wal.stats().rotations < 2 {
        index += 1;
        append_filler(&mut wal, index);
    }
    let mut compaction = WriteBatch::new();
    compaction.compact(GroupId(100), LogIndex(index));
    wal.append_durable(&compaction).unwrap();
    wal.collect_garbage().unwrap();
    wal.wait_durable(wal.submitted_lsn()).unwrap();
    assert!(!wal.collect_garbage().unwrap().collected.is_empty());
    // The most recently collected file is recycled first.
    let free = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "free"))
        .max()
        .expect("a collected segment was kept to be recycled");
    let stale = fs::read(&free).unwrap();

    // Fill until the log moves on; the filler record that moved it starts the new segment.
    let moved_at = loop {
        index += 1;
        let bytes_before = wal.stats().bytes;
        if append_filler(&mut wal, index).is_some() {
            break bytes_before;
        }
    };
    assert_eq!(wal.stats().segments_recycled, 1, "{:?}", wal.stats());
    let name = format!("{:020}.seg", 1 + wal.stats().rotations);
    let mut records = Vec::new();
    for b in 0..BATCHES {
        let start = 4096 + (wal.stats().bytes - moved_at);
        if pipelined_tail && b >= BATCHES - 2 {
            // The last two are in flight together: neither record's `synced_through`
            // reaches the other.
            wal.submit(&batch(b)).unwrap();
        } else {
            wal.append_durable(&batch(b)).unwrap();
        }
        records.push((start, 4096 + (wal.stats().bytes - moved_at)));
    }
    wal.wait_durable(wal.submitted_lsn()).unwrap();
    wal.close().unwrap();
    let bytes = fs::read(dir.join(&name)).unwrap();
    let records = records
        .into_iter()
        .map(|(start, end)| {
            let last = bytes[start as usize..end as usize]
                .iter()
                .rposition(|&b| b != 0)
                .unwrap();
            (start, start + last as u64 + 1)
        })
        .collect();
    let (_, report) = Wal::open(dir, recycling_options()).unwrap();
    RecycledLog {
        name,
        stale,
        records,
        records_before: report.records - BATCHES,
    }
}

/// Copies the log in `from` to `to` with the recycled segment's bytes from `cut` on put
/// back as they were before it was recycled: a write torn at `cut`.
fn torn_copy(from: &Path, to: &Path, log: &RecycledLog, cut: u64) {
    torn_copy_ranges(from, to, log, &[(cut, log.stale.len() as u64)]);
}

/// Copies the log in `from` to `to` with the recycled segment's bytes in `ranges` put back
/// as they were before it was recycled: sectors of in-flight writes that never landed.
fn torn_copy_ranges(from: &Path, to: &Path, log: &RecycledLog, ranges: &[(u64, u64)]) {
    fs::create_dir(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name.ends_with(".seg") || name == "FLOTILLA_WAL" {
            fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
    let mut bytes = fs::read(from.join(&log.name)).unwrap();
    for &(start, end) in ranges {
        bytes[start as usize..end as usize]
            .copy_from_slice(&log.stale[start as usize..end as usize]);
    }
    fs::write(to.join(&log.name), &bytes).unwrap();
}

/// The end of the 512-byte sector holding `offset`.
fn sector_end(offset: u64) -> u64 {
    (offset / 512 + 1) * 512
}

#[test]
fn a_later_record_that_landed_whole_does_not_make_a_lost_header_corruption() {
    // Two records in flight together; the earlier one's header sector never landed, the
    // later one did. Nothing says the earlier was durable: a torn tail, not corruption.
    let source = tempfile::tempdir().unwrap();
    let log = write_recycled_log(source.path(), true);
    let (a_start, _) = log.records[log.records.len() - 2];
    let (b_start, _) = log.records[log.records.len() - 1];
    let lost = (a_start, sector_end(a_start).min(b_start));
    assert!(
        sector_end(a_start) <= b_start,
        "the records share no sector"
    );
    let dir = source.path().join("torn");
    torn_copy_ranges(source.path(), &dir, &log, &[lost]);
    let (wal, report) = Wal::open(&dir, recycling_options())
        .unwrap_or_else(|e| panic!("a plain crash must not fail the open: {e}"));
    assert_eq!(report.records, log.records_before + BATCHES - 2);
    assert_eq!(report.torn_tail.as_ref().map(|t| t.offset), Some(a_start));
    check_groups(&wal, BATCHES - 2, a_start);
}

#[test]
fn a_flipped_bit_in_a_header_is_corruption_even_in_the_last_group_commit() {
    let source = tempfile::tempdir().unwrap();
    let log = write_recycled_log(source.path(), true);
    let (a_start, _) = log.records[log.records.len() - 2];
    let dir = source.path().join("flipped");
    torn_copy_ranges(source.path(), &dir, &log, &[]);
    let segment = dir.join(&log.name);
    let mut bytes = fs::read(&segment).unwrap();
    bytes[a_start as usize + 13] ^= 0x10; // One bit of the nonce.
    fs::write(&segment, &bytes).unwrap();
    let err = Wal::open(&dir, recycling_options())
        .err()
        .expect("a damaged header is reported");
    assert!(err.to_string().contains(&a_start.to_string()), "{err}");
}

#[test]
fn pieces_of_unfinished_records_after_the_end_are_erased() {
    // The earlier record's header sector never landed, and the later one lost a body
    // sector: nothing valid follows the end, but the later header is this segment's own.
    let source = tempfile::tempdir().unwrap();
    let log = write_recycled_log(source.path(), true);
    let (a_start, _) = log.records[log.records.len() - 2];
    let (b_start, b_end) = log.records[log.records.len() - 1];
    let dir = source.path().join("pieces");
    torn_copy_ranges(
        source.path(),
        &dir,
        &log,
        &[
            (a_start, sector_end(a_start).min(b_start)),
            (b_start + 40, b_end),
        ],
    );
    {
        let (wal, report) = Wal::open(&dir, recycling_options()).unwrap();
        assert_eq!(report.records, log.records_before + BATCHES - 2);
        let torn = report
            .torn_tail
            .expect("the pieces were erased and reported");
        assert_eq!(torn.offset, a_start);
        assert!(torn.bytes >= b_end - b_start, "{torn:?}");
        check_groups(&wal, BATCHES - 2, a_start);
    }
    let bytes = fs::read(dir.join(&log.name)).unwrap();
    assert!(
        bytes[b_start as usize..b_start as usize + 32]
            .iter()
            .all(|&b| b == 0),
        "the later record's header is gone"
    );
}

#[test]
fn a_recycled_segment_torn_anywhere_in_its_last_batches_recovers_the_whole_batches_before_it() {
    let source = tempfile::tempdir().unwrap();
    let log = write_recycled_log(source.path(), false);
    let first_cut = log.records[log.records.len() - 3].0;
    let last_cut = log.records.last().unwrap().1;
    let work = tempfile::tempdir().unwrap();
    for cut in first_cut..=last_cut {
        let dir = work.path().join(format!("cut-{cut}"));
        torn_copy(source.path(), &dir, &log, cut);
        let whole = log.records.iter().filter(|(_, end)| *end <= cut).count() as u64;
        let (wal, report) = Wal::open(&dir, recycling_options())
            .unwrap_or_else(|e| panic!("cut at {cut}: recovery failed: {e}"));
        assert_eq!(report.records, log.records_before + whole, "cut at {cut}");
        // A record whose magic and nonce (its first 16 bytes) landed is reported torn; one
        // cut before them cannot be told from the stale bytes after the log's end.
        let torn = log
            .records
            .iter()
            .find(|(start, end)| start + 16 <= cut && cut < *end);
        match (torn, &report.torn_tail) {
            (Some((start, _)), Some(found)) => assert_eq!(found.offset, *start, "cut at {cut}"),
            (None, None) => {}
            (expected, found) => panic!("cut at {cut}: torn record {expected:?}, report {found:?}"),
        }
        check_groups(&wal, whole, cut);
        drop(wal);
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_recycled_segment_cut_mid_batch_takes_new_batches_over_its_stale_bytes() {
    let source = tempfile::tempdir().unwrap();
    let log = write_recycled_log(source.path(), false);
    let (start, end) = log.records[log.records.len() - 2];
    let dir = source.path().join("torn");
    torn_copy(source.path(), &dir, &log, (start + end) / 2);
    let whole = BATCHES - 2;
    {
        let (mut wal, report) = Wal::open(&dir, recycling_options()).unwrap();
        assert_eq!(report.records, log.records_before + whole);
        assert!(report.torn_tail.is_some());
        wal.append_durable(&batch(whole)).unwrap();
        wal.append_durable(&batch(whole + 1)).unwrap();
        wal.close().unwrap();
    }
    let (wal, report) = Wal::open(&dir, recycling_options()).unwrap();
    assert_eq!(report.records, log.records_before + whole + 2);
    assert_eq!(report.torn_tail, None);
    check_groups(&wal, whole + 2, u64::MAX);
}
