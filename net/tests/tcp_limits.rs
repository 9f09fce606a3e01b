//! The transport's bounds under pressure: one snapshot chunk on the wire at a time, a
//! budget for received frames nobody polled, idle connections closed, a reconnecting peer
//! replacing its old connection, and a cap on connections still in their handshake.

mod common;

use std::time::Duration;

use common::{
    CLUSTER, chunk_batch, closed, config, first_group, heartbeat_batch, listening, loopback,
    next_event, numbered_batch, run,
};
use flotilla_net::frame::{FRAME_HEADER_BYTES, FrameHeader, FrameKind};
use flotilla_net::handshake::Hello;
use flotilla_net::{ConnectionError, Direction, NodeId, TcpTransport, Transport, TransportEvent};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

#[test]
fn a_heartbeat_sent_while_chunks_stream_overtakes_the_chunks_not_yet_written() {
    let order = run(|| async {
        let mut receiver = listening(config(2));
        receiver.set_peer(NodeId(1), loopback());
        let mut sender = TcpTransport::start(config(1), None).expect("starts");
        sender.set_peer(NodeId(2), receiver.local_addr().expect("listens"));
        for number in 100..106 {
            sender
                .try_send(NodeId(2), &chunk_batch(number, 1 << 20))
                .expect("queued");
        }
        let mut order = Vec::new();
        let mut events = Vec::new();
        let mut heartbeat_sent = false;
        while order.len() < 7 {
            receiver.wait_events().await;
            receiver.poll_events(&mut events);
            for event in events.drain(..) {
                if let TransportEvent::Received { frame, .. } = event {
                    order.push(first_group(&frame));
                }
            }
            if !heartbeat_sent && !order.is_empty() {
                heartbeat_sent = true;
                sender
                    .try_send(NodeId(2), &heartbeat_batch(1))
                    .expect("queued");
            }
        }
        order
    });
    let heartbeat_at = order
        .iter()
        .position(|&group| group == 1)
        .expect("the heartbeat arrived");
    // Chunks after the first wait for the previous one's ack, so at most the chunks
    // already on the wire when the heartbeat was queued go before it.
    assert!(
        heartbeat_at <= 3,
        "the heartbeat waited behind {heartbeat_at} chunks: {order:?}"
    );
    let chunks: Vec<u64> = order.iter().copied().filter(|&group| group != 1).collect();
    assert_eq!(
        chunks,
        (100..106).collect::<Vec<_>>(),
        "chunks stay in order"
    );
}

#[test]
fn received_frames_nobody_polls_are_bounded_in_bytes() {
    const FRAMES: u64 = 64;
    run(|| async {
        let mut small = config(2);
        small.received_bytes_pending_max = 64 << 10;
        let mut receiver = listening(small);
        receiver.set_peer(NodeId(1), loopback());
        let mut sender = TcpTransport::start(config(1), None).expect("starts");
        sender.set_peer(NodeId(2), receiver.local_addr().expect("listens"));
        for number in 0..FRAMES {
            sender
                .try_send(NodeId(2), &numbered_batch(1, 2, number, 16, 1000))
                .expect("room");
        }
        // Let the connection run while nobody polls the receiver.
        glommio::timer::sleep(Duration::from_millis(200)).await;
        let mut events = Vec::new();
        receiver.poll_events(&mut events);
        let pending: usize = events
            .iter()
            .map(|event| match event {
                TransportEvent::Received { frame, .. } => frame.body().len(),
                _ => 0,
            })
            .sum();
        let frame_bytes = 17_000;
        assert!(pending > 0, "something arrived");
        assert!(
            pending <= (64 << 10) + frame_bytes,
            "{pending} bytes waited for a poll, over the 64 KiB budget plus one frame"
        );
        // Nothing is lost: polling lets the rest in.
        let mut received = events
            .iter()
            .filter(|event| matches!(event, TransportEvent::Received { .. }))
            .count() as u64;
        while received < FRAMES {
            events.clear();
            receiver.wait_events().await;
            receiver.poll_events(&mut events);
            received += events
                .iter()
                .filter(|event| matches!(event, TransportEvent::Received { .. }))
                .count() as u64;
        }
        assert_eq!(received, FRAMES);
    });
}

#[test]
fn a_peer_that_goes_silent_is_closed_after_the_idle_timeout() {
    run(|| async {
        let mut quick = config(2);
        quick.idle_timeout_ms = 100;
        let mut receiver = listening(quick);
        receiver.set_peer(NodeId(3), loopback());
        let _silent = handshaken(receiver.local_addr().expect("listens")).await;
        let error = closed(&mut receiver, Some(Direction::Inbound)).await;
        assert!(
            matches!(error, ConnectionError::Idle { idle_ms: 100 }),
            "{error}"
        );
    });
}

