//! From the core's messages to the transport's batches and back.
//!
//! [`OutboundBatches`] gathers what a shard sends in one flush: every group's messages to
//! one node go into that node's [`MessageBatch`], and heartbeats and their responses are
//! coalesced into the batch's `heartbeats` / `heartbeat_responses` (one message per node
//! pair per flush, whatever the number of groups). [`decode_batch`] turns a received,
//! validated frame back into core [`Message`]s: entry payloads above
//! [`PAYLOAD_INLINE_BYTES_MAX`] stay in the receive buffer ([`ReceivedFrame::payload`]),
//! smaller ones are copied inline.
//!
//! **Boundary:** no check of terms or indexes here: the core's `step` refuses what is
//! malformed. Message kinds the core does not speak (read-index forwarding) are reported as
//! [`WireError::Unsupported`] and dropped, never misread; so is a snapshot chunk whose
//! configuration does not decode.

use std::collections::BTreeMap;

use flotilla_net::{
    ArchivedMessageBody, ArchivedWireEntry, ArchivedWireEntryKind, GroupHeartbeat,
    GroupHeartbeatResponse, GroupMessage, MessageBatch, MessageBody as WireBody, ReceivedFrame,
    WireEntry, WireEntryKind,
};

use flotilla_net::SnapshotChunk as WireSnapshotChunk;

use crate::raft::{
    AppendEntries, AppendResponse, Configuration, ConflictHint, Entry, EntryKind, Heartbeat,
    HeartbeatResponse, InstallSnapshot, LogIndex, Message, MessageBody, NodeId,
    PAYLOAD_INLINE_BYTES_MAX, Payload, Quiesce, SnapshotMeta, SnapshotResponse, Term, VerifyReport,
    VoteKind, VoteRequest, VoteResponse,
};

/// A Raft group of the cluster; every message on the wire names the group it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GroupId(pub u64);

/// A message taken off the wire, for the replica of `group` on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundMessage {
    /// The group.
    pub group: GroupId,
    /// The message, as the core's `step` takes it.
    pub message: Message,
}

/// A message on the wire that the core cannot take.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A message kind the core does not speak yet; the message was dropped.
    #[error("group {group}: {kind} is not supported by this node's Raft core yet")]
    Unsupported {
        /// The group it was for.
        group: u64,
        /// What it was.
        kind: &'static str,
    },
}

/// The batches of one flush, one per destination node.
///
/// # Invariants
/// - Every batch is addressed from `local` to its key.
#[derive(Debug)]
pub struct OutboundBatches {
    local: NodeId,
    batches: BTreeMap<NodeId, MessageBatch>,
}

impl OutboundBatches {
    /// Empty batches for messages sent by `local`.
    pub fn new(local: NodeId) -> OutboundBatches {
        OutboundBatches {
            local,
            batches: BTreeMap::new(),
        }
    }

    /// Adds `message`, sent by this node's replica of `group`.
    pub fn push(&mut self, group: GroupId, message: &Message) {
        assert_eq!(message.from, self.local, "a message from another node");
        let batch = self
            .batches
            .entry(message.to)
            .or_insert_with(|| MessageBatch::new(message.from.0, message.to.0));
        let (group, term) = (group.0, message.term.0);
        match &message.body {
            MessageBody::Heartbeat(heartbeat) => batch.heartbeats.push(GroupHeartbeat {
                group,
                term,
                commit: heartbeat.commit.0,
                read_round: heartbeat.read_round,
            }),
            MessageBody::HeartbeatResponse(response) => {
                batch.heartbeat_responses.push(GroupHeartbeatResponse {
                    group,
                    term,
                    read_round: response.read_round,
                })
            }
            body => batch.messages.push(GroupMessage {
                group,
                term,
                body: to_wire(body),
            }),
        }
    }

    /// Makes sure `to` gets a frame in this flush, empty if nothing else goes to it (a
    /// keepalive: see `liveness.rs`).
    pub fn keepalive(&mut self, to: NodeId) {
        let local = self.local.0;
        self.batches
            .entry(to)
            .or_insert_with(|| MessageBatch::new(local, to.0));
    }

    /// True when nothing was pushed since the last drain.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Takes every batch, in node order, leaving this empty.
    pub fn drain(&mut self) -> impl Iterator<Item = (NodeId, MessageBatch)> + use<> {
        std::mem::take(&mut self.batches).into_iter()
    }
}

