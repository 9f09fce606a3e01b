//! Snapshots and log compaction of a `RaftGroup`.
//!
//! The embedder's state machine produces snapshots; the core only knows their metadata
//! ([`SnapshotMeta`]: the last index and term they cover and the configuration in force
//! there) and moves their bytes through the driver in chunks.
//!
//! # Compaction
//! Once the driver has durably stored a snapshot of the state machine at an applied index,
//! it calls `compact(index)`: the core remembers it as the snapshot to send, and compacts
//! its log through `index - Config::compaction_tail_entries` (the tail stays for followers
//! a little behind, who then get entries, not a whole snapshot). The driver drops its
//! stored entries through the returned point.
//!
//! # Transfer (Figure 13, InstallSnapshot, in chunks)
//! - A leader whose follower needs an entry at or below the log's base puts the follower's
//!   progress in the `Snapshot` state: no entries go to it meanwhile.
//! - One chunk at a time: the leader asks the driver for `Config::snapshot_chunk_bytes_max`
//!   bytes at the follower's offset (`Ready::snapshot_reads`), the driver answers with
//!   `on_snapshot_read`, and the chunk goes out as `InstallSnapshot`.
//! - The follower takes a chunk only at the offset it expects (a chunk at offset 0 starts
//!   over) and answers `SnapshotResponse { next_offset }`; a chunk it cannot take is answered
//!   with the offset it wants, so a lost chunk is re-sent from there. A chunk unanswered by
//!   the next heartbeat round is re-sent.
//! - The chunks go to the driver (`Ready::snapshot_chunks`); with the last one the follower
//!   installs the snapshot (`Ready::install_snapshot`): the log through its index is replaced
//!   (entries after it kept if the log holds its very last entry), the configuration comes
//!   from the snapshot, and the acknowledgement (`AppendResponse::Accepted` at the snapshot's
//!   index) leaves only once that `Ready` is durable. The leader then replicates from there.

use bytes::Bytes;

use crate::raft::error::CompactError;
use crate::raft::group::RaftGroup;
use crate::raft::message::{AppendResponse, InstallSnapshot, MessageBody, SnapshotResponse};
use crate::raft::progress::ProgressState;
use crate::raft::quorum::Configuration;
use crate::raft::ready::Role;
use crate::raft::types::{LogIndex, NodeId, Term};

/// What a snapshot covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotMeta {
    /// The last log index whose effects it holds.
    pub index: LogIndex,
    /// The term of that entry.
    pub term: Term,
    /// The configuration in force at `index`.
    pub configuration: Configuration,
}

/// What `compact` did: the snapshot the core will send from now on, and the point through
/// which the driver may drop its stored entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compaction {
    /// The snapshot's metadata; the driver stores it with the snapshot's bytes.
    pub snapshot: SnapshotMeta,
    /// Entries through this index are no longer needed.
    pub log_compacted_through: LogIndex,
}

/// A chunk of its current snapshot the leader needs from the driver, for `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotRead {
    /// The follower the chunk is for.
    pub to: NodeId,
    /// The snapshot's index (the driver answers empty if it no longer has that one).
    pub index: LogIndex,
    /// The byte offset wanted.
    pub offset: u64,
    /// At most this many bytes.
    pub bytes_max: usize,
}

/// The driver's answer to a [`SnapshotRead`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunkData {
    /// The bytes at the offset asked for (fewer than asked only at the end).
    pub data: Bytes,
    /// The snapshot's total length in bytes.
    pub total_bytes: u64,
}

/// A chunk a follower received, for the driver to store in order (offset 0 starts over).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// The snapshot's index.
    pub index: LogIndex,
    /// The chunk's offset.
    pub offset: u64,
    /// The bytes.
    pub data: Bytes,
}

/// A received snapshot to install: the driver makes the chunks it stored the group's
/// snapshot, durably, with this `Ready`; drops its stored entries through `meta.index` (all
/// of them unless `keep_entries_after`); and restores its state machine from it before
/// applying the `Ready`'s committed entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInstall {
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
    /// Whether the stored entries after `meta.index` stay.
    pub keep_entries_after: bool,
}

/// A follower receiving a snapshot: which one, and the next byte it expects.
#[derive(Clone, Debug)]
pub(crate) struct IncomingSnapshot {
    index: LogIndex,
    term: Term,
    total_bytes: u64,
    next_offset: u64,
}

impl RaftGroup {
    /// The snapshot this replica would send (the latest it took or installed).
    #[must_use]
    pub fn snapshot(&self) -> Option<&SnapshotMeta> {
        self.snapshot.as_ref()
    }

