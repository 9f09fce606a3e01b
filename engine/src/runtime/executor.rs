//! A shard on its own thread: a glommio executor that owns one [`Shard`] (its groups, its
//! log, its TCP transport), takes commands from embedder threads over a channel, and runs
//! the shard's loop.
//!
//! The loop turns as fast as there is work; when idle it sleeps until the transport has
//! events or the next tick is due, at most 1 ms (commands are picked up within that), and
//! while log records are in flight it checks for their durability every 50 µs. A busy loop
//! yields only when glommio's preemption timer (100 ms) says so; a shorter timer (500 µs)
//! was tried and made loadgen ten times slower with 10 s stalls, so the transport's tasks
//! on the same thread run mostly when the shard runs out of work.
//!
//! On shutdown, records in flight are made durable by closing the log, but their Readies are
//! not completed: a proposal answered `Shutdown` may or may not have been committed.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use flotilla_net::{NodeId as NetNodeId, TcpTransport, TransportConfig};
use flotilla_wal::{Wal, WalOptions};
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;

use crate::api::RequestError;
use crate::raft::{
    ChangeError, Config, Configuration, LogIndex, MembershipChange, NodeId, ProposeError,
    ReadError, ReadMode, Role, Status, TransferError, Verification,
};
use crate::runtime::oneshot;
use crate::runtime::outstanding::{
    BatchOutcomes, BatchReply, Outstanding, ProposalBudget, ReadFn, Waiter,
};
use crate::runtime::shard::{
    Completion, CreateGroupError, ReadCompletion, Shard, ShardProposeError, ShardRequestError,
    ShardStats, Unapplied,
};
use crate::runtime::snapshots::SnapshotStore;
use crate::runtime::state_machine::StateMachine;
use crate::runtime::wire::GroupId;

/// Bytes of proposals taken from the command channel in one turn, at most (plus one
/// command).
pub(crate) const PROPOSAL_BYTES_PER_TURN_MAX: usize = 8 << 20;

/// Longest idle sleep: the bound on how long a command waits to be picked up.
const IDLE_SLEEP_MAX: Duration = Duration::from_millis(1);
/// How often an idle shard checks whether in-flight log records became durable.
const DURABILITY_POLL: Duration = Duration::from_micros(50);

/// A read-only look at a group's state machine, run on the shard thread.
pub(crate) type Inspection<M> = Box<dyn FnOnce(Option<&M>) + Send>;

/// One shard's counters and histograms.
#[derive(Clone, Debug)]
pub struct ShardMetrics {
    /// The shard's counters.
    pub stats: ShardStats,
    /// Microseconds from a proposal reaching the shard to its answer (applied, or refused).
    pub proposal_latency_us: Histogram<u64>,
    /// Microseconds each log sync took (see `Wal::sync_latency`).
    pub sync_latency_us: Histogram<u64>,
    /// Proposal bytes accepted and not yet decided (the `Busy` budget in use).
    pub proposal_bytes_pending: u64,
}

/// What an embedder thread asks of a shard.
pub(crate) enum Command<M> {
    CreateGroup {
        group: GroupId,
        voters: Vec<NodeId>,
        machine: M,
        reply: oneshot::Sender<Result<(), RequestError>>,
    },
    RemoveGroup {
        group: GroupId,
        reply: oneshot::Sender<Result<(), RequestError>>,
    },
    /// One proposal; its bytes were reserved in the shard's budget by the caller.
    Propose {
        group: GroupId,
        command: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, RequestError>>,
    },
    /// Many proposals to one group, answered together once all are decided: one channel
    /// message and one wakeup for the lot. Their bytes were reserved by the caller.
    ProposeBatch {
        group: GroupId,
        commands: Vec<Vec<u8>>,
        reply: oneshot::Sender<BatchOutcomes>,
    },
    Read {
        group: GroupId,
        mode: ReadMode,
        read: ReadFn<M>,
    },
    TransferLeader {
        group: GroupId,
        to: NodeId,
        reply: oneshot::Sender<Result<(), RequestError>>,
    },
    /// A membership change, answered once its configuration entry is applied here.
    ChangeMembership {
        group: GroupId,
        changes: Vec<MembershipChange>,
        reply: oneshot::Sender<Result<Vec<u8>, RequestError>>,
    },
    AddVoter {
        group: GroupId,
        node: NodeId,
        reply: oneshot::Sender<Result<(), RequestError>>,
    },
    Configuration {
        group: GroupId,
        reply: oneshot::Sender<Option<Configuration>>,
    },
    Verify {
        group: GroupId,
        reply: oneshot::Sender<Result<Verification, RequestError>>,
    },
    /// Test hook: changes a state machine outside the log.
    Corrupt {
        group: GroupId,
        corrupt: Box<dyn FnOnce(&mut M) + Send>,
    },
    Status {
        group: GroupId,
        reply: oneshot::Sender<Option<Status>>,
    },
    Metrics {
        reply: oneshot::Sender<ShardMetrics>,
    },
    /// Runs a read-only closure on the group's state machine (`None`: no such group).
    Inspect {
        group: GroupId,
        inspect: Inspection<M>,
    },
    Shutdown,
}

