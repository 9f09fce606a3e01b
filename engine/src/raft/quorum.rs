//! Who is in a group, and the majority arithmetic every decision uses.
//!
//! A [`Configuration`] has voters, learners, and — while a membership change is under way —
//! a second, outgoing voter set: the joint configuration C_old,new of the Raft thesis
//! (§4.3). Every decision (commit, election, check-quorum, read confirmation) needs a
//! majority of the voters *and*, when joint, a majority of the outgoing voters as well.
//! Learners receive the log and count toward nothing. Every caller goes through
//! [`Configuration::committed_index`], [`Configuration::vote_result`] and
//! [`Configuration::has_quorum`], so the joint rule lives in this file only.
//!
//! A configuration travels in log entries ([`EntryKind::Configuration`]) and snapshots,
//! encoded whole (not as a delta), so that a replica knows it from the entry alone:
//! `[version 1][voters u8][outgoing u8][learners u8]` then that many little-endian `u64`
//! node ids, each set sorted and without duplicates.
//!
//! # Invariants
//! - Each set is sorted and without duplicates; a learner is in neither voter set.
//! - A configuration used by a group has at least one voter (only a replica joining a
//!   group, which has not learned its configuration yet, holds the empty one).
//!
//! [`EntryKind::Configuration`]: crate::raft::EntryKind::Configuration

use crate::raft::types::{LogIndex, NodeId};

/// The members of a group: voters, learners, and the outgoing voters of a joint
/// configuration.
#[derive(Clone, Debug, PartialEq, Eq, Default, Hash)]
pub struct Configuration {
    voters: Vec<NodeId>,
    outgoing: Vec<NodeId>,
    learners: Vec<NodeId>,
}

/// Where an election stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// A majority granted (of both voter sets, when joint).
    Won,
    /// A majority refused (in either voter set): this election cannot be won.
    Lost,
    /// Not decided yet.
    Pending,
}

/// The encoding version of a configuration inside an entry or snapshot.
const ENCODING_VERSION: u8 = 1;

/// Most members a configuration may name in each set (the encoding's count is one byte).
pub const MEMBERS_MAX: usize = u8::MAX as usize;

fn sorted(ids: &[NodeId]) -> Vec<NodeId> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The `majority()`-th largest of `values` (`values` is reordered).
fn majority_value(values: &mut [LogIndex]) -> LogIndex {
    values.sort_unstable_by(|a, b| b.cmp(a));
    values[values.len() / 2]
}

/// The highest index a majority of `voters` hold.
fn set_committed(voters: &[NodeId], match_of: &mut impl FnMut(NodeId) -> LogIndex) -> LogIndex {
    // Group sizes are 1..=7 in practice; a small stack array avoids an allocation.
    let mut stack = [LogIndex(0); 16];
    if voters.len() > stack.len() {
        let mut all: Vec<LogIndex> = voters.iter().map(|&id| match_of(id)).collect();
        return majority_value(&mut all);
    }
    let matches = &mut stack[..voters.len()];
    for (slot, &id) in matches.iter_mut().zip(voters) {
        *slot = match_of(id);
    }
    majority_value(matches)
}

