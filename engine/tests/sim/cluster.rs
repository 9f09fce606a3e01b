//! One simulated run: nodes × groups of real `RaftGroup`s, a network that drops, duplicates,
//! delays (and so reorders) and partitions, disks whose unsynced writes a crash loses, clock
//! drift, and clients doing puts, gets and compare-and-sets on a key-value state machine;
//! snapshots, membership churn and consistency verification (`snapshots.rs`).
//! Safety invariants are checked after every event; liveness and linearizability at the end.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::hash::{Hash, Hasher};

use flotilla::raft::{
    Config, Entry, HardState, LogIndex, Message, NodeId, RaftGroup, ReadyId, RestoredState, Role,
    SnapshotInstall, SnapshotMeta, Term,
};

use crate::linearizability::Operation;
use crate::rng::Rng;

mod clients;
mod invariants;
mod snapshots;

/// Nominal tick length; each node's clock drifts from it.
const TICK_US: u64 = 10_000;
const ELECTION_TIMEOUT_TICKS: u32 = 10;
const HEARTBEAT_INTERVAL_TICKS: u32 = 2;
/// Drift is at most ±10%, so a lease is safe up to (base − 1)·0.9/1.1 ≈ 7.36 ticks (see
/// `Config::lease_ticks`); seeds pick one of these, 7 being the tightest safe value.
const LEASE_TICKS: [u32; 3] = [4, 6, 7];
const DRIFT_PER_MILLE_MAX: u64 = 100;
/// A client gives up on an operation after this long (its outcome becomes unknown), during
/// the fault phase only.
const CLIENT_TIMEOUT_US: u64 = 2_000_000;
/// After faults stop: every group must have a leader and every operation must finish
/// within this bound. The slowest swarm setting sets it: one entry per message, a window of
/// 8 and delays up to 60 ms that reorder freely make a follower hundreds of entries behind
/// catch up at about 40 entries/s (seed 19765 needed more than 6 s); a transport that keeps
/// a connection's order does not thrash like that.
const LIVENESS_US: u64 = 10_000_000;
/// Clients stop starting operations this long before the end.
const CLIENT_QUIET_US: u64 = 3_000_000;

/// The parameters one seed draws (swarm testing: each seed weighs the faults differently).
#[derive(Debug)]
struct Params {
    nodes: u64,
    groups: u64,
    clients_per_group: u64,
    keys: u64,
    drop_per_mille: u64,
    duplicate_per_mille: u64,
    delay_us_max: u64,
    fault_phase_us: u64,
    fault_interval_us: u64,
    crash_per_mille: u64,
    partition_per_mille: u64,
    transfer_per_mille: u64,
    /// Per mille of new leaders cut off from everyone shortly after their election: terms
    /// end with their first entries half replicated (the setting of the paper's Figure 8).
    leader_churn_per_mille: u64,
    lease_reads: bool,
    lease_ticks: u32,
    /// Per mille of messages delayed 1–3 election timeouts (a long tail).
    slow_message_per_mille: u64,
    /// Per mille of disk writes stalled 1–3 election timeouts.
    slow_write_per_mille: u64,
    inflight_messages_max: usize,
    append_entries_max: usize,
    /// `Config::quiesce_after_ticks` (0: never). Quiesced replicas are not ticked, as in the
    /// engine, and are woken when their leader's node crashes or is cut off from theirs.
    quiesce_after_ticks: u32,
    /// `Config::log_cache_entries_max`: small caches make leaders read evicted entries back
    /// from the simulated disk for lagging followers.
    log_cache_entries_max: usize,
    /// Nodes beyond the initial voters, whose replicas start as joining ones (churn adds
    /// them).
    spare_nodes: u64,
    /// Per mille of fault events that also ask a leader for a membership change.
    churn_per_mille: u64,
    /// Replicas snapshot every this many applied entries (0: never).
    snapshot_every: u64,
    /// `Config::compaction_tail_entries`.
    compaction_tail: usize,
    /// `Config::snapshot_chunk_bytes_max`.
    snapshot_chunk_bytes: usize,
    /// Per mille of fault events that also propose a verify entry.
    verify_per_mille: u64,
    /// Per mille of snapshot installs followed by a crash of the follower within 3 ms,
    /// before the install's write lands (the window in which a follower must not have
    /// acknowledged anything).
    install_crash_per_mille: u64,
}

