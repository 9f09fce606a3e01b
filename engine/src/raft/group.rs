//! `RaftGroup`: one replica of one Raft group, as a pure state machine.
//!
//! This file holds the type, its construction, the driver-facing inputs (`tick`, `propose`,
//! `read_index`, `transfer_leader`, `stop`) and outputs (`poll_ready`, `on_persisted`,
//! `on_applied`). Message handling lives in `election.rs` (terms, votes, roles) and
//! `replication.rs` (AppendEntries, heartbeats, commit, reads).
//!
//! # Invariants (checked by `check_invariants` after every input under `strict`)
//! - A leader voted for itself in its term, and `leader == Some(id)` exactly when leader.
//! - The hard state handed out never goes backwards in term.
//! - Every progress entry satisfies the `progress` invariants; `next_index <= last_index+1`.
//! - The log invariants hold.

use std::collections::VecDeque;

use crate::raft::config::{Config, ConfigError};
use crate::raft::error::{ProposeError, ReadError, TransferError};
use crate::raft::log::RaftLog;
use crate::raft::membership::{ConfigHistory, entry_configuration};
use crate::raft::message::{Message, MessageBody};
use crate::raft::payload::Payload;
use crate::raft::progress::Progress;
use crate::raft::quorum::Configuration;
use crate::raft::ready::{LogFetch, ReadMode, ReadState, Ready, ReadyId, Role, Status};
use crate::raft::rng::SplitMix64;
use crate::raft::snapshot::{
    IncomingSnapshot, SnapshotChunk, SnapshotInstall, SnapshotMeta, SnapshotRead,
};
use crate::raft::types::{Entry, EntryKind, HardState, LogIndex, NodeId, Term};
use crate::raft::verify::{Verification, VerifyRound};

/// At most this many heartbeat rounds remembered for lease accounting.
pub(crate) const READ_ROUNDS_REMEMBERED_MAX: usize = 64;

/// What a replica recovered from its storage at start.
#[derive(Clone, Debug, Default)]
pub struct RestoredState {
    /// The durable hard state.
    pub hard_state: HardState,
    /// The latest durable snapshot, if the group ever took or received one (its
    /// configuration replaces the bootstrap voters).
    pub snapshot: Option<SnapshotMeta>,
    /// The durable log, contiguous from the snapshot's index + 1 (from 1 without one):
    /// stored entries the snapshot covers are left out.
    pub entries: Vec<Entry>,
    /// The index through which the embedder's state machine already holds the log's effects.
    pub applied: LogIndex,
}

/// Where a proposal went: it succeeded if, and only if, the entry applied at `index` has
/// this `term`. It failed for good as soon as an entry of a higher term is applied at or
/// below `index` (Leader Completeness: every later leader holds that entry, and an entry of
/// `term` at `index` would need an entry of at most `term` below it), which bounds how long
/// a driver waits even when the log never grows back to `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposed {
    /// The proposal's log index.
    pub index: LogIndex,
    /// The term it was proposed in.
    pub term: Term,
}

/// What one `Ready` handed out for persistence: its id, its last entry, its hard state.
pub(crate) type HandedOut = (ReadyId, Option<(LogIndex, Term)>, Option<HardState>);

/// A leadership transfer under way.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Transfer {
    pub(crate) to: NodeId,
    pub(crate) elapsed_ticks: u32,
}

/// A read waiting for its confirmation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PendingRead {
    pub(crate) ctx: u64,
    pub(crate) index: LogIndex,
    pub(crate) round: u64,
}