fn set_vote_result(
    voters: &[NodeId],
    vote_of: &mut impl FnMut(NodeId) -> Option<bool>,
) -> VoteResult {
    let majority = voters.len() / 2 + 1;
    let (mut granted, mut refused) = (0, 0);
    for &id in voters {
        match vote_of(id) {
            Some(true) => granted += 1,
            Some(false) => refused += 1,
            None => {}
        }
    }
    if granted >= majority {
        VoteResult::Won
    } else if refused >= majority {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

impl Configuration {
    /// A simple configuration of these voters (order and duplicates do not matter). Returns
    /// `None` for an empty set.
    #[must_use]
    pub fn new(voters: &[NodeId]) -> Option<Configuration> {
        let voters = sorted(voters);
        if voters.is_empty() {
            return None;
        }
        Some(Configuration {
            voters,
            outgoing: Vec::new(),
            learners: Vec::new(),
        })
    }

    /// A configuration of `voters`, `outgoing` voters (empty: not joint) and `learners`.
    ///
    /// # Errors
    /// No voters, a learner that is also a voter, or a set larger than [`MEMBERS_MAX`].
    pub fn with_sets(
        voters: &[NodeId],
        outgoing: &[NodeId],
        learners: &[NodeId],
    ) -> Result<Configuration, &'static str> {
        let configuration = Configuration {
            voters: sorted(voters),
            outgoing: sorted(outgoing),
            learners: sorted(learners),
        };
        configuration.check()?;
        Ok(configuration)
    }

    fn check(&self) -> Result<(), &'static str> {
        if self.voters.is_empty() {
            return Err("a configuration without voters");
        }
        if [&self.voters, &self.outgoing, &self.learners]
            .iter()
            .any(|set| set.len() > MEMBERS_MAX)
        {
            return Err("a configuration with too many members");
        }
        if self
            .learners
            .iter()
            .any(|id| self.voters.contains(id) || self.outgoing.contains(id))
        {
            return Err("a learner that is also a voter");
        }
        Ok(())
    }

    /// The voters (of the incoming configuration, when joint), sorted.
    #[must_use]
    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    /// The outgoing voters of a joint configuration (empty when not joint), sorted.
    #[must_use]
    pub fn outgoing(&self) -> &[NodeId] {
        &self.outgoing
    }

    /// The learners, sorted.
    #[must_use]
    pub fn learners(&self) -> &[NodeId] {
        &self.learners
    }

    /// Whether this is a joint configuration (a change is under way).
    #[must_use]
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Whether `id` votes (in either voter set).
    #[must_use]
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok() || self.outgoing.binary_search(&id).is_ok()
    }

    /// Whether `id` is a learner.
    #[must_use]
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.binary_search(&id).is_ok()
    }

    /// Whether `id` is a member at all (voter or learner).
    #[must_use]
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// Every member (voters of both sets and learners), sorted, without duplicates.
    #[must_use]
    pub fn members(&self) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self
            .voters
            .iter()
            .chain(&self.outgoing)
            .chain(&self.learners)
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// The highest index that a majority of the voters hold — of both voter sets when
    /// joint (thesis §4.3: agreement for commitment requires separate majorities from both
    /// configurations). `match_of` gives each voter's match index.
    #[must_use]
    pub fn committed_index(&self, mut match_of: impl FnMut(NodeId) -> LogIndex) -> LogIndex {
        let incoming = set_committed(&self.voters, &mut match_of);
        if self.outgoing.is_empty() {
            return incoming;
        }
        incoming.min(set_committed(&self.outgoing, &mut match_of))
    }

    /// The state of an election given each voter's answer (`None`: no answer yet). Only
    /// voters count: a learner's answer is never asked for (thesis §4.2.1). When joint, an
    /// election is won only with a majority of both sets (§4.3).
    #[must_use]
    pub fn vote_result(&self, mut vote_of: impl FnMut(NodeId) -> Option<bool>) -> VoteResult {
        let incoming = set_vote_result(&self.voters, &mut vote_of);
        if self.outgoing.is_empty() {
            return incoming;
        }
        match (incoming, set_vote_result(&self.outgoing, &mut vote_of)) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }

    /// Whether the voters for which `active` holds form a majority (of both sets when
    /// joint).
    #[must_use]
    pub fn has_quorum(&self, mut active: impl FnMut(NodeId) -> bool) -> bool {
        let mut set_has =
            |set: &[NodeId]| set.iter().filter(|&&id| active(id)).count() > set.len() / 2;
        set_has(&self.voters) && (self.outgoing.is_empty() || set_has(&self.outgoing))
    }

    /// The configuration a joint one leaves to: the incoming voters and the learners.
    #[must_use]
    pub fn leave_joint(&self) -> Configuration {
        Configuration {
            voters: self.voters.clone(),
            outgoing: Vec::new(),
            learners: self.learners.clone(),
        }
    }

    /// The configuration after `changes`, all at once. When the voter set changes, the
    /// result is joint (C_old,new): the current voters become the outgoing set.
    ///
    /// # Errors
    /// [`ChangeError`] naming the first change that cannot apply.
    pub fn apply(&self, changes: &[MembershipChange]) -> Result<Configuration, ChangeError> {
        if self.is_joint() {
            return Err(ChangeError::Joint);
        }
        if changes.is_empty() {
            return Err(ChangeError::Empty);
        }
        let mut voters = self.voters.clone();
        let mut learners = self.learners.clone();
        for &change in changes {
            let (in_voters, in_learners) = (
                voters.contains(&change.node()),
                learners.contains(&change.node()),
            );
            match change {
                MembershipChange::AddVoter(id) => {
                    if in_voters {
                        return Err(ChangeError::AlreadyVoter(id));
                    }
                    learners.retain(|&l| l != id);
                    voters.push(id);
                }
                MembershipChange::AddLearner(id) => {
                    // A voter is not demoted to a learner (it would be a learner and an
                    // outgoing voter at once).
                    if in_voters || in_learners || self.voters.contains(&id) {
                        return Err(ChangeError::AlreadyMember(id));
                    }
                    learners.push(id);
                }
                MembershipChange::PromoteLearner(id) => {
                    if !in_learners {
                        return Err(ChangeError::NotALearner(id));
                    }
                    learners.retain(|&l| l != id);
                    voters.push(id);
                }
                MembershipChange::RemoveVoter(id) => {
                    if !in_voters {
                        return Err(ChangeError::NotAVoter(id));
                    }
                    voters.retain(|&v| v != id);
                }
                MembershipChange::RemoveLearner(id) => {
                    if !in_learners {
                        return Err(ChangeError::NotALearner(id));
                    }
                    learners.retain(|&l| l != id);
                }
            }
        }
        let voters = sorted(&voters);
        if voters.is_empty() {
            return Err(ChangeError::NoVotersLeft);
        }
        let outgoing = if voters == self.voters {
            Vec::new()
        } else {
            self.voters.clone()
        };
        let next = Configuration {
            voters,
            outgoing,
            learners: sorted(&learners),
        };
        next.check().map_err(|_| ChangeError::TooManyMembers)?;
        Ok(next)
    }

    /// The configuration as the bytes of a configuration entry or snapshot.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            4 + 8 * (self.voters.len() + self.outgoing.len() + self.learners.len()),
        );
        out.push(ENCODING_VERSION);
        for set in [&self.voters, &self.outgoing, &self.learners] {
            out.push(u8::try_from(set.len()).expect("checked against MEMBERS_MAX"));
        }
        for set in [&self.voters, &self.outgoing, &self.learners] {
            for id in set {
                out.extend_from_slice(&id.0.to_le_bytes());
            }
        }
        out
    }

    /// Decodes [`Configuration::encode`]'s bytes.
    ///
    /// # Errors
    /// What is wrong with the bytes: an unknown version, a wrong length, unsorted sets, no
    /// voters, a learner that is also a voter.
    pub fn decode(data: &[u8]) -> Result<Configuration, &'static str> {
        let [version, voters, outgoing, learners, ids @ ..] = data else {
            return Err("configuration shorter than its header");
        };
        if *version != ENCODING_VERSION {
            return Err("configuration of an unknown encoding version");
        }
        let counts = [
            usize::from(*voters),
            usize::from(*outgoing),
            usize::from(*learners),
        ];
        if ids.len() != 8 * counts.iter().sum::<usize>() {
            return Err("configuration length does not match its counts");
        }
        let mut words = ids
            .chunks_exact(8)
            .map(|word| NodeId(u64::from_le_bytes(word.try_into().expect("8 bytes"))));
        let mut sets: [Vec<NodeId>; 3] = Default::default();
        for (set, count) in sets.iter_mut().zip(counts) {
            *set = words.by_ref().take(count).collect();
            if set.windows(2).any(|pair| pair[0] >= pair[1]) {
                return Err("configuration set not sorted or with duplicates");
            }
        }
        let [voters, outgoing, learners] = sets;
        let configuration = Configuration {
            voters,
            outgoing,
            learners,
        };
        configuration.check()?;
        Ok(configuration)
    }
}

