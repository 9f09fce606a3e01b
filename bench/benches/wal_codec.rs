//! Criterion benchmarks of the WAL's codec: encoding a batch and verifying + decoding a
//! record, for 16 B, 256 B and 4 KiB entries in 64 KiB batches.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flotilla_bench::BatchMaker;
use flotilla_wal::Lsn;
use flotilla_wal::WriteBatch;
use flotilla_wal::format::{RECORD_HEADER_BYTES, RecordHeader, decode_record};

const BATCH_BYTES: usize = 64 << 10;

fn record_of(batch: &WriteBatch, body: &[u8]) -> Vec<u8> {
    let mut record = vec![0u8; RECORD_HEADER_BYTES + batch.body_bytes()];
    record[RECORD_HEADER_BYTES..].copy_from_slice(body);
    let (header, body) = record.split_at_mut(RECORD_HEADER_BYTES);
    RecordHeader::encode_into(header, 1, Lsn(1), Lsn(0), body);
    record
}

fn codec(c: &mut Criterion) {
    for payload in [16usize, 256, 4096] {
        let mut group = c.benchmark_group(format!("wal_codec/{payload}B"));
        group.throughput(Throughput::Bytes(BATCH_BYTES as u64));
        let mut maker = BatchMaker::new(64, payload);
        let mut batch = WriteBatch::new();
        group.bench_function("encode_batch", |b| {
            b.iter(|| {
                maker.fill(&mut batch, BATCH_BYTES);
                batch.entry_count()
            })
        });
        maker.fill(&mut batch, BATCH_BYTES);
        let body = batch.body().to_vec();
        let record = record_of(&batch, &body);
        group.bench_function("verify_and_decode_record", |b| {
            b.iter(|| decode_record(&record).map(|r| r.map(|(_, ops)| ops.len())))
        });
        group.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
