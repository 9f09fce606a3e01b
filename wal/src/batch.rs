//! [`WriteBatch`]: what one group commit writes, for many groups at once.
//!
//! A batch is encoded as it is built, straight into the body format of
//! [`crate::format`], so that submitting it costs one copy into an aligned write buffer.
//! Consecutive entries of one group and term share one run header, which keeps the
//! per-entry overhead at four bytes. The batch checks nothing about the log's state; the
//! log does that when the batch is submitted.

use crate::format::{self, ENTRY_HEADER_BYTES};
use crate::ids::{GroupId, HardState, LogIndex, Term};

/// A group-committed write: entries, hard states, truncations, compactions and group drops
/// for any number of groups, applied in the order they were added.
///
/// Reuse one batch with [`WriteBatch::clear`] to keep its buffer.
#[derive(Default)]
pub struct WriteBatch {
    body: Vec<u8>,
    run: Option<OpenRun>,
    /// Where each closed entries run ends in `body` (the open one ends with the body), so
    /// the log need not walk the entries' lengths to find the operation after a run.
    run_ends: Vec<usize>,
    entry_count: usize,
    payload_bytes: usize,
    /// True once a truncation, compaction or group drop was added.
    restructures: bool,
}

/// The entries run being extended.
struct OpenRun {
    group: GroupId,
    term: Term,
    next_index: LogIndex,
    count_offset: usize,
    count: u32,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    /// Empties the batch, keeping its buffer.
    pub fn clear(&mut self) {
        self.body.clear();
        self.run = None;
        self.run_ends.clear();
        self.entry_count = 0;
        self.payload_bytes = 0;
        self.restructures = false;
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    /// Encoded size of the body in bytes.
    pub fn body_bytes(&self) -> usize {
        self.body.len()
    }

    /// Number of entries added.
    pub fn entry_count(&self) -> usize {
        self.entry_count
    }

    /// Sum of the entries' payload sizes.
    pub fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    /// The encoded body, as docs/FORMATS.md describes it (what a record carries after
    /// its header).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// True when the batch holds only entries and hard states, which the log checks and
    /// indexes in one pass.
    pub(crate) fn appends_only(&self) -> bool {
        !self.restructures
    }

    /// Where each entries run of the body ends, but the last one when it ends the body.
    pub(crate) fn run_ends(&self) -> &[usize] {
        &self.run_ends
    }

    /// Appends one entry of `group`. Entries of a group must be added in index order; the
    /// log checks that they continue its last index when the batch is submitted.
    ///
    /// # Panics
    /// If `payload` is 4 GiB or larger (the log refuses such batches long before).
    pub fn add_entry(&mut self, group: GroupId, index: LogIndex, term: Term, payload: &[u8]) {
        self.add_entry_prefixed(group, index, term, &[], payload);
    }

    /// Like [`WriteBatch::add_entry`], with the payload stored as `prefix` followed by
    /// `payload` (one copy, no concatenation by the caller): a caller's own small header,
    /// such as an entry kind, costs no extra buffer. Reads return the whole stored payload.
    ///
    /// # Panics
    /// If the stored payload is 4 GiB or larger (the log refuses such batches long before).
    pub fn add_entry_prefixed(
        &mut self,
        group: GroupId,
        index: LogIndex,
        term: Term,
        prefix: &[u8],
        payload: &[u8],
    ) {
        let stored_len = prefix.len() + payload.len();
        let len = u32::try_from(stored_len).expect("entry payload under 4 GiB");
        let extends_run = self.run.as_ref().is_some_and(|run| {
            run.group == group
                && run.term == term
                && run.next_index == index
                && run.count < u32::MAX
        });
        if !extends_run {
            self.close_run();
            let count_offset = format::encode::run_header(&mut self.body, group, term, index);
            self.run = Some(OpenRun {
                group,
                term,
                next_index: index,
                count_offset,
                count: 0,
            });
        }
        let run = self.run.as_mut().expect("a run was opened above");
        // Wrapping: an index of u64::MAX is refused when the batch is submitted.
        run.next_index = LogIndex(run.next_index.0.wrapping_add(1));
        run.count += 1;
        self.body.reserve(ENTRY_HEADER_BYTES + stored_len);
        self.body.extend_from_slice(&len.to_le_bytes());
        self.body.extend_from_slice(prefix);
        self.body.extend_from_slice(payload);
        self.entry_count += 1;
        self.payload_bytes += stored_len;
        let count = run.count;
        let count_offset = run.count_offset;
        self.body[count_offset..count_offset + 4].copy_from_slice(&count.to_le_bytes());
    }

    /// Records `group`'s hard state.
    pub fn set_hard_state(&mut self, group: GroupId, hard_state: HardState) {
        self.close_run();
        format::encode::hard_state(&mut self.body, group, hard_state);
    }

    /// Removes `group`'s entries at `from` and above (a Raft conflict truncation). It is a
    /// logical record: nothing already written is rewritten.
    pub fn truncate(&mut self, group: GroupId, from: LogIndex) {
        self.close_run();
        self.restructures = true;
        format::encode::truncate(&mut self.body, group, from);
    }

    /// Removes `group`'s entries at `through` and below (they are behind a snapshot). Once
    /// every group has compacted past a segment's entries, the segment can be deleted.
    pub fn compact(&mut self, group: GroupId, through: LogIndex) {
        self.close_run();
        self.restructures = true;
        format::encode::compact(&mut self.body, group, through);
    }

    /// Removes everything of `group`: its entries, hard state and compaction mark.
    pub fn drop_group(&mut self, group: GroupId) {
        self.close_run();
        self.restructures = true;
        format::encode::drop_group(&mut self.body, group);
    }

    fn close_run(&mut self) {
        if self.run.take().is_some() {
            self.run_ends.push(self.body.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{BodyReader, Op};

    #[test]
    fn entries_of_one_group_and_term_share_a_run() {
        let mut batch = WriteBatch::new();
        for i in 1..=3 {
            batch.add_entry(GroupId(7), LogIndex(i), Term(2), b"abc");
        }
        let run_bytes = format::RUN_HEADER_BYTES + 3 * (ENTRY_HEADER_BYTES + 3);
        assert_eq!(batch.body_bytes(), run_bytes);
        let ops: Vec<Op<'_>> = BodyReader::new(batch.body())
            .map(|op| op.unwrap())
            .collect();
        assert_eq!(ops.len(), 3);
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Entry {
                    group,
                    index,
                    term,
                    payload,
                    ..
                } => {
                    assert_eq!(*group, GroupId(7));
                    assert_eq!(*index, LogIndex(i as u64 + 1));
                    assert_eq!(*term, Term(2));
                    assert_eq!(*payload, b"abc");
                }
                other => panic!("unexpected op {other:?}"),
            }
        }
    }

    #[test]
    fn a_prefixed_entry_is_stored_as_prefix_then_payload() {
        let mut batch = WriteBatch::new();
        batch.add_entry_prefixed(GroupId(1), LogIndex(1), Term(1), &[9], b"xy");
        batch.add_entry(GroupId(1), LogIndex(2), Term(1), b"z");
        assert_eq!(batch.payload_bytes(), 4);
        let payloads: Vec<Vec<u8>> = BodyReader::new(batch.body())
            .map(|op| match op.unwrap() {
                Op::Entry { payload, .. } => payload.to_vec(),
                other => panic!("unexpected op {other:?}"),
            })
            .collect();
        assert_eq!(payloads, vec![vec![9, b'x', b'y'], b"z".to_vec()]);
    }

    #[test]
    fn every_operation_round_trips_in_order() {
        let mut batch = WriteBatch::new();
        let hard_state = HardState {
            term: Term(3),
            vote: 2,
            commit: LogIndex(9),
        };
        batch.add_entry(GroupId(1), LogIndex(1), Term(1), b"");
        batch.add_entry(GroupId(1), LogIndex(2), Term(2), b"x");
        batch.set_hard_state(GroupId(1), hard_state);
        batch.truncate(GroupId(2), LogIndex(5));
        batch.compact(GroupId(3), LogIndex(4));
        batch.drop_group(GroupId(4));
        let ops: Vec<Op<'_>> = BodyReader::new(batch.body())
            .map(|op| op.unwrap())
            .collect();
        assert_eq!(ops.len(), 6);
        assert!(matches!(
            ops[0],
            Op::Entry {
                index: LogIndex(1),
                term: Term(1),
                ..
            }
        ));
        assert!(matches!(
            ops[1],
            Op::Entry {
                index: LogIndex(2),
                term: Term(2),
                ..
            }
        ));
        assert_eq!(
            ops[2],
            Op::HardState {
                group: GroupId(1),
                hard_state
            }
        );
        assert_eq!(
            ops[3],
            Op::Truncate {
                group: GroupId(2),
                from: LogIndex(5)
            }
        );
        assert_eq!(
            ops[4],
            Op::Compact {
                group: GroupId(3),
                through: LogIndex(4)
            }
        );
        assert_eq!(ops[5], Op::DropGroup { group: GroupId(4) });
    }

    #[test]
    fn truncated_bodies_are_errors_not_panics() {
        let mut batch = WriteBatch::new();
        batch.add_entry(GroupId(1), LogIndex(1), Term(1), b"payload");
        batch.set_hard_state(GroupId(1), HardState::default());
        let body = batch.body();
        let run_end = format::RUN_HEADER_BYTES + ENTRY_HEADER_BYTES + b"payload".len();
        for cut in 0..body.len() {
            let result: Result<Vec<_>, _> = BodyReader::new(&body[..cut]).collect();
            if cut > 0 && cut != run_end {
                assert!(result.is_err(), "cut at {cut} decoded");
            }
        }
    }
}
