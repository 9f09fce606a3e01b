//! The transport benchmarks' workload: batches of AppendEntries for many groups.

use bytes::Bytes;
use flotilla_net::{GroupMessage, MessageBatch, MessageBody, WireEntry, WireEntryKind};

/// A batch from node 1 to node 2 of `messages` AppendEntries, one per group, each with one
/// entry of `payload_bytes` (the shape a leader of many groups sends in one flush).
pub fn append_batch(messages: usize, payload_bytes: usize) -> MessageBatch {
    let payload = Bytes::from(
        (0..payload_bytes)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let mut batch = MessageBatch::new(1, 2);
    for group in 0..messages as u64 {
        batch.messages.push(GroupMessage {
            group,
            term: 5,
            body: MessageBody::AppendEntries {
                prev_index: 1000 + group,
                prev_term: 5,
                commit: 999,
                entries: vec![WireEntry {
                    index: 1001 + group,
                    term: 5,
                    kind: WireEntryKind::Normal,
                    data: payload.clone(),
                }],
            },
        });
    }
    batch
}
