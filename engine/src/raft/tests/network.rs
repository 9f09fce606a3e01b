//! A tiny synchronous network for the core's unit tests: replicas in a map, messages in a
//! queue, links that can be cut, instant persistence kept per node so a node can be
//! restarted from exactly what it made durable. A node's state machine is the list of
//! entries it applied; its snapshots are that list, encoded, and verify entries hash it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate::raft::{
    Config, Entry, EntryKind, HardState, LogIndex, Message, NodeId, Proposed, RaftGroup,
    RestoredState, Role, SnapshotMeta, Term, Verification,
};

/// Decides which messages the network drops.
pub(crate) type DropFilter = Box<dyn Fn(&Message) -> bool>;

/// What one node made durable.
#[derive(Clone, Debug, Default)]
pub(crate) struct Disk {
    pub(crate) hard_state: HardState,
    pub(crate) entries: Vec<Entry>,
    /// The latest snapshot and its bytes.
    pub(crate) snapshot: Option<(SnapshotMeta, Vec<u8>)>,
}

/// A state machine's snapshot: the entries it applied, encoded.
fn encode_applied(applied: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in applied
        .iter()
        .filter(|entry| entry.kind == EntryKind::Normal)
    {
        out.extend_from_slice(&entry.index.0.to_le_bytes());
        out.extend_from_slice(&entry.term.0.to_le_bytes());
        out.extend_from_slice(&(entry.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&entry.data);
    }
    out
}

fn decode_applied(mut bytes: &[u8]) -> Vec<Entry> {
    let mut entries = Vec::new();
    while !bytes.is_empty() {
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        let (index, term) = (word(0), word(8));
        let len = u32::from_le_bytes(bytes[16..20].try_into().expect("4")) as usize;
        entries.push(Entry {
            index: LogIndex(index),
            term: Term(term),
            kind: EntryKind::Normal,
            data: bytes[20..20 + len].to_vec().into(),
        });
        bytes = &bytes[20 + len..];
    }
    entries
}

/// The hash a node reports for a verify entry: of the payloads it applied.
pub(crate) fn state_hash(applied: &[Entry]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for entry in applied
        .iter()
        .filter(|entry| entry.kind == EntryKind::Normal)
    {
        entry.data.hash(&mut hasher);
    }
    hasher.finish()
}

pub(crate) struct Network {
    pub(crate) nodes: BTreeMap<NodeId, RaftGroup>,
    pub(crate) disks: BTreeMap<NodeId, Disk>,
    pub(crate) applied: BTreeMap<NodeId, Vec<Entry>>,
    pub(crate) queue: VecDeque<Message>,
    /// Directed links that drop everything.
    pub(crate) cut: BTreeSet<(NodeId, NodeId)>,
    /// Every message that was delivered, for assertions on traffic.
    pub(crate) delivered: Vec<Message>,
    /// Read states released by `drive`, with the node that released them.
    pub(crate) read_states: Vec<(NodeId, crate::raft::ReadState)>,
    /// Messages for which this returns true are dropped.
    pub(crate) drop_if: Option<DropFilter>,
    /// Fetches of evicted entries fail (the driver's storage cannot read them).
    pub(crate) fetches_fail: bool,
    /// Nodes created as joining replicas (no bootstrap voters).
    pub(crate) joiners: BTreeSet<NodeId>,
    /// Snapshot chunks received per node.
    pub(crate) staging: BTreeMap<NodeId, Vec<u8>>,
    /// Verifications released, with the node that released them.
    pub(crate) verifications: Vec<(NodeId, Verification)>,
    /// Snapshots installed, by node.
    pub(crate) installs: Vec<(NodeId, LogIndex)>,
    /// The bootstrap voters.
    bootstrap: u64,
    configure: fn(&mut Config),
}

pub(crate) fn ids(count: u64) -> Vec<NodeId> {
    (1..=count).map(NodeId).collect()
}

pub(crate) fn config(id: NodeId) -> Config {
    let mut cfg = Config::new(id, id.0 * 7919);
    cfg.election_timeout_ticks = 10;
    cfg.heartbeat_interval_ticks = 2;
    cfg.lease_ticks = 5;
    cfg
}

impl Network {
    pub(crate) fn new(count: u64) -> Network {
        Network::with_config(count, |_| {})
    }

    pub(crate) fn with_config(count: u64, configure: fn(&mut Config)) -> Network {
        let voters = ids(count);
        let mut network = Network {
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            applied: BTreeMap::new(),
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            delivered: Vec::new(),
            read_states: Vec::new(),
            drop_if: None,
            fetches_fail: false,
            joiners: BTreeSet::new(),
            staging: BTreeMap::new(),
            verifications: Vec::new(),
            installs: Vec::new(),
            bootstrap: count,
            configure,
        };
        for &id in &voters {
            network.disks.insert(id, Disk::default());
        }
        for &id in &voters {
            network.restart(id);
        }
        network
    }

    /// A network whose node `k+1` starts with a durable log of the terms `logs[k]` (payload:
    /// the index as text) and the hard state term `term`.
    pub(crate) fn with_logs(logs: &[&[u64]], term: u64, configure: fn(&mut Config)) -> Network {
        let mut network = Network::with_config(logs.len() as u64, configure);
        for (slot, terms) in logs.iter().enumerate() {
            let id = NodeId(slot as u64 + 1);
            let entries = terms
                .iter()
                .enumerate()
                .map(|(k, &t)| Entry {
                    index: crate::raft::LogIndex(k as u64 + 1),
                    term: crate::raft::Term(t),
                    kind: crate::raft::EntryKind::Normal,
                    data: Bytes::from(format!("{}", k + 1)).into(),
                })
                .collect();
            let hard_state = HardState {
                term: crate::raft::Term(term),
                vote: None,
                commit: crate::raft::LogIndex(0),
            };
            network.disks.insert(
                id,
                Disk {
                    hard_state,
                    entries,
                    snapshot: None,
                },
            );
            network.restart(id);
            // A test cluster built from prepared logs promised no lease to anyone.
            network.node(id.0).restart_guard_until = 0;
        }
        network
    }

    /// The terms of `id`'s log, from index 1.
    pub(crate) fn log_terms(&self, id: u64) -> Vec<u64> {
        let node = &self.nodes[&NodeId(id)];
        (1..=node.status().last_index.0)
            .map(|i| node.entry_term(crate::raft::LogIndex(i)).expect("held").0)
            .collect()
    }

    /// (Re)creates `id` from its disk; its state machine restarts from its snapshot (empty
    /// without one).
    pub(crate) fn restart(&mut self, id: NodeId) {
        let voters = if self.joiners.contains(&id) {
            Vec::new()
        } else {
            ids(self.bootstrap)
        };
        let mut cfg = config(id);
        (self.configure)(&mut cfg);
        let disk = self.disks[&id].clone();
        let snapshot_index = disk
            .snapshot
            .as_ref()
            .map_or(LogIndex(0), |(meta, _)| meta.index);
        let restored = RestoredState {
            hard_state: disk.hard_state,
            snapshot: disk.snapshot.as_ref().map(|(meta, _)| meta.clone()),
            entries: disk
                .entries
                .into_iter()
                .filter(|entry| entry.index > snapshot_index)
                .collect(),
            applied: snapshot_index,
        };
        self.nodes.insert(
            id,
            RaftGroup::new(cfg, &voters, restored).expect("valid test config"),
        );
        let applied = disk
            .snapshot
            .map_or_else(Vec::new, |(_, bytes)| decode_applied(&bytes));
        self.applied.insert(id, applied);
    }

    /// Starts a replica of the group on a new node `id`, joining: it knows no
    /// configuration until the leader's log or snapshot tells it.
    pub(crate) fn add_node(&mut self, id: u64) {
        let id = NodeId(id);
        self.joiners.insert(id);
        self.disks.insert(id, Disk::default());
        self.restart(id);
    }

    /// `id` snapshots its state machine at its applied index and compacts.
    pub(crate) fn compact(&mut self, id: u64) -> crate::raft::Compaction {
        let id = NodeId(id);
        let node = self.nodes.get_mut(&id).expect("node exists");
        let applied = node.status().applied;
        let compaction = node
            .compact(applied)
            .expect("compaction at the applied index");
        let bytes = encode_applied(&self.applied[&id]);
        let disk = self.disks.get_mut(&id).expect("disk exists");
        let through = compaction.log_compacted_through;
        disk.entries.retain(|entry| entry.index > through);
        disk.snapshot = Some((compaction.snapshot.clone(), bytes));
        compaction
    }

    pub(crate) fn node(&mut self, id: u64) -> &mut RaftGroup {
        self.nodes.get_mut(&NodeId(id)).expect("node exists")
    }

    /// Handles every Ready of `id`: persist at once, queue messages, apply.
    pub(crate) fn drive(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node exists");
        while let Some(ready) = node.poll_ready() {
            self.queue.extend(ready.messages);
            let disk = self.disks.get_mut(&id).expect("disk exists");
            if let Some(hard_state) = ready.hard_state {
                disk.hard_state = hard_state;
            }
            let staging = self.staging.entry(id).or_default();
            for chunk in &ready.snapshot_chunks {
                if chunk.offset == 0 {
                    staging.clear();
                }
                assert_eq!(staging.len() as u64, chunk.offset, "chunks stored in order");
                staging.extend_from_slice(&chunk.data);
            }
            if let Some(install) = &ready.install_snapshot {
                let bytes = std::mem::take(staging);
                let index = install.meta.index;
                disk.entries
                    .retain(|entry| install.keep_entries_after && entry.index > index);
                // The state machine is restored before the Ready's entries apply.
                self.applied.insert(id, decode_applied(&bytes));
                disk.snapshot = Some((install.meta.clone(), bytes));
                self.installs.push((id, index));
            }
            if let Some(first) = ready.entries.first() {
                let first = first.index;
                disk.entries.retain(|entry| entry.index < first);
                disk.entries.extend(ready.entries.iter().cloned());
            }
            node.on_persisted(ready.id);
            for read in ready.snapshot_reads {
                let chunk = disk.snapshot.as_ref().and_then(|(meta, bytes)| {
                    crate::raft::fuzzing::answer_snapshot_read(meta.index, bytes, read)
                });
                node.on_snapshot_read(read, chunk);
            }
            self.verifications
                .extend(ready.verifications.into_iter().map(|done| (id, done)));
            self.queue.extend(ready.persisted_messages);
            // Evicted entries come back from the disk, as a driver reads its log.
            for fetch in ready.fetches {
                if self.fetches_fail {
                    node.on_fetched(fetch, Vec::new());
                    continue;
                }
                node.on_fetched(
                    fetch,
                    crate::raft::fuzzing::answer_fetch(&disk.entries, fetch),
                );
            }
            self.read_states
                .extend(ready.read_states.into_iter().map(|read| (id, read)));
            if let Some(last) = ready.committed_entries.last() {
                let last_index = last.index;
                let applied = self.applied.get_mut(&id).expect("applied exists");
                for entry in ready.committed_entries {
                    let verify = (entry.kind == EntryKind::Verify).then_some(entry.index);
                    applied.push(entry);
                    if let Some(index) = verify {
                        node.on_state_hash(index, state_hash(applied));
                    }
                }
                node.on_applied(last_index);
            }
        }
    }

    pub(crate) fn drive_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.drive(id);
        }
    }

    /// Delivers messages (and the replies they cause) until the network is quiet.
    pub(crate) fn settle(&mut self) {
        for _ in 0..100_000 {
            self.drive_all();
            let Some(message) = self.queue.pop_front() else {
                return;
            };
            let dropped = self
                .drop_if
                .as_ref()
                .is_some_and(|drop_if| drop_if(&message));
            if dropped
                || self.cut.contains(&(message.from, message.to))
                || !self.nodes.contains_key(&message.to)
            {
                continue;
            }
            self.delivered.push(message.clone());
            let to = message.to;
            self.nodes
                .get_mut(&to)
                .expect("checked")
                .step(message)
                .expect("well-formed message in tests");
        }
        panic!("network did not settle");
    }

    /// Settles, recording the last read state node `id` released meanwhile.
    pub(crate) fn settle_collecting_reads(
        &mut self,
        id: u64,
        answered: &mut Option<(u64, Result<crate::raft::LogIndex, crate::raft::ReadError>)>,
    ) {
        self.read_states.clear();
        self.settle();
        let released = self
            .read_states
            .iter()
            .rfind(|(node, _)| *node == NodeId(id));
        if let Some((_, read)) = released {
            *answered = Some((read.ctx, read.result));
        }
    }

    /// Ticks every node `count` times, settling after each tick.
    pub(crate) fn tick_all(&mut self, count: u32) {
        for _ in 0..count {
            for node in self.nodes.values_mut() {
                node.tick();
            }
            self.settle();
        }
    }

    /// Makes `id` campaign now (as if its election timer fired) and settles.
    pub(crate) fn campaign(&mut self, id: u64) {
        self.node(id).start_election(false);
        self.settle();
    }

    pub(crate) fn leader(&self) -> Option<NodeId> {
        let leaders: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|node| node.role == Role::Leader)
            .map(|node| node.id)
            .collect();
        leaders.last().copied()
    }

    pub(crate) fn propose(&mut self, id: u64, data: &'static [u8]) -> Proposed {
        let proposed = self
            .node(id)
            .propose(Bytes::from_static(data))
            .expect("proposal accepted");
        self.settle();
        proposed
    }

    /// Cuts both directions between `a` and every node in `others`.
    pub(crate) fn isolate(&mut self, a: u64, others: &[u64]) {
        for &b in others {
            self.cut.insert((NodeId(a), NodeId(b)));
            self.cut.insert((NodeId(b), NodeId(a)));
        }
    }

    pub(crate) fn heal(&mut self) {
        self.cut.clear();
    }

    /// Heals every link that does not touch `id`.
    pub(crate) fn heal_except(&mut self, id: u64) {
        self.cut
            .retain(|&(a, b)| a == NodeId(id) || b == NodeId(id));
    }

    /// How many AppendEntries rejections node `id` sent among the delivered messages.
    pub(crate) fn rejections_from(&self, id: u64) -> usize {
        self.delivered
            .iter()
            .filter(|m| {
                m.from == NodeId(id)
                    && matches!(
                        m.body,
                        crate::raft::MessageBody::AppendResponse(
                            crate::raft::AppendResponse::Rejected { .. }
                        )
                    )
            })
            .count()
    }

    /// The payloads `id` applied, in order (no-ops, configurations and verify entries
    /// skipped).
    pub(crate) fn applied_data(&self, id: u64) -> Vec<&[u8]> {
        self.applied[&NodeId(id)]
            .iter()
            .filter(|entry| entry.kind == EntryKind::Normal && !entry.data.is_empty())
            .map(|entry| entry.data.as_ref())
            .collect()
    }
}
