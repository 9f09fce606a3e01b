//! Every core message through the transport and back, coalescing, zero-copy payloads, and
//! what the core cannot take yet.

use flotilla_net::{
    MemoryNetwork, NodeId as NetNodeId, SnapshotChunk, Transport, TransportConfig, TransportEvent,
};

use super::*;

fn entry(index: u64, kind: EntryKind, len: usize) -> Entry {
    let data: Vec<u8> = (0..len).map(|byte| (byte % 251) as u8).collect();
    Entry {
        index: LogIndex(index),
        term: Term(2),
        kind,
        data: Payload::from(data),
    }
}

fn message(to: u64, body: MessageBody) -> Message {
    Message {
        from: NodeId(1),
        to: NodeId(to),
        term: Term(2),
        body,
    }
}

/// One of each body the core sends, heartbeats last (decoding returns the coalesced
/// heartbeats after the other messages, in push order).
fn every_kind(to: u64) -> Vec<Message> {
    vec![
        message(
            to,
            MessageBody::AppendEntries(AppendEntries {
                prev_index: LogIndex(4),
                prev_term: Term(1),
                entries: vec![
                    entry(5, EntryKind::Noop, 0),
                    entry(6, EntryKind::Normal, 10),
                    entry(7, EntryKind::Normal, 300),
                    entry(8, EntryKind::Verify, 0),
                    entry(9, EntryKind::Configuration, 28),
                ],
                commit: LogIndex(4),
            }),
        ),
        message(
            to,
            MessageBody::AppendResponse(AppendResponse::Accepted {
                match_index: LogIndex(7),
            }),
        ),
        message(
            to,
            MessageBody::AppendResponse(AppendResponse::Rejected {
                rejected_index: LogIndex(9),
                hint: ConflictHint {
                    conflict_term: Some(Term(1)),
                    conflict_index: LogIndex(3),
                },
            }),
        ),
        message(
            to,
            MessageBody::AppendResponse(AppendResponse::Rejected {
                rejected_index: LogIndex(9),
                hint: ConflictHint {
                    conflict_term: None,
                    conflict_index: LogIndex(8),
                },
            }),
        ),
        message(
            to,
            MessageBody::RequestVote(VoteRequest {
                kind: VoteKind::PreVote,
                last_index: LogIndex(7),
                last_term: Term(2),
                transfer: false,
            }),
        ),
        message(
            to,
            MessageBody::RequestVote(VoteRequest {
                kind: VoteKind::Vote,
                last_index: LogIndex(7),
                last_term: Term(2),
                transfer: true,
            }),
        ),
        message(
            to,
            MessageBody::VoteResponse(VoteResponse {
                kind: VoteKind::PreVote,
                granted: true,
            }),
        ),
        message(
            to,
            MessageBody::VoteResponse(VoteResponse {
                kind: VoteKind::Vote,
                granted: false,
            }),
        ),
        message(to, MessageBody::TimeoutNow),
        message(
            to,
            MessageBody::InstallSnapshot(crate::raft::InstallSnapshot {
                meta: crate::raft::SnapshotMeta {
                    index: LogIndex(40),
                    term: Term(2),
                    configuration: crate::raft::Configuration::with_sets(
                        &[NodeId(1), NodeId(2), NodeId(4)],
                        &[NodeId(1), NodeId(2), NodeId(3)],
                        &[NodeId(7)],
                    )
                    .expect("valid"),
                },
                offset: 4096,
                total_bytes: 9000,
                data: bytes::Bytes::from(vec![5u8; 100]),
            }),
        ),
        message(
            to,
            MessageBody::SnapshotResponse(crate::raft::SnapshotResponse {
                index: LogIndex(40),
                next_offset: 4196,
            }),
        ),
        message(
            to,
            MessageBody::VerifyReport(crate::raft::VerifyReport {
                index: LogIndex(41),
                hash: u64::MAX - 3,
            }),
        ),
        message(
            to,
            MessageBody::Heartbeat(Heartbeat {
                commit: LogIndex(7),
                read_round: 3,
            }),
        ),
        message(
            to,
            MessageBody::HeartbeatResponse(HeartbeatResponse { read_round: 3 }),
        ),
    ]
}

/// Sends what `outbound` holds from node 1 over a memory network and decodes it on each
/// receiver: (receiver, frame, messages, errors) per frame.
fn deliver(
    outbound: &mut OutboundBatches,
) -> Vec<(u64, ReceivedFrame, Vec<InboundMessage>, Vec<WireError>)> {
    let network = MemoryNetwork::new();
    let mut sender = network.endpoint(TransportConfig::new(1, NetNodeId(1)));
    let mut receivers: Vec<_> = (2..=3)
        .map(|node| {
            (
                node,
                network.endpoint(TransportConfig::new(1, NetNodeId(node))),
            )
        })
        .collect();
    for (to, batch) in outbound.drain() {
        sender.try_send(NetNodeId(to.0), &batch).expect("queued");
    }
    let mut delivered = Vec::new();
    for (node, receiver) in &mut receivers {
        let mut events = Vec::new();
        receiver.poll_events(&mut events);
        for event in events {
            if let TransportEvent::Received { frame, .. } = event {
                let (mut messages, mut errors) = (Vec::new(), Vec::new());
                decode_batch(&frame, &mut messages, &mut errors);
                delivered.push((*node, frame, messages, errors));
            }
        }
    }
    delivered
}

