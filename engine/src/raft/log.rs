//! The Raft log of one replica, in memory: entries, and how far they are committed,
//! durable, handed out for persistence and for apply.
//!
//! The log never touches storage. The driver persists what `RaftGroup::poll_ready` hands out
//! and reports back; restart rebuilds the log from what the driver had persisted.
//!
//! Applied, durable entries beyond a cache bound are evicted from memory (`evict`); only
//! their terms stay (`evicted.rs`), and a leader asks the driver to read them back from
//! storage when a follower needs them (`Ready::fetches`).
//!
//! Below the evicted entries is the log's base: everything through it was compacted into a
//! snapshot (`compact` on the leader's own snapshot, `install_snapshot` for one received),
//! and only the base's index and term are known.
//!
//! # Invariants
//! - Entries are contiguous from `first_index` to `last_index`, with non-decreasing terms;
//!   `(base, first_index)` is evicted, and holds only entries both applied and durable.
//! - `base <= applied`: the snapshot covers only applied state.
//! - `applied <= applying <= committed`, and `applying <= persisted` (only durable entries
//!   are applied).
//! - `persisted <= last_index` and `unstable_from <= last_index + 1`; every entry below
//!   `unstable_from` was handed to the driver.
//! - `committed <= last_index`; a committed entry is never truncated.

use std::collections::VecDeque;

use crate::raft::evicted::EvictedTerms;
use crate::raft::types::{Entry, LogIndex, Term};

/// One replica's log and its watermarks.
#[derive(Debug)]
pub(crate) struct RaftLog {
    /// `entries[k]` has index `first_index + k`.
    entries: VecDeque<Entry>,
    /// The index of `entries[0]`: everything below is evicted.
    first_index: LogIndex,
    /// The terms of the evicted entries.
    evicted: EvictedTerms,
    /// The bytes of the entries held in memory (`Entry::size_bytes`).
    bytes: usize,
    /// The highest index known committed.
    pub(crate) committed: LogIndex,
    /// The highest index known durable on this replica (and matching what was handed out).
    pub(crate) persisted: LogIndex,
    /// The first index not yet handed to the driver for persistence.
    pub(crate) unstable_from: LogIndex,
    /// The highest index handed to the driver for apply.
    pub(crate) applying: LogIndex,
    /// The highest index the driver reported applied.
    pub(crate) applied: LogIndex,
}

impl RaftLog {
    /// A log whose base is (`base`, `base_term`) (index 0 of term 0 for a log never
    /// compacted) holding `entries` (contiguous from `base + 1`), all of them already
    /// durable, with `committed` and `applied` as recovered (both at least the base).
    pub(crate) fn restore(
        (base, base_term): (LogIndex, Term),
        entries: Vec<Entry>,
        committed: LogIndex,
        applied: LogIndex,
    ) -> RaftLog {
        let entries = VecDeque::from(entries);
        for (slot, entry) in entries.iter().enumerate() {
            assert_eq!(
                entry.index.0,
                base.0 + slot as u64 + 1,
                "restored entries not contiguous from the base"
            );
        }
        let last_index = LogIndex(base.0 + entries.len() as u64);
        let committed = committed.clamp(base, last_index);
        let applied = applied.clamp(base, committed);
        let bytes = entries.iter().map(Entry::size_bytes).sum();
        let log = RaftLog {
            entries,
            first_index: base.next(),
            evicted: EvictedTerms::new(base, base_term),
            bytes,
            committed,
            persisted: last_index,
            unstable_from: last_index.next(),
            applying: applied,
            applied,
        };
        log.check_invariants();
        log
    }

    /// The index of the last entry (0 when empty).
    pub(crate) fn last_index(&self) -> LogIndex {
        LogIndex(self.first_index.0 + self.entries.len() as u64 - 1)
    }

    /// The term of the last entry (0 when empty), in memory or evicted.
    pub(crate) fn last_term(&self) -> Term {
        match self.entries.back() {
            Some(entry) => entry.term,
            None => self
                .evicted
                .term(self.first_index.prev())
                .unwrap_or(Term(0)),
        }
    }

    /// The first index held in memory; entries below it must be fetched from storage.
    pub(crate) fn first_index(&self) -> LogIndex {
        self.first_index
    }

    /// The base: the last index compacted into a snapshot, and its term.
    pub(crate) fn base(&self) -> (LogIndex, Term) {
        self.evicted.base()
    }

    /// The term of the entry at `index`, in memory, evicted or the base's (`Some(Term(0))`
    /// for index 0 of a log never compacted); `None` past the end or below the base.
    pub(crate) fn term(&self, index: LogIndex) -> Option<Term> {
        if index < self.first_index {
            return self.evicted.term(index);
        }
        self.entry(index).map(|entry| entry.term)
    }

