//! Membership changes of a `RaftGroup`: the configurations its log holds, and the leader's
//! side of a change (thesis §4.3, joint consensus).
//!
//! # The protocol
//! 1. The leader takes a change (`propose_change`, or `add_voter`) only when no other is in
//!    flight — the last configuration entry is committed and the configuration is not joint
//!    — and once it has committed an entry of its own term (so it knows the latest
//!    configuration). If the voter set changes, it appends the joint configuration
//!    C_old,new; a change of learners only is appended as a simple configuration.
//! 2. Every replica uses the latest configuration in its log, committed or not, from the
//!    moment it appends it (§4.1); a truncated configuration entry is undone with it.
//! 3. While joint, every decision needs a majority of C_old and of C_new (`quorum.rs`).
//! 4. Once the joint entry is committed, the leader appends C_new by itself.
//! 5. A leader that is not a voter of C_new steps down once C_new is committed, first
//!    telling the most caught-up voter to campaign at once (TimeoutNow); the rest elect a
//!    leader among themselves. Until C_new commits, a node leaving the group may still
//!    campaign (`may_campaign`): the others may hold only the joint configuration and need
//!    its vote and its log for a majority of C_old, which would otherwise deadlock.
//!
//! `add_voter` is the safe way to grow a group: the node joins as a learner, and the leader
//! promotes it only once its log is within `Config::learner_catch_up_lag_entries` of the
//! leader's, so that a new voter never stalls commits while it catches up.
//!
//! # Invariants
//! - `ConfigHistory` holds the base configuration first (at or below the log's base), then
//!   one element per configuration entry in the log, in index order; each matches its
//!   entry's term in the log.
//! - A leader appends a configuration entry only when the previous one is committed (a
//!   new leader may inherit several uncommitted ones, and appends none until they are).

use crate::raft::group::RaftGroup;
use crate::raft::message::MessageBody;
use crate::raft::payload::Payload;
use crate::raft::progress::Progress;
use crate::raft::quorum::{ChangeError, Configuration, MembershipChange};
use crate::raft::ready::Role;
use crate::raft::types::{Entry, EntryKind, LogIndex, NodeId, Term};

/// The configurations of a replica's log: the base one, then one per configuration entry.
#[derive(Debug, Clone)]
pub(crate) struct ConfigHistory {
    configs: Vec<(LogIndex, Term, Configuration)>,
}

impl ConfigHistory {
    /// A history holding only `base`, in force from (`index`, `term`).
    pub(crate) fn new(index: LogIndex, term: Term, base: Configuration) -> ConfigHistory {
        ConfigHistory {
            configs: vec![(index, term, base)],
        }
    }

    /// The configuration in force: the latest one appended.
    pub(crate) fn current(&self) -> &Configuration {
        &self.configs.last().expect("a base configuration").2
    }

    /// The index of the latest configuration entry (the base's index if none).
    pub(crate) fn current_index(&self) -> LogIndex {
        self.configs.last().expect("a base configuration").0
    }

    /// The configuration before the one in force, if the log holds one.
    pub(crate) fn previous(&self) -> Option<&Configuration> {
        let len = self.configs.len();
        (len >= 2).then(|| &self.configs[len - 2].2)
    }

    /// The configuration in force at `index`.
    pub(crate) fn at(&self, index: LogIndex) -> &Configuration {
        let slot = self.configs.partition_point(|(at, _, _)| *at <= index);
        &self.configs[slot.saturating_sub(1)].2
    }

    /// Records a configuration entry appended at `index`.
    pub(crate) fn push(&mut self, index: LogIndex, term: Term, configuration: Configuration) {
        assert!(
            index > self.current_index(),
            "configuration entries out of order"
        );
        self.configs.push((index, term, configuration));
    }

    /// Drops the configurations whose entry the log no longer holds (`term_of` gives the
    /// log's term at an index): a truncated configuration entry is undone.
    pub(crate) fn retain_held(&mut self, term_of: impl Fn(LogIndex) -> Option<Term>) {
        let base = self.configs[0].clone();
        self.configs
            .retain(|(index, term, _)| *index <= base.0 || term_of(*index) == Some(*term));
        if self.configs.is_empty() {
            self.configs.push(base);
        }
    }

    /// The log was compacted through `through`: the configurations at or below it collapse
    /// into one base.
    pub(crate) fn compact(&mut self, through: LogIndex) {
        let keep_from = self
            .configs
            .partition_point(|(index, _, _)| *index <= through)
            .saturating_sub(1);
        self.configs.drain(..keep_from);
    }

