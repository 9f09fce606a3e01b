//! The on-disk format, version 2: segment headers, record headers and batch bodies.
//!
//! This module owns every byte layout of the log and nothing else: no files, no I/O. Every
//! decoder here takes untrusted bytes and returns a [`DecodeError`] naming the offset and
//! what was wrong; none of them panics or allocates in proportion to a length it read.
//! docs/FORMATS.md describes the same layout for humans; keep the two in step.
//!
//! Key types: [`SegmentHeader`], [`RecordHeader`], [`BodyReader`] and [`Op`].

use crate::ids::{GroupId, HardState, LogIndex, Lsn, SegmentId, Term};

/// Version of the format written by this crate. Readers refuse any other.
pub const FORMAT_VERSION: u32 = 2;

/// Every segment starts with this header page; records start at this offset.
pub const SEGMENT_HEADER_BYTES: u64 = 4096;
/// [`SEGMENT_HEADER_BYTES`] as a memory length.
pub const SEGMENT_HEADER_PAGE_BYTES: usize = 4096;
/// The bytes of the segment header that carry data (the rest of the page is zero).
const SEGMENT_HEADER_USED_BYTES: usize = 44;
/// Magic at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"FLOTILLA";
/// Second magic word, naming the file kind (a WAL segment).
pub const SEGMENT_KIND: [u8; 4] = *b"WSEG";

/// Magic of a record header: "FLWR" read as little endian.
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"FLWR");
/// Size of a record header.
pub const RECORD_HEADER_BYTES: usize = 32;
/// Records start at multiples of this within a segment.
pub const RECORD_ALIGN_BYTES: u64 = 8;

/// Segment sizes must be a multiple of this (a page) so that records stay page-aligned
/// relative to the file.
pub const SEGMENT_SIZE_ALIGN_BYTES: u64 = 4096;
/// Smallest segment size accepted: a header page and three pages of records.
pub const SEGMENT_SIZE_MIN_BYTES: u64 = 4 * SEGMENT_SIZE_ALIGN_BYTES;
/// Largest segment size accepted: offsets fit in a `u32`, and a record (at most a segment
/// less its header) fits in one `write`, which Linux caps just under 2 GiB.
pub const SEGMENT_SIZE_MAX_BYTES: u64 = 1 << 30;

const _: () = assert!(SEGMENT_HEADER_BYTES.is_multiple_of(SEGMENT_SIZE_ALIGN_BYTES));
const _: () = assert!(SEGMENT_HEADER_PAGE_BYTES as u64 == SEGMENT_HEADER_BYTES);
const _: () = assert!(SEGMENT_HEADER_USED_BYTES as u64 <= SEGMENT_HEADER_BYTES);
const _: () = assert!((RECORD_HEADER_BYTES as u64).is_multiple_of(RECORD_ALIGN_BYTES));
const _: () = assert!(SEGMENT_HEADER_BYTES.is_multiple_of(RECORD_ALIGN_BYTES));

/// Tags of the operations inside a batch body.
mod tag {
    pub(super) const ENTRIES: u8 = 1;
    pub(super) const HARD_STATE: u8 = 2;
    pub(super) const TRUNCATE: u8 = 3;
    pub(super) const COMPACT: u8 = 4;
    pub(super) const DROP_GROUP: u8 = 5;
}

/// Bytes of an entries-run header: tag, group, term, first index, count.
pub(crate) const RUN_HEADER_BYTES: usize = 1 + 8 + 8 + 8 + 4;
/// Bytes in front of each entry's payload inside a run: its length.
pub(crate) const ENTRY_HEADER_BYTES: usize = 4;

/// Why some bytes could not be decoded, and where (offset from the start of the bytes given).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Offset of the offending field.
    pub offset: usize,
    /// What was wrong.
    pub reason: &'static str,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

fn err(offset: usize, reason: &'static str) -> DecodeError {
    DecodeError { offset, reason }
}

/// Rounds `n` up to the record alignment.
pub fn align_record(n: u64) -> u64 {
    n.div_ceil(RECORD_ALIGN_BYTES) * RECORD_ALIGN_BYTES
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(field.try_into().ok()?))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let field = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(field.try_into().ok()?))
}

/// Bit of [`SegmentHeader`]'s flags: the file held an earlier segment, so the bytes past
/// this segment's records are stale records of that one, not zeros.
const SEGMENT_FLAG_REUSED: u32 = 1;

