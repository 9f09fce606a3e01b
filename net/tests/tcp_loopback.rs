//! Two transports on loopback: a million messages in batches, in order and complete; a
//! connection killed in the middle is re-established and the sender learns which frames
//! were lost; a full queue pushes back.

mod common;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;

use common::{
    chunk_batch, closed, config, first_group, heartbeat_batch, listening, loopback, next_event,
    numbered_batch, run,
};
use flotilla_net::handshake::RefuseReason;
use flotilla_net::{
    ArchivedMessageBody, ConnectionError, Direction, FrameId, HandshakeError, NodeId, SendError,
    TcpTransport, Transport, TransportEvent,
};
use futures_lite::AsyncWriteExt;
use glommio::net::{TcpListener, TcpStream};

/// The numbers carried by a received frame, checking each payload against its number.
fn numbers_in(frame: &flotilla_net::ReceivedFrame) -> Vec<u64> {
    frame
        .batch()
        .messages
        .iter()
        .map(|message| {
            let number = message.group.to_native();
            let ArchivedMessageBody::AppendEntries { entries, .. } = &message.body else {
                panic!("unexpected message kind")
            };
            let payload = frame.payload(&entries[0]);
            assert_eq!(
                payload[..8],
                number.to_le_bytes(),
                "payload of message {number}"
            );
            number
        })
        .collect()
}

#[test]
fn a_million_messages_arrive_complete_and_in_order() {
    const MESSAGES: u64 = 1_000_000;
    const PER_BATCH: u64 = 250;
    let received = run(|| async {
        let mut receiver = listening(config(2));
        let mut sender = TcpTransport::start(config(1), None).expect("starts");
        sender.set_peer(NodeId(2), receiver.local_addr().expect("listens"));
        receiver.set_peer(NodeId(1), loopback());
        let mut next = 0;
        let mut expected = 0;
        let mut frames = 0;
        let mut events = Vec::new();
        while expected < MESSAGES {
            while next < MESSAGES {
                let batch = numbered_batch(1, 2, next, PER_BATCH, 16);
                match sender.try_send(NodeId(2), &batch) {
                    Ok(_) => next += PER_BATCH,
                    Err(SendError::QueueFull { .. }) => break,
                    Err(error) => panic!("send failed: {error}"),
                }
            }
            receiver.wait_events().await;
            receiver.poll_events(&mut events);
            for event in events.drain(..) {
                match event {
                    TransportEvent::Received { peer, frame } => {
                        assert_eq!(peer, NodeId(1));
                        for number in numbers_in(&frame) {
                            assert_eq!(number, expected, "lost or reordered");
                            expected += 1;
                        }
                        frames += 1;
                    }
                    TransportEvent::Connected { .. } => {}
                    other => panic!("unexpected event {other:?}"),
                }
            }
            sender.poll_events(&mut events);
            for event in events.drain(..) {
                assert!(
                    matches!(event, TransportEvent::Connected { .. }),
                    "{event:?}"
                );
            }
        }
        (expected, frames)
    });
    assert_eq!(received, (MESSAGES, MESSAGES / PER_BATCH));
}

/// A TCP proxy that forwards bytes both ways until killed (its tasks cancelled, both
/// sockets closed).
struct Proxy {
    addr: SocketAddr,
    tasks: Rc<std::cell::RefCell<Vec<glommio::Task<()>>>>,
    _accept: glommio::Task<()>,
}

impl Proxy {
    fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(loopback()).expect("proxy listens");
        let addr = listener.local_addr().expect("proxy address");
        let tasks: Rc<std::cell::RefCell<Vec<glommio::Task<()>>>> = Rc::default();
        let pumps = Rc::clone(&tasks);
        let accept = glommio::spawn_local(async move {
            while let Ok(client) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let (client_rx, client_tx) = futures_lite::io::split(client);
                let (server_rx, server_tx) = futures_lite::io::split(server);
                pumps
                    .borrow_mut()
                    .push(glommio::spawn_local(pump(client_rx, server_tx)));
                pumps
                    .borrow_mut()
                    .push(glommio::spawn_local(pump(server_rx, client_tx)));
            }
        });
        Proxy {
            addr,
            tasks,
            _accept: accept,
        }
    }

    /// Closes every connection through the proxy (new ones are still accepted).
    fn kill_connections(&self) {
        let tasks = std::mem::take(&mut *self.tasks.borrow_mut());
        drop(tasks);
    }
}

