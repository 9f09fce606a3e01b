//! Receive buffers and the validated frames that live in them.
//!
//! A [`ReceivedFrame`] is a data frame's body, checked once (crc, then rkyv's validation of
//! the whole archive) and then read in place: [`ReceivedFrame::batch`] hands out the
//! archived [`MessageBatch`] without deserializing it, and [`ReceivedFrame::payload`] turns
//! an entry's bytes into a [`Bytes`] that points into the receive buffer.
//!
//! Ownership is the whole safety argument, and it is reference counting: the body is a
//! [`Bytes`] whose owner is the receive buffer, every payload handed out is another
//! reference to that owner, and the buffer is reused by [`ReceiveBuffers`] only once no
//! reference is left (`Arc::get_mut` succeeds). So an entry's bytes stay where the socket
//! put them until the log has written them and the engine drops the last payload — no
//! copy, and no way to overwrite bytes someone still reads.
//!
//! This module holds the transport's one `unsafe` block (unchecked archive access after
//! validation); the buffers themselves are safe code.

use std::sync::Arc;

use bytes::Bytes;
use rkyv::util::AlignedVec;

use crate::codec::{ArchivedMessageBatch, ArchivedWireEntry, MessageBatch};
use crate::error::FrameError;
use crate::frame::{FrameHeader, check_body};

/// A data frame whose body has passed its crc and archive validation.
///
/// # Invariants
/// - `body` is a valid archive of a [`MessageBatch`] (checked in [`ReceivedFrame::validate`],
///   and `Bytes` are immutable).
/// - `body` starts at a 16-byte aligned address.
#[derive(Clone)]
pub struct ReceivedFrame {
    body: Bytes,
    seq: u64,
}

impl ReceivedFrame {
    /// Checks `body` against `header` (crc), then validates it as an archived batch.
    /// `body` must start at a 16-byte aligned address (receive buffers do).
    pub fn validate(header: &FrameHeader, body: Bytes) -> Result<ReceivedFrame, FrameError> {
        check_body(header, &body)?;
        rkyv::access::<ArchivedMessageBatch, rkyv::rancor::Error>(&body)
            .map_err(|error| FrameError::InvalidArchive(error.to_string()))?;
        Ok(ReceivedFrame {
            body,
            seq: header.seq,
        })
    }

    /// The archived batch, read in place.
    pub fn batch(&self) -> &ArchivedMessageBatch {
        // SAFETY: `validate` is the only constructor; it ran rkyv's full validation of
        // `body` as an `ArchivedMessageBatch`, and `Bytes` never changes its bytes or their
        // address, so the archive is still valid and aligned here.
        unsafe { rkyv::access_unchecked::<ArchivedMessageBatch>(&self.body) }
    }

    /// The payload of `entry`, an entry of this frame's batch, as a reference into the
    /// receive buffer (no copy). The buffer stays alive, and unchanged, while it is held.
    pub fn payload(&self, entry: &ArchivedWireEntry) -> Bytes {
        self.slice_of(entry.data.as_slice())
    }

    /// Any byte slice borrowed from [`ReceivedFrame::batch`] (a snapshot chunk's data, say)
    /// as a reference into the receive buffer.
    pub fn slice_of(&self, bytes: &[u8]) -> Bytes {
        // Archive validation checked that every slice of the archive lies inside the body:
        // a slice from elsewhere is a caller bug, and `slice_ref` asserts it.
        self.body.slice_ref(bytes)
    }

    /// The frame's sequence number on its connection.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The body's bytes (the archive).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Copies the batch out into owned types (tests and tools; the engine reads in place).
    pub fn to_owned_batch(&self) -> MessageBatch {
        rkyv::deserialize::<MessageBatch, rkyv::rancor::Error>(self.batch())
            .expect("a validated archive deserializes")
    }
}

impl std::fmt::Debug for ReceivedFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedFrame")
            .field("seq", &self.seq)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// The owner behind a received body's `Bytes`: a shared handle on a pooled buffer.
struct SharedBuffer(Arc<AlignedVec>);

impl AsRef<[u8]> for SharedBuffer {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

/// A small pool of aligned receive buffers for one connection.
///
/// A buffer is handed out for writing only while nothing else references it; otherwise a
/// new one is allocated (and pooled, up to `buffers_max`).
pub struct ReceiveBuffers {
    pool: Vec<Arc<AlignedVec>>,
    buffers_max: usize,
    in_use: Option<usize>,
}

impl ReceiveBuffers {
    /// A pool that keeps at most `buffers_max` buffers.
    pub fn new(buffers_max: usize) -> ReceiveBuffers {
        assert!(buffers_max > 0);
        ReceiveBuffers {
            pool: Vec::new(),
            buffers_max,
            in_use: None,
        }
    }

    /// A writable, zeroed-or-reused region of exactly `len` bytes in a buffer no one else
    /// references. Call [`ReceiveBuffers::freeze`] after filling it.
    pub fn writable(&mut self, len: usize) -> &mut [u8] {
        let slot = match self
            .pool
            .iter()
            .position(|buffer| Arc::strong_count(buffer) == 1)
        {
            Some(slot) => slot,
            None if self.pool.len() < self.buffers_max => {
                self.pool.push(Arc::new(AlignedVec::with_capacity(len)));
                self.pool.len() - 1
            }
            None => {
                // Every pooled buffer is still referenced by payloads in flight: replace
                // one (its readers keep it alive) rather than grow without bound.
                self.pool[0] = Arc::new(AlignedVec::with_capacity(len));
                0
            }
        };
        self.in_use = Some(slot);
        let buffer = Arc::get_mut(&mut self.pool[slot]).expect("only the pool references it");
        if buffer.len() < len {
            buffer.resize(len, 0);
        }
        &mut buffer[..len]
    }

    /// The region last returned by [`ReceiveBuffers::writable`], now shared and immutable.
    pub fn freeze(&mut self, len: usize) -> Bytes {
        let slot = self.in_use.take().expect("writable was called first");
        let owner = SharedBuffer(Arc::clone(&self.pool[slot]));
        Bytes::from_owner(owner).slice(..len)
    }

    /// How many buffers the pool holds.
    pub fn pooled(&self) -> usize {
        self.pool.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_reused_only_when_unreferenced() {
        let mut buffers = ReceiveBuffers::new(2);
        buffers.writable(10).copy_from_slice(b"0123456789");
        let first = buffers.freeze(10);
        buffers.writable(4).copy_from_slice(b"abcd");
        let second = buffers.freeze(4);
        assert_eq!(
            &first[..],
            b"0123456789",
            "a referenced buffer is not overwritten"
        );
        assert_eq!(&second[..], b"abcd");
        assert_eq!(buffers.pooled(), 2);
        drop(first);
        buffers.writable(3).copy_from_slice(b"xyz");
        let third = buffers.freeze(3);
        assert_eq!(buffers.pooled(), 2, "the freed buffer was reused");
        assert_eq!(&second[..], b"abcd");
        assert_eq!(&third[..], b"xyz");
        // Both pooled buffers referenced: a third is allocated, the pool stays bounded.
        buffers.writable(2).copy_from_slice(b"!!");
        let fourth = buffers.freeze(2);
        assert_eq!(buffers.pooled(), 2);
        assert_eq!(
            (&second[..], &third[..], &fourth[..]),
            (&b"abcd"[..], &b"xyz"[..], &b"!!"[..])
        );
        assert_eq!(fourth.as_ptr() as usize % 16, 0, "bodies start aligned");
    }
}
