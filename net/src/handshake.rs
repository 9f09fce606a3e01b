//! The handshake: the first frames of every connection, exchanging cluster id, node id,
//! shard and format version.
//!
//! The dialer sends a [`Hello`] frame; the acceptor answers with its own `Hello` in a
//! `HelloAccept` frame, or with a `HelloRefuse` frame naming a [`RefuseReason`], and closes.
//! Identity is the node id exchanged here, never the address: a proxy may stand between
//! nodes. Bodies are fixed little-endian layouts (docs/FORMATS.md, "Handshake").
#![forbid(unsafe_code)]

use std::fmt;

use crate::error::{FrameError, HandshakeError};
use crate::frame::{FORMAT_VERSION, FrameKind};
use crate::transport::NodeId;

/// Size of a [`Hello`] body.
pub const HELLO_BYTES: usize = 24;
/// Size of a `HelloRefuse` body.
pub const REFUSE_BYTES: usize = 8;

/// Who is at one end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The cluster both ends must belong to.
    pub cluster_id: u64,
    /// The node speaking.
    pub node_id: NodeId,
    /// The node's shard that owns this connection.
    pub shard: u32,
    /// The format version the node speaks.
    pub version: u16,
}

impl Hello {
    /// This build's hello for `node_id`'s `shard` in `cluster_id`.
    pub fn new(cluster_id: u64, node_id: NodeId, shard: u32) -> Hello {
        Hello {
            cluster_id,
            node_id,
            shard,
            version: FORMAT_VERSION,
        }
    }

    /// The body's bytes.
    pub fn encode(&self) -> [u8; HELLO_BYTES] {
        let mut out = [0u8; HELLO_BYTES];
        out[0..8].copy_from_slice(&self.cluster_id.to_le_bytes());
        out[8..16].copy_from_slice(&self.node_id.0.to_le_bytes());
        out[16..20].copy_from_slice(&self.shard.to_le_bytes());
        out[20..22].copy_from_slice(&self.version.to_le_bytes());
        out
    }

    /// Decodes a hello body received in a frame of `kind`.
    pub fn decode(kind: FrameKind, body: &[u8]) -> Result<Hello, FrameError> {
        let bytes: &[u8; HELLO_BYTES] =
            body.try_into().map_err(|_| FrameError::BadHandshakeBody {
                kind,
                body_bytes: body.len(),
                expected: HELLO_BYTES,
            })?;
        if bytes[22..24] != [0, 0] {
            return Err(FrameError::ReservedBitsSet);
        }
        Ok(Hello {
            cluster_id: u64::from_le_bytes(bytes[0..8].try_into().expect("8 bytes")),
            node_id: NodeId(u64::from_le_bytes(
                bytes[8..16].try_into().expect("8 bytes"),
            )),
            shard: u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes")),
            version: u16::from_le_bytes([bytes[20], bytes[21]]),
        })
    }

    /// The acceptor's check of a dialer's hello against its own: same cluster and version,
    /// a configured peer that is not this node.
    pub fn check_dialer(
        &self,
        dialer: &Hello,
        is_peer: impl Fn(NodeId) -> bool,
    ) -> Result<(), HandshakeError> {
        self.check_common(dialer)?;
        if dialer.node_id == self.node_id {
            return Err(HandshakeError::OwnId(dialer.node_id));
        }
        if !is_peer(dialer.node_id) {
            return Err(HandshakeError::UnknownNode(dialer.node_id));
        }
        Ok(())
    }

    /// The dialer's check of the acceptor's hello: same cluster and version, and the node
    /// it meant to reach.
    pub fn check_acceptor(&self, acceptor: &Hello, expected: NodeId) -> Result<(), HandshakeError> {
        self.check_common(acceptor)?;
        if acceptor.node_id != expected {
            return Err(HandshakeError::WrongNode {
                expected,
                found: acceptor.node_id,
            });
        }
        Ok(())
    }

    fn check_common(&self, other: &Hello) -> Result<(), HandshakeError> {
        if other.version != self.version {
            return Err(HandshakeError::VersionMismatch {
                found: other.version,
                supported: self.version,
            });
        }
        if other.cluster_id != self.cluster_id {
            return Err(HandshakeError::ClusterMismatch {
                found: other.cluster_id,
                expected: self.cluster_id,
            });
        }
        Ok(())
    }
}

