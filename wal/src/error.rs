//! Errors of the log, one enum per operation a caller reacts to differently.
//!
//! [`OpenError`] is returned by open and recovery, [`AppendError`] by submit, sync and
//! garbage collection, [`ReadError`] by reads. Corruption is its own variant and always
//! names the file and the offset.

use std::io;
use std::path::PathBuf;

use crate::ids::{GroupId, LogIndex};

/// Opening (and recovering) a log failed. No record was deleted or changed on disk (a
/// last segment cut short may have been extended back to its size with zeros).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// An I/O call failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The options are invalid.
    #[error("invalid wal options: {0}")]
    InvalidOptions(String),
    /// The directory holds files but is not a flotilla log.
    #[error("{path} is not a flotilla log: {reason}")]
    NotALog {
        /// The directory or file.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// The log (or one of its segments) was written by a format version this build does
    /// not read.
    #[error("{path} uses wal format version {found}; this build reads version {supported}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A segment's length is not the one its header declares.
    #[error("segment {path} is {found} bytes long but its header says {expected}")]
    SegmentSize {
        /// The segment file.
        path: PathBuf,
        /// Size declared by the header.
        expected: u64,
        /// Size on disk.
        found: u64,
    },
    /// A segment is damaged somewhere other than its torn tail. Reopen with
    /// `WalOptions::repair` to cut the log at this offset (copies of the affected segments
    /// are kept under `quarantine/`).
    #[error("corruption in {path} at offset {offset}: {reason}")]
    Corruption {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the damaged record in that file.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// Another process (or another `Wal` in this one) has the log open.
    #[error("{path} is locked by another open log")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The io_uring instance could not be created (kernel support or memlock limit).
    #[error("cannot set up io_uring: {0}")]
    Uring(#[source] io::Error),
}

/// Submitting, syncing or collecting failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// A write or sync failed. The log is stopped: every later call returns
    /// [`AppendError::Stopped`]. A failed sync is never retried (the kernel may have
    /// dropped the dirty pages), so the process must reopen the log to recover.
    #[error("wal i/o failed, log stopped: {0}")]
    Io(#[source] io::Error),
    /// The log stopped after an earlier failure, described here.
    #[error("wal stopped after an earlier failure: {0}")]
    Stopped(String),
    /// The batch is larger than one segment can hold.
    #[error("batch of {bytes} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Encoded record size.
        bytes: u64,
        /// The largest record a segment holds.
        limit: u64,
    },
    /// The batch breaks the log's rules for a group; nothing of it was written.
    #[error("invalid batch for group {group}: {reason}")]
    InvalidBatch {
        /// The group concerned.
        group: GroupId,
        /// What is wrong.
        reason: String,
    },
}

/// Reading entries failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    /// The group has no state in this log.
    #[error("group {0} is not in the log")]
    UnknownGroup(GroupId),
    /// The index was compacted away.
    #[error("group {group}: index {index} is compacted (first index is {first})")]
    Compacted {
        /// The group.
        group: GroupId,
        /// The index asked for.
        index: LogIndex,
        /// The first index still held.
        first: LogIndex,
    },
    /// The index is past the group's last entry.
    #[error("group {group}: index {index} is past the last index {last}")]
    Unavailable {
        /// The group.
        group: GroupId,
        /// The index asked for.
        index: LogIndex,
        /// The last index held.
        last: LogIndex,
    },
}
