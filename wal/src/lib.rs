//! `flotilla-wal`: the segmented write-ahead log shared by all Raft groups of one shard.
//!
//! One [`Wal`] per shard stores, for many groups at once, log entries
//! `(group, index, term, payload)`, hard states, conflict truncations and compaction marks.
//! A [`WriteBatch`] gathers what one group commit writes; [`Wal::submit`] turns it into one
//! record (one length, one crc32) written through io_uring, and one `fdatasync` makes every
//! batch submitted meanwhile durable. Submission and completion are separate: a caller
//! never blocks while a sync is in flight, and learns what is durable as an [`Lsn`].
//!
//! Records live in fixed-size segment files written ahead of use; an in-memory index maps
//! `(group, index)` to a position, and reads go through each segment's memory map.
//! Recovery verifies every record, cuts a torn tail and refuses corruption anywhere else
//! with the file and offset (see [`recovery`]). docs/FORMATS.md describes the bytes.
//!
//! **Boundary:** the log knows nothing of Raft: it checks only that each group's entries
//! stay contiguous. It never decides what is committed.
//!
//! ```no_run
//! use flotilla_wal::{GroupId, HardState, LogIndex, Term, Wal, WalOptions, WriteBatch};
//!
//! let (mut wal, report) = Wal::open("/tmp/shard-0", WalOptions::default())?;
//! println!("recovered {} records", report.records);
//! let mut batch = WriteBatch::new();
//! batch.add_entry(GroupId(1), LogIndex(1), Term(1), b"put x 1");
//! batch.set_hard_state(GroupId(1), HardState { term: Term(1), vote: 1, commit: LogIndex(0) });
//! let lsn = wal.submit(&batch)?; // returns at once
//! wal.wait_durable(lsn)?;        // or call wal.poll() from an event loop
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(clippy::cast_possible_truncation)]

mod batch;
mod error;
pub mod format;
pub mod fuzzing;
mod ids;
mod index;
mod io;
pub mod recovery;
mod segment;
mod wal;

#[cfg(not(target_pointer_width = "64"))]
compile_error!("flotilla-wal needs a 64-bit target: segments are memory-mapped whole");

/// Converts a file offset or size to a memory length. Never truncates: the crate builds
/// only for 64-bit targets (checked above).
pub(crate) fn usize_of(n: u64) -> usize {
    usize::try_from(n).expect("64-bit target")
}

pub use batch::WriteBatch;
pub use error::{AppendError, OpenError, ReadError};
pub use ids::{GroupId, HardState, LogIndex, Lsn, SegmentId, Term};
pub use index::GroupState;
pub use recovery::{RecoveryReport, Repair, TornTail};
pub use wal::{
    Entry, GcReport, LOCK_FILE, MARKER_FILE, RECYCLE_SEGMENTS_DEFAULT, SEGMENT_SIZE_DEFAULT_BYTES,
    Wal, WalOptions, WalStats,
};
