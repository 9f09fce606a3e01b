//! Terms, roles and elections of a `RaftGroup`: the entry point `step`, the term rules every
//! message goes through, pre-vote, votes, and the role transitions.

use crate::raft::error::StepError;
use crate::raft::group::RaftGroup;
use crate::raft::membership::entry_configuration;
use crate::raft::message::{
    AppendResponse, ConflictHint, Message, MessageBody, VoteKind, VoteRequest, VoteResponse,
};
use crate::raft::payload::Payload;
use crate::raft::progress::Progress;
use crate::raft::quorum::VoteResult;
use crate::raft::ready::Role;
use crate::raft::snapshot::validate_install;
use crate::raft::types::{Entry, EntryKind, LogIndex, NodeId, TERM_MAX, Term};

impl RaftGroup {
    /// Takes one message from a peer. Stale, duplicated and reordered messages are handled
    /// as Raft prescribes (ignored or answered) and return `Ok`.
    ///
    /// # Errors
    /// The message is for another node, from this node itself, or malformed in meaning; it
    /// was not taken and nothing changed.
    pub fn step(&mut self, message: Message) -> Result<(), StepError> {
        self.validate(&message)?;
        if self.woken_by(&message) {
            self.wake();
        }
        let result = self.step_validated(message);
        self.check_invariants();
        result
    }