enum Event {
    Tick {
        node: usize,
        incarnation: u64,
    },
    Deliver {
        group: usize,
        message: Message,
    },
    Persisted {
        node: usize,
        incarnation: u64,
        group: usize,
    },
    Client {
        client: usize,
    },
    Fault,
    /// Leader churn: cut `node` off from everyone (a fresh leader losing its network).
    IsolateNewLeader {
        node: usize,
    },
    Restart {
        node: usize,
    },
    /// A crash aimed at a follower that just installed a snapshot, before its write lands.
    CrashDuringInstall {
        node: usize,
    },
    Heal,
}

struct Write {
    id: ReadyId,
    hard_state: Option<HardState>,
    /// A received snapshot to install, with its bytes.
    install: Option<(SnapshotInstall, Vec<u8>)>,
    entries: Vec<Entry>,
    messages: Vec<Message>,
}

struct Replica {
    raft: RaftGroup,
    disk_hard_state: HardState,
    /// The durable log (contiguous; its first entry follows the compaction point).
    disk_entries: Vec<Entry>,
    /// The durable snapshot and its bytes.
    disk_snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    /// Snapshot chunks received so far (lost on a crash).
    staging: Vec<u8>,
    writes: VecDeque<Write>,
    last_write_done_us: u64,
    kv: BTreeMap<u64, u64>,
    applied: LogIndex,
    was_leader: bool,
    last_commit: LogIndex,
    last_term: Term,
}

struct Node {
    alive: bool,
    incarnation: u64,
    tick_us: u64,
    replicas: Vec<Replica>,
}

enum Pending {
    Write {
        node: usize,
        incarnation: u64,
        index: LogIndex,
        term: Term,
        /// The payload's hash: success is credited only for this very entry.
        data_hash: u64,
    },
    Read {
        node: usize,
        ctx: u64,
    },
}

struct Client {
    group: usize,
    leader_hint: Option<usize>,
    pending: Option<(usize, Pending)>,
    sequence: u64,
}

/// Counts for the summary line.
#[derive(Default, Clone, Debug)]
pub(crate) struct Totals {
    seeds: u64,
    events: u64,
    ops_ok: u64,
    ops_unknown: u64,
    ops_failed: u64,
    elections: u64,
    crashes: u64,
    partitions: u64,
    transfers: u64,
    quiesces: u64,
    fetches: u64,
    changes: u64,
    snapshots_taken: u64,
    snapshot_chunks: u64,
    snapshots_installed: u64,
    verifications: u64,
}

impl Totals {
    pub(crate) fn add(&mut self, outcome: &Outcome) {
        let t = &outcome.totals;
        self.seeds += 1;
        self.events += t.events;
        self.ops_ok += t.ops_ok;
        self.ops_unknown += t.ops_unknown;
        self.ops_failed += t.ops_failed;
        self.elections += t.elections;
        self.crashes += t.crashes;
        self.partitions += t.partitions;
        self.transfers += t.transfers;
        self.quiesces += t.quiesces;
        self.fetches += t.fetches;
        self.changes += t.changes;
        self.snapshots_taken += t.snapshots_taken;
        self.snapshot_chunks += t.snapshot_chunks;
        self.snapshots_installed += t.snapshots_installed;
        self.verifications += t.verifications;
    }
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} events, ops {} ok / {} unknown / {} refused-or-lost, {} leaders elected, {} crashes, {} partitions, {} transfers, {} leader quiesces, {} fetches of evicted entries, {} membership changes, {} snapshots taken, {} chunks read, {} installed, {} verifications",
            self.events,
            self.ops_ok,
            self.ops_unknown,
            self.ops_failed,
            self.elections,
            self.crashes,
            self.partitions,
            self.transfers,
            self.quiesces,
            self.fetches,
            self.changes,
            self.snapshots_taken,
            self.snapshot_chunks,
            self.snapshots_installed,
            self.verifications
        )
    }
}

/// The result of one seed.
pub(crate) struct Outcome {
    pub(crate) failure: Option<String>,
    pub(crate) summary: String,
    pub(crate) totals: Totals,
}

