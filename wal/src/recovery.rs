//! Recovery: scan every segment in order, verify every record, rebuild the index, and
//! decide where the log ends.
//!
//! The log is one stream of records with consecutive lsns across segments. Scanning stops
//! at the first record that does not verify (bad magic, bad crc, unexpected lsn, invalid
//! body) or at unwritten space followed by valid records. In a segment recycled from an
//! older one, "unwritten" means any bytes that are not a record header of this segment
//! (magic and this segment's nonce): the stale records of the file's earlier use, or the
//! middle of one. Records count as valid only with their segment's nonce. What the
//! stopping point is, is decided by looking at everything after it:
//!
//! 1. No valid record follows: a **torn tail**, the last batches a crash interrupted. Its
//!    bytes are zeroed (so later appends never sit in front of stale bytes) and reported.
//! 2. A later valid record says, in its `synced_through` field, that the damaged record was
//!    already durable when it was written: **corruption**. Open fails naming the file and
//!    offset, or, with `repair`, cuts the log there (after copying the affected segments
//!    to `quarantine/`).
//! 3. Later valid records exist but none proves the damaged one durable: a crash with
//!    several unsynced writes in flight can leave a later write intact and an earlier one
//!    torn. The damaged record counts as torn when its bytes show the shape of a torn write
//!    on zero-filled space (an all-zero sector inside it), and as corruption otherwise. In
//!    a recycled segment the sectors a torn write missed hold stale bytes, not zeros: a
//!    header far from the segment's own (`header_is_foreign`) also counts as torn, but a
//!    record that lost only body sectors is reported as corruption (never cut silently;
//!    opening with `repair` cuts there).
//!
//! When scanning ends with no such point, the bytes after the data are cut all the same if
//! they hold pieces of unfinished records, so that a later append never lines up with one.
//!
//! **Invariant:** recovery never drops a record that a sync acknowledged: a synced record
//! that does not verify is reported as corruption, never cut silently.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::OpenError;
use crate::format::{
    BodyReader, Chunk, RECORD_ALIGN_BYTES, RECORD_HEADER_BYTES, RECORD_MAGIC, RecordHeader,
    SEGMENT_HEADER_BYTES,
};
use crate::ids::{Lsn, SegmentId};
use crate::index::{LogIndexMap, Mode};
use crate::segment::Segment;
use crate::usize_of;

/// A torn write that was found and cut at the end of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment where the log now ends.
    pub path: PathBuf,
    /// Offset of the cut in that segment.
    pub offset: u64,
    /// Bytes of partial records that were discarded (zeroed).
    pub bytes: u64,
}

/// A corruption that `WalOptions::repair` cut the log at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repair {
    /// The damaged segment.
    pub path: PathBuf,
    /// Offset of the first damaged record.
    pub offset: u64,
    /// What was wrong.
    pub reason: String,
    /// Copies of the damaged segment and the later segments, moved under `quarantine/`.
    pub quarantined: Vec<PathBuf>,
}

/// What recovery found.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// Segment files read.
    pub segments: usize,
    /// Records (write batches) recovered.
    pub records: u64,
    /// Entries recovered (before compaction and truncation were applied).
    pub entries: u64,
    /// Record bytes verified and indexed.
    pub bytes: u64,
    /// The last lsn recovered (`Lsn(0)` for an empty log).
    pub last_lsn: Lsn,
    /// The torn tail cut, if any.
    pub torn_tail: Option<TornTail>,
    /// The repair made, if `repair` was asked for and needed.
    pub repaired: Option<Repair>,
    /// Time spent verifying and indexing.
    pub elapsed: Duration,
}

/// The recovered log, ready for the writer.
pub(crate) struct Recovered {
    pub(crate) segments: Vec<Segment>,
    pub(crate) index: LogIndexMap,
    /// Slot in `segments` of the segment to append to.
    pub(crate) active_slot: usize,
    pub(crate) write_offset: u64,
    pub(crate) report: RecoveryReport,
}

/// Where scanning stopped, and why, when it stopped before the end of the data.
struct BadPoint {
    slot: usize,
    offset: u64,
    reason: String,
    /// The damaged record's own claim of its length, when its header was readable.
    claimed_len: Option<u64>,
    /// The record verified but broke an index rule part way: the index holds some of it.
    partially_applied: bool,
    /// The record's crc matched (it was written whole): it cannot be a torn write.
    verified: bool,
}

