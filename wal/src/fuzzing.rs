//! Entry points for fuzz targets and their corpus replay: every decoder of untrusted
//! bytes, driven over one input, with the decoders' postconditions asserted.
//!
//! **Boundary:** nothing here writes files or keeps state; it exists so that `fuzz/` and
//! the corpus replay test drive the same code.

use crate::batch::WriteBatch;
use crate::format::{
    BodyReader, Chunk, DecodeError, ENTRY_HEADER_BYTES, Op, RECORD_HEADER_BYTES, RecordHeader,
    SEGMENT_HEADER_BYTES, SegmentHeader, decode_record,
};
use crate::ids::{GroupId, LogIndex, Lsn, SegmentId, Term};
use crate::index::{Invalid, LogIndexMap, Mode};

/// Runs the segment-header, record and body decoders over `data`, and the record decoder
/// again over a record that wraps `data` as its body with a correct crc (random bytes
/// rarely pass a crc, so this is how a fuzzer reaches the body decoder through the record
/// path). Returns the number of operations decoded.
///
/// # Panics
/// Only if a decoder breaks its own contract (an operation pointing outside its input).
pub fn decode_any(data: &[u8]) -> usize {
    let mut decoded = 0;
    let _header = SegmentHeader::decode(data);
    if let Ok(Some((header, ops))) = decode_record(data) {
        check_ops(&ops, header.body_len as usize);
        let body_end = RECORD_HEADER_BYTES + header.body_len as usize;
        check_one_pass_agrees(&data[RECORD_HEADER_BYTES..body_end]);
        decoded += ops.len();
    }
    let mut ops = Vec::new();
    for op in BodyReader::new(data) {
        match op {
            Ok(op) => ops.push(op),
            Err(e) => {
                assert!(
                    e.offset <= data.len(),
                    "error offset {} past the input",
                    e.offset
                );
                break;
            }
        }
    }
    check_ops(&ops, data.len());
    check_chunks_agree(data, &ops);
    check_one_pass_agrees(data);
    decoded += ops.len();

    if data.len() <= u32::MAX as usize - RECORD_HEADER_BYTES {
        let mut record = vec![0u8; RECORD_HEADER_BYTES + data.len()];
        record[RECORD_HEADER_BYTES..].copy_from_slice(data);
        let (header, body) = record.split_at_mut(RECORD_HEADER_BYTES);
        RecordHeader::encode_into(header, 1, Lsn(1), Lsn(0), body);
        match decode_record(&record) {
            Ok(Some((_, wrapped))) => assert_eq!(wrapped, ops, "record path and body path differ"),
            Ok(None) => panic!("a record with a magic decoded as unwritten space"),
            Err(_) => assert!(
                BodyReader::new(data).any(|op| op.is_err()),
                "the record path refused a body the body path accepts"
            ),
        }
    }
    decoded
}

