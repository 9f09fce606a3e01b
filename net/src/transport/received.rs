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
//! This module holds one `unsafe` block (unchecked archive access after validation); the
//! buffers themselves are safe code. (The transport's other unsafe code is the `sendmsg`
//! call in `sys.rs`.)

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
/// - `body` starts at an address aligned for the archive (rkyv's validation checks it, so
///   a misaligned body is refused, never misread).
#[derive(Clone)]
pub struct ReceivedFrame {
    body: Bytes,
    seq: u64,
}

impl ReceivedFrame {
    /// Checks `body` against `header` (length and crc), then validates it as an archived
    /// batch. `body` must start at a 16-byte aligned address (receive buffers do), or
    /// validation refuses it.
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
        // `validate` is the only constructor; it ran rkyv's full validation of `body` as an
        // `ArchivedMessageBatch`, and `Bytes` never changes its bytes or their address.
        // SAFETY: `body` is a validated, aligned archive of this type, unchanged since (above).
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

/// A free buffer larger than this, and more than twice the body it is picked for, is
/// shrunk first, so that one huge frame does not pin its size in the pool forever.
const BUFFER_KEEP_BYTES: usize = 1 << 20;

/// A small pool of aligned receive buffers for one connection.
///
/// A buffer is handed out for writing only while nothing else references it; otherwise a
/// new one is allocated (and pooled, up to `buffers_max`). A body is read in steps
/// ([`ReceiveBuffers::grow`]), so a peer that claims a large body and stalls pins only what
/// it actually sent, plus one step.
///
/// # Invariants
/// - `pool.len() <= buffers_max`.
/// - While `in_use` is `Some(slot)`, `pool[slot]` is referenced by the pool alone.
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

    /// Picks a buffer no one else references for the next body of `body_len` bytes.
    pub fn begin(&mut self, body_len: usize) {
        let slot = match self
            .pool
            .iter()
            .position(|buffer| Arc::strong_count(buffer) == 1)
        {
            Some(slot) => slot,
            None if self.pool.len() < self.buffers_max => {
                self.pool.push(Arc::new(AlignedVec::new()));
                self.pool.len() - 1
            }
            None => {
                // Every pooled buffer is still referenced by payloads in flight: replace
                // one (its readers keep it alive) rather than grow the pool.
                self.pool[0] = Arc::new(AlignedVec::new());
                0
            }
        };
        let buffer = Arc::get_mut(&mut self.pool[slot]).expect("only the pool references it");
        if buffer.capacity() > BUFFER_KEEP_BYTES.max(2 * body_len) {
            *buffer = AlignedVec::new();
        }
        self.in_use = Some(slot);
    }

    /// The first `len` bytes of the buffer picked by [`ReceiveBuffers::begin`], grown to
    /// `len` if needed (bytes read by earlier calls stay in place).
    pub fn grow(&mut self, len: usize) -> &mut [u8] {
        let slot = self.in_use.expect("begin was called first");
        let buffer = Arc::get_mut(&mut self.pool[slot]).expect("only the pool references it");
        if buffer.len() < len {
            buffer.resize(len, 0);
        }
        &mut buffer[..len]
    }

    /// The first `len` bytes of the buffer in use, now shared and immutable.
    pub fn freeze(&mut self, len: usize) -> Bytes {
        let slot = self.in_use.take().expect("begin was called first");
        let owner = SharedBuffer(Arc::clone(&self.pool[slot]));
        Bytes::from_owner(owner).slice(..len)
    }

    /// How many buffers the pool holds.
    pub fn pooled(&self) -> usize {
        self.pool.len()
    }

    /// Bytes held by the pool's buffers (some may also be referenced by payloads).
    pub fn pooled_bytes(&self) -> usize {
        self.pool.iter().map(|buffer| buffer.capacity()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_reused_only_when_unreferenced() {
        let mut buffers = ReceiveBuffers::new(2);
        let fill = |buffers: &mut ReceiveBuffers, bytes: &[u8]| {
            buffers.begin(bytes.len());
            buffers.grow(bytes.len()).copy_from_slice(bytes);
            buffers.freeze(bytes.len())
        };
        let first = fill(&mut buffers, b"0123456789");
        let second = fill(&mut buffers, b"abcd");
        assert_eq!(
            &first[..],
            b"0123456789",
            "a referenced buffer is not overwritten"
        );
        assert_eq!(&second[..], b"abcd");
        assert_eq!(buffers.pooled(), 2);
        drop(first);
        let third = fill(&mut buffers, b"xyz");
        assert_eq!(buffers.pooled(), 2, "the freed buffer was reused");
        assert_eq!(&second[..], b"abcd");
        assert_eq!(&third[..], b"xyz");
        // Both pooled buffers referenced: another is allocated, the pool stays bounded.
        let fourth = fill(&mut buffers, b"!!");
        assert_eq!(buffers.pooled(), 2);
        assert_eq!(
            (&second[..], &third[..], &fourth[..]),
            (&b"abcd"[..], &b"xyz"[..], &b"!!"[..])
        );
        assert_eq!(fourth.as_ptr() as usize % 16, 0, "bodies start aligned");
    }

    #[test]
    fn a_body_grows_in_steps_and_a_huge_free_buffer_shrinks() {
        let mut buffers = ReceiveBuffers::new(1);
        buffers.begin(8 << 20);
        buffers.grow(3).copy_from_slice(b"abc");
        buffers.grow(6)[3..].copy_from_slice(b"def");
        assert!(
            buffers.pooled_bytes() < 1 << 20,
            "nothing sized for the claim up front"
        );
        buffers.grow(8 << 20);
        let big = buffers.freeze(8 << 20);
        assert_eq!(&big[..6], b"abcdef");
        drop(big);
        buffers.begin(100);
        assert!(
            buffers.pooled_bytes() < 1 << 20,
            "the 8 MiB buffer was let go"
        );
        buffers.grow(100);
        assert_eq!(buffers.freeze(100).len(), 100);
    }
}