    /// The entry at `index`, if held in memory.
    pub(crate) fn entry(&self, index: LogIndex) -> Option<&Entry> {
        let slot = index.0.checked_sub(self.first_index.0)?;
        self.entries.get(usize::try_from(slot).ok()?)
    }

    /// Entries from `from` on, at most `count_max` of them and about `bytes_max` bytes (at
    /// least one if any exists).
    pub(crate) fn entries_from(
        &self,
        from: LogIndex,
        count_max: usize,
        bytes_max: usize,
    ) -> (Vec<Entry>, usize) {
        let mut bytes = 0;
        let Some(slot) = from.0.checked_sub(self.first_index.0) else {
            return (Vec::new(), bytes);
        };
        let Ok(slot) = usize::try_from(slot) else {
            return (Vec::new(), bytes);
        };
        let slot = slot.min(self.entries.len());
        // Sized once: growing the vector entry by entry cost more than the clones.
        let mut out = Vec::with_capacity((self.entries.len() - slot).min(count_max));
        for entry in self.entries.range(slot..) {
            let size = entry.size_bytes();
            if out.len() >= count_max || (!out.is_empty() && bytes + size > bytes_max) {
                break;
            }
            bytes += size;
            out.push(entry.clone());
        }
        (out, bytes)
    }

    /// Log Matching, Figure 2 "up-to-date" rule (§5.4.1): a candidate's log is at least as
    /// up-to-date as ours if its last term is higher, or equal with an index at least ours.
    pub(crate) fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// The first index holding `term`, searching back from `from` (for conflict hints).
    pub(crate) fn first_index_of_term(&self, term: Term, from: LogIndex) -> LogIndex {
        let mut index = from;
        while index > self.first_index && self.term(index.prev()) == Some(term) {
            index = index.prev();
        }
        if index == self.first_index && self.evicted.term(index.prev()) == Some(term) {
            // No run of `term`: it is the base's term, and the base is as far back as the
            // log knows.
            return self
                .evicted
                .first_index_of(term)
                .unwrap_or(self.evicted.base().0);
        }
        index
    }

    /// The last index holding `term`, if the log has any entry of that term at or below
    /// `at_most`.
    pub(crate) fn last_index_of_term(&self, term: Term, at_most: LogIndex) -> Option<LogIndex> {
        // Terms never decrease along the log, so binary search for the last entry <= term.
        let limit = at_most.min(self.last_index());
        if limit.0 < 1 {
            return None;
        }
        let (mut low, mut high) = (self.evicted.base().0.0.max(1), limit.0);
        if low > high {
            return None;
        }
        if self.term(LogIndex(low))? > term {
            return None;
        }
        while low < high {
            let middle = low + (high - low).div_ceil(2);
            if self.term(LogIndex(middle))? <= term {
                low = middle;
            } else {
                high = middle - 1;
            }
        }
        (self.term(LogIndex(low))? == term).then_some(LogIndex(low))
    }

    /// A leader appends a new entry of its own.
    pub(crate) fn append(&mut self, entry: Entry) {
        assert_eq!(
            entry.index,
            self.last_index().next(),
            "leader append not contiguous"
        );
        assert!(
            entry.term >= self.last_term(),
            "leader append with a lower term"
        );
        self.bytes += entry.size_bytes();
        self.entries.push_back(entry);
    }

    /// Figure 2, AppendEntries receiver rules 2–4: if the log has no entry at `prev_index`
    /// with `prev_term`, returns `None`. Otherwise deletes an existing entry that conflicts
    /// with a new one (same index, different term) and everything after it, appends the new
    /// entries not already in the log, and returns the index of the last new entry.
    pub(crate) fn maybe_append(
        &mut self,
        prev_index: LogIndex,
        prev_term: Term,
        mut entries: Vec<Entry>,
    ) -> Option<LogIndex> {
        if self.term(prev_index) != Some(prev_term) {
            return None;
        }
        let last_new = LogIndex(prev_index.0 + entries.len() as u64);
        let conflict = entries
            .iter()
            .position(|entry| self.term(entry.index) != Some(entry.term));
        if let Some(position) = conflict {
            let from = entries[position].index;
            if from <= self.last_index() {
                self.truncate_from(from);
            }
            // The message is ours: its entries move into the log without a copy.
            self.bytes += entries[position..]
                .iter()
                .map(Entry::size_bytes)
                .sum::<usize>();
            self.entries.extend(entries.drain(position..));
        }
        Some(last_new)
    }

