//! The multi-group runtime that drives many [`crate::raft::RaftGroup`]s over the
//! write-ahead log and the transport (issue 5).
//!
//! Built so far: [`wire`], the conversion between the core's messages and the transport's
//! batches (coalescing heartbeats per node pair, handing payloads over without a copy), and
//! [`storage`], a group's durable state in the shard's write-ahead log (persisting a
//! `Ready`, restoring a replica after a restart). The shard loop, the engine API and the
//! load generator are still to come (issue 5).
//!
//! **Boundary:** the Raft core never sees this module; it may use `flotilla-net` and
//! `flotilla-wal`, the core uses neither.

pub mod storage;
pub mod wire;

pub use storage::{PersistError, RestoreError, persist_ready, restore_group};
pub use wire::{GroupId, InboundMessage, OutboundBatches, WireError, decode_batch};
