//! The [`Transport`] interface and its two implementations: TCP for production
//! ([`TcpTransport`], on a glommio executor) and in-memory for tests and simulation
//! ([`MemoryNetwork`]).
//!
//! A transport is used from one thread, the shard's, and never blocks it:
//! [`Transport::try_send`] encodes a batch into a frame and queues it for the peer, or says
//! why it could not ([`SendError`], with back-pressure as `QueueFull`);
//! [`Transport::poll_events`] drains what happened meanwhile ([`TransportEvent`]): frames
//! received, frames lost with a broken connection, connections opened and closed.
//!
//! Each queued frame gets a [`FrameId`], increasing per peer. When a connection breaks, the
//! sender is told exactly which frames may not have arrived: those written but not yet
//! acknowledged by the receiver, and those still queued (they are dropped rather than sent
//! late on the next connection; Raft resends what matters).

use std::fmt;

use rkyv::util::AlignedVec;

use crate::codec::{EncodedFrame, MessageBatch, encode_batch};
use crate::error::{ConnectionError, SendError, StartError};

pub mod memory;
mod notify;
pub mod received;
mod send_queue;
mod sys;
pub mod tcp;

pub use memory::{MemoryNetwork, MemoryTransport};
pub use received::{ReceiveBuffers, ReceivedFrame};
pub use tcp::TcpTransport;

/// A node of the cluster, as named in the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Names one frame queued for one peer; increases by one per frame per peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameId(pub u64);

/// Which end of a connection this node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// We dialed: we send data frames and read acks.
    Outbound,
    /// We accepted: we read data frames and send acks.
    Inbound,
}

/// What happened on the transport since the last poll.
#[derive(Debug)]
pub enum TransportEvent {
    /// A data frame arrived from `peer` and passed every check.
    Received {
        /// The sender.
        peer: NodeId,
        /// The frame, read in place.
        frame: ReceivedFrame,
    },
    /// A connection to or from `peer` completed its handshake.
    Connected {
        /// The peer.
        peer: NodeId,
        /// Who dialed.
        direction: Direction,
    },
    /// These frames to `peer` may not have arrived: their connection broke before the
    /// receiver acknowledged them, or they were still queued. Sorted, no duplicates.
    FramesLost {
        /// The destination.
        peer: NodeId,
        /// The frames.
        frames: Vec<FrameId>,
    },
    /// A connection ended; `error` says why (also logged).
    ConnectionClosed {
        /// The peer, when the handshake got far enough to know it.
        peer: Option<NodeId>,
        /// Who dialed.
        direction: Direction,
        /// Why it ended.
        error: ConnectionError,
    },
}

/// Moves message batches between this node and its peers. See the module docs.
pub trait Transport {
    /// Encodes `batch` (addressed from this node to `peer`) into one frame and queues it.
    /// Never blocks. A batch with a snapshot chunk goes in the bulk lane, behind which
    /// heartbeats and votes do not wait.
    fn try_send(&mut self, peer: NodeId, batch: &MessageBatch) -> Result<FrameId, SendError>;

    /// Appends every event since the last call to `events`. Never blocks.
    fn poll_events(&mut self, events: &mut Vec<TransportEvent>);
}

/// Limits and identity shared by both transports. Every queue and buffer is bounded here.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// The cluster every peer must belong to (checked in the handshake).
    pub cluster_id: u64,
    /// This node.
    pub node_id: NodeId,
    /// The shard of this node that owns the transport.
    pub shard: u32,
    /// Largest frame body accepted or sent; a peer claiming more is disconnected before
    /// anything is allocated.
    pub frame_body_bytes_max: u32,
    /// Frames queued per peer, not yet written, before `try_send` says `QueueFull`.
    pub send_queue_frames_max: usize,
    /// Bytes queued per peer, not yet written, before `try_send` says `QueueFull`.
    pub send_queue_bytes_max: usize,
    /// Frames written but not yet acknowledged per connection (the pipeline depth).
    pub frames_in_flight_max: usize,
    /// Bytes gathered into one vectored write (the frame that crosses it is included).
    pub write_bytes_max: usize,
    /// Receive buffers pooled per inbound connection. Buffers above 1 MiB are shrunk when
    /// reused for a smaller frame, so the pool holds about `receive_buffers_max` × 1 MiB
    /// at rest.
    pub receive_buffers_max: usize,
    /// Inbound connections served at once.
    pub inbound_connections_max: usize,
    /// Inbound connections still in their handshake at once (unauthenticated peers cannot
    /// take more slots than this).
    pub handshakes_max: usize,
    /// Bytes of received frames not yet taken by `poll_events`; beyond this, inbound
    /// connections stop reading and TCP pushes back on the senders.
    pub received_bytes_pending_max: usize,
    /// Time allowed to connect.
    pub connect_timeout_ms: u64,
    /// Time allowed for the handshake.
    pub handshake_timeout_ms: u64,
    /// A connection with frames in flight and no ack for this long is closed.
    pub ack_timeout_ms: u64,
    /// An inbound connection on which nothing arrives for this long is closed (a peer that
    /// vanished without a reset frees its slot; a quiet one redials when it next sends).
    pub idle_timeout_ms: u64,
    /// First delay before redialing a peer after a failure; doubles per failure.
    pub reconnect_backoff_initial_ms: u64,
    /// Cap of the redial delay.
    pub reconnect_backoff_max_ms: u64,
}

