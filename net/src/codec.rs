//! The message schema and its rkyv encoding: what a data frame's body holds.
//!
//! A [`MessageBatch`] carries every message one node sends another in one flush, for many
//! Raft groups at once: per-group messages ([`GroupMessage`]: AppendEntries with entries,
//! their responses, votes and pre-votes, timeout-now, read-index, snapshot chunks) plus one
//! coalesced heartbeat and one coalesced heartbeat response covering many groups.
//!
//! Senders build the owned types and [`encode_batch`] archives them after a reserved frame
//! header in one aligned buffer. Receivers never deserialize: they validate the archive once
//! ([`crate::ReceivedFrame`]) and read the `Archived*` types in place, so entry payloads stay
//! in the receive buffer.
//!
//! **Boundary:** this is the shape of Raft's messages, not Raft: nothing here checks that a
//! term or index makes sense; the engine's `step` does (and rejects what is malformed).
//! Fields are plain `u64`s so that the wire format does not depend on the engine's types.
//! docs/FORMATS.md ("Message batch") documents the archive.
#![forbid(unsafe_code)]

use bytes::Bytes;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::frame::{FRAME_BODY_BYTES_LIMIT, FRAME_HEADER_BYTES, FrameHeader, FrameKind};

/// Everything one node sends another in one flush: one data frame.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct MessageBatch {
    /// The sending node.
    pub from: u64,
    /// The receiving node.
    pub to: u64,
    /// Messages of individual groups, in the order the sender produced them.
    pub messages: Vec<GroupMessage>,
    /// Leader → follower heartbeats of every group this node leads and the receiver follows,
    /// coalesced into one message per node pair per tick.
    pub heartbeats: Vec<GroupHeartbeat>,
    /// Follower → leader answers to `heartbeats`, coalesced the same way.
    pub heartbeat_responses: Vec<GroupHeartbeatResponse>,
}

impl MessageBatch {
    /// An empty batch from `from` to `to`.
    pub fn new(from: u64, to: u64) -> MessageBatch {
        MessageBatch {
            from,
            to,
            ..MessageBatch::default()
        }
    }

    /// True when the batch carries nothing.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.heartbeats.is_empty()
            && self.heartbeat_responses.is_empty()
    }

    /// A lower bound of the archive's size: every payload byte and the fixed size of every
    /// archived object. Lets a sender refuse an oversize batch before serializing it (rkyv's
    /// 32-bit relative pointers could not even express one beyond 2 GiB).
    pub fn encoded_bytes_lower_bound(&self) -> usize {
        const BATCH: usize = 40;
        const MESSAGE: usize = 72;
        const ENTRY: usize = 32;
        const HEARTBEAT: usize = 32;
        const HEARTBEAT_RESPONSE: usize = 24;
        let messages: usize = self
            .messages
            .iter()
            .map(|message| {
                MESSAGE
                    + match &message.body {
                        MessageBody::AppendEntries { entries, .. } => entries
                            .iter()
                            .map(|entry| ENTRY.saturating_add(entry.data.len()))
                            .fold(0, usize::saturating_add),
                        MessageBody::SnapshotChunk(chunk) => {
                            chunk.data.len().saturating_add(chunk.configuration.len())
                        }
                        _ => 0,
                    }
            })
            .fold(0, usize::saturating_add);
        BATCH
            .saturating_add(messages)
            .saturating_add(HEARTBEAT * self.heartbeats.len())
            .saturating_add(HEARTBEAT_RESPONSE * self.heartbeat_responses.len())
    }

    /// True when the batch carries a snapshot chunk: such batches travel in the bulk lane so
    /// that heartbeats and votes are not stuck behind them.
    pub fn has_snapshot_chunk(&self) -> bool {
        self.messages
            .iter()
            .any(|msg| matches!(msg.body, MessageBody::SnapshotChunk(_)))
    }
}

/// One message of one group.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct GroupMessage {
    /// The Raft group.
    pub group: u64,
    /// The sender's term.
    pub term: u64,
    /// What the message is.
    pub body: MessageBody,
}

pub use message_body::{ArchivedMessageBody, MessageBody, MessageBodyResolver};

/// Holds [`MessageBody`] alone: rkyv's derive generates helper types for the variants of an
/// enum whose fields carry no docs, and the lint is silenced for them here only.
#[allow(
    missing_docs,
    reason = "rkyv's generated helper types for the enum variants"
)]
mod message_body {
    use super::{SnapshotChunk, WireEntry};
    use rkyv::{Archive, Deserialize, Serialize};

