//! `flotilla-bench`: benchmarks of Flotilla.
//!
//! - `benches/`: criterion micro-benchmarks (run once each in CI with `cargo bench --no-run`
//!   to keep them compiling).
//! - `src/bin/walbench.rs`: the WAL throughput run against a raw write + fdatasync baseline,
//!   and the recovery-speed run. Figures and commands are in docs/BENCHMARKS.md.
//!
//! - `benches/raft_replication.rs`: Flotilla's Raft core against raft-rs, 3 in-memory
//!   replicas each ([`flotilla_cluster`] here, `benches/support/raftrs_cluster.rs` there,
//!   so that raft-rs is a dev-dependency the demo does not build).
//!
//! - `benches/net_codec.rs`: the transport's encode and validate+access of message
//!   batches; `src/bin/netbench.rs`: loopback throughput of the TCP transport against a
//!   plain socket pair ([`append_batch`] builds their batches).
//!
//! - `src/bin/loadgen/`: the demo and throughput run: a 3-node cluster of `Engine`s in one
//!   process on loopback, driven by client threads with proposals in flight.
//!
//! This library holds what the binaries and benches share: workload builders and Flotilla's
//! in-memory cluster.

pub mod flotilla_cluster;
mod net_workload;
pub use net_workload::append_batch;

use flotilla_wal::{GroupId, LogIndex, Term, WriteBatch};

/// Builds batches of entries of `payload_bytes` each, spread over `groups` groups, keeping
/// each group's next index so that successive batches continue every group's log.
pub struct BatchMaker {
    payload: Vec<u8>,
    next_index: Vec<u64>,
    next_group: usize,
}

impl BatchMaker {
    /// A maker for `groups` groups (at least one) and entries of `payload_bytes`.
    pub fn new(groups: usize, payload_bytes: usize) -> BatchMaker {
        BatchMaker {
            payload: (0..payload_bytes).map(|i| (i % 251) as u8 + 1).collect(),
            next_index: vec![1; groups.max(1)],
            next_group: 0,
        }
    }

    /// Fills `batch` (cleared first) with entries until its body reaches `body_bytes`.
    pub fn fill(&mut self, batch: &mut WriteBatch, body_bytes: usize) {
        batch.clear();
        while batch.body_bytes() < body_bytes {
            let slot = self.next_group;
            let group = GroupId(slot as u64 + 1);
            // A few consecutive entries per group, as a Raft leader's batch would have.
            for _ in 0..8 {
                if batch.body_bytes() >= body_bytes {
                    break;
                }
                let index = LogIndex(self.next_index[slot]);
                batch.add_entry(group, index, Term(1), &self.payload);
                self.next_index[slot] += 1;
            }
            self.next_group = (self.next_group + 1) % self.next_index.len();
        }
    }
}
