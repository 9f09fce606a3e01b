//! Log replication of a `RaftGroup`: the leader's AppendEntries and heartbeats, the
//! follower's answers, the commit rule, and the heartbeat rounds that confirm reads.

use crate::raft::error::StepError;
use crate::raft::group::{PendingRead, READ_ROUNDS_REMEMBERED_MAX, RaftGroup};
use crate::raft::membership::entry_configuration;
use crate::raft::message::{
    AppendEntries, AppendResponse, ConflictHint, Heartbeat, HeartbeatResponse, MessageBody,
};
use crate::raft::progress::ProgressState;
use crate::raft::ready::{LogFetch, Role};
use crate::raft::types::{Entry, LogIndex, NodeId, Term};

impl RaftGroup {
    pub(crate) fn step_leader(&mut self, from: NodeId, body: MessageBody) -> Result<(), StepError> {
        if let Some((_, pr)) = self.progress.iter_mut().find(|(peer, _)| *peer == from) {
            pr.recent_active = true;
        }
        match body {
            MessageBody::AppendResponse(response) => self.handle_append_response(from, response),
            MessageBody::HeartbeatResponse(response) => {
                self.handle_heartbeat_response(from, response)
            }
            MessageBody::SnapshotResponse(response) => {
                self.handle_snapshot_response(from, response);
            }
            MessageBody::VerifyReport(report) => {
                self.record_state_hash(from, report.index, report.hash);
            }
            MessageBody::AppendEntries(_)
            | MessageBody::Heartbeat(_)
            | MessageBody::Quiesce(_)
            | MessageBody::InstallSnapshot(_) => {
                // Election Safety: only one leader per term. Another one can only come from a
                // broken peer; refuse its message rather than follow it.
                return Err(StepError::Malformed {
                    message: body.name(),
                    reason: "a second leader in this term",
                });
            }
            MessageBody::VoteResponse(_)
            | MessageBody::TimeoutNow
            | MessageBody::RequestVote(_) => {}
        }
        Ok(())
    }

    /// Figure 2, AppendEntries receiver.
    pub(crate) fn handle_append_entries(
        &mut self,
        from: NodeId,
        term: Term,
        append: AppendEntries,
    ) {
        if append.prev_index < self.log.committed {
            self.accept_through_commit(from, term);
            return;
        }
        // Decoded by `validate` already; collected before the entries move into the log.
        let configurations: Vec<_> = append
            .entries
            .iter()
            .filter_map(|entry| {
                entry_configuration(entry)
                    .ok()
                    .flatten()
                    .map(|configuration| (entry.index, entry.term, configuration))
            })
            .collect();
        match self
            .log
            .maybe_append(append.prev_index, append.prev_term, append.entries)
        {
            Some(last_new) => {
                // Thesis §4.1: a configuration is in force once appended; one truncated
                // with its entry is undone.
                self.track_appended_configurations(configurations);
                // Figure 2, rule 5: commitIndex = min(leaderCommit, index of last new entry).
                self.log.commit_to(append.commit.min(last_new));
                self.send(
                    from,
                    term,
                    MessageBody::AppendResponse(AppendResponse::Accepted {
                        match_index: last_new,
                    }),
                );
            }
            None => {
                // Figure 2, rule 2: reply false if the log has no entry at prevLogIndex whose
                // term matches prevLogTerm; the hint lets the leader skip a whole term.
                let hint = self.conflict_hint(append.prev_index);
                self.send(
                    from,
                    term,
                    MessageBody::AppendResponse(AppendResponse::Rejected {
                        rejected_index: append.prev_index,
                        hint,
                    }),
                );
            }
        }
    }

    /// Answers a leader whose message covers only what we hold committed: everything
    /// through our commit index matches its log already (Log Matching + Leader
    /// Completeness), so we tell it where we are.
    pub(crate) fn accept_through_commit(&mut self, from: NodeId, term: Term) {
        let match_index = self.log.committed;
        self.send(
            from,
            term,
            MessageBody::AppendResponse(AppendResponse::Accepted { match_index }),
        );
    }

    /// Where our log diverges from a leader's that has an entry at `rejected_index` we do not
    /// match: the term we hold there and its first index, or our end if we hold nothing there.
    fn conflict_hint(&self, rejected_index: LogIndex) -> ConflictHint {
        let last_index = self.log.last_index();
        if rejected_index > last_index {
            return ConflictHint {
                conflict_term: None,
                conflict_index: last_index.next(),
            };
        }
        let term = self
            .log
            .term(rejected_index)
            .expect("index within the log has a term");
        let first = self
            .log
            .first_index_of_term(term, rejected_index)
            .max(self.log.committed.next());
        ConflictHint {
            conflict_term: Some(term),
            conflict_index: first,
        }
    }