pub(crate) struct Simulation {
    seed: u64,
    rng: Rng,
    /// Draws the crashes aimed at snapshot installs, apart from `rng`, so that seeds
    /// without them keep their event sequences.
    install_crash_rng: Rng,
    params: Params,
    now_us: u64,
    sequence: u64,
    events: BTreeMap<(u64, u64), Event>,
    nodes: Vec<Node>,
    clients: Vec<Client>,
    cut: BTreeSet<(usize, usize)>,
    faults_on: bool,
    history: Vec<Operation>,
    /// Operations known not to have happened (refused, or their entry was replaced).
    history_void: Vec<bool>,
    /// When each operation was invoked, in simulated µs (for client timeouts).
    history_invoked_us: Vec<u64>,
    /// The history's clock: strictly increasing across every invocation and completion, so
    /// that two things done in the same simulated µs are still ordered as they happened.
    history_stamp: u64,
    next_read_ctx: u64,
    // Invariant state.
    leaders: HashMap<(usize, Term), usize>,
    entries_seen: HashMap<(usize, LogIndex, Term), (u64, Term)>,
    /// Per group, every entry applied anywhere: its term, payload hash, and the highest
    /// leader term known when it was first applied (the term that committed it is at most
    /// that).
    applied_global: Vec<BTreeMap<LogIndex, (Term, u64, Term)>>,
    /// Per group, the highest term any leader was elected in so far.
    leader_term_max: Vec<Term>,
    failure: Option<String>,
    totals: Totals,
    /// `SIM_TRACE=1`: print every delivered message.
    trace: bool,
}

fn data_hash(entry: &Entry) -> u64 {
    let mut hasher = DefaultHasher::new();
    entry.kind.hash(&mut hasher);
    entry.data.hash(&mut hasher);
    hasher.finish()
}

