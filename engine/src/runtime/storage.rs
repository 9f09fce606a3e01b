//! A group's durable state in the shard's write-ahead log: what a `Ready` asks to persist
//! becomes operations of the shard's [`WriteBatch`], and a reopened log gives back each
//! group's [`RestoredState`].
//!
//! The log stores opaque payloads, so this module owns the encoding of a core entry:
//! one tag byte (its [`EntryKind`]) followed by the entry's data, written in one copy with
//! [`WriteBatch::add_entry_prefixed`]. A vote is stored as the node id plus one, so that 0
//! means "no vote" in the log's hard-state record.
//!
//! **Boundary:** no I/O here; the caller submits the batch and waits for durability before
//! calling `on_persisted` (docs/ready_protocol.md, step 3).

use flotilla_wal::{
    GroupId as WalGroupId, HardState as WalHardState, LogIndex as WalLogIndex, Term as WalTerm,
    Wal, WriteBatch,
};

use crate::raft::{
    Entry, EntryKind, HardState, LogIndex, NodeId, Payload, Ready, RestoredState, SnapshotMeta,
    Term,
};
use crate::runtime::GroupId;

/// Tag byte of an entry of kind [`EntryKind::Normal`].
const TAG_NORMAL: u8 = 0;
/// Tag byte of an entry of kind [`EntryKind::Noop`].
const TAG_NOOP: u8 = 1;
/// Tag byte of an entry of kind [`EntryKind::Configuration`].
const TAG_CONFIGURATION: u8 = 2;
/// Tag byte of an entry of kind [`EntryKind::Verify`].
const TAG_VERIFY: u8 = 3;

/// What a `Ready` asked for could not be written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PersistError {
    /// The vote names node `u64::MAX`, which the log's vote encoding (node id + 1) cannot
    /// hold; the engine's configuration refuses that id.
    #[error("group {group}: a vote for node {node} cannot be stored")]
    VoteUnrepresentable {
        /// The group.
        group: u64,
        /// The node voted for.
        node: u64,
    },
}

/// A group's state in the log cannot be turned back into a replica.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The group's log was compacted beyond its newest snapshot: the entries between are
    /// lost (a snapshot file was deleted, or the wrong snapshot directory is used).
    #[error(
        "group {group}: log compacted through {compacted_through} but the newest snapshot is at {snapshot}"
    )]
    Compacted {
        /// The group.
        group: u64,
        /// The compaction mark.
        compacted_through: u64,
        /// The newest snapshot's index (0: none).
        snapshot: u64,
    },
    /// An entry does not start with a known tag: not written by this module.
    #[error("group {group}: entry {index} has unknown tag {tag:?}")]
    BadEntry {
        /// The group.
        group: u64,
        /// The entry's index.
        index: u64,
        /// Its first byte, if it has one.
        tag: Option<u8>,
    },
    /// The hard state commits an index the log does not hold.
    #[error("group {group}: hard state commits {commit} but the log ends at {last_index}")]
    CommitBeyondLog {
        /// The group.
        group: u64,
        /// The commit index.
        commit: u64,
        /// The log's last index.
        last_index: u64,
    },
    /// The log could not be read.
    #[error("group {group}: {source}")]
    Read {
        /// The group.
        group: u64,
        /// Why.
        source: flotilla_wal::ReadError,
    },
}