    /// The driver durably stored a snapshot of its state machine at applied index `index`:
    /// the core sends it to followers from now on, and compacts its log (see the module
    /// docs).
    ///
    /// # Errors
    /// `index` is not applied yet, or older than the current snapshot or the log's base.
    pub fn compact(&mut self, index: LogIndex) -> Result<Compaction, CompactError> {
        if index > self.log.applied {
            return Err(CompactError::NotApplied {
                index,
                applied: self.log.applied,
            });
        }
        let (base, _) = self.log.base();
        let current = self.snapshot.as_ref().map_or(base, |meta| meta.index);
        // A second snapshot at the same index is refused too: a transfer in progress names
        // its snapshot by index, and must not mix the bytes of two.
        if index <= current.max(base) {
            return Err(CompactError::Stale {
                index,
                snapshot: current.max(base),
            });
        }
        let term = self
            .log
            .term(index)
            .expect("an applied index at or above the base");
        let configuration = self.configs.at(index).clone();
        if configuration.voters().is_empty() {
            // A joining replica that has not yet applied the entry that told it its
            // configuration: a snapshot without one could never be installed.
            return Err(CompactError::ConfigurationUnknown { index });
        }
        let snapshot = SnapshotMeta {
            index,
            term,
            configuration,
        };
        let through = LogIndex(
            index
                .0
                .saturating_sub(self.cfg.compaction_tail_entries as u64),
        )
        .max(base)
        .min(self.log.persisted);
        self.log.compact(through);
        self.configs.compact(through);
        self.snapshot = Some(snapshot.clone());
        self.check_invariants();
        Ok(Compaction {
            snapshot,
            log_compacted_through: through,
        })
    }

    /// Leader: sends `to` (at `slot`) the next chunk of the snapshot it needs, asking the
    /// driver for its bytes first. A transfer keeps the snapshot it started with (a newer
    /// compaction does not restart it) unless the driver no longer has it.
    pub(crate) fn send_snapshot(&mut self, slot: usize) {
        let latest = self
            .snapshot
            .clone()
            .expect("a compacted log has a snapshot");
        let pr = &mut self.progress[slot].1;
        if pr.state != ProgressState::Snapshot {
            pr.become_snapshot(latest.clone());
        }
        if !pr.snapshot_read_wanted() {
            return;
        }
        if pr.snapshot_offset == 0 && pr.snapshot_index() != latest.index {
            // Starting over anyway (never begun, or the driver lost the old one): send the
            // newest.
            pr.become_snapshot(latest);
        }
        pr.snapshot_read_pending = true;
        let read = crate::raft::SnapshotRead {
            to: self.progress[slot].0,
            index: self.progress[slot].1.snapshot_index(),
            offset: self.progress[slot].1.snapshot_offset,
            bytes_max: self.cfg.snapshot_chunk_bytes_max,
        };
        self.snapshot_reads.push(read);
    }

    /// The driver read a chunk of a snapshot for `read` (`None`: it could not, or no longer
    /// has that snapshot): it goes to the follower if it still wants it.
    pub fn on_snapshot_read(&mut self, read: SnapshotRead, chunk: Option<SnapshotChunkData>) {
        if self.role != Role::Leader {
            return;
        }
        let Some(slot) = self.progress.iter().position(|(peer, _)| *peer == read.to) else {
            return;
        };
        let round = self.read_round;
        let pr = &mut self.progress[slot].1;
        if pr.state != ProgressState::Snapshot
            || !pr.snapshot_read_pending
            || pr.snapshot_index() != read.index
            || pr.snapshot_offset != read.offset
        {
            return; // From an earlier state of this follower's progress.
        }
        pr.snapshot_read_pending = false;
        pr.snapshot_chunk_round = Some(round);
        let usable = chunk.filter(|chunk| {
            let end = read.offset.saturating_add(chunk.data.len() as u64);
            end <= chunk.total_bytes && (!chunk.data.is_empty() || end == chunk.total_bytes)
        });
        let (Some(chunk), Some(meta)) = (usable, pr.snapshot.clone()) else {
            // Unreadable, gone, or a chunk outside the snapshot: start over after the next
            // heartbeat round, with the newest snapshot.
            pr.snapshot_offset = 0;
            return;
        };
        pr.snapshot_total = chunk.total_bytes;
        let term = self.term;
        self.send(
            read.to,
            term,
            MessageBody::InstallSnapshot(InstallSnapshot {
                meta,
                offset: read.offset,
                total_bytes: chunk.total_bytes,
                data: chunk.data,
            }),
        );
        self.check_invariants();
    }