impl<M> Command<M> {
    /// The proposal bytes the command carries.
    pub(crate) fn proposal_bytes(&self) -> usize {
        match self {
            Command::Propose { command, .. } => command.len(),
            Command::ProposeBatch { commands, .. } => commands.iter().map(Vec::len).sum(),
            _ => 0,
        }
    }
}

/// Everything a shard thread needs to start.
pub(crate) struct ShardSetup {
    pub(crate) index: u32,
    pub(crate) raft: Config,
    pub(crate) wal_dir: PathBuf,
    pub(crate) snapshot_dir: PathBuf,
    pub(crate) snapshot_every_entries: u64,
    pub(crate) listen: SocketAddr,
    pub(crate) peers: Vec<(NodeId, SocketAddr)>,
    pub(crate) transport: TransportConfig,
    pub(crate) tick: Duration,
    pub(crate) budget: ProposalBudget,
}

/// Starts the shard thread; `started` says whether its log and listener opened.
pub(crate) fn spawn<M: StateMachine + 'static>(
    setup: ShardSetup,
    commands: crossbeam_channel::Receiver<Command<M>>,
    started: oneshot::Sender<Result<SocketAddr, String>>,
) -> Result<glommio::ExecutorJoinHandle<()>, String> {
    LocalExecutorBuilder::new(Placement::Unbound)
        .name(&format!("flotilla-shard-{}", setup.index))
        .io_memory(1 << 20)
        .spawn(move || async move {
            let mut shard = match open(&setup) {
                Ok(shard) => shard,
                Err(error) => return started.send(Err(error)),
            };
            let addr = shard.transport().local_addr().expect("the shard listens");
            started.send(Ok(addr));
            run::<M>(&mut shard, &commands, setup.tick, setup.budget).await;
            if let Err(error) = shard.close() {
                log::error!("shard {}: closing its log failed: {error}", setup.index);
            }
        })
        .map_err(|error| error.to_string())
}

fn open<M: StateMachine>(setup: &ShardSetup) -> Result<Shard<TcpTransport, M>, String> {
    std::fs::create_dir_all(&setup.wal_dir)
        .map_err(|error| format!("creating {}: {error}", setup.wal_dir.display()))?;
    let (wal, report) = Wal::open(&setup.wal_dir, WalOptions::default())
        .map_err(|error| format!("opening the log in {}: {error}", setup.wal_dir.display()))?;
    if let Some(torn) = &report.torn_tail {
        log::warn!("shard {}: cut a torn tail: {torn:?}", setup.index);
    }
    let transport = TcpTransport::start(setup.transport.clone(), Some(setup.listen))
        .map_err(|error| format!("starting the transport: {error}"))?;
    for &(node, addr) in &setup.peers {
        transport.set_peer(NetNodeId(node.0), addr);
    }
    let snapshots = SnapshotStore::open(&setup.snapshot_dir, setup.snapshot_every_entries)
        .map_err(|error| format!("opening the snapshots: {error}"))?;
    Ok(Shard::new(setup.raft.clone(), wal, transport).with_snapshots(snapshots))
}

