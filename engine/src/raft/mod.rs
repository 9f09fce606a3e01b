//! The Raft core: one replica of one Raft group as a pure state machine, with no I/O, no
//! clock and no thread. The same code runs in production (driven by the runtime's shards)
//! and in the deterministic simulator (driven by a seeded RNG).
//!
//! **Boundary:** nothing in this module reads a clock, draws from a global RNG, touches a
//! file or socket, spawns, locks or blocks. Time arrives as [`RaftGroup::tick`]; randomness
//! comes from [`Config::seed`].
//!
//! # The driving contract
//!
//! Inputs: [`RaftGroup::step`] (a message from a peer), [`RaftGroup::tick`] (one unit of
//! time), [`RaftGroup::propose`], [`RaftGroup::read_index`], [`RaftGroup::transfer_leader`],
//! [`RaftGroup::stop`]. None of them blocks or does I/O; their effects accumulate until the
//! driver calls [`RaftGroup::poll_ready`], which returns a [`Ready`] numbered by a
//! monotonic [`ReadyId`]. For each `Ready`, in this order:
//!
//! 1. **Send `messages` now.** They do not depend on anything unpersisted: this is how a
//!    leader's AppendEntries go out while its own append is still being written.
//! 2. **Persist** `hard_state` (if present) and `entries`. `entries` are contiguous; if the
//!    driver's copy of the log already holds `entries[0].index`, it truncates from there
//!    first (a follower replacing a conflicting suffix). Readies are persisted in `id`
//!    order, possibly several in one write.
//! 3. **Acknowledge** with [`RaftGroup::on_persisted`]`(id)` once that `Ready` (and so every
//!    earlier one) is durable, then **send `persisted_messages`**: votes, and responses that
//!    acknowledge entries, which Figure 2 allows only after stable storage is updated.
//! 4. **Apply** `committed_entries` in order (they are committed and durable here), report
//!    with [`RaftGroup::on_applied`], then **answer `read_states`**: a successful read's
//!    index is covered by the entries applied so far.
//!
//! Several Readies may be outstanding (persisting) at once; polling again before
//! acknowledging is allowed and is how the runtime pipelines. A crash loses whatever was not
//! acknowledged; the replica restarts from [`RestoredState`] (its durable hard state and
//! log).
//!
//! A proposal returns its (index, term) at once ([`Proposed`]); it succeeded exactly when the
//! entry later applied at that index has that term. Proposals made between two polls leave
//! as one AppendEntries per follower (batching).
//!
//! # Safety rules and where they live
//! - Election Safety (one leader per term): one vote per term, recorded before the vote is
//!   sent (`election.rs`, `handle_vote_request`); votes must be durable before they leave
//!   (`group.rs`, `send`).
//! - Log Matching: the AppendEntries consistency check and conflict truncation
//!   (`log.rs`, `maybe_append`).
//! - Leader Completeness: the up-to-date check on votes (`log.rs`, `is_up_to_date`) and the
//!   Figure 8 commit rule (`replication.rs`, `maybe_commit`).
//! - State Machine Safety: committed entries are never truncated (`log.rs`,
//!   `truncate_from`) and only durable committed entries are applied (`log.rs`,
//!   `take_committed`).
//!
//! - Membership changes: one at a time, through the joint configuration, in force when
//!   appended (`membership.rs`, `quorum.rs`).
//! - Snapshots: only applied state is compacted, and a follower never installs a snapshot
//!   at or below its commit index (`snapshot.rs`).
//!
//! Snapshots add to the contract: a leader's `Ready::snapshot_reads` are answered like its
//! fetches; a follower stores `Ready::snapshot_chunks` and installs `Ready::install_snapshot`
//! with that Ready's persistence and before its apply. Verify entries are answered with
//! [`RaftGroup::on_state_hash`] when applied (`verify.rs`).

#![forbid(unsafe_code)]

mod config;
mod election;
mod error;
mod evicted;
pub mod fuzzing;
mod group;
mod log;
mod membership;
mod message;
mod payload;
mod progress;
mod quiesce;
mod quorum;
mod ready;
mod replication;
mod rng;
mod snapshot;
mod types;
mod verify;

#[cfg(test)]
mod tests;

pub use config::{
    Config, ConfigError, ELECTION_TIMEOUT_TICKS_DEFAULT, HEARTBEAT_INTERVAL_TICKS_DEFAULT,
};
pub use error::{CompactError, ProposeError, ReadError, StepError, TransferError};
pub use group::{Proposed, RaftGroup, RestoredState};
pub use message::{
    AppendEntries, AppendResponse, ConflictHint, Heartbeat, HeartbeatResponse, InstallSnapshot,
    Message, MessageBody, Quiesce, SnapshotResponse, VerifyReport, VoteKind, VoteRequest,
    VoteResponse,
};
pub use payload::{PAYLOAD_INLINE_BYTES_MAX, Payload};
pub use progress::{Progress, ProgressState};
pub use quorum::{ChangeError, Configuration, MEMBERS_MAX, MembershipChange, VoteResult};
pub use ready::{LogFetch, ReadMode, ReadState, Ready, ReadyId, Role, Status};
pub use snapshot::{
    Compaction, SnapshotChunk, SnapshotChunkData, SnapshotInstall, SnapshotMeta, SnapshotRead,
};
pub use types::{
    ENTRY_OVERHEAD_BYTES, Entry, EntryKind, HardState, LogIndex, NodeId, TERM_MAX, Term,
};
pub use verify::Verification;