async fn pump(
    mut from: impl futures_lite::AsyncRead + Unpin,
    mut to: impl futures_lite::AsyncWrite + Unpin,
) {
    let _copied = futures_lite::io::copy(&mut from, &mut to).await;
    let _closed = to.close().await;
}

#[test]
fn a_killed_connection_is_reestablished_and_lost_frames_are_reported() {
    const FRAMES: u64 = 3000;
    run(|| async {
        let mut receiver = listening(config(2));
        let proxy = Proxy::start(receiver.local_addr().expect("listens"));
        let mut sender = TcpTransport::start(config(1), None).expect("starts");
        sender.set_peer(NodeId(2), proxy.addr);
        receiver.set_peer(NodeId(1), loopback());

        let mut frame_of_number: BTreeMap<u64, FrameId> = BTreeMap::new();
        let mut number_of_frame: BTreeMap<FrameId, u64> = BTreeMap::new();
        let mut received: Vec<u64> = Vec::new();
        let mut lost: Vec<FrameId> = Vec::new();
        let mut connections = 0;
        let mut closed = 0;
        let mut reported_lost = 0;
        let mut next = 0;
        let killed = Cell::new(false);
        let mut events = Vec::new();
        while next < FRAMES || (received.len() as u64 + lost.len() as u64) < FRAMES {
            while next < FRAMES {
                match sender.try_send(NodeId(2), &numbered_batch(1, 2, next, 1, 512)) {
                    Ok(id) => {
                        frame_of_number.insert(next, id);
                        number_of_frame.insert(id, next);
                        next += 1;
                    }
                    Err(SendError::QueueFull { .. }) => break,
                    Err(error) => panic!("send failed: {error}"),
                }
            }
            if !killed.get() && received.len() >= 1000 {
                killed.set(true);
                proxy.kill_connections();
            }
            futures_lite::future::or(receiver.wait_events(), sender.wait_events()).await;
            receiver.poll_events(&mut events);
            sender.poll_events(&mut events);
            for event in events.drain(..) {
                match event {
                    TransportEvent::Received { frame, .. } => received.extend(numbers_in(&frame)),
                    TransportEvent::FramesLost { peer, frames } => {
                        assert_eq!(peer, NodeId(2));
                        reported_lost += frames.len();
                        lost.extend(frames);
                    }
                    TransportEvent::Connected {
                        direction: Direction::Outbound,
                        ..
                    } => connections += 1,
                    TransportEvent::ConnectionClosed {
                        direction: Direction::Outbound,
                        ..
                    } => closed += 1,
                    _ => {}
                }
            }
            // A frame both received and reported lost (its ack was cut off) counts once.
            lost.retain(|id| {
                let number = number_of_frame[id];
                received.binary_search(&number).is_err()
            });
        }
        assert!(killed.get());
        assert!(
            connections >= 2,
            "the connection was re-established ({connections})"
        );
        assert!(closed >= 1);
        // The kill came with frames queued and in flight: the sender was told of them.
        assert!(reported_lost > 0, "no frame reported lost");
        eprintln!(
            "{reported_lost} frames reported lost, {} of them never arrived",
            lost.len()
        );
        // In order, no duplicates, and every frame either arrived or was reported lost.
        assert!(
            received.windows(2).all(|pair| pair[0] < pair[1]),
            "reordered or duplicated"
        );
        for number in 0..FRAMES {
            let id = frame_of_number[&number];
            assert!(
                received.binary_search(&number).is_ok() || lost.contains(&id),
                "frame {id:?} (message {number}) neither arrived nor was reported lost"
            );
        }
        // Frames sent after the reconnection arrived.
        assert!(
            received.last() == Some(&(FRAMES - 1))
                || lost.contains(&frame_of_number[&(FRAMES - 1)])
        );
    });
}

