//! The in-memory index: for every group, where each live entry lies and what state the log
//! holds for it (hard state, compaction mark).
//!
//! The index is rebuilt by recovery and updated by every submitted batch. Recovery and
//! batches that truncate, compact or drop a group go through [`LogIndexMap::apply_all`],
//! after [`LogIndexMap::check`] validated the whole batch before it was written. Batches of
//! appends only (entries and hard states, most of them) are checked and applied in one
//! pass with an undo log (`appends`). Either way an invalid batch changes neither the file
//! nor the index.
//!
//! A group's entries cost 4 bytes each (where the payload lies in its segment; its length
//! is the entry's length field just before it in the file); their term and segment are
//! kept once per run of entries that share both (`RunMark`), since a group's log changes
//! term and segment rarely. Appending a small entry is one 4-byte store, which matters at
//! millions of entries per second: the stores go to a different group's memory every few
//! entries, so their cache misses are most of the index's cost.
//!
//! # Invariants
//! - A group's live entries are contiguous: `slots[k]` holds index `first_index + k`.
//! - Every live entry is above the group's compaction mark.
//! - Marks exist exactly when entries do; the first starts at `first_index`, and their
//!   first indices increase strictly, each within the live entries.
//! - Entry locations are in non-decreasing segment order (a group's log is written in
//!   index order), so the first mark names the oldest segment the group's entries still
//!   need.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use crate::format::{Chunk, DecodeError, Op};
use crate::ids::{GroupId, HardState, LogIndex, SegmentId, Term};

mod appends;
mod slots;

use slots::Slots;

/// Where one entry's payload lies. Its length is the u32 in the 4 bytes before it (the
/// entry's length field in the record), read with the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EntryLoc {
    pub(crate) term: Term,
    pub(crate) segment: SegmentId,
    /// Offset of the payload in the segment file.
    pub(crate) offset: u32,
}

/// From `first_index` up to the next mark, a group's entries have this term and lie in
/// this segment.
#[derive(Clone, Copy, Debug)]
struct RunMark {
    first_index: LogIndex,
    term: Term,
    segment: SegmentId,
}

/// What the log holds for one group.
#[derive(Default)]
pub(crate) struct GroupLog {
    /// Index of `slots[0]` (when there are entries).
    first_index: LogIndex,
    slots: Slots,
    marks: VecDeque<RunMark>,
    /// Entries at and below this index were compacted.
    compacted_through: LogIndex,
    /// Segment holding the record of the current compaction mark.
    compact_segment: Option<SegmentId>,
    hard_state: Option<HardState>,
    /// Segment holding the record of the current hard state.
    hard_state_segment: Option<SegmentId>,
}

/// The state of one group as the log holds it, returned by `Wal::group`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupState {
    /// First index held (the compaction mark + 1 when the group holds no entries).
    pub first_index: LogIndex,
    /// Last index held (the compaction mark when the group holds no entries).
    pub last_index: LogIndex,
    /// Entries at and below this index were compacted.
    pub compacted_through: LogIndex,
    /// The last hard state written, if any.
    pub hard_state: Option<HardState>,
}

impl GroupLog {
    fn last_index(&self) -> LogIndex {
        if self.slots.is_empty() {
            self.compacted_through
        } else {
            LogIndex(self.first_index.0 + self.slots.len() as u64 - 1)
        }
    }

    fn has_entries(&self) -> bool {
        !self.slots.is_empty()
    }

    /// Appends an entries run that continues this log (the caller checked that it does):
    /// `count` entries from `first_index`, of `term`, whose bytes `entries` lie at file
    /// offset `entries_offset` of `segment`.
    fn append_run(
        &mut self,
        first_index: LogIndex,
        term: Term,
        segment: SegmentId,
        entries_offset: u64,
        count: u32,
        entries: &[u8],
    ) {
        if !self.has_entries() {
            self.first_index = first_index;
        }
        let same_run = self
            .marks
            .back()
            .is_some_and(|mark| mark.term == term && mark.segment == segment);
        if !same_run {
            self.marks.push_back(RunMark {
                first_index,
                term,
                segment,
            });
        }
        let entries_offset = u32::try_from(entries_offset).expect("segment offsets fit in u32");
        self.slots.push_run(entries, count, entries_offset);
    }

