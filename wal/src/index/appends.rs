//! Checking and applying a batch of appends in one pass.
//!
//! Most batches only append: entries runs and hard states. For those, the checks that
//! [`LogIndexMap::check`] makes in a pass of its own (each run continues its group's log)
//! are made while applying, against the group's log itself, and an undo log records what
//! each operation changed. On an invalid operation the changes are taken back in reverse
//! order, so the index is exactly as it was: the same contract as check-then-apply, with
//! each run decoded and its group looked up once instead of twice.
//!
//! The undo log of a successful pass is kept until the log knows whether the batch's
//! record was written: then it either takes the batch back or keeps it.

use std::collections::hash_map::Entry;

use super::{GroupLog, Invalid, LogIndexMap, run_follows, undecodable};
use crate::format::{Chunk, DecodeError, Op};
use crate::ids::{GroupId, HardState, LogIndex, SegmentId};

/// What one operation of a one-pass batch changed, to take it back.
pub(super) enum UndoStep {
    /// The batch created this group's log: remove it.
    Created(GroupId),
    /// An entries run was appended to the group: before it, the log held `len` live
    /// entries from `first_index`, under `marks` run marks.
    Run {
        group: GroupId,
        first_index: LogIndex,
        len: usize,
        marks: usize,
    },
    /// The group's hard state was replaced.
    HardState {
        group: GroupId,
        hard_state: Option<HardState>,
        segment: Option<SegmentId>,
    },
}

