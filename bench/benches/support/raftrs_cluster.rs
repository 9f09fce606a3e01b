//! A 3-replica in-memory raft-rs cluster, used only as the reference in the comparison bench
//! (committed entries per second of Flotilla against raft-rs on the same workload).
//!
//! Each replica is a `raft::RawNode<MemStorage>`. Messages are handed over directly through one
//! queue (each is stepped into its `to` node) and persistence is instant (entries and hard
//! state are appended to the node's `MemStorage`). The cluster is driven with the idiomatic
//! raft-rs async-ready loop, as in raft-rs's `five_mem_node` example: for every node with a
//! `Ready`, send its messages, persist entries and hard state, send the persisted messages,
//! apply the committed entries, `advance`, record the new commit index, send the light ready's
//! messages, apply its committed entries and `advance_apply`. Nobody ticks: node 1 is made
//! leader by `campaign` and stays leader.

#![allow(
    dead_code,
    reason = "shared by a bench and two examples, each using a subset"
)]

use std::collections::VecDeque;

use anyhow::{anyhow, bail};
use raft::prelude::{ConfState, Config, Entry, Message, MessageType};
use raft::storage::MemStorage;
use raft::{RawNode, StateRole};

/// The replica ids; node 1 (slot 0) is the leader.
const PEERS: [u64; 3] = [1, 2, 3];
/// Slot of the leader in `RaftRsCluster::nodes`.
const LEADER: usize = 0;
/// Memory an entry costs besides its payload, roughly (index, term, kind, buffer handle), in
/// each of the copies a replica keeps; counted so the bench can bound the clusters' memory.
const LOG_ENTRY_OVERHEAD_BYTES: usize = 64;
/// Bound on the rounds of the drive loop, so that a stuck cluster is an error, not a hang.
const MAX_ROUNDS: usize = 1_000_000;

/// Three raft-rs replicas (ids 1, 2, 3) with node 1 as leader, and the in-flight messages.
pub(crate) struct RaftRsCluster {
    nodes: Vec<RawNode<MemStorage>>,
    queue: VecDeque<Message>,
    /// Normal (non-empty) entries applied so far, per node.
    applied: Vec<u64>,
    log_bytes: u64,
}

impl RaftRsCluster {
    /// Three replicas (ids 1, 2, 3), node 1 campaigned and elected leader, the cluster settled
    /// (all messages delivered, no Ready pending).
    pub(crate) fn new(
        max_inflight_msgs: usize,
        max_size_per_msg: u64,
    ) -> anyhow::Result<RaftRsCluster> {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut nodes = Vec::with_capacity(PEERS.len());
        for id in PEERS {
            let config = Config {
                id,
                election_tick: 10,
                heartbeat_tick: 3,
                max_size_per_msg,
                max_inflight_msgs,
                ..Default::default()
            };
            let storage = MemStorage::new_with_conf_state(ConfState::from((
                PEERS.to_vec(),
                Vec::<u64>::new(),
            )));
            let node = RawNode::new(&config, storage, &logger)
                .map_err(|e| anyhow!("raft-rs node {id} creation failed: {e}"))?;
            nodes.push(node);
        }
        let mut cluster = RaftRsCluster {
            nodes,
            queue: VecDeque::new(),
            applied: vec![0; PEERS.len()],
            log_bytes: 0,
        };
        cluster.nodes[LEADER]
            .campaign()
            .map_err(|e| anyhow!("raft-rs campaign failed: {e}"))?;
        // The new leader's empty entry is index 1.
        cluster.drive_until(1)?;
        if cluster.nodes[LEADER].raft.state != StateRole::Leader {
            bail!("raft-rs node 1 was not elected leader");
        }
        Ok(cluster)
    }

    /// Proposes `batch` entries whose data is `payload` on the leader, then drives the cluster
    /// until the leader has committed all of them and every replica has applied them; returns
    /// the number of entries committed by this call (== batch on success; error if a proposal
    /// is refused).
    pub(crate) fn propose_and_commit(
        &mut self,
        batch: usize,
        payload: &[u8],
    ) -> anyhow::Result<u64> {
        let leader = &mut self.nodes[LEADER];
        let committed_before = leader.raft.raft_log.committed;
        // raft-rs at its best: the whole batch in one MsgPropose (one append, one message per
        // follower), as a batching embedder like TiKV would do, rather than `propose` per entry.
        let mut propose = Message::default();
        propose.set_msg_type(MessageType::MsgPropose);
        propose.from = PEERS[LEADER];
        let entries: Vec<Entry> = (0..batch)
            .map(|_| Entry {
                data: payload.to_vec().into(),
                ..Default::default()
            })
            .collect();
        propose.set_entries(entries.into());
        leader
            .step(propose)
            .map_err(|e| anyhow!("raft-rs leader refused the proposals: {e}"))?;
        let target = leader.raft.raft_log.last_index();
        self.log_bytes += (batch * (payload.len() + LOG_ENTRY_OVERHEAD_BYTES)) as u64;
        self.drive_until(target)?;
        Ok(self.nodes[LEADER].raft.raft_log.committed - committed_before)
    }