    /// Keeps the first `keep` live entries.
    fn keep_first(&mut self, keep: u64) {
        self.slots
            .keep_first(usize::try_from(keep).unwrap_or(usize::MAX));
        let end = LogIndex(self.first_index.0 + self.slots.len() as u64);
        while self
            .marks
            .back()
            .is_some_and(|mark| mark.first_index >= end)
        {
            self.marks.pop_back();
        }
    }

    /// Drops every live entry.
    fn clear_entries(&mut self) {
        self.slots.clear();
        self.marks.clear();
    }

    /// Drops the live entries at and below `through`.
    fn drop_through(&mut self, through: LogIndex) {
        if through < self.first_index || !self.has_entries() {
            return;
        }
        let count = through.0 - self.first_index.0 + 1;
        if count >= self.slots.len() as u64 {
            self.clear_entries();
            return;
        }
        self.slots
            .drop_first(usize::try_from(count).expect("fewer than the live entries"));
        self.first_index = through.next();
        while self
            .marks
            .get(1)
            .is_some_and(|next| next.first_index <= self.first_index)
        {
            self.marks.pop_front();
        }
        self.marks
            .front_mut()
            .expect("marks exist while entries do")
            .first_index = self.first_index;
    }

    pub(crate) fn state(&self) -> GroupState {
        GroupState {
            first_index: if self.slots.is_empty() {
                self.compacted_through.next()
            } else {
                self.first_index
            },
            last_index: self.last_index(),
            compacted_through: self.compacted_through,
            hard_state: self.hard_state,
        }
    }

    pub(crate) fn entry(&self, index: LogIndex) -> Option<EntryLoc> {
        let at = index.0.checked_sub(self.first_index.0)?;
        let slot = self.slots.get(usize::try_from(at).ok()?)?;
        let run = self.marks.partition_point(|mark| mark.first_index <= index);
        let mark = self.marks[run.checked_sub(1)?];
        Some(EntryLoc {
            term: mark.term,
            segment: mark.segment,
            offset: slot.offset,
        })
    }

    /// The oldest segment this group still needs, and whether only for metadata (hard
    /// state or compaction mark) rather than for entries.
    fn oldest_segment(&self) -> Option<(SegmentId, bool)> {
        let entries = self.marks.front().map(|mark| (mark.segment, false));
        let meta = [self.hard_state_segment, self.compact_segment]
            .into_iter()
            .flatten()
            .min();
        match (entries, meta) {
            (Some(e), Some(m)) if m < e.0 => Some((m, true)),
            (Some(e), _) => Some(e),
            (None, Some(m)) => Some((m, true)),
            (None, None) => None,
        }
    }

    fn check_invariants(&self) {
        assert_eq!(
            self.marks.is_empty(),
            self.slots.is_empty(),
            "run marks exist exactly when entries do"
        );
        if let Some(front) = self.marks.front() {
            assert!(
                self.first_index > self.compacted_through,
                "live entry at or below mark"
            );
            assert_eq!(front.first_index, self.first_index, "first mark misplaced");
            let back = self.marks.back().expect("non-empty");
            assert!(
                front.segment <= back.segment,
                "entries out of segment order"
            );
            assert!(
                back.first_index <= self.last_index(),
                "mark past the entries"
            );
        }
    }
}

/// A multiplicative hasher for group ids: a lookup per entry is on the append path, and
/// group ids need no protection against chosen collisions (they come from the embedder,
/// not the network).
#[derive(Default)]
pub(crate) struct GroupIdHasher(u64);

