//! Helpers shared by the transport's integration tests: a glommio executor per test,
//! transports on loopback, numbered batches.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use flotilla_net::{
    ConnectionError, Direction, GroupHeartbeat, GroupMessage, MessageBatch, MessageBody, NodeId,
    ReceivedFrame, SnapshotChunk, TcpTransport, Transport, TransportConfig, TransportEvent,
    WireEntry, WireEntryKind,
};
use glommio::{LocalExecutorBuilder, Placement};

pub(crate) const CLUSTER: u64 = 0xF107;

/// Runs `test` on a fresh glommio executor thread and returns its result.
pub(crate) fn run<T, F>(test: impl FnOnce() -> F + Send + 'static) -> T
where
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(test)
        .expect("glommio executor starts")
        .join()
        .expect("test executor ran to the end")
}

pub(crate) fn config(node: u64) -> TransportConfig {
    let mut config = TransportConfig::new(CLUSTER, NodeId(node));
    config.reconnect_backoff_initial_ms = 5;
    config.reconnect_backoff_max_ms = 50;
    config
}

pub(crate) fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("an address")
}

/// Starts a listening transport for `config`.
pub(crate) fn listening(config: TransportConfig) -> TcpTransport {
    TcpTransport::start(config, Some(loopback())).expect("transport starts")
}

/// A batch from `from` to `to` whose `count` messages carry the numbers `first..`
/// (as group ids, and inside a payload of `payload_bytes`).
pub(crate) fn numbered_batch(
    from: u64,
    to: u64,
    first: u64,
    count: u64,
    payload_bytes: usize,
) -> MessageBatch {
    let mut batch = MessageBatch::new(from, to);
    for number in first..first + count {
        let mut data = vec![0u8; payload_bytes.max(8)];
        data[..8].copy_from_slice(&number.to_le_bytes());
        batch.messages.push(GroupMessage {
            group: number,
            term: 1,
            body: MessageBody::AppendEntries {
                prev_index: number,
                prev_term: 1,
                commit: 0,
                entries: vec![WireEntry {
                    index: number + 1,
                    term: 1,
                    kind: WireEntryKind::Normal,
                    data: Bytes::from(data),
                }],
            },
        });
    }
    batch
}

/// Waits for the first event of `transport` that `pick` maps to a value and returns it;
/// the events polled with it that come after it are dropped.
pub(crate) async fn next_event<T>(
    transport: &mut TcpTransport,
    mut pick: impl FnMut(TransportEvent) -> Option<T>,
) -> T {
    let mut events = Vec::new();
    loop {
        transport.wait_events().await;
        transport.poll_events(&mut events);
        for event in events.drain(..) {
            if let Some(value) = pick(event) {
                return value;
            }
        }
    }
}

/// The error of the first connection closed on `transport` in `direction` (either
/// direction when `None`).
pub(crate) async fn closed(
    transport: &mut TcpTransport,
    direction: Option<Direction>,
) -> ConnectionError {
    next_event(transport, |event| match event {
        TransportEvent::ConnectionClosed {
            direction: closed,
            error,
            ..
        } if direction.is_none_or(|wanted| wanted == closed) => Some(error),
        _ => None,
    })
    .await
}

/// A batch from node 1 to node 2 holding one snapshot chunk of `bytes` bytes, for group
/// `group`.
pub(crate) fn chunk_batch(group: u64, bytes: usize) -> MessageBatch {
    let mut batch = MessageBatch::new(1, 2);
    batch.messages.push(GroupMessage {
        group,
        term: 1,
        body: MessageBody::SnapshotChunk(SnapshotChunk {
            snapshot_index: 10,
            snapshot_term: 1,
            configuration: Bytes::from_static(&[1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]),
            offset: 0,
            total_bytes: bytes as u64,
            data: Bytes::from(vec![0x5A; bytes]),
        }),
    });
    batch
}

/// A batch from node 1 to node 2 holding one coalesced heartbeat, for group `group`.
pub(crate) fn heartbeat_batch(group: u64) -> MessageBatch {
    let mut batch = MessageBatch::new(1, 2);
    batch.heartbeats.push(GroupHeartbeat {
        group,
        term: 1,
        commit: 0,
        read_round: 0,
    });
    batch
}

/// The group of a frame's first message, or of its first heartbeat.
pub(crate) fn first_group(frame: &ReceivedFrame) -> u64 {
    let batch = frame.batch();
    match batch.messages.first() {
        Some(message) => message.group.to_native(),
        None => batch.heartbeats[0].group.to_native(),
    }
}
