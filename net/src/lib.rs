//! `flotilla-net`: the transport that carries Raft traffic between Flotilla nodes.
//!
//! Messages for many Raft groups travel together: a [`MessageBatch`] holds everything one
//! node sends another in one flush (appends with their entries, responses, votes and
//! pre-votes, coalesced heartbeats, read-index, timeout-now, snapshot chunks), archived by
//! rkyv into the body of one checksummed frame ([`frame`], [`codec`]). The receiver checks
//! the frame and validates the archive once, then reads it in place: entry payloads are
//! handed on as references into the receive buffer ([`ReceivedFrame::payload`]), never
//! copied.
//!
//! Two implementations of one [`Transport`] interface: [`TcpTransport`] (one connection per
//! peer per shard, lazy dial, handshake, pipelined vectored writes, acks, bounded queues,
//! reconnect with backoff, on the shard's glommio executor) and [`MemoryNetwork`] for tests
//! and simulation.
//!
//! **Boundary:** the transport knows the shape of Raft's messages but not Raft: it never
//! checks terms or indexes. Bytes from the network are untrusted: a malformed frame closes
//! its connection with a logged and reported reason, and never panics the node.
//! docs/FORMATS.md describes the frame and the archive byte by byte.
//!
//! ```
//! use flotilla_net::{MemoryNetwork, MessageBatch, NodeId, Transport, TransportConfig};
//! use flotilla_net::{GroupHeartbeat, TransportEvent};
//!
//! let network = MemoryNetwork::new();
//! let mut one = network.endpoint(TransportConfig::new(7, NodeId(1)));
//! let mut two = network.endpoint(TransportConfig::new(7, NodeId(2)));
//! let mut batch = MessageBatch::new(1, 2);
//! batch.heartbeats.push(GroupHeartbeat { group: 9, term: 3, commit: 10, read_round: 0 });
//! one.try_send(NodeId(2), &batch)?;
//! let mut events = Vec::new();
//! two.poll_events(&mut events);
//! for event in &events {
//!     if let TransportEvent::Received { frame, .. } = event {
//!         assert_eq!(frame.batch().heartbeats[0].commit, 10);
//!     }
//! }
//! assert!(matches!(events[..], [TransportEvent::Connected { .. }, TransportEvent::Received { .. }]));
//! # Ok::<(), flotilla_net::SendError>(())
//! ```
#![deny(clippy::cast_possible_truncation)]

pub mod codec;
pub mod error;
pub mod frame;
pub mod fuzzing;
pub mod handshake;
pub mod transport;

pub use codec::{
    ArchivedGroupHeartbeat, ArchivedGroupHeartbeatResponse, ArchivedGroupMessage,
    ArchivedMessageBatch, ArchivedMessageBody, ArchivedSnapshotChunk, ArchivedWireEntry,
    ArchivedWireEntryKind, GroupHeartbeat, GroupHeartbeatResponse, GroupMessage, MessageBatch,
    MessageBody, SnapshotChunk, WireEntry, WireEntryKind,
};
pub use error::{ConnectionError, FrameError, HandshakeError, SendError, StartError};
pub use transport::{
    Direction, FrameId, MemoryNetwork, MemoryTransport, NodeId, ReceivedFrame, TcpTransport,
    Transport, TransportConfig, TransportEvent,
};
