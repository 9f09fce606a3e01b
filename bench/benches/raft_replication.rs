//! Committed entries per second of one group of 3 in-memory replicas (messages handed over
//! directly, no I/O), for Flotilla's Raft core and for raft-rs (`RawNode`) as the reference,
//! in the same run. Payloads of 16 B and 1 KiB, batches of 1, 64 and 1024 proposals.
//! `flotilla` proposes slices (its API's natural use); `flotilla-owned` allocates a `Bytes` per
//! proposal first, exactly as the raft-rs harness must, so the two can be compared like for
//! like. Figures and the command are in docs/BENCHMARKS.md.

#[path = "support/raftrs_cluster.rs"]
mod raftrs_cluster;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flotilla_bench::flotilla_cluster::{FlotillaCluster, ProposalInput};
use raftrs_cluster::RaftRsCluster;

/// Clusters are rebuilt (outside the timed part) once their logs hold this much, so memory
/// stays bounded and page faults of an ever-growing log do not dominate: neither compacts its
/// log in this setup.
const LOG_BYTES_MAX: u64 = 4 << 20;
const INFLIGHT_MESSAGES_MAX: usize = 256;
const MESSAGE_BYTES_MAX: usize = 1 << 20;

/// What the bench needs of a cluster: one round (propose a batch, drive until applied).
trait Cluster {
    fn round(&mut self, batch: usize, payload: &[u8]) -> u64;
    fn log_bytes(&self) -> u64;
}

struct Flotilla(FlotillaCluster, ProposalInput);
struct RaftRs(RaftRsCluster);

impl Flotilla {
    fn build(input: ProposalInput) -> Flotilla {
        Flotilla(
            FlotillaCluster::new(INFLIGHT_MESSAGES_MAX, MESSAGE_BYTES_MAX).expect("cluster"),
            input,
        )
    }
}

impl Cluster for Flotilla {
    fn round(&mut self, batch: usize, payload: &[u8]) -> u64 {
        self.0
            .propose_and_commit(batch, payload, self.1)
            .expect("commits")
    }
    fn log_bytes(&self) -> u64 {
        self.0.log_bytes()
    }
}

impl RaftRs {
    fn build() -> RaftRs {
        RaftRs(
            RaftRsCluster::new(INFLIGHT_MESSAGES_MAX, MESSAGE_BYTES_MAX as u64).expect("cluster"),
        )
    }
}

impl Cluster for RaftRs {
    fn round(&mut self, batch: usize, payload: &[u8]) -> u64 {
        self.0.propose_and_commit(batch, payload).expect("commits")
    }
    fn log_bytes(&self) -> u64 {
        self.0.log_bytes()
    }
}

/// Times `iterations` rounds, rebuilding the cluster with `build` outside the timed part.
fn measure<C: Cluster>(
    iterations: u64,
    batch: usize,
    payload: &[u8],
    build: impl Fn() -> C,
) -> Duration {
    let mut cluster = build();
    let mut elapsed = Duration::ZERO;
    for _ in 0..iterations {
        if cluster.log_bytes() > LOG_BYTES_MAX {
            cluster = build();
        }
        let start = Instant::now();
        let committed = cluster.round(batch, payload);
        elapsed += start.elapsed();
        assert_eq!(black_box(committed), batch as u64);
    }
    elapsed
}

fn replication(c: &mut Criterion) {
    let mut group = c.benchmark_group("raft_replication");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    for payload_bytes in [16usize, 1024] {
        let payload = vec![0xab; payload_bytes];
        for batch in [1usize, 64, 1024] {
            group.throughput(Throughput::Elements(batch as u64));
            let parameter = format!("{payload_bytes}B/batch{batch}");
            for (name, input) in [
                ("flotilla", ProposalInput::Slice),
                ("flotilla-owned", ProposalInput::OwnedBytes),
            ] {
                group.bench_with_input(BenchmarkId::new(name, &parameter), &batch, |b, &batch| {
                    b.iter_custom(|iterations| {
                        measure(iterations, batch, &payload, || Flotilla::build(input))
                    });
                });
            }
            group.bench_with_input(
                BenchmarkId::new("raft-rs", &parameter),
                &batch,
                |b, &batch| {
                    b.iter_custom(|iterations| measure(iterations, batch, &payload, RaftRs::build));
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, replication);
criterion_main!(benches);