async fn run<M: StateMachine>(
    shard: &mut Shard<TcpTransport, M>,
    commands: &crossbeam_channel::Receiver<Command<M>>,
    tick: Duration,
    budget: ProposalBudget,
) {
    let mut outstanding: Outstanding<M> = Outstanding::new(budget);
    let mut verifies: Vec<PendingVerify> = Vec::new();
    let mut verifications = Vec::new();
    let mut completions = Vec::new();
    let mut read_completions = Vec::new();
    let mut next_tick = Instant::now() + tick;
    loop {
        let mut worked = false;
        // Take commands until the turn holds `PROPOSAL_BYTES_PER_TURN_MAX` of proposals (the
        // rest wait in the channel), so that one turn's log record stays bounded.
        let mut proposal_bytes = 0;
        while proposal_bytes < PROPOSAL_BYTES_PER_TURN_MAX {
            let command = match commands.try_recv() {
                Ok(command) => command,
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                // The engine is gone (or failed to start): stop like a shutdown.
                Err(crossbeam_channel::TryRecvError::Disconnected) => return,
            };
            worked = true;
            proposal_bytes += command.proposal_bytes();
            if let Command::Verify { group, reply } = command {
                match shard.verify(group) {
                    Ok(proposed) => verifies.push(PendingVerify {
                        group,
                        index: proposed.index,
                        reply,
                    }),
                    Err(error) => reply.send(Err(request_error(error))),
                }
                continue;
            }
            if !handle(shard, command, &mut outstanding) {
                // Shutdown: dropping `outstanding` answers everything with Shutdown.
                return;
            }
        }
        let now = Instant::now();
        if now >= next_tick {
            shard.tick();
            next_tick = if now >= next_tick + tick {
                now + tick
            } else {
                next_tick + tick
            };
        }
        match shard.run_once() {
            Ok(did) => worked |= did,
            Err(error) => {
                // A failed write or sync stops the shard (never retried): every caller
                // learns it through a closed reply.
                log::error!("shard of node {} stops: {error}", shard.node());
                return;
            }
        }
        shard.take_completions(&mut completions);
        for Completion {
            group,
            proposed,
            outcome,
        } in completions.drain(..)
        {
            let outcome = outcome.map_err(|unapplied| match unapplied {
                Unapplied::Superseded => RequestError::Superseded,
                Unapplied::Unknown(reason) => RequestError::OutcomeUnknown(reason),
            });
            outstanding.decide(group, proposed.index, proposed.term, outcome);
        }
        answer_verifications(shard, &mut verifies, &mut verifications);
        shard.take_read_completions(&mut read_completions);
        for ReadCompletion { group, ctx, result } in read_completions.drain(..) {
            if let Some((_, read)) = outstanding.take_read(ctx) {
                match result {
                    Ok(()) => match shard.machine(group) {
                        Some(machine) => read(Ok(machine)),
                        None => read(Err(RequestError::GroupNotFound(group))),
                    },
                    Err(error) => read(Err(read_error(error))),
                }
            }
        }
        if worked {
            glommio::yield_if_needed().await;
        } else if shard.records_in_flight() > 0 {
            glommio::timer::sleep(DURABILITY_POLL).await;
        } else {
            let sleep = next_tick
                .saturating_duration_since(Instant::now())
                .min(IDLE_SLEEP_MAX);
            futures_lite::future::or(
                shard.transport().wait_events(),
                glommio::timer::sleep(sleep),
            )
            .await;
        }
    }
}

/// A verification asked on this shard, waiting for the leader's verdict.
struct PendingVerify {
    group: GroupId,
    index: LogIndex,
    reply: oneshot::Sender<Result<Verification, RequestError>>,
}

/// Answers the verifications the shard finished; those whose group is no longer led here
/// fail with `NotLeader` (the verdict would come from another node, if at all).
fn answer_verifications<M: StateMachine>(
    shard: &mut Shard<TcpTransport, M>,
    verifies: &mut Vec<PendingVerify>,
    done: &mut Vec<(GroupId, Verification)>,
) {
    shard.take_verifications(done);
    for (group, verification) in done.drain(..) {
        let index = match &verification {
            Verification::Consistent { index, .. } | Verification::Divergent { index, .. } => {
                *index
            }
        };
        if let Some(slot) = verifies
            .iter()
            .position(|pending| pending.group == group && pending.index == index)
        {
            verifies.swap_remove(slot).reply.send(Ok(verification));
        }
    }
    let mut k = 0;
    while k < verifies.len() {
        let status = shard.status(verifies[k].group);
        if status.is_some_and(|status| status.role == Role::Leader) {
            k += 1;
        } else {
            let lost = verifies.swap_remove(k);
            lost.reply.send(Err(RequestError::NotLeader {
                leader: status.and_then(|status| status.leader),
            }));
        }
    }
}

/// Proposes `command`; `waiter` learns the outcome now (refused) or once applied.
fn propose<M: StateMachine>(
    shard: &mut Shard<TcpTransport, M>,
    group: GroupId,
    command: &[u8],
    waiter: Waiter,
    outstanding: &mut Outstanding<M>,
) {
    let started = Instant::now();
    let refused = match shard.propose(group, command) {
        Ok(proposed) => {
            outstanding.proposed(
                group,
                proposed.index,
                proposed.term,
                waiter,
                command.len(),
                started,
            );
            return;
        }
        Err(ShardProposeError::UnknownGroup(group)) => RequestError::GroupNotFound(group),
        Err(ShardProposeError::Raft(ProposeError::NotLeader { leader })) => {
            RequestError::NotLeader { leader }
        }
        Err(ShardProposeError::Raft(ProposeError::ProposalTooLarge {
            size_bytes,
            max_bytes,
        })) => RequestError::TooLarge {
            size_bytes,
            max_bytes,
        },
        Err(ShardProposeError::Raft(other)) => RequestError::Refused(other.to_string()),
    };
    outstanding.refuse(waiter, command.len(), refused);
}

fn read_error(error: ReadError) -> RequestError {
    match error {
        ReadError::NotLeader { leader } => RequestError::NotLeader { leader },
        other => RequestError::Refused(other.to_string()),
    }
}

