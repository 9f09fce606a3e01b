//! The raft-rs side of the Raft core comparison (`benches/support/raftrs_cluster.rs`)
//! commits and applies on every replica: its unit test, run here because a bench target
//! has no test harness.

#[path = "../benches/support/raftrs_cluster.rs"]
mod raftrs_cluster;