impl Simulation {
    pub(crate) fn from_seed(seed: u64) -> Simulation {
        let mut rng = Rng::new(seed);
        let params = Params {
            nodes: rng.pick(&[3, 3, 5]),
            groups: rng.range(1, 5),
            clients_per_group: rng.range(1, 4),
            keys: rng.range(1, 4),
            drop_per_mille: rng.pick(&[0, 10, 50, 150]),
            duplicate_per_mille: rng.pick(&[0, 10, 50]),
            delay_us_max: rng.pick(&[1_000, 5_000, 20_000, 60_000]),
            fault_phase_us: rng.range(3_000_000, 12_000_000),
            fault_interval_us: rng.pick(&[100_000, 300_000, 1_000_000]),
            crash_per_mille: rng.pick(&[0, 200, 400, 700]),
            partition_per_mille: rng.pick(&[0, 300, 600]),
            transfer_per_mille: rng.pick(&[0, 100, 300]),
            leader_churn_per_mille: rng.pick(&[0, 0, 200, 500]),
            lease_reads: rng.chance(500),
            lease_ticks: rng.pick(&LEASE_TICKS),
            slow_message_per_mille: rng.pick(&[0, 0, 10, 50]),
            slow_write_per_mille: rng.pick(&[0, 0, 5, 20]),
            inflight_messages_max: usize::try_from(rng.pick(&[1, 4, 64])).expect("small"),
            append_entries_max: usize::try_from(rng.pick(&[1, 2, 16, 1024])).expect("small"),
            // Drawn from a second generator, so that seeds keep the parameters they had
            // before quiescence existed.
            quiesce_after_ticks: Rng::new(seed ^ 0x5155_4945_5343_4500).pick(&[0, 0, 3, 12]),
            log_cache_entries_max: usize::try_from(
                Rng::new(seed ^ 0x4556_4943_5400).pick(&[1, 4, 64, 1024]),
            )
            .expect("small"),
            spare_nodes: 0,
            churn_per_mille: 0,
            snapshot_every: 0,
            compaction_tail: 0,
            snapshot_chunk_bytes: 1,
            verify_per_mille: 0,
            install_crash_per_mille: 0,
        };
        // Membership, snapshots and verification: drawn from a third generator.
        let mut membership = Rng::new(seed ^ 0x4d45_4d42_4552);
        let params = Params {
            spare_nodes: membership.pick(&[0, 1, 2]),
            churn_per_mille: membership.pick(&[0, 300, 600]),
            snapshot_every: membership.pick(&[0, 5, 20, 100]),
            compaction_tail: usize::try_from(membership.pick(&[0, 3, 50])).expect("small"),
            snapshot_chunk_bytes: usize::try_from(membership.pick(&[7, 64, 4096])).expect("small"),
            verify_per_mille: membership.pick(&[0, 200]),
            install_crash_per_mille: Rng::new(seed ^ 0x494e_5354_414c_4c00).pick(&[0, 300]),
            ..params
        };
        // Tiny messages split a new leader's old entries from its no-op (the Figure 8 setting);
        // with a window of one message as well, a lagging follower could not catch up within
        // the liveness bound.
        let params = Params {
            inflight_messages_max: if params.append_entries_max <= 2 {
                params.inflight_messages_max.max(8)
            } else {
                params.inflight_messages_max
            },
            ..params
        };
        let mut simulation = Simulation {
            seed,
            rng,
            install_crash_rng: Rng::new(seed ^ 0x4352_4153_4800),
            now_us: 0,
            sequence: 0,
            events: BTreeMap::new(),
            nodes: Vec::new(),
            clients: Vec::new(),
            cut: BTreeSet::new(),
            faults_on: true,
            history: Vec::new(),
            history_void: Vec::new(),
            history_invoked_us: Vec::new(),
            history_stamp: 0,
            next_read_ctx: 1,
            leaders: HashMap::new(),
            entries_seen: HashMap::new(),
            applied_global: (0..params.groups).map(|_| BTreeMap::new()).collect(),
            leader_term_max: (0..params.groups).map(|_| Term(0)).collect(),
            failure: None,
            totals: Totals::default(),
            trace: std::env::var_os("SIM_TRACE").is_some(),
            params,
        };
        for node in 0..simulation.params.nodes + simulation.params.spare_nodes {
            let drift = simulation.rng.range(0, 2 * DRIFT_PER_MILLE_MAX + 1);
            let tick_us = TICK_US * (1000 - DRIFT_PER_MILLE_MAX + drift) / 1000;
            let node = usize::try_from(node).expect("small");
            let replicas = (0..simulation.params.groups)
                .map(|group| {
                    simulation.new_replica(
                        node,
                        usize::try_from(group).expect("small"),
                        RestoredState::default(),
                    )
                })
                .collect();
            simulation.nodes.push(Node {
                alive: true,
                incarnation: 0,
                tick_us,
                replicas,
            });
            let first_tick = simulation.rng.range(1, TICK_US);
            simulation.schedule(
                first_tick,
                Event::Tick {
                    node,
                    incarnation: 0,
                },
            );
        }
        for group in 0..simulation.params.groups {
            for _ in 0..simulation.params.clients_per_group {
                let client = simulation.clients.len();
                simulation.clients.push(Client {
                    group: usize::try_from(group).expect("small"),
                    leader_hint: None,
                    pending: None,
                    sequence: 0,
                });
                let at = simulation.rng.range(100_000, 500_000);
                simulation.schedule(at, Event::Client { client });
            }
        }
        let first_fault = simulation.params.fault_interval_us;
        simulation.schedule(first_fault, Event::Fault);
        let heal_at = simulation.params.fault_phase_us;
        simulation.schedule(heal_at, Event::Heal);
        simulation
    }

    fn node_id(node: usize) -> NodeId {
        NodeId(node as u64 + 1)
    }

