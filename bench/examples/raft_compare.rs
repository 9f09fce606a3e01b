//! Flotilla's Raft core against raft-rs, interleaved: short slices of each, alternating, so
//! that a burst of noise on this shared machine hits both alike. Prints, per payload size,
//! the median ratio of committed entries per second over the slice pairs, with its range.
//!
//! ```text
//! cargo run --release -p flotilla-bench --example raft_compare -- [BATCH] [PAIRS]
//! ```
//!
//! Defaults: batch 64, 21 pairs. Clusters are rebuilt outside the timed part every
//! `LOG_BYTES_MAX` of log, as in `benches/raft_replication.rs`.

#[path = "../benches/support/raftrs_cluster.rs"]
mod raftrs_cluster;

use std::time::{Duration, Instant};

use anyhow::Context;
use flotilla_bench::flotilla_cluster::{FlotillaCluster, ProposalInput};
use raftrs_cluster::RaftRsCluster;

const LOG_BYTES_MAX: u64 = 4 << 20;
const INFLIGHT_MESSAGES_MAX: usize = 256;
const MESSAGE_BYTES_MAX: usize = 1 << 20;
/// Each slice runs about this long.
const SLICE: Duration = Duration::from_millis(150);

/// Runs rounds for one slice; returns committed entries per second.
fn slice(mut round: impl FnMut() -> anyhow::Result<(u64, Duration)>) -> anyhow::Result<f64> {
    let mut committed = 0;
    let mut timed = Duration::ZERO;
    while timed < SLICE {
        let (entries, elapsed) = round()?;
        committed += entries;
        timed += elapsed;
    }
    Ok(committed as f64 / timed.as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let batch: usize = args
        .first()
        .map_or(Ok(64), |a| a.parse())
        .context("batch")?;
    let pairs: usize = args.get(1).map_or(Ok(21), |a| a.parse()).context("pairs")?;
    for payload_bytes in [16usize, 1024] {
        let payload = vec![0xab; payload_bytes];
        let mut flotilla = FlotillaCluster::new(INFLIGHT_MESSAGES_MAX, MESSAGE_BYTES_MAX)?;
        let mut raftrs = RaftRsCluster::new(INFLIGHT_MESSAGES_MAX, MESSAGE_BYTES_MAX as u64)?;
        let mut ratios = Vec::with_capacity(pairs);
        let (mut flotilla_sum, mut raftrs_sum) = (0.0, 0.0);
        for _ in 0..pairs {
            let flotilla_rate = slice(|| {
                if flotilla.log_bytes() > LOG_BYTES_MAX {
                    flotilla = FlotillaCluster::new(INFLIGHT_MESSAGES_MAX, MESSAGE_BYTES_MAX)?;
                }
                let start = Instant::now();
                let committed =
                    flotilla.propose_and_commit(batch, &payload, ProposalInput::OwnedBytes)?;
                Ok((committed, start.elapsed()))
            })?;
            let raftrs_rate = slice(|| {
                if raftrs.log_bytes() > LOG_BYTES_MAX {
                    raftrs = RaftRsCluster::new(INFLIGHT_MESSAGES_MAX, MESSAGE_BYTES_MAX as u64)?;
                }
                let start = Instant::now();
                let committed = raftrs.propose_and_commit(batch, &payload)?;
                Ok((committed, start.elapsed()))
            })?;
            ratios.push(flotilla_rate / raftrs_rate);
            flotilla_sum += flotilla_rate;
            raftrs_sum += raftrs_rate;
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "{payload_bytes} B, batch {batch}: flotilla-owned {:.2} M/s, raft-rs {:.2} M/s (means); ratio median {:.2} (min {:.2}, max {:.2}) over {pairs} interleaved pairs",
            flotilla_sum / pairs as f64 / 1e6,
            raftrs_sum / pairs as f64 / 1e6,
            ratios[pairs / 2],
            ratios[0],
            ratios[pairs - 1],
        );
    }
    Ok(())
}