    /// Removes `from` and every entry after it (a conflict with the leader's log).
    fn truncate_from(&mut self, from: LogIndex) {
        // Leader Completeness + State Machine Safety: a committed entry is never overwritten;
        // a leader whose log conflicts with our committed prefix cannot exist.
        assert!(
            from > self.committed,
            "truncating committed entry {from} (commit {})",
            self.committed
        );
        assert!(
            from > self.applying,
            "truncating an entry handed out for apply"
        );
        // Evicted entries are applied, hence committed: the assertion above keeps `from` in
        // memory.
        let keep = usize::try_from(from.0 - self.first_index.0).expect("in-memory log length");
        self.bytes -= self
            .entries
            .range(keep..)
            .map(Entry::size_bytes)
            .sum::<usize>();
        self.entries.truncate(keep);
        self.persisted = self.persisted.min(from.prev());
        self.unstable_from = self.unstable_from.min(from);
    }

    /// Raises the commit index to `index` (never lowers it).
    pub(crate) fn commit_to(&mut self, index: LogIndex) -> bool {
        if index <= self.committed {
            return false;
        }
        assert!(
            index <= self.last_index(),
            "commit {index} beyond last index {}",
            self.last_index()
        );
        self.committed = index;
        true
    }

    /// The entries not yet handed out for persistence; marks them handed out.
    pub(crate) fn take_unstable(&mut self) -> Vec<Entry> {
        let (entries, _) = self.entries_from(self.unstable_from, usize::MAX, usize::MAX);
        self.unstable_from = self.last_index().next();
        entries
    }

    /// The driver persisted everything handed out up to an entry (`index`, `term`): it is
    /// durable if the log still holds that very entry (a later conflict may have replaced it,
    /// in which case a later `Ready` carries the replacement).
    pub(crate) fn on_persisted(&mut self, index: LogIndex, term: Term) -> bool {
        if index > self.persisted && index < self.unstable_from && self.term(index) == Some(term) {
            self.persisted = index;
            return true;
        }
        false
    }

    /// Committed, durable entries not yet handed out for apply (at most `count_max`); marks
    /// them handed out.
    pub(crate) fn take_committed(&mut self, count_max: usize) -> Vec<Entry> {
        let upto = self.committed.min(self.persisted);
        if upto <= self.applying {
            return Vec::new();
        }
        let count = usize::try_from(upto.0 - self.applying.0)
            .unwrap_or(usize::MAX)
            .min(count_max);
        let (entries, _) = self.entries_from(self.applying.next(), count, usize::MAX);
        if let Some(last) = entries.last() {
            self.applying = last.index;
        }
        entries
    }

    /// Drops applied, durable entries from the front of memory: those below `needed_from`
    /// (nobody is expected to need them), and more while more than `entries_max` entries or
    /// `bytes_max` bytes are held. Returns how many went.
    pub(crate) fn evict(
        &mut self,
        needed_from: LogIndex,
        entries_max: usize,
        bytes_max: usize,
    ) -> usize {
        let evictable = self.applied.min(self.persisted);
        let mut evicted = 0;
        while !self.entries.is_empty()
            && self.first_index <= evictable
            && (self.first_index < needed_from
                || self.entries.len() > entries_max
                || self.bytes > bytes_max)
        {
            self.evict_front();
            evicted += 1;
        }
        evicted
    }

    /// Compacts the log through `through` (applied and durable, at or above the base): the
    /// entries up to it are dropped from memory and it becomes the base.
    pub(crate) fn compact(&mut self, through: LogIndex) {
        let (base, _) = self.evicted.base();
        assert!(
            through >= base && through <= self.applied.min(self.persisted),
            "compaction through {through}: must be applied, durable and at or above the base {base}"
        );
        while self.first_index <= through {
            self.evict_front();
        }
        self.evicted.compact(through);
    }

    /// Installs a snapshot received from the leader, covering the log through `index` of
    /// `term` (Figure 13, InstallSnapshot receiver rules 6–7): if the log holds that very
    /// entry, the entries after it are kept; otherwise the whole log goes. The snapshot
    /// becomes the base, committed and applied (the driver restores its state machine from
    /// it before applying anything after). Returns whether entries after it were kept.
    pub(crate) fn install_snapshot(&mut self, index: LogIndex, term: Term) -> bool {
        assert!(
            index > self.committed,
            "snapshot {index} at or below the commit index {}",
            self.committed
        );
        let keep = self.term(index) == Some(term);
        if keep {
            while self.first_index <= index {
                self.evict_front();
            }
            self.evicted.compact(index);
        } else {
            self.entries.clear();
            self.bytes = 0;
            self.evicted = EvictedTerms::new(index, term);
            self.first_index = index.next();
        }
        self.committed = index;
        self.applying = index;
        self.applied = index;
        // Durable with the Ready that carries it; nothing that depends on it leaves before.
        if keep {
            self.persisted = self.persisted.max(index);
            self.unstable_from = self.unstable_from.max(index.next());
        } else {
            self.persisted = index;
            self.unstable_from = index.next();
        }
        keep
    }