/// What scanning the segments found.
struct Scan {
    index: LogIndexMap,
    last_lsn: Lsn,
    end: End,
    bad: Option<BadPoint>,
    records: u64,
    entries: u64,
    bytes: u64,
}

/// Scans records in order until the data ends, a record does not verify, or `stop`
/// (a segment slot and offset) is reached.
fn scan(segments: &[Segment], stop: Option<(usize, u64)>) -> Scan {
    let mut found = Scan {
        index: LogIndexMap::default(),
        last_lsn: Lsn(0),
        end: End {
            slot: 0,
            offset: SEGMENT_HEADER_BYTES,
        },
        bad: None,
        records: 0,
        entries: 0,
        bytes: 0,
    };
    for (slot, segment) in segments.iter().enumerate() {
        let bytes = segment.bytes();
        let mut offset = SEGMENT_HEADER_BYTES;
        while offset + RECORD_HEADER_BYTES as u64 <= segment.size_bytes {
            if stop == Some((slot, offset)) {
                return found;
            }
            let at = &bytes[usize_of(offset)..];
            match scan_record(at, found.last_lsn, &mut found.index, segment, offset) {
                Scanned::Record {
                    lsn,
                    record_bytes,
                    entries,
                } => {
                    found.last_lsn = lsn;
                    found.records += 1;
                    found.entries += entries;
                    found.bytes += record_bytes;
                    offset += record_bytes;
                    found.end = End { slot, offset };
                }
                Scanned::NoRecord => {
                    // The end of this segment's data, unless valid records follow in it.
                    let next = offset + RECORD_ALIGN_BYTES;
                    if later_valid_in(segment, next, found.last_lsn).is_some() {
                        let what = if segment.reused {
                            "bytes that are not this segment's records"
                        } else {
                            "unwritten space"
                        };
                        found.bad = Some(BadPoint {
                            slot,
                            offset,
                            reason: format!("{what} in front of valid records"),
                            claimed_len: None,
                            partially_applied: false,
                            verified: false,
                        });
                        return found;
                    }
                    break;
                }
                Scanned::Bad {
                    reason,
                    claimed_len,
                    partially_applied,
                    verified,
                } => {
                    found.bad = Some(BadPoint {
                        slot,
                        offset,
                        reason,
                        claimed_len,
                        partially_applied,
                        verified,
                    });
                    return found;
                }
            }
        }
    }
    found
}

/// The position right after the last valid record.
struct End {
    slot: usize,
    offset: u64,
}

