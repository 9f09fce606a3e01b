//! One shard's driver: many Raft groups over one write-ahead log and one transport, the
//! loop of ../shared/DESIGN.md, with no executor of its own.
//!
//! [`Shard::run_once`] does one turn of the loop:
//! 1. take what the transport received and step every message into its group;
//! 2. take the `Ready` of every group with work: its `messages` go into this turn's
//!    outbound batches at once (a leader's AppendEntries leave before its own append is
//!    durable), its entries and hard state into this turn's ONE write batch;
//! 3. submit that batch as one record (group commit: one write and one sync for all
//!    groups), without waiting for it;
//! 4. send the outbound batches, one frame per destination node;
//! 5. for every earlier record now durable, in order: acknowledge its Readies
//!    (`on_persisted`), queue their `persisted_messages`, apply their committed entries to
//!    the groups' state machines, complete the proposals made here, and send again.
//!
//! So while one record syncs, the shard keeps receiving, stepping and sending, and the next
//! record accumulates.
//!
//! Only groups given an input since their last poll are polled, and only groups that are
//! not quiesced are ticked, so idle groups cost nothing; `liveness` sends node keepalives
//! and wakes the quiesced groups whose leader's node fell silent.
//!
//! **Boundary:** the shard never blocks on a sync (the log's `submit` waits only when 64
//! records are already in flight); it reads no clock: time is [`Shard::tick`].

use std::collections::{BTreeMap, VecDeque};

use flotilla_net::{NodeId as NetNodeId, SendError, Transport, TransportEvent};
use flotilla_wal::{AppendError, LogIndex as WalLogIndex, Lsn, Wal, WriteBatch};

use crate::raft::{
    ChangeError, Config, ConfigError, Entry, EntryKind, LogIndex, Message, MessageBody, NodeId,
    ProposeError, Proposed, RaftGroup, ReadError, ReadState, ReadyId, Term, TransferError,
    Verification,
};
use crate::runtime::liveness::Liveness;
use crate::runtime::snapshots::{SnapshotError, SnapshotStore};
use crate::runtime::state_machine::StateMachine;
use crate::runtime::storage::{PersistError, RestoreError, persist_ready, read_entries};
use crate::runtime::wire::{GroupId, InboundMessage, OutboundBatches, WireError, decode_batch};

/// Bytes of received frames stepped in one turn, at most (plus one frame).
const RECEIVED_BYTES_PER_TURN_MAX: usize = 8 << 20;

/// Bytes of Readies gathered into one log record before it is submitted and the next
/// record started (plus one Ready). With the receive bound above and the engine's bound
/// on proposal bytes per turn, one Ready stays far below the log's record maximum.
const RECORD_BYTES_SOFT_MAX: usize = 8 << 20;

