//! Helpers shared by the transport's integration tests: a glommio executor per test,
//! transports on loopback, numbered batches.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use flotilla_net::{
    GroupMessage, MessageBatch, MessageBody, NodeId, TcpTransport, TransportConfig, WireEntry,
    WireEntryKind,
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
