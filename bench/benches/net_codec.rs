//! Criterion benchmarks of the transport's codec: encoding a batch into a frame, and
//! checking + validating a received frame then reading every entry in place, for batches of
//! 1, 64 and 1024 AppendEntries (one entry each) of 16 B and 1 KiB.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flotilla_bench::append_batch;
use flotilla_net::codec::encode_batch;
use flotilla_net::frame::{FRAME_HEADER_BYTES, FrameHeader};
use flotilla_net::{ArchivedMessageBody, ReceivedFrame};
use rkyv::util::AlignedVec;

const BODY_BYTES_MAX: u32 = 64 << 20;

fn codec(c: &mut Criterion) {
    for payload in [16usize, 1024] {
        for messages in [1usize, 64, 1024] {
            let mut group = c.benchmark_group(format!("net_codec/{payload}B/x{messages}"));
            group.throughput(Throughput::Elements(messages as u64));
            let batch = append_batch(messages, payload);
            let mut buffer = Some(AlignedVec::new());
            group.bench_function("encode", |b| {
                b.iter(|| {
                    let frame =
                        encode_batch(&batch, buffer.take().unwrap_or_default(), BODY_BYTES_MAX)
                            .expect("fits");
                    let len = frame.body_len();
                    buffer = Some(frame.into_buffer());
                    len
                })
            });
            let mut frame = encode_batch(&batch, AlignedVec::new(), BODY_BYTES_MAX).expect("fits");
            frame.stamp(1);
            let header_bytes: [u8; FRAME_HEADER_BYTES] = frame.as_bytes()[..FRAME_HEADER_BYTES]
                .try_into()
                .expect("a header");
            let mut aligned = AlignedVec::<16>::new();
            aligned.extend_from_slice(frame.body());
            let body = Bytes::from_owner(aligned);
            group.bench_function("validate_and_access", |b| {
                b.iter(|| {
                    let header = FrameHeader::decode(&header_bytes, BODY_BYTES_MAX).expect("valid");
                    let received = ReceivedFrame::validate(&header, body.clone()).expect("valid");
                    let mut bytes = 0;
                    for message in received.batch().messages.iter() {
                        if let ArchivedMessageBody::AppendEntries { entries, .. } = &message.body {
                            for entry in entries.iter() {
                                bytes += received.payload(entry).len();
                            }
                        }
                    }
                    bytes
                })
            });
            group.finish();
        }
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
