//! What a group hands its driver: the `Ready`, and the read results inside it.

use crate::raft::error::ReadError;
use crate::raft::message::Message;
use crate::raft::snapshot::{SnapshotChunk, SnapshotInstall, SnapshotRead};
use crate::raft::types::{Entry, HardState, LogIndex};
use crate::raft::verify::Verification;

/// Numbers `Ready`s of one group in the order they were handed out, so that the driver can
/// acknowledge persistence with [`crate::raft::RaftGroup::on_persisted`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ReadyId(pub u64);

/// Everything the driver must do for a group, in this order (see the `raft` module docs for
/// the full contract):
/// 1. send `messages` now;
/// 2. persist `hard_state` (if any) and `entries` (truncating its copy of the log from
///    `entries[0].index` first, if it holds that index already), then call `on_persisted(id)`
///    and only then send `persisted_messages`;
/// 3. apply `committed_entries` in order, call `on_applied`, then answer `read_states`.
#[derive(Debug, Default)]
pub struct Ready {
    /// This Ready's number.
    pub id: ReadyId,
    /// The hard state to persist, when it changed since the last `Ready`.
    pub hard_state: Option<HardState>,
    /// Entries to persist, contiguous; an entry replaces any held at its index and after.
    pub entries: Vec<Entry>,
    /// Messages that may be sent at once (a leader's AppendEntries and heartbeats).
    pub messages: Vec<Message>,
    /// Messages that may only be sent once `on_persisted(id)` was called for this `Ready`,
    /// i.e. once it and every earlier `Ready` are durable — even when this one carries
    /// nothing to persist itself (votes, responses that acknowledge entries, anything sent
    /// while the term or vote is not yet durable may depend on an earlier `Ready`).
    pub persisted_messages: Vec<Message>,
    /// Committed, durable entries to apply, in index order.
    pub committed_entries: Vec<Entry>,
    /// Reads confirmed or refused. A confirmed read's index is applied once this Ready's
    /// `committed_entries` are.
    pub read_states: Vec<ReadState>,
    /// Entries evicted from memory that a follower needs: the driver reads each range from
    /// its storage (they are durable) and answers with `RaftGroup::on_fetched`, every
    /// fetch exactly once (with no entries if the read failed).
    pub fetches: Vec<LogFetch>,
    /// Leader: chunks of its snapshot to read for followers; the driver answers each with
    /// `RaftGroup::on_snapshot_read`, exactly once (`None` if it could not).
    pub snapshot_reads: Vec<SnapshotRead>,
    /// Follower: snapshot chunks received, to store in order (before `install_snapshot`).
    pub snapshot_chunks: Vec<SnapshotChunk>,
    /// Follower: a received snapshot to install with this Ready (see [`SnapshotInstall`]):
    /// persisted before `entries`, restored into the state machine before
    /// `committed_entries` are applied (then `on_applied(meta.index)` if none are).
    pub install_snapshot: Option<SnapshotInstall>,
    /// Leader: finished consistency verifications.
    pub verifications: Vec<Verification>,
}

/// A range of durable entries the leader needs back from storage, to send to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogFetch {
    /// The follower the entries are for.
    pub to: crate::raft::types::NodeId,
    /// The first index wanted.
    pub from: LogIndex,
    /// The last index wanted (inclusive).
    pub through: LogIndex,
    /// At most about this many entry bytes (at least one entry).
    pub bytes_max: usize,
}

/// The answer to one `read_index` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The caller's context, as passed to `read_index`.
    pub ctx: u64,
    /// On success the read index: the state machine, having applied through it, may answer
    /// the read. On failure, why the read must be retried (elsewhere).
    pub result: Result<LogIndex, ReadError>,
}

/// How a read is confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// ReadIndex (thesis §6.4): a heartbeat round acknowledged by a majority after the read
    /// arrived confirms leadership. Costs one round trip, assumes nothing about clocks.
    ReadIndex,
    /// Lease read (thesis §6.4.1): served at once while a majority acknowledged a heartbeat
    /// round within `Config::lease_ticks`; relies on bounded clock drift. Falls back to
    /// ReadIndex when the lease has lapsed.
    Lease,
}

/// The role of a replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asking whether it could win an election (pre-vote), without raising its term.
    PreCandidate,
    /// Asking for votes in a new term.
    Candidate,
    /// Leads its term.
    Leader,
}

/// A snapshot of a replica's state for status reports and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// The replica's node.
    pub id: crate::raft::types::NodeId,
    /// Its role.
    pub role: Role,
    /// Its term.
    pub term: crate::raft::types::Term,
    /// The leader it knows of.
    pub leader: Option<crate::raft::types::NodeId>,
    /// Its commit index.
    pub commit: LogIndex,
    /// The highest index the driver reported applied.
    pub applied: LogIndex,
    /// Its last log index.
    pub last_index: LogIndex,
    /// Its highest durable index.
    pub persisted: LogIndex,
}