/// Recovers the log from `ids` (sorted, non-empty) in `dir`.
pub(crate) fn recover(dir: &Path, ids: &[SegmentId], repair: bool) -> Result<Recovered, OpenError> {
    let started = Instant::now();
    for pair in ids.windows(2) {
        if pair[1].0 != pair[0].0 + 1 {
            return Err(OpenError::Corruption {
                path: crate::segment::segment_path(dir, pair[1]),
                offset: 0,
                reason: format!(
                    "segments {} to {} are missing",
                    pair[0].0 + 1,
                    pair[1].0 - 1
                ),
            });
        }
    }
    let mut segments = Vec::with_capacity(ids.len());
    for (slot, id) in ids.iter().enumerate() {
        let path = crate::segment::segment_path(dir, *id);
        let segment = if slot + 1 == ids.len() {
            Segment::open_extending(&path, *id)?
        } else {
            Segment::open(&path, *id)?
        };
        segments.push(segment);
    }

    let mut report = RecoveryReport {
        segments: segments.len(),
        ..RecoveryReport::default()
    };
    let Scan {
        mut index,
        last_lsn,
        mut end,
        bad,
        records,
        entries,
        bytes,
    } = scan(&segments, None);
    report.records = records;
    report.entries = entries;
    report.bytes = bytes;

    if let Some(bad) = bad {
        let later = later_valid_from(
            &segments,
            bad.slot,
            bad.offset + RECORD_ALIGN_BYTES,
            last_lsn,
        );
        let torn = match later {
            _ if bad.verified => false,
            None => true,
            Some(Later {
                proves_durable: true,
            }) => false,
            Some(Later {
                proves_durable: false,
            }) => {
                let segment = &segments[bad.slot];
                has_torn_signature(segment, bad.offset, bad.claimed_len)
                    || (segment.reused && header_is_foreign(segment, bad.offset))
            }
        };
        let segment = &segments[bad.slot];
        if torn {
            let bytes = cut_after(&segments, bad.slot, bad.offset)?;
            report.torn_tail = Some(TornTail {
                path: segment.path.clone(),
                offset: bad.offset,
                bytes,
            });
        } else if repair {
            let quarantined = quarantine(dir, &segments[bad.slot..])?;
            cut_after(&segments, bad.slot, bad.offset)?;
            report.repaired = Some(Repair {
                path: segment.path.clone(),
                offset: bad.offset,
                reason: bad.reason,
                quarantined,
            });
        } else {
            return Err(OpenError::Corruption {
                path: segment.path.clone(),
                offset: bad.offset,
                reason: bad.reason,
            });
        }
        end = End {
            slot: bad.slot,
            offset: bad.offset,
        };
        if bad.partially_applied {
            // Some operations of the cut record reached the index: rebuild it from the
            // records before the cut.
            index = scan(&segments, Some((bad.slot, bad.offset))).index;
        }
    } else {
        // The data ended at unwritten space (or bytes not of the segment) with no valid
        // record after it. Pieces of records a crash left unfinished may still lie there
        // (a header that landed without its body, in this segment or a later one): erase
        // them, so that no later append ever lines up with one.
        let segment = &segments[end.slot];
        let bytes = cut_after(&segments, end.slot, end.offset)?;
        if bytes > 0 {
            report.torn_tail = Some(TornTail {
                path: segment.path.clone(),
                offset: end.offset,
                bytes,
            });
        }
    }

    report.last_lsn = last_lsn;
    report.elapsed = started.elapsed();
    Ok(Recovered {
        segments,
        index,
        active_slot: end.slot,
        write_offset: end.offset,
        report,
    })
}

enum Scanned {
    Record {
        lsn: Lsn,
        record_bytes: u64,
        entries: u64,
    },
    /// Unwritten space, or, in a recycled segment, bytes that are not one of its records.
    NoRecord,
    Bad {
        reason: String,
        claimed_len: Option<u64>,
        partially_applied: bool,
        verified: bool,
    },
}

/// True when `at` starts with a record header of the segment with `nonce` (whether or not
/// the rest of it verifies).
fn is_own_header(at: &[u8], nonce: u32) -> bool {
    at.len() >= RECORD_HEADER_BYTES
        && at[0..4] == RECORD_MAGIC.to_le_bytes()
        && at[12..16] == nonce.to_le_bytes()
}

/// Verifies the record at the start of `at` (inside `segment`) and applies it to the index.
fn scan_record(
    at: &[u8],
    last_lsn: Lsn,
    index: &mut LogIndexMap,
    segment: &Segment,
    offset: u64,
) -> Scanned {
    if segment.reused && !is_own_header(at, segment.nonce) {
        return Scanned::NoRecord;
    }
    let header = match RecordHeader::decode(at) {
        Ok(None) => return Scanned::NoRecord,
        Ok(Some(header)) if header.nonce != segment.nonce => {
            return Scanned::Bad {
                reason: format!(
                    "record carries nonce {:#010x}, not its segment's {:#010x}",
                    header.nonce, segment.nonce
                ),
                claimed_len: Some(header.record_bytes()),
                partially_applied: false,
                verified: false,
            };
        }
        Ok(Some(header)) => header,
        Err(e) => {
            return Scanned::Bad {
                reason: e.to_string(),
                claimed_len: None,
                partially_applied: false,
                verified: false,
            };
        }
    };
    let claimed_len = Some(header.record_bytes());
    let unverified = |reason: String| Scanned::Bad {
        reason,
        claimed_len,
        partially_applied: false,
        verified: false,
    };
    if header.record_bytes() > at.len() as u64 {
        return unverified(format!(
            "record of {} bytes runs past the end of the segment",
            header.record_bytes()
        ));
    }
    let body = match header.verify(at) {
        Ok(body) => body,
        Err(e) => return unverified(e.to_string()),
    };
    // From here on the record's crc matched: it was written whole, so whatever is wrong
    // with it is not a torn write.
    let bad = |reason: String| Scanned::Bad {
        reason,
        claimed_len,
        partially_applied: false,
        verified: true,
    };
    if last_lsn != Lsn(0) && header.lsn != last_lsn.next() {
        return bad(format!(
            "record has lsn {}, expected {}",
            header.lsn,
            last_lsn.next()
        ));
    }
    // Decode everything before applying anything, so a bad body leaves the index as it was.
    let mut entries = 0;
    for chunk in BodyReader::chunks(body) {
        match chunk {
            Ok(Chunk::Run { count, .. }) => entries += u64::from(count),
            Ok(Chunk::Op(_)) => {}
            Err(e) => return bad(format!("invalid batch body: {e}")),
        }
    }
    let body_offset = offset + RECORD_HEADER_BYTES as u64;
    let chunks = BodyReader::chunks(body);
    if let Err(invalid) = index.apply_all(chunks, segment.id, body_offset, Mode::Recover) {
        return Scanned::Bad {
            reason: format!("group {}: {}", invalid.group, invalid.reason),
            claimed_len,
            partially_applied: true,
            verified: true,
        };
    }
    Scanned::Record {
        lsn: header.lsn,
        record_bytes: header.record_bytes(),
        entries,
    }
}

