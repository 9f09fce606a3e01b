//! The fuzz driver for everything that reads untrusted frame bytes: header checks, body
//! crc, handshake bodies and archive validation, then a walk over every archived field.
//!
//! Shared by the cargo-fuzz target `frame_decode` and the corpus replay test, so both run
//! exactly the same code. It must never panic, whatever the input.
#![forbid(unsafe_code)]

use bytes::Bytes;
use rkyv::util::AlignedVec;

use crate::codec::ArchivedMessageBody;
use crate::frame::{FRAME_HEADER_BYTES, FrameHeader, FrameKind};
use crate::handshake::{Hello, RefuseReason};
use crate::transport::ReceivedFrame;

/// Largest body the driver accepts (as a configured maximum would).
const FUZZ_BODY_BYTES_MAX: u32 = 1 << 20;

/// Decodes `input` as a frame. If the first byte is odd, the header's crcs are fixed up
/// first so that the fuzzer reaches archive validation instead of stopping at checksums.
pub fn decode_frame(input: &[u8]) -> usize {
    let Some((&mode, rest)) = input.split_first() else {
        return 0;
    };
    if rest.len() < FRAME_HEADER_BYTES {
        return 0;
    }
    let mut header_bytes: [u8; FRAME_HEADER_BYTES] = rest[..FRAME_HEADER_BYTES]
        .try_into()
        .expect("length checked");
    let body = &rest[FRAME_HEADER_BYTES..];
    if mode & 1 == 1 {
        let body_len = u32::try_from(body.len()).unwrap_or(u32::MAX);
        header_bytes[8..12].copy_from_slice(&body_len.to_le_bytes());
        header_bytes[12..16].copy_from_slice(&crc32fast::hash(body).to_le_bytes());
        let header_crc = crc32fast::hash(&header_bytes[0..28]);
        header_bytes[28..32].copy_from_slice(&header_crc.to_le_bytes());
    }
    let Ok(header) = FrameHeader::decode(&header_bytes, FUZZ_BODY_BYTES_MAX) else {
        return 0;
    };
    if body.len() < header.body_len() {
        return 0;
    }
    let body = &body[..header.body_len()];
    match header.kind {
        FrameKind::Data => {
            // Receive buffers are aligned: copy into one, as the socket would have.
            let mut aligned = AlignedVec::<16>::with_capacity(body.len());
            aligned.extend_from_slice(body);
            match ReceivedFrame::validate(&header, Bytes::from_owner(aligned)) {
                Ok(frame) => walk(&frame),
                Err(_) => 0,
            }
        }
        FrameKind::Hello | FrameKind::HelloAccept => {
            usize::from(Hello::decode(header.kind, body).is_ok())
        }
        FrameKind::HelloRefuse => usize::from(RefuseReason::decode(body).is_ok()),
        FrameKind::Ack => 1,
    }
}

/// Reads every field of a validated batch, as the engine would: returns a count (at least 1)
/// so that the work is not optimised away.
fn walk(frame: &ReceivedFrame) -> usize {
    let batch = frame.batch();
    let mut seen = 1 + batch.heartbeats.len() + batch.heartbeat_responses.len();
    for message in batch.messages.iter() {
        seen += usize::from(message.group.to_native() == message.term.to_native());
        match &message.body {
            ArchivedMessageBody::AppendEntries { entries, .. } => {
                for entry in entries.iter() {
                    seen += frame.payload(entry).len();
                }
            }
            ArchivedMessageBody::SnapshotChunk(chunk) => {
                seen += frame.slice_of(chunk.data.as_slice()).len()
                    + frame.slice_of(chunk.configuration.as_slice()).len();
            }
            _ => seen += 1,
        }
    }
    seen
}
