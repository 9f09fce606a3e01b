//! The engine as an embedder sees it: [`EngineBuilder`] starts a node, [`Engine`] creates
//! groups and proposes commands from any thread.
//!
//! A node runs `shards` shard threads (glommio executors); group `g` lives on shard
//! `g % shards`, the same function on every node, so shard `s` of one node talks only to
//! shard `s` of the others: shard `s` listens on the node's listen port + `s` and dials each
//! peer's port + `s`. Every node of a cluster must run the same number of shards.
//!
//! Not yet (issue 5): reads, leadership transfer, group removal, a proposal memory budget
//! (`Busy`), metrics histograms.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use flotilla_net::{NodeId as NetNodeId, TransportConfig};

use crate::raft::{Config, ELECTION_TIMEOUT_TICKS_DEFAULT, NodeId, Status};
use crate::runtime::executor::{self, Command, ShardSetup};
use crate::runtime::oneshot;
use crate::runtime::shard::ShardStats;
use crate::runtime::state_machine::StateMachine;
use crate::runtime::wire::GroupId;

/// The largest `proposal_bytes_max` the engine accepts: half a transport frame.
pub const PROPOSAL_BYTES_LIMIT: usize = 8 << 20;

/// The node could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The configuration is not usable; the message names the field.
    #[error("invalid engine configuration: {0}")]
    Config(String),
    /// A shard could not start (its log, its listener or its thread).
    #[error("shard {shard} could not start: {reason}")]
    Shard {
        /// The shard.
        shard: u32,
        /// Why.
        reason: String,
    },
}

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
    /// The group refused the proposal for another reason (transfer in progress, stopping).
    #[error("refused: {0}")]
    Refused(String),
    /// The engine shut down (or the shard stopped after a storage failure) before an answer:
    /// the outcome is unknown (a proposal may still have been committed).
    #[error("the engine is shut down")]
    Shutdown,
}

/// Configures and starts a node.
#[derive(Clone, Debug)]
pub struct EngineBuilder {
    node: NodeId,
    cluster_id: u64,
    data_dir: PathBuf,
    listen: SocketAddr,
    peers: Vec<(NodeId, SocketAddr)>,
    shards: u32,
    tick: Duration,
    raft: Config,
}

impl EngineBuilder {
    /// A node `node` of cluster `cluster_id`, keeping its logs under `data_dir` and
    /// listening on `listen` (shard `s` on port + `s`). One shard per available core.
    pub fn new(
        node: NodeId,
        cluster_id: u64,
        data_dir: impl Into<PathBuf>,
        listen: SocketAddr,
    ) -> EngineBuilder {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        EngineBuilder {
            node,
            cluster_id,
            data_dir: data_dir.into(),
            listen,
            peers: Vec::new(),
            shards: u32::try_from(cores).unwrap_or(1),
            tick: Duration::from_millis(10),
            raft: Config {
                // Idle groups go silent after an election timeout without work.
                quiesce_after_ticks: ELECTION_TIMEOUT_TICKS_DEFAULT,
                ..Config::new(node, node.0)
            },
        }
    }

    /// Adds a peer: node `node` reachable at `addr` (its shard `s` at port + `s`).
    pub fn peer(mut self, node: NodeId, addr: SocketAddr) -> EngineBuilder {
        self.peers.push((node, addr));
        self
    }

    /// The number of shard threads (the same on every node of the cluster).
    pub fn shards(mut self, shards: u32) -> EngineBuilder {
        self.shards = shards;
        self
    }

    /// The length of one Raft tick (timeouts are counted in ticks).
    pub fn tick(mut self, tick: Duration) -> EngineBuilder {
        self.tick = tick;
        self
    }

    /// The Raft configuration template of every group (its `id` is set to this node).
    pub fn raft_config(mut self, config: Config) -> EngineBuilder {
        self.raft = Config {
            id: self.node,
            ..config
        };
        self
    }

    fn validate(&self) -> Result<(), BuildError> {
        let invalid = |reason: String| Err(BuildError::Config(reason));
        if self.node.0 == u64::MAX {
            return invalid("node id u64::MAX is reserved".into());
        }
        if self.shards == 0 || self.shards > 1024 {
            return invalid(format!("shards must be 1 to 1024, not {}", self.shards));
        }
        if self.tick.is_zero() {
            return invalid("tick must be positive".into());
        }
        if let Err(error) = self.raft.validate() {
            return invalid(error.to_string());
        }
        // A proposal must fit one transport frame (16 MiB) with room to spare, and one
        // turn's log record.
        if self.raft.proposal_bytes_max > PROPOSAL_BYTES_LIMIT {
            return invalid(format!(
                "proposal_bytes_max {} is above {PROPOSAL_BYTES_LIMIT}",
                self.raft.proposal_bytes_max
            ));
        }
        let mut seen = vec![self.node];
        for &(peer, _) in &self.peers {
            if seen.contains(&peer) || peer.0 == u64::MAX {
                return invalid(format!(
                    "peer {} is this node, repeated, or reserved",
                    peer.0
                ));
            }
            seen.push(peer);
        }
        if u32::from(self.listen.port()) + self.shards > u32::from(u16::MAX) + 1 {
            return invalid(format!(
                "ports {}+{} overflow",
                self.listen.port(),
                self.shards
            ));
        }
        Ok(())
    }

