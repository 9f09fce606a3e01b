//! The identifiers and plain values of one Raft group: node ids, terms, log indexes, the hard
//! state that must be durable before certain messages leave, and log entries.
//!
//! Everything here is `Copy` or cheaply cloned; nothing here decides anything.

use std::fmt;

use crate::raft::payload::Payload;

/// A node of the cluster (a machine running the engine), unique within the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub u64);

/// A Raft term: a logical clock that grows with every election.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Term(pub u64);

/// A position in a group's Raft log. The first entry has index 1; index 0 is the empty prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogIndex(pub u64);

impl LogIndex {
    /// The index after this one.
    #[must_use]
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }

    /// The index before this one (index 0 stays 0).
    #[must_use]
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }
}

/// The highest term a message may carry. Terms grow by one per election, so this is never
/// reached in practice; it leaves room for a replica's own elections above any term it
/// accepted, so that `Term::next` cannot overflow.
pub const TERM_MAX: Term = Term(u64::MAX >> 2);

impl Term {
    /// The term after this one.
    #[must_use]
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

impl fmt::Display for LogIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "i{}", self.0)
    }
}

/// The state a node must have on disk before it may send messages that depend on it
/// (Figure 2, "persistent state on all servers": currentTerm and votedFor; plus the commit
/// index, so a restart can apply what it knows is committed without waiting for a leader).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// The candidate this node voted for in `term`, if any.
    pub vote: Option<NodeId>,
    /// The highest index this node knows to be committed.
    pub commit: LogIndex,
}

/// What an entry is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// An embedder's proposal: `data` goes to the state machine.
    Normal,
    /// The empty entry a new leader appends at the start of its term, so that it can commit
    /// (and learn the commit index of) everything before it (Raft thesis §6.4).
    Noop,
    /// A membership change: `data` is the whole new [`Configuration`], encoded. It takes
    /// effect on a replica as soon as the replica appends it (thesis §4.1), and is undone if
    /// the entry is truncated.
    ///
    /// [`Configuration`]: crate::raft::Configuration
    Configuration,
    /// A consistency check: once applied, every replica reports a hash of its state machine
    /// (`RaftGroup::on_state_hash`), and the leader compares them. `data` is empty.
    Verify,
}

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its position in the log.
    pub index: LogIndex,
    /// The term of the leader that created it.
    pub term: Term,
    /// What it is for.
    pub kind: EntryKind,
    /// The payload (empty for a no-op).
    pub data: Payload,
}

impl Entry {
    /// Bytes the entry counts for in in-flight and batch limits: its payload plus a fixed
    /// per-entry overhead, so that windows of empty entries stay bounded too.
    #[must_use]
    pub fn size_bytes(&self) -> usize {
        self.data.len() + ENTRY_OVERHEAD_BYTES
    }
}

/// The per-entry overhead counted by [`Entry::size_bytes`] (index, term, kind, length).
pub const ENTRY_OVERHEAD_BYTES: usize = 24;
