//! The engine as an embedder sees it: [`EngineBuilder`] starts a node, [`Engine`] creates
//! groups and proposes commands from any thread.
//!
//! A node runs `shards` shard threads (glommio executors); group `g` lives on shard
//! `g % shards`, the same function on every node, so shard `s` of one node talks only to
//! shard `s` of the others: shard `s` listens on the node's listen port + `s` and dials each
//! peer's port + `s`. Every node of a cluster must run the same number of shards.
//!
//! Back-pressure: each shard has a budget of proposal bytes accepted and not yet decided
//! (`EngineBuilder::proposal_budget_bytes`); a proposal that does not fit fails at once, on
//! the caller's thread, with [`RequestError::Busy`].

mod answers;
mod builder;

use std::net::SocketAddr;

use crate::raft::{Configuration, MembershipChange, NodeId, ReadMode, Status, Verification};
use hdrhistogram::Histogram;

use crate::runtime::executor::Command;
pub use crate::runtime::executor::ShardMetrics;
use crate::runtime::oneshot;
use crate::runtime::outstanding::ProposalBudget;
use crate::runtime::shard::ShardStats;
use crate::runtime::state_machine::StateMachine;
use crate::runtime::wire::GroupId;

pub use answers::{Answer, BatchProposal, Proposal};
pub use builder::{
    BuildError, EngineBuilder, PROPOSAL_BUDGET_BYTES_DEFAULT, PROPOSAL_BYTES_LIMIT,
    SNAPSHOT_EVERY_ENTRIES_DEFAULT,
};

/// A request to the engine did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// This node does not lead the group; `leader` is the one it knows of.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// The group is not on this node.
    #[error("group {0:?} not found")]
    GroupNotFound(GroupId),
    /// The group exists already.
    #[error("group {0:?} exists already")]
    GroupExists(GroupId),
    /// The group could not be created (members, or state in the log that cannot be used).
    #[error("invalid group: {0}")]
    InvalidGroup(String),
    /// The command is larger than the maximum proposal.
    #[error("proposal of {size_bytes} bytes is larger than the maximum of {max_bytes}")]
    TooLarge {
        /// Its size.
        size_bytes: usize,
        /// The maximum.
        max_bytes: usize,
    },
    /// The proposal's entry was replaced by a later leader's: it was not applied.
    #[error("the proposal was superseded by a new leader and not applied")]
    Superseded,
    /// The proposal's outcome cannot be learned on this node (its replica left the group,
    /// or a snapshot replaced its log first): the group may or may not have applied it.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(&'static str),
    /// The group refused the proposal for another reason (transfer in progress, stopping).
    #[error("refused: {0}")]
    Refused(String),
    /// The shard's budget of proposal bytes accepted but not yet decided is used up: retry
    /// later (back-pressure; nothing was proposed).
    #[error("busy: {pending_bytes} bytes of proposals pending, at most {max_bytes}")]
    Busy {
        /// Bytes pending on the shard when the proposal was refused.
        pending_bytes: usize,
        /// The shard's budget.
        max_bytes: usize,
    },
    /// The engine shut down (or the shard stopped after a storage failure) before an answer:
    /// the outcome is unknown (a proposal may still have been committed).
    #[error("the engine is shut down")]
    Shutdown,
}

/// What the engine holds of one shard: its command channel and its proposal budget.
pub(crate) struct ShardHandle<M> {
    pub(crate) commands: crossbeam_channel::Sender<Command<M>>,
    pub(crate) budget: ProposalBudget,
}

/// A running node. Usable from any thread; every call is a message to the group's shard.
pub struct Engine<M: StateMachine + 'static> {
    pub(crate) node: NodeId,
    pub(crate) shards: Vec<ShardHandle<M>>,
    pub(crate) threads: std::sync::Mutex<Vec<glommio::ExecutorJoinHandle<()>>>,
    pub(crate) listening: Vec<SocketAddr>,
}

/// The node's metrics: each shard's counters and histograms.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// One entry per shard, in shard order.
    pub shards: Vec<ShardMetrics>,
}