#[test]
fn a_full_send_queue_pushes_back() {
    run(|| async {
        // A listener that accepts and never answers the hello: frames queue up.
        let silent = TcpListener::bind(loopback()).expect("binds");
        let mut small = config(1);
        small.send_queue_frames_max = 4;
        small.handshake_timeout_ms = 200;
        let mut sender = TcpTransport::start(small, None).expect("starts");
        sender.set_peer(NodeId(2), silent.local_addr().expect("address"));
        for number in 0..4 {
            sender
                .try_send(NodeId(2), &numbered_batch(1, 2, number, 1, 8))
                .expect("room");
        }
        assert_eq!(
            sender.try_send(NodeId(2), &numbered_batch(1, 2, 4, 1, 8)),
            Err(SendError::QueueFull { peer: NodeId(2) })
        );
        assert_eq!(
            sender.try_send(NodeId(3), &numbered_batch(1, 3, 0, 1, 8)),
            Err(SendError::UnknownPeer(NodeId(3)))
        );
        assert!(matches!(
            sender.try_send(NodeId(2), &numbered_batch(1, 3, 0, 1, 8)),
            Err(SendError::Misaddressed { .. })
        ));
        // The handshake times out: the queued frames are reported lost, and the queue has
        // room again.
        let _held = silent.accept().await.expect("the dial arrives");
        let mut events = Vec::new();
        let mut lost = Vec::new();
        while lost.is_empty() {
            sender.wait_events().await;
            sender.poll_events(&mut events);
            for event in events.drain(..) {
                if let TransportEvent::FramesLost { frames, .. } = event {
                    lost = frames;
                } else if let TransportEvent::ConnectionClosed { error, .. } = event {
                    assert!(matches!(error, ConnectionError::Timeout(_)), "{error}");
                }
            }
        }
        assert_eq!(lost, (1..=4).map(FrameId).collect::<Vec<_>>());
        sender
            .try_send(NodeId(2), &numbered_batch(1, 2, 5, 1, 8))
            .expect("room again");
    });
}

#[test]
fn handshake_mismatches_are_refused_on_both_sides() {
    run(|| async {
        let mut other_cluster = config(2);
        other_cluster.cluster_id = 0xBAD;
        let mut acceptor = listening(other_cluster);
        acceptor.set_peer(NodeId(1), loopback());
        let mut dialer = TcpTransport::start(config(1), None).expect("starts");
        dialer.set_peer(NodeId(2), acceptor.local_addr().expect("listens"));
        // And a peer entry whose address is node 2's while we expect node 3.
        dialer.set_peer(NodeId(3), acceptor.local_addr().expect("listens"));
        dialer
            .try_send(NodeId(2), &numbered_batch(1, 2, 0, 1, 8))
            .expect("queued");

        let refused = closed(&mut dialer, None).await;
        assert!(
            matches!(
                refused,
                ConnectionError::Handshake(HandshakeError::Refused(RefuseReason::ClusterMismatch))
            ),
            "{refused}"
        );
        let seen = closed(&mut acceptor, Some(Direction::Inbound)).await;
        assert!(
            matches!(
                seen,
                ConnectionError::Handshake(HandshakeError::ClusterMismatch { .. })
            ),
            "{seen}"
        );

        // Same cluster now, but node 3's address answers as node 2.
        let node2 = listening(config(2));
        node2.set_peer(NodeId(1), loopback());
        dialer.set_peer(NodeId(3), node2.local_addr().expect("listens"));
        dialer
            .try_send(NodeId(3), &numbered_batch(1, 3, 0, 1, 8))
            .expect("queued");
        let wrong = next_event(&mut dialer, |event| match event {
            TransportEvent::ConnectionClosed {
                peer: Some(NodeId(3)),
                error,
                ..
            } => Some(error),
            _ => None,
        })
        .await;
        assert!(
            matches!(
                wrong,
                ConnectionError::Handshake(HandshakeError::WrongNode {
                    expected: NodeId(3),
                    found: NodeId(2)
                })
            ),
            "{wrong}"
        );
    });
}

#[test]
fn heartbeats_overtake_queued_snapshot_chunks() {
    let order = run(|| async {
        let mut receiver = listening(config(2));
        receiver.set_peer(NodeId(1), loopback());
        let mut sender = TcpTransport::start(config(1), None).expect("starts");
        sender.set_peer(NodeId(2), receiver.local_addr().expect("listens"));
        for group in 100..103 {
            sender
                .try_send(NodeId(2), &chunk_batch(group, 2 << 20))
                .expect("queued");
        }
        sender
            .try_send(NodeId(2), &heartbeat_batch(1))
            .expect("queued");
        let mut order = Vec::new();
        let mut events = Vec::new();
        while order.len() < 4 {
            receiver.wait_events().await;
            receiver.poll_events(&mut events);
            for event in events.drain(..) {
                if let TransportEvent::Received { frame, .. } = event {
                    order.push(first_group(&frame));
                }
            }
        }
        order
    });
    assert_eq!(
        order,
        vec![1, 100, 101, 102],
        "the heartbeat went first, chunks in order"
    );
}
