//! Flotilla: a batched and pipelined multi-Raft engine.
//!
//! Today this crate holds the sans-I/O Raft core, [`raft`]: one replica of one group as a
//! pure state machine, and the first piece of the runtime that will drive thousands of
//! them over the write-ahead log and the network ([`runtime`], issue 5): the conversion
//! between the core's messages and the transport's batches.
//!
//! # Driving a group
//!
//! A driver owns each replica and loops: feed inputs, take the [`raft::Ready`], send,
//! persist, acknowledge, apply. Here three replicas of one group live in one process,
//! messages are handed over directly and "persisting" is instant:
//!
//! ```
//! use flotilla::raft::{Config, NodeId, RaftGroup, RestoredState, Role};
//!
//! let ids = [NodeId(1), NodeId(2), NodeId(3)];
//! let mut replicas: Vec<RaftGroup> = ids
//!     .iter()
//!     .map(|&id| RaftGroup::new(Config::new(id, id.0), &ids, RestoredState::default()))
//!     .collect::<Result<_, _>>()
//!     .expect("valid configuration");
//!
//! let mut applied = Vec::new();
//! let mut proposed = false;
//! for _round in 0..2_000 {
//!     let mut messages = Vec::new();
//!     for replica in &mut replicas {
//!         replica.tick();
//!         while let Some(ready) = replica.poll_ready() {
//!             messages.extend(ready.messages);          // 1. send now
//!             // 2. persist ready.hard_state and ready.entries here, then:
//!             replica.on_persisted(ready.id);            // 3. durable
//!             messages.extend(ready.persisted_messages); //    ... then these may go
//!             for entry in &ready.committed_entries {    // 4. apply
//!                 if replica.id() == NodeId(1) && !entry.data.is_empty() {
//!                     applied.push(entry.data.to_vec());
//!                 }
//!             }
//!             if let Some(last) = ready.committed_entries.last() {
//!                 replica.on_applied(last.index);
//!             }
//!         }
//!     }
//!     for message in messages {
//!         let to = ids.iter().position(|&id| id == message.to).expect("known node");
//!         replicas[to].step(message).expect("well-formed message");
//!     }
//!     if let Some(leader) = replicas.iter_mut().find(|r| r.status().role == Role::Leader) {
//!         if !proposed {
//!             leader.propose(b"hello").expect("leader takes proposals");
//!             proposed = true;
//!         }
//!     }
//!     if !applied.is_empty() {
//!         break;
//!     }
//! }
//! assert_eq!(applied, vec![b"hello".to_vec()]);
//! ```

pub mod api;
pub mod raft;
pub mod runtime;

pub use api::{
    Answer, BatchProposal, BuildError, Engine, EngineBuilder, Metrics,
    PROPOSAL_BUDGET_BYTES_DEFAULT, Proposal, RequestError, SNAPSHOT_EVERY_ENTRIES_DEFAULT,
    ShardMetrics,
};