/// The shard cannot go on: its log failed. Nothing is retried (a failed sync may have lost
/// writes the kernel reported as done).
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// Writing or syncing the log failed.
    #[error("write-ahead log: {0}")]
    Wal(#[from] AppendError),
    /// A `Ready` could not be encoded for the log.
    #[error("persisting a ready: {0}")]
    Persist(#[from] PersistError),
    /// A snapshot could not be written or read: the log would otherwise refer to one
    /// that is not on disk.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// A received snapshot does not restore into the state machine.
    #[error("group {group:?}: the state machine refused a received snapshot: {reason}")]
    SnapshotRestore {
        /// The group.
        group: GroupId,
        /// The state machine's reason.
        reason: String,
    },
}

/// A group could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateGroupError {
    /// The group exists on this shard already.
    #[error("group {0:?} exists already")]
    Exists(GroupId),
    /// The log holds state for the group that cannot be restored.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// The members or the configuration are not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The group's snapshot file cannot be read.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The record that brings the group's log in line with its snapshot could not be
    /// written: the shard cannot go on.
    #[error(transparent)]
    Log(#[from] ShardError),
    /// The group's snapshot does not restore into the state machine.
    #[error("group {group:?}: the state machine refused its snapshot: {reason}")]
    SnapshotRestore {
        /// The group.
        group: GroupId,
        /// The state machine's reason.
        reason: String,
    },
}

/// A proposal was not accepted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardProposeError {
    /// No such group on this shard.
    #[error("group {0:?} is not on this shard")]
    UnknownGroup(GroupId),
    /// The group refused it (not the leader, too large, ...).
    #[error(transparent)]
    Raft(#[from] ProposeError),
}

/// A request other than a proposal was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ShardRequestError {
    /// No such group on this shard.
    #[error("group {0:?} is not on this shard")]
    UnknownGroup(GroupId),
    /// The group refused the read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The group refused the transfer.
    #[error(transparent)]
    Transfer(#[from] TransferError),
    /// The group refused the membership change.
    #[error(transparent)]
    Change(#[from] ChangeError),
    /// The group refused the verify entry.
    #[error(transparent)]
    Propose(#[from] ProposeError),
    /// The log refused the record that removes a group: the shard cannot go on.
    #[error(transparent)]
    Shard(#[from] ShardError),
}

/// How a read asked on this shard ended: its group's state machine has applied through
/// the read's index (`Ok`), or the read was refused and must be retried, elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadCompletion {
    /// The group.
    pub group: GroupId,
    /// The caller's context.
    pub ctx: u64,
    /// The outcome.
    pub result: Result<(), ReadError>,
}

/// How a proposal made on this shard ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The group.
    pub group: GroupId,
    /// Where the proposal went.
    pub proposed: Proposed,
    /// The state machine's result, or why there is none.
    pub outcome: Result<Vec<u8>, Unapplied>,
}

/// Why a proposal has no result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unapplied {
    /// The proposal's entry was replaced by an entry of a later term: it will never apply.
    Superseded,
    /// The outcome cannot be known here (this node's replica left the group, or a
    /// snapshot replaced the log before the entry applied here).
    Unknown(&'static str),
}

/// A shard that snapshots collects its log's segments this often (a collection walks
/// every group of the shard).
const COLLECTION_INTERVAL_TICKS: u32 = 50;

/// One group on this shard.
struct Slot<M> {
    raft: RaftGroup,
    machine: M,
    /// The group's last index in the records built so far (see `persist_ready`).
    last_index: LogIndex,
    /// Proposals made on this shard, waiting for their index to be applied.
    waiting: BTreeMap<LogIndex, Term>,
    /// The term of the last entry applied.
    applied_term: Term,
    /// In the shard's `ticking` list.
    ticking: bool,
    /// In the shard's `dirty` list.
    dirty: bool,
    /// Led by this replica at its last poll.
    leading: bool,
    /// Which creation of the group on this shard this is: Readies in flight for a removed
    /// replica must not be acknowledged to a new one of the same id.
    incarnation: u64,
}

impl<M> Slot<M> {
    /// The group was given an input: it may have a Ready, and unless quiesced it ticks.
    fn touch(&mut self, group: GroupId, ticking: &mut Vec<GroupId>, dirty: &mut Vec<GroupId>) {
        if !self.dirty {
            self.dirty = true;
            dirty.push(group);
        }
        if !self.ticking && !self.raft.is_quiesced() {
            self.ticking = true;
            ticking.push(group);
        }
    }
}

/// A `Ready` whose persistence is in flight.
struct PendingReady {
    group: GroupId,
    /// The slot's incarnation when the Ready was taken.
    incarnation: u64,
    id: ReadyId,
    persisted_messages: Vec<Message>,
    committed_entries: Vec<Entry>,
    read_states: Vec<ReadState>,
    /// A received snapshot's bytes, restored into the state machine before
    /// `committed_entries` are applied.
    restore: Option<Vec<u8>>,
}

/// The Readies of one turn, durable once the log's durable lsn reaches `lsn`.
struct InFlight {
    lsn: Lsn,
    readies: Vec<PendingReady>,
}

/// One shard of one node: its groups, its log, its transport. See the module docs.
pub struct Shard<T: Transport, M: StateMachine> {
    config: Config,
    wal: Wal,
    transport: T,
    groups: BTreeMap<GroupId, Slot<M>>,
    outbound: OutboundBatches,
    batch: WriteBatch,
    in_flight: VecDeque<InFlight>,
    completions: Vec<Completion>,
    read_completions: Vec<ReadCompletion>,
    /// Verifications the groups led here finished, not yet taken.
    verifications: Vec<(GroupId, Verification)>,
    events: Vec<TransportEvent>,
    inbound: Vec<InboundMessage>,
    wire_errors: Vec<WireError>,
    stats: ShardStats,
    /// Groups that are not quiesced: only these are ticked.
    ticking: Vec<GroupId>,
    /// Groups given an input since their last `poll_ready`: only these are polled.
    dirty: Vec<GroupId>,
    liveness: Liveness,
    peer_buffers: (Vec<NodeId>, Vec<NodeId>),
    /// The groups' snapshots (`None`: this shard never snapshots, and takes none).
    snapshots: Option<SnapshotStore>,
    /// The incarnation the next created slot gets.
    next_incarnation: u64,
    /// Ticks since the log's segments were last collected.
    ticks_since_collection: u32,
    /// A collection of the log's segments is due at the next turn.
    collection_due: bool,
    /// Compaction marks to write with the next record (their snapshots are on disk).
    compactions: Vec<(GroupId, LogIndex)>,
}

impl<T: Transport, M: StateMachine> Shard<T, M> {
    /// A shard of node `config.id` over `wal` (opened, recovered) and `transport`. `config`
    /// is the template of every group's Raft configuration; each group's seed is derived
    /// from it, the node id and the group id.
    pub fn new(config: Config, wal: Wal, transport: T) -> Shard<T, M> {
        Shard {
            outbound: OutboundBatches::new(config.id),
            wal,
            transport,
            groups: BTreeMap::new(),
            batch: WriteBatch::new(),
            in_flight: VecDeque::new(),
            completions: Vec::new(),
            read_completions: Vec::new(),
            verifications: Vec::new(),
            events: Vec::new(),
            inbound: Vec::new(),
            wire_errors: Vec::new(),
            stats: ShardStats::default(),
            ticking: Vec::new(),
            dirty: Vec::new(),
            liveness: Liveness::new(
                config.heartbeat_interval_ticks,
                config.election_timeout_ticks,
            ),
            peer_buffers: (Vec::new(), Vec::new()),
            snapshots: None,
            next_incarnation: 0,
            ticks_since_collection: 0,
            collection_due: false,
            compactions: Vec::new(),
            config,
        }
    }

    /// Snapshots each group's state machine into `store` every so many applied entries,
    /// compacts its log behind the snapshot, and sends snapshots to followers that need
    /// compacted entries. Call before creating groups (they restore from `store`).
    #[must_use]
    pub fn with_snapshots(mut self, store: SnapshotStore) -> Shard<T, M> {
        self.snapshots = Some(store);
        self
    }

    /// One unit of time for every group that is not quiesced; keepalives to peers this
    /// shard has sent nothing lately, and a wake-up for the quiesced groups led by a peer
    /// that fell silent (`liveness.rs`).
    pub fn tick(&mut self) {
        if self.snapshots.is_some() {
            self.ticks_since_collection += 1;
            if self.ticks_since_collection >= COLLECTION_INTERVAL_TICKS {
                self.ticks_since_collection = 0;
                self.collection_due = true;
            }
        }
        let (mut keepalive, mut silent) = std::mem::take(&mut self.peer_buffers);
        self.liveness.tick(&mut keepalive, &mut silent);
        for node in keepalive.drain(..) {
            self.outbound.keepalive(node);
        }
        for node in silent.drain(..) {
            self.wake_led_by(node);
        }
        self.peer_buffers = (keepalive, silent);
        let groups = &mut self.groups;
        let dirty = &mut self.dirty;
        self.ticking.retain(|group| {
            let slot = groups.get_mut(group).expect("ticking groups exist");
            slot.raft.tick();
            if !slot.dirty {
                slot.dirty = true;
                dirty.push(*group);
            }
            slot.ticking = !slot.raft.is_quiesced();
            slot.ticking
        });
    }

    /// Wakes every quiesced group whose leader is on `node`.
    /// Also wakes the quiesced groups this node leads with `node` as a voter: if this node
    /// is the one cut off, check-quorum then steps it down instead of it claiming to lead.
    fn wake_led_by(&mut self, node: NodeId) {
        let this = self.config.id;
        for (&group, slot) in &mut self.groups {
            let leader = slot.raft.status().leader;
            let led_by_silent = leader == Some(node);
            let led_here_with_silent = leader == Some(this) && slot.raft.voters().contains(&node);
            if slot.raft.is_quiesced() && (led_by_silent || led_here_with_silent) {
                slot.raft.wake();
                slot.touch(group, &mut self.ticking, &mut self.dirty);
            }
        }
    }

    /// One turn of the loop (module docs). Returns whether anything happened.
    pub fn run_once(&mut self) -> Result<bool, ShardError> {
        let received = self.receive();
        let collected = self.collect_readies()?;
        self.flush();
        let completed = self.complete_durable()?;
        self.flush();
        if self.collection_due {
            // Segments every group compacted past go; a group that holds an old segment
            // only through its hard state or mark has them rewritten, and the segment goes
            // at a later call.
            self.collection_due = false;
            self.wal.collect_garbage()?;
        }
        Ok(received || collected || completed)
    }

    /// Steps every message the transport received into its group.
    fn receive(&mut self) -> bool {
        self.transport.poll_events(&mut self.events);
        if self.events.is_empty() {
            return false;
        }
        // Step at most `RECEIVED_BYTES_PER_TURN_MAX` of frames per turn (the rest waits for
        // the next): what a turn appends to the log stays far below a record's maximum.
        let mut taken_bytes = 0;
        let mut taken = 0;
        for event in &self.events {
            if taken_bytes >= RECEIVED_BYTES_PER_TURN_MAX {
                break;
            }
            taken += 1;
            // Losses and closed connections need no action: Raft resends what matters.
            if let TransportEvent::Received { frame, peer } = event {
                self.liveness.heard(NodeId(peer.0));
                taken_bytes += frame.body().len();
                decode_batch(frame, &mut self.inbound, &mut self.wire_errors);
            }
        }
        self.events.drain(..taken);
        self.stats.rejected_messages += self.wire_errors.len() as u64;
        self.wire_errors.clear();
        for InboundMessage { group, message } in self.inbound.drain(..) {
            self.stats.messages_received += 1;
            let Some(slot) = self.groups.get_mut(&group) else {
                self.stats.unknown_group_messages += 1;
                continue;
            };
            if slot.raft.step(message).is_err() {
                self.stats.rejected_messages += 1;
            }
            slot.touch(group, &mut self.ticking, &mut self.dirty);
        }
        true
    }

    /// Takes every group's Ready: messages out now, persistence into one record.
    fn collect_readies(&mut self) -> Result<bool, ShardError> {
        let mut readies = Vec::new();
        let mut submitted_early = false;
        // Compaction marks behind snapshots already on disk.
        let compacting = !self.compactions.is_empty();
        for (group, through) in self.compactions.drain(..) {
            if self.groups.contains_key(&group) {
                self.batch
                    .compact(flotilla_wal::GroupId(group.0), WalLogIndex(through.0));
            }
        }
        let dirty = std::mem::take(&mut self.dirty);
        for &group in &dirty {
            let slot = self.groups.get_mut(&group).expect("dirty groups exist");
            slot.dirty = false;
            // Becoming leader appends a no-op, so the group is dirty when it happens.
            let leading = slot.raft.is_leader();
            if leading && !slot.leading {
                self.stats.elections_won += 1;
            }
            slot.leading = leading;
            while let Some(mut ready) = slot.raft.poll_ready() {
                for message in &ready.messages {
                    self.outbound.push(group, message);
                    self.stats.messages_sent += 1;
                    if let MessageBody::AppendEntries(append) = &message.body {
                        self.stats.entries_sent += append.entries.len() as u64;
                    }
                }
                // Entries a follower needs that left the leader's memory: they are durable,
                // so the log has them (a read of its memory map or of a write in flight).
                for &fetch in &ready.fetches {
                    self.stats.log_fetches += 1;
                    let entries = match read_entries(
                        &self.wal,
                        group,
                        fetch.from,
                        fetch.through,
                        fetch.bytes_max,
                    ) {
                        Ok(entries) => entries,
                        Err(error) => {
                            log::error!("group {group:?}: fetching {fetch:?}: {error}");
                            Vec::new()
                        }
                    };
                    slot.raft.on_fetched(fetch, entries);
                }
                // A leader's snapshot chunks come from the group's snapshot file.
                for &read in &ready.snapshot_reads {
                    self.stats.snapshot_chunks_sent += 1;
                    let chunk = match &self.snapshots {
                        Some(store) => store
                            .read_chunk(group, read.index, read.offset, read.bytes_max)
                            .unwrap_or_else(|error| {
                                log::error!("group {group:?}: reading {read:?}: {error}");
                                None
                            }),
                        None => None,
                    };
                    slot.raft.on_snapshot_read(read, chunk);
                }
                let restore = match &mut self.snapshots {
                    Some(store) => {
                        for chunk in &ready.snapshot_chunks {
                            store.stage(group, chunk.offset, &chunk.data);
                        }
                        match &ready.install_snapshot {
                            Some(install) => {
                                // Durable before the record that installs it (the
                                // module docs of `snapshots.rs`).
                                let data = store.take_staged(group);
                                store.save(group, &install.meta, &data)?;
                                let index = install.meta.index;
                                let wal_group = flotilla_wal::GroupId(group.0);
                                if !install.keep_entries_after && slot.last_index > index {
                                    self.batch.truncate(wal_group, WalLogIndex(index.0 + 1));
                                }
                                self.batch.compact(wal_group, WalLogIndex(index.0));
                                slot.last_index = if install.keep_entries_after {
                                    slot.last_index.max(index)
                                } else {
                                    index
                                };
                                self.stats.snapshots_installed += 1;
                                Some(data)
                            }
                            None => None,
                        }
                    }
                    None => {
                        if ready.install_snapshot.is_some() {
                            // The core already counts it installed: going on would lose it.
                            return Err(ShardError::SnapshotRestore {
                                group,
                                reason: "a snapshot arrived at a shard that keeps none".to_string(),
                            });
                        }
                        None
                    }
                };
                self.verifications.extend(
                    std::mem::take(&mut ready.verifications)
                        .into_iter()
                        .map(|done| (group, done)),
                );
                self.stats.wal_entries += ready.entries.len() as u64;
                persist_ready(&mut self.batch, group, &ready, &mut slot.last_index)?;
                readies.push(PendingReady {
                    group,
                    incarnation: slot.incarnation,
                    id: ready.id,
                    persisted_messages: ready.persisted_messages,
                    committed_entries: ready.committed_entries,
                    read_states: ready.read_states,
                    restore,
                });
                if self.batch.body_bytes() >= RECORD_BYTES_SOFT_MAX {
                    submitted_early = true;
                    let full = std::mem::take(&mut readies);
                    submit_turn(
                        &mut self.wal,
                        &mut self.batch,
                        full,
                        &mut self.in_flight,
                        &mut self.stats,
                    )?;
                }
            }
        }
        // Keep the list's allocation for the next turn.
        let mut dirty = dirty;
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
        if readies.is_empty() && (!compacting || self.batch.is_empty()) {
            // Nothing polled, or everything already submitted by the size bound above.
            return Ok(submitted_early);
        }
        submit_turn(
            &mut self.wal,
            &mut self.batch,
            readies,
            &mut self.in_flight,
            &mut self.stats,
        )?;
        Ok(true)
    }

    /// Acknowledges, sends and applies every turn whose record is now durable.
    fn complete_durable(&mut self) -> Result<bool, ShardError> {
        if self.in_flight.is_empty() {
            return Ok(false);
        }
        let durable = self.wal.poll()?;
        let mut completed = false;
        while self
            .in_flight
            .front()
            .is_some_and(|turn| turn.lsn <= durable)
        {
            let turn = self.in_flight.pop_front().expect("checked above");
            completed = true;
            for pending in turn.readies {
                // A group removed since: its Readies are moot.
                let Some(slot) = self
                    .groups
                    .get_mut(&pending.group)
                    .filter(|slot| slot.incarnation == pending.incarnation)
                else {
                    continue; // The replica was removed since (and maybe created again).
                };
                // Figure 2: responses that acknowledge entries, and votes, leave only once
                // the state they promise is on stable storage.
                slot.raft.on_persisted(pending.id);
                slot.touch(pending.group, &mut self.ticking, &mut self.dirty);
                for message in &pending.persisted_messages {
                    self.outbound.push(pending.group, message);
                    self.stats.messages_sent += 1;
                }
                if let Some(data) = &pending.restore {
                    // Contract: the snapshot replaces the state machine before anything
                    // after it applies.
                    slot.machine
                        .restore(data)
                        .map_err(|reason| ShardError::SnapshotRestore {
                            group: pending.group,
                            reason,
                        })?;
                    let installed = slot.raft.snapshot().map(|meta| (meta.index, meta.term));
                    if let Some((index, term)) = installed {
                        snapshot_decides_waiting(
                            slot,
                            pending.group,
                            index,
                            term,
                            &mut self.completions,
                        );
                    }
                }
                if let Some(last) = pending.committed_entries.last().map(|entry| entry.index) {
                    for entry in &pending.committed_entries {
                        apply(slot, pending.group, entry, &mut self.completions);
                        if entry.kind == EntryKind::Configuration {
                            // New members are peers to keep alive and watch.
                            for member in slot.raft.configuration().members() {
                                if member != self.config.id {
                                    self.liveness.add_peer(member);
                                }
                            }
                        }
                    }
                    self.stats.entries_applied += pending.committed_entries.len() as u64;
                    slot.raft.on_applied(last);
                }
                if !slot.waiting.is_empty() {
                    fail_waiting_if_removed(
                        slot,
                        pending.group,
                        self.config.id,
                        &mut self.completions,
                    );
                }
                if let Some(store) = &mut self.snapshots {
                    let applied = slot.raft.status().applied;
                    if store.due(pending.group, applied)
                        && take_snapshot(slot, pending.group, store, &mut self.compactions)?
                    {
                        self.stats.snapshots_taken += 1;
                    }
                }
                // Contract step 4: a read is answered once the entries through its index are
                // applied, which the core guarantees for the reads of this Ready.
                for read in &pending.read_states {
                    self.read_completions.push(ReadCompletion {
                        group: pending.group,
                        ctx: read.ctx,
                        result: read.result.map(|_| ()),
                    });
                }
            }
        }
        Ok(completed)
    }

    /// Sends this turn's batches, one frame per destination node (more when one would
    /// exceed the transport's frame limit).
    fn flush(&mut self) {
        for (to, batch) in self.outbound.drain() {
            // Only a frame the transport took keeps the peer from seeing this node silent.
            if send_split(&mut self.transport, NetNodeId(to.0), batch, &mut self.stats) {
                self.liveness.sent(to);
            }
        }
    }

    /// Moves the completions since the last call into `out`.
    pub fn take_completions(&mut self, out: &mut Vec<Completion>) {
        out.append(&mut self.completions);
    }

    /// The groups on this shard, in id order.
    pub fn group_ids(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.groups.keys().copied()
    }

    /// The transport (for a driver that waits on it).
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// This shard's node.
    pub fn node(&self) -> NodeId {
        self.config.id
    }

    /// Counters of the shard's work.
    pub fn stats(&self) -> ShardStats {
        ShardStats {
            wal_syncs: self.wal.stats().syncs,
            wal_bytes: self.wal.stats().bytes,
            wal_segments_collected: self.wal.stats().segments_collected,
            groups: self.groups.len() as u64,
            groups_quiesced: self
                .groups
                .values()
                .filter(|slot| slot.raft.is_quiesced())
                .count() as u64,
            leaders: self
                .groups
                .values()
                .filter(|slot| slot.raft.is_leader())
                .count() as u64,
            peers_silent: self.liveness.silent_peers().count() as u64,
            ..self.stats
        }
    }

    /// How long the log's syncs took, in microseconds.
    pub fn sync_latency(&self) -> &hdrhistogram::Histogram<u64> {
        self.wal.sync_latency()
    }

    /// Records not yet durable.
    pub fn records_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Closes the log (waiting for what is in flight) and gives the transport back.
    pub fn close(self) -> Result<T, ShardError> {
        self.wal.close()?;
        Ok(self.transport)
    }
}

/// Submits `batch` as one record for `readies` (or, when it holds nothing to write, orders
/// them after every record already submitted) and starts a new batch.
fn submit_turn(
    wal: &mut Wal,
    batch: &mut WriteBatch,
    readies: Vec<PendingReady>,
    in_flight: &mut VecDeque<InFlight>,
    stats: &mut ShardStats,
) -> Result<(), ShardError> {
    // Reap completed writes first: the log starts a sync only with no write in flight,
    // and this turn's write is about to be.
    wal.poll()?;
    let lsn = if batch.is_empty() {
        wal.submitted_lsn()
    } else {
        stats.wal_records += 1;
        wal.submit(batch)?
    };
    batch.clear();
    in_flight.push_back(InFlight { lsn, readies });
    Ok(())
}

/// Sends `batch` to `to`, halving it until each part fits a frame. Returns whether the
/// transport took any of it.
fn send_split<T: Transport>(
    transport: &mut T,
    to: NetNodeId,
    mut batch: flotilla_net::MessageBatch,
    stats: &mut ShardStats,
) -> bool {
    match transport.try_send(to, &batch) {
        Ok(_) => {
            stats.frames_sent += 1;
            true
        }
        Err(SendError::TooLarge { .. }) if batch.messages.len() > 1 => {
            let mut second = flotilla_net::MessageBatch::new(batch.from, batch.to);
            second.messages = batch.messages.split_off(batch.messages.len() / 2);
            let first_sent = send_split(transport, to, batch, stats);
            send_split(transport, to, second, stats) || first_sent
        }
        // Back-pressure, an unreachable node, a transport shutting down, or a single
        // message over the frame limit (the core bounds one append's bytes below it): the
        // messages are lost, as on a lossy network; Raft resends what matters.
        Err(error) => {
            debug_assert!(!matches!(error, SendError::Misaddressed { .. }), "{error}");
            stats.frames_refused += 1;
            false
        }
    }
}

mod apply;
mod requests;
mod stats;

use apply::{apply, fail_waiting_if_removed, snapshot_decides_waiting, take_snapshot};

pub use stats::ShardStats;
#[cfg(test)]
mod tests;