/// Why an acceptor refused a hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefuseReason {
    /// Different cluster ids.
    ClusterMismatch,
    /// Different format versions.
    VersionMismatch,
    /// The dialer is not a configured peer, or claims the acceptor's id.
    UnknownNode,
    /// A code this build does not know (a newer peer).
    Other(u32),
}

impl RefuseReason {
    /// The reason an acceptor gives for `error`.
    pub fn for_error(error: &HandshakeError) -> RefuseReason {
        match error {
            HandshakeError::ClusterMismatch { .. } => RefuseReason::ClusterMismatch,
            HandshakeError::VersionMismatch { .. } => RefuseReason::VersionMismatch,
            _ => RefuseReason::UnknownNode,
        }
    }

    /// The body's bytes.
    pub fn encode(&self) -> [u8; REFUSE_BYTES] {
        let code: u32 = match self {
            RefuseReason::ClusterMismatch => 1,
            RefuseReason::VersionMismatch => 2,
            RefuseReason::UnknownNode => 3,
            RefuseReason::Other(code) => *code,
        };
        let mut out = [0u8; REFUSE_BYTES];
        out[0..4].copy_from_slice(&code.to_le_bytes());
        out
    }

    /// Decodes a refusal body.
    pub fn decode(body: &[u8]) -> Result<RefuseReason, FrameError> {
        let bytes: &[u8; REFUSE_BYTES] =
            body.try_into().map_err(|_| FrameError::BadHandshakeBody {
                kind: FrameKind::HelloRefuse,
                body_bytes: body.len(),
                expected: REFUSE_BYTES,
            })?;
        Ok(
            match u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) {
                1 => RefuseReason::ClusterMismatch,
                2 => RefuseReason::VersionMismatch,
                3 => RefuseReason::UnknownNode,
                code => RefuseReason::Other(code),
            },
        )
    }
}

impl fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefuseReason::ClusterMismatch => f.write_str("cluster id mismatch"),
            RefuseReason::VersionMismatch => f.write_str("format version mismatch"),
            RefuseReason::UnknownNode => f.write_str("unknown node id"),
            RefuseReason::Other(code) => write!(f, "reason code {code}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_and_is_checked() {
        let ours = Hello::new(0xC1, NodeId(1), 0);
        let theirs = Hello::new(0xC1, NodeId(2), 3);
        let decoded = Hello::decode(FrameKind::Hello, &theirs.encode()).expect("valid");
        assert_eq!(decoded, theirs);
        assert_eq!(ours.check_dialer(&theirs, |node| node == NodeId(2)), Ok(()));
        assert_eq!(
            ours.check_dialer(&theirs, |_| false),
            Err(HandshakeError::UnknownNode(NodeId(2)))
        );
        assert_eq!(
            ours.check_dialer(&ours, |_| true),
            Err(HandshakeError::OwnId(NodeId(1)))
        );
        let other_cluster = Hello::new(0xC2, NodeId(2), 0);
        assert!(matches!(
            ours.check_dialer(&other_cluster, |_| true),
            Err(HandshakeError::ClusterMismatch {
                found: 0xC2,
                expected: 0xC1
            })
        ));
        let newer = Hello {
            version: FORMAT_VERSION + 1,
            ..theirs
        };
        assert!(matches!(
            ours.check_acceptor(&newer, NodeId(2)),
            Err(HandshakeError::VersionMismatch { .. })
        ));
        assert_eq!(
            ours.check_acceptor(&theirs, NodeId(3)),
            Err(HandshakeError::WrongNode {
                expected: NodeId(3),
                found: NodeId(2)
            })
        );
        assert!(Hello::decode(FrameKind::Hello, &[0u8; 5]).is_err());
    }

    #[test]
    fn refusal_round_trips() {
        for reason in [
            RefuseReason::ClusterMismatch,
            RefuseReason::VersionMismatch,
            RefuseReason::UnknownNode,
            RefuseReason::Other(99),
        ] {
            assert_eq!(RefuseReason::decode(&reason.encode()), Ok(reason));
        }
    }
}