#[test]
fn every_core_message_round_trips_with_its_group() {
    let mut outbound = OutboundBatches::new(NodeId(1));
    let mut expected = Vec::new();
    for (offset, message) in every_kind(2).into_iter().enumerate() {
        let group = GroupId(10 + offset as u64);
        outbound.push(group, &message);
        expected.push(InboundMessage { group, message });
    }
    let third = message(3, MessageBody::TimeoutNow);
    outbound.push(GroupId(99), &third);
    let delivered = deliver(&mut outbound);
    assert_eq!(delivered.len(), 2, "one frame per destination node");
    let (node, _, messages, errors) = &delivered[0];
    assert_eq!(*node, 2);
    assert!(errors.is_empty());
    assert_eq!(messages, &expected);
    let (node, _, messages, _) = &delivered[1];
    assert_eq!(
        (*node, messages.clone()),
        (
            3,
            vec![InboundMessage {
                group: GroupId(99),
                message: third
            }]
        )
    );
    assert!(outbound.is_empty());
}

#[test]
fn heartbeats_of_many_groups_travel_as_one_coalesced_message() {
    let mut outbound = OutboundBatches::new(NodeId(1));
    for group in 0..1000 {
        let heartbeat = MessageBody::Heartbeat(Heartbeat {
            commit: LogIndex(group),
            read_round: 1,
        });
        outbound.push(GroupId(group), &message(2, heartbeat));
    }
    let (to, batch) = outbound.drain().next().expect("one batch");
    assert_eq!(to, NodeId(2));
    assert!(batch.messages.is_empty(), "no per-group message");
    assert_eq!(batch.heartbeats.len(), 1000);
    assert_eq!(
        batch.heartbeats[999],
        GroupHeartbeat {
            group: 999,
            term: 2,
            commit: 999,
            read_round: 1
        }
    );
}

#[test]
fn large_payloads_stay_in_the_receive_buffer_and_small_ones_are_inline() {
    let mut outbound = OutboundBatches::new(NodeId(1));
    outbound.push(GroupId(1), &every_kind(2)[0]);
    let delivered = deliver(&mut outbound);
    let (_, frame, messages, _) = &delivered[0];
    let MessageBody::AppendEntries(append) = &messages[0].message.body else {
        panic!("an append")
    };
    let body = frame.body().as_ptr_range();
    let large = append.entries[2].data.as_ptr_range();
    assert_eq!(append.entries[2].data.len(), 300);
    assert!(
        body.start <= large.start && large.end <= body.end,
        "a large payload was copied"
    );
    let small = append.entries[1].data.as_ptr_range();
    assert!(
        small.end <= body.start || small.start >= body.end,
        "a small payload is inline"
    );
}

#[test]
fn kinds_the_core_does_not_speak_are_reported_and_dropped() {
    let mut batch = MessageBatch::new(1, 2);
    batch.messages.push(GroupMessage {
        group: 5,
        term: 1,
        body: WireBody::ReadIndex { context: 1 },
    });
    batch.messages.push(GroupMessage {
        group: 6,
        term: 1,
        body: WireBody::SnapshotChunk(SnapshotChunk {
            snapshot_index: 1,
            snapshot_term: 1,
            configuration: bytes::Bytes::from_static(b"not a configuration"),
            offset: 0,
            total_bytes: 1,
            data: bytes::Bytes::from_static(b"x"),
        }),
    });
    batch.messages.push(GroupMessage {
        group: 7,
        term: 1,
        body: WireBody::SnapshotResponse {
            snapshot_index: 3,
            next_offset: 0,
            rejected: true,
        },
    });
    batch.messages.push(GroupMessage {
        group: 8,
        term: 1,
        body: WireBody::TimeoutNow,
    });
    let network = MemoryNetwork::new();
    let mut sender = network.endpoint(TransportConfig::new(1, NetNodeId(1)));
    let mut receiver = network.endpoint(TransportConfig::new(1, NetNodeId(2)));
    sender.try_send(NetNodeId(2), &batch).expect("queued");
    let mut events = Vec::new();
    receiver.poll_events(&mut events);
    let frame = events
        .into_iter()
        .find_map(|event| match event {
            TransportEvent::Received { frame, .. } => Some(frame),
            _ => None,
        })
        .expect("a frame");
    let (mut messages, mut errors) = (Vec::new(), Vec::new());
    decode_batch(&frame, &mut messages, &mut errors);
    assert_eq!(
        errors,
        vec![
            WireError::Unsupported {
                group: 5,
                kind: "ReadIndex"
            },
            WireError::Unsupported {
                group: 6,
                kind: "SnapshotChunk with a configuration that does not decode"
            },
            WireError::Unsupported {
                group: 7,
                kind: "SnapshotResponse marked rejected"
            },
        ]
    );
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].group, GroupId(8));
    assert_eq!(messages[0].message.body, MessageBody::TimeoutNow);
}