/// Adds to `batch` what `ready` asks `group` to persist: a truncation when its entries
/// replace ones already written, the entries, then the hard state.
///
/// `last_index` is the group's last index counting every batch already built for it
/// (submitted or not); it is updated. Start it from the restored log's last index.
pub fn persist_ready(
    batch: &mut WriteBatch,
    group: GroupId,
    ready: &Ready,
    last_index: &mut LogIndex,
) -> Result<(), PersistError> {
    let wal_group = WalGroupId(group.0);
    if let Some(first) = ready.entries.first() {
        // The log accepts an entry only right after its last one: entries that replace
        // a suffix (Figure 2, AppendEntries rule 3) need the logical truncation first.
        if first.index <= *last_index {
            batch.truncate(wal_group, WalLogIndex(first.index.0));
        }
        for entry in &ready.entries {
            let tag = match entry.kind {
                EntryKind::Normal => TAG_NORMAL,
                EntryKind::Noop => TAG_NOOP,
                EntryKind::Configuration => TAG_CONFIGURATION,
                EntryKind::Verify => TAG_VERIFY,
            };
            batch.add_entry_prefixed(
                wal_group,
                WalLogIndex(entry.index.0),
                WalTerm(entry.term.0),
                &[tag],
                &entry.data,
            );
        }
        *last_index = ready.entries.last().expect("not empty").index;
    }
    if let Some(hard_state) = ready.hard_state {
        let vote = match hard_state.vote {
            None => 0,
            Some(node) => node
                .0
                .checked_add(1)
                .ok_or(PersistError::VoteUnrepresentable {
                    group: group.0,
                    node: node.0,
                })?,
        };
        batch.set_hard_state(
            wal_group,
            WalHardState {
                term: WalTerm(hard_state.term.0),
                vote,
                commit: WalLogIndex(hard_state.commit.0),
            },
        );
    }
    Ok(())
}

/// What `restore_group` found: the replica's state, and what the log must be told before
/// anything else is written for the group.
#[derive(Debug)]
pub struct RestoredGroup {
    /// The durable state, for `RaftGroup::new`.
    pub state: RestoredState,
    /// The group's last index in the log once `repair` is written (what `persist_ready`
    /// must start from).
    pub last_index: LogIndex,
    /// The snapshot is newer than the log's compaction mark (its install record, or its
    /// compaction mark, did not land): the record that does the same must be written now,
    /// or the log would not take the entries after the snapshot, and a replaced suffix
    /// would come back at the next restart.
    pub repair: Option<LogRepair>,
}

/// The log operations that bring a group's log in line with its snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRepair {
    /// Truncate from here first (a suffix the snapshot replaced).
    pub truncate_from: Option<LogIndex>,
    /// Then compact through the snapshot's index.
    pub compact_through: LogIndex,
}

impl LogRepair {
    /// Adds the repair to `batch` for `group`.
    pub fn write(&self, batch: &mut WriteBatch, group: GroupId) {
        let wal_group = WalGroupId(group.0);
        if let Some(from) = self.truncate_from {
            batch.truncate(wal_group, WalLogIndex(from.0));
        }
        batch.compact(wal_group, WalLogIndex(self.compact_through.0));
    }
}