    /// Rejects messages that cannot be taken whatever the state.
    fn validate(&self, message: &Message) -> Result<(), StepError> {
        if message.to != self.id {
            return Err(StepError::WrongDestination {
                to: message.to,
                this: self.id,
            });
        }
        // Messages from outside the configuration are taken: this replica may be joining
        // and not know its configuration yet, or not know the newest (thesis §4.1: a
        // server processes requests from servers outside its configuration).
        if message.from == self.id {
            return Err(StepError::UnknownPeer(message.from));
        }
        let malformed = |reason| {
            Err(StepError::Malformed {
                message: message.body.name(),
                reason,
            })
        };
        if message.term > TERM_MAX {
            // No real cluster gets there (2^62 elections); a peer claiming it is broken, and
            // taking it would leave this replica unable to campaign without overflowing.
            return malformed("term beyond TERM_MAX");
        }
        match &message.body {
            MessageBody::AppendEntries(append) => {
                if append.prev_term > message.term {
                    return malformed("prev_term above the message term");
                }
                // Checked first, so that walking the indexes below cannot overflow.
                if append
                    .prev_index
                    .0
                    .checked_add(append.entries.len() as u64 + 1)
                    .is_none()
                {
                    return malformed("index overflow");
                }
                let mut expected = append.prev_index.next();
                let mut previous_term = append.prev_term;
                for entry in &append.entries {
                    if entry.index != expected {
                        return malformed("entries not contiguous after prev_index");
                    }
                    if entry.term < previous_term || entry.term > message.term {
                        return malformed("entry terms out of order or above the message term");
                    }
                    if entry_configuration(entry).is_err() {
                        return malformed("a configuration entry that does not decode");
                    }
                    expected = expected.next();
                    previous_term = entry.term;
                }
            }
            MessageBody::RequestVote(request) if request.last_term > message.term => {
                return malformed("last_term above the message term");
            }
            MessageBody::InstallSnapshot(chunk) => {
                if let Err(reason) = validate_install(chunk, message.term) {
                    return malformed(reason);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn step_validated(&mut self, message: Message) -> Result<(), StepError> {
        if message.term > self.term {
            match &message.body {
                MessageBody::RequestVote(request) => {
                    if !request.transfer && self.in_lease() {
                        // Thesis §4.2.3 / §6.2: a voter that heard from a live leader within
                        // the minimum election timeout ignores requests (it would otherwise
                        // let a disruptive node depose a healthy leader, and lease reads rely
                        // on this promise).
                        return Ok(());
                    }
                    if request.kind == VoteKind::Vote {
                        self.become_follower(message.term, None);
                    }
                    // A pre-vote request does not change our term (thesis §9.6).
                }
                MessageBody::VoteResponse(response)
                    if response.kind == VoteKind::PreVote && response.granted =>
                {
                    // A granted pre-vote carries the term it was asked about, which is ours + 1.
                }
                MessageBody::AppendEntries(_)
                | MessageBody::Heartbeat(_)
                | MessageBody::Quiesce(_)
                | MessageBody::InstallSnapshot(_) => {
                    // Figure 2, all servers: a higher term makes us a follower (of its sender,
                    // which can only be the leader of that term).
                    self.become_follower(message.term, Some(message.from));
                }
                _ => self.become_follower(message.term, None),
            }
        } else if message.term < self.term {
            match &message.body {
                MessageBody::AppendEntries(_)
                | MessageBody::Heartbeat(_)
                | MessageBody::Quiesce(_)
                | MessageBody::InstallSnapshot(_) => {
                    // Figure 2, AppendEntries rule 1: reply false to a stale term. The stale
                    // leader (for instance one that was partitioned) learns the newer term from
                    // our answer and steps down.
                    let last_index = self.log.last_index();
                    self.send(
                        message.from,
                        self.term,
                        MessageBody::AppendResponse(AppendResponse::Rejected {
                            rejected_index: LogIndex(0),
                            hint: ConflictHint {
                                conflict_term: None,
                                conflict_index: last_index.next(),
                            },
                        }),
                    );
                }
                MessageBody::RequestVote(request) if request.kind == VoteKind::PreVote => {
                    self.send(
                        message.from,
                        self.term,
                        MessageBody::VoteResponse(VoteResponse {
                            kind: VoteKind::PreVote,
                            granted: false,
                        }),
                    );
                }
                _ => {}
            }
            // Figure 2: a request with a stale term is rejected; a stale response is ignored.
            return Ok(());
        }

        match message.body {
            MessageBody::RequestVote(request) => {
                self.handle_vote_request(message.from, message.term, request);
                Ok(())
            }
            body => match self.role {
                Role::Leader => self.step_leader(message.from, body),
                Role::Candidate | Role::PreCandidate => {
                    self.step_candidate(message.from, message.term, body)
                }
                Role::Follower => {
                    self.step_follower(message.from, message.term, body);
                    Ok(())
                }
            },
        }
    }

    /// Whether this replica promised not to help elect anyone else: it heard from a leader
    /// within the base election timeout, or it restarted less than one timeout ago.
    pub(crate) fn in_lease(&self) -> bool {
        self.cfg.check_quorum
            && ((self.leader.is_some() && self.election_elapsed < self.cfg.election_timeout_ticks)
                || self.ticks < self.restart_guard_until)
    }

    /// Figure 2, RequestVote receiver: grant if we have not voted for someone else in this
    /// term and the candidate's log is at least as up-to-date as ours (§5.4.1).
    fn handle_vote_request(&mut self, from: NodeId, term: Term, request: VoteRequest) {
        let can_vote = match request.kind {
            // Election Safety: at most one vote per term. Voting again for the same
            // candidate (a duplicated request) is harmless.
            VoteKind::Vote => {
                self.vote == Some(from) || (self.vote.is_none() && self.leader.is_none())
            }
            // A pre-vote for a future term promises nothing; in our own term only if we
            // have no leader.
            VoteKind::PreVote => term > self.term || (self.vote.is_none() && self.leader.is_none()),
        };
        let granted = can_vote
            && self
                .log
                .is_up_to_date(request.last_index, request.last_term);
        if granted && request.kind == VoteKind::Vote {
            // Election Safety: the vote is recorded (and, through `send`, durable) before the
            // response leaves.
            assert!(
                self.vote.is_none() || self.vote == Some(from),
                "second vote in {}",
                self.term
            );
            assert_eq!(term, self.term, "vote in a term we are not in");
            self.vote = Some(from);
            self.election_elapsed = 0;
        }
        let response_term = if granted && request.kind == VoteKind::PreVote {
            term
        } else {
            self.term
        };
        self.send(
            from,
            response_term,
            MessageBody::VoteResponse(VoteResponse {
                kind: request.kind,
                granted,
            }),
        );
    }

    fn step_follower(&mut self, from: NodeId, term: Term, body: MessageBody) {
        match body {
            MessageBody::AppendEntries(append) => {
                self.election_elapsed = 0;
                self.leader = Some(from);
                self.handle_append_entries(from, term, append);
            }
            MessageBody::Heartbeat(heartbeat) => {
                self.election_elapsed = 0;
                self.leader = Some(from);
                self.handle_heartbeat(from, heartbeat);
            }
            MessageBody::Quiesce(quiesce) => {
                self.election_elapsed = 0;
                self.leader = Some(from);
                self.handle_quiesce(quiesce);
            }
            MessageBody::InstallSnapshot(chunk) => {
                self.election_elapsed = 0;
                self.leader = Some(from);
                self.handle_install_snapshot(from, term, chunk);
            }
            MessageBody::TimeoutNow => {
                // Thesis §3.10: the leader wants us to take over; campaign at once, skipping
                // pre-vote, and tell voters to ignore their leases.
                if self.may_campaign() {
                    self.campaign(true);
                }
            }
            // Responses meant for a leader or candidate we no longer are.
            MessageBody::SnapshotResponse(_)
            | MessageBody::VerifyReport(_)
            | MessageBody::AppendResponse(_)
            | MessageBody::VoteResponse(_)
            | MessageBody::HeartbeatResponse(_)
            | MessageBody::RequestVote(_) => {}
        }
    }

    fn step_candidate(
        &mut self,
        from: NodeId,
        term: Term,
        body: MessageBody,
    ) -> Result<(), StepError> {
        match body {
            MessageBody::AppendEntries(_)
            | MessageBody::Heartbeat(_)
            | MessageBody::Quiesce(_)
            | MessageBody::InstallSnapshot(_) => {
                // Figure 2, candidates: AppendEntries from the leader of our term (or a
                // higher one) makes us its follower.
                self.become_follower(term, Some(from));
                self.step_follower(from, term, body);
            }
            MessageBody::VoteResponse(response) => {
                let expected = if self.role == Role::PreCandidate {
                    VoteKind::PreVote
                } else {
                    VoteKind::Vote
                };
                if response.kind != expected {
                    return Ok(());
                }
                if let Some(slot) = self.votes.iter_mut().find(|(voter, _)| *voter == from) {
                    slot.1 |= response.granted;
                } else {
                    self.votes.push((from, response.granted));
                }
                self.progress_election();
            }
            MessageBody::AppendResponse(_)
            | MessageBody::HeartbeatResponse(_)
            | MessageBody::SnapshotResponse(_)
            | MessageBody::VerifyReport(_)
            | MessageBody::TimeoutNow
            | MessageBody::RequestVote(_) => {}
        }
        Ok(())
    }

    /// Counts the votes: win (pre-vote: go on to the real election), lose, or keep waiting.
    fn progress_election(&mut self) {
        let votes = &self.votes;
        // Only voters of the configuration in force count, of both sets when joint: a
        // learner's or a stranger's answer is recorded but never counted.
        match self.configs.current().vote_result(|voter| {
            votes
                .iter()
                .find(|(id, _)| *id == voter)
                .map(|(_, granted)| *granted)
        }) {
            VoteResult::Won => {
                if self.role == Role::PreCandidate {
                    self.campaign(false);
                } else {
                    self.become_leader();
                }
            }
            VoteResult::Lost => {
                let term = self.term;
                self.become_follower(term, None);
            }
            VoteResult::Pending => {}
        }
    }

    /// The election timer fired: a pre-vote round if configured, else a real election.
    pub(crate) fn start_election(&mut self, transfer: bool) {
        if self.cfg.pre_vote && !transfer {
            self.become_pre_candidate();
        } else {
            self.campaign(transfer);
        }
    }

    fn become_pre_candidate(&mut self) {
        self.clear_leader_state();
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes = vec![(self.id, true)];
        self.reset_election_timeout();
        self.request_votes(VoteKind::PreVote, self.term.next(), false);
        self.progress_election();
    }

    /// Figure 2, candidates: increment the term, vote for self, reset the timer, ask for votes.
    pub(crate) fn campaign(&mut self, transfer: bool) {
        self.clear_leader_state();
        self.term = self.term.next();
        self.vote = Some(self.id);
        self.role = Role::Candidate;
        self.leader = None;
        self.votes = vec![(self.id, true)];
        self.election_elapsed = 0;
        self.reset_election_timeout();
        self.request_votes(VoteKind::Vote, self.term, transfer);
        self.progress_election();
    }

    fn request_votes(&mut self, kind: VoteKind, term: Term, transfer: bool) {
        let request = VoteRequest {
            kind,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            transfer,
        };
        let configuration = self.configs.current();
        let voters: Vec<NodeId> = configuration
            .members()
            .into_iter()
            .filter(|&voter| voter != self.id && configuration.is_voter(voter))
            .collect();
        for voter in voters {
            self.send(voter, term, MessageBody::RequestVote(request));
        }
    }

    /// Becomes a follower in `term` (a higher term clears the vote), of `leader` if known.
    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        assert!(
            term >= self.term,
            "term going back from {} to {term}",
            self.term
        );
        let was_leader = self.role == Role::Leader;
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.votes.clear();
        // A replica that changes term or role is not idle: it ticks again (a quiesced leader
        // demoted by a late answer of a higher term would otherwise wait, leaderless, for a
        // message that may never come).
        self.quiesced = false;
        self.idle_ticks = 0;
        self.election_elapsed = 0;
        self.reset_election_timeout();
        if was_leader {
            self.clear_leader_state();
        }
    }

    /// Drops everything only a leader keeps; pending reads fail.
    fn clear_leader_state(&mut self) {
        self.progress.clear();
        self.transfer = None;
        self.broadcast_pending = false;
        self.read_heartbeat_pending = false;
        self.lease_until = 0;
        self.timeout_now_sent = false;
        self.read_round_sent_ticks.clear();
        self.promotions_pending.clear();
        self.verify_rounds.clear();
        self.fail_pending_reads();
    }

    /// Won the election: lead, starting with a no-op entry of the new term (thesis §6.4:
    /// it lets the leader commit the entries of earlier terms and learn the commit index).
    fn become_leader(&mut self) {
        assert_eq!(
            self.role,
            Role::Candidate,
            "only a candidate becomes leader"
        );
        // Election Safety: we hold our own vote in this term.
        assert_eq!(self.vote, Some(self.id), "leader without its own vote");
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.votes.clear();
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        let next_index = self.log.last_index().next();
        self.commit_broadcast = self.log.committed;
        // Every member but this leader gets a progress: voters of both sets and learners.
        self.progress = self
            .configs
            .current()
            .members()
            .into_iter()
            .filter(|&member| member != self.id)
            .map(|member| (member, Progress::new(next_index)))
            .collect();
        let noop = Entry {
            index: next_index,
            term: self.term,
            kind: EntryKind::Noop,
            data: Payload::new(),
        };
        self.log.append(noop);
        self.broadcast_pending = true;
        self.maybe_commit();
    }
}