/// The embedder's view of a request refused by the shard.
fn request_error(error: ShardRequestError) -> RequestError {
    match error {
        ShardRequestError::UnknownGroup(group) => RequestError::GroupNotFound(group),
        ShardRequestError::Read(error) => read_error(error),
        ShardRequestError::Transfer(TransferError::NotLeader { leader }) => {
            RequestError::NotLeader { leader }
        }
        ShardRequestError::Transfer(other) => RequestError::Refused(other.to_string()),
        ShardRequestError::Change(ChangeError::NotLeader { leader })
        | ShardRequestError::Propose(ProposeError::NotLeader { leader }) => {
            RequestError::NotLeader { leader }
        }
        ShardRequestError::Change(other) => RequestError::Refused(other.to_string()),
        ShardRequestError::Propose(other) => RequestError::Refused(other.to_string()),
        ShardRequestError::Shard(error) => {
            log::error!("a shard's log failed: {error}");
            RequestError::Shutdown
        }
    }
}

/// Carries out one command; false on shutdown (or a log failure while removing a group).
fn handle<M: StateMachine>(
    shard: &mut Shard<TcpTransport, M>,
    command: Command<M>,
    outstanding: &mut Outstanding<M>,
) -> bool {
    match command {
        Command::CreateGroup {
            group,
            voters,
            machine,
            reply,
        } => {
            let created = shard.create_group(group, &voters, machine);
            if let Err(CreateGroupError::Log(error)) = &created {
                // The log refused a record: like any log failure, the shard stops.
                log::error!("shard of node {} stops: {error}", shard.node());
                reply.send(Err(RequestError::Shutdown));
                return false;
            }
            reply.send(created.map_err(|error| match error {
                CreateGroupError::Exists(group) => RequestError::GroupExists(group),
                other => RequestError::InvalidGroup(other.to_string()),
            }));
        }
        Command::RemoveGroup { group, reply } => {
            let removed = shard.remove_group(group);
            let failed = matches!(removed, Err(ShardRequestError::Shard(_)));
            if removed.is_ok() {
                outstanding.fail_group(group);
            }
            reply.send(removed.map_err(request_error));
            if failed {
                return false;
            }
        }
        Command::Propose {
            group,
            command,
            reply,
        } => {
            propose(shard, group, &command, Waiter::One(reply), outstanding);
        }
        Command::ProposeBatch {
            group,
            commands,
            reply,
        } => {
            let batch = Rc::new(RefCell::new(BatchReply::new(commands.len(), reply)));
            // One batch must fit one turn's record: beyond that, it is refused whole.
            let total: usize = commands.iter().map(Vec::len).sum();
            for (slot, command) in commands.iter().enumerate() {
                let waiter = Waiter::InBatch {
                    batch: Rc::clone(&batch),
                    slot,
                };
                if total > PROPOSAL_BYTES_PER_TURN_MAX {
                    let error = RequestError::TooLarge {
                        size_bytes: total,
                        max_bytes: PROPOSAL_BYTES_PER_TURN_MAX,
                    };
                    outstanding.refuse(waiter, command.len(), error);
                } else {
                    propose(shard, group, command, waiter, outstanding);
                }
            }
        }
        Command::Read { group, mode, read } => {
            let ctx = outstanding.add_read(group, read);
            if let Err(error) = shard.read_index(group, ctx, mode) {
                let (_, read) = outstanding.take_read(ctx).expect("just added");
                read(Err(request_error(error)));
            }
        }
        Command::TransferLeader { group, to, reply } => {
            reply.send(shard.transfer_leader(group, to).map_err(request_error));
        }
        Command::ChangeMembership {
            group,
            changes,
            reply,
        } => match shard.change_membership(group, &changes) {
            Ok(proposed) => {
                outstanding.proposed(
                    group,
                    proposed.index,
                    proposed.term,
                    Waiter::One(reply),
                    0,
                    Instant::now(),
                );
            }
            Err(error) => reply.send(Err(request_error(error))),
        },
        Command::AddVoter { group, node, reply } => {
            reply.send(shard.add_voter(group, node).map_err(request_error));
        }
        Command::Configuration { group, reply } => reply.send(shard.configuration(group)),
        Command::Verify { .. } => unreachable!("verifications are handled by the loop"),
        Command::Corrupt { group, corrupt } => shard.corrupt_for_tests(group, corrupt),
        Command::Status { group, reply } => reply.send(shard.status(group)),
        Command::Metrics { reply } => reply.send(ShardMetrics {
            stats: shard.stats(),
            proposal_latency_us: outstanding.latency().clone(),
            sync_latency_us: shard.sync_latency().clone(),
            proposal_bytes_pending: outstanding.pending_bytes() as u64,
        }),
        Command::Inspect { group, inspect } => inspect(shard.machine(group)),
        Command::Shutdown => return false,
    }
    true
}