/// Searches `segment` from `from` for a record of its own that verifies and comes after
/// `last_lsn`; returns the highest `synced_through` among those found.
fn later_valid_in(segment: &Segment, from: u64, last_lsn: Lsn) -> Option<Lsn> {
    let bytes = segment.bytes();
    let mut best: Option<Lsn> = None;
    let mut offset = from.div_ceil(RECORD_ALIGN_BYTES) * RECORD_ALIGN_BYTES;
    while usize_of(offset) + RECORD_HEADER_BYTES <= bytes.len() {
        let at = &bytes[usize_of(offset)..];
        if is_own_header(at, segment.nonce)
            && let Ok(Some(header)) = RecordHeader::decode(at)
            && header.lsn > last_lsn
            && header.verify(at).is_ok()
        {
            best = Some(best.map_or(header.synced_through, |b| b.max(header.synced_through)));
        }
        offset += RECORD_ALIGN_BYTES;
    }
    best
}

/// Valid records found after a damaged one.
struct Later {
    /// One of them shows the damaged record was durable before it was written: its
    /// `synced_through` reaches the damaged lsn, or it lies in a later segment (a segment
    /// is synced before anything is written to the next).
    proves_durable: bool,
}

/// Looks for valid records after `from` in segment `slot` and in every later segment.
fn later_valid_from(segments: &[Segment], slot: usize, from: u64, last_lsn: Lsn) -> Option<Later> {
    let damaged = last_lsn.next();
    let in_later_segment = segments[slot + 1..]
        .iter()
        .any(|segment| later_valid_in(segment, SEGMENT_HEADER_BYTES, last_lsn).is_some());
    if in_later_segment {
        return Some(Later {
            proves_durable: true,
        });
    }
    later_valid_in(&segments[slot], from, last_lsn).map(|synced_through| Later {
        proves_durable: synced_through >= damaged,
    })
}

/// Sector size assumed for torn writes: a device persists whole sectors.
const SECTOR_BYTES: u64 = 512;

/// True when the damaged record at `offset` looks like a write cut short on zero-filled
/// space: its header is zero, or one of the sectors it spans is all zero.
fn has_torn_signature(segment: &Segment, offset: u64, claimed_len: Option<u64>) -> bool {
    let bytes = segment.bytes();
    let len = claimed_len
        .unwrap_or(SECTOR_BYTES)
        .max(RECORD_HEADER_BYTES as u64);
    let end = (offset + len).min(segment.size_bytes);
    let mut sector = offset - offset % SECTOR_BYTES;
    while sector < end {
        let from = sector.max(offset);
        let to = (sector + SECTOR_BYTES).min(end);
        if to - from >= RECORD_ALIGN_BYTES
            && bytes[usize_of(from)..usize_of(to)].iter().all(|&b| b == 0)
        {
            return true;
        }
        sector += SECTOR_BYTES;
    }
    false
}