/// One replica of one Raft group. See the `raft` module docs for the driving contract.
#[derive(Debug)]
pub struct RaftGroup {
    pub(crate) cfg: Config,
    pub(crate) id: NodeId,
    /// The configurations of the log; the latest is in force (`membership.rs`).
    pub(crate) configs: ConfigHistory,
    /// Leader: learners `add_voter` promotes once they catch up.
    pub(crate) promotions_pending: Vec<NodeId>,
    /// The latest snapshot this replica took or installed: the one it sends.
    pub(crate) snapshot: Option<SnapshotMeta>,
    /// Follower: the snapshot being received.
    pub(crate) incoming_snapshot: Option<IncomingSnapshot>,
    /// Leader: verifications collecting hashes (`verify.rs`).
    pub(crate) verify_rounds: Vec<VerifyRound>,
    /// Leader: the latest verifications finished.
    pub(crate) verify_finished: VecDeque<LogIndex>,
    pub(crate) role: Role,
    pub(crate) term: Term,
    pub(crate) vote: Option<NodeId>,
    pub(crate) leader: Option<NodeId>,
    pub(crate) log: RaftLog,
    pub(crate) rng: SplitMix64,
    /// Ticks since this replica's creation: its local clock.
    pub(crate) ticks: u64,
    pub(crate) election_elapsed: u32,
    pub(crate) heartbeat_elapsed: u32,
    pub(crate) election_timeout_randomized: u32,
    /// Until this tick a restarted replica ignores vote requests as if it had a leader: the
    /// lease promise it may have made before the crash must not be broken (check-quorum only).
    pub(crate) restart_guard_until: u64,
    /// Candidate and pre-candidate: the answers so far, by voter.
    pub(crate) votes: Vec<(NodeId, bool)>,
    /// Leader: one entry per other voter.
    pub(crate) progress: Vec<(NodeId, Progress)>,
    /// Leader: new entries or a new commit index wait to be sent.
    pub(crate) broadcast_pending: bool,
    /// Leader: the commit index the last broadcast carried.
    pub(crate) commit_broadcast: LogIndex,
    pub(crate) transfer: Option<Transfer>,
    /// Leader: the latest heartbeat round sent; rounds confirm reads and leases.
    pub(crate) read_round: u64,
    /// Leader: a read waits for a heartbeat round to be sent.
    pub(crate) read_heartbeat_pending: bool,
    /// Leader: (round, tick sent) of recent rounds.
    pub(crate) read_round_sent_ticks: VecDeque<(u64, u64)>,
    /// Leader: the lease (from a confirmed round) holds until this tick, exclusive.
    pub(crate) lease_until: u64,
    /// Leader: a TimeoutNow went out in this term. The target may still win an election that
    /// ignores leases (even after the transfer was abandoned), so no lease for the rest of
    /// the term.
    pub(crate) timeout_now_sent: bool,
    /// Leader: reads that arrived before an entry of this term was committed.
    pub(crate) reads_waiting_commit: Vec<u64>,
    /// Leader: reads waiting for their heartbeat round to be confirmed.
    pub(crate) reads_waiting_round: VecDeque<PendingRead>,
    /// Reads confirmed, waiting for apply to reach their index.
    pub(crate) reads_waiting_apply: VecDeque<PendingRead>,
    pub(crate) stopping: bool,
    /// The group is quiesced (`quiesce.rs`): ticks do nothing until something wakes it.
    pub(crate) quiesced: bool,
    /// Leader: consecutive ticks the group has been idle.
    pub(crate) idle_ticks: u32,
    /// Follower: the read round of the `Quiesce` that quiesced it.
    pub(crate) quiesced_round: u64,
    // Outputs.
    pub(crate) messages_now: Vec<Message>,
    pub(crate) messages_after_persist: Vec<Message>,
    pub(crate) read_states: Vec<ReadState>,
    pub(crate) fetches: Vec<LogFetch>,
    pub(crate) snapshot_reads: Vec<SnapshotRead>,
    pub(crate) snapshot_chunks: Vec<SnapshotChunk>,
    pub(crate) snapshot_install: Option<SnapshotInstall>,
    /// Follower: the Ready that carries an installed snapshot, until it is durable. The log
    /// counts the snapshot as persisted from the install on, so `send` must hold back
    /// every message meanwhile (an acknowledgement of the snapshot's index above all).
    pub(crate) install_unpersisted: Option<ReadyId>,
    pub(crate) verifications: Vec<Verification>,
    pub(crate) next_ready_id: u64,
    /// Readies handed out and not yet acknowledged: (id, last entry, hard state).
    pub(crate) unacknowledged: VecDeque<HandedOut>,
    pub(crate) hard_state_emitted: HardState,
    pub(crate) hard_state_persisted: HardState,
}

