//! The multi-group runtime that drives many [`crate::raft::RaftGroup`]s over the
//! write-ahead log and the transport (issue 5).
//!
//! - [`wire`]: the conversion between the core's messages and the transport's batches
//!   (coalescing heartbeats per node pair, handing payloads over without a copy);
//! - [`storage`]: a group's durable state in the shard's write-ahead log (persisting a
//!   `Ready`, restoring a replica after a restart);
//! - [`shard`]: the loop of one shard over many groups, one log and one transport, with the
//!   [`StateMachine`] it applies to; `liveness` tells it which peer nodes fell silent, so
//!   that quiesced groups led by them wake up;
//! - [`snapshots`]: a shard's snapshot files, one per group, written before the log is
//!   compacted behind them;
//! - `executor`: a shard on its own glommio thread, taking commands from embedder threads.
//!
//! **Boundary:** the Raft core never sees this module; it may use `flotilla-net` and
//! `flotilla-wal`, the core uses neither.

pub(crate) mod executor;
mod liveness;
pub mod oneshot;
pub(crate) mod outstanding;
pub mod shard;
pub mod snapshots;
pub mod state_machine;
pub mod storage;
pub mod wire;

pub use shard::{
    Completion, CreateGroupError, Shard, ShardError, ShardProposeError, ShardStats, Unapplied,
};
pub use snapshots::{SnapshotError, SnapshotStore};
pub use state_machine::{KvMap, StableHasher, StateMachine};
pub use storage::{PersistError, RestoreError, persist_ready, read_entries, restore_group};
pub use wire::{GroupId, InboundMessage, OutboundBatches, WireError, decode_batch};