    fn new_replica(&mut self, node: usize, group: usize, restored: RestoredState) -> Replica {
        // Spare nodes join later: their replicas learn the configuration from the leader.
        let voters: Vec<NodeId> = if (node as u64) < self.params.nodes {
            (0..self.params.nodes).map(|n| NodeId(n + 1)).collect()
        } else {
            Vec::new()
        };
        let mut cfg = Config::new(Self::node_id(node), self.rng.next_u64());
        cfg.election_timeout_ticks = ELECTION_TIMEOUT_TICKS;
        cfg.heartbeat_interval_ticks = HEARTBEAT_INTERVAL_TICKS;
        cfg.lease_ticks = self.params.lease_ticks;
        cfg.inflight_messages_max = self.params.inflight_messages_max;
        cfg.append_entries_max = self.params.append_entries_max;
        cfg.quiesce_after_ticks = self.params.quiesce_after_ticks;
        cfg.log_cache_entries_max = self.params.log_cache_entries_max;
        cfg.compaction_tail_entries = self.params.compaction_tail;
        cfg.snapshot_chunk_bytes_max = self.params.snapshot_chunk_bytes;
        cfg.learner_catch_up_lag_entries = 4;
        cfg.verify_timeout_ticks = 4 * ELECTION_TIMEOUT_TICKS;
        let disk_hard_state = restored.hard_state;
        let disk_entries = restored.entries.clone();
        let raft = RaftGroup::new(cfg, &voters, restored).expect("valid simulator config");
        let _ = group;
        Replica {
            raft,
            disk_hard_state,
            disk_entries,
            disk_snapshot: None,
            staging: Vec::new(),
            writes: VecDeque::new(),
            last_write_done_us: 0,
            kv: BTreeMap::new(),
            applied: LogIndex(0),
            was_leader: false,
            last_commit: LogIndex(0),
            last_term: disk_hard_state.term,
        }
    }

    /// The next tick of the history's clock.
    fn stamp(&mut self) -> u64 {
        self.history_stamp += 1;
        self.history_stamp
    }

    fn schedule(&mut self, at_us: u64, event: Event) {
        self.sequence += 1;
        self.events.insert((at_us, self.sequence), event);
    }

    fn fail(&mut self, reason: String) {
        if self.failure.is_none() {
            self.failure = Some(format!("at {} µs: {reason}", self.now_us));
        }
    }

    pub(crate) fn run(mut self) -> Outcome {
        let end_us = self.params.fault_phase_us + LIVENESS_US;
        while let Some(((at_us, _), event)) = self.events.pop_first() {
            if at_us > end_us || self.failure.is_some() {
                break;
            }
            self.now_us = at_us;
            self.totals.events += 1;
            self.handle(event);
        }
        if self.failure.is_none() {
            self.check_liveness();
        }
        if self.failure.is_none() {
            self.check_linearizable();
        }
        for (slot, op) in self.history.iter().enumerate() {
            if self.history_void[slot] {
                self.totals.ops_failed += 1;
            } else if op.complete.is_some() {
                self.totals.ops_ok += 1;
            } else {
                self.totals.ops_unknown += 1;
            }
        }
        let summary = format!("{:?}; {}", self.params, self.totals);
        Outcome {
            failure: self.failure,
            summary,
            totals: self.totals,
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick { node, incarnation } => {
                if !self.nodes[node].alive || self.nodes[node].incarnation != incarnation {
                    return;
                }
                for group in 0..self.nodes[node].replicas.len() {
                    if self.nodes[node].replicas[group].raft.is_quiesced() {
                        // Like the engine: a quiesced replica is not ticked; it is woken
                        // when its leader's node is gone (an oracle stands in for the
                        // engine's silence detector), and now and then for no reason while faults
                        // are on.
                        if self.leader_lost(node, group) || (self.faults_on && self.rng.chance(5)) {
                            self.nodes[node].replicas[group].raft.wake();
                            self.process(node, group);
                        }
                        continue;
                    }
                    let raft = &mut self.nodes[node].replicas[group].raft;
                    raft.tick();
                    if raft.is_quiesced() {
                        self.totals.quiesces += 1;
                    }
                    self.process(node, group);
                }
                let next = self.now_us + self.nodes[node].tick_us;
                self.schedule(next, Event::Tick { node, incarnation });
            }
            Event::Deliver { group, message } => {
                if self.trace {
                    println!("{} µs deliver g{group} {message:?}", self.now_us);
                }
                let to = usize::try_from(message.to.0 - 1).expect("small");
                if !self.nodes[to].alive {
                    return;
                }
                let description = format!("{message:?}");
                if let Err(error) = self.nodes[to].replicas[group].raft.step(message) {
                    self.fail(format!(
                        "step refused a simulator message: {error}: {description}"
                    ));
                    return;
                }
                self.process(to, group);
            }
            Event::Persisted {
                node,
                incarnation,
                group,
            } => {
                if self.nodes[node].incarnation != incarnation {
                    return; // The crash lost this write.
                }
                let replica = &mut self.nodes[node].replicas[group];
                let write = replica
                    .writes
                    .pop_front()
                    .expect("a write per Persisted event");
                if let Some(hard_state) = write.hard_state {
                    replica.disk_hard_state = hard_state;
                }
                // A snapshot taken here since (from entries applied after the install) is
                // newer: the install changes nothing on disk any more.
                let newer_on_disk = |index| {
                    replica
                        .disk_snapshot
                        .as_ref()
                        .is_some_and(|(meta, _)| meta.index >= index)
                };
                if let Some((install, bytes)) = write.install
                    && !newer_on_disk(install.meta.index)
                {
                    let index = install.meta.index;
                    replica
                        .disk_entries
                        .retain(|entry| install.keep_entries_after && entry.index > index);
                    replica.disk_snapshot = Some((install.meta, bytes));
                }
                if let Some(first) = write.entries.first() {
                    let first = first.index;
                    replica.disk_entries.retain(|entry| entry.index < first);
                    replica.disk_entries.extend(write.entries);
                }
                replica.raft.on_persisted(write.id);
                for message in write.messages {
                    self.send(group, message);
                }
                self.process(node, group);
            }
            Event::Client { client } => self.client_step(client),
            Event::Fault => self.inject_fault(),
            Event::IsolateNewLeader { node } => {
                if self.faults_on {
                    self.cut.clear();
                    for other in (0..self.nodes.len()).filter(|&other| other != node) {
                        self.cut.insert((node, other));
                        self.cut.insert((other, node));
                    }
                    self.totals.partitions += 1;
                }
            }
            Event::Restart { node } => self.restart(node),
            Event::CrashDuringInstall { node } => {
                if self.faults_on && self.nodes[node].alive {
                    self.crash(node);
                    let back = self.now_us + self.install_crash_rng.range(50_000, 500_000);
                    self.schedule(back, Event::Restart { node });
                }
            }
            Event::Heal => {
                self.faults_on = false;
                self.cut.clear();
                for node in 0..self.nodes.len() {
                    if !self.nodes[node].alive {
                        self.restart(node);
                    }
                }
            }
        }
    }

