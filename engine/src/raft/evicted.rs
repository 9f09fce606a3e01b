//! The terms of log entries no longer held in memory.
//!
//! A replica drops applied, durable entries from memory beyond a cache bound
//! (`Config::log_cache_entries_max` / `log_cache_bytes_max`); the driver still holds them in
//! storage and reads them back when a leader must send them (`Ready::fetches`). The core
//! keeps only their terms, as runs: one `(first index, term)` pair per term, so that the
//! consistency check of AppendEntries, conflict hints and the up-to-date check work over the
//! whole log at a cost of a few bytes per term.
//!
//! Below the evicted entries lies the log's *base*: the index (and term) of the last entry
//! compacted into a snapshot (`compact`), or index 0 of term 0 for a log never compacted.
//! The base's term is kept, because the next AppendEntries names it as `prev_term`.
//!
//! # Invariants
//! - Runs are in increasing index and increasing term order; the first starts at
//!   `base + 1`; no run's term is below the base's.
//! - Every index in `(base, end)` is covered; nothing at or above `end`; below the base
//!   nothing is known.

use crate::raft::types::{LogIndex, Term};

/// The terms of the evicted part `(base, end)` of a log, and its base.
#[derive(Debug, Default)]
pub(crate) struct EvictedTerms {
    runs: Vec<(LogIndex, Term)>,
    end: LogIndex,
    base: LogIndex,
    base_term: Term,
}

impl EvictedTerms {
    /// Nothing evicted above a base of (`base`, `base_term`).
    pub(crate) fn new(base: LogIndex, base_term: Term) -> EvictedTerms {
        EvictedTerms {
            runs: Vec::new(),
            end: base.next(),
            base,
            base_term,
        }
    }

    /// The base: the last compacted index and its term.
    pub(crate) fn base(&self) -> (LogIndex, Term) {
        (self.base, self.base_term)
    }

    /// Compacts through `through` (within `[base, end)`): it becomes the base, and the runs
    /// below it are dropped.
    pub(crate) fn compact(&mut self, through: LogIndex) {
        assert!(
            through >= self.base && through < self.end,
            "compaction point {through} outside the evicted range"
        );
        let term = self.term(through).expect("covered");
        let next_term =
            (through.next() < self.end).then(|| self.term(through.next()).expect("covered"));
        self.runs.retain(|&(start, _)| start > through.next());
        if let Some(next_term) = next_term {
            self.runs.insert(0, (through.next(), next_term));
        }
        self.base = through;
        self.base_term = term;
    }

    /// The first index not covered (the first index held in memory).
    pub(crate) fn end(&self) -> LogIndex {
        self.end
    }

    /// Covers the entry `index` of `term`, which must be the next one.
    pub(crate) fn push(&mut self, index: LogIndex, term: Term) {
        assert_eq!(index, self.end, "evicted entries not contiguous");
        match self.runs.last() {
            Some(&(_, last)) if last == term => {}
            Some(&(_, last)) => {
                assert!(term > last, "evicted terms decrease at {index}");
                self.runs.push((index, term));
            }
            None => self.runs.push((index, term)),
        }
        self.end = index.next();
    }

    /// The term of the evicted entry `index`, or of the base (`None` below the base, or
    /// at or after `end`).
    pub(crate) fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.base {
            return Some(self.base_term);
        }
        if index < self.base || index >= self.end {
            return None;
        }
        let run = self.runs.partition_point(|&(start, _)| start <= index);
        Some(self.runs[run - 1].1)
    }

    /// The first evicted index holding `term`, if any.
    pub(crate) fn first_index_of(&self, term: Term) -> Option<LogIndex> {
        self.runs
            .iter()
            .find(|&&(_, run_term)| run_term == term)
            .map(|&(start, _)| start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_answer_the_term_of_every_evicted_index() {
        let mut evicted = EvictedTerms::new(LogIndex(0), Term(0));
        for (index, term) in [(1, 1), (2, 1), (3, 2), (4, 5), (5, 5), (6, 5)] {
            evicted.push(LogIndex(index), Term(term));
        }
        let terms: Vec<_> = (0..8).map(|i| evicted.term(LogIndex(i))).collect();
        assert_eq!(
            terms,
            [
                Some(Term(0)),
                Some(Term(1)),
                Some(Term(1)),
                Some(Term(2)),
                Some(Term(5)),
                Some(Term(5)),
                Some(Term(5)),
                None
            ]
        );
        assert_eq!(evicted.end(), LogIndex(7));
        assert_eq!(evicted.first_index_of(Term(5)), Some(LogIndex(4)));
        assert_eq!(evicted.first_index_of(Term(3)), None);
        evicted.compact(LogIndex(4));
        assert_eq!(evicted.base(), (LogIndex(4), Term(5)));
        assert_eq!(evicted.term(LogIndex(3)), None, "below the base");
        assert_eq!(evicted.term(LogIndex(5)), Some(Term(5)));
        assert_eq!(evicted.first_index_of(Term(5)), Some(LogIndex(5)));
        evicted.compact(LogIndex(6));
        assert_eq!(evicted.base(), (LogIndex(6), Term(5)));
        assert_eq!(evicted.end(), LogIndex(7));
        evicted.push(LogIndex(7), Term(6));
        assert_eq!(evicted.term(LogIndex(7)), Some(Term(6)));
    }
}
