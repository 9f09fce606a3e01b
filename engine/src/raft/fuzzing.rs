//! The entry point of the `raft_step` fuzz target and of its corpus replay: one replica of a
//! 3-voter group driven by inputs decoded from arbitrary bytes — messages of every kind
//! (well-formed, stale, duplicated, from strangers, with absurd terms and indexes; snapshot
//! chunks and configuration entries among them), ticks, proposals, reads, transfers,
//! membership changes, verifications, compactions, and persistence acknowledged in order,
//! late or not at all.
//!
//! The replica must never panic: a message is either taken or refused with a `StepError`,
//! and (under the `strict` feature, on in tests) its invariants hold after every input.
//! **Boundary:** no I/O, no state kept between calls.

use crate::raft::{
    AppendEntries, AppendResponse, Config, Configuration, ConflictHint, Entry, EntryKind,
    Heartbeat, HeartbeatResponse, InstallSnapshot, LogFetch, LogIndex, MembershipChange, Message,
    MessageBody, NodeId, Quiesce, RaftGroup, ReadMode, Ready, RestoredState, SnapshotChunkData,
    SnapshotMeta, SnapshotRead, SnapshotResponse, Term, VerifyReport, VoteKind, VoteRequest,
    VoteResponse,
};

/// Reads the input a byte at a time; zeros once it is exhausted.
struct Input<'a> {
    data: &'a [u8],
    at: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let byte = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        byte
    }

    /// True for one byte value in `n`.
    fn one_in(&mut self, n: u8) -> bool {
        self.byte().is_multiple_of(n)
    }

    fn done(&self) -> bool {
        self.at >= self.data.len()
    }

    /// Mostly small values, so inputs meet the replica's state; sometimes huge ones.
    fn number(&mut self) -> u64 {
        match self.byte() {
            250 => u64::MAX,
            251 => u64::MAX - 1,
            252 => u64::from(u32::MAX),
            byte => u64::from(byte % 24),
        }
    }

    fn node(&mut self) -> NodeId {
        // 1 is the replica itself, 4 a stranger.
        NodeId(u64::from(self.byte() % 4) + 1)
    }

    fn entries(&mut self, prev_index: LogIndex, term: u64) -> Vec<Entry> {
        let count = usize::from(self.byte() % 6);
        let contiguous = !self.one_in(8);
        (0..count)
            .map(|k| Entry {
                index: if contiguous {
                    LogIndex(prev_index.0.saturating_add(k as u64 + 1))
                } else {
                    LogIndex(self.number())
                },
                term: Term(if contiguous { term } else { self.number() }),
                kind: match self.byte() % 8 {
                    0..=3 => EntryKind::Normal,
                    4 | 5 => EntryKind::Noop,
                    6 => EntryKind::Verify,
                    _ => EntryKind::Configuration,
                },
                data: match self.byte() % 4 {
                    0 => self.configuration().encode().into(),
                    _ => vec![self.byte(); usize::from(self.byte() % 40)].into(),
                },
            })
            .collect()
    }

    /// A configuration over nodes 1–5, possibly joint, with learners; valid or not.
    fn configuration(&mut self) -> Configuration {
        let mut sets: [Vec<NodeId>; 3] = Default::default();
        for set in &mut sets {
            let bits = self.byte();
            *set = (1..=5u64)
                .filter(|k| bits & (1 << k) != 0)
                .map(NodeId)
                .collect();
        }
        let [voters, outgoing, learners] = sets;
        Configuration::with_sets(&voters, &outgoing, &learners).unwrap_or_else(|_| {
            Configuration::new(&[NodeId(1), NodeId(2), NodeId(3)]).expect("voters")
        })
    }

    fn message(&mut self) -> Message {
        let from = self.node();
        let to = if self.one_in(16) {
            self.node()
        } else {
            NodeId(1)
        };
        let term = self.number();
        let body = match self.byte() % 12 {
            0 => {
                let prev_index = LogIndex(self.number());
                let prev_term = Term(self.number().min(term));
                let entries = self.entries(prev_index, term);
                MessageBody::AppendEntries(AppendEntries {
                    prev_index,
                    prev_term,
                    entries,
                    commit: LogIndex(self.number()),
                })
            }
            1 => MessageBody::AppendResponse(AppendResponse::Accepted {
                match_index: LogIndex(self.number()),
            }),
            2 => MessageBody::AppendResponse(AppendResponse::Rejected {
                rejected_index: LogIndex(self.number()),
                hint: ConflictHint {
                    conflict_term: (self.one_in(2)).then(|| Term(self.number())),
                    conflict_index: LogIndex(self.number()),
                },
            }),
            3 => MessageBody::RequestVote(VoteRequest {
                kind: if self.one_in(2) {
                    VoteKind::Vote
                } else {
                    VoteKind::PreVote
                },
                last_index: LogIndex(self.number()),
                last_term: Term(self.number()),
                transfer: self.one_in(4),
            }),
            4 => MessageBody::VoteResponse(VoteResponse {
                kind: if self.one_in(2) {
                    VoteKind::Vote
                } else {
                    VoteKind::PreVote
                },
                granted: !self.one_in(4),
            }),
            5 => MessageBody::Heartbeat(Heartbeat {
                commit: LogIndex(self.number()),
                read_round: self.number(),
            }),
            6 => MessageBody::HeartbeatResponse(HeartbeatResponse {
                read_round: self.number(),
            }),
            7 => MessageBody::Quiesce(Quiesce {
                commit: LogIndex(self.number()),
                read_round: self.number(),
            }),
            8 => {
                let total_bytes = self.number();
                MessageBody::InstallSnapshot(InstallSnapshot {
                    meta: SnapshotMeta {
                        index: LogIndex(self.number()),
                        term: Term(self.number().min(term)),
                        configuration: self.configuration(),
                    },
                    offset: self.number().min(total_bytes),
                    total_bytes,
                    data: vec![self.byte(); usize::from(self.byte() % 8)].into(),
                })
            }
            9 => MessageBody::SnapshotResponse(SnapshotResponse {
                index: LogIndex(self.number()),
                next_offset: self.number(),
            }),
            10 => MessageBody::VerifyReport(VerifyReport {
                index: LogIndex(self.number()),
                hash: self.number(),
            }),
            _ => MessageBody::TimeoutNow,
        };
        Message {
            from,
            to,
            term: Term(term),
            body,
        }
    }
}