    /// Whether the leader `node`'s replica of `group` follows has crashed or is cut off.
    fn leader_lost(&self, node: usize, group: usize) -> bool {
        let status = self.nodes[node].replicas[group].raft.status();
        match status.leader {
            Some(leader) if leader != status.id => {
                let leader = usize::try_from(leader.0 - 1).expect("small");
                !self.nodes[leader].alive || self.cut.contains(&(leader, node))
            }
            _ => false,
        }
    }

    fn send(&mut self, group: usize, message: Message) {
        let from = usize::try_from(message.from.0 - 1).expect("small");
        let to = usize::try_from(message.to.0 - 1).expect("small");
        if !self.nodes[from].alive || self.cut.contains(&(from, to)) {
            return;
        }
        if self.faults_on && self.rng.chance(self.params.drop_per_mille) {
            return;
        }
        let copies = if self.faults_on && self.rng.chance(self.params.duplicate_per_mille) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let election_timeout_us = u64::from(ELECTION_TIMEOUT_TICKS) * TICK_US;
            let delay = if self.faults_on && self.rng.chance(self.params.slow_message_per_mille) {
                self.rng.range(election_timeout_us, 3 * election_timeout_us)
            } else {
                self.rng.range(100, self.params.delay_us_max)
            };
            self.schedule(
                self.now_us + delay,
                Event::Deliver {
                    group,
                    message: message.clone(),
                },
            );
        }
    }

    /// Drains every Ready of one replica, checking invariants on the way.
    fn process(&mut self, node: usize, group: usize) {
        loop {
            let Some(ready) = self.nodes[node].replicas[group].raft.poll_ready() else {
                break;
            };
            self.check_log_matching(node, group, &ready.entries);
            for message in ready.messages {
                self.send(group, message);
            }
            // Evicted entries are durable: read them back from the simulated disk.
            for fetch in ready.fetches {
                self.totals.fetches += 1;
                let replica = &mut self.nodes[node].replicas[group];
                let fetched = flotilla::raft::fuzzing::answer_fetch(&replica.disk_entries, fetch);
                replica.raft.on_fetched(fetch, fetched);
            }
            for read in ready.snapshot_reads {
                self.answer_snapshot_read(node, group, read);
            }
            self.check_verifications(group, ready.verifications);
            let Ok(install) =
                self.receive_snapshot(node, group, ready.snapshot_chunks, ready.install_snapshot)
            else {
                return;
            };
            let election_timeout_us = u64::from(ELECTION_TIMEOUT_TICKS) * TICK_US;
            let delay = if self.faults_on && self.rng.chance(self.params.slow_write_per_mille) {
                self.rng.range(election_timeout_us, 3 * election_timeout_us)
            } else {
                self.rng.range(50, 2_000)
            };
            let incarnation = self.nodes[node].incarnation;
            let replica = &mut self.nodes[node].replicas[group];
            let done_us = replica.last_write_done_us.max(self.now_us + delay);
            replica.last_write_done_us = done_us;
            replica.writes.push_back(Write {
                id: ready.id,
                hard_state: ready.hard_state,
                install,
                entries: ready.entries,
                messages: ready.persisted_messages,
            });
            self.schedule(
                done_us,
                Event::Persisted {
                    node,
                    incarnation,
                    group,
                },
            );
            for entry in &ready.committed_entries {
                self.apply_entry(node, group, entry);
            }
            if let Some(last) = ready.committed_entries.last() {
                let replica = &mut self.nodes[node].replicas[group];
                replica.applied = last.index;
                replica.raft.on_applied(last.index);
            }
            for read in ready.read_states {
                self.complete_read(node, group, read.ctx, read.result);
            }
            self.maybe_snapshot(node, group);
        }
        self.check_replica(node, group);
    }

    fn inject_fault(&mut self) {
        if !self.faults_on {
            return;
        }
        let nodes = self.nodes.len();
        if self.rng.chance(self.params.crash_per_mille) {
            // Half the crashes hit a current leader: that is where the commit rules (Figure 8)
            // and the election restriction are put to the test.
            let random = usize::try_from(self.rng.range(0, nodes as u64)).expect("small");
            let group = usize::try_from(self.rng.range(0, self.params.groups)).expect("small");
            let leader = (0..nodes).find(|&n| {
                self.nodes[n].alive
                    && self.nodes[n].replicas[group].raft.status().role == Role::Leader
            });
            let node = match leader {
                Some(leader) if self.rng.chance(500) => leader,
                _ => random,
            };
            if self.nodes[node].alive {
                self.crash(node);
                let back = self.now_us + self.rng.range(50_000, 1_500_000);
                self.schedule(back, Event::Restart { node });
            }
        }
        if self.rng.chance(self.params.partition_per_mille) {
            self.cut.clear();
            self.totals.partitions += 1;
            match self.rng.range(0, 5) {
                0 => {
                    // Symmetric: split the nodes in two random sides.
                    let side: Vec<bool> = (0..nodes).map(|_| self.rng.chance(500)).collect();
                    for a in 0..nodes {
                        for b in 0..nodes {
                            if side[a] != side[b] {
                                self.cut.insert((a, b));
                            }
                        }
                    }
                }
                1 => {
                    // One-way: a node can send but not receive (or the reverse).
                    let node = usize::try_from(self.rng.range(0, nodes as u64)).expect("small");
                    let inbound = self.rng.chance(500);
                    for other in (0..nodes).filter(|&other| other != node) {
                        self.cut.insert(if inbound {
                            (other, node)
                        } else {
                            (node, other)
                        });
                    }
                }
                2 => {
                    // Partial: every link cut on its own with probability 1/3, in one or both
                    // directions (a bridge: nodes that see both sides while the sides do
                    // not see each other).
                    for a in 0..nodes {
                        for b in (a + 1)..nodes {
                            if self.rng.chance(333) {
                                self.cut.insert((a, b));
                                if self.rng.chance(700) {
                                    self.cut.insert((b, a));
                                }
                            }
                        }
                    }
                }
                3 => {
                    // A leader loses one follower only: that follower times out and runs for
                    // election while the others still hear the leader (whose lease must keep
                    // them from voting).
                    let group =
                        usize::try_from(self.rng.range(0, self.params.groups)).expect("small");
                    let leader = (0..nodes).find(|&n| {
                        self.nodes[n].alive
                            && self.nodes[n].replicas[group].raft.status().role == Role::Leader
                    });
                    if let Some(leader) = leader {
                        let other =
                            usize::try_from(self.rng.range(0, nodes as u64)).expect("small");
                        if other != leader {
                            self.cut.insert((leader, other));
                            self.cut.insert((other, leader));
                        }
                    }
                }
                _ => {} // Heal.
            }
        }
        if self.rng.chance(self.params.churn_per_mille) {
            self.churn();
        }
        self.maybe_verify();
        if self.rng.chance(self.params.transfer_per_mille) {
            // Leadership transfer to a random voter, on a random group.
            let group = usize::try_from(self.rng.range(0, self.params.groups)).expect("small");
            let to = NodeId(self.rng.range(1, nodes as u64 + 1));
            let leader = (0..nodes).find(|&n| {
                self.nodes[n].alive
                    && self.nodes[n].replicas[group].raft.status().role == Role::Leader
            });
            if let Some(leader) = leader
                && self.nodes[leader].replicas[group]
                    .raft
                    .configuration()
                    .is_voter(to)
            {
                self.totals.transfers += 1;
                self.nodes[leader].replicas[group]
                    .raft
                    .transfer_leader(to)
                    .expect("leader transfers to a voter");
                self.process(leader, group);
            }
        }
        let next = self.now_us + self.params.fault_interval_us;
        self.schedule(next, Event::Fault);
    }

    fn crash(&mut self, node: usize) {
        if self.trace {
            println!("{} µs CRASH n{}", self.now_us, node + 1);
        }
        self.totals.crashes += 1;
        let state = &mut self.nodes[node];
        state.alive = false;
        state.incarnation += 1;
        for replica in &mut state.replicas {
            replica.writes.clear();
        }
        // Operations waiting on this node: their outcome is unknown now.
        for client in &mut self.clients {
            let at_node = match &client.pending {
                Some((_, Pending::Write { node: at, .. }))
                | Some((_, Pending::Read { node: at, .. })) => *at == node,
                None => false,
            };
            if at_node {
                if let Some((slot, Pending::Read { .. })) = client.pending {
                    self.history_void[slot] = true; // A read has no effect: drop it.
                }
                client.pending = None;
            }
        }
    }

    fn restart(&mut self, node: usize) {
        if self.nodes[node].alive {
            return;
        }
        if self.trace {
            println!("{} µs RESTART n{}", self.now_us, node + 1);
        }
        let groups = self.nodes[node].replicas.len();
        for group in 0..groups {
            let replica = &self.nodes[node].replicas[group];
            let snapshot = replica.disk_snapshot.clone();
            let snapshot_index = snapshot
                .as_ref()
                .map_or(LogIndex(0), |(meta, _)| meta.index);
            let restored = RestoredState {
                hard_state: replica.disk_hard_state,
                snapshot: snapshot.as_ref().map(|(meta, _)| meta.clone()),
                entries: replica
                    .disk_entries
                    .iter()
                    .filter(|entry| entry.index > snapshot_index)
                    .cloned()
                    .collect(),
                applied: snapshot_index,
            };
            let disk_entries = replica.disk_entries.clone();
            let mut fresh = self.new_replica(node, group, restored);
            // The disk stays as it was (the tail below the snapshot included); the map
            // restarts from the snapshot.
            fresh.disk_entries = disk_entries;
            if let Some((_, bytes)) = &snapshot {
                fresh.kv = snapshots::decode_kv(bytes).expect("a snapshot this simulator wrote");
                fresh.applied = snapshot_index;
            }
            fresh.disk_snapshot = snapshot;
            self.nodes[node].replicas[group] = fresh;
        }
        let state = &mut self.nodes[node];
        state.alive = true;
        let incarnation = state.incarnation;
        let tick = self.now_us + self.nodes[node].tick_us;
        self.schedule(tick, Event::Tick { node, incarnation });
        for group in 0..groups {
            self.process(node, group);
        }
    }
}

impl fmt::Debug for Simulation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Simulation {{ seed: {}, params: {:?} }}",
            self.seed, self.params
        )
    }
}