/// The first page of a segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version the segment was written with.
    pub version: u32,
    /// The segment's sequence number (also its file name).
    pub segment: SegmentId,
    /// The file's length, fixed when the segment was created.
    pub segment_size_bytes: u64,
    /// Drawn afresh each time a file becomes a segment; every record written into this
    /// segment carries it, so records left from the file's earlier use never pass as its own.
    pub nonce: u32,
    /// The file was recycled from a collected segment (flag bit 0): past its records lie stale
    /// records of the segment it was, not zeros.
    pub reused: bool,
}

impl SegmentHeader {
    /// Encodes the header into a full header page.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_PAGE_BYTES] {
        let mut page = [0u8; SEGMENT_HEADER_PAGE_BYTES];
        page[0..8].copy_from_slice(&SEGMENT_MAGIC);
        page[8..12].copy_from_slice(&SEGMENT_KIND);
        page[12..16].copy_from_slice(&self.version.to_le_bytes());
        page[16..24].copy_from_slice(&self.segment.0.to_le_bytes());
        page[24..32].copy_from_slice(&self.segment_size_bytes.to_le_bytes());
        page[32..36].copy_from_slice(&self.nonce.to_le_bytes());
        let flags = if self.reused { SEGMENT_FLAG_REUSED } else { 0 };
        page[36..40].copy_from_slice(&flags.to_le_bytes());
        let crc = crc32fast::hash(&page[0..40]);
        page[40..44].copy_from_slice(&crc.to_le_bytes());
        page
    }

    /// The format version a header page names, read before anything else is checked (the
    /// rest of the layout depends on it). `None` when the page is not a segment header.
    pub fn peek_version(page: &[u8]) -> Option<u32> {
        if page.get(0..8)? != SEGMENT_MAGIC || page.get(8..12)? != SEGMENT_KIND {
            return None;
        }
        read_u32(page, 12)
    }

    /// Decodes a header page of this format version (check [`SegmentHeader::peek_version`]
    /// first to name another version in an error).
    pub fn decode(page: &[u8]) -> Result<SegmentHeader, DecodeError> {
        if page.len() < SEGMENT_HEADER_USED_BYTES {
            return Err(err(page.len(), "segment header truncated"));
        }
        if page[0..8] != SEGMENT_MAGIC || page[8..12] != SEGMENT_KIND {
            return Err(err(0, "bad segment magic (not a flotilla log segment)"));
        }
        let crc_stored = read_u32(page, 40).ok_or(err(40, "segment header truncated"))?;
        if crc32fast::hash(&page[0..40]) != crc_stored {
            return Err(err(40, "segment header checksum mismatch"));
        }
        let flags = read_u32(page, 36).ok_or(err(36, "segment header truncated"))?;
        if flags & !SEGMENT_FLAG_REUSED != 0 {
            return Err(err(36, "unknown segment flags"));
        }
        let header = SegmentHeader {
            version: read_u32(page, 12).ok_or(err(12, "segment header truncated"))?,
            segment: SegmentId(read_u64(page, 16).ok_or(err(16, "segment header truncated"))?),
            segment_size_bytes: read_u64(page, 24).ok_or(err(24, "segment header truncated"))?,
            nonce: read_u32(page, 32).ok_or(err(32, "segment header truncated"))?,
            reused: flags & SEGMENT_FLAG_REUSED != 0,
        };
        Ok(header)
    }
}

/// The fixed header in front of every record (one record = one write batch).
///
/// Layout (little endian): magic u32, crc32 u32, body length u32, segment nonce u32,
/// lsn u64, synced-through lsn u64. The crc covers bytes 8.. of the header and the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Checksum of header bytes 8..32 followed by the body.
    pub crc: u32,
    /// Length of the body in bytes (padding to the record alignment not included).
    pub body_len: u32,
    /// The nonce of the segment the record was written into ([`SegmentHeader::nonce`]).
    pub nonce: u32,
    /// This record's sequence number.
    pub lsn: Lsn,
    /// The highest lsn known durable when this record was submitted. Recovery uses it to
    /// tell a torn tail (records that were never durable) from damage to durable records.
    pub synced_through: Lsn,
}

