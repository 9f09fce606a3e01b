//! Committed entries per second of one group of 3 in-memory replicas (messages handed over
//! directly, no I/O), for Flotilla's Raft core and for raft-rs (`RawNode`) as the reference,
//! in the same run. Payloads of 16 B and 1 KiB, batches of 1, 64 and 1024 proposals.
//! Figures and the command are in docs/BENCHMARKS.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flotilla_bench::flotilla_cluster::FlotillaCluster;
use flotilla_bench::raftrs_cluster::RaftRsCluster;

/// Both clusters are rebuilt (outside the timed part) once their logs hold this much, so
/// memory stays bounded: neither compacts its log in this setup.
const LOG_BYTES_MAX: u64 = 256 << 20;
const INFLIGHT_MESSAGES_MAX: usize = 256;
const MESSAGE_BYTES_MAX: usize = 1 << 20;

fn replication(c: &mut Criterion) {
    let mut group = c.benchmark_group("raft_replication");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    for payload_bytes in [16usize, 1024] {
        let payload = vec![0xab; payload_bytes];
        for batch in [1usize, 64, 1024] {
            group.throughput(Throughput::Elements(batch as u64));
            let parameter = format!("{payload_bytes}B/batch{batch}");
            group.bench_with_input(
                BenchmarkId::new("flotilla", &parameter),
                &batch,
                |b, &batch| {
                    b.iter_custom(|iterations| {
                        let mut cluster =
                            FlotillaCluster::new(INFLIGHT_MESSAGES_MAX, MESSAGE_BYTES_MAX)
                                .expect("cluster");
                        let mut elapsed = Duration::ZERO;
                        for _ in 0..iterations {
                            if cluster.log_bytes() > LOG_BYTES_MAX {
                                cluster =
                                    FlotillaCluster::new(INFLIGHT_MESSAGES_MAX, MESSAGE_BYTES_MAX)
                                        .expect("cluster");
                            }
                            let start = Instant::now();
                            let committed = cluster
                                .propose_and_commit(batch, &payload)
                                .expect("commits");
                            elapsed += start.elapsed();
                            assert_eq!(black_box(committed), batch as u64);
                        }
                        elapsed
                    });
                },
            );
            group.bench_with_input(
                BenchmarkId::new("raft-rs", &parameter),
                &batch,
                |b, &batch| {
                    b.iter_custom(|iterations| {
                        let mut cluster =
                            RaftRsCluster::new(INFLIGHT_MESSAGES_MAX, MESSAGE_BYTES_MAX as u64)
                                .expect("cluster");
                        let mut elapsed = Duration::ZERO;
                        for _ in 0..iterations {
                            if cluster.log_bytes() > LOG_BYTES_MAX {
                                cluster = RaftRsCluster::new(
                                    INFLIGHT_MESSAGES_MAX,
                                    MESSAGE_BYTES_MAX as u64,
                                )
                                .expect("cluster");
                            }
                            let start = Instant::now();
                            let committed = cluster
                                .propose_and_commit(batch, &payload)
                                .expect("commits");
                            elapsed += start.elapsed();
                            assert_eq!(black_box(committed), batch as u64);
                        }
                        elapsed
                    });
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, replication);
criterion_main!(benches);
