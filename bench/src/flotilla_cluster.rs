//! A 3-replica in-memory cluster of Flotilla's Raft core, driven exactly like
//! [`crate::raftrs_cluster::RaftRsCluster`] so the two can be compared: messages are handed
//! over directly, persistence is instant (entries are kept in a per-node in-memory "disk"),
//! committed entries are applied by counting them. Nobody ticks: node 1 campaigns once and
//! stays leader.

use std::collections::VecDeque;

use anyhow::{anyhow, bail};
use flotilla::raft::{Config, Entry, Message, NodeId, RaftGroup, RestoredState, Role};

const PEERS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];
const LEADER: usize = 0;
/// Memory an entry costs besides its payload, roughly (index, term, kind, buffer handle), in
/// each of the copies a replica keeps; counted so the bench can bound the clusters' memory.
const LOG_ENTRY_OVERHEAD_BYTES: usize = 64;
/// Bound on the rounds of the drive loop, so that a stuck cluster is an error, not a hang.
const ROUNDS_MAX: usize = 1_000_000;

/// How the bench hands proposals to the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposalInput {
    /// A borrowed slice, copied by the core (inline when small).
    Slice,
    /// An owned `Bytes` per proposal, allocated by the caller (what raft-rs callers do).
    OwnedBytes,
}

/// Three replicas of one group, node 1 leading, and the messages in flight.
pub struct FlotillaCluster {
    nodes: Vec<RaftGroup>,
    disks: Vec<Vec<Entry>>,
    queue: VecDeque<Message>,
    applied: Vec<u64>,
    log_bytes: u64,
}

impl FlotillaCluster {
    /// Three replicas with node 1 elected and the cluster settled. The in-flight window and
    /// message size mirror raft-rs's `max_inflight_msgs` and `max_size_per_msg`.
    pub fn new(
        inflight_messages_max: usize,
        append_bytes_max: usize,
    ) -> anyhow::Result<FlotillaCluster> {
        let mut nodes = Vec::with_capacity(PEERS.len());
        for id in PEERS {
            let mut cfg = Config::new(id, id.0);
            cfg.inflight_messages_max = inflight_messages_max;
            cfg.append_bytes_max = append_bytes_max;
            cfg.append_entries_max = usize::MAX;
            cfg.apply_entries_max = usize::MAX;
            nodes.push(RaftGroup::new(cfg, &PEERS, RestoredState::default())?);
        }
        let mut cluster = FlotillaCluster {
            nodes,
            disks: vec![Vec::new(); PEERS.len()],
            queue: VecDeque::new(),
            applied: vec![0; PEERS.len()],
            log_bytes: 0,
        };
        // A fresh group has no lease to keep, so an election at once is allowed.
        for _ in 0..1000 {
            if cluster.nodes[LEADER].status().role == Role::Leader {
                break;
            }
            cluster.nodes[LEADER].tick();
            cluster.drive()?;
        }
        if cluster.nodes[LEADER].status().role != Role::Leader {
            bail!("flotilla node 1 was not elected leader");
        }
        let target = cluster.nodes[LEADER].status().last_index.0;
        cluster.drive_until(target)?;
        Ok(cluster)
    }

    /// Proposes `batch` entries of `payload` on the leader, then drives the cluster until the
    /// leader committed them and every replica applied them; returns how many committed.
    ///
    /// With `ProposalInput::Slice` the payload is handed over as a slice (small payloads are
    /// stored inline, large ones copied once into a shared buffer); with `OwnedBytes` each
    /// proposal is first copied into its own `Bytes`, as raft-rs requires of its callers.
    pub fn propose_and_commit(
        &mut self,
        batch: usize,
        payload: &[u8],
        input: ProposalInput,
    ) -> anyhow::Result<u64> {
        let leader = &mut self.nodes[LEADER];
        let committed_before = leader.status().commit.0;
        for _ in 0..batch {
            match input {
                ProposalInput::Slice => leader.propose(payload)?,
                ProposalInput::OwnedBytes => {
                    leader.propose(bytes::Bytes::copy_from_slice(payload))?
                }
            };
        }
        let target = leader.status().last_index.0;
        self.log_bytes += (batch * (payload.len() + LOG_ENTRY_OVERHEAD_BYTES)) as u64;
        self.drive_until(target)?;
        Ok(self.nodes[LEADER].status().commit.0 - committed_before)
    }

    /// About how many bytes of log the cluster holds (payload plus per-entry overhead; the
    /// log is never compacted here).
    pub fn log_bytes(&self) -> u64 {
        self.log_bytes
    }

    /// Handles every Ready once and delivers the queued messages. Returns whether anything
    /// happened.
    fn drive(&mut self) -> anyhow::Result<bool> {
        let mut busy = false;
        for slot in 0..self.nodes.len() {
            while let Some(ready) = self.nodes[slot].poll_ready() {
                busy = true;
                self.queue.extend(ready.messages);
                let disk = &mut self.disks[slot];
                if let Some(first) = ready.entries.first() {
                    disk.truncate(usize::try_from(first.index.0 - 1)?);
                    disk.extend(ready.entries);
                }
                self.nodes[slot].on_persisted(ready.id);
                self.queue.extend(ready.persisted_messages);
                self.applied[slot] += ready
                    .committed_entries
                    .iter()
                    .filter(|e| !e.data.is_empty())
                    .count() as u64;
                if let Some(last) = ready.committed_entries.last() {
                    self.nodes[slot].on_applied(last.index);
                }
            }
        }
        while let Some(message) = self.queue.pop_front() {
            busy = true;
            let to = usize::try_from(message.to.0 - 1)?;
            let node = self
                .nodes
                .get_mut(to)
                .ok_or_else(|| anyhow!("message to unknown node {}", message.to))?;
            node.step(message)?;
        }
        Ok(busy)
    }

    fn drive_until(&mut self, target: u64) -> anyhow::Result<()> {
        for _ in 0..ROUNDS_MAX {
            if !self.drive()? {
                let committed = self.nodes[LEADER].status().commit.0;
                let all_applied = self
                    .nodes
                    .iter()
                    .all(|node| node.status().applied.0 >= committed);
                if committed >= target && all_applied {
                    return Ok(());
                }
                bail!("flotilla cluster went quiet at commit {committed} before reaching {target}");
            }
        }
        bail!("flotilla cluster did not settle within {ROUNDS_MAX} rounds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_and_applies_on_every_replica() {
        let mut cluster = FlotillaCluster::new(256, 1 << 20).unwrap();
        for round in 1..=3u64 {
            assert_eq!(
                cluster
                    .propose_and_commit(64, &[0u8; 16], ProposalInput::Slice)
                    .unwrap(),
                64
            );
            assert_eq!(
                cluster
                    .propose_and_commit(64, &[0u8; 16], ProposalInput::OwnedBytes)
                    .unwrap(),
                64
            );
            let committed = cluster.nodes[LEADER].status().commit;
            for node in &cluster.nodes {
                assert_eq!(node.status().applied, committed);
            }
            assert!(cluster.applied.iter().all(|&n| n == 128 * round));
        }
    }
}