/// Bits of a record header's magic and nonce that may differ from a segment's own before
/// the header counts as foreign (see [`header_is_foreign`]).
const FOREIGN_HEADER_BITS: u32 = 8;

/// True when the bytes at `offset` of a recycled segment are unlike a header of its own:
/// their magic and nonce differ from the segment's in more than [`FOREIGN_HEADER_BITS`]
/// bits. A write whose header sector never landed leaves the file's stale bytes there,
/// which differ in about half of those 64 bits (a stale record's header differs in its
/// random nonce); damage to a header that did land flips a few. The recycled segment's
/// counterpart of the zero sector in [`has_torn_signature`].
fn header_is_foreign(segment: &Segment, offset: u64) -> bool {
    let Some(at) = segment.bytes().get(usize_of(offset)..usize_of(offset) + 16) else {
        return true;
    };
    let field = |from: usize| u32::from_le_bytes(at[from..from + 4].try_into().expect("4 bytes"));
    let differing =
        (field(0) ^ RECORD_MAGIC).count_ones() + (field(12) ^ segment.nonce).count_ones();
    differing > FOREIGN_HEADER_BITS
}

/// Zeroes everything from `offset` in segment `slot` and the data of every later segment;
/// returns the length of the spans that held data: up to each one's last non-zero byte, or
/// in a recycled segment, to the end of the last span that starts with one of its own
/// record headers (the stale bytes after it can never pass as its records).
fn cut_after(segments: &[Segment], slot: usize, offset: u64) -> Result<u64, OpenError> {
    let mut discarded = 0;
    for (k, segment) in segments[slot..].iter().enumerate() {
        let from = if k == 0 { offset } else { SEGMENT_HEADER_BYTES };
        let Some(to) = data_end(segment, from) else {
            continue;
        };
        discarded += to - from;
        segment
            .zero_range(from, to)
            .map_err(|source| OpenError::Io {
                path: segment.path.clone(),
                source,
            })?;
    }
    Ok(discarded)
}

/// The end of the bytes from `from` on that may hold records of `segment` (see `cut_after`),
/// or `None` when there are none.
fn data_end(segment: &Segment, from: u64) -> Option<u64> {
    let bytes = segment.bytes();
    if !segment.reused {
        let last_nonzero = bytes[usize_of(from)..].iter().rposition(|&b| b != 0)?;
        return Some(from + last_nonzero as u64 + 1);
    }
    let mut end = None;
    let mut offset = from.div_ceil(RECORD_ALIGN_BYTES) * RECORD_ALIGN_BYTES;
    while usize_of(offset) + RECORD_HEADER_BYTES <= bytes.len() {
        let at = &bytes[usize_of(offset)..];
        if is_own_header(at, segment.nonce) {
            // The claimed length may be damaged: zero at least the header, at most to the
            // end of the segment.
            let claimed = RecordHeader::decode(at)
                .ok()
                .flatten()
                .map_or(RECORD_HEADER_BYTES as u64, |h| h.record_bytes());
            let record_end = (offset + claimed).min(segment.size_bytes);
            end = Some(end.map_or(record_end, |e: u64| e.max(record_end)));
        }
        offset += RECORD_ALIGN_BYTES;
    }
    end
}

/// Copies the given segments into `dir/quarantine/` before a repair changes them.
fn quarantine(dir: &Path, segments: &[Segment]) -> Result<Vec<PathBuf>, OpenError> {
    let target = dir.join("quarantine");
    fs::create_dir_all(&target).map_err(|source| OpenError::Io {
        path: target.clone(),
        source,
    })?;
    let mut copies = Vec::new();
    for segment in segments {
        let name = segment
            .path
            .file_name()
            .expect("segment paths have a file name");
        let copy = target.join(name);
        fs::copy(&segment.path, &copy).map_err(|source| OpenError::Io {
            path: copy.clone(),
            source,
        })?;
        // The copy must be durable before the original is zeroed.
        fs::File::open(&copy)
            .and_then(|file| file.sync_all())
            .map_err(|source| OpenError::Io {
                path: copy.clone(),
                source,
            })?;
        copies.push(copy);
    }
    for synced in [target.as_path(), dir] {
        crate::segment::sync_dir(synced).map_err(|source| OpenError::Io {
            path: synced.to_path_buf(),
            source,
        })?;
    }
    Ok(copies)
}