    /// A snapshot through (`index`, `term`) with `configuration` replaced the log up to
    /// there; configurations after it stay if `keep_after` (their entries were kept).
    pub(crate) fn install(
        &mut self,
        index: LogIndex,
        term: Term,
        configuration: Configuration,
        keep_after: bool,
    ) {
        let after: Vec<_> = if keep_after {
            self.configs
                .iter()
                .filter(|(at, _, _)| *at > index)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        self.configs = vec![(index, term, configuration)];
        self.configs.extend(after);
    }
}

/// The configuration an entry carries, if it is a configuration entry.
///
/// # Errors
/// The entry is a configuration entry whose data does not decode.
pub(crate) fn entry_configuration(entry: &Entry) -> Result<Option<Configuration>, &'static str> {
    if entry.kind != EntryKind::Configuration {
        return Ok(None);
    }
    Configuration::decode(&entry.data).map(Some)
}

impl RaftGroup {
    /// The configuration in force on this replica (the latest in its log).
    #[must_use]
    pub fn configuration(&self) -> &Configuration {
        self.configs.current()
    }

    /// Proposes `changes` to the group's membership, all at once (see the module docs for
    /// the protocol). Returns where the configuration entry went.
    ///
    /// # Errors
    /// [`ChangeError`]: not the leader, another change in flight, a change that does not
    /// apply to the current configuration; nothing was appended.
    pub fn propose_change(
        &mut self,
        changes: &[MembershipChange],
    ) -> Result<crate::raft::Proposed, ChangeError> {
        self.check_change_allowed()?;
        let next = self.configs.current().apply(changes)?;
        let proposed = self.append_configuration(next);
        self.check_invariants();
        Ok(proposed)
    }

    /// Adds `node` as a voter safely: it joins as a learner, and is promoted once its log
    /// is within `Config::learner_catch_up_lag_entries` of the leader's (on this leader;
    /// a new leader does not carry the promotion on, and the caller asks again). A learner
    /// already is promoted when caught up.
    ///
    /// # Errors
    /// As [`RaftGroup::propose_change`]; `AlreadyVoter` if it votes already.
    pub fn add_voter(&mut self, node: NodeId) -> Result<(), ChangeError> {
        self.check_change_allowed()?;
        let configuration = self.configs.current();
        if configuration.is_voter(node) {
            return Err(ChangeError::AlreadyVoter(node));
        }
        if !configuration.is_learner(node) {
            let next = configuration.apply(&[MembershipChange::AddLearner(node)])?;
            self.append_configuration(next);
        }
        if !self.promotions_pending.contains(&node) {
            self.promotions_pending.push(node);
        }
        self.check_invariants();
        Ok(())
    }

    /// Whether this replica may campaign: it votes in the configuration in force, or it
    /// voted in the one before and the one in force is not committed yet. A node leaving
    /// the group (in C_old, not in C_new) must still be able to lead until C_new commits
    /// (thesis §4.2.2): the others may still hold the joint configuration, where its vote
    /// and its log can be the only way to a majority of C_old.
    pub(crate) fn may_campaign(&self) -> bool {
        self.configs.current().is_voter(self.id)
            || (self.configs.current_index() > self.log.committed
                && self
                    .configs
                    .previous()
                    .is_some_and(|previous| previous.is_voter(self.id)))
    }

    /// The learners this leader will promote once they catch up.
    #[must_use]
    pub fn promotions_pending(&self) -> &[NodeId] {
        &self.promotions_pending
    }

    fn check_change_allowed(&self) -> Result<(), ChangeError> {
        if self.stopping {
            return Err(ChangeError::GroupStopping);
        }
        if self.role != Role::Leader {
            return Err(ChangeError::NotLeader {
                leader: self.leader,
            });
        }
        if let Some(transfer) = self.transfer {
            return Err(ChangeError::TransferInProgress { to: transfer.to });
        }
        if let Some(index) = self.change_in_flight() {
            return Err(ChangeError::ChangeInProgress { index });
        }
        if !self.committed_in_current_term() {
            // Thesis §4.1 (the bug found in single-server changes): a new leader may hold an
            // uncommitted configuration of an earlier term that a later leader overrides;
            // only once an entry of its own term commits does it know its configuration
            // will stay.
            return Err(ChangeError::LeaderNotReady);
        }
        Ok(())
    }

