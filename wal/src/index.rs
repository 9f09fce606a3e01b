//! The in-memory index: for every group, where each live entry lies and what state the log
//! holds for it (hard state, compaction mark).
//!
//! The index is rebuilt by recovery and updated by every submitted batch, through the same
//! [`LogIndexMap::apply`]. [`LogIndexMap::check`] validates a batch before it is written, so
//! that an invalid batch changes neither the file nor the index.
//!
//! # Invariants
//! - A group's live entries are contiguous: `entries[k]` holds index `first_index + k`.
//! - Every live entry is above the group's compaction mark.
//! - Entry locations are in non-decreasing segment order (a group's log is written in
//!   index order), so the first live entry names the oldest segment the group's entries
//!   still need.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use crate::format::{DecodeError, Op};
use crate::ids::{GroupId, HardState, LogIndex, SegmentId, Term};

/// Where one entry's payload lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EntryLoc {
    pub(crate) term: Term,
    pub(crate) segment: SegmentId,
    /// Offset of the payload in the segment file.
    pub(crate) offset: u32,
    pub(crate) len: u32,
}

impl EntryLoc {
    /// The location of an entry whose payload starts `payload_offset` bytes into a record
    /// body at file offset `body_offset` of `segment`.
    fn new(
        term: Term,
        segment: SegmentId,
        body_offset: u64,
        payload_offset: usize,
        payload: &[u8],
    ) -> EntryLoc {
        let offset = body_offset + payload_offset as u64;
        EntryLoc {
            term,
            segment,
            offset: u32::try_from(offset).expect("segment offsets fit in u32"),
            len: u32::try_from(payload.len()).expect("payload fits in a segment"),
        }
    }
}