    /// Moves the first in-memory entry to the evicted runs.
    fn evict_front(&mut self) {
        let entry = self.entries.pop_front().expect("an entry to evict");
        self.bytes -= entry.size_bytes();
        self.evicted.push(entry.index, entry.term);
        self.first_index = self.first_index.next();
    }

    /// Gives back the spare capacity of the in-memory entries.
    pub(crate) fn shrink(&mut self) {
        self.entries.shrink_to_fit();
    }

    /// Whether committed, durable entries wait to be handed out for apply.
    pub(crate) fn has_committed_to_apply(&self) -> bool {
        self.committed.min(self.persisted) > self.applying
    }

    /// Asserts the invariants in this module's docs; O(n) checks only under `strict`.
    pub(crate) fn check_invariants(&self) {
        let last_index = self.last_index();
        assert!(
            self.applied <= self.applying,
            "applied {} > applying {}",
            self.applied,
            self.applying
        );
        assert!(
            self.applying <= self.committed,
            "applying {} > committed {}",
            self.applying,
            self.committed
        );
        assert!(
            self.applying <= self.persisted,
            "applying {} > persisted {}",
            self.applying,
            self.persisted
        );
        assert!(
            self.persisted <= last_index,
            "persisted {} > last {}",
            self.persisted,
            last_index
        );
        assert!(
            self.committed <= last_index,
            "committed {} > last {}",
            self.committed,
            last_index
        );
        assert!(
            self.unstable_from <= last_index.next(),
            "unstable_from beyond the log"
        );
        assert_eq!(
            self.first_index,
            self.evicted.end(),
            "evicted prefix mismatch"
        );
        assert!(
            self.first_index.prev() <= self.applied.min(self.persisted),
            "evicted entries beyond applied and durable ones"
        );
        assert!(self.evicted.base().0 <= self.applied, "base beyond applied");
        if cfg!(any(feature = "strict", debug_assertions)) {
            assert_eq!(
                self.bytes,
                self.entries.iter().map(Entry::size_bytes).sum::<usize>(),
                "in-memory bytes"
            );
            let mut previous_term = self
                .evicted
                .term(self.first_index.prev())
                .unwrap_or(Term(0));
            for (slot, entry) in self.entries.iter().enumerate() {
                assert_eq!(
                    entry.index.0,
                    self.first_index.0 + slot as u64,
                    "log not contiguous"
                );
                assert!(
                    entry.term >= previous_term,
                    "log terms decrease at {}",
                    entry.index
                );
                previous_term = entry.term;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::EntryKind;

    fn entries(from: u64, to: u64, term: u64) -> Vec<Entry> {
        (from..=to)
            .map(|index| Entry {
                index: LogIndex(index),
                term: Term(term),
                kind: EntryKind::Normal,
                data: Default::default(),
            })
            .collect()
    }

    #[test]
    fn a_persisted_ack_for_entries_since_replaced_does_not_cover_their_replacements() {
        let mut log =
            RaftLog::restore((LogIndex(0), Term(0)), Vec::new(), LogIndex(0), LogIndex(0));
        assert_eq!(
            log.maybe_append(LogIndex(0), Term(0), entries(1, 10, 2)),
            Some(LogIndex(10))
        );
        assert_eq!(log.take_unstable().len(), 10); // Ready 1: 1..=10 of term 2.
        // A new leader replaces 7.. with a longer suffix of term 3 (Ready 2, not yet durable).
        assert_eq!(
            log.maybe_append(LogIndex(6), Term(2), entries(7, 12, 3)),
            Some(LogIndex(12))
        );
        assert_eq!(log.take_unstable().len(), 6);
        // Ready 1 becomes durable: index 10 now holds a different entry, which is not durable.
        assert!(!log.on_persisted(LogIndex(10), Term(2)));
        assert!(
            log.persisted < LogIndex(7),
            "persisted {} covers entries of Ready 2",
            log.persisted
        );
        assert!(log.on_persisted(LogIndex(12), Term(3)));
        assert_eq!(log.persisted, LogIndex(12));
    }
}