    /// The index of a configuration entry still in flight: not committed, or joint.
    pub(crate) fn change_in_flight(&self) -> Option<LogIndex> {
        let index = self.configs.current_index();
        (index > self.log.committed || self.configs.current().is_joint()).then_some(index)
    }

    /// Leader: appends a configuration entry; it takes effect at once (thesis §4.1).
    fn append_configuration(&mut self, next: Configuration) -> crate::raft::Proposed {
        assert_eq!(
            self.role,
            Role::Leader,
            "only a leader appends configurations"
        );
        // One change at a time: the previous configuration entry is committed, unless this
        // entry is the one that leaves a committed joint configuration.
        assert!(
            self.configs.current_index() <= self.log.committed,
            "a second configuration entry in flight"
        );
        let index = self.log.last_index().next();
        let term = self.term;
        self.log.append(Entry {
            index,
            term,
            kind: EntryKind::Configuration,
            data: Payload::from(next.encode()),
        });
        self.configs.push(index, term, next);
        self.sync_progress();
        self.broadcast_pending = true;
        crate::raft::Proposed { index, term }
    }

    /// Leader: one progress per member other than itself, new members probed from the end
    /// of the log, removed ones forgotten.
    pub(crate) fn sync_progress(&mut self) {
        let members = self.configs.current().members();
        let next_index = self.log.last_index().next();
        self.progress.retain(|(peer, _)| members.contains(peer));
        for member in members {
            if member != self.id && !self.progress.iter().any(|(peer, _)| *peer == member) {
                self.progress.push((member, Progress::new(next_index)));
            }
        }
        let configuration = self.configs.current();
        self.promotions_pending
            .retain(|node| configuration.is_learner(*node));
    }

    /// Follower: the log took an AppendEntries whose configuration entries are `appended`;
    /// configurations truncated with their entries are undone, new ones take effect.
    pub(crate) fn track_appended_configurations(
        &mut self,
        appended: Vec<(LogIndex, Term, Configuration)>,
    ) {
        let log = &self.log;
        self.configs.retain_held(|index| log.term(index));
        for (index, term, configuration) in appended {
            if index > self.configs.current_index() && self.log.term(index) == Some(term) {
                self.configs.push(index, term, configuration);
            }
        }
    }

    /// Leader, after its commit index moved (or on a tick): leaves a committed joint
    /// configuration, steps down once a configuration without it is committed, and
    /// promotes learners that caught up.
    pub(crate) fn advance_membership(&mut self) {
        if self.role != Role::Leader || self.configs.current_index() > self.log.committed {
            return;
        }
        let configuration = self.configs.current();
        if configuration.is_joint() {
            // Thesis §4.3: once C_old,new is committed, the leader moves on to C_new.
            let next = configuration.leave_joint();
            self.append_configuration(next);
            return;
        }
        if !configuration.is_voter(self.id) {
            self.step_down_removed();
            return;
        }
        if self.transfer.is_some() || self.stopping || !self.committed_in_current_term() {
            return;
        }
        let last_index = self.log.last_index();
        let lag = self.cfg.learner_catch_up_lag_entries as u64;
        let caught_up = self.promotions_pending.iter().copied().find(|node| {
            self.progress.iter().any(|(peer, pr)| {
                peer == node && pr.match_index.0.saturating_add(lag) >= last_index.0
            })
        });
        if let Some(node) = caught_up {
            self.promotions_pending.retain(|&pending| pending != node);
            if let Ok(next) = self
                .configs
                .current()
                .apply(&[MembershipChange::PromoteLearner(node)])
            {
                self.append_configuration(next);
            }
        }
    }

    /// Thesis §4.2.2: a leader removed from the configuration steps down once the
    /// configuration without it is committed. The most caught-up voter is told to campaign
    /// at once, so the group is not left waiting an election timeout.
    fn step_down_removed(&mut self) {
        let last_index = self.log.last_index();
        let configuration = self.configs.current();
        let successor = self
            .progress
            .iter()
            .filter(|(peer, pr)| configuration.is_voter(*peer) && pr.match_index == last_index)
            .map(|(peer, _)| *peer)
            .next();
        let term = self.term;
        if let Some(successor) = successor {
            self.send(successor, term, MessageBody::TimeoutNow);
        }
        // Not a voter: this replica never campaigns again in this configuration.
        assert!(
            !self.configs.current().is_voter(self.id),
            "stepping down while a voter"
        );
        self.become_follower(term, None);
    }
}
