//! Replays the corpus of the `frame_decode` fuzz target (fuzz/corpus/frame_decode) through
//! the same entry point the fuzzer drives, plus seeds built here from valid frames of every
//! kind and their truncations and bit flips. A crash the fuzzer finds is added to the
//! corpus and so becomes a regression test here.
//!
//! `NET_WRITE_FUZZ_SEEDS=1` writes the built seeds into the corpus directory.

mod common;

use std::fs;
use std::path::PathBuf;

use flotilla_net::frame::{FrameHeader, FrameKind};
use flotilla_net::fuzzing::decode_frame;
use flotilla_net::handshake::{Hello, RefuseReason};
use flotilla_net::{GroupHeartbeat, MessageBatch, MessageBody, NodeId, SnapshotChunk};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/frame_decode")
}

fn frame(kind: FrameKind, body: &[u8]) -> Vec<u8> {
    let mut bytes = FrameHeader::for_body(kind, 1, body).encode().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

/// Valid frames of every kind, each prefixed by the driver's mode byte (0: as is).
fn seeds() -> Vec<Vec<u8>> {
    let mut batches = vec![
        common::numbered_batch(1, 2, 0, 3, 40),
        MessageBatch::new(1, 2),
    ];
    let mut mixed = MessageBatch::new(1, 2);
    mixed.heartbeats.push(GroupHeartbeat {
        group: 1,
        term: 2,
        commit: 3,
        read_round: 4,
    });
    for body in [
        MessageBody::AppendRejected {
            rejected_index: 5,
            conflict_term: Some(1),
            conflict_index: 2,
        },
        MessageBody::RequestVote {
            pre_vote: true,
            last_index: 1,
            last_term: 1,
            transfer: false,
        },
        MessageBody::ReadIndexResponse {
            context: 1,
            read_index: Some(3),
        },
        MessageBody::SnapshotChunk(SnapshotChunk {
            snapshot_index: 9,
            snapshot_term: 2,
            configuration: bytes::Bytes::from_static(&[1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]),
            offset: 0,
            total_bytes: 5,
            data: bytes::Bytes::from_static(b"state"),
        }),
        MessageBody::TimeoutNow,
    ] {
        mixed.messages.push(flotilla_net::GroupMessage {
            group: 7,
            term: 2,
            body,
        });
    }
    batches.push(mixed);
    let mut frames: Vec<Vec<u8>> = batches
        .iter()
        .map(|batch| {
            let body = rkyv::to_bytes::<rkyv::rancor::Error>(batch).expect("encodes");
            frame(FrameKind::Data, &body)
        })
        .collect();
    frames.push(frame(
        FrameKind::Hello,
        &Hello::new(1, NodeId(2), 0).encode(),
    ));
    frames.push(frame(
        FrameKind::HelloAccept,
        &Hello::new(1, NodeId(2), 0).encode(),
    ));
    frames.push(frame(
        FrameKind::HelloRefuse,
        &RefuseReason::UnknownNode.encode(),
    ));
    frames.push(frame(FrameKind::Ack, b""));
    frames
        .into_iter()
        .map(|frame| {
            let mut input = vec![0u8];
            input.extend_from_slice(&frame);
            input
        })
        .collect()
}

#[test]
fn corpus_and_seeds_decode_without_panics() {
    let seeds = seeds();
    if std::env::var("NET_WRITE_FUZZ_SEEDS").is_ok() {
        fs::create_dir_all(corpus_dir()).expect("corpus directory");
        for (k, seed) in seeds.iter().enumerate() {
            fs::write(corpus_dir().join(format!("seed-frame-{k}")), seed).expect("written");
        }
    }
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for seed in &seeds {
        assert!(decode_frame(seed) > 0, "a valid seed decodes");
        for cut in 0..seed.len() {
            inputs.push(seed[..cut].to_vec());
        }
        for bit in 8..seed.len() * 8 {
            let mut flipped = seed.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            // Mode 1: the driver fixes the crcs, so flips reach archive validation.
            flipped[0] = 1;
            inputs.push(flipped);
        }
    }
    let mut files = 0;
    for entry in fs::read_dir(corpus_dir()).expect("the fuzz corpus exists") {
        inputs.push(fs::read(entry.expect("an entry").path()).expect("readable"));
        files += 1;
    }
    assert!(
        files >= 7,
        "the fuzz corpus at {} is missing",
        corpus_dir().display()
    );
    for input in &inputs {
        decode_frame(input);
    }
}