/// One change of a group's membership; several may be proposed at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add a voter (a learner named here is promoted).
    AddVoter(NodeId),
    /// Remove a voter (the leader itself included: it steps down once the change commits).
    RemoveVoter(NodeId),
    /// Add a non-voting member that receives the log.
    AddLearner(NodeId),
    /// Make a learner a voter.
    PromoteLearner(NodeId),
    /// Remove a learner.
    RemoveLearner(NodeId),
}

impl MembershipChange {
    /// The node the change is about.
    #[must_use]
    pub fn node(self) -> NodeId {
        match self {
            MembershipChange::AddVoter(id)
            | MembershipChange::RemoveVoter(id)
            | MembershipChange::AddLearner(id)
            | MembershipChange::PromoteLearner(id)
            | MembershipChange::RemoveLearner(id) => id,
        }
    }
}

/// Why a membership change was refused. Nothing was appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// This replica is not the leader.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The current leader, when known.
        leader: Option<NodeId>,
    },
    /// Another change is still in flight (its entry at `index` is not committed, or the
    /// group has not left its joint configuration yet): one change at a time.
    #[error("a membership change is already in flight (entry {index})")]
    ChangeInProgress {
        /// The index of the configuration entry in flight.
        index: LogIndex,
    },
    /// The leader has not committed an entry of its term yet, so it may not know the
    /// latest configuration; retry shortly.
    #[error("the leader has not committed an entry of its term yet")]
    LeaderNotReady,
    /// The configuration is joint; it leaves joint by itself once committed.
    #[error("the configuration is joint")]
    Joint,
    /// No change was given.
    #[error("no change given")]
    Empty,
    /// The node is already a voter.
    #[error("{0} is already a voter")]
    AlreadyVoter(NodeId),
    /// The node is already a member.
    #[error("{0} is already a member")]
    AlreadyMember(NodeId),
    /// The node is not a voter.
    #[error("{0} is not a voter")]
    NotAVoter(NodeId),
    /// The node is not a learner.
    #[error("{0} is not a learner")]
    NotALearner(NodeId),
    /// The change would leave the group without voters.
    #[error("the change would leave no voter")]
    NoVotersLeft,
    /// The change would name more than [`MEMBERS_MAX`] members in one set.
    #[error("the change would name too many members")]
    TooManyMembers,
    /// Leadership is being handed to another node.
    #[error("leadership transfer to {to} in progress")]
    TransferInProgress {
        /// The transfer's target.
        to: NodeId,
    },
    /// The group is being stopped.
    #[error("group is stopping")]
    GroupStopping,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(ids: &[u64]) -> Vec<NodeId> {
        ids.iter().map(|&id| NodeId(id)).collect()
    }

    fn cfg(voters: &[u64]) -> Configuration {
        Configuration::new(&ids(voters)).unwrap()
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
    fn joint_decisions_need_majorities_of_both_sets() {
        // C_old = {1,2,3}, C_new = {3,4,5}.
        let joint = cfg(&[1, 2, 3])
            .apply(&[
                MembershipChange::RemoveVoter(NodeId(1)),
                MembershipChange::RemoveVoter(NodeId(2)),
                MembershipChange::AddVoter(NodeId(4)),
                MembershipChange::AddVoter(NodeId(5)),
            ])
            .unwrap();
        assert!(joint.is_joint());
        assert_eq!(joint.voters(), ids(&[3, 4, 5]));
        assert_eq!(joint.outgoing(), ids(&[1, 2, 3]));
        // Old majority {1,2} alone, or new majority {4,5} alone, decides nothing.
        let matches = [9, 9, 1, 1, 1];
        assert_eq!(
            joint.committed_index(|id| LogIndex(matches[id.0 as usize - 1])),
            LogIndex(1)
        );
        let matches = [1, 1, 1, 9, 9];
        assert_eq!(
            joint.committed_index(|id| LogIndex(matches[id.0 as usize - 1])),
            LogIndex(1)
        );
        let matches = [9, 1, 9, 9, 1];
        assert_eq!(
            joint.committed_index(|id| LogIndex(matches[id.0 as usize - 1])),
            LogIndex(9)
        );
        assert_eq!(
            joint.vote_result(|id| (id.0 <= 2).then_some(true)),
            VoteResult::Pending
        );
        assert_eq!(
            joint.vote_result(|id| (id.0 >= 4).then_some(true)),
            VoteResult::Pending
        );
        assert_eq!(
            joint.vote_result(|id| Some(id.0 == 3 || id.0 == 1 || id.0 == 4)),
            VoteResult::Won
        );
        assert_eq!(joint.vote_result(|id| Some(id.0 >= 3)), VoteResult::Lost);
        assert!(!joint.has_quorum(|id| id.0 <= 2));
        assert!(joint.has_quorum(|id| id.0 == 2 || id.0 == 3 || id.0 == 5));
        assert_eq!(joint.leave_joint().voters(), ids(&[3, 4, 5]));
        assert!(!joint.leave_joint().is_joint());
    }

    #[test]
    fn learners_count_toward_nothing() {
        let with_learner = cfg(&[1, 2, 3])
            .apply(&[MembershipChange::AddLearner(NodeId(4))])
            .unwrap();
        assert!(
            !with_learner.is_joint(),
            "a learner alone changes no voter set"
        );
        assert!(with_learner.is_learner(NodeId(4)) && !with_learner.is_voter(NodeId(4)));
        assert_eq!(
            with_learner.vote_result(|id| (id.0 == 1 || id.0 == 4).then_some(true)),
            VoteResult::Pending
        );
        assert_eq!(
            with_learner.committed_index(|id| LogIndex(if id.0 == 1 || id.0 == 4 { 9 } else { 1 })),
            LogIndex(1)
        );
        let promoted = with_learner
            .apply(&[MembershipChange::PromoteLearner(NodeId(4))])
            .unwrap();
        assert!(promoted.is_joint());
        assert!(promoted.voters().contains(&NodeId(4)) && promoted.learners().is_empty());
    }

    #[test]
    fn bad_changes_are_refused_by_name() {
        let three = cfg(&[1, 2, 3]);
        assert_eq!(three.apply(&[]), Err(ChangeError::Empty));
        assert_eq!(
            three.apply(&[MembershipChange::AddVoter(NodeId(2))]),
            Err(ChangeError::AlreadyVoter(NodeId(2)))
        );
        assert_eq!(
            three.apply(&[MembershipChange::AddLearner(NodeId(2))]),
            Err(ChangeError::AlreadyMember(NodeId(2)))
        );
        assert_eq!(
            three.apply(&[MembershipChange::RemoveVoter(NodeId(7))]),
            Err(ChangeError::NotAVoter(NodeId(7)))
        );
        assert_eq!(
            three.apply(&[MembershipChange::PromoteLearner(NodeId(7))]),
            Err(ChangeError::NotALearner(NodeId(7)))
        );
        let one = cfg(&[1]);
        assert_eq!(
            one.apply(&[MembershipChange::RemoveVoter(NodeId(1))]),
            Err(ChangeError::NoVotersLeft)
        );
        let joint = three
            .apply(&[MembershipChange::AddVoter(NodeId(4))])
            .unwrap();
        assert_eq!(
            joint.apply(&[MembershipChange::AddVoter(NodeId(5))]),
            Err(ChangeError::Joint)
        );
    }

    #[test]
    fn encoding_round_trips_and_rejects_bad_bytes() {
        let joint = cfg(&[1, 2, 3])
            .apply(&[
                MembershipChange::AddLearner(NodeId(9)),
                MembershipChange::RemoveVoter(NodeId(2)),
            ])
            .unwrap();
        assert_eq!(Configuration::decode(&joint.encode()), Ok(joint.clone()));
        let mut bytes = joint.encode();
        bytes[0] = 2;
        assert!(Configuration::decode(&bytes).is_err());
        assert!(Configuration::decode(&joint.encode()[..5]).is_err());
        assert!(Configuration::decode(&[1, 0, 0, 0]).is_err(), "no voters");
        let mut unsorted = vec![1, 2, 0, 0];
        unsorted.extend_from_slice(&5u64.to_le_bytes());
        unsorted.extend_from_slice(&3u64.to_le_bytes());
        assert!(Configuration::decode(&unsorted).is_err());
        assert!(Configuration::decode(&[]).is_err());
    }
}