    /// About how many bytes of log the cluster holds (payload plus per-entry overhead), so the
    /// bench can rebuild the cluster before memory grows too large.
    pub(crate) fn log_bytes(&self) -> u64 {
        self.log_bytes
    }

    /// Delivers messages and handles Readies until the cluster is quiet (queue empty, no Ready
    /// pending); then the leader must have committed `target` and every node applied it.
    fn drive_until(&mut self, target: u64) -> anyhow::Result<()> {
        for _ in 0..MAX_ROUNDS {
            while let Some(msg) = self.queue.pop_front() {
                let to = msg.to;
                let node = usize::try_from(to)
                    .ok()
                    .and_then(|to| to.checked_sub(1))
                    .and_then(|slot| self.nodes.get_mut(slot))
                    .ok_or_else(|| anyhow!("raft-rs message to unknown node {to}"))?;
                node.step(msg)
                    .map_err(|e| anyhow!("raft-rs node {to} refused a message: {e}"))?;
            }
            let mut busy = false;
            for (node, applied) in self.nodes.iter_mut().zip(self.applied.iter_mut()) {
                if node.has_ready() {
                    busy = true;
                    handle_ready(node, &mut self.queue, applied)?;
                }
            }
            if !busy && self.queue.is_empty() {
                let committed = self.nodes[LEADER].raft.raft_log.committed;
                let all_applied = self
                    .nodes
                    .iter()
                    .all(|node| node.raft.raft_log.applied >= committed);
                if committed >= target && all_applied {
                    return Ok(());
                }
                bail!("raft-rs cluster went quiet at commit {committed} before reaching {target}");
            }
        }
        bail!("raft-rs cluster did not settle within {MAX_ROUNDS} rounds")
    }
}

/// Handles one Ready of `node`: messages go to `queue`, persistence is instant, applying
/// counts the normal entries into `applied`.
fn handle_ready(
    node: &mut RawNode<MemStorage>,
    queue: &mut VecDeque<Message>,
    applied: &mut u64,
) -> anyhow::Result<()> {
    let mut ready = node.ready();
    // A leader's messages may be sent before its entries are persisted.
    queue.extend(ready.take_messages());
    if !ready.snapshot().is_empty() {
        bail!(
            "unexpected snapshot in a Ready of raft-rs node {}",
            node.raft.id
        );
    }
    node.store()
        .wl()
        .append(ready.entries())
        .map_err(|e| anyhow!("raft-rs MemStorage append failed: {e}"))?;
    if let Some(hs) = ready.hs() {
        node.store().wl().set_hardstate(hs.clone());
    }
    queue.extend(ready.take_persisted_messages());
    apply(ready.take_committed_entries(), applied);
    let mut light = node.advance(ready);
    if let Some(commit) = light.commit_index() {
        node.store().wl().mut_hard_state().set_commit(commit);
    }
    queue.extend(light.take_messages());
    apply(light.take_committed_entries(), applied);
    node.advance_apply();
    Ok(())
}

/// "Applies" committed entries: counts the normal ones (the leader's empty entries are skipped).
fn apply(entries: Vec<Entry>, applied: &mut u64) {
    *applied += entries
        .iter()
        .filter(|entry| !entry.data.is_empty())
        .count() as u64;
}

// Run by `tests/raftrs_harness.rs`; in the bench (no test harness) the tests compile away.
#[cfg(test)]
mod tests {
    #[allow(unused_imports, reason = "unused where no test harness runs the tests")]
    use super::*;

    #[test]
    fn commits_and_applies_on_every_replica() {
        let mut cluster = RaftRsCluster::new(256, 1 << 20).unwrap();
        for round in 1..=3u64 {
            assert_eq!(cluster.propose_and_commit(64, &[0u8; 16]).unwrap(), 64);
            let committed = cluster.nodes[LEADER].raft.raft_log.committed;
            for node in &cluster.nodes {
                assert_eq!(node.raft.raft_log.applied, committed);
            }
            assert!(cluster.applied.iter().all(|&n| n == 64 * round));
        }
        assert_eq!(
            cluster.log_bytes(),
            3 * 64 * (16 + LOG_ENTRY_OVERHEAD_BYTES as u64)
        );
    }
}
