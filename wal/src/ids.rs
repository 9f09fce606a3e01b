//! Identifier newtypes shared by the log's API and its on-disk format.
//!
//! Each identifier has an explicit width because it is written to disk as that width
//! (little endian). The log knows nothing about Raft beyond these names: a group is an
//! opaque `u64`, an index is a position in that group's log, a term is stored and returned
//! as given.

use std::fmt;

macro_rules! id_u64 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_u64!(
    /// A Raft group (one shard of the embedder's data).
    GroupId
);
id_u64!(
    /// A position in one group's log. The first entry of a group is index 1; 0 means "none".
    LogIndex
);
id_u64!(
    /// A Raft term, stored and returned as given.
    Term
);
id_u64!(
    /// Log sequence number: the number of a write batch (record) in the whole log.
    /// The first record is 1; `Lsn(0)` means "nothing yet". Durability is reported as an Lsn.
    Lsn
);
id_u64!(
    /// Sequence number of a segment file; it is also the file's name.
    SegmentId
);

impl LogIndex {
    /// The index after this one.
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }
}

impl Lsn {
    /// The lsn after this one.
    pub fn next(self) -> Lsn {
        Lsn(self.0 + 1)
    }
}

/// The durable vote and commit state of one group, as Raft persists it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    /// Current term.
    pub term: Term,
    /// Node voted for in `term`; 0 when none (the log stores it opaquely).
    pub vote: u64,
    /// Highest index known committed.
    pub commit: LogIndex,
}