impl RecordHeader {
    /// Bytes the whole record occupies in a segment, padding included.
    pub fn record_bytes(&self) -> u64 {
        align_record(RECORD_HEADER_BYTES as u64 + u64::from(self.body_len))
    }

    /// Writes the header for `body`, to be written into the segment with `nonce`, into
    /// `out[..RECORD_HEADER_BYTES]`, computing the crc.
    pub fn encode_into(out: &mut [u8], nonce: u32, lsn: Lsn, synced_through: Lsn, body: &[u8]) {
        assert!(
            out.len() >= RECORD_HEADER_BYTES,
            "record header buffer too small"
        );
        let body_len = u32::try_from(body.len()).expect("body length checked against the limit");
        out[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        out[8..12].copy_from_slice(&body_len.to_le_bytes());
        out[12..16].copy_from_slice(&nonce.to_le_bytes());
        out[16..24].copy_from_slice(&lsn.0.to_le_bytes());
        out[24..32].copy_from_slice(&synced_through.0.to_le_bytes());
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&out[8..RECORD_HEADER_BYTES]);
        hasher.update(body);
        out[4..8].copy_from_slice(&hasher.finalize().to_le_bytes());
    }

    /// Reads the header fields without checking the crc (see [`RecordHeader::verify`]).
    /// Returns `Ok(None)` when the bytes are all zero: unwritten space.
    pub fn decode(bytes: &[u8]) -> Result<Option<RecordHeader>, DecodeError> {
        let header = bytes
            .get(..RECORD_HEADER_BYTES)
            .ok_or(err(bytes.len(), "record header truncated"))?;
        if header.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        if read_u32(header, 0) != Some(RECORD_MAGIC) {
            return Err(err(0, "bad record magic"));
        }
        let record_header = RecordHeader {
            crc: read_u32(header, 4).ok_or(err(4, "record header truncated"))?,
            body_len: read_u32(header, 8).ok_or(err(8, "record header truncated"))?,
            nonce: read_u32(header, 12).ok_or(err(12, "record header truncated"))?,
            lsn: Lsn(read_u64(header, 16).ok_or(err(16, "record header truncated"))?),
            synced_through: Lsn(read_u64(header, 24).ok_or(err(24, "record header truncated"))?),
        };
        if record_header.synced_through >= record_header.lsn {
            return Err(err(24, "synced-through lsn not below the record's lsn"));
        }
        Ok(Some(record_header))
    }

    /// Checks the crc of a record whose header is at the start of `bytes` and returns its
    /// body. `bytes` may extend past the record.
    pub fn verify<'a>(&self, bytes: &'a [u8]) -> Result<&'a [u8], DecodeError> {
        let body_end = RECORD_HEADER_BYTES
            .checked_add(self.body_len as usize)
            .ok_or(err(8, "record length overflows"))?;
        let record = bytes
            .get(..body_end)
            .ok_or(err(8, "record length runs past the end of the segment"))?;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&record[8..]);
        if hasher.finalize() != self.crc {
            return Err(err(4, "record checksum mismatch"));
        }
        Ok(&record[RECORD_HEADER_BYTES..])
    }
}

/// Decodes one whole record (header, crc, body) from the start of `bytes` and checks every
/// operation in its body. This is the entry point the fuzz target drives.
pub fn decode_record(bytes: &[u8]) -> Result<Option<(RecordHeader, Vec<Op<'_>>)>, DecodeError> {
    let Some(header) = RecordHeader::decode(bytes)? else {
        return Ok(None);
    };
    let body = header.verify(bytes)?;
    let ops = BodyReader::new(body).collect::<Result<Vec<_>, _>>()?;
    Ok(Some((header, ops)))
}

/// One operation of a write batch, borrowed from the body bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op<'a> {
    /// A log entry.
    Entry {
        /// Its group.
        group: GroupId,
        /// Its index.
        index: LogIndex,
        /// Its term.
        term: Term,
        /// Offset of the payload from the start of the body.
        payload_offset: usize,
        /// The payload.
        payload: &'a [u8],
    },
    /// A group's new hard state.
    HardState {
        /// The group.
        group: GroupId,
        /// Its hard state.
        hard_state: HardState,
    },
    /// Entries of `group` at `from` and above are removed.
    Truncate {
        /// The group.
        group: GroupId,
        /// First index removed.
        from: LogIndex,
    },
    /// Entries of `group` at `through` and below are removed (they are behind a snapshot).
    Compact {
        /// The group.
        group: GroupId,
        /// Last index removed.
        through: LogIndex,
    },
    /// Everything of `group` is removed.
    DropGroup {
        /// The group.
        group: GroupId,
    },
}