/// The wire form of a body that is not a heartbeat or heartbeat response.
fn to_wire(body: &MessageBody) -> WireBody {
    match body {
        MessageBody::AppendEntries(append) => WireBody::AppendEntries {
            prev_index: append.prev_index.0,
            prev_term: append.prev_term.0,
            commit: append.commit.0,
            entries: append
                .entries
                .iter()
                .map(|entry| WireEntry {
                    index: entry.index.0,
                    term: entry.term.0,
                    kind: match entry.kind {
                        EntryKind::Normal => WireEntryKind::Normal,
                        EntryKind::Noop => WireEntryKind::Noop,
                        EntryKind::Configuration => WireEntryKind::Config,
                        EntryKind::Verify => WireEntryKind::Verify,
                    },
                    data: entry.data.to_bytes(),
                })
                .collect(),
        },
        MessageBody::AppendResponse(AppendResponse::Accepted { match_index }) => {
            WireBody::AppendAccepted {
                match_index: match_index.0,
            }
        }
        MessageBody::AppendResponse(AppendResponse::Rejected {
            rejected_index,
            hint,
        }) => WireBody::AppendRejected {
            rejected_index: rejected_index.0,
            conflict_term: hint.conflict_term.map(|term| term.0),
            conflict_index: hint.conflict_index.0,
        },
        MessageBody::RequestVote(request) => WireBody::RequestVote {
            pre_vote: request.kind == VoteKind::PreVote,
            last_index: request.last_index.0,
            last_term: request.last_term.0,
            transfer: request.transfer,
        },
        MessageBody::VoteResponse(response) => WireBody::VoteResponse {
            pre_vote: response.kind == VoteKind::PreVote,
            granted: response.granted,
        },
        MessageBody::TimeoutNow => WireBody::TimeoutNow,
        MessageBody::Quiesce(quiesce) => WireBody::Quiesce {
            commit: quiesce.commit.0,
            read_round: quiesce.read_round,
        },
        MessageBody::InstallSnapshot(chunk) => WireBody::SnapshotChunk(WireSnapshotChunk {
            snapshot_index: chunk.meta.index.0,
            snapshot_term: chunk.meta.term.0,
            configuration: chunk.meta.configuration.encode().into(),
            offset: chunk.offset,
            total_bytes: chunk.total_bytes,
            data: chunk.data.clone(),
        }),
        MessageBody::SnapshotResponse(response) => WireBody::SnapshotResponse {
            snapshot_index: response.index.0,
            next_offset: response.next_offset,
            rejected: false,
        },
        MessageBody::VerifyReport(report) => WireBody::VerifyReport {
            index: report.index.0,
            hash: report.hash,
        },
        MessageBody::Heartbeat(_) | MessageBody::HeartbeatResponse(_) => {
            unreachable!("heartbeats are coalesced by the caller")
        }
    }
}

/// Appends the messages of `frame` to `messages`, and what could not be taken to `errors`.
/// The frame's addressing was checked by the transport.
pub fn decode_batch(
    frame: &ReceivedFrame,
    messages: &mut Vec<InboundMessage>,
    errors: &mut Vec<WireError>,
) {
    let batch = frame.batch();
    let from = NodeId(batch.from.to_native());
    let to = NodeId(batch.to.to_native());
    let message = |term: u64, body: MessageBody| Message {
        from,
        to,
        term: Term(term),
        body,
    };
    for wire in batch.messages.iter() {
        let group = wire.group.to_native();
        match from_wire(frame, &wire.body) {
            Ok(body) => messages.push(InboundMessage {
                group: GroupId(group),
                message: message(wire.term.to_native(), body),
            }),
            Err(kind) => errors.push(WireError::Unsupported { group, kind }),
        }
    }
    for beat in batch.heartbeats.iter() {
        let body = MessageBody::Heartbeat(Heartbeat {
            commit: LogIndex(beat.commit.to_native()),
            read_round: beat.read_round.to_native(),
        });
        messages.push(InboundMessage {
            group: GroupId(beat.group.to_native()),
            message: message(beat.term.to_native(), body),
        });
    }
    for answer in batch.heartbeat_responses.iter() {
        let body = MessageBody::HeartbeatResponse(HeartbeatResponse {
            read_round: answer.read_round.to_native(),
        });
        messages.push(InboundMessage {
            group: GroupId(answer.group.to_native()),
            message: message(answer.term.to_native(), body),
        });
    }
}