/// The run-at-a-time reader (what the index applies) must decode exactly what the
/// entry-at-a-time reader does: the same operations, and an error at the same point.
fn check_chunks_agree(data: &[u8], ops: &[Op<'_>]) {
    let per_entry_ok = BodyReader::new(data).all(|op| op.is_ok());
    let mut flattened = Vec::new();
    let mut chunks_ok = true;
    for chunk in BodyReader::chunks(data) {
        match chunk {
            Ok(Chunk::Op(op)) => flattened.push(op),
            Ok(Chunk::Run {
                group,
                term,
                first_index,
                count,
                offset,
                entries,
            }) => {
                let mut at = 0;
                for k in 0..u64::from(count) {
                    let len_bytes = &entries[at..at + ENTRY_HEADER_BYTES];
                    let len = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
                    let payload_at = at + ENTRY_HEADER_BYTES;
                    flattened.push(Op::Entry {
                        group,
                        index: crate::ids::LogIndex(first_index.0 + k),
                        term,
                        payload_offset: offset + payload_at,
                        payload: &entries[payload_at..payload_at + len],
                    });
                    at = payload_at + len;
                }
                assert_eq!(at, entries.len(), "a run's bytes hold exactly its entries");
            }
            Err(_) => chunks_ok = false,
        }
    }
    assert_eq!(
        chunks_ok, per_entry_ok,
        "the two readers disagree on validity"
    );
    if per_entry_ok {
        assert_eq!(
            flattened, ops,
            "the two readers decode different operations"
        );
    } else {
        // The run reader stops at the run holding the error, the entry reader inside it.
        assert!(flattened.len() <= ops.len());
        assert_eq!(
            flattened,
            ops[..flattened.len()],
            "the readers differ before the error"
        );
    }
}

/// For a body of appends only (entries runs and hard states, up to a decoding error if
/// any), checking and applying in one pass must do exactly what checking and then applying
/// does: the same verdict, the same error, the same index. Done on an empty index and on
/// one whose groups hold entries behind a compaction mark (groups 1 to 4, entries 4 to
/// 10), and each time applied twice, so that the second time (its runs no longer continue
/// the logs) exercises taking back what a refused batch applied.
fn check_one_pass_agrees(data: &[u8]) {
    let appends_only = BodyReader::chunks(data)
        .map_while(Result::ok)
        .all(|chunk| matches!(chunk, Chunk::Run { .. } | Chunk::Op(Op::HardState { .. })));
    // Entry offsets in the index are u32 file offsets.
    if !appends_only || data.len() > (u32::MAX >> 1) as usize {
        return;
    }
    let body_offset = SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES as u64;
    let mut populated = WriteBatch::new();
    for group in 1..=4 {
        for index in 1..=10 {
            populated.add_entry(GroupId(group), LogIndex(index), Term(1), b"entry");
        }
        populated.compact(GroupId(group), LogIndex(3));
    }
    for start in [None, Some(&populated)] {
        let mut two_pass = LogIndexMap::default();
        let mut one_pass = LogIndexMap::default();
        if let Some(batch) = start {
            for index in [&mut two_pass, &mut one_pass] {
                let chunks = || BodyReader::batch_chunks(batch.body(), batch.run_ends());
                let applied = check_then_apply(index, chunks, SegmentId(1), body_offset);
                assert!(applied.is_ok(), "the starting batch applies");
            }
        }
        for segment in [SegmentId(2), SegmentId(3)] {
            let checked = check_then_apply(
                &mut two_pass,
                || BodyReader::chunks(data),
                segment,
                body_offset,
            );
            let applied =
                one_pass.check_apply_appends(BodyReader::chunks(data), segment, body_offset);
            let reason = |verdict: &Result<(), Invalid>| {
                verdict
                    .as_ref()
                    .err()
                    .map(|invalid| (invalid.group, invalid.reason.clone()))
            };
            assert_eq!(reason(&applied), reason(&checked), "the verdicts differ");
            assert_eq!(
                one_pass.describe(),
                two_pass.describe(),
                "the indexes differ"
            );
        }
    }
}

/// What the log does with a batch that is not appends only: check it whole, then apply it.
fn check_then_apply<'a, I: Iterator<Item = Result<Chunk<'a>, DecodeError>>>(
    index: &mut LogIndexMap,
    chunks: impl Fn() -> I,
    segment: SegmentId,
    body_offset: u64,
) -> Result<(), Invalid> {
    index.check(chunks())?;
    index.apply_all(chunks(), segment, body_offset, Mode::Submit)
}

fn check_ops(ops: &[Op<'_>], body_len: usize) {
    for op in ops {
        if let Op::Entry {
            index,
            payload_offset,
            payload,
            ..
        } = op
        {
            assert!(index.0 > 0, "entry index 0 decoded");
            assert!(
                payload_offset + payload.len() <= body_len,
                "payload outside the body"
            );
        }
    }
}
