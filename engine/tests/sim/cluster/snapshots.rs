//! Snapshots, membership churn and consistency verification in the simulator.
//!
//! - Every replica snapshots its key-value map every `snapshot_every` applied entries and
//!   compacts its log (keeping `compaction_tail` entries); leaders stream snapshots in
//!   chunks of `snapshot_chunk_bytes` to followers that need compacted entries, over the
//!   same lossy network as everything else.
//! - Churn: while faults are on, leaders are asked to add voters (through a learner, the
//!   safe way), add, promote and remove learners, remove voters (themselves included), and
//!   replace a voter in one joint change. Spare nodes start as joining replicas.
//! - Leaders propose verify entries; every replica reports its map's hash when it applies
//!   one, and a `Divergent` outcome fails the seed.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use flotilla::raft::{
    ChangeError, MembershipChange, NodeId, Role, SnapshotChunk, SnapshotInstall, SnapshotRead,
    Verification,
};

use super::{Pending, Simulation};

/// The bytes of a snapshot of a key-value map: (key, value) pairs, little endian.
pub(super) fn encode_kv(kv: &BTreeMap<u64, u64>) -> Vec<u8> {
    kv.iter()
        .flat_map(|(key, value)| key.to_le_bytes().into_iter().chain(value.to_le_bytes()))
        .collect()
}

/// The map a snapshot's bytes hold.
pub(super) fn decode_kv(bytes: &[u8]) -> Option<BTreeMap<u64, u64>> {
    if !bytes.len().is_multiple_of(16) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(16)
            .map(|pair| {
                let word = |at: usize| u64::from_le_bytes(pair[at..at + 8].try_into().expect("8"));
                (word(0), word(8))
            })
            .collect(),
    )
}

/// A replica's state hash.
pub(super) fn kv_hash(kv: &BTreeMap<u64, u64>) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    kv.hash(&mut hasher);
    hasher.finish()
}

impl Simulation {
    /// Takes a snapshot of `node`'s replica of `group` when enough was applied since the
    /// last one.
    pub(super) fn maybe_snapshot(&mut self, node: usize, group: usize) {
        let every = self.params.snapshot_every;
        let replica = &mut self.nodes[node].replicas[group];
        let last = replica
            .disk_snapshot
            .as_ref()
            .map_or(0, |(meta, _)| meta.index.0);
        if every == 0 || replica.applied.0 < last + every {
            return;
        }
        let Ok(compaction) = replica.raft.compact(replica.applied) else {
            return;
        };
        let through = compaction.log_compacted_through;
        replica.disk_snapshot = Some((compaction.snapshot, encode_kv(&replica.kv)));
        replica.disk_entries.retain(|entry| entry.index > through);
        self.totals.snapshots_taken += 1;
    }

    /// A leader's driver reads a chunk of its stored snapshot.
    pub(super) fn answer_snapshot_read(&mut self, node: usize, group: usize, read: SnapshotRead) {
        let replica = &mut self.nodes[node].replicas[group];
        let chunk = replica.disk_snapshot.as_ref().and_then(|(meta, bytes)| {
            flotilla::raft::fuzzing::answer_snapshot_read(meta.index, bytes, read)
        });
        replica.raft.on_snapshot_read(read, chunk);
        self.totals.snapshot_chunks += 1;
    }

    /// A follower's driver stores the chunks it received and, with the last, installs the
    /// snapshot: the map is restored at once (before anything after it applies), the disk
    /// takes it with the Ready's write (returned). `Err` when the seed failed.
    pub(super) fn receive_snapshot(
        &mut self,
        node: usize,
        group: usize,
        chunks: Vec<SnapshotChunk>,
        install: Option<SnapshotInstall>,
    ) -> Result<Option<(SnapshotInstall, Vec<u8>)>, ()> {
        let replica = &mut self.nodes[node].replicas[group];
        for chunk in chunks {
            if chunk.offset == 0 {
                replica.staging.clear();
            }
            if replica.staging.len() as u64 != chunk.offset {
                let staged = replica.staging.len();
                self.fail(format!(
                    "snapshot chunk at {} after {staged} bytes",
                    chunk.offset
                ));
                return Err(());
            }
            replica.staging.extend_from_slice(&chunk.data);
        }
        let Some(install) = install else {
            return Ok(None);
        };
        let bytes = std::mem::take(&mut replica.staging);
        let Some(kv) = decode_kv(&bytes) else {
            self.fail(format!(
                "installed snapshot of {} bytes does not decode",
                bytes.len()
            ));
            return Err(());
        };
        replica.kv = kv;
        replica.applied = install.meta.index;
        let (index, term) = (install.meta.index, install.meta.term);
        self.snapshot_installed(node, group, index, term);
        if self.faults_on
            && self
                .install_crash_rng
                .chance(self.params.install_crash_per_mille)
        {
            let at = self.now_us + self.install_crash_rng.range(0, 3_000);
            self.schedule(at, super::Event::CrashDuringInstall { node });
        }
        Ok(Some((install, bytes)))
    }