/// The durable state of `group` in `wal` and its newest `snapshot` (the state machine is
/// restored from it by the caller), for `RaftGroup::new`. A group the log does not know
/// starts empty, or from its snapshot.
///
/// The snapshot file is written before the log record that installs or compacts behind
/// it; a crash between leaves the log as it was, so: entries at or below the snapshot are
/// left out; if the log holds the snapshot's last entry with another term, the entries
/// after it are a suffix the snapshot replaced and are left out too; and a term below the
/// snapshot's is raised to it (the replica never voted in the terms between, or they
/// would be durable).
pub fn restore_group(
    wal: &Wal,
    group: GroupId,
    snapshot: Option<&SnapshotMeta>,
) -> Result<RestoredGroup, RestoreError> {
    let base = snapshot.map_or(LogIndex(0), |meta| meta.index);
    let raise_to_snapshot_term = |mut hard_state: HardState| {
        if let Some(meta) = snapshot
            && hard_state.term < meta.term
        {
            hard_state.term = meta.term;
            hard_state.vote = None;
        }
        hard_state
    };
    let Some(state) = wal.group(WalGroupId(group.0)) else {
        let restored = RestoredState {
            hard_state: raise_to_snapshot_term(HardState::default()),
            snapshot: snapshot.cloned(),
            entries: Vec::new(),
            applied: base,
        };
        let repair = snapshot.map(|meta| LogRepair {
            truncate_from: None,
            compact_through: meta.index,
        });
        return Ok(RestoredGroup {
            state: restored,
            last_index: base,
            repair,
        });
    };
    if state.compacted_through.0 > base.0 {
        return Err(RestoreError::Compacted {
            group: group.0,
            compacted_through: state.compacted_through.0,
            snapshot: base.0,
        });
    }
    let hard_state = raise_to_snapshot_term(state.hard_state.map_or(
        HardState::default(),
        |stored| HardState {
            term: Term(stored.term.0),
            vote: stored.vote.checked_sub(1).map(NodeId),
            commit: LogIndex(stored.commit.0),
        },
    ));
    let mut entries = Vec::new();
    let mut bad = None;
    let end = WalLogIndex(state.last_index.0 + 1);
    let from = WalLogIndex(state.first_index.0.max(base.0).min(end.0));
    wal.read_entries(
        WalGroupId(group.0),
        from,
        end,
        |index, term, stored| match decode_entry(group, index, term, stored) {
            Ok(entry) => entries.push(entry),
            Err(error) => {
                bad.get_or_insert(error);
            }
        },
    )
    .map_err(|source| RestoreError::Read {
        group: group.0,
        source,
    })?;
    if let Some(error) = bad {
        return Err(error);
    }
    let mut replaced = false;
    if let Some(meta) = snapshot {
        replaced = entries
            .first()
            .is_some_and(|entry| entry.index == meta.index && entry.term != meta.term);
        if replaced {
            entries.clear();
        }
        entries.retain(|entry| entry.index > meta.index);
    }
    let log_last = LogIndex(state.last_index.0);
    let repair = (base.0 > state.compacted_through.0).then(|| LogRepair {
        truncate_from: (replaced && log_last > base).then(|| base.next()),
        compact_through: base,
    });
    let last_index = match repair {
        Some(_) if replaced => base,
        Some(_) => log_last.max(base),
        None => log_last,
    };
    if hard_state.commit.0 > state.last_index.0.max(base.0) {
        return Err(RestoreError::CommitBeyondLog {
            group: group.0,
            commit: hard_state.commit.0,
            last_index: state.last_index.0,
        });
    }
    let restored = RestoredState {
        hard_state,
        snapshot: snapshot.cloned(),
        entries,
        applied: base,
    };
    Ok(RestoredGroup {
        state: restored,
        last_index,
        repair,
    })
}

/// Reads `group`'s entries `from..=through` back from `wal`, stopping after about
/// `bytes_max` bytes (at least one entry): what a leader fetches for a follower once the
/// entries left its memory.
pub fn read_entries(
    wal: &Wal,
    group: GroupId,
    from: LogIndex,
    through: LogIndex,
    bytes_max: usize,
) -> Result<Vec<Entry>, RestoreError> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut bytes = 0;
    let mut index = from;
    while index <= through && (entries.is_empty() || bytes < bytes_max) {
        let mut decoded = None;
        wal.read_entries(
            WalGroupId(group.0),
            WalLogIndex(index.0),
            WalLogIndex(index.0 + 1),
            |index, term, stored| decoded = Some(decode_entry(group, index, term, stored)),
        )
        .map_err(|source| RestoreError::Read {
            group: group.0,
            source,
        })?;
        let entry = decoded.expect("one entry read")?;
        bytes += entry.size_bytes();
        entries.push(entry);
        index = index.next();
    }
    Ok(entries)
}

/// An entry as the engine stored it: a kind tag, then the data (FORMATS.md).
fn decode_entry(
    group: GroupId,
    index: WalLogIndex,
    term: WalTerm,
    stored: &[u8],
) -> Result<Entry, RestoreError> {
    let kind = match stored.first() {
        Some(&TAG_NORMAL) => EntryKind::Normal,
        Some(&TAG_NOOP) => EntryKind::Noop,
        Some(&TAG_CONFIGURATION) => EntryKind::Configuration,
        Some(&TAG_VERIFY) => EntryKind::Verify,
        tag => {
            return Err(RestoreError::BadEntry {
                group: group.0,
                index: index.0,
                tag: tag.copied(),
            });
        }
    };
    Ok(Entry {
        index: LogIndex(index.0),
        term: Term(term.0),
        kind,
        data: Payload::from(&stored[1..]),
    })
}

#[cfg(test)]
mod tests;
