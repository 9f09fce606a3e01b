//! The messages replicas of one group exchange.
//!
//! A message names its sender, its receiver and the sender's term; the body says what it is.
//! The set is closed (an enum), so that the transport can archive it and a receiver can
//! match on it exhaustively. `Quiesce` lets idle groups stop ticking (see
//! `Config::quiesce_after_ticks`); `InstallSnapshot` and `SnapshotResponse` move snapshots
//! (`snapshot.rs`); `VerifyReport` carries a replica's state hash (`verify.rs`).
//! Configuration changes travel as entries, not messages.
//!
//! Bodies carry no group id: the runtime wraps a message with the group it belongs to.

use bytes::Bytes;

use crate::raft::snapshot::SnapshotMeta;
use crate::raft::types::{Entry, LogIndex, NodeId, Term};

/// One message between two replicas of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The sender's current term (for a granted pre-vote: the term it was asked about).
    pub term: Term,
    /// What the message is.
    pub body: MessageBody,
}

/// What a message is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// Leader → follower: append `entries` after (`prev_index`, `prev_term`) (Figure 2,
    /// AppendEntries RPC).
    AppendEntries(AppendEntries),
    /// Follower → leader: the outcome of one AppendEntries.
    AppendResponse(AppendResponse),
    /// Candidate (or pre-candidate) → voter.
    RequestVote(VoteRequest),
    /// Voter → candidate.
    VoteResponse(VoteResponse),
    /// Leader → follower: "I am still leader"; carries the commit index the follower may
    /// safely adopt and the read round it confirms.
    Heartbeat(Heartbeat),
    /// Follower → leader: the answer to a heartbeat.
    HeartbeatResponse(HeartbeatResponse),
    /// Leader → transfer target: start an election now, ignoring leases (thesis §3.10).
    TimeoutNow,
    /// Leader → follower: the group is idle; stop the election timer until any other
    /// message arrives. Carries the commit index, as a heartbeat does. Not answered.
    Quiesce(Quiesce),
    /// Leader → follower: one chunk of a snapshot (Figure 13, InstallSnapshot RPC).
    InstallSnapshot(InstallSnapshot),
    /// Follower → leader: the next snapshot byte it expects.
    SnapshotResponse(SnapshotResponse),
    /// Any replica → leader: its state machine's hash after applying a verify entry.
    VerifyReport(VerifyReport),
}

/// The body of an InstallSnapshot message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallSnapshot {
    /// What the snapshot covers (sent with every chunk, so any chunk can start a transfer).
    pub meta: SnapshotMeta,
    /// The byte offset of `data` in the snapshot.
    pub offset: u64,
    /// The snapshot's total length.
    pub total_bytes: u64,
    /// The chunk.
    pub data: Bytes,
}

/// The body of a SnapshotResponse message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotResponse {
    /// The snapshot's index.
    pub index: LogIndex,
    /// The next byte offset the follower expects.
    pub next_offset: u64,
}

/// The body of a VerifyReport message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// The index of the verify entry.
    pub index: LogIndex,
    /// The sender's state machine hash right after applying it.
    pub hash: u64,
}

/// The body of an AppendEntries message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendEntries {
    /// The index just before the first entry.
    pub prev_index: LogIndex,
    /// The term of the entry at `prev_index` in the leader's log.
    pub prev_term: Term,
    /// Entries to append, contiguous from `prev_index + 1` (may be empty).
    pub entries: Vec<Entry>,
    /// The leader's commit index.
    pub commit: LogIndex,
}

/// The body of an AppendResponse message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendResponse {
    /// The follower's log matches the leader's through `match_index` (and that prefix is
    /// durable on the follower).
    Accepted {
        /// The last index known to match.
        match_index: LogIndex,
    },
    /// The follower's log has no entry matching (`rejected_index`, `prev_term`).
    Rejected {
        /// The `prev_index` of the request that was rejected.
        rejected_index: LogIndex,
        /// Where the leader should look next.
        hint: ConflictHint,
    },
}

/// Tells a leader where a follower's log diverges, so that it backs off one term per round
/// trip instead of one entry (Raft paper §5.3, last paragraphs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConflictHint {
    /// The term of the follower's entry at the rejected index, or `None` when the follower's
    /// log is shorter than the rejected index.
    pub conflict_term: Option<Term>,
    /// The first index of `conflict_term` in the follower's log, or the follower's last
    /// index + 1 when `conflict_term` is `None`.
    pub conflict_index: LogIndex,
}

/// Whether a vote request is a pre-vote (asks "would you vote for me?", changes nothing) or
/// a real one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteKind {
    /// Thesis §9.6: the pre-vote round; the candidate's term is not raised.
    PreVote,
    /// Figure 2, RequestVote RPC.
    Vote,
}

/// The body of a RequestVote message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoteRequest {
    /// Pre-vote or real vote.
    pub kind: VoteKind,
    /// The index of the candidate's last entry.
    pub last_index: LogIndex,
    /// The term of the candidate's last entry.
    pub last_term: Term,
    /// The election was started by a leadership transfer: voters ignore their lease.
    pub transfer: bool,
}

/// The body of a VoteResponse message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoteResponse {
    /// Which kind of request this answers.
    pub kind: VoteKind,
    /// Whether the vote is granted.
    pub granted: bool,
}

/// The body of a Heartbeat message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// `min(leader commit, follower's match)`: an index the follower holds a matching entry
    /// for, so it can adopt it as its commit without a log check.
    pub commit: LogIndex,
    /// The leader's latest read round; the response echoes it.
    pub read_round: u64,
}

/// The body of a Quiesce message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quiesce {
    /// `min(leader commit, follower's match)`, as in [`Heartbeat::commit`].
    pub commit: LogIndex,
    /// The leader's latest read round: a heartbeat of this round or an earlier one, overtaken
    /// by this message, does not wake the follower again.
    pub read_round: u64,
}

/// The body of a HeartbeatResponse message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatResponse {
    /// The read round of the heartbeat this answers.
    pub read_round: u64,
}

impl MessageBody {
    /// A short name for logs and errors.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            MessageBody::AppendEntries(_) => "AppendEntries",
            MessageBody::AppendResponse(_) => "AppendResponse",
            MessageBody::RequestVote(request) if request.kind == VoteKind::PreVote => "PreVote",
            MessageBody::RequestVote(_) => "RequestVote",
            MessageBody::VoteResponse(_) => "VoteResponse",
            MessageBody::Heartbeat(_) => "Heartbeat",
            MessageBody::HeartbeatResponse(_) => "HeartbeatResponse",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::Quiesce(_) => "Quiesce",
            MessageBody::InstallSnapshot(_) => "InstallSnapshot",
            MessageBody::SnapshotResponse(_) => "SnapshotResponse",
            MessageBody::VerifyReport(_) => "VerifyReport",
        }
    }
}
