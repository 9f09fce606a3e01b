//! Round trips of every message kind through encode → frame → decode, and the zero-copy
//! claim.

use bytes::Bytes;
use rkyv::util::AlignedVec;

use super::*;
use crate::error::FrameError;
use crate::frame::FrameHeader;
use crate::transport::ReceivedFrame;

fn entry(index: u64, len: usize) -> WireEntry {
    let data: Vec<u8> = (0..len as u64)
        .map(|byte| (byte * 31 + index).to_le_bytes()[0])
        .collect();
    WireEntry {
        index,
        term: 3,
        kind: WireEntryKind::Normal,
        data: Bytes::from(data),
    }
}

/// A batch holding every message kind (and every entry kind).
pub(crate) fn every_kind_batch() -> MessageBatch {
    let bodies = vec![
        MessageBody::AppendEntries {
            prev_index: 10,
            prev_term: 2,
            commit: 9,
            entries: vec![
                entry(11, 16),
                WireEntry {
                    index: 12,
                    term: 3,
                    kind: WireEntryKind::Noop,
                    data: Bytes::new(),
                },
                WireEntry {
                    index: 13,
                    term: 3,
                    kind: WireEntryKind::Config,
                    data: Bytes::from_static(b"voters 1 2 3"),
                },
                entry(14, 1024),
            ],
        },
        MessageBody::AppendAccepted { match_index: 14 },
        MessageBody::AppendRejected {
            rejected_index: 10,
            conflict_term: Some(2),
            conflict_index: 7,
        },
        MessageBody::AppendRejected {
            rejected_index: 10,
            conflict_term: None,
            conflict_index: 3,
        },
        MessageBody::RequestVote {
            pre_vote: true,
            last_index: 14,
            last_term: 3,
            transfer: false,
        },
        MessageBody::RequestVote {
            pre_vote: false,
            last_index: 14,
            last_term: 3,
            transfer: true,
        },
        MessageBody::VoteResponse {
            pre_vote: true,
            granted: false,
        },
        MessageBody::Heartbeat {
            commit: 14,
            read_round: 5,
        },
        MessageBody::HeartbeatResponse { read_round: 5 },
        MessageBody::TimeoutNow,
        MessageBody::ReadIndex { context: 77 },
        MessageBody::ReadIndexResponse {
            context: 77,
            read_index: Some(14),
        },
        MessageBody::ReadIndexResponse {
            context: 78,
            read_index: None,
        },
        MessageBody::SnapshotChunk(SnapshotChunk {
            snapshot_index: 100,
            snapshot_term: 4,
            configuration: Bytes::from_static(&[1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]),
            offset: 4096,
            total_bytes: 10_000,
            data: Bytes::from(vec![0xAB; 4096]),
        }),
        MessageBody::SnapshotResponse {
            snapshot_index: 100,
            next_offset: 8192,
            rejected: false,
        },
    ];
    let mut batch = MessageBatch::new(1, 2);
    for (group, body) in bodies.into_iter().enumerate() {
        batch.messages.push(GroupMessage {
            group: group as u64,
            term: 3,
            body,
        });
    }
    batch.heartbeats = (0..100)
        .map(|group| GroupHeartbeat {
            group,
            term: 3,
            commit: group * 2,
            read_round: 1,
        })
        .collect();
    batch.heartbeat_responses = (0..50)
        .map(|group| GroupHeartbeatResponse {
            group,
            term: 3,
            read_round: 1,
        })
        .collect();
    batch
}

/// Encodes, stamps, then decodes as a receiver would (header from bytes, body in an
/// aligned buffer of its own).
fn through_the_wire(batch: &MessageBatch) -> Result<ReceivedFrame, FrameError> {
    let mut frame = encode_batch(batch, AlignedVec::new(), 1 << 20).expect("fits");
    frame.stamp(1);
    let bytes = frame.as_bytes();
    let header_bytes: &[u8; FRAME_HEADER_BYTES] =
        bytes[..FRAME_HEADER_BYTES].try_into().expect("header");
    let header = FrameHeader::decode(header_bytes, 1 << 20)?;
    let mut body = AlignedVec::<16>::new();
    body.extend_from_slice(&bytes[FRAME_HEADER_BYTES..]);
    ReceivedFrame::validate(&header, Bytes::from_owner(body))
}