#[test]
fn an_idle_sender_closes_its_connection_first_and_redials_when_it_next_sends() {
    run(|| async {
        let mut quick_receiver = config(2);
        quick_receiver.idle_timeout_ms = 200;
        let mut receiver = listening(quick_receiver);
        receiver.set_peer(NodeId(1), loopback());
        let mut quick_sender = config(1);
        quick_sender.idle_timeout_ms = 200;
        let mut sender = TcpTransport::start(quick_sender, None).expect("starts");
        sender.set_peer(NodeId(2), receiver.local_addr().expect("listens"));
        sender
            .try_send(NodeId(2), &numbered_batch(1, 2, 0, 1, 8))
            .expect("queued");
        // The sender closes at half the idle timeout, with nothing in flight or lost.
        let error = next_event(&mut sender, |event| match event {
            TransportEvent::FramesLost { .. } => panic!("an idle close lost frames"),
            TransportEvent::ConnectionClosed { error, .. } => Some(error),
            _ => None,
        })
        .await;
        let mut events = Vec::new();
        assert!(
            matches!(error, ConnectionError::Idle { idle_ms: 100 }),
            "{error}"
        );
        let error = closed(&mut receiver, Some(Direction::Inbound)).await;
        assert!(
            matches!(&error, ConnectionError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof),
            "{error}"
        );
        sender
            .try_send(NodeId(2), &numbered_batch(1, 2, 1, 1, 8))
            .expect("queued");
        let mut groups = Vec::new();
        while !groups.contains(&1) {
            events.clear();
            receiver.wait_events().await;
            receiver.poll_events(&mut events);
            for event in events.drain(..) {
                if let TransportEvent::Received { frame, .. } = event {
                    groups.push(first_group(&frame));
                }
            }
        }
    });
}

/// Connects as node 3 shard 0 and completes the handshake.
async fn handshaken(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let hello = Hello::new(CLUSTER, NodeId(3), 0).encode();
    let mut frame = FrameHeader::for_body(FrameKind::Hello, 0, &hello)
        .encode()
        .to_vec();
    frame.extend_from_slice(&hello);
    stream.write_all(&frame).await.expect("writes the hello");
    let mut accept = [0u8; FRAME_HEADER_BYTES + 24];
    stream
        .read_exact(&mut accept)
        .await
        .expect("reads the accept");
    stream
}

#[test]
fn a_reconnecting_peer_replaces_its_old_connection() {
    run(|| async {
        let mut receiver = listening(config(2));
        let addr = receiver.local_addr().expect("listens");
        receiver.set_peer(NodeId(3), loopback());
        let mut old = handshaken(addr).await;
        let _new = handshaken(addr).await;
        let error = closed(&mut receiver, Some(Direction::Inbound)).await;
        assert!(matches!(error, ConnectionError::Replaced), "{error}");
        // The old socket is closed by the transport.
        let mut rest = Vec::new();
        let read = old.read_to_end(&mut rest).await;
        assert!(read.is_err() || rest.is_empty());
    });
}

#[test]
fn connections_stuck_in_their_handshake_cannot_take_every_slot() {
    run(|| async {
        let mut strict = config(2);
        strict.handshakes_max = 2;
        strict.handshake_timeout_ms = 60_000;
        let mut receiver = listening(strict);
        let addr = receiver.local_addr().expect("listens");
        receiver.set_peer(NodeId(1), loopback());
        // Two silent connections hold both handshake slots.
        let _silent_one = TcpStream::connect(addr).await.expect("connects");
        let _silent_two = TcpStream::connect(addr).await.expect("connects");
        glommio::timer::sleep(Duration::from_millis(50)).await;
        // A third is closed at once, without a handshake.
        let mut third = TcpStream::connect(addr).await.expect("connects");
        let mut rest = Vec::new();
        let read = third.read_to_end(&mut rest).await;
        assert!(
            read.is_err() || rest.is_empty(),
            "the third connection was closed"
        );
        drop((_silent_one, _silent_two));
        // Once the silent ones are gone, a real peer gets in.
        let mut sender = TcpTransport::start(config(1), None).expect("starts");
        sender.set_peer(NodeId(2), addr);
        let mut events = Vec::new();
        let mut delivered = false;
        while !delivered {
            let _ = sender.try_send(NodeId(2), &numbered_batch(1, 2, 7, 1, 8));
            futures_lite::future::or(receiver.wait_events(), async {
                glommio::timer::sleep(Duration::from_millis(20)).await
            })
            .await;
            receiver.poll_events(&mut events);
            delivered = events
                .drain(..)
                .any(|event| matches!(event, TransportEvent::Received { .. }));
        }
    });
}
