//! The simulated clients: they pick a node (the leader they last heard of, or any), issue
//! puts, gets (ReadIndex or lease reads) and compare-and-sets, and record each operation in
//! the history with its invocation and completion time, or as of unknown outcome. Also the
//! key-value state machine the entries are applied to.

use std::collections::BTreeMap;

use bytes::Bytes;
use flotilla::raft::{Entry, EntryKind, LogIndex, ProposeError, ReadError, ReadMode};

use super::{
    CLIENT_QUIET_US, CLIENT_TIMEOUT_US, Event, LIVENESS_US, Pending, Simulation, data_hash,
};
use crate::linearizability::{Input, Operation, Output};

/// A client command in an entry: tag, key, value, expected (for CAS).
pub(super) fn encode(input: Input, key: u64) -> Bytes {
    let mut out = Vec::with_capacity(26);
    match input {
        Input::Put(value) => {
            out.push(1);
            out.extend_from_slice(&key.to_le_bytes());
            out.extend_from_slice(&value.to_le_bytes());
        }
        Input::Cas { expected, new } => {
            out.push(2);
            out.extend_from_slice(&key.to_le_bytes());
            out.extend_from_slice(&new.to_le_bytes());
            out.push(u8::from(expected.is_some()));
            out.extend_from_slice(&expected.unwrap_or(0).to_le_bytes());
        }
        Input::Get => unreachable!("reads are not logged"),
    }
    Bytes::from(out)
}

fn word(data: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"))
}

/// Applies one command to a key-value map; returns the client-visible output.
pub(super) fn apply(kv: &mut BTreeMap<u64, u64>, data: &[u8]) -> Output {
    let key = word(data, 1);
    match data[0] {
        1 => {
            kv.insert(key, word(data, 9));
            Output::Put
        }
        2 => {
            let expected = (data[17] == 1).then(|| word(data, 18));
            let swapped = kv.get(&key).copied() == expected;
            if swapped {
                kv.insert(key, word(data, 9));
            }
            Output::Cas(swapped)
        }
        tag => panic!("unknown command tag {tag}"),
    }
}

impl Simulation {
    pub(super) fn apply_entry(&mut self, node: usize, group: usize, entry: &Entry) {
        let hash = data_hash(entry);
        // State Machine Safety: no two nodes apply different entries at one index.
        match self.applied_global[group].get(&entry.index) {
            Some(&(term, other, _)) if term != entry.term || other != hash => {
                self.fail(format!(
                    "State Machine Safety: group {group} node {node} applied {:?}@{:?} where another node applied {term:?}",
                    entry.index, entry.term
                ));
                return;
            }
            _ => {}
        }
        let committed_by_at_most = self.leader_term_max[group];
        self.applied_global[group].entry(entry.index).or_insert((
            entry.term,
            hash,
            committed_by_at_most,
        ));
        let replica = &mut self.nodes[node].replicas[group];
        if entry.index != replica.applied.next() {
            let applied = replica.applied;
            self.fail(format!(
                "apply out of order: {:?} after {applied:?}",
                entry.index
            ));
            return;
        }
        replica.applied = entry.index;
        let output = match entry.kind {
            EntryKind::Normal => Some(apply(&mut replica.kv, &entry.data)),
            EntryKind::Noop | EntryKind::Configuration => None,
            EntryKind::Verify => {
                let hash = super::snapshots::kv_hash(&replica.kv);
                replica.raft.on_state_hash(entry.index, hash);
                None
            }
        };
        let incarnation = self.nodes[node].incarnation;
        for client in 0..self.clients.len() {
            let Some((
                slot,
                Pending::Write {
                    node: at,
                    incarnation: at_incarnation,
                    index,
                    term,
                    data_hash: proposed_hash,
                },
            )) = &self.clients[client].pending
            else {
                continue;
            };
            if self.clients[client].group != group || *at != node || *at_incarnation != incarnation
            {
                continue;
            }
            let slot = *slot;
            if *index == entry.index && *term == entry.term {
                if *proposed_hash != hash {
                    self.fail(format!(
                        "the entry applied at {index:?}@{term:?} is not the one proposed there"
                    ));
                    return;
                }
                self.history[slot].output = output.expect("client entries are Normal");
                self.history[slot].complete = Some(self.stamp());
            } else if *index >= entry.index && *term < entry.term {
                // The Proposed contract: an entry of a higher term committed at or below our
                // index means ours never commits.
                self.history_void[slot] = true;
            } else if *index == entry.index {
                // Same index, lower or equal term but a different entry: ours lost too.
                self.history_void[slot] = true;
            } else {
                continue;
            }
            self.clients[client].pending = None;
        }
    }