impl Metrics {
    /// The counters of every shard added up (`groups_*` and `leaders` are current counts).
    #[must_use]
    pub fn totals(&self) -> ShardStats {
        let mut totals = ShardStats::default();
        for shard in &self.shards {
            totals.add(&shard.stats);
        }
        totals
    }

    /// Every shard's proposal-to-answer latency, merged, in microseconds.
    #[must_use]
    pub fn proposal_latency_us(&self) -> Histogram<u64> {
        merged(self.shards.iter().map(|s| &s.proposal_latency_us))
    }

    /// Every shard's log sync latency, merged, in microseconds.
    #[must_use]
    pub fn sync_latency_us(&self) -> Histogram<u64> {
        merged(self.shards.iter().map(|s| &s.sync_latency_us))
    }
}

fn merged<'a>(histograms: impl Iterator<Item = &'a Histogram<u64>>) -> Histogram<u64> {
    let mut all = Histogram::new(3).expect("3 significant digits are valid");
    for histogram in histograms {
        // Both auto-resize: adding cannot fail for lack of range.
        let _ = all.add(histogram);
    }
    all
}

impl<M: StateMachine + 'static> Engine<M> {
    fn shard_of(&self, group: GroupId) -> &ShardHandle<M> {
        let count = self.shards.len() as u64;
        &self.shards[usize::try_from(group.0 % count).expect("fewer than 2^32 shards")]
    }

    fn ask<T>(
        &self,
        group: GroupId,
        command: impl FnOnce(oneshot::Sender<T>) -> Command<M>,
    ) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        // A stopped shard drops the command, and with it the reply: the caller sees None.
        let _sent = self.shard_of(group).commands.send(command(tx));
        rx
    }

    /// Sends a command carrying proposals whose bytes fit the shard's budget (reserved
    /// here, on the caller's thread, so a full shard refuses at once with `Busy`).
    fn ask_proposing<T>(
        &self,
        group: GroupId,
        command: impl FnOnce(oneshot::Sender<T>) -> Command<M>,
    ) -> Result<oneshot::Receiver<T>, RequestError> {
        let shard = self.shard_of(group);
        let (tx, rx) = oneshot::channel();
        let command = command(tx);
        let bytes = command.proposal_bytes();
        shard.budget.reserve(bytes)?;
        if shard.commands.send(command).is_err() {
            // The shard stopped: nothing will release the bytes but us.
            shard.budget.release(bytes);
        }
        Ok(rx)
    }

    /// Creates this node's replica of `group` with `members` (including this node), restored
    /// from the log if the group was here before. With no `members`, the replica *joins* a
    /// running group: it learns its configuration from the leader's log, and the leader
    /// adds it ([`Engine::add_voter`]); re-create a joined replica with no members too.
    /// `machine` must be empty: the group's committed log is applied to it again from
    /// index 1 (the engine does not snapshot its state machines yet).
    pub fn create_group(
        &self,
        group: GroupId,
        members: &[NodeId],
        machine: M,
    ) -> Result<(), RequestError> {
        let voters = members.to_vec();
        self.ask(group, |reply| Command::CreateGroup {
            group,
            voters,
            machine,
            reply,
        })
        .wait()
        .unwrap_or(Err(RequestError::Shutdown))
    }

    /// Removes this node's replica of `group`: its state and its entries in the log are
    /// dropped, and proposals and reads waiting on it fail with `GroupNotFound`. Only this
    /// node's replica goes, the others are not told: to take a node out of a running group,
    /// remove it from the membership first ([`Engine::change_membership`]), then call this
    /// on that node; to delete a group, remove it on every node. The replica forgets its
    /// votes, so the id must not be created again on this node while other nodes still run
    /// the group.
    pub fn remove_group(&self, group: GroupId) -> Result<(), RequestError> {
        self.ask(group, |reply| Command::RemoveGroup { group, reply })
            .wait()
            .unwrap_or(Err(RequestError::Shutdown))
    }

    /// Proposes `command` to `group`; the answer (a future, or `wait()` to block) is the
    /// state machine's result once the entry is applied on this node. Fails at once with
    /// `Busy` when the shard's proposal budget is used up.
    pub fn propose(&self, group: GroupId, command: Vec<u8>) -> Proposal {
        match self.ask_proposing(group, |reply| Command::Propose {
            group,
            command,
            reply,
        }) {
            Ok(receiver) => Answer(receiver),
            Err(busy) => Answer::ready(Err(busy)),
        }
    }

    /// Proposes every command of `commands` to `group` in one request: one message to the
    /// shard and one answer, in order, once every command is decided (hand-offs between
    /// threads are paid per batch, not per proposal). A batch that does not fit the
    /// shard's budget is refused whole with `Busy`.
    pub fn propose_batch(&self, group: GroupId, commands: Vec<Vec<u8>>) -> BatchProposal {
        let count = commands.len();
        let receiver = match self.ask_proposing(group, |reply| Command::ProposeBatch {
            group,
            commands,
            reply,
        }) {
            Ok(receiver) => receiver,
            Err(busy) => {
                let (tx, rx) = oneshot::channel();
                tx.send(vec![Err(busy); count]);
                rx
            }
        };
        BatchProposal { receiver, count }
    }

    /// [`Engine::propose`], blocking until the answer.
    pub fn propose_blocking(
        &self,
        group: GroupId,
        command: Vec<u8>,
    ) -> Result<Vec<u8>, RequestError> {
        self.propose(group, command).wait()
    }

    /// A linearizable read of `group`: once this node (which must lead the group) has
    /// confirmed its leadership (`ReadMode::ReadIndex`: a heartbeat round acknowledged by
    /// a majority; `ReadMode::Lease`: its lease, or a round when it lapsed) and applied
    /// everything committed before the read arrived, `read` runs on the state machine, on
    /// the shard thread, and its result is the answer. Not the leader: `NotLeader`.
    pub fn read<T: Send + 'static>(
        &self,
        group: GroupId,
        mode: ReadMode,
        read: impl FnOnce(&M) -> T + Send + 'static,
    ) -> Answer<T> {
        let (tx, rx) = oneshot::channel();
        let read = Box::new(move |machine: Result<&M, RequestError>| tx.send(machine.map(read)));
        // A stopped shard drops the command, and with it the reply: the answer is Shutdown.
        let _sent = self
            .shard_of(group)
            .commands
            .send(Command::Read { group, mode, read });
        Answer(rx)
    }

    /// Asks this node, the leader of `group`, to hand leadership to `to` (thesis §3.10).
    /// Returns once the transfer started: proposals are refused meanwhile, `to` campaigns
    /// as soon as it holds the whole log, and the transfer is abandoned after an election
    /// timeout; `status` shows the outcome.
    pub fn transfer_leader(&self, group: GroupId, to: NodeId) -> Result<(), RequestError> {
        self.ask(group, |reply| Command::TransferLeader { group, to, reply })
            .wait()
            .unwrap_or(Err(RequestError::Shutdown))
    }

    /// Changes `group`'s membership (this node must lead it): all `changes` at once,
    /// through the joint configuration when the voters change (docs/ARCHITECTURE.md,
    /// "Membership changes"). Answers once the configuration entry is applied on this node;
    /// the group leaves the joint configuration by itself right after. One change at a
    /// time: another in flight is refused. To add a voter, prefer [`Engine::add_voter`].
    pub fn change_membership(
        &self,
        group: GroupId,
        changes: Vec<MembershipChange>,
    ) -> Result<(), RequestError> {
        self.ask(group, |reply| Command::ChangeMembership {
            group,
            changes,
            reply,
        })
        .wait()
        .unwrap_or(Err(RequestError::Shutdown))
        .map(|_| ())
    }

    /// Adds `node` to `group` as a voter, safely: it joins as a learner and this node (the
    /// leader) promotes it once its log is within `Config::learner_catch_up_lag_entries`.
    /// Returns once the learner is added; [`Engine::configuration`] shows the promotion. The
    /// node must run a replica of the group, created with no members (it joins).
    pub fn add_voter(&self, group: GroupId, node: NodeId) -> Result<(), RequestError> {
        self.ask(group, |reply| Command::AddVoter { group, node, reply })
            .wait()
            .unwrap_or(Err(RequestError::Shutdown))
    }

    /// The membership configuration in force on this node's replica of `group`.
    pub fn configuration(&self, group: GroupId) -> Result<Configuration, RequestError> {
        self.ask(group, |reply| Command::Configuration { group, reply })
            .wait()
            .ok_or(RequestError::Shutdown)?
            .ok_or(RequestError::GroupNotFound(group))
    }

    /// Checks that `group`'s replicas agree (this node must lead it): a verify entry goes
    /// through the log, every replica hashes its state machine when it applies it
    /// (`StateMachine::state_hash`), and the answer is `Consistent` or `Divergent` with
    /// each node's hash. A replica that does not answer within
    /// `Config::verify_timeout_ticks` is left out.
    pub fn verify(&self, group: GroupId) -> Answer<Verification> {
        Answer(self.ask(group, |reply| Command::Verify { group, reply }))
    }

    /// Changes this node's state machine of `group` outside the log, making the replica
    /// diverge: a hook for testing consistency verification, never for real use.
    #[doc(hidden)]
    pub fn corrupt_for_tests(&self, group: GroupId, corrupt: impl FnOnce(&mut M) + Send + 'static) {
        let _sent = self.shard_of(group).commands.send(Command::Corrupt {
            group,
            corrupt: Box::new(corrupt),
        });
    }

    /// Role, term, leader, commit and applied index of this node's replica of `group`.
    pub fn status(&self, group: GroupId) -> Result<Status, RequestError> {
        self.ask(group, |reply| Command::Status { group, reply })
            .wait()
            .ok_or(RequestError::Shutdown)?
            .ok_or(RequestError::GroupNotFound(group))
    }

    /// Runs `read` on this node's replica of `group`'s state machine, on its shard thread,
    /// and returns its result: a local read of whatever is applied here, not linearizable
    /// (see [`Engine::read`]).
    pub fn inspect<T: Send + 'static>(
        &self,
        group: GroupId,
        read: impl FnOnce(&M) -> T + Send + 'static,
    ) -> Result<T, RequestError> {
        let (tx, rx) = oneshot::channel();
        let inspect = Box::new(move |machine: Option<&M>| tx.send(machine.map(read)));
        // A stopped shard drops the command, and with it the reply.
        let _sent = self
            .shard_of(group)
            .commands
            .send(Command::Inspect { group, inspect });
        rx.wait()
            .ok_or(RequestError::Shutdown)?
            .ok_or(RequestError::GroupNotFound(group))
    }

    /// Every running shard's counters and histograms (a stopped shard is left out).
    pub fn metrics(&self) -> Metrics {
        let shards = self
            .shards
            .iter()
            .filter_map(|shard| {
                let (reply, rx) = oneshot::channel();
                shard.commands.send(Command::Metrics { reply }).ok()?;
                rx.wait()
            })
            .collect();
        Metrics { shards }
    }

    /// Each running shard's counters (the counters of [`Engine::metrics`]).
    pub fn stats(&self) -> Vec<ShardStats> {
        self.metrics().shards.into_iter().map(|s| s.stats).collect()
    }

    /// This node.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The address each shard listens on.
    pub fn listening(&self) -> &[SocketAddr] {
        &self.listening
    }

    /// Stops every shard: proposals and reads still waiting fail with `Shutdown`, each
    /// shard's log is closed after what is in flight is durable, and later requests fail
    /// with `Shutdown`. Also done on drop.
    pub fn shutdown(&self) {
        for shard in &self.shards {
            let _sent = shard.commands.send(Command::Shutdown);
        }
        let threads = std::mem::take(
            &mut *self
                .threads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for thread in threads {
            if let Err(error) = thread.join() {
                log::error!("node {}: a shard thread failed: {error}", self.node.0);
            }
        }
    }
}

impl<M: StateMachine + 'static> Drop for Engine<M> {
    fn drop(&mut self) {
        self.shutdown();
    }
}
