//! Consistency verification across the replicas of a group.
//!
//! The leader appends a verify entry (`propose_verify`). Every replica that applies it
//! computes a hash of its state machine at exactly that index and hands it to its core
//! (`on_state_hash`); a follower sends it to its leader (`VerifyReport`). The leader
//! collects the hashes by index, and once every member of its configuration answered (or
//! `Config::verify_timeout_ticks` passed) reports a [`Verification`] in `Ready::
//! verifications`: `Consistent` with the replicas that agree, or `Divergent` with every
//! hash by node. Replicas that applied the same log prefix must hold the same state (State
//! Machine Safety), so a divergence is a bug or a corrupted replica, never a race.

use crate::raft::error::ProposeError;
use crate::raft::group::{Proposed, RaftGroup};
use crate::raft::message::{MessageBody, VerifyReport};
use crate::raft::payload::Payload;
use crate::raft::ready::Role;
use crate::raft::types::{Entry, EntryKind, LogIndex, NodeId};

/// The outcome of one verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verification {
    /// Every replica that answered holds the same state at `index`.
    Consistent {
        /// The verify entry's index.
        index: LogIndex,
        /// The replicas that answered (the leader among them when it applied the entry).
        replicas: Vec<NodeId>,
        /// The state hash they agree on.
        hash: u64,
    },
    /// Replicas disagree about the state at `index`.
    Divergent {
        /// The verify entry's index.
        index: LogIndex,
        /// Each answering replica's hash.
        hashes: Vec<(NodeId, u64)>,
    },
}

/// At most this many verifications collect hashes at once (and this many finished ones
/// are remembered, so that late reports do not open them again).
pub(crate) const VERIFY_ROUNDS_MAX: usize = 16;

/// The hashes a leader collected for one verify entry.
#[derive(Clone, Debug)]
pub(crate) struct VerifyRound {
    index: LogIndex,
    hashes: Vec<(NodeId, u64)>,
    elapsed_ticks: u32,
}

impl RaftGroup {
    /// Proposes a verify entry (see the module docs).
    ///
    /// # Errors
    /// As [`RaftGroup::propose`].
    pub fn propose_verify(&mut self) -> Result<Proposed, ProposeError> {
        self.check_proposal_allowed()?;
        let index = self.log.last_index().next();
        self.log.append(Entry {
            index,
            term: self.term,
            kind: EntryKind::Verify,
            data: Payload::new(),
        });
        self.broadcast_pending = true;
        Ok(Proposed {
            index,
            term: self.term,
        })
    }

    /// The driver applied the verify entry at `index`, and its state machine's hash right
    /// after is `hash`.
    pub fn on_state_hash(&mut self, index: LogIndex, hash: u64) {
        if self.role == Role::Leader {
            self.record_state_hash(self.id, index, hash);
        } else if let Some(leader) = self.leader {
            let term = self.term;
            self.send(
                leader,
                term,
                MessageBody::VerifyReport(VerifyReport { index, hash }),
            );
        }
    }

    /// Leader: `from` reports its hash at `index`.
    pub(crate) fn record_state_hash(&mut self, from: NodeId, index: LogIndex, hash: u64) {
        let not_a_verify_entry = self
            .log
            .entry(index)
            .is_some_and(|entry| entry.kind != EntryKind::Verify);
        let member = from == self.id || self.configs.current().contains(from);
        let known = self.verify_rounds.iter().any(|round| round.index == index);
        if index > self.log.committed
            || not_a_verify_entry
            || !member
            || self.verify_finished.contains(&index)
            || (!known && self.verify_rounds.len() >= VERIFY_ROUNDS_MAX)
        {
            // Nobody applies an uncommitted entry; a report for another kind of entry or
            // from outside the group is a broken peer; a late report for a finished round
            // is dropped; the rounds in progress are bounded.
            return;
        }
        let slot = match self
            .verify_rounds
            .iter()
            .position(|round| round.index == index)
        {
            Some(slot) => slot,
            None => {
                self.verify_rounds.push(VerifyRound {
                    index,
                    hashes: Vec::new(),
                    elapsed_ticks: 0,
                });
                self.verify_rounds.len() - 1
            }
        };
        let round = &mut self.verify_rounds[slot];
        if !round.hashes.iter().any(|(node, _)| *node == from) {
            round.hashes.push((from, hash));
        }
        let members = self.configs.current().members();
        if members
            .iter()
            .all(|member| round.hashes.iter().any(|(node, _)| node == member))
        {
            let round = self.verify_rounds.remove(slot);
            self.finish_verification(round);
        }
    }

    /// Leader, every tick: verifications that waited long enough report what they have.
    pub(crate) fn tick_verifications(&mut self) {
        let timeout = self.cfg.verify_timeout_ticks;
        for round in &mut self.verify_rounds {
            round.elapsed_ticks += 1;
        }
        while let Some(slot) = self
            .verify_rounds
            .iter()
            .position(|round| round.elapsed_ticks >= timeout)
        {
            let round = self.verify_rounds.remove(slot);
            self.finish_verification(round);
        }
    }

    fn finish_verification(&mut self, mut round: VerifyRound) {
        self.verify_finished.push_back(round.index);
        if self.verify_finished.len() > VERIFY_ROUNDS_MAX {
            self.verify_finished.pop_front();
        }
        round.hashes.sort_unstable();
        let first = round.hashes[0].1;
        let verification = if round.hashes.iter().all(|(_, hash)| *hash == first) {
            Verification::Consistent {
                index: round.index,
                replicas: round.hashes.iter().map(|(node, _)| *node).collect(),
                hash: first,
            }
        } else {
            Verification::Divergent {
                index: round.index,
                hashes: round.hashes,
            }
        };
        self.verifications.push(verification);
    }
}