/// The core's form of a wire body, or the name of a kind it does not speak.
fn from_wire(
    frame: &ReceivedFrame,
    body: &ArchivedMessageBody,
) -> Result<MessageBody, &'static str> {
    Ok(match body {
        ArchivedMessageBody::AppendEntries {
            prev_index,
            prev_term,
            commit,
            entries,
        } => MessageBody::AppendEntries(AppendEntries {
            prev_index: LogIndex(prev_index.to_native()),
            prev_term: Term(prev_term.to_native()),
            commit: LogIndex(commit.to_native()),
            entries: entries
                .iter()
                .map(|entry| entry_from_wire(frame, entry))
                .collect::<Result<_, _>>()?,
        }),
        ArchivedMessageBody::AppendAccepted { match_index } => {
            MessageBody::AppendResponse(AppendResponse::Accepted {
                match_index: LogIndex(match_index.to_native()),
            })
        }
        ArchivedMessageBody::AppendRejected {
            rejected_index,
            conflict_term,
            conflict_index,
        } => MessageBody::AppendResponse(AppendResponse::Rejected {
            rejected_index: LogIndex(rejected_index.to_native()),
            hint: ConflictHint {
                conflict_term: conflict_term.as_ref().map(|term| Term(term.to_native())),
                conflict_index: LogIndex(conflict_index.to_native()),
            },
        }),
        ArchivedMessageBody::RequestVote {
            pre_vote,
            last_index,
            last_term,
            transfer,
        } => MessageBody::RequestVote(VoteRequest {
            kind: vote_kind(*pre_vote),
            last_index: LogIndex(last_index.to_native()),
            last_term: Term(last_term.to_native()),
            transfer: *transfer,
        }),
        ArchivedMessageBody::VoteResponse { pre_vote, granted } => {
            MessageBody::VoteResponse(VoteResponse {
                kind: vote_kind(*pre_vote),
                granted: *granted,
            })
        }
        ArchivedMessageBody::Heartbeat { commit, read_round } => {
            MessageBody::Heartbeat(Heartbeat {
                commit: LogIndex(commit.to_native()),
                read_round: read_round.to_native(),
            })
        }
        ArchivedMessageBody::HeartbeatResponse { read_round } => {
            MessageBody::HeartbeatResponse(HeartbeatResponse {
                read_round: read_round.to_native(),
            })
        }
        ArchivedMessageBody::TimeoutNow => MessageBody::TimeoutNow,
        ArchivedMessageBody::Quiesce { commit, read_round } => MessageBody::Quiesce(Quiesce {
            commit: LogIndex(commit.to_native()),
            read_round: read_round.to_native(),
        }),
        ArchivedMessageBody::ReadIndex { .. } => return Err("ReadIndex"),
        ArchivedMessageBody::ReadIndexResponse { .. } => return Err("ReadIndexResponse"),
        ArchivedMessageBody::SnapshotChunk(chunk) => {
            MessageBody::InstallSnapshot(InstallSnapshot {
                meta: SnapshotMeta {
                    index: LogIndex(chunk.snapshot_index.to_native()),
                    term: Term(chunk.snapshot_term.to_native()),
                    configuration: Configuration::decode(chunk.configuration.as_slice())
                        .map_err(|_| "SnapshotChunk with a configuration that does not decode")?,
                },
                offset: chunk.offset.to_native(),
                total_bytes: chunk.total_bytes.to_native(),
                data: frame.slice_of(chunk.data.as_slice()),
            })
        }
        ArchivedMessageBody::SnapshotResponse {
            snapshot_index,
            next_offset,
            rejected,
        } => {
            if *rejected {
                return Err("SnapshotResponse marked rejected");
            }
            MessageBody::SnapshotResponse(SnapshotResponse {
                index: LogIndex(snapshot_index.to_native()),
                next_offset: next_offset.to_native(),
            })
        }
        ArchivedMessageBody::VerifyReport { index, hash } => {
            MessageBody::VerifyReport(VerifyReport {
                index: LogIndex(index.to_native()),
                hash: hash.to_native(),
            })
        }
    })
}

fn entry_from_wire(
    frame: &ReceivedFrame,
    entry: &ArchivedWireEntry,
) -> Result<Entry, &'static str> {
    let kind = match entry.kind {
        ArchivedWireEntryKind::Normal => EntryKind::Normal,
        ArchivedWireEntryKind::Noop => EntryKind::Noop,
        ArchivedWireEntryKind::Config => EntryKind::Configuration,
        ArchivedWireEntryKind::Verify => EntryKind::Verify,
    };
    let data = if entry.data.len() <= PAYLOAD_INLINE_BYTES_MAX {
        Payload::from(entry.data.as_slice())
    } else {
        Payload::from(frame.payload(entry))
    };
    Ok(Entry {
        index: LogIndex(entry.index.to_native()),
        term: Term(entry.term.to_native()),
        kind,
        data,
    })
}

fn vote_kind(pre_vote: bool) -> VoteKind {
    if pre_vote {
        VoteKind::PreVote
    } else {
        VoteKind::Vote
    }
}

#[cfg(test)]
mod tests;