    pub(crate) fn handle_heartbeat(&mut self, from: NodeId, heartbeat: Heartbeat) {
        // The leader sends min(its commit, our match): we hold a matching entry there.
        let commit = heartbeat.commit.min(self.log.last_index());
        self.log.commit_to(commit);
        let term = self.term;
        self.send(
            from,
            term,
            MessageBody::HeartbeatResponse(HeartbeatResponse {
                read_round: heartbeat.read_round,
            }),
        );
    }

    fn handle_append_response(&mut self, from: NodeId, response: AppendResponse) {
        let last_index = self.log.last_index();
        let Some(slot) = self.progress.iter().position(|(peer, _)| *peer == from) else {
            return;
        };
        match response {
            AppendResponse::Accepted { match_index } => {
                if match_index > last_index {
                    return; // Claims entries we never had: stale from an old term, or broken.
                }
                let moved = self.progress[slot].1.on_accepted(match_index);
                if moved {
                    self.maybe_commit();
                    self.maybe_send_timeout_now();
                }
                while self.send_append(from, false) {}
            }
            AppendResponse::Rejected {
                rejected_index,
                hint,
            } => {
                if rejected_index == LogIndex(0) || rejected_index > last_index {
                    return; // A stale-term answer (handled by the term rules) or nonsense.
                }
                let next_index = self.next_index_from_hint(rejected_index, hint);
                if self.progress[slot]
                    .1
                    .on_rejected(rejected_index, next_index)
                {
                    self.send_append(from, true);
                }
            }
        }
    }

    /// The leader's side of the conflict hint: if we hold entries of the follower's
    /// conflicting term, resume after our last one of it; otherwise skip the follower's
    /// whole term.
    fn next_index_from_hint(&self, rejected_index: LogIndex, hint: ConflictHint) -> LogIndex {
        match hint.conflict_term {
            Some(term) => match self.log.last_index_of_term(term, rejected_index) {
                Some(last) => last.next().min(rejected_index),
                None => hint.conflict_index,
            },
            None => hint.conflict_index,
        }
    }

    fn handle_heartbeat_response(&mut self, from: NodeId, response: HeartbeatResponse) {
        let last_index = self.log.last_index();
        let Some((_, pr)) = self.progress.iter_mut().find(|(peer, _)| *peer == from) else {
            return;
        };
        pr.read_round_acked = pr
            .read_round_acked
            .max(response.read_round.min(self.read_round));
        let resend = pr.match_index < last_index && pr.on_heartbeat_response(response.read_round);
        self.confirm_read_rounds();
        // A follower still behind after a heartbeat round whose messages were probably lost:
        // send what the window allows or, if everything was sent, an empty append at
        // next_index - 1, which the follower rejects if it lacks entries (back to probing).
        if resend && !self.send_append(from, false) {
            self.send_append(from, true);
        }
    }

    /// Sends `to` the next AppendEntries its progress allows. With `allow_empty`, sends one
    /// even without entries (a probe, or to carry the commit index). Returns whether a
    /// message with entries went out (so a caller may loop to fill the window).
    pub(crate) fn send_append(&mut self, to: NodeId, allow_empty: bool) -> bool {
        let Some(slot) = self.progress.iter().position(|(peer, _)| *peer == to) else {
            return false;
        };
        let pr = &self.progress[slot].1;
        if pr.state == ProgressState::Snapshot || pr.next_index <= self.log.base().0 {
            // The entry before next_index was compacted away: only a snapshot helps.
            self.send_snapshot(slot);
            return false;
        }
        if pr.is_paused(self.cfg.inflight_messages_max, self.cfg.inflight_bytes_max) {
            return false;
        }
        let next_index = pr.next_index;
        if next_index < self.log.first_index() {
            // The entries were evicted from memory: the driver reads them back, and
            // `on_fetched` sends them. One fetch at a time per follower.
            let failed_this_round = pr.fetch_failed_round == Some(self.read_round);
            if !pr.fetch_pending && !failed_this_round {
                self.progress[slot].1.fetch_pending = true;
                let count = self.cfg.append_entries_max as u64;
                let through = LogIndex(
                    next_index
                        .0
                        .saturating_add(count - 1)
                        .min(self.log.first_index().0 - 1),
                );
                self.fetches.push(LogFetch {
                    to,
                    from: next_index,
                    through,
                    bytes_max: self.cfg.append_bytes_max,
                });
            }
            return false;
        }
        let (entries, bytes) = self.log.entries_from(
            next_index,
            self.cfg.append_entries_max,
            self.cfg.append_bytes_max,
        );
        if entries.is_empty() && !allow_empty {
            return false;
        }
        self.send_entries(slot, to, next_index, entries, bytes)
    }

