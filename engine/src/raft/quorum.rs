//! Who votes in a group, and the majority arithmetic every decision uses.
//!
//! Today a configuration is one set of voters. Joint consensus (issue 6) makes it two sets
//! whose decisions both need a majority; every caller already goes through
//! [`Configuration::committed_index`] and [`Configuration::vote_result`], so only this file
//! learns about the second set.

use crate::raft::types::{LogIndex, NodeId};

/// The voters of a group, sorted and without duplicates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Configuration {
    voters: Vec<NodeId>,
}

/// Where an election stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// A majority granted.
    Won,
    /// A majority refused: this election cannot be won.
    Lost,
    /// Not decided yet.
    Pending,
}

impl Configuration {
    /// A configuration of these voters (order and duplicates do not matter). Returns `None`
    /// for an empty set.
    #[must_use]
    pub fn new(voters: &[NodeId]) -> Option<Configuration> {
        let mut voters = voters.to_vec();
        voters.sort_unstable();
        voters.dedup();
        if voters.is_empty() {
            return None;
        }
        Some(Configuration { voters })
    }

    /// The voters, sorted.
    #[must_use]
    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    /// Whether `id` votes.
    #[must_use]
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok()
    }

    /// How many voters make a majority.
    #[must_use]
    pub fn majority(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// The highest index that a majority of voters hold: the `majority()`-th largest of the
    /// voters' match indexes. `match_of` gives each voter's match index.
    #[must_use]
    pub fn committed_index(&self, mut match_of: impl FnMut(NodeId) -> LogIndex) -> LogIndex {
        // Group sizes are 1..=7 in practice; a small stack array avoids an allocation.
        let mut matches = [LogIndex(0); 16];
        if self.voters.len() > matches.len() {
            let mut all: Vec<LogIndex> = self.voters.iter().map(|&id| match_of(id)).collect();
            all.sort_unstable_by(|a, b| b.cmp(a));
            return all[self.majority() - 1];
        }
        let matches = &mut matches[..self.voters.len()];
        for (slot, &id) in matches.iter_mut().zip(&self.voters) {
            *slot = match_of(id);
        }
        matches.sort_unstable_by(|a, b| b.cmp(a));
        matches[self.majority() - 1]
    }

    /// The state of an election given each voter's answer (`None`: no answer yet).
    #[must_use]
    pub fn vote_result(&self, mut vote_of: impl FnMut(NodeId) -> Option<bool>) -> VoteResult {
        let mut granted = 0;
        let mut refused = 0;
        for &id in &self.voters {
            match vote_of(id) {
                Some(true) => granted += 1,
                Some(false) => refused += 1,
                None => {}
            }
        }
        if granted >= self.majority() {
            VoteResult::Won
        } else if refused >= self.majority() {
            VoteResult::Lost
        } else {
            VoteResult::Pending
        }
    }

    /// Whether the voters for which `active` holds form a majority.
    #[must_use]
    pub fn has_quorum(&self, mut active: impl FnMut(NodeId) -> bool) -> bool {
        self.voters.iter().filter(|&&id| active(id)).count() >= self.majority()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ids: &[u64]) -> Configuration {
        Configuration::new(&ids.iter().map(|&id| NodeId(id)).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn committed_index_is_the_majority_th_largest_match() {
        let three = cfg(&[1, 2, 3]);
        let matches = [5, 9, 7];
        assert_eq!(
            three.committed_index(|id| LogIndex(matches[id.0 as usize - 1])),
            LogIndex(7)
        );
        let five = cfg(&[1, 2, 3, 4, 5]);
        let matches = [1, 9, 3, 8, 2];
        assert_eq!(
            five.committed_index(|id| LogIndex(matches[id.0 as usize - 1])),
            LogIndex(3)
        );
        assert_eq!(cfg(&[4]).committed_index(|_| LogIndex(6)), LogIndex(6));
    }

    #[test]
    fn vote_result_needs_a_majority_either_way() {
        let five = cfg(&[1, 2, 3, 4, 5]);
        assert_eq!(
            five.vote_result(|id| (id.0 <= 3).then_some(true)),
            VoteResult::Won
        );
        assert_eq!(
            five.vote_result(|id| (id.0 <= 2).then_some(true)),
            VoteResult::Pending
        );
        assert_eq!(five.vote_result(|id| Some(id.0 == 1)), VoteResult::Lost);
        assert_eq!(
            cfg(&[1, 2]).vote_result(|id| (id.0 == 1).then_some(true)),
            VoteResult::Pending
        );
    }

    #[test]
    fn configuration_rejects_empty_and_dedups() {
        assert!(Configuration::new(&[]).is_none());
        assert_eq!(cfg(&[3, 1, 3]).voters(), &[NodeId(1), NodeId(3)]);
        assert_eq!(cfg(&[1, 2, 3, 4]).majority(), 3);
    }
}