/// A batch body read a run at a time ([`BodyReader::next_chunk`]): what the log's index
/// walks, so that an entry costs a length read and no call.
pub(crate) enum Chunk<'a> {
    /// An entries run whose every length was checked against the body.
    Run {
        /// The group.
        group: GroupId,
        /// The term of every entry.
        term: Term,
        /// Index of the first entry.
        first_index: LogIndex,
        /// Number of entries (at least 1).
        count: u32,
        /// Offset in the body of the first entry's length field.
        offset: usize,
        /// The entries: `count` times a u32 length and that many payload bytes.
        entries: &'a [u8],
    },
    /// Any other operation.
    Op(Op<'a>),
}

/// Iterates the operations of a batch body, flattening entry runs into single entries.
pub struct BodyReader<'a> {
    body: &'a [u8],
    offset: usize,
    run: Option<RunCursor>,
    failed: bool,
    /// Where each entries run ends, when the body's builder recorded it (see
    /// [`BodyReader::batch_chunks`]); then runs are not walked entry by entry.
    run_ends: Option<&'a [usize]>,
    runs_read: usize,
}

struct RunCursor {
    group: GroupId,
    term: Term,
    next_index: LogIndex,
    remaining: u32,
}

impl<'a> BodyReader<'a> {
    /// Reads `body`, the bytes after a record header.
    pub fn new(body: &'a [u8]) -> BodyReader<'a> {
        BodyReader {
            body,
            offset: 0,
            run: None,
            failed: false,
            run_ends: None,
            runs_read: 0,
        }
    }

    fn u64_at(&self, at: usize) -> Result<u64, DecodeError> {
        read_u64(self.body, at).ok_or(err(at, "operation truncated"))
    }

    fn next_run_entry(&mut self) -> Result<Op<'a>, DecodeError> {
        let run = self.run.as_mut().expect("called only while a run is open");
        let len_at = self.offset;
        let len = read_u32(self.body, len_at).ok_or(err(len_at, "entry length truncated"))?;
        let payload_offset = len_at + ENTRY_HEADER_BYTES;
        let payload_end = payload_offset
            .checked_add(len as usize)
            .ok_or(err(len_at, "entry length overflows"))?;
        let payload = self
            .body
            .get(payload_offset..payload_end)
            .ok_or(err(len_at, "entry payload runs past the end of the body"))?;
        let op = Op::Entry {
            group: run.group,
            index: run.next_index,
            term: run.term,
            payload_offset,
            payload,
        };
        run.next_index = run.next_index.next();
        run.remaining -= 1;
        if run.remaining == 0 {
            self.run = None;
        }
        self.offset = payload_end;
        Ok(op)
    }

    /// Decodes the header of the entries run at `at` (its tag already read).
    fn run_header(&self, at: usize, group: GroupId) -> Result<RunCursor, DecodeError> {
        // One bounds check for the whole header; a truncated one names its first missing
        // field, as reading field by field would.
        let Some(header) = self
            .body
            .get(at..)
            .and_then(|rest| rest.first_chunk::<RUN_HEADER_BYTES>())
        else {
            let missing = [(9, 8), (17, 8), (25, 4)]
                .into_iter()
                .find(|(field, width)| at + field + width > self.body.len())
                .map_or(25, |(field, _)| field);
            return Err(err(at + missing, "operation truncated"));
        };
        let field = |from: usize| -> [u8; 8] {
            header[from..from + 8]
                .try_into()
                .expect("an 8-byte field of the header")
        };
        let term = Term(u64::from_le_bytes(field(9)));
        let first_index = u64::from_le_bytes(field(17));
        let count = u32::from_le_bytes(
            header[25..29]
                .try_into()
                .expect("the 4-byte count of the header"),
        );
        if count == 0 {
            return Err(err(at + 25, "entries run with no entries"));
        }
        if first_index == 0 {
            return Err(err(at + 17, "entry index 0"));
        }
        if first_index.checked_add(u64::from(count)).is_none() {
            return Err(err(at + 17, "entry index overflows"));
        }
        // Each entry needs at least its length field: a count the body cannot hold is
        // rejected here instead of being trusted.
        let room = self.body.len() - (at + RUN_HEADER_BYTES).min(self.body.len());
        if (count as usize).saturating_mul(ENTRY_HEADER_BYTES) > room {
            return Err(err(at + 25, "entry count larger than the body can hold"));
        }
        Ok(RunCursor {
            group,
            term,
            next_index: LogIndex(first_index),
            remaining: count,
        })
    }