impl Hasher for GroupIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(u64::from(*byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type GroupMap<V> = HashMap<GroupId, V, BuildHasherDefault<GroupIdHasher>>;

/// How [`LogIndexMap::apply_all`] treats an entry that does not continue a group's log.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A new batch: it was checked first, a gap is a bug.
    Submit,
    /// Replaying the log: the first entry seen for a group may start anywhere (its earlier
    /// entries were compacted and their segments collected); a gap after that is corruption.
    Recover,
}

/// The index of all groups.
#[derive(Default)]
pub(crate) struct LogIndexMap {
    groups: GroupMap<GroupLog>,
    /// `check`'s scratch map, kept to reuse its allocation.
    touched: GroupMap<(LogIndex, LogIndex)>,
    /// What the last one-pass batch changed (see `appends`).
    undo: Vec<appends::UndoStep>,
}

/// How a batch breaks the log's rules.
pub(crate) struct Invalid {
    pub(crate) group: GroupId,
    pub(crate) reason: String,
}

impl LogIndexMap {
    pub(crate) fn group(&self, group: GroupId) -> Option<&GroupLog> {
        self.groups.get(&group)
    }

    pub(crate) fn groups(&self) -> impl Iterator<Item = (GroupId, &GroupLog)> {
        self.groups.iter().map(|(id, log)| (*id, log))
    }

    /// Everything the index holds, one line per group in group order: for tests that
    /// compare two indexes, or an index before and after.
    pub(crate) fn describe(&self) -> Vec<String> {
        let mut groups: Vec<(GroupId, String)> = self
            .groups()
            .map(|(id, log)| {
                let state = log.state();
                let entries: Vec<_> = (state.first_index.0..=state.last_index.0)
                    .map(|index| log.entry(LogIndex(index)))
                    .collect();
                let line = format!(
                    "{id}: {state:?} first {} marks {:?} entries {entries:?} segments {:?} {:?}",
                    log.first_index, log.marks, log.hard_state_segment, log.compact_segment
                );
                (id, line)
            })
            .collect();
        groups.sort_by_key(|(id, _)| *id);
        groups.into_iter().map(|(_, line)| line).collect()
    }

    /// Checks that the operations of a batch, applied in order, decode and keep every
    /// group's log contiguous, without changing anything.
    pub(crate) fn check<'a>(
        &mut self,
        chunks: impl Iterator<Item = Result<Chunk<'a>, DecodeError>>,
    ) -> Result<(), Invalid> {
        // The last index and compaction mark of each group touched, as the batch leaves them.
        let mut touched = std::mem::take(&mut self.touched);
        touched.clear();
        let verdict = self.check_with(chunks, &mut touched);
        self.touched = touched;
        verdict
    }

    fn check_with<'a>(
        &self,
        chunks: impl Iterator<Item = Result<Chunk<'a>, DecodeError>>,
        touched: &mut GroupMap<(LogIndex, LogIndex)>,
    ) -> Result<(), Invalid> {
        // The group of the previous operation and its state in `touched`: consecutive
        // operations of one group (an entries run) cost no lookup, a switch costs one.
        let mut current: Option<(GroupId, &mut (LogIndex, LogIndex))> = None;
        for chunk in chunks {
            // A batch the decoder refuses (an index 0, a run that overflows) is invalid.
            let chunk = chunk.map_err(|e| undecodable(current.as_ref().map(|(g, _)| *g), &e))?;
            let group = chunk_group(&chunk);
            if current.as_ref().is_none_or(|(g, _)| *g != group) {
                let state = touched.entry(group).or_insert_with(|| {
                    self.groups
                        .get(&group)
                        .map_or((LogIndex(0), LogIndex(0)), |log| {
                            (log.last_index(), log.compacted_through)
                        })
                });
                current = Some((group, state));
            }
            let (_, (last, mark)) = current.as_mut().expect("set above");
            let op = match chunk {
                Chunk::Run {
                    first_index, count, ..
                } => {
                    *last = run_follows(group, *last, first_index, count)?;
                    continue;
                }
                Chunk::Op(op) => op,
            };
            match op {
                Op::Entry { .. } => unreachable!("entries come as runs"),
                Op::Truncate { from, .. } => {
                    if from <= *mark {
                        return Err(Invalid {
                            group,
                            reason: format!(
                                "truncation from {from} reaches compacted index {mark}"
                            ),
                        });
                    }
                    if from <= *last {
                        *last = LogIndex(from.0 - 1);
                    }
                }
                Op::Compact { through, .. } => {
                    if through.0 == u64::MAX {
                        return Err(Invalid {
                            group,
                            reason: "compaction through u64::MAX".to_string(),
                        });
                    }
                    if through > *mark {
                        *mark = through;
                        if *last < through {
                            *last = through;
                        }
                    }
                }
                Op::DropGroup { .. } => {
                    *last = LogIndex(0);
                    *mark = LogIndex(0);
                }
                Op::HardState { .. } => {}
            }
        }
        Ok(())
    }

    /// Applies the operations of a record body (already checked, or verified by recovery)
    /// written in `segment` at `body_offset` (the file offset of the body), in order. An
    /// entries run costs one lookup and, per entry, a length read and a 4-byte push. On
    /// error, the operations before the failing one stay applied.
    ///
    /// # Panics
    /// If the body does not decode: callers decode it first.
    pub(crate) fn apply_all<'a>(
        &mut self,
        chunks: impl Iterator<Item = Result<Chunk<'a>, DecodeError>>,
        segment: SegmentId,
        body_offset: u64,
        mode: Mode,
    ) -> Result<(), Invalid> {
        for chunk in chunks {
            match chunk.expect("the body was decoded before it is applied") {
                Chunk::Op(op) => self.apply(&op, segment, mode)?,
                Chunk::Run {
                    group,
                    term,
                    first_index,
                    count,
                    offset,
                    entries,
                } => {
                    let log = start_entry(&mut self.groups, group, first_index, mode)?;
                    let entries_offset = body_offset + offset as u64;
                    log.append_run(first_index, term, segment, entries_offset, count, entries);
                }
            }
        }
        Ok(())
    }

    /// Applies one operation other than an entry (entries come as runs, see
    /// [`LogIndexMap::apply_all`]) of a record written in `segment`.
    fn apply(&mut self, op: &Op<'_>, segment: SegmentId, mode: Mode) -> Result<(), Invalid> {
        let group = op_group(op);
        if let Op::DropGroup { .. } = op {
            self.groups.remove(&group);
            return Ok(());
        }
        let log = self.groups.entry(group).or_default();
        match *op {
            Op::Entry { .. } => unreachable!("entries come as runs"),
            Op::HardState { hard_state, .. } => {
                log.hard_state = Some(hard_state);
                log.hard_state_segment = Some(segment);
            }
            Op::Truncate { from, .. } => {
                if log.has_entries() && from >= log.first_index {
                    log.keep_first(from.0 - log.first_index.0);
                } else if from <= log.compacted_through {
                    if mode == Mode::Submit {
                        return Err(Invalid {
                            group,
                            reason: format!("truncation from {from} reaches the compacted log"),
                        });
                    }
                    // Replaying a log whose older segments were collected: the mark was
                    // implied by the first entry seen, and the writer (which checks every
                    // truncation against the real mark) shows it was lower.
                    log.clear_entries();
                    log.compacted_through = LogIndex(from.0 - 1);
                } else if from <= log.first_index {
                    log.clear_entries();
                }
            }
            Op::Compact { through, .. } => {
                if through > log.compacted_through {
                    log.compacted_through = through;
                    log.drop_through(through);
                    if !log.has_entries() {
                        log.first_index = through.next();
                    }
                }
                // A lower mark changes nothing and must not move the pin: the record of the
                // higher mark is still the one recovery needs.
                if through >= log.compacted_through {
                    log.compact_segment = Some(segment);
                }
            }
            Op::DropGroup { .. } => unreachable!("handled above"),
        }
        log.check_invariants();
        Ok(())
    }

    /// The oldest segment any group still needs for its entries, and the groups that hold
    /// older segments only through their hard state or compaction mark (these can be
    /// rewritten into the current segment to release the old ones).
    pub(crate) fn pins(&self) -> (Option<SegmentId>, Vec<(GroupId, SegmentId)>) {
        let mut oldest_entries: Option<SegmentId> = None;
        let mut metadata = Vec::new();
        for (group, log) in &self.groups {
            if let Some(front) = log.marks.front() {
                oldest_entries =
                    Some(oldest_entries.map_or(front.segment, |s| s.min(front.segment)));
            }
            if let Some((segment, true)) = log.oldest_segment() {
                metadata.push((*group, segment));
            }
        }
        (oldest_entries, metadata)
    }

    /// The metadata to rewrite for `group` so that it no longer needs old segments.
    pub(crate) fn metadata(&self, group: GroupId) -> (Option<HardState>, LogIndex) {
        self.groups.get(&group).map_or((None, LogIndex(0)), |log| {
            (log.hard_state, log.compacted_through)
        })
    }
}

