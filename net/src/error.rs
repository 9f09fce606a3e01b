//! The transport's typed errors, one enum per place a caller reacts differently.
//!
//! [`FrameError`]: bytes from a peer that are not a valid frame (the connection closes).
//! [`HandshakeError`]: a peer that is not who, or what, we expect (the connection closes).
//! [`ConnectionError`]: why a connection ended, as reported in
//! [`crate::TransportEvent::ConnectionClosed`]. [`SendError`]: why a batch was not queued.
//! [`StartError`]: the transport could not start.

use std::io;

use crate::frame::FrameKind;
use crate::handshake::RefuseReason;
use crate::transport::NodeId;

/// A frame received from a peer is malformed. Bytes from the network are untrusted: each
/// case closes the connection it arrived on and nothing else.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first four bytes are not `FLTN`: the peer is not a Flotilla transport.
    #[error("bad frame magic {found:02x?} (expected \"FLTN\")")]
    BadMagic {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The peer speaks a format version this build does not.
    #[error("unsupported frame format version {found} (this build speaks {supported})")]
    UnsupportedVersion {
        /// The version in the frame.
        found: u16,
        /// The version this build speaks.
        supported: u16,
    },
    /// The header's own crc does not match its bytes.
    #[error("frame header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    HeaderChecksum {
        /// The crc in the header.
        stored: u32,
        /// The crc of the bytes received.
        computed: u32,
    },
    /// The kind byte names no frame kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// Flags or reserved bytes that version 1 leaves zero are set.
    #[error("reserved frame header bits are set")]
    ReservedBitsSet,
    /// The claimed body is longer than the configured maximum; nothing was allocated.
    #[error("frame body of {body_bytes} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The claimed length.
        body_bytes: u32,
        /// The maximum in force.
        max: u32,
    },
    /// A kind that has no body (an ack) claims one.
    #[error("{kind:?} frame claims a body of {body_bytes} bytes")]
    UnexpectedBody {
        /// The frame's kind.
        kind: FrameKind,
        /// The claimed length.
        body_bytes: u32,
    },
    /// The body does not match the crc in the header.
    #[error("frame body checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BodyChecksum {
        /// The crc in the header.
        stored: u32,
        /// The crc of the body received.
        computed: u32,
    },
    /// The body handed over is not as long as its header says.
    #[error("frame body of {body_bytes} bytes under a header claiming {header_bytes}")]
    BodyLength {
        /// The body's length.
        body_bytes: usize,
        /// The header's `body_len`.
        header_bytes: u32,
    },
    /// The body passed its crc but is not a valid archive of a message batch.
    #[error("frame body is not a valid message batch: {0}")]
    InvalidArchive(String),
    /// A handshake body of the wrong length.
    #[error("{kind:?} body of {body_bytes} bytes (expected {expected})")]
    BadHandshakeBody {
        /// The frame's kind.
        kind: FrameKind,
        /// The length received.
        body_bytes: usize,
        /// The length of that kind's body.
        expected: usize,
    },
}

/// The two ends of a connection do not belong together.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The peer belongs to another cluster.
    #[error("peer is in cluster {found:#x}, this node in cluster {expected:#x}")]
    ClusterMismatch {
        /// The peer's cluster id.
        found: u64,
        /// Ours.
        expected: u64,
    },
    /// The peer's hello names a format version this build does not speak.
    #[error("peer speaks format version {found}, this build {supported}")]
    VersionMismatch {
        /// The peer's version.
        found: u16,
        /// Ours.
        supported: u16,
    },
    /// The node we dialed answered with another node id (a stale address, or a proxy
    /// pointing at the wrong machine).
    #[error("dialed node {expected} but node {found} answered")]
    WrongNode {
        /// The node id we meant to reach.
        expected: NodeId,
        /// The node id that answered.
        found: NodeId,
    },
    /// A node that is not among our peers dialed us.
    #[error("node {0} is not a configured peer")]
    UnknownNode(NodeId),
    /// A node dialed us with our own node id.
    #[error("peer claims this node's own id {0}")]
    OwnId(NodeId),
    /// The acceptor refused our hello.
    #[error("peer refused the connection: {0}")]
    Refused(RefuseReason),
    /// The first frame was not the handshake frame expected.
    #[error("expected a {expected:?} frame, got {found:?}")]
    UnexpectedFrame {
        /// The kind expected.
        expected: FrameKind,
        /// The kind received.
        found: FrameKind,
    },
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The socket failed or the peer closed it.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The peer sent a malformed frame.
    #[error("malformed frame: {0}")]
    Frame(#[from] FrameError),
    /// The handshake failed.
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// The peer broke the protocol with well-formed frames.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// Connecting or the handshake took longer than allowed.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The peer sent nothing for the configured idle time (a quiet peer redials when it
    /// has something to send).
    #[error("idle for {idle_ms} ms")]
    Idle {
        /// The idle time allowed.
        idle_ms: u64,
    },
    /// A newer connection from the same peer shard completed its handshake.
    #[error("replaced by a newer connection from the same peer shard")]
    Replaced,
}

/// A batch was not queued. The caller keeps its batch (it was only borrowed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The peer's bounded send queue is full: back-pressure. Retry after events drain, or
    /// drop the messages (Raft tolerates loss).
    #[error("send queue to node {peer} is full")]
    QueueFull {
        /// The destination.
        peer: NodeId,
    },
    /// The destination is not a configured peer.
    #[error("node {0} is not a configured peer")]
    UnknownPeer(NodeId),
    /// The encoded batch exceeds the maximum frame body.
    #[error("encoded batch of {body_bytes} bytes exceeds the maximum frame body of {max}")]
    TooLarge {
        /// The encoded size.
        body_bytes: usize,
        /// The maximum.
        max: u32,
    },
    /// The batch's `from`/`to` do not name this node and the destination.
    #[error("batch addressed from {from} to {to}, but sent by {local} to {peer}")]
    Misaddressed {
        /// The batch's `from`.
        from: u64,
        /// The batch's `to`.
        to: u64,
        /// This node.
        local: NodeId,
        /// The destination given.
        peer: NodeId,
    },
    /// The transport was shut down.
    #[error("transport is shut down")]
    Closed,
}

/// The transport could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable.
    #[error("invalid transport configuration: {0}")]
    Config(String),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: io::Error,
    },
}