impl LogIndexMap {
    /// Checks and applies, in one pass, the operations of a record body that holds only
    /// entries runs and hard states, written in `segment` at `body_offset` (the file
    /// offset of the body). On an invalid operation everything this call applied is taken
    /// back and the index is as it was.
    ///
    /// # Panics
    /// On a truncation, compaction or group drop: callers pass such batches to
    /// [`LogIndexMap::check`] and [`LogIndexMap::apply_all`].
    pub(crate) fn check_apply_appends<'a>(
        &mut self,
        chunks: impl Iterator<Item = Result<Chunk<'a>, DecodeError>>,
        segment: SegmentId,
        body_offset: u64,
    ) -> Result<(), Invalid> {
        let mut undo = std::mem::take(&mut self.undo);
        undo.clear();
        let verdict = self.apply_appends_with(chunks, segment, body_offset, &mut undo);
        self.undo = undo;
        if verdict.is_err() {
            self.undo_appends();
        }
        verdict
    }

    /// Keeps what the last successful [`LogIndexMap::check_apply_appends`] applied (its
    /// record was written): its undo log is dropped, so no later call can take it back.
    pub(crate) fn keep_appends(&mut self) {
        self.undo.clear();
    }

    /// Takes back what the last successful [`LogIndexMap::check_apply_appends`] applied
    /// (its record could not be written). Call it before any other change to the index.
    pub(crate) fn undo_appends(&mut self) {
        while let Some(step) = self.undo.pop() {
            match step {
                UndoStep::Created(group) => {
                    self.groups.remove(&group);
                }
                UndoStep::Run {
                    group,
                    first_index,
                    len,
                    marks,
                } => {
                    let log = self.groups.get_mut(&group).expect("undone in reverse");
                    log.slots.keep_first(len);
                    log.marks.truncate(marks);
                    log.first_index = first_index;
                    log.check_invariants();
                }
                UndoStep::HardState {
                    group,
                    hard_state,
                    segment,
                } => {
                    let log = self.groups.get_mut(&group).expect("undone in reverse");
                    log.hard_state = hard_state;
                    log.hard_state_segment = segment;
                }
            }
        }
    }

    fn apply_appends_with<'a>(
        &mut self,
        chunks: impl Iterator<Item = Result<Chunk<'a>, DecodeError>>,
        segment: SegmentId,
        body_offset: u64,
        undo: &mut Vec<UndoStep>,
    ) -> Result<(), Invalid> {
        let mut previous: Option<GroupId> = None;
        for chunk in chunks {
            let chunk = chunk.map_err(|e| undecodable(previous, &e))?;
            let group = super::chunk_group(&chunk);
            previous = Some(group);
            let log = match self.groups.entry(group) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    undo.push(UndoStep::Created(group));
                    entry.insert(GroupLog::default())
                }
            };
            match chunk {
                Chunk::Run {
                    term,
                    first_index,
                    count,
                    offset,
                    entries,
                    ..
                } => {
                    run_follows(group, log.last_index(), first_index, count)?;
                    undo.push(UndoStep::Run {
                        group,
                        first_index: log.first_index,
                        len: log.slots.len(),
                        marks: log.marks.len(),
                    });
                    let entries_offset = body_offset + offset as u64;
                    log.append_run(first_index, term, segment, entries_offset, count, entries);
                    if cfg!(debug_assertions) {
                        log.check_invariants();
                    }
                }
                Chunk::Op(Op::HardState { hard_state, .. }) => {
                    undo.push(UndoStep::HardState {
                        group,
                        hard_state: log.hard_state,
                        segment: log.hard_state_segment,
                    });
                    log.hard_state = Some(hard_state);
                    log.hard_state_segment = Some(segment);
                }
                Chunk::Op(op) => panic!("a batch of appends holds {op:?}"),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::WriteBatch;
    use crate::format::BodyReader;
    use crate::ids::Term;

    fn snapshot(map: &LogIndexMap) -> Vec<String> {
        map.describe()
    }

    fn apply(map: &mut LogIndexMap, batch: &WriteBatch, segment: u64) -> Result<(), Invalid> {
        let chunks = BodyReader::batch_chunks(batch.body(), batch.run_ends());
        map.check_apply_appends(chunks, SegmentId(segment), 4096)
    }

    fn hard_state(term: u64) -> HardState {
        HardState {
            term: Term(term),
            vote: 1,
            commit: LogIndex(1),
        }
    }

    /// Group 1 holds entries 1..=3 (term 1) and a hard state; group 2 only a hard state.
    fn populated() -> LogIndexMap {
        let mut map = LogIndexMap::default();
        let mut batch = WriteBatch::new();
        for index in 1..=3 {
            batch.add_entry(GroupId(1), LogIndex(index), Term(1), b"abc");
        }
        batch.set_hard_state(GroupId(1), hard_state(1));
        batch.set_hard_state(GroupId(2), hard_state(1));
        apply(&mut map, &batch, 1).unwrap_or_else(|e| panic!("{}", e.reason));
        map
    }

    #[test]
    fn an_invalid_run_takes_back_everything_the_batch_applied() {
        let mut map = populated();
        let before = snapshot(&map);
        let mut batch = WriteBatch::new();
        // A new term for group 1 (a new run mark), hard states old and new, a new group,
        // then a gap in group 1.
        batch.add_entry(GroupId(1), LogIndex(4), Term(2), b"d");
        batch.set_hard_state(GroupId(2), hard_state(5));
        batch.set_hard_state(GroupId(3), hard_state(5));
        batch.add_entry(GroupId(4), LogIndex(1), Term(1), b"e");
        batch.add_entry(GroupId(1), LogIndex(5), Term(2), b"f");
        batch.add_entry(GroupId(3), LogIndex(1), Term(1), b"g");
        batch.add_entry(GroupId(1), LogIndex(7), Term(2), b"gap");
        let invalid = apply(&mut map, &batch, 2).expect_err("a gap is refused");
        assert_eq!(invalid.group, GroupId(1));
        assert!(
            invalid.reason.contains("does not follow the last index 5"),
            "{}",
            invalid.reason
        );
        assert_eq!(snapshot(&map), before);
    }

    #[test]
    fn a_refused_first_run_of_a_new_group_leaves_no_group_behind() {
        let mut map = populated();
        let before = snapshot(&map);
        let mut batch = WriteBatch::new();
        batch.add_entry(GroupId(9), LogIndex(2), Term(1), b"x");
        assert!(apply(&mut map, &batch, 2).is_err());
        assert_eq!(snapshot(&map), before);
        assert!(map.group(GroupId(9)).is_none());
    }

    #[test]
    fn undecodable_runs_are_refused_and_taken_back() {
        let mut map = populated();
        let before = snapshot(&map);
        let mut zero = WriteBatch::new();
        zero.add_entry(GroupId(1), LogIndex(4), Term(1), b"x");
        zero.add_entry(GroupId(5), LogIndex(0), Term(1), b"x");
        let invalid = apply(&mut map, &zero, 2).expect_err("index 0 is refused");
        assert!(
            invalid.reason.contains("does not decode"),
            "{}",
            invalid.reason
        );
        assert_eq!(snapshot(&map), before);

        let mut fresh = LogIndexMap::default();
        let mut compacted = WriteBatch::new();
        compacted.compact(GroupId(1), LogIndex(u64::MAX - 2));
        fresh
            .apply_all(
                BodyReader::batch_chunks(compacted.body(), compacted.run_ends()),
                SegmentId(1),
                4096,
                super::super::Mode::Submit,
            )
            .unwrap_or_else(|e| panic!("{}", e.reason));
        let before = snapshot(&fresh);
        let mut last = WriteBatch::new();
        last.add_entry(GroupId(1), LogIndex(u64::MAX - 1), Term(1), b"x");
        last.add_entry(GroupId(1), LogIndex(u64::MAX), Term(1), b"x");
        let invalid = apply(&mut fresh, &last, 2).expect_err("u64::MAX is refused");
        assert!(invalid.reason.contains("overflows"), "{}", invalid.reason);
        assert_eq!(snapshot(&fresh), before);
    }

    #[test]
    fn undo_takes_back_a_whole_applied_batch() {
        let mut map = populated();
        let before = snapshot(&map);
        let mut batch = WriteBatch::new();
        batch.add_entry(GroupId(1), LogIndex(4), Term(3), b"d");
        batch.set_hard_state(GroupId(1), hard_state(3));
        batch.add_entry(GroupId(6), LogIndex(1), Term(1), b"e");
        batch.add_entry(GroupId(1), LogIndex(5), Term(3), b"f");
        apply(&mut map, &batch, 2).unwrap_or_else(|e| panic!("{}", e.reason));
        let applied = snapshot(&map);
        assert_ne!(applied, before);
        map.undo_appends();
        assert_eq!(snapshot(&map), before);
        // Applied again, the batch leaves the index as the first time.
        apply(&mut map, &batch, 2).unwrap_or_else(|e| panic!("{}", e.reason));
        assert_eq!(snapshot(&map), applied);
    }
}