    /// What a group message is. The variants follow the engine's `MessageBody`.
    #[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
    #[rkyv(derive(Debug))]
    pub enum MessageBody {
        /// Leader → follower: append `entries` after (`prev_index`, `prev_term`).
        AppendEntries {
            /// The index just before the first entry.
            prev_index: u64,
            /// The term of the entry at `prev_index`.
            prev_term: u64,
            /// The leader's commit index.
            commit: u64,
            /// Entries, contiguous from `prev_index + 1`.
            entries: Vec<WireEntry>,
        },
        /// Follower → leader: the log matches through `match_index`.
        AppendAccepted {
            /// The last index known to match.
            match_index: u64,
        },
        /// Follower → leader: no entry matches (`rejected_index`, `prev_term`).
        AppendRejected {
            /// The `prev_index` that was rejected.
            rejected_index: u64,
            /// The term of the follower's conflicting entry, if it has one.
            conflict_term: Option<u64>,
            /// The first index of `conflict_term`, or the follower's last index + 1.
            conflict_index: u64,
        },
        /// Candidate or pre-candidate → voter.
        RequestVote {
            /// A pre-vote (no term change, no durable vote) rather than a vote.
            pre_vote: bool,
            /// The candidate's last log index.
            last_index: u64,
            /// The candidate's last log term.
            last_term: u64,
            /// The election was started by a leadership transfer.
            transfer: bool,
        },
        /// Voter → candidate.
        VoteResponse {
            /// Answers a pre-vote.
            pre_vote: bool,
            /// The vote was granted.
            granted: bool,
        },
        /// Leader → follower, one group only (coalesced heartbeats go in the batch's
        /// `heartbeats`).
        Heartbeat {
            /// The commit index the follower may adopt.
            commit: u64,
            /// The read round the heartbeat confirms.
            read_round: u64,
        },
        /// Follower → leader, one group only.
        HeartbeatResponse {
            /// The read round answered.
            read_round: u64,
        },
        /// Leader → transfer target: campaign now.
        TimeoutNow,
        /// Follower → leader: a linearizable read forwarded by a follower.
        ReadIndex {
            /// The follower's identifier of the read.
            context: u64,
        },
        /// Leader → follower: the answer to [`MessageBody::ReadIndex`].
        ReadIndexResponse {
            /// The follower's identifier of the read.
            context: u64,
            /// The index the read must wait for, or `None` if the leader could not serve it.
            read_index: Option<u64>,
        },
        /// Leader → follower: one piece of a snapshot.
        SnapshotChunk(SnapshotChunk),
        /// Follower → leader: how much of a snapshot has arrived.
        SnapshotResponse {
            /// The snapshot's last included index.
            snapshot_index: u64,
            /// The next byte offset the follower expects; equal to the total length once
            /// the snapshot is installed.
            next_offset: u64,
            /// The follower refused the snapshot (it is stale for it).
            rejected: bool,
        },
        /// Leader → follower: the group is idle, stop the election timer.
        Quiesce {
            /// The commit index the follower may adopt.
            commit: u64,
            /// The leader's latest read round.
            read_round: u64,
        },
        /// Any replica → leader: its state machine's hash after applying a verify entry.
        VerifyReport {
            /// The verify entry's index.
            index: u64,
            /// The hash.
            hash: u64,
        },
    }
}

/// One entry inside an AppendEntries.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct WireEntry {
    /// Log index.
    pub index: u64,
    /// Term it was created in.
    pub term: u64,
    /// What the entry is.
    pub kind: WireEntryKind,
    /// The payload; on the receiver it stays in the receive buffer.
    pub data: Bytes,
}

/// The kind of an entry.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug, PartialEq, Eq))]
#[repr(u8)]
pub enum WireEntryKind {
    /// An embedder's command.
    Normal,
    /// A new leader's empty entry.
    Noop,
    /// A membership configuration change.
    Config,
    /// A consistency check.
    Verify,
}

/// One piece of a snapshot, streamed in order.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct SnapshotChunk {
    /// The snapshot's last included index.
    pub snapshot_index: u64,
    /// The term of that index.
    pub snapshot_term: u64,
    /// The configuration in force at `snapshot_index`, encoded as in a configuration entry
    /// (docs/FORMATS.md, "Membership configuration").
    pub configuration: Bytes,
    /// Byte offset of `data` in the snapshot.
    pub offset: u64,
    /// The snapshot's total length in bytes.
    pub total_bytes: u64,
    /// The chunk's bytes.
    pub data: Bytes,
}

