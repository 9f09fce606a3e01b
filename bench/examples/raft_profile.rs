//! Runs a fixed number of replication rounds on one of the two in-memory clusters, for
//! instruction counting under callgrind (repeatable on a noisy machine):
//!
//! ```text
//! cargo build --release -p flotilla-bench --example raft_profile
//! valgrind --tool=callgrind target/release/examples/raft_profile flotilla 16 64 2000
//! valgrind --tool=callgrind target/release/examples/raft_profile raft-rs 16 64 2000
//! ```
//!
//! Arguments: `flotilla|flotilla-owned|raft-rs`, payload bytes, batch, rounds.

#[path = "../benches/support/raftrs_cluster.rs"]
mod raftrs_cluster;

use anyhow::{Context, bail};
use flotilla_bench::flotilla_cluster::{FlotillaCluster, ProposalInput};
use raftrs_cluster::RaftRsCluster;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [system, payload_bytes, batch, rounds] = args.as_slice() else {
        bail!("usage: raft_profile flotilla|flotilla-owned|raft-rs PAYLOAD_BYTES BATCH ROUNDS");
    };
    let payload = vec![0xab; payload_bytes.parse().context("payload bytes")?];
    let batch: usize = batch.parse().context("batch")?;
    let rounds: usize = rounds.parse().context("rounds")?;
    let mut committed = 0;
    match system.as_str() {
        "flotilla" | "flotilla-owned" => {
            let input = if system == "flotilla" {
                ProposalInput::Slice
            } else {
                ProposalInput::OwnedBytes
            };
            let mut cluster = FlotillaCluster::new(256, 1 << 20)?;
            for _ in 0..rounds {
                committed += cluster.propose_and_commit(batch, &payload, input)?;
            }
        }
        "raft-rs" => {
            let mut cluster = RaftRsCluster::new(256, 1 << 20)?;
            for _ in 0..rounds {
                committed += cluster.propose_and_commit(batch, &payload)?;
            }
        }
        other => bail!("unknown system {other:?}"),
    }
    println!("{system}: {committed} entries committed");
    Ok(())
}