    /// Starts the node: opens (and recovers) each shard's log, listens, and returns once
    /// every shard runs.
    pub fn start<M: StateMachine + 'static>(self) -> Result<Engine<M>, BuildError> {
        self.validate()?;
        self.check_data_dir()?;
        // Shards join `engine` as they start: if a later one fails, dropping `engine`
        // shuts down those already running (their logs closed, their ports released).
        let mut engine = Engine {
            node: self.node,
            shards: Vec::new(),
            threads: std::sync::Mutex::new(Vec::new()),
            listening: Vec::new(),
        };
        for index in 0..self.shards {
            let offset = |addr: SocketAddr| {
                let mut addr = addr;
                // An explicit port 0 lets the system pick one per shard.
                if addr.port() != 0 {
                    addr.set_port(addr.port() + u16::try_from(index).expect("validated"));
                }
                addr
            };
            let mut transport = TransportConfig::new(self.cluster_id, NetNodeId(self.node.0));
            transport.shard = index;
            let setup = ShardSetup {
                index,
                raft: self.raft.clone(),
                wal_dir: self.data_dir.join(format!("shard-{index}")),
                listen: offset(self.listen),
                peers: self
                    .peers
                    .iter()
                    .map(|&(node, addr)| (node, offset(addr)))
                    .collect(),
                transport,
                tick: self.tick,
            };
            let (tx, rx) = crossbeam_channel::unbounded();
            let (started_tx, started_rx) = oneshot::channel();
            let thread = executor::spawn::<M>(setup, rx, started_tx).map_err(|reason| {
                BuildError::Shard {
                    shard: index,
                    reason,
                }
            })?;
            engine.shards.push(tx);
            engine
                .threads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(thread);
            match started_rx.wait() {
                Some(Ok(addr)) => engine.listening.push(addr),
                Some(Err(reason)) => {
                    return Err(BuildError::Shard {
                        shard: index,
                        reason,
                    });
                }
                None => {
                    return Err(BuildError::Shard {
                        shard: index,
                        reason: "its thread ended".into(),
                    });
                }
            }
        }
        Ok(engine)
    }

    /// Creates `data_dir` with its identity file on first start; afterwards refuses to start
    /// with another node id, cluster id or shard count (groups would be looked for in the
    /// wrong shard's log, and a replica that forgot its vote could vote twice).
    fn check_data_dir(&self) -> Result<(), BuildError> {
        let identity = format!(
            "flotilla-engine\nnode {}\ncluster {}\nshards {}\n",
            self.node.0, self.cluster_id, self.shards
        );
        let path = self.data_dir.join("FLOTILLA_ENGINE");
        let io = |what: &str, error: std::io::Error| {
            BuildError::Config(format!("{what} {}: {error}", path.display()))
        };
        match std::fs::read_to_string(&path) {
            Ok(found) if found == identity => Ok(()),
            Ok(found) => Err(BuildError::Config(format!(
                "{} belongs to another node or shard count: it holds {:?}, this node is {:?}",
                self.data_dir.display(),
                found,
                identity
            ))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.data_dir)
                    .map_err(|e| io("creating the directory of", e))?;
                let temp = self.data_dir.join("FLOTILLA_ENGINE.tmp");
                let mut file = std::fs::File::create(&temp).map_err(|e| io("creating", e))?;
                std::io::Write::write_all(&mut file, identity.as_bytes())
                    .map_err(|e| io("writing", e))?;
                file.sync_all().map_err(|e| io("syncing", e))?;
                std::fs::rename(&temp, &path).map_err(|e| io("renaming into", e))?;
                std::fs::File::open(&self.data_dir)
                    .and_then(|dir| dir.sync_all())
                    .map_err(|e| io("syncing the directory of", e))
            }
            Err(error) => Err(io("reading", error)),
        }
    }
}

/// A running node. Usable from any thread; every call is a message to the group's shard.
pub struct Engine<M: StateMachine + 'static> {
    node: NodeId,
    shards: Vec<crossbeam_channel::Sender<Command<M>>>,
    threads: std::sync::Mutex<Vec<glommio::ExecutorJoinHandle<()>>>,
    listening: Vec<SocketAddr>,
}

