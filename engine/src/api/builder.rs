//! [`EngineBuilder`]: a node's configuration, its validation, and starting the shards.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use flotilla_net::{NodeId as NetNodeId, TransportConfig};

use super::{Engine, ShardHandle};
use crate::raft::{Config, ELECTION_TIMEOUT_TICKS_DEFAULT, NodeId};
use crate::runtime::executor::{self, ShardSetup};
use crate::runtime::oneshot;
use crate::runtime::outstanding::ProposalBudget;
use crate::runtime::state_machine::StateMachine;

/// The largest `proposal_bytes_max` the engine accepts: half a transport frame.
pub const PROPOSAL_BYTES_LIMIT: usize = 8 << 20;

/// The default budget of proposal bytes accepted and not yet decided, per shard.
pub const PROPOSAL_BUDGET_BYTES_DEFAULT: usize = 64 << 20;

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
    proposal_budget_bytes: usize,
    snapshot_every_entries: u64,
}

/// By default a group snapshots its state machine every this many applied entries.
pub const SNAPSHOT_EVERY_ENTRIES_DEFAULT: u64 = 10_000;

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
            proposal_budget_bytes: PROPOSAL_BUDGET_BYTES_DEFAULT,
            snapshot_every_entries: SNAPSHOT_EVERY_ENTRIES_DEFAULT,
        }
    }

    /// Each group snapshots its state machine (`StateMachine::snapshot`) every `entries`
    /// applied entries and compacts its log behind it, keeping
    /// `Config::compaction_tail_entries`; followers that need compacted entries get the
    /// snapshot. 0 never snapshots (the log then grows without bound).
    pub fn snapshot_every_entries(mut self, entries: u64) -> EngineBuilder {
        self.snapshot_every_entries = entries;
        self
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

    /// Each shard's budget of proposal bytes accepted and not yet decided; beyond it,
    /// proposals fail at once with `RequestError::Busy`. At least `proposal_bytes_max`.
    pub fn proposal_budget_bytes(mut self, bytes: usize) -> EngineBuilder {
        self.proposal_budget_bytes = bytes;
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
        if self.proposal_budget_bytes < self.raft.proposal_bytes_max {
            return invalid(format!(
                "proposal_budget_bytes {} is below proposal_bytes_max {}: the largest proposal could never be accepted",
                self.proposal_budget_bytes, self.raft.proposal_bytes_max
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
            let budget = ProposalBudget::new(self.proposal_budget_bytes);
            let mut transport = TransportConfig::new(self.cluster_id, NetNodeId(self.node.0));
            transport.shard = index;
            let setup = ShardSetup {
                index,
                raft: self.raft.clone(),
                wal_dir: self.data_dir.join(format!("shard-{index}")),
                snapshot_dir: self.data_dir.join(format!("shard-{index}-snapshots")),
                snapshot_every_entries: self.snapshot_every_entries,
                listen: offset(self.listen),
                peers: self
                    .peers
                    .iter()
                    .map(|&(node, addr)| (node, offset(addr)))
                    .collect(),
                transport,
                tick: self.tick,
                budget: budget.clone(),
            };
            let (tx, rx) = crossbeam_channel::unbounded();
            let (started_tx, started_rx) = oneshot::channel();
            let thread = executor::spawn::<M>(setup, rx, started_tx).map_err(|reason| {
                BuildError::Shard {
                    shard: index,
                    reason,
                }
            })?;
            engine.shards.push(ShardHandle {
                commands: tx,
                budget,
            });
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
