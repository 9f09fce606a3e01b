//! Quiescence of idle groups: a leader whose group has nothing to do tells its followers so,
//! and the whole group stops ticking (no heartbeats, no election timer) until something
//! happens. Thousands of idle groups then cost no messages and no CPU.
//!
//! - **Entering.** A leader that has been idle for `Config::quiesce_after_ticks` ticks (every
//!   follower matches its whole log, all of it committed, no read, transfer or broadcast
//!   waiting) sends each follower a `Quiesce` carrying the commit index, and quiesces. A
//!   follower quiesces when it receives `Quiesce` from the leader of its term.
//! - **Waking.** Any message but answers that change nothing ([`MessageBody::wakes`]), a proposal, a read, a transfer or an explicit
//!   [`RaftGroup::wake`] wakes a replica. A woken leader sends a heartbeat round at once and
//!   restarts its check-quorum count; a woken follower restarts its election timer. A
//!   follower that missed the `Quiesce` times out, and its pre-vote wakes the leader.
//! - **Leader failure** is not noticed by a quiesced follower: the driver watches the
//!   leader's node (the engine: frames from it) and calls `wake` when it falls silent.
//!
//! **Safety.** Quiescence changes when things happen, never what Raft decides, with one
//! exception that matters: a driver may stop ticking a quiesced group, and leases count
//! ticks. So a leader gives up its lease and forgets the send ticks of its read rounds when
//! it quiesces: after waking, only rounds sent after the wake can grant a lease. A
//! follower's promise not to vote (check-quorum) only lasts longer on a stopped clock,
//! which is the safe direction.

use crate::raft::group::RaftGroup;
use crate::raft::message::{AppendResponse, Message, MessageBody, Quiesce};
use crate::raft::ready::Role;
use crate::raft::types::NodeId;

impl MessageBody {
    /// Whether this message wakes a quiesced replica. Answers a quiesced leader may still
    /// receive (to its last heartbeat round, to appends, to old votes) change nothing that
    /// needs time to run again; everything else does.
    pub(crate) fn wakes(&self) -> bool {
        !matches!(
            self,
            MessageBody::Quiesce(_)
                | MessageBody::HeartbeatResponse(_)
                | MessageBody::AppendResponse(AppendResponse::Accepted { .. })
                | MessageBody::VoteResponse(_)
        )
    }
}

impl RaftGroup {
    /// Whether `message` wakes this replica: not an answer that changes nothing, and not a
    /// heartbeat that the leader's `Quiesce` overtook (reordered in the network).
    pub(crate) fn woken_by(&self, message: &Message) -> bool {
        if !self.quiesced || !message.body.wakes() {
            return false;
        }
        match message.body {
            MessageBody::Heartbeat(heartbeat) => {
                message.term != self.term
                    || self.leader != Some(message.from)
                    || heartbeat.read_round > self.quiesced_round
            }
            // A candidate whose log is behind ours gets our refusal without waking us: a
            // node removed from the group that never learned it keeps campaigning with an
            // old log, and must not keep an idle group awake.
            MessageBody::RequestVote(request) => self
                .log
                .is_up_to_date(request.last_index, request.last_term),
            _ => true,
        }
    }

    /// Whether the replica is quiesced: its ticks do nothing until it is woken.
    #[must_use]
    pub fn is_quiesced(&self) -> bool {
        self.quiesced
    }

    /// Wakes a quiesced replica (does nothing otherwise). The driver calls this when it
    /// stops hearing from the leader's node; inputs and messages wake a replica by
    /// themselves.
    pub fn wake(&mut self) {
        if !self.quiesced {
            return;
        }
        self.quiesced = false;
        self.idle_ticks = 0;
        self.election_elapsed = 0;
        if self.role == Role::Leader {
            // Check-quorum counts from now: followers answer the heartbeat below.
            for (_, pr) in &mut self.progress {
                pr.recent_active = false;
            }
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
        self.check_invariants();
    }

    /// Leader, every tick: quiesces the group once it has been idle long enough.
    pub(crate) fn maybe_quiesce(&mut self) {
        if self.cfg.quiesce_after_ticks == 0 || self.role != Role::Leader {
            return;
        }
        let last = self.log.last_index();
        let idle = self.transfer.is_none()
            && !self.broadcast_pending
            && !self.read_heartbeat_pending
            && self.reads_waiting_commit.is_empty()
            && self.reads_waiting_round.is_empty()
            && self.reads_waiting_apply.is_empty()
            && self.verify_rounds.is_empty()
            && self.log.committed == last
            && self.log.persisted == last
            && self.progress.iter().all(|(_, pr)| pr.match_index == last);
        if !idle {
            self.idle_ticks = 0;
            return;
        }
        self.idle_ticks += 1;
        if self.idle_ticks < self.cfg.quiesce_after_ticks {
            return;
        }
        let term = self.term;
        // Every follower matches through `last`, which is committed: each may adopt it.
        let commit = self.log.committed;
        let read_round = self.read_round;
        let peers: Vec<NodeId> = self.progress.iter().map(|(peer, _)| *peer).collect();
        for peer in peers {
            self.send(
                peer,
                term,
                MessageBody::Quiesce(Quiesce { commit, read_round }),
            );
        }
        self.quiesced = true;
        // Lease safety (thesis §6.4.1): a lease is measured in ticks, and the driver may
        // stop ticking a quiesced group; a lease on a stopped clock could outlive the
        // followers' promises. Give it up, and forget when earlier rounds were sent, so
        // that only rounds sent after waking can grant a new one.
        self.lease_until = 0;
        self.read_round_sent_ticks.clear();
        self.release_memory();
        assert!(
            !self.lease_valid(),
            "Lease safety: a quiesced leader holds a lease"
        );
    }

    /// Follower: the leader of our term says the group is idle.
    pub(crate) fn handle_quiesce(&mut self, quiesce: Quiesce) {
        // As for a heartbeat: the leader sent min(its commit, our match).
        let commit = quiesce.commit.min(self.log.last_index());
        self.log.commit_to(commit);
        self.quiesced = true;
        self.quiesced_round = quiesce.read_round;
        self.release_memory();
    }

    /// A quiesced replica may stay idle for hours, among thousands: it drops every applied
    /// entry from memory and gives back the spare capacity its busy days left in its
    /// queues.
    fn release_memory(&mut self) {
        self.evict_applied();
        self.log.shrink();
        self.unacknowledged.shrink_to_fit();
        self.read_round_sent_ticks.shrink_to_fit();
        self.reads_waiting_commit.shrink_to_fit();
        self.reads_waiting_round.shrink_to_fit();
        self.reads_waiting_apply.shrink_to_fit();
        self.votes = Vec::new();
        for (_, pr) in &mut self.progress {
            pr.shrink();
        }
    }

    /// The invariants of a quiesced replica (called under `strict`).
    pub(crate) fn check_quiesced(&self) {
        assert!(
            matches!(self.role, Role::Leader | Role::Follower),
            "a quiesced {:?}",
            self.role
        );
        if self.role == Role::Leader {
            assert_eq!(self.lease_until, 0, "a quiesced leader holds a lease");
            assert!(self.transfer.is_none(), "a quiesced leader transfers");
            assert!(
                self.reads_waiting_commit.is_empty() && self.reads_waiting_round.is_empty(),
                "a quiesced leader holds reads"
            );
        }
    }
}
