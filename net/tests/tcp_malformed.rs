//! Untrusted input on a live transport: each malformed frame closes the connection it came
//! on with its own error, while the node keeps serving a well-behaved peer.

mod common;

use std::net::SocketAddr;

use common::{CLUSTER, config, listening, loopback, next_event, numbered_batch, run};
use flotilla_net::frame::{FRAME_HEADER_BYTES, FrameHeader, FrameKind};
use flotilla_net::handshake::{Hello, RefuseReason};
use flotilla_net::{
    ConnectionError, Direction, FrameError, HandshakeError, NodeId, TcpTransport, Transport,
    TransportEvent,
};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use rkyv::util::AlignedVec;

/// Rewrites a header's crc after its bytes were changed.
fn reseal(mut header: [u8; FRAME_HEADER_BYTES]) -> [u8; FRAME_HEADER_BYTES] {
    let crc = crc32fast::hash(&header[0..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    header
}

fn frame(kind: FrameKind, seq: u64, body: &[u8]) -> Vec<u8> {
    let mut bytes = FrameHeader::for_body(kind, seq, body).encode().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

/// A data frame carrying a valid batch from `from` to 2.
fn data_frame(from: u64, seq: u64) -> Vec<u8> {
    let batch = numbered_batch(from, 2, 0, 3, 32);
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&batch).expect("encodes");
    frame(FrameKind::Data, seq, &bytes)
}

/// Connects as node 3, optionally completes the handshake, sends `bytes`, and reads until
/// the transport closes the connection. Returns what the transport sent back.
async fn attack(addr: SocketAddr, handshake: bool, bytes: Vec<u8>) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let mut reply = Vec::new();
    if handshake {
        let hello = Hello::new(CLUSTER, NodeId(3), 0).encode();
        stream
            .write_all(&frame(FrameKind::Hello, 0, &hello))
            .await
            .expect("writes hello");
        let mut accept = [0u8; FRAME_HEADER_BYTES + 24];
        stream
            .read_exact(&mut accept)
            .await
            .expect("reads the accept");
        let header: [u8; FRAME_HEADER_BYTES] = accept[..FRAME_HEADER_BYTES].try_into().expect("32");
        assert_eq!(
            FrameHeader::decode(&header, 64).expect("valid").kind,
            FrameKind::HelloAccept
        );
    }
    // The transport may close while we still write: that is the point.
    let _written = stream.write_all(&bytes).await;
    let _read = stream.read_to_end(&mut reply).await;
    reply
}

/// Waits for the inbound connection close and returns its error, checking that the
/// well-behaved peer (node 1) is still served afterwards.
async fn closed_error(
    receiver: &mut TcpTransport,
    sender: &mut TcpTransport,
    round: u64,
) -> ConnectionError {
    let error = next_event(receiver, |event| match event {
        TransportEvent::ConnectionClosed {
            direction: Direction::Inbound,
            peer,
            error,
        } if peer != Some(NodeId(1)) => Some(error),
        TransportEvent::ConnectionClosed { peer, error, .. } => {
            panic!("the good connection from {peer:?} closed: {error}")
        }
        _ => None,
    })
    .await;
    sender
        .try_send(NodeId(2), &numbered_batch(1, 2, round, 1, 8))
        .expect("queued");
    next_event(receiver, |event| match event {
        TransportEvent::Received {
            peer: NodeId(1),
            frame,
        } if frame.batch().messages[0].group == round => Some(()),
        _ => None,
    })
    .await;
    error
}

#[test]
fn every_malformed_input_closes_only_its_connection() {
    run(|| async {
        let mut receiver = listening(config(2));
        let addr = receiver.local_addr().expect("listens");
        receiver.set_peer(NodeId(1), loopback());
        receiver.set_peer(NodeId(3), loopback());
        let mut sender = TcpTransport::start(config(1), None).expect("starts");
        sender.set_peer(NodeId(2), addr);

        let good = FrameHeader::for_body(FrameKind::Data, 1, b"0123456789").encode();
        let mut round = 0;
        let mut next_round = || {
            round += 1;
            round
        };

        // Bad magic, before any handshake.
        let mut bad_magic = frame(FrameKind::Hello, 0, &[0; 24]);
        bad_magic[0..4].copy_from_slice(b"HTTP");
        attack(addr, false, bad_magic).await;
        let error = closed_error(&mut receiver, &mut sender, next_round()).await;
        assert!(
            matches!(error, ConnectionError::Frame(FrameError::BadMagic { .. })),
            "{error}"
        );

        // A version this build does not speak.
        let mut version = good;
        version[4] = 9;
        attack(addr, true, reseal(version).to_vec()).await;
        let error = closed_error(&mut receiver, &mut sender, next_round()).await;
        assert!(
            matches!(
                error,
                ConnectionError::Frame(FrameError::UnsupportedVersion { found: 9, .. })
            ),
            "{error}"
        );

        // A header damaged in transit.
        let mut damaged = good;
        damaged[17] ^= 1;
        attack(addr, true, damaged.to_vec()).await;
        let error = closed_error(&mut receiver, &mut sender, next_round()).await;
        assert!(
            matches!(
                error,
                ConnectionError::Frame(FrameError::HeaderChecksum { .. })
            ),
            "{error}"
        );

        // A claimed length over the maximum (4 GiB): refused before any allocation.
        let mut huge = good;
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        attack(addr, true, reseal(huge).to_vec()).await;
        let error = closed_error(&mut receiver, &mut sender, next_round()).await;
        assert!(
            matches!(
                error,
                ConnectionError::Frame(FrameError::TooLarge {
                    body_bytes: u32::MAX,
                    ..
                })
            ),
            "{error}"
        );

        // A body that does not match its crc.
        let mut corrupt = data_frame(3, 1);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0x40;
        attack(addr, true, corrupt).await;
        let error = closed_error(&mut receiver, &mut sender, next_round()).await;
        assert!(
            matches!(
                error,
                ConnectionError::Frame(FrameError::BodyChecksum { .. })
            ),
            "{error}"
        );

        // A body with the right crc that is not a valid archive.
        let valid = data_frame(3, 1);
        let mut body = AlignedVec::<16>::new();
        body.extend_from_slice(&valid[FRAME_HEADER_BYTES..]);
        let at = body.len() - 4;
        body[at..].copy_from_slice(&u32::MAX.to_le_bytes()); // the root's relative pointer
        attack(addr, true, frame(FrameKind::Data, 1, &body)).await;
        let error = closed_error(&mut receiver, &mut sender, next_round()).await;
        assert!(
            matches!(error, ConnectionError::Frame(FrameError::InvalidArchive(_))),
            "{error}"
        );

        // Well-formed frames that break the protocol: a gap in sequence numbers, and a
        // batch claiming to come from another node.
        attack(addr, true, data_frame(3, 2)).await;
        let error = closed_error(&mut receiver, &mut sender, next_round()).await;
        assert!(matches!(error, ConnectionError::Protocol(_)), "{error}");
        attack(addr, true, data_frame(1, 1)).await;
        let error = closed_error(&mut receiver, &mut sender, next_round()).await;
        assert!(matches!(error, ConnectionError::Protocol(_)), "{error}");

        // A hello in another format version: refused with the reason, then closed.
        let hello = Hello {
            version: 9,
            ..Hello::new(CLUSTER, NodeId(3), 0)
        };
        let reply = attack(addr, false, frame(FrameKind::Hello, 0, &hello.encode())).await;
        let error = closed_error(&mut receiver, &mut sender, next_round()).await;
        assert!(
            matches!(
                error,
                ConnectionError::Handshake(HandshakeError::VersionMismatch { found: 9, .. })
            ),
            "{error}"
        );
        let header: [u8; FRAME_HEADER_BYTES] = reply[..FRAME_HEADER_BYTES].try_into().expect("32");
        assert_eq!(
            FrameHeader::decode(&header, 64).expect("valid").kind,
            FrameKind::HelloRefuse
        );
        assert_eq!(
            RefuseReason::decode(&reply[FRAME_HEADER_BYTES..]),
            Ok(RefuseReason::VersionMismatch)
        );

        // A node that is not a peer.
        let stranger = Hello::new(CLUSTER, NodeId(42), 0);
        attack(addr, false, frame(FrameKind::Hello, 0, &stranger.encode())).await;
        let error = closed_error(&mut receiver, &mut sender, next_round()).await;
        assert!(
            matches!(
                error,
                ConnectionError::Handshake(HandshakeError::UnknownNode(NodeId(42)))
            ),
            "{error}"
        );

        // A data frame instead of a hello.
        attack(addr, false, data_frame(3, 1)).await;
        let error = closed_error(&mut receiver, &mut sender, next_round()).await;
        assert!(
            matches!(error, ConnectionError::Frame(FrameError::TooLarge { .. })),
            "{error}"
        );
    });
}