impl RaftGroup {
    /// A replica of a group bootstrapped with `voters` (which must include `cfg.id`),
    /// starting from what its storage recovered (`RestoredState::default()` for a new group).
    ///
    /// A replica *joining* an existing group is created with no voters: it learns its
    /// configuration from the leader's log or snapshot, and neither campaigns nor votes
    /// for itself before that configuration makes it a voter.
    ///
    /// # Errors
    /// The configuration is invalid; `voters` does not hold `cfg.id`; a restored
    /// configuration entry does not decode.
    pub fn new(
        cfg: Config,
        voters: &[NodeId],
        restored: RestoredState,
    ) -> Result<RaftGroup, ConfigError> {
        cfg.validate()?;
        let bootstrap = if voters.is_empty() {
            Configuration::default()
        } else {
            let configuration = Configuration::new(voters).expect("not empty");
            if !configuration.contains(cfg.id) {
                return Err(ConfigError {
                    field: "voters",
                    reason: "must include this node's id (a joining replica gets none)",
                });
            }
            configuration
        };
        let hard_state = restored.hard_state;
        let (base, base_term, base_configuration) = match &restored.snapshot {
            Some(meta) => (meta.index, meta.term, meta.configuration.clone()),
            None => (LogIndex(0), Term(0), bootstrap),
        };
        let contiguous = restored
            .entries
            .iter()
            .enumerate()
            .all(|(k, entry)| entry.index.0 == base.0 + 1 + k as u64);
        if !contiguous {
            return Err(ConfigError {
                field: "restored entries",
                reason: "must be contiguous from right after the snapshot (or from index 1)",
            });
        }
        let mut configs = ConfigHistory::new(base, base_term, base_configuration);
        for entry in &restored.entries {
            let configuration = entry_configuration(entry).map_err(|reason| ConfigError {
                field: "restored entries",
                reason,
            })?;
            if let Some(configuration) = configuration {
                configs.push(entry.index, entry.term, configuration);
            }
        }
        let log = RaftLog::restore(
            (base, base_term),
            restored.entries,
            hard_state.commit,
            restored.applied,
        );
        // The restored commit may be clamped to the restored log: that is what is durable.
        let durable = HardState {
            commit: log.committed,
            ..hard_state
        };
        let mut group = RaftGroup {
            id: cfg.id,
            rng: SplitMix64::new(cfg.seed),
            // A replica that never saw a term cannot have promised a lease to anyone.
            restart_guard_until: if cfg.check_quorum && hard_state.term > Term(0) {
                u64::from(cfg.election_timeout_ticks)
            } else {
                0
            },
            cfg,
            configs,
            promotions_pending: Vec::new(),
            snapshot: restored.snapshot,
            incoming_snapshot: None,
            verify_rounds: Vec::new(),
            verify_finished: VecDeque::new(),
            role: Role::Follower,
            term: hard_state.term,
            vote: hard_state.vote,
            leader: None,
            log,
            ticks: 0,
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            election_timeout_randomized: 0,
            votes: Vec::new(),
            progress: Vec::new(),
            broadcast_pending: false,
            commit_broadcast: LogIndex(0),
            transfer: None,
            read_round: 0,
            read_heartbeat_pending: false,
            read_round_sent_ticks: VecDeque::new(),
            lease_until: 0,
            timeout_now_sent: false,
            reads_waiting_commit: Vec::new(),
            reads_waiting_round: VecDeque::new(),
            reads_waiting_apply: VecDeque::new(),
            stopping: false,
            quiesced: false,
            idle_ticks: 0,
            quiesced_round: 0,
            messages_now: Vec::new(),
            messages_after_persist: Vec::new(),
            read_states: Vec::new(),
            fetches: Vec::new(),
            snapshot_reads: Vec::new(),
            snapshot_chunks: Vec::new(),
            snapshot_install: None,
            install_unpersisted: None,
            verifications: Vec::new(),
            next_ready_id: 1,
            unacknowledged: VecDeque::new(),
            hard_state_emitted: durable,
            hard_state_persisted: durable,
        };
        group.reset_election_timeout();
        group.check_invariants();
        Ok(group)
    }