/// Drives one replica with the inputs `data` decodes to; returns how many messages it took.
///
/// # Panics
/// Only if the replica breaks an invariant or panics on an input: that is the bug the
/// fuzzer looks for.
pub fn drive(data: &[u8]) -> usize {
    let voters = [NodeId(1), NodeId(2), NodeId(3)];
    let mut cfg = Config::new(NodeId(1), 7);
    cfg.election_timeout_ticks = 4;
    cfg.heartbeat_interval_ticks = 1;
    cfg.lease_ticks = 2;
    cfg.inflight_messages_max = 2;
    cfg.append_entries_max = 3;
    cfg.proposal_bytes_max = 32;
    cfg.quiesce_after_ticks = 3;
    cfg.log_cache_entries_max = 2;
    cfg.snapshot_chunk_bytes_max = 5;
    cfg.compaction_tail_entries = 1;
    cfg.learner_catch_up_lag_entries = 2;
    cfg.verify_timeout_ticks = 6;
    let mut replica =
        RaftGroup::new(cfg, &voters, RestoredState::default()).expect("valid fuzz configuration");
    let mut input = Input { data, at: 0 };
    let mut unacknowledged: Vec<Ready> = Vec::new();
    let mut disk: Vec<Entry> = Vec::new();
    let mut taken = 0;
    while !input.done() {
        match input.byte() % 11 {
            0 | 1 => {
                for _ in 0..=input.byte() % 8 {
                    replica.tick();
                }
            }
            2 => {
                let _ = replica.propose(vec![input.byte(); usize::from(input.byte() % 48)]);
            }
            3 => {
                let mode = if input.one_in(2) {
                    ReadMode::ReadIndex
                } else {
                    ReadMode::Lease
                };
                let _ = replica.read_index(input.number(), mode);
            }
            4 => {
                let _ = replica.transfer_leader(input.node());
            }
            5 => {
                if let Some(ready) = replica.poll_ready() {
                    unacknowledged.push(ready);
                }
            }
            6 => {
                // Acknowledge a prefix of the outstanding Readies, in order, and apply.
                let count = usize::from(input.byte()) % (unacknowledged.len() + 1);
                acknowledge(&mut replica, &mut disk, unacknowledged.drain(..count));
            }
            7 => {
                if input.one_in(8) {
                    replica.stop();
                } else if input.one_in(2) {
                    replica.wake();
                }
            }
            8 => {
                let node = NodeId(u64::from(input.byte() % 5) + 1);
                let _ = match input.byte() % 6 {
                    0 => replica.add_voter(node),
                    1 => replica
                        .propose_change(&[MembershipChange::AddVoter(node)])
                        .map(|_| ()),
                    2 => replica
                        .propose_change(&[MembershipChange::RemoveVoter(node)])
                        .map(|_| ()),
                    3 => replica
                        .propose_change(&[MembershipChange::AddLearner(node)])
                        .map(|_| ()),
                    4 => replica
                        .propose_change(&[MembershipChange::PromoteLearner(node)])
                        .map(|_| ()),
                    _ => replica
                        .propose_change(&[MembershipChange::RemoveLearner(node)])
                        .map(|_| ()),
                };
            }
            9 => match input.byte() % 3 {
                0 => {
                    let _ = replica.propose_verify();
                }
                1 => {
                    let _ = replica.compact(LogIndex(input.number()));
                }
                _ => replica.on_state_hash(LogIndex(input.number()), input.number()),
            },
            _ => {
                if replica.step(input.message()).is_ok() {
                    taken += 1;
                }
            }
        }
        if unacknowledged.len() > 64 {
            // Bound the memory: a driver persists everything eventually.
            acknowledge(&mut replica, &mut disk, unacknowledged.drain(..));
        }
    }
    taken
}