    /// A follower installed a snapshot through `index` of `term`: writes waiting at this
    /// node for an entry the snapshot covers will never see it applied here (outcome
    /// unknown); a write of a lower term at a later index failed for good (an entry of a
    /// higher term committed below it: the `Proposed` contract).
    pub(super) fn snapshot_installed(
        &mut self,
        node: usize,
        group: usize,
        index: flotilla::raft::LogIndex,
        term: flotilla::raft::Term,
    ) {
        self.totals.snapshots_installed += 1;
        for client in &mut self.clients {
            if client.group != group {
                continue;
            }
            if let Some((
                slot,
                Pending::Write {
                    node: at,
                    index: at_index,
                    term: at_term,
                    ..
                },
            )) = &client.pending
                && *at == node
            {
                if *at_index <= index {
                    client.pending = None;
                } else if *at_term < term {
                    self.history_void[*slot] = true;
                    client.pending = None;
                }
            }
        }
    }

    /// Checks the verifications a leader finished.
    pub(super) fn check_verifications(&mut self, group: usize, verifications: Vec<Verification>) {
        for verification in verifications {
            self.totals.verifications += 1;
            if let Verification::Divergent { index, hashes } = verification {
                self.fail(format!(
                    "verification: group {group} diverged at {index:?}: {hashes:?}"
                ));
            }
        }
    }

    /// A churn step on a random group: one membership change asked of its leader.
    pub(super) fn churn(&mut self) {
        let group = usize::try_from(self.rng.range(0, self.params.groups)).expect("small");
        let nodes = self.nodes.len();
        let Some(leader) = (0..nodes).find(|&n| {
            self.nodes[n].alive && self.nodes[n].replicas[group].raft.status().role == Role::Leader
        }) else {
            return;
        };
        let configuration = self.nodes[leader].replicas[group]
            .raft
            .configuration()
            .clone();
        let all: Vec<NodeId> = (0..nodes).map(Self::node_id).collect();
        let non_members: Vec<NodeId> = all
            .iter()
            .copied()
            .filter(|id| !configuration.contains(*id))
            .collect();
        let voters = configuration.voters().to_vec();
        let learners = configuration.learners().to_vec();
        let pick = |rng: &mut crate::rng::Rng, ids: &[NodeId]| -> Option<NodeId> {
            (!ids.is_empty())
                .then(|| ids[usize::try_from(rng.range(0, ids.len() as u64)).expect("small")])
        };
        let raft = &mut self.nodes[leader].replicas[group].raft;
        let result = match self.rng.range(0, 6) {
            0 => match pick(&mut self.rng, &non_members) {
                Some(node) => raft.add_voter(node),
                None => return,
            },
            1 => match pick(&mut self.rng, &non_members) {
                Some(node) => raft
                    .propose_change(&[MembershipChange::AddLearner(node)])
                    .map(|_| ()),
                None => return,
            },
            2 => match pick(&mut self.rng, &learners) {
                Some(node) if self.rng.chance(500) => raft
                    .propose_change(&[MembershipChange::PromoteLearner(node)])
                    .map(|_| ()),
                Some(node) => raft
                    .propose_change(&[MembershipChange::RemoveLearner(node)])
                    .map(|_| ()),
                None => return,
            },
            3 | 4 => {
                if voters.len() <= 2 {
                    return;
                }
                // Half the removals hit the leader itself.
                let node = if self.rng.chance(500) {
                    Self::node_id(leader)
                } else {
                    match pick(&mut self.rng, &voters) {
                        Some(node) => node,
                        None => return,
                    }
                };
                raft.propose_change(&[MembershipChange::RemoveVoter(node)])
                    .map(|_| ())
            }
            _ => {
                // Replace a voter in one joint change: C_old and C_new differ on both sides.
                let (Some(out), Some(into)) = (
                    pick(&mut self.rng, &voters),
                    pick(&mut self.rng, &non_members),
                ) else {
                    return;
                };
                raft.propose_change(&[
                    MembershipChange::RemoveVoter(out),
                    MembershipChange::AddVoter(into),
                ])
                .map(|_| ())
            }
        };
        match result {
            Ok(()) => self.totals.changes += 1,
            Err(
                ChangeError::ChangeInProgress { .. }
                | ChangeError::LeaderNotReady
                | ChangeError::TransferInProgress { .. },
            ) => {}
            Err(error) => self.fail(format!("membership change refused unexpectedly: {error}")),
        }
        self.process(leader, group);
    }

    /// Now and then a leader checks its replicas' consistency.
    pub(super) fn maybe_verify(&mut self) {
        if !self.rng.chance(self.params.verify_per_mille) {
            return;
        }
        let group = usize::try_from(self.rng.range(0, self.params.groups)).expect("small");
        let leader = (0..self.nodes.len()).find(|&n| {
            self.nodes[n].alive && self.nodes[n].replicas[group].raft.status().role == Role::Leader
        });
        if let Some(leader) = leader
            && self.nodes[leader].replicas[group]
                .raft
                .propose_verify()
                .is_ok()
        {
            self.process(leader, group);
        }
    }
}