    /// The operations of `body` with each entries run as one [`Chunk::Run`].
    pub(crate) fn chunks(body: &'a [u8]) -> impl Iterator<Item = Result<Chunk<'a>, DecodeError>> {
        let mut reader = BodyReader::new(body);
        std::iter::from_fn(move || reader.next_chunk())
    }

    /// Like [`BodyReader::chunks`], for a body whose builder ([`crate::WriteBatch`]) wrote
    /// every entry's length itself and recorded where each entries run ends (the last run
    /// may end with the body and be left out). Run headers are still checked; the entries'
    /// lengths are trusted instead of walked, which on small entries is most of the cost
    /// (each length's position depends on the previous length).
    pub(crate) fn batch_chunks(
        body: &'a [u8],
        run_ends: &'a [usize],
    ) -> impl Iterator<Item = Result<Chunk<'a>, DecodeError>> {
        let mut reader = BodyReader::new(body);
        reader.run_ends = Some(run_ends);
        std::iter::from_fn(move || reader.next_chunk())
    }

    /// The next operation with a whole entries run as one [`Chunk::Run`], its lengths
    /// checked in one pass. Not to be mixed with the per-entry iteration of the same reader.
    pub(crate) fn next_chunk(&mut self) -> Option<Result<Chunk<'a>, DecodeError>> {
        assert!(
            self.run.is_none(),
            "next_chunk inside a run read entry by entry"
        );
        if self.failed || self.offset >= self.body.len() {
            return None;
        }
        let at = self.offset;
        if self.body[at] != tag::ENTRIES {
            return self.next().map(|op| op.map(Chunk::Op));
        }
        let chunk = self.next_run_chunk(at);
        self.failed = chunk.is_err();
        Some(chunk)
    }

    fn next_run_chunk(&mut self, at: usize) -> Result<Chunk<'a>, DecodeError> {
        let group = GroupId(self.u64_at(at + 1)?);
        let run = self.run_header(at, group)?;
        let start = at + RUN_HEADER_BYTES;
        let end = match self.run_ends {
            Some(run_ends) => {
                let end = run_ends
                    .get(self.runs_read)
                    .copied()
                    .unwrap_or(self.body.len());
                self.runs_read += 1;
                debug_assert_eq!(
                    Some(end),
                    self.walk_run(start, run.remaining).ok(),
                    "a recorded run end matches the lengths"
                );
                end
            }
            None => self.walk_run(start, run.remaining)?,
        };
        self.offset = end;
        Ok(Chunk::Run {
            group,
            term: run.term,
            first_index: run.next_index,
            count: run.remaining,
            offset: start,
            entries: &self.body[start..end],
        })
    }

    /// Checks the lengths of `count` entries from `start`; returns where they end.
    fn walk_run(&self, start: usize, count: u32) -> Result<usize, DecodeError> {
        let mut end = start;
        for _ in 0..count {
            let len = read_u32(self.body, end).ok_or(err(end, "entry length truncated"))?;
            let payload_end = (end + ENTRY_HEADER_BYTES)
                .checked_add(len as usize)
                .ok_or(err(end, "entry length overflows"))?;
            if payload_end > self.body.len() {
                return Err(err(end, "entry payload runs past the end of the body"));
            }
            end = payload_end;
        }
        Ok(end)
    }

    fn next_op(&mut self) -> Result<Op<'a>, DecodeError> {
        if self.run.is_some() {
            return self.next_run_entry();
        }
        let at = self.offset;
        let op_tag = self.body[at];
        let group = GroupId(self.u64_at(at + 1)?);
        match op_tag {
            tag::ENTRIES => {
                let run = self.run_header(at, group)?;
                self.offset = at + RUN_HEADER_BYTES;
                self.run = Some(run);
                self.next_run_entry()
            }
            tag::HARD_STATE => {
                let hard_state = HardState {
                    term: Term(self.u64_at(at + 9)?),
                    vote: self.u64_at(at + 17)?,
                    commit: LogIndex(self.u64_at(at + 25)?),
                };
                self.offset = at + 33;
                Ok(Op::HardState { group, hard_state })
            }
            tag::TRUNCATE => {
                let from = LogIndex(self.u64_at(at + 9)?);
                if from.0 == 0 {
                    return Err(err(at + 9, "truncation from index 0"));
                }
                self.offset = at + 17;
                Ok(Op::Truncate { group, from })
            }
            tag::COMPACT => {
                let through = LogIndex(self.u64_at(at + 9)?);
                self.offset = at + 17;
                Ok(Op::Compact { group, through })
            }
            tag::DROP_GROUP => {
                self.offset = at + 9;
                Ok(Op::DropGroup { group })
            }
            _ => Err(err(at, "unknown operation tag")),
        }
    }
}