/// What the log holds for one group.
#[derive(Default)]
pub(crate) struct GroupLog {
    /// Index of `entries[0]` (when there are entries).
    first_index: LogIndex,
    entries: VecDeque<EntryLoc>,
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
        if self.entries.is_empty() {
            self.compacted_through
        } else {
            LogIndex(self.first_index.0 + self.entries.len() as u64 - 1)
        }
    }

    pub(crate) fn state(&self) -> GroupState {
        GroupState {
            first_index: if self.entries.is_empty() {
                self.compacted_through.next()
            } else {
                self.first_index
            },
            last_index: self.last_index(),
            compacted_through: self.compacted_through,
            hard_state: self.hard_state,
        }
    }

    pub(crate) fn entry(&self, index: LogIndex) -> Option<&EntryLoc> {
        let slot = index.0.checked_sub(self.first_index.0)?;
        self.entries.get(usize::try_from(slot).ok()?)
    }

    /// The oldest segment this group still needs, and whether only for metadata (hard
    /// state or compaction mark) rather than for entries.
    fn oldest_segment(&self) -> Option<(SegmentId, bool)> {
        let entries = self.entries.front().map(|loc| (loc.segment, false));
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
        if let Some(front) = self.entries.front() {
            assert!(
                self.first_index > self.compacted_through,
                "live entry at or below mark"
            );
            let back = self.entries.back().expect("non-empty");
            assert!(
                front.segment <= back.segment,
                "entries out of segment order"
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

/// How [`LogIndexMap::apply`] treats an entry that does not continue a group's log.
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

    /// Checks that the operations of a batch, applied in order, keep every group's log
    /// contiguous, without changing anything.
    pub(crate) fn check<'a>(
        &self,
        ops: impl Iterator<Item = Result<Op<'a>, DecodeError>>,
    ) -> Result<(), Invalid> {
        // The last index and compaction mark of each group touched, as the batch leaves them.
        let mut touched: GroupMap<(LogIndex, LogIndex)> = GroupMap::default();
        // The group of the previous operation, kept out of the map: consecutive operations
        // of one group (an entries run) cost no lookup.
        let mut current: Option<(GroupId, LogIndex, LogIndex)> = None;
        for op in ops {
            // A batch the decoder refuses (an index 0, a run that overflows) is invalid.
            let op = op.map_err(|e| Invalid {
                group: current.map_or(GroupId(0), |(g, _, _)| g),
                reason: format!("the batch does not decode: {e}"),
            })?;
            let group = op_group(&op);
            if current.is_none_or(|(g, _, _)| g != group) {
                if let Some((g, last, mark)) = current {
                    touched.insert(g, (last, mark));
                }
                let (last, mark) = touched.get(&group).copied().unwrap_or_else(|| {
                    self.groups
                        .get(&group)
                        .map_or((LogIndex(0), LogIndex(0)), |log| {
                            (log.last_index(), log.compacted_through)
                        })
                });
                current = Some((group, last, mark));
            }
            let (_, last, mark) = current.as_mut().expect("set above");
            match op {
                Op::Entry { index, .. } => {
                    if index.0 == u64::MAX {
                        return Err(Invalid {
                            group,
                            reason: "entry index u64::MAX".to_string(),
                        });
                    }
                    if index != last.next() {
                        return Err(Invalid {
                            group,
                            reason: format!(
                                "entry index {index} does not follow the last index {last} \
                                 (truncate first to overwrite)"
                            ),
                        });
                    }
                    *last = index;
                }
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

    /// Applies the operations of a record written in `segment` at `body_offset` (the file
    /// offset of the record's body), in order. Consecutive entries of one group are
    /// appended together, with one lookup. On error, the operations before the failing one
    /// stay applied.
    pub(crate) fn apply_all<'a>(
        &mut self,
        ops: impl Iterator<Item = Op<'a>>,
        segment: SegmentId,
        body_offset: u64,
        mode: Mode,
    ) -> Result<(), Invalid> {
        // The group of the previous entry and its log: consecutive entries of one group
        // (an entries run) cost one lookup.
        let mut current: Option<(GroupId, &mut GroupLog)> = None;
        for op in ops {
            let Op::Entry {
                group,
                index,
                term,
                payload_offset,
                payload,
            } = op
            else {
                current = None;
                self.apply(&op, segment, body_offset, mode)?;
                continue;
            };
            let loc = EntryLoc::new(term, segment, body_offset, payload_offset, payload);
            if let Some((g, log)) = current.as_mut()
                && *g == group
                && log.last_index().next() == index
            {
                log.entries.push_back(loc);
                continue;
            }
            // The previous group's borrow ends here: `start_entry` borrows the map again.
            let log = start_entry(&mut self.groups, group, index, mode)?;
            log.entries.push_back(loc);
            current = Some((group, log));
        }
        Ok(())
    }

    /// Applies one operation of a record written in `segment` at `body_offset` (the file
    /// offset of the record's body).
    pub(crate) fn apply(
        &mut self,
        op: &Op<'_>,
        segment: SegmentId,
        body_offset: u64,
        mode: Mode,
    ) -> Result<(), Invalid> {
        let group = op_group(op);
        match *op {
            Op::DropGroup { .. } => {
                self.groups.remove(&group);
                return Ok(());
            }
            Op::Entry {
                index,
                term,
                payload_offset,
                payload,
                ..
            } => {
                let loc = EntryLoc::new(term, segment, body_offset, payload_offset, payload);
                start_entry(&mut self.groups, group, index, mode)?
                    .entries
                    .push_back(loc);
                return Ok(());
            }
            _ => {}
        }
        let log = self.groups.entry(group).or_default();
        match *op {
            Op::Entry { .. } => unreachable!("handled above"),
            Op::HardState { hard_state, .. } => {
                log.hard_state = Some(hard_state);
                log.hard_state_segment = Some(segment);
            }
            Op::Truncate { from, .. } => {
                if !log.entries.is_empty() && from >= log.first_index {
                    let keep = from.0 - log.first_index.0;
                    log.entries
                        .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
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
                    log.entries.clear();
                    log.compacted_through = LogIndex(from.0 - 1);
                } else if from <= log.first_index {
                    log.entries.clear();
                }
            }
            Op::Compact { through, .. } => {
                if through > log.compacted_through {
                    log.compacted_through = through;
                    while log.entries.front().is_some() && log.first_index <= through {
                        log.entries.pop_front();
                        log.first_index = log.first_index.next();
                    }
                    if log.entries.is_empty() {
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
            if let Some(front) = log.entries.front() {
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
/// ready for the push.
fn start_entry(
    groups: &mut GroupMap<GroupLog>,
    group: GroupId,
    index: LogIndex,
    mode: Mode,
) -> Result<&mut GroupLog, Invalid> {
    let log = groups.entry(group).or_default();
    log.check_invariants();
    let expected = log.last_index().next();
    if index != expected {
        if mode == Mode::Recover && log.entries.is_empty() && index > expected {
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
    if log.entries.is_empty() {
        log.first_index = index;
    }
    Ok(log)
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