#[test]
fn every_message_kind_round_trips() {
    let batch = every_kind_batch();
    let received = through_the_wire(&batch).expect("valid");
    assert_eq!(received.seq(), 1);
    assert_eq!(received.to_owned_batch(), batch);
    // Read in place too, field by field for one of each shape.
    let archived = received.batch();
    assert_eq!((archived.from.to_native(), archived.to.to_native()), (1, 2));
    assert_eq!(archived.messages.len(), batch.messages.len());
    assert_eq!(archived.heartbeats[99].commit.to_native(), 198);
    match &archived.messages[2].body {
        ArchivedMessageBody::AppendRejected {
            conflict_term,
            conflict_index,
            ..
        } => {
            assert_eq!(conflict_term.as_ref().map(|term| term.to_native()), Some(2));
            assert_eq!(conflict_index.to_native(), 7);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn an_empty_batch_round_trips() {
    let batch = MessageBatch::new(5, 6);
    assert!(batch.is_empty());
    assert_eq!(
        through_the_wire(&batch).expect("valid").to_owned_batch(),
        batch
    );
}

#[test]
fn entry_payloads_point_into_the_receive_buffer() {
    let batch = every_kind_batch();
    let received = through_the_wire(&batch).expect("valid");
    let body = received.body().as_ptr_range();
    let ArchivedMessageBody::AppendEntries { entries, .. } = &received.batch().messages[0].body
    else {
        panic!("first message is an append")
    };
    let mut checked = 0;
    for (archived, original) in entries.iter().zip([16usize, 0, 12, 1024]) {
        let payload = received.payload(archived);
        assert_eq!(payload.len(), original);
        if !payload.is_empty() {
            let range = payload.as_ptr_range();
            assert!(
                body.start <= range.start && range.end <= body.end,
                "payload was copied"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 3);
    // The payload keeps the buffer alive after the frame is gone.
    let ArchivedMessageBody::AppendEntries { entries, .. } = &received.batch().messages[0].body
    else {
        unreachable!()
    };
    let last = received.payload(&entries[3]);
    drop(received);
    assert_eq!(last, batch_payload(&batch, 3));
}

fn batch_payload(batch: &MessageBatch, at: usize) -> Bytes {
    let MessageBody::AppendEntries { entries, .. } = &batch.messages[0].body else {
        unreachable!()
    };
    entries[at].data.clone()
}

#[test]
fn a_body_that_is_not_an_archive_is_refused() {
    let batch = every_kind_batch();
    let frame = encode_batch(&batch, AlignedVec::new(), 1 << 20).expect("fits");
    let body = frame.body();
    // Damage a few places, keep the crc right: only archive validation can notice.
    let mut refused = 0;
    for at in [body.len() - 4, body.len() - 8, body.len() / 2, 0] {
        let mut damaged = AlignedVec::<16>::new();
        damaged.extend_from_slice(body);
        damaged[at] ^= 0xFF;
        let header = FrameHeader::for_body(FrameKind::Data, 1, &damaged);
        match ReceivedFrame::validate(&header, Bytes::from_owner(damaged)) {
            Err(FrameError::InvalidArchive(_)) => refused += 1,
            Err(other) => panic!("unexpected {other}"),
            Ok(_) => {} // the byte was payload: still a valid archive
        }
    }
    assert!(refused >= 2, "only {refused} damaged archives refused");
    // Truncated archive.
    let mut short = AlignedVec::<16>::new();
    short.extend_from_slice(&body[..body.len() / 3]);
    let header = FrameHeader::for_body(FrameKind::Data, 1, &short);
    assert!(matches!(
        ReceivedFrame::validate(&header, Bytes::from_owner(short)),
        Err(FrameError::InvalidArchive(_))
    ));
}

#[test]
fn an_oversize_batch_is_refused_by_the_sender() {
    let mut batch = MessageBatch::new(1, 2);
    batch.messages.push(GroupMessage {
        group: 1,
        term: 1,
        body: MessageBody::AppendEntries {
            prev_index: 0,
            prev_term: 0,
            commit: 0,
            entries: vec![entry(1, 5000)],
        },
    });
    assert!(matches!(encode_batch(&batch, AlignedVec::new(), 4096), Err(len) if len > 5000));
}

/// The worked example of docs/FORMATS.md ("Transport worked example"), byte for byte.
#[test]
fn the_worked_example_in_formats_md_is_exact() {
    let mut batch = MessageBatch::new(1, 2);
    batch.heartbeats.push(GroupHeartbeat {
        group: 7,
        term: 3,
        commit: 10,
        read_round: 0,
    });
    let mut frame = encode_batch(&batch, AlignedVec::new(), 1024).expect("fits");
    frame.stamp(1);
    let expected: [u64; 13] = [
        0x0001_0002_4e54_4c46, // "FLTN", version 2, kind 1, flags 0
        0x0386_dda8_0000_0048, // body_len 72, body_crc
        0x0000_0000_0000_0001, // seq 1
        0x6e1d_d38d_0000_0000, // reserved, header_crc
        7,                     // heartbeats[0]: group
        3,                     // term
        10,                    // commit
        0,                     // read_round
        1,                     // root: from
        2,                     // to
        0x0000_0000_ffff_ffd0, // messages: offset -48, len 0
        0x0000_0001_ffff_ffc8, // heartbeats: offset -56, len 1
        0x0000_0000_ffff_ffe0, // heartbeat_responses: offset -32, len 0
    ];
    let bytes: Vec<u8> = expected
        .iter()
        .flat_map(|word| word.to_le_bytes())
        .collect();
    assert_eq!(frame.as_bytes(), &bytes[..]);
}

#[test]
fn a_batch_beyond_what_rkyv_can_express_is_refused_before_encoding() {
    // 3 GiB of entries that share one 1 MiB payload: refused from the size bound, without
    // serializing (which would overflow rkyv's 32-bit offsets).
    let payload = Bytes::from(vec![1u8; 1 << 20]);
    let entries: Vec<WireEntry> = (0..3072)
        .map(|index| WireEntry {
            index,
            term: 1,
            kind: WireEntryKind::Normal,
            data: payload.clone(),
        })
        .collect();
    let mut batch = MessageBatch::new(1, 2);
    batch.messages.push(GroupMessage {
        group: 1,
        term: 1,
        body: MessageBody::AppendEntries {
            prev_index: 0,
            prev_term: 0,
            commit: 0,
            entries,
        },
    });
    assert!(matches!(
        encode_batch(&batch, AlignedVec::new(), u32::MAX),
        Err(len) if len > 3 << 30
    ));
}