/// One group's heartbeat inside a coalesced heartbeat.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct GroupHeartbeat {
    /// The group.
    pub group: u64,
    /// The leader's term.
    pub term: u64,
    /// The commit index the follower may adopt.
    pub commit: u64,
    /// The read round confirmed.
    pub read_round: u64,
}

/// One group's answer inside a coalesced heartbeat response.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct GroupHeartbeatResponse {
    /// The group.
    pub group: u64,
    /// The follower's term.
    pub term: u64,
    /// The read round answered.
    pub read_round: u64,
}

// Layout facts documented in docs/FORMATS.md ("Message batch"): a change here is a change
// of the wire format.
const _: () = assert!(size_of::<ArchivedMessageBatch>() == 40);
const _: () = assert!(size_of::<ArchivedGroupMessage>() == 72);
const _: () = assert!(size_of::<ArchivedMessageBody>() == 56);
const _: () = assert!(size_of::<ArchivedWireEntry>() == 32);
const _: () = assert!(size_of::<ArchivedSnapshotChunk>() == 48);
const _: () = assert!(size_of::<ArchivedGroupHeartbeat>() == 32);
const _: () = assert!(size_of::<ArchivedGroupHeartbeatResponse>() == 24);
const _: () = assert!(align_of::<ArchivedMessageBatch>() == 8);
const _: () = assert!(align_of::<ArchivedMessageBody>() == 8);
const _: () = assert!(size_of::<rkyv::vec::ArchivedVec<u8>>() == 8);

/// A batch archived after room for its frame header, ready to be stamped with its
/// connection sequence number and written.
///
/// # Invariants
/// - `bytes.len() == FRAME_HEADER_BYTES + body length`, and the body length is within
///   [`FRAME_BODY_BYTES_LIMIT`].
/// - `body_crc` is the crc of `bytes[FRAME_HEADER_BYTES..]`.
#[derive(Debug)]
pub struct EncodedFrame {
    bytes: AlignedVec,
    body_crc: u32,
}

impl EncodedFrame {
    /// Writes the header for connection sequence number `seq` in front of the body.
    pub fn stamp(&mut self, seq: u64) {
        let body_bytes = u32::try_from(self.body_len()).expect("checked when encoded");
        let header = FrameHeader {
            kind: FrameKind::Data,
            body_bytes,
            body_crc: self.body_crc,
            seq,
        };
        self.bytes[..FRAME_HEADER_BYTES].copy_from_slice(&header.encode());
    }

    /// The whole frame, header included (stamp it first).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The body: the archive of the batch.
    pub fn body(&self) -> &[u8] {
        &self.bytes[FRAME_HEADER_BYTES..]
    }

    /// The body's length.
    pub fn body_len(&self) -> usize {
        self.bytes.len() - FRAME_HEADER_BYTES
    }

    /// Gives the buffer back for reuse by the next [`encode_batch`].
    pub fn into_buffer(self) -> AlignedVec {
        self.bytes
    }
}

/// Archives `batch` into `buffer` (cleared first, then reused) after room for the frame
/// header. Returns the encoded size (or a lower bound of it) if it exceeds
/// `body_bytes_max`.
pub fn encode_batch(
    batch: &MessageBatch,
    mut buffer: AlignedVec,
    body_bytes_max: u32,
) -> Result<EncodedFrame, usize> {
    let body_bytes_max = body_bytes_max.min(FRAME_BODY_BYTES_LIMIT) as usize;
    let lower_bound = batch.encoded_bytes_lower_bound();
    if lower_bound > body_bytes_max {
        return Err(lower_bound);
    }
    buffer.clear();
    buffer.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
    // Cannot fail: the archive is below the 64 MiB frame limit, far inside what rkyv's
    // 32-bit offsets express, and writing to memory has no other failure.
    let bytes = rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Panic>(batch, buffer)
        .unwrap_or_else(|never| match never {});
    let body_len = bytes.len() - FRAME_HEADER_BYTES;
    debug_assert!(
        body_len >= lower_bound,
        "{body_len} < lower bound {lower_bound}"
    );
    if body_len > body_bytes_max {
        return Err(body_len);
    }
    let body_crc = crc32fast::hash(&bytes[FRAME_HEADER_BYTES..]);
    Ok(EncodedFrame { bytes, body_crc })
}

#[cfg(test)]
mod tests;