    pub(super) fn complete_read(
        &mut self,
        node: usize,
        group: usize,
        ctx: u64,
        result: Result<LogIndex, ReadError>,
    ) {
        for client in 0..self.clients.len() {
            let Some((
                slot,
                Pending::Read {
                    node: at,
                    ctx: pending_ctx,
                    ..
                },
            )) = &self.clients[client].pending
            else {
                continue;
            };
            if *at != node || *pending_ctx != ctx {
                continue;
            }
            let slot = *slot;
            match result {
                Ok(index) => {
                    let replica = &self.nodes[node].replicas[group];
                    if replica.applied < index {
                        let applied = replica.applied;
                        self.fail(format!(
                            "read released at {index:?} before apply reached it ({applied:?})"
                        ));
                        return;
                    }
                    let key = self.history[slot].key;
                    self.history[slot].output = Output::Get(replica.kv.get(&key).copied());
                    self.history[slot].complete = Some(self.stamp());
                }
                Err(_) => self.history_void[slot] = true,
            }
            self.clients[client].pending = None;
        }
    }

    /// Whether `node` is a member of `group` as its newest leader sees it (an oracle; a
    /// removed node may never learn it was removed). True when there is no leader.
    fn member_now(&self, group: usize, node: usize) -> bool {
        let leader = self
            .nodes
            .iter()
            .filter(|n| n.alive)
            .map(|n| &n.replicas[group].raft)
            .filter(|raft| raft.is_leader())
            .max_by_key(|raft| raft.status().term);
        leader.is_none_or(|raft| raft.configuration().contains(Self::node_id(node)))
    }

    pub(super) fn client_step(&mut self, client: usize) {
        let quiet = self.now_us + CLIENT_QUIET_US > self.params.fault_phase_us + LIVENESS_US;
        let next = self.now_us + self.rng.range(1_000, 30_000);
        if let Some((slot, pending)) = &self.clients[client].pending {
            let slot = *slot;
            let group = self.clients[client].group;
            let removed = match pending {
                Pending::Write { node, .. } => !self.member_now(group, *node),
                Pending::Read { .. } => false,
            };
            if removed {
                // The node it waits on left the group and may never apply what comes next:
                // the client hears nothing more (outcome unknown), as from a real driver
                // that times out.
                self.clients[client].pending = None;
            } else if self.faults_on
                && self.now_us - self.history_invoked_us[slot] > CLIENT_TIMEOUT_US
            {
                // Give up: the outcome is unknown (a read is simply dropped).
                if self.history[slot].input == Input::Get {
                    self.history_void[slot] = true;
                }
                self.clients[client].pending = None;
            }
            self.schedule(next, Event::Client { client });
            return;
        }
        if quiet {
            return;
        }
        self.schedule(next, Event::Client { client });
        let group = self.clients[client].group;
        let nodes = self.nodes.len() as u64;
        let node = match self.clients[client].leader_hint {
            Some(node) if !self.rng.chance(100) => node,
            _ => usize::try_from(self.rng.range(0, nodes)).expect("small"),
        };
        if !self.nodes[node].alive {
            self.clients[client].leader_hint = None;
            return;
        }
        self.clients[client].sequence += 1;
        let key = (group as u64) * 100 + self.rng.range(0, self.params.keys);
        let value = (client as u64 + 1) * 1_000_000 + self.clients[client].sequence;
        let input = match self.rng.range(0, 3) {
            0 => Input::Put(value),
            1 => Input::Get,
            _ => {
                let current = self.nodes[node].replicas[group].kv.get(&key).copied();
                let expected = if self.rng.chance(700) {
                    current
                } else {
                    Some(value - 1)
                };
                Input::Cas {
                    expected,
                    new: value,
                }
            }
        };
        let slot = self.history.len();
        let operation = Operation {
            client: client as u64,
            key,
            input,
            output: Output::Unknown,
            invoke: self.stamp(),
            complete: None,
        };
        let incarnation = self.nodes[node].incarnation;
        let raft = &mut self.nodes[node].replicas[group].raft;
        let pending = match input {
            Input::Get => {
                let ctx = self.next_read_ctx;
                self.next_read_ctx += 1;
                let mode = if self.params.lease_reads && self.rng.chance(500) {
                    ReadMode::Lease
                } else {
                    ReadMode::ReadIndex
                };
                match raft.read_index(ctx, mode) {
                    Ok(()) => Ok(Pending::Read { node, ctx }),
                    Err(ReadError::NotLeader { leader }) => Err(leader),
                    Err(error) => panic!("unexpected read error {error}"),
                }
            }
            _ => match raft.propose(encode(input, key)) {
                Ok(proposed) => Ok(Pending::Write {
                    node,
                    incarnation,
                    index: proposed.index,
                    term: proposed.term,
                    data_hash: data_hash(raft.entry(proposed.index).expect("just appended")),
                }),
                Err(ProposeError::NotLeader { leader }) => Err(leader),
                Err(ProposeError::TransferInProgress { .. }) => Err(None),
                Err(error) => panic!("unexpected propose error {error}"),
            },
        };
        match pending {
            Ok(pending) => {
                self.history.push(operation);
                self.history_void.push(false);
                self.history_invoked_us.push(self.now_us);
                self.clients[client].pending = Some((slot, pending));
                self.clients[client].leader_hint = Some(node);
                self.process(node, group);
            }
            Err(leader) => {
                self.clients[client].leader_hint =
                    leader.map(|id| usize::try_from(id.0 - 1).expect("small"));
            }
        }
    }
}
