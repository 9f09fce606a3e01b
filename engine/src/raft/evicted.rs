//! The terms of log entries no longer held in memory.
//!
//! A replica drops applied, durable entries from memory beyond a cache bound
//! (`Config::log_cache_entries_max` / `log_cache_bytes_max`); the driver still holds them in
//! storage and reads them back when a leader must send them (`Ready::fetches`). The core
//! keeps only their terms, as runs: one `(first index, term)` pair per term, so that the
//! consistency check of AppendEntries, conflict hints and the up-to-date check work over the
//! whole log at a cost of a few bytes per term.
//!
//! # Invariants
//! - Runs are in increasing index and increasing term order; the first starts at index 1.
//! - Every index below `end` is covered; nothing at or above it.

use crate::raft::types::{LogIndex, Term};

/// The terms of the evicted prefix `[1, end)` of a log.
#[derive(Debug, Default)]
pub(crate) struct EvictedTerms {
    runs: Vec<(LogIndex, Term)>,
    end: LogIndex,
}

impl EvictedTerms {
    pub(crate) fn new() -> EvictedTerms {
        EvictedTerms {
            runs: Vec::new(),
            end: LogIndex(1),
        }
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

    /// The term of the evicted entry `index` (`None` if not evicted, or index 0).
    pub(crate) fn term(&self, index: LogIndex) -> Option<Term> {
        if index.0 == 0 || index >= self.end {
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
        let mut evicted = EvictedTerms::new();
        for (index, term) in [(1, 1), (2, 1), (3, 2), (4, 5), (5, 5), (6, 5)] {
            evicted.push(LogIndex(index), Term(term));
        }
        let terms: Vec<_> = (0..8).map(|i| evicted.term(LogIndex(i))).collect();
        assert_eq!(
            terms,
            [
                None,
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
    }
}