impl<'a> Iterator for BodyReader<'a> {
    type Item = Result<Op<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || (self.run.is_none() && self.offset >= self.body.len()) {
            return None;
        }
        let op = self.next_op();
        self.failed = op.is_err();
        Some(op)
    }
}

/// Encoders for the body operations, used by [`crate::WriteBatch`].
pub(crate) mod encode {
    use super::tag;
    use crate::ids::{GroupId, HardState, LogIndex, Term};

    /// Appends an entries-run header and returns the offset of its count field.
    pub(crate) fn run_header(
        body: &mut Vec<u8>,
        group: GroupId,
        term: Term,
        first: LogIndex,
    ) -> usize {
        body.push(tag::ENTRIES);
        body.extend_from_slice(&group.0.to_le_bytes());
        body.extend_from_slice(&term.0.to_le_bytes());
        body.extend_from_slice(&first.0.to_le_bytes());
        let count_offset = body.len();
        body.extend_from_slice(&0u32.to_le_bytes());
        count_offset
    }

    pub(crate) fn hard_state(body: &mut Vec<u8>, group: GroupId, hard_state: HardState) {
        body.push(tag::HARD_STATE);
        body.extend_from_slice(&group.0.to_le_bytes());
        body.extend_from_slice(&hard_state.term.0.to_le_bytes());
        body.extend_from_slice(&hard_state.vote.to_le_bytes());
        body.extend_from_slice(&hard_state.commit.0.to_le_bytes());
    }

    pub(crate) fn truncate(body: &mut Vec<u8>, group: GroupId, from: LogIndex) {
        body.push(tag::TRUNCATE);
        body.extend_from_slice(&group.0.to_le_bytes());
        body.extend_from_slice(&from.0.to_le_bytes());
    }

    pub(crate) fn compact(body: &mut Vec<u8>, group: GroupId, through: LogIndex) {
        body.push(tag::COMPACT);
        body.extend_from_slice(&group.0.to_le_bytes());
        body.extend_from_slice(&through.0.to_le_bytes());
    }

    pub(crate) fn drop_group(body: &mut Vec<u8>, group: GroupId) {
        body.push(tag::DROP_GROUP);
        body.extend_from_slice(&group.0.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::WriteBatch;

    /// The worked example of docs/FORMATS.md, byte for byte.
    #[test]
    fn the_worked_example_in_formats_md_is_exact() {
        let mut batch = WriteBatch::new();
        batch.add_entry(GroupId(1), LogIndex(1), Term(1), b"hi");
        let body = batch.body();
        let mut record =
            vec![0u8; crate::usize_of(align_record((RECORD_HEADER_BYTES + body.len()) as u64))];
        record[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + body.len()].copy_from_slice(body);
        RecordHeader::encode_into(&mut record, 1, Lsn(1), Lsn(0), body);
        let expected: Vec<u8> = [
            "46 4c 57 52 74 07 d5 09 23 00 00 00 01 00 00 00",
            "01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
            "01 01 00 00 00 00 00 00 00 01 00 00 00 00 00 00",
            "00 01 00 00 00 00 00 00 00 01 00 00 00 02 00 00",
            "00 68 69 00 00 00 00 00",
        ]
        .join(" ")
        .split(' ')
        .map(|hex| u8::from_str_radix(hex, 16).unwrap())
        .collect();
        assert_eq!(record, expected);
    }
}