    /// This replica's node.
    #[must_use]
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The replica's role, term, leader and log positions.
    #[must_use]
    pub fn status(&self) -> Status {
        Status {
            id: self.id,
            role: self.role,
            term: self.term,
            leader: self.leader,
            commit: self.log.committed,
            applied: self.log.applied,
            last_index: self.log.last_index(),
            persisted: self.log.persisted,
        }
    }

    /// Whether this replica leads its group now.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }

    /// The current hard state (not necessarily durable yet).
    #[must_use]
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
        }
    }

    /// A leader's replication progress for `peer` (`None` on a non-leader or for an unknown
    /// peer).
    #[must_use]
    pub fn progress(&self, peer: NodeId) -> Option<&Progress> {
        self.progress
            .iter()
            .find(|(id, _)| *id == peer)
            .map(|(_, pr)| pr)
    }

    /// The voters of the group (of the incoming configuration, when joint).
    #[must_use]
    pub fn voters(&self) -> &[NodeId] {
        self.configs.current().voters()
    }

    /// The term of the entry at `index` in this replica's log (`Term(0)` for index 0).
    #[must_use]
    pub fn entry_term(&self, index: LogIndex) -> Option<Term> {
        self.log.term(index)
    }

    /// The log's base: the last index compacted into a snapshot and its term ((0, 0) for a
    /// log never compacted). Entries at or below it are known only through the snapshot.
    #[must_use]
    pub fn log_base(&self) -> (LogIndex, Term) {
        self.log.base()
    }

    /// The entry at `index`, if this replica holds it.
    #[must_use]
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.log.entry(index)
    }

    /// Advances the replica's clock by one tick: election timeouts, heartbeats, check-quorum
    /// and transfer timeouts. The driver ticks at a fixed rate; time never goes back.
    pub fn tick(&mut self) {
        self.ticks += 1;
        if self.quiesced {
            return;
        }
        if self.role == Role::Leader {
            self.tick_leader();
        } else {
            self.tick_election();
        }
        self.check_invariants();
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        // Learners, removed nodes and joining replicas never campaign (thesis §4.2.1); a
        // node leaving the group still may until C_new commits (`may_campaign`).
        if self.election_elapsed >= self.election_timeout_randomized && self.may_campaign() {
            self.election_elapsed = 0;
            self.start_election(false);
        }
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if let Some(transfer) = &mut self.transfer {
            transfer.elapsed_ticks += 1;
            if transfer.elapsed_ticks >= self.cfg.election_timeout_ticks {
                // Thesis §3.10: a transfer that does not finish within an election timeout is
                // abandoned, and the leader takes proposals again.
                self.transfer = None;
            }
        }
        if self.election_elapsed >= self.cfg.election_timeout_ticks {
            self.election_elapsed = 0;
            if self.cfg.check_quorum && !self.check_quorum_active() {
                // Thesis §6.2 (check-quorum): a leader that did not hear from a majority
                // within an election timeout steps down, so clients stop waiting on it.
                let term = self.term;
                self.become_follower(term, None);
                return;
            }
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_interval_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
        self.tick_verifications();
        self.advance_membership();
        self.maybe_quiesce();
    }

    /// Check-quorum: whether a majority (this leader included) was heard from since the last
    /// check; clears the marks for the next round.
    fn check_quorum_active(&mut self) -> bool {
        let id = self.id;
        let progress = &self.progress;
        let active = self.configs.current().has_quorum(|voter| {
            voter == id
                || progress
                    .iter()
                    .any(|(peer, pr)| *peer == voter && pr.recent_active)
        });
        for (_, pr) in &mut self.progress {
            pr.recent_active = false;
        }
        active
    }

    /// Proposes `data` as a new entry. On the leader the entry is appended at once; it is
    /// sent to followers with the next `poll_ready`, batched with every other proposal made
    /// since the last one.
    ///
    /// # Errors
    /// `NotLeader`, `ProposalTooLarge`, `TransferInProgress`, `GroupStopping`; nothing was
    /// appended.
    pub fn propose(&mut self, data: impl Into<Payload>) -> Result<Proposed, ProposeError> {
        self.check_proposal_allowed()?;
        let data = data.into();
        if data.len() > self.cfg.proposal_bytes_max {
            return Err(ProposeError::ProposalTooLarge {
                size_bytes: data.len(),
                max_bytes: self.cfg.proposal_bytes_max,
            });
        }
        let index = self.log.last_index().next();
        self.log.append(Entry {
            index,
            term: self.term,
            kind: EntryKind::Normal,
            data,
        });
        self.broadcast_pending = true;
        Ok(Proposed {
            index,
            term: self.term,
        })
    }

    /// Wakes the group and checks that it takes proposals now.
    pub(crate) fn check_proposal_allowed(&mut self) -> Result<(), ProposeError> {
        if self.stopping {
            return Err(ProposeError::GroupStopping);
        }
        self.wake();
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        if let Some(transfer) = self.transfer {
            return Err(ProposeError::TransferInProgress { to: transfer.to });
        }
        Ok(())
    }

    /// Asks for a linearizable read. The answer arrives as a `ReadState` with `ctx` in a
    /// later `Ready` (or in the next one, for a confirmed lease): the read index, to be
    /// served once the state machine applied through it.
    ///
    /// # Errors
    /// `NotLeader`, `LeaseUnavailable` (lease read without check-quorum), `GroupStopping`.
    pub fn read_index(&mut self, ctx: u64, mode: ReadMode) -> Result<(), ReadError> {
        if self.stopping {
            return Err(ReadError::GroupStopping);
        }
        self.wake();
        if self.role != Role::Leader {
            return Err(ReadError::NotLeader {
                leader: self.leader,
            });
        }
        if mode == ReadMode::Lease && !self.cfg.check_quorum {
            return Err(ReadError::LeaseUnavailable);
        }
        if !self.committed_in_current_term() {
            // Thesis §6.4 step 1: until the no-op of this term commits, the leader does not
            // know the latest commit index; the read waits.
            self.reads_waiting_commit.push(ctx);
            return Ok(());
        }
        let index = self.log.committed;
        if mode == ReadMode::Lease && self.lease_valid() {
            self.reads_waiting_apply.push_back(PendingRead {
                ctx,
                index,
                round: 0,
            });
            return Ok(());
        }
        self.queue_read_for_round(ctx, index);
        Ok(())
    }

    /// Starts handing leadership to `to` (thesis §3.10): proposals are refused meanwhile;
    /// once `to` holds the whole log it is told to campaign at once. Abandoned after an
    /// election timeout.
    ///
    /// # Errors
    /// `NotLeader`, `NotAVoter`, `GroupStopping`.
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), TransferError> {
        if self.stopping {
            return Err(TransferError::GroupStopping);
        }
        self.wake();
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader {
                leader: self.leader,
            });
        }
        if !self.configs.current().is_voter(to) {
            return Err(TransferError::NotAVoter(to));
        }
        if to == self.id {
            return Ok(());
        }
        self.transfer = Some(Transfer {
            to,
            elapsed_ticks: 0,
        });
        self.maybe_send_timeout_now();
        if self.transfer.is_some() {
            self.send_append(to, true);
        }
        self.check_invariants();
        Ok(())
    }

    /// Stops taking proposals, reads and transfers (they fail with `GroupStopping`); the
    /// replica keeps answering messages so the rest of the group is not disturbed.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// Whether `poll_ready` would return something.
    #[must_use]
    pub fn has_ready(&self) -> bool {
        self.broadcast_pending
            || self.read_heartbeat_pending
            || !self.messages_now.is_empty()
            || !self.messages_after_persist.is_empty()
            || !self.read_states.is_empty()
            || !self.fetches.is_empty()
            || !self.snapshot_reads.is_empty()
            || !self.snapshot_chunks.is_empty()
            || self.snapshot_install.is_some()
            || !self.verifications.is_empty()
            || self.log.unstable_from <= self.log.last_index()
            || self.hard_state() != self.hard_state_emitted
            || self.log.has_committed_to_apply()
            || self
                .reads_waiting_apply
                .front()
                .is_some_and(|read| read.index <= self.log.applying)
    }

    /// Takes the work accumulated since the last call, or `None` if there is none.
    pub fn poll_ready(&mut self) -> Option<Ready> {
        if self.broadcast_pending {
            self.broadcast_pending = false;
            if self.role == Role::Leader {
                self.broadcast_append();
            }
        }
        if self.read_heartbeat_pending {
            self.read_heartbeat_pending = false;
            if self.role == Role::Leader {
                self.broadcast_heartbeat();
            }
        }
        if !self.has_ready() {
            return None;
        }
        let entries = self.log.take_unstable();
        let hard_state = self.hard_state();
        let hard_state = (hard_state != self.hard_state_emitted).then(|| {
            assert!(
                hard_state.term >= self.hard_state_emitted.term,
                "hard state term went back"
            );
            self.hard_state_emitted = hard_state;
            hard_state
        });
        let committed_entries = self.log.take_committed(self.cfg.apply_entries_max);
        while let Some(read) = self.reads_waiting_apply.front() {
            if read.index > self.log.applying {
                break;
            }
            self.read_states.push(ReadState {
                ctx: read.ctx,
                result: Ok(read.index),
            });
            self.reads_waiting_apply.pop_front();
        }
        let id = ReadyId(self.next_ready_id);
        self.next_ready_id += 1;
        let last_entry = entries.last().map(|entry| (entry.index, entry.term));
        self.unacknowledged.push_back((id, last_entry, hard_state));
        if self.snapshot_install.is_some() {
            self.install_unpersisted = Some(id);
        }
        let ready = Ready {
            id,
            hard_state,
            entries,
            messages: std::mem::take(&mut self.messages_now),
            persisted_messages: std::mem::take(&mut self.messages_after_persist),
            committed_entries,
            read_states: std::mem::take(&mut self.read_states),
            fetches: std::mem::take(&mut self.fetches),
            snapshot_reads: std::mem::take(&mut self.snapshot_reads),
            snapshot_chunks: std::mem::take(&mut self.snapshot_chunks),
            install_snapshot: self.snapshot_install.take(),
            verifications: std::mem::take(&mut self.verifications),
        };
        self.check_invariants();
        Some(ready)
    }

    /// The driver made `Ready` `id` (and every earlier one) durable.
    pub fn on_persisted(&mut self, id: ReadyId) {
        if self
            .install_unpersisted
            .is_some_and(|install| install <= id)
        {
            self.install_unpersisted = None;
        }
        let mut persisted_more = false;
        while let Some(&(ready_id, last_entry, hard_state)) = self.unacknowledged.front() {
            if ready_id > id {
                break;
            }
            self.unacknowledged.pop_front();
            if let Some((index, term)) = last_entry {
                persisted_more |= self.log.on_persisted(index, term);
            }
            if let Some(hard_state) = hard_state {
                self.hard_state_persisted = hard_state;
            }
        }
        if persisted_more && self.role == Role::Leader {
            // The leader's own durable entries count toward the quorum only now.
            self.maybe_commit();
        }
        self.check_invariants();
    }

    /// The driver applied every committed entry through `index` to its state machine.
    pub fn on_applied(&mut self, index: LogIndex) {
        assert!(
            index <= self.log.applying,
            "applied {index} beyond what was handed out ({})",
            self.log.applying
        );
        self.log.applied = self.log.applied.max(index);
        self.evict_applied();
    }

    /// Evicts applied, durable entries nobody is expected to need: on a leader, those every
    /// follower already holds, and beyond the cache bounds even those a slow follower lacks
    /// (they are fetched back for it); elsewhere all of them. An applied entry's data may pin
    /// a whole receive buffer (payloads are slices of it), so none is kept without need.
    pub(crate) fn evict_applied(&mut self) {
        let needed_from = if self.role == Role::Leader {
            self.progress
                .iter()
                .map(|(_, pr)| pr.match_index.next())
                .min()
                .unwrap_or(LogIndex(u64::MAX))
        } else {
            LogIndex(u64::MAX)
        };
        self.log.evict(
            needed_from,
            self.cfg.log_cache_entries_max,
            self.cfg.log_cache_bytes_max,
        );
    }

    /// Queues an outbound message, for now or for after the next persist: a message waits
    /// when this replica's term or vote is not yet durable, or (for a non-leader) when its
    /// log holds entries that are not yet durable, because the message may depend on them
    /// (Figure 2: persistent state is updated on stable storage before responding to RPCs).
    pub(crate) fn send(&mut self, to: NodeId, term: Term, body: MessageBody) {
        let message = Message {
            from: self.id,
            to,
            term,
            body,
        };
        let term_or_vote_pending = self.term != self.hard_state_persisted.term
            || self.vote != self.hard_state_persisted.vote;
        // Figure 2 for snapshots: a follower acknowledges nothing the snapshot covers before
        // the snapshot is durable (the log already counts it as persisted).
        let log_pending = self.role != Role::Leader
            && (self.log.persisted < self.log.last_index()
                || self.snapshot_install.is_some()
                || self.install_unpersisted.is_some());
        if term_or_vote_pending || log_pending {
            self.messages_after_persist.push(message);
        } else {
            self.messages_now.push(message);
        }
    }

    /// Draws a new randomized election timeout in `[base, 2·base)`.
    pub(crate) fn reset_election_timeout(&mut self) {
        let base = self.cfg.election_timeout_ticks;
        self.election_timeout_randomized = self.rng.below(base, 2 * base);
    }

    /// Whether the leader committed an entry of its own term (its no-op, at least).
    pub(crate) fn committed_in_current_term(&self) -> bool {
        self.log.term(self.log.committed) == Some(self.term)
    }

    /// Whether a lease read may be served now.
    pub(crate) fn lease_valid(&self) -> bool {
        // Lease safety: see `quiesce.rs`; a quiesced leader gave its lease up.
        assert!(
            !self.quiesced || self.lease_until == 0,
            "Lease safety: a lease held while quiesced"
        );
        self.cfg.check_quorum
            && self.transfer.is_none()
            && !self.timeout_now_sent
            && self.ticks < self.lease_until
    }

    /// Fails every read this replica holds (it is no longer leader).
    pub(crate) fn fail_pending_reads(&mut self) {
        let error = ReadError::NotLeader {
            leader: self.leader,
        };
        let ctxs: Vec<u64> = self
            .reads_waiting_commit
            .drain(..)
            .chain(self.reads_waiting_round.drain(..).map(|read| read.ctx))
            .collect();
        for ctx in ctxs {
            self.read_states.push(ReadState {
                ctx,
                result: Err(error),
            });
        }
        // Reads already confirmed stay valid: their index was confirmed while leader.
    }

    /// Asserts the type's invariants (O(n) parts only under `strict`).
    pub(crate) fn check_invariants(&self) {
        if !cfg!(feature = "strict") {
            return;
        }
        self.log.check_invariants();
        if self.role == Role::Leader {
            assert_eq!(
                self.leader,
                Some(self.id),
                "leader without itself as leader"
            );
            assert_eq!(
                self.vote,
                Some(self.id),
                "Election Safety: a leader voted for itself"
            );
            // One membership change at a time (thesis §4.3) is asserted where a leader
            // appends a configuration (`append_configuration`); a newly elected leader may
            // still hold several uncommitted ones from earlier terms (found by fuzzing).
            let members = self.configs.current().members();
            assert_eq!(
                self.progress.len(),
                members.iter().filter(|&&member| member != self.id).count(),
                "leader progress does not match the configuration"
            );
            for (_, pr) in &self.progress {
                pr.check_invariants(self.cfg.inflight_messages_max);
                assert!(
                    pr.next_index <= self.log.last_index().next(),
                    "next_index beyond the log"
                );
            }
        } else {
            assert_ne!(self.leader, Some(self.id), "non-leader names itself leader");
            assert!(self.progress.is_empty(), "progress kept by a non-leader");
        }
        if self.quiesced {
            self.check_quiesced();
        }
    }
}