    /// Leader: a follower acknowledged snapshot chunks through `next_offset`.
    pub(crate) fn handle_snapshot_response(&mut self, from: NodeId, response: SnapshotResponse) {
        let Some(slot) = self.progress.iter().position(|(peer, _)| *peer == from) else {
            return;
        };
        let pr = &mut self.progress[slot].1;
        if pr.state != ProgressState::Snapshot
            || pr.snapshot_index() != response.index
            || pr.snapshot_read_pending
            || response.next_offset > pr.snapshot_total
        {
            return; // Stale, or beyond what was sent: nonsense.
        }
        pr.snapshot_offset = response.next_offset;
        pr.snapshot_chunk_round = None;
        self.send_snapshot(slot);
    }

    /// Follower: one chunk of a snapshot from the leader of `term`.
    pub(crate) fn handle_install_snapshot(
        &mut self,
        from: NodeId,
        term: Term,
        chunk: InstallSnapshot,
    ) {
        let index = chunk.meta.index;
        if index <= self.log.committed {
            // We hold everything it covers already.
            self.incoming_snapshot = None;
            self.accept_through_commit(from, term);
            return;
        }
        if chunk.offset == 0 {
            self.incoming_snapshot = Some(IncomingSnapshot {
                index,
                term: chunk.meta.term,
                total_bytes: chunk.total_bytes,
                next_offset: 0,
            });
        }
        let expected = match &self.incoming_snapshot {
            Some(incoming)
                if incoming.index == index
                    && incoming.term == chunk.meta.term
                    && incoming.total_bytes == chunk.total_bytes =>
            {
                incoming.next_offset
            }
            _ => 0,
        };
        if chunk.offset != expected {
            // A lost or reordered chunk: ask for the one we expect.
            self.send(
                from,
                term,
                MessageBody::SnapshotResponse(SnapshotResponse {
                    index,
                    next_offset: expected,
                }),
            );
            return;
        }
        let next_offset = expected + chunk.data.len() as u64;
        self.snapshot_chunks.push(crate::raft::SnapshotChunk {
            index,
            offset: chunk.offset,
            data: chunk.data,
        });
        if next_offset < chunk.total_bytes {
            if let Some(incoming) = &mut self.incoming_snapshot {
                incoming.next_offset = next_offset;
            }
            self.send(
                from,
                term,
                MessageBody::SnapshotResponse(SnapshotResponse { index, next_offset }),
            );
            return;
        }
        self.incoming_snapshot = None;
        self.install_snapshot(from, term, chunk.meta);
    }

    /// Follower: the whole snapshot arrived; it replaces the log through its index.
    fn install_snapshot(&mut self, from: NodeId, term: Term, meta: SnapshotMeta) {
        // State Machine Safety: a snapshot only ever covers committed entries, and we never
        // install one at or below our commit index (checked by the caller), so no applied
        // entry is replaced by a different one.
        assert!(
            meta.index > self.log.committed,
            "installing a stale snapshot"
        );
        let keep = self.log.install_snapshot(meta.index, meta.term);
        self.configs
            .install(meta.index, meta.term, meta.configuration.clone(), keep);
        self.snapshot = Some(meta.clone());
        self.snapshot_install = Some(SnapshotInstall {
            meta: meta.clone(),
            keep_entries_after: keep,
        });
        // The acknowledgement depends on the snapshot being durable: it waits for the
        // persistence of the Ready that carries the install (Figure 2's rule for responses).
        self.messages_after_persist.push(crate::raft::Message {
            from: self.id,
            to: from,
            term,
            body: MessageBody::AppendResponse(AppendResponse::Accepted {
                match_index: meta.index,
            }),
        });
    }
}

/// Checks an `InstallSnapshot` for contradictions.
pub(crate) fn validate_install(chunk: &InstallSnapshot, term: Term) -> Result<(), &'static str> {
    if chunk.meta.term > term {
        return Err("snapshot term above the message term");
    }
    if chunk.meta.index.0 == 0 {
        return Err("snapshot at index 0");
    }
    if chunk.meta.index.0 == u64::MAX {
        // Its next index (where the log would go on) does not exist.
        return Err("snapshot index overflow");
    }
    if chunk.offset.saturating_add(chunk.data.len() as u64) > chunk.total_bytes {
        return Err("chunk beyond the snapshot's length");
    }
    if chunk.meta.configuration.voters().is_empty() {
        return Err("snapshot configuration without voters");
    }
    Ok(())
}