    /// Sends `to` (at `slot` in `progress`) an AppendEntries of `entries` (possibly none)
    /// from `next_index`, and records it in its progress. Returns whether it had entries.
    fn send_entries(
        &mut self,
        slot: usize,
        to: NodeId,
        next_index: LogIndex,
        entries: Vec<Entry>,
        bytes: usize,
    ) -> bool {
        let prev_index = next_index.prev();
        let prev_term = self
            .log
            .term(prev_index)
            .expect("next_index - 1 is within the log: its term is known even when evicted");
        let count = entries.len();
        let last_index = LogIndex(prev_index.0 + count as u64);
        let commit = self.log.committed;
        let term = self.term;
        let round = self.read_round;
        self.progress[slot]
            .1
            .on_sent(last_index, count, bytes, round);
        self.send(
            to,
            term,
            MessageBody::AppendEntries(AppendEntries {
                prev_index,
                prev_term,
                entries,
                commit,
            }),
        );
        count > 0
    }

    /// The driver read back the entries of `fetch` (none if it could not): they go to the
    /// follower if it still needs them, and replication to it resumes.
    pub fn on_fetched(&mut self, fetch: LogFetch, entries: Vec<Entry>) {
        if self.role != Role::Leader {
            return;
        }
        let Some(slot) = self.progress.iter().position(|(peer, _)| *peer == fetch.to) else {
            return;
        };
        if !self.progress[slot].1.fetch_pending {
            return; // From an earlier term's progress.
        }
        self.progress[slot].1.fetch_pending = false;
        if fetch.from <= self.log.base().0 {
            // Compacted while the driver read: the follower needs the snapshot now.
            self.send_append(fetch.to, false);
            return;
        }
        // Log Matching: what goes out must be this log's entries, contiguous from
        // `fetch.from`, each with the term this log has at its index.
        // Entries that do not match are a storage or driver bug: they are not sent, and the
        // fetch counts as failed.
        let matches = entries.iter().enumerate().all(|(k, entry)| {
            entry.index.0 == fetch.from.0 + k as u64
                && entry.index <= fetch.through
                && self.log.term(entry.index) == Some(entry.term)
        });
        debug_assert!(
            matches,
            "Log Matching: the driver fetched entries that are not this log's"
        );
        if entries.is_empty() || !matches {
            // Retried after the next heartbeat round, not now.
            self.progress[slot].1.fetch_failed_round = Some(self.read_round);
            return;
        }
        self.progress[slot].1.fetch_failed_round = None;
        let pr = &self.progress[slot].1;
        let paused = pr.is_paused(self.cfg.inflight_messages_max, self.cfg.inflight_bytes_max);
        if pr.next_index == fetch.from && !paused {
            let bytes = entries.iter().map(Entry::size_bytes).sum();
            self.send_entries(slot, fetch.to, fetch.from, entries, bytes);
        }
        while self.send_append(fetch.to, false) {}
        self.check_invariants();
    }

    /// Sends every follower what its window allows; a follower with nothing new gets an
    /// empty AppendEntries when the commit index moved, so it learns it without waiting
    /// for the next heartbeat.
    pub(crate) fn broadcast_append(&mut self) {
        let commit_moved = self.log.committed > self.commit_broadcast;
        self.commit_broadcast = self.log.committed;
        let peers: Vec<NodeId> = self.progress.iter().map(|(peer, _)| *peer).collect();
        for peer in peers {
            if self.send_append(peer, false) {
                while self.send_append(peer, false) {}
            } else if commit_moved {
                self.send_append(peer, true);
            }
        }
    }

    /// One heartbeat to every follower, opening a new read round.
    pub(crate) fn broadcast_heartbeat(&mut self) {
        self.read_round += 1;
        let round = self.read_round;
        self.read_round_sent_ticks.push_back((round, self.ticks));
        if self.read_round_sent_ticks.len() > READ_ROUNDS_REMEMBERED_MAX {
            self.read_round_sent_ticks.pop_front();
        }
        let term = self.term;
        let commit = self.log.committed;
        let heartbeats: Vec<(NodeId, LogIndex)> = self
            .progress
            .iter()
            .map(|(peer, pr)| (*peer, pr.match_index.min(commit)))
            .collect();
        for (peer, commit) in heartbeats {
            self.send(
                peer,
                term,
                MessageBody::Heartbeat(Heartbeat {
                    commit,
                    read_round: round,
                }),
            );
        }
        // A group of one confirms its own rounds.
        self.confirm_read_rounds();
    }

