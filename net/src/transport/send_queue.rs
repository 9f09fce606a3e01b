//! The bounded per-peer send queue, in two lanes, and the pool of spare encode buffers.
//!
//! Urgent frames (votes, heartbeats, appends: everything but snapshot chunks) always go
//! first; a bulk frame (a snapshot chunk) is written only when no urgent frame waits, and
//! the connection keeps at most one bulk frame unacknowledged, so a heartbeat waits behind
//! at most one chunk. The queue is bounded in frames
//! and bytes: when full, the caller is told (`QueueFull`) instead of the queue growing.
#![forbid(unsafe_code)]

use std::collections::VecDeque;

use rkyv::util::AlignedVec;

use crate::codec::EncodedFrame;
use crate::transport::FrameId;

/// Spare encode buffers kept per peer for reuse.
const SPARE_BUFFERS_MAX: usize = 8;

/// A written frame's buffer larger than this is freed rather than kept for reuse.
const SPARE_BUFFER_BYTES_MAX: usize = 4 << 20;

/// A frame waiting to be written.
pub(crate) struct QueuedFrame {
    pub(crate) id: FrameId,
    pub(crate) frame: EncodedFrame,
    /// Queued in the bulk lane.
    pub(crate) bulk: bool,
}

/// One peer's frames not yet written.
///
/// # Invariants
/// - `bytes` is the sum of the queued frames' lengths.
/// - Ids within each lane increase; every id below `next_id` was handed out once.
pub(crate) struct SendQueue {
    urgent: VecDeque<QueuedFrame>,
    bulk: VecDeque<QueuedFrame>,
    bytes: usize,
    frames_max: usize,
    bytes_max: usize,
    next_id: u64,
    spare: Vec<AlignedVec>,
}

impl SendQueue {
    pub(crate) fn new(frames_max: usize, bytes_max: usize) -> SendQueue {
        SendQueue {
            urgent: VecDeque::new(),
            bulk: VecDeque::new(),
            bytes: 0,
            frames_max,
            bytes_max,
            next_id: 1,
            spare: Vec::new(),
        }
    }

    /// Whether one more frame may be queued. The last frame may take the byte count over
    /// `bytes_max` by at most one frame body (itself bounded).
    pub(crate) fn has_room(&self) -> bool {
        self.len() < self.frames_max && self.bytes < self.bytes_max
    }

    /// Queues `frame`; the caller checked [`SendQueue::has_room`].
    pub(crate) fn push(&mut self, frame: EncodedFrame, bulk: bool) -> FrameId {
        assert!(self.has_room(), "push without room");
        let id = FrameId(self.next_id);
        self.next_id += 1;
        self.bytes += frame.as_bytes().len();
        let lane = if bulk {
            &mut self.bulk
        } else {
            &mut self.urgent
        };
        lane.push_back(QueuedFrame { id, frame, bulk });
        id
    }

    /// The next frame to write: urgent first; a bulk frame only if `bulk_allowed`.
    pub(crate) fn pop(&mut self, bulk_allowed: bool) -> Option<QueuedFrame> {
        let queued = match self.urgent.pop_front() {
            Some(queued) => queued,
            None if bulk_allowed => self.bulk.pop_front()?,
            None => return None,
        };
        self.bytes -= queued.frame.as_bytes().len();
        Some(queued)
    }

    /// Whether [`SendQueue::pop`] with `bulk_allowed` would return a frame.
    pub(crate) fn has_ready(&self, bulk_allowed: bool) -> bool {
        !self.urgent.is_empty() || (bulk_allowed && !self.bulk.is_empty())
    }

    /// Drops every queued frame, returning their ids in order.
    pub(crate) fn drain_ids(&mut self) -> Vec<FrameId> {
        let mut ids: Vec<FrameId> = self
            .urgent
            .drain(..)
            .chain(self.bulk.drain(..))
            .map(|queued| queued.id)
            .collect();
        ids.sort_unstable();
        self.bytes = 0;
        ids
    }

    pub(crate) fn len(&self) -> usize {
        self.urgent.len() + self.bulk.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A buffer to encode the next frame into.
    pub(crate) fn take_spare(&mut self) -> AlignedVec {
        self.spare.pop().unwrap_or_default()
    }

    /// Returns a written frame's buffer for reuse.
    pub(crate) fn recycle(&mut self, frame: EncodedFrame) {
        let buffer = frame.into_buffer();
        if self.spare.len() < SPARE_BUFFERS_MAX && buffer.capacity() <= SPARE_BUFFER_BYTES_MAX {
            self.spare.push(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{MessageBatch, encode_batch};

    fn frame() -> EncodedFrame {
        encode_batch(&MessageBatch::new(1, 2), AlignedVec::new(), 1 << 20).expect("small")
    }

    #[test]
    fn urgent_frames_overtake_bulk_and_the_queue_is_bounded() {
        let mut queue = SendQueue::new(3, 1 << 20);
        let bulk = queue.push(frame(), true);
        let first = queue.push(frame(), false);
        let second = queue.push(frame(), false);
        assert!(!queue.has_room());
        assert_eq!(queue.pop(true).map(|q| q.id), Some(first));
        assert_eq!(queue.pop(false).map(|q| q.id), Some(second));
        assert!(queue.pop(false).is_none(), "bulk waits when not allowed");
        assert_eq!(queue.pop(true).map(|q| q.id), Some(bulk));
        assert!(queue.is_empty());
        let a = queue.push(frame(), true);
        let b = queue.push(frame(), false);
        assert_eq!(queue.drain_ids(), vec![a, b]);
        assert!(queue.has_room());
    }
}