/// Checks that an entry at `index` may be appended to `group`'s log and returns the log,
/// ready for `append_run`.
fn start_entry(
    groups: &mut GroupMap<GroupLog>,
    group: GroupId,
    index: LogIndex,
    mode: Mode,
) -> Result<&mut GroupLog, Invalid> {
    let log = groups.entry(group).or_default();
    // Appends keep the invariants by construction (tests check them here); the operations
    // that restructure a group's log check them after every change, in release builds too.
    if cfg!(debug_assertions) {
        log.check_invariants();
    }
    let expected = log.last_index().next();
    if index != expected {
        if mode == Mode::Recover && !log.has_entries() && index > expected {
            // Earlier entries were compacted and their segments collected; the mark is
            // rewritten later in the log, or implied here.
            log.compacted_through = LogIndex(index.0 - 1);
        } else {
            return Err(Invalid {
                group,
                reason: format!("entry index {index}, expected {expected}"),
            });
        }
    }
    Ok(log)
}

/// Checks that an entries run of `count` entries from `first_index` continues `group`'s
/// log, whose last index is `last`; returns the run's last index.
///
/// This keeps the first invariant (module docs): a group's live entries are contiguous,
/// so an entry is found at exactly the index it was appended at, which Raft's Log Matching
/// rests on.
fn run_follows(
    group: GroupId,
    last: LogIndex,
    first_index: LogIndex,
    count: u32,
) -> Result<LogIndex, Invalid> {
    if first_index != last.next() {
        return Err(Invalid {
            group,
            reason: format!(
                "entry index {first_index} does not follow the last index {last} (truncate \
                 first to overwrite)"
            ),
        });
    }
    // The decoder refused runs whose next index would overflow (so index u64::MAX, which
    // has no successor, is never appended): no overflow here.
    Ok(LogIndex(first_index.0 + u64::from(count) - 1))
}

/// The invalidity of a batch the decoder refuses, found while at `group`'s operations.
fn undecodable(group: Option<GroupId>, error: &DecodeError) -> Invalid {
    Invalid {
        group: group.unwrap_or(GroupId(0)),
        reason: format!("the batch does not decode: {error}"),
    }
}

fn chunk_group(chunk: &Chunk<'_>) -> GroupId {
    match chunk {
        Chunk::Run { group, .. } => *group,
        Chunk::Op(op) => op_group(op),
    }
}

fn op_group(op: &Op<'_>) -> GroupId {
    match *op {
        Op::Entry { group, .. }
        | Op::HardState { group, .. }
        | Op::Truncate { group, .. }
        | Op::Compact { group, .. }
        | Op::DropGroup { group } => group,
    }
}
