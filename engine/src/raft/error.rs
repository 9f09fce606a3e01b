//! The errors a group returns as values: refused proposals, reads and transfers, and
//! messages it will not take. None of them is a bug; bugs are assertions.

use crate::raft::types::{LogIndex, NodeId};

/// Why a proposal was refused. Nothing was appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This replica is not the leader; `leader` is the one it knows of, if any.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The current leader, when known.
        leader: Option<NodeId>,
    },
    /// The payload is larger than `Config::proposal_bytes_max`.
    #[error("proposal of {size_bytes} bytes is larger than the maximum of {max_bytes}")]
    ProposalTooLarge {
        /// The proposal's size.
        size_bytes: usize,
        /// The configured maximum.
        max_bytes: usize,
    },
    /// Leadership is being handed to another node; retry there shortly.
    #[error("leadership transfer to {to} in progress")]
    TransferInProgress {
        /// The transfer's target.
        to: NodeId,
    },
    /// The group is being stopped.
    #[error("group is stopping")]
    GroupStopping,
}

/// Why a read was refused or dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// This replica is not (or no longer) the leader.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The current leader, when known.
        leader: Option<NodeId>,
    },
    /// A lease read was asked for but `Config::check_quorum` is off, so no lease exists.
    #[error("lease reads need check_quorum")]
    LeaseUnavailable,
    /// The group is being stopped.
    #[error("group is stopping")]
    GroupStopping,
}

/// Why a leadership transfer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// Only the leader can transfer leadership.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The current leader, when known.
        leader: Option<NodeId>,
    },
    /// The target is not a voter of this group.
    #[error("{0} is not a voter of this group")]
    NotAVoter(NodeId),
    /// The group is being stopped.
    #[error("group is stopping")]
    GroupStopping,
}

/// Why `RaftGroup::compact` refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompactError {
    /// The index is not applied yet: a snapshot holds only applied state.
    #[error("cannot compact through {index}: applied only through {applied}")]
    NotApplied {
        /// The index asked for.
        index: LogIndex,
        /// The applied index.
        applied: LogIndex,
    },
    /// The index is not past the snapshot or compaction the group already has.
    #[error("cannot compact through {index}: already at {snapshot}")]
    Stale {
        /// The index asked for.
        index: LogIndex,
        /// The current snapshot's (or the log base's) index.
        snapshot: LogIndex,
    },
    /// This replica joined the group and does not know the configuration at `index` yet.
    #[error("cannot snapshot at {index}: the configuration there is not known yet")]
    ConfigurationUnknown {
        /// The index asked for.
        index: LogIndex,
    },
}

/// Why `RaftGroup::step` did not take a message. Stale messages (an old term, a duplicate, a
/// late response) are not errors: Raft ignores or answers them, and `step` returns `Ok`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The message is addressed to another node.
    #[error("message for {to} delivered to {this}")]
    WrongDestination {
        /// The addressee.
        to: NodeId,
        /// This node.
        this: NodeId,
    },
    /// The sender is this node itself. (Messages from nodes outside the configuration are
    /// taken: a replica may not know its configuration yet, or not the newest.)
    #[error("message from {0}, which is this node itself")]
    UnknownPeer(NodeId),
    /// The message contradicts itself or the protocol (entries not contiguous, an entry
    /// term above the message term, a second leader in one term).
    #[error("malformed {message}: {reason}")]
    Malformed {
        /// The message kind.
        message: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}