    /// Figure 2, leaders: commit the highest index a majority matches, but only if its
    /// entry is of the current term (§5.4.2, Figure 8): older entries commit only
    /// indirectly, under an entry of this term.
    pub(crate) fn maybe_commit(&mut self) {
        let own = self.log.persisted;
        let id = self.id;
        let progress = &self.progress;
        // Only voters count (both sets when joint); the leader's own log only if it votes.
        let quorum_index = self.configs.current().committed_index(|voter| {
            if voter == id {
                own
            } else {
                progress
                    .iter()
                    .find(|(peer, _)| *peer == voter)
                    .map_or(LogIndex(0), |(_, pr)| pr.match_index)
            }
        });
        if quorum_index <= self.log.committed || self.log.term(quorum_index) != Some(self.term) {
            return;
        }
        let was_committed_in_term = self.committed_in_current_term();
        // Figure 8 rule, asserted: the entry committed by counting replicas is of our term.
        assert_eq!(
            self.log.term(quorum_index),
            Some(self.term),
            "Figure 8: committing an older term's entry by count"
        );
        self.log.commit_to(quorum_index);
        self.broadcast_pending = true;
        if !was_committed_in_term {
            // Thesis §6.4: the first commit of the term releases the reads that waited for it.
            let waiting = std::mem::take(&mut self.reads_waiting_commit);
            let index = self.log.committed;
            for ctx in waiting {
                self.queue_read_for_round(ctx, index);
            }
        }
        self.advance_membership();
    }

    /// Leadership transfer: once the target holds our whole log, tell it to campaign.
    pub(crate) fn maybe_send_timeout_now(&mut self) {
        let Some(transfer) = self.transfer else {
            return;
        };
        let last_index = self.log.last_index();
        let caught_up = self
            .progress
            .iter()
            .any(|(peer, pr)| *peer == transfer.to && pr.match_index == last_index);
        if caught_up {
            // Our lease ends here, for the rest of the term: the target's election ignores
            // leases, and the message may arrive late, even after the transfer was abandoned.
            self.lease_until = 0;
            self.timeout_now_sent = true;
            let term = self.term;
            self.send(transfer.to, term, MessageBody::TimeoutNow);
        }
    }

    /// Queues a ReadIndex read at `index` for the next heartbeat round.
    pub(crate) fn queue_read_for_round(&mut self, ctx: u64, index: LogIndex) {
        // The round is the one the next heartbeat broadcast opens; it must be sent after the
        // read arrived, so an earlier round cannot confirm it.
        let round = self.read_round + 1;
        self.reads_waiting_round
            .push_back(PendingRead { ctx, index, round });
        self.read_heartbeat_pending = true;
        if self.progress.is_empty() {
            // A group of one: the round is confirmed by ourselves at once.
            self.read_heartbeat_pending = false;
            self.broadcast_heartbeat();
        }
    }

    /// Thesis §6.4 step 3: a read is confirmed when a majority acknowledged a heartbeat round
    /// sent after it arrived. Also renews the lease from the highest confirmed round.
    fn confirm_read_rounds(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let id = self.id;
        let own_round = self.read_round;
        let progress = &self.progress;
        let confirmed = self.configs.current().committed_index(|voter| {
            if voter == id {
                LogIndex(own_round)
            } else {
                progress
                    .iter()
                    .find(|(peer, _)| *peer == voter)
                    .map_or(LogIndex(0), |(_, pr)| LogIndex(pr.read_round_acked))
            }
        });
        let confirmed = confirmed.0;
        let sent_tick = self
            .read_round_sent_ticks
            .iter()
            .find(|(round, _)| *round == confirmed);
        if let Some(&(_, sent_tick)) = sent_tick
            && self.transfer.is_none()
        {
            self.lease_until = self
                .lease_until
                .max(sent_tick + u64::from(self.cfg.lease_ticks));
        }
        while let Some(read) = self.reads_waiting_round.front() {
            if read.round > confirmed {
                break;
            }
            let read = *read;
            self.reads_waiting_round.pop_front();
            self.reads_waiting_apply.push_back(read);
        }
    }
}