impl<M: StateMachine + 'static> Engine<M> {
    fn shard_of(&self, group: GroupId) -> &crossbeam_channel::Sender<Command<M>> {
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
        let _sent = self.shard_of(group).send(command(tx));
        rx
    }

    /// Creates this node's replica of `group` with `members` (including this node), restored
    /// from the log if the group was here before. `machine` must be empty: the group's
    /// committed log is applied to it again from index 1 (snapshots arrive with issue 6).
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

    /// Proposes `command` to `group`; the receiver (a future, or `wait()` to block) gives
    /// the state machine's result once the entry is applied on this node.
    pub fn propose(&self, group: GroupId, command: Vec<u8>) -> Proposal {
        Proposal(self.ask(group, |reply| Command::Propose {
            group,
            command,
            reply,
        }))
    }

    /// Proposes every command of `commands` to `group` in one request: one message to the
    /// shard and one answer, in order, once every command is decided (hand-offs between
    /// threads are paid per batch, not per proposal).
    pub fn propose_batch(&self, group: GroupId, commands: Vec<Vec<u8>>) -> BatchProposal {
        let count = commands.len();
        BatchProposal {
            receiver: self.ask(group, |reply| Command::ProposeBatch {
                group,
                commands,
                reply,
            }),
            count,
        }
    }

    /// [`Engine::propose`], blocking until the answer.
    pub fn propose_blocking(
        &self,
        group: GroupId,
        command: Vec<u8>,
    ) -> Result<Vec<u8>, RequestError> {
        self.propose(group, command).wait()
    }

    /// Role, term, leader, commit and applied index of this node's replica of `group`.
    pub fn status(&self, group: GroupId) -> Result<Status, RequestError> {
        self.ask(group, |reply| Command::Status { group, reply })
            .wait()
            .ok_or(RequestError::Shutdown)?
            .ok_or(RequestError::GroupNotFound(group))
    }

    /// Runs `read` on this node's replica of `group`'s state machine, on its shard thread,
    /// and returns its result: a local read (not linearizable: see `read` in issue 5).
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
            .send(Command::Inspect { group, inspect });
        rx.wait()
            .ok_or(RequestError::Shutdown)?
            .ok_or(RequestError::GroupNotFound(group))
    }

    /// Each shard's counters.
    pub fn stats(&self) -> Vec<ShardStats> {
        self.shards
            .iter()
            .filter_map(|shard| {
                let (reply, rx) = oneshot::channel();
                shard.send(Command::Stats { reply }).ok()?;
                rx.wait()
            })
            .collect()
    }

    /// This node.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The address each shard listens on.
    pub fn listening(&self) -> &[SocketAddr] {
        &self.listening
    }

    /// Stops every shard: proposals still waiting fail with `Shutdown`, each shard's log is
    /// closed after what is in flight is durable, and later requests fail with `Shutdown`.
    /// Also done on drop.
    pub fn shutdown(&self) {
        for shard in &self.shards {
            let _sent = shard.send(Command::Shutdown);
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

/// The answer to a proposal: await it, or [`Proposal::wait`].
pub struct Proposal(oneshot::Receiver<Result<Vec<u8>, RequestError>>);

impl Proposal {
    /// Blocks until the answer.
    pub fn wait(self) -> Result<Vec<u8>, RequestError> {
        self.0.wait().unwrap_or(Err(RequestError::Shutdown))
    }
}

impl std::future::Future for Proposal {
    type Output = Result<Vec<u8>, RequestError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(RequestError::Shutdown)))
    }
}

/// The answers to a batch of proposals, in order: await it, or [`BatchProposal::wait`].
pub struct BatchProposal {
    receiver: oneshot::Receiver<Vec<Result<Vec<u8>, RequestError>>>,
    count: usize,
}

impl BatchProposal {
    /// Blocks until every answer is known.
    pub fn wait(self) -> Vec<Result<Vec<u8>, RequestError>> {
        let count = self.count;
        self.receiver
            .wait()
            .unwrap_or_else(|| vec![Err(RequestError::Shutdown); count])
    }

    /// The answers if they are all known, without blocking; the batch back otherwise.
    pub fn try_take(self) -> Result<Vec<Result<Vec<u8>, RequestError>>, BatchProposal> {
        let count = self.count;
        match self.receiver.try_take() {
            Ok(answers) => Ok(answers.unwrap_or_else(|| vec![Err(RequestError::Shutdown); count])),
            Err(receiver) => Err(BatchProposal { receiver, count }),
        }
    }
}

impl std::future::Future for BatchProposal {
    type Output = Vec<Result<Vec<u8>, RequestError>>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let count = self.count;
        std::pin::Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|answers| answers.unwrap_or_else(|| vec![Err(RequestError::Shutdown); count]))
    }
}