/// What a driver whose durable log is `disk` (contiguous) answers to `fetch`: the entries
/// of its range. Shared by the test drivers (this one, the unit tests'
/// network, the simulator).
#[must_use]
pub fn answer_fetch(disk: &[Entry], fetch: LogFetch) -> Vec<Entry> {
    disk.iter()
        .filter(|entry| entry.index >= fetch.from && entry.index <= fetch.through)
        .cloned()
        .collect()
}

/// What a driver whose stored snapshot at `index` is `bytes` answers to `read`: the chunk
/// at its offset, or `None` when it holds another snapshot. Shared by the test drivers.
#[must_use]
pub fn answer_snapshot_read(
    index: LogIndex,
    bytes: &[u8],
    read: SnapshotRead,
) -> Option<SnapshotChunkData> {
    if index != read.index {
        return None;
    }
    let start = usize::try_from(read.offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let end = start.saturating_add(read.bytes_max).min(bytes.len());
    Some(SnapshotChunkData {
        data: bytes::Bytes::copy_from_slice(&bytes[start..end]),
        total_bytes: bytes.len() as u64,
    })
}

/// Reports Readies durable, in order (their entries land on `disk`), their committed
/// entries applied and their fetches answered from `disk`.
fn acknowledge(
    replica: &mut RaftGroup,
    disk: &mut Vec<Entry>,
    readies: impl Iterator<Item = Ready>,
) {
    for ready in readies {
        if let Some(install) = &ready.install_snapshot {
            let index = install.meta.index;
            disk.retain(|entry| install.keep_entries_after && entry.index > index);
        }
        if let Some(first) = ready.entries.first() {
            disk.retain(|entry| entry.index < first.index);
            disk.extend(ready.entries.iter().cloned());
        }
        replica.on_persisted(ready.id);
        if let Some(last) = ready.committed_entries.last() {
            replica.on_applied(last.index);
        }
        for fetch in ready.fetches {
            replica.on_fetched(fetch, answer_fetch(disk, fetch));
        }
        // The fuzzed replica's snapshot is 16 bytes of its index, read in chunks.
        for read in ready.snapshot_reads {
            let bytes = read.index.0.to_le_bytes().repeat(2);
            replica.on_snapshot_read(read, answer_snapshot_read(read.index, &bytes, read));
        }
    }
}