/// Most iovecs gathered into one vectored write.
pub const WRITE_IOVECS_MAX: usize = 64;

impl TransportConfig {
    /// Defaults for `node_id` in `cluster_id`.
    pub fn new(cluster_id: u64, node_id: NodeId) -> TransportConfig {
        TransportConfig {
            cluster_id,
            node_id,
            shard: 0,
            frame_body_bytes_max: 16 << 20,
            send_queue_frames_max: 1024,
            send_queue_bytes_max: 64 << 20,
            frames_in_flight_max: 64,
            write_bytes_max: 4 << 20,
            receive_buffers_max: 16,
            inbound_connections_max: 1024,
            handshakes_max: 64,
            received_bytes_pending_max: 256 << 20,
            connect_timeout_ms: 1_000,
            handshake_timeout_ms: 1_000,
            ack_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            reconnect_backoff_initial_ms: 20,
            reconnect_backoff_max_ms: 2_000,
        }
    }

    /// Checks that every limit is usable.
    pub fn validate(&self) -> Result<(), StartError> {
        let positive = [
            ("frame_body_bytes_max", self.frame_body_bytes_max as usize),
            ("send_queue_frames_max", self.send_queue_frames_max),
            ("send_queue_bytes_max", self.send_queue_bytes_max),
            ("frames_in_flight_max", self.frames_in_flight_max),
            ("write_bytes_max", self.write_bytes_max),
            ("receive_buffers_max", self.receive_buffers_max),
            ("inbound_connections_max", self.inbound_connections_max),
            ("handshakes_max", self.handshakes_max),
            (
                "received_bytes_pending_max",
                self.received_bytes_pending_max,
            ),
            (
                "connect_timeout_ms",
                usize::from(self.connect_timeout_ms > 0),
            ),
            (
                "handshake_timeout_ms",
                usize::from(self.handshake_timeout_ms > 0),
            ),
            ("ack_timeout_ms", usize::from(self.ack_timeout_ms > 0)),
            ("idle_timeout_ms", usize::from(self.idle_timeout_ms > 0)),
            (
                "reconnect_backoff_initial_ms",
                usize::from(self.reconnect_backoff_initial_ms > 0),
            ),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(StartError::Config(format!("{name} must be positive")));
        }
        if self.frame_body_bytes_max > crate::frame::FRAME_BODY_BYTES_LIMIT {
            return Err(StartError::Config(format!(
                "frame_body_bytes_max {} exceeds the format's limit {}",
                self.frame_body_bytes_max,
                crate::frame::FRAME_BODY_BYTES_LIMIT
            )));
        }
        if self.reconnect_backoff_max_ms < self.reconnect_backoff_initial_ms {
            return Err(StartError::Config(
                "reconnect_backoff_max_ms is below reconnect_backoff_initial_ms".into(),
            ));
        }
        Ok(())
    }

    /// Checks that `batch` is addressed from this node to `peer`.
    pub(crate) fn check_outgoing(
        &self,
        peer: NodeId,
        batch: &MessageBatch,
    ) -> Result<(), SendError> {
        if batch.from != self.node_id.0 || batch.to != peer.0 {
            return Err(SendError::Misaddressed {
                from: batch.from,
                to: batch.to,
                local: self.node_id,
                peer,
            });
        }
        Ok(())
    }

    /// Encodes `batch` (its addressing already checked by `check_outgoing`) within the
    /// maximum frame body.
    pub(crate) fn encode(
        &self,
        batch: &MessageBatch,
        buffer: AlignedVec,
    ) -> Result<EncodedFrame, SendError> {
        encode_batch(batch, buffer, self.frame_body_bytes_max).map_err(|body_bytes| {
            SendError::TooLarge {
                body_bytes,
                max: self.frame_body_bytes_max,
            }
        })
    }
}

/// Checks a received batch's addressing against the connection it came on.
pub(crate) fn check_addressing(
    frame: &ReceivedFrame,
    local: NodeId,
    peer: NodeId,
) -> Result<(), ConnectionError> {
    let batch = frame.batch();
    let (from, to) = (batch.from.to_native(), batch.to.to_native());
    if from != peer.0 || to != local.0 {
        return Err(ConnectionError::Protocol(format!(
            "batch addressed from {from} to {to} on the connection from {peer} to {local}"
        )));
    }
    Ok(())
}
