//! [`AlignedBuf`]: a heap buffer whose usable part starts on a page boundary.
//!
//! Built on a plain `Vec<u8>` (over-allocated by one page, the usable slice starting at
//! the first page boundary), so it needs no `unsafe`. Its heap storage never moves while
//! the value is moved around, which is what lending it to io_uring requires.

/// A page-aligned byte buffer of fixed capacity.
pub(crate) struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    capacity: usize,
}

impl AlignedBuf {
    /// The alignment of the usable part: a page.
    pub(crate) const ALIGN: usize = 4096;

    /// A zeroed buffer of at least `len` bytes, rounded up to whole pages.
    pub(crate) fn with_capacity(len: usize) -> AlignedBuf {
        let capacity = len.div_ceil(Self::ALIGN).max(1) * Self::ALIGN;
        let storage = vec![0u8; capacity + Self::ALIGN];
        let start = storage.as_ptr().align_offset(Self::ALIGN);
        assert!(start < Self::ALIGN, "a byte pointer can always be aligned");
        AlignedBuf {
            storage,
            start,
            capacity,
        }
    }

    /// Usable bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The usable bytes; the first is page-aligned.
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.capacity]
    }

    /// The usable bytes, mutable.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.capacity]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_part_is_page_aligned_and_large_enough() {
        for len in [0, 1, 4095, 4096, 4097, 100_000] {
            let mut buf = AlignedBuf::with_capacity(len);
            assert!(buf.capacity() >= len);
            assert_eq!(buf.as_slice().as_ptr() as usize % AlignedBuf::ALIGN, 0);
            assert_eq!(buf.as_mut_slice().len(), buf.capacity());
        }
    }
}
