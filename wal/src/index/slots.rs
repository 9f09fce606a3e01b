//! A group's slots: where each of its live entries' payload lies, 4 bytes per entry.
//!
//! The slots live in a vector whose front is dropped lazily, so that appending a run is a
//! walk over its entries with one store each, and dropping compacted entries costs
//! amortized O(1) each.

use crate::format::ENTRY_HEADER_BYTES;

/// Where one entry's payload lies in its segment (the segment and term are in the mark
/// of the run it belongs to; the length precedes the payload in the file).
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    pub(super) offset: u32,
}

/// [`ENTRY_HEADER_BYTES`] as a file offset.
const ENTRY_HEADER_U32: u32 = 4;
const _: () = assert!(ENTRY_HEADER_U32 as usize == ENTRY_HEADER_BYTES);

/// A group's slots, oldest first: a vector whose front is dropped lazily, so that
/// appending is a plain vector push and dropping compacted entries costs amortized O(1)
/// each (the dead front is reclaimed once it is as long as the live part).
#[derive(Default)]
pub(super) struct Slots {
    all: Vec<Slot>,
    /// Slots before this one are dropped.
    head: usize,
}

impl Slots {
    pub(super) fn len(&self) -> usize {
        self.all.len() - self.head
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn get(&self, at: usize) -> Option<&Slot> {
        self.all.get(self.head.checked_add(at)?)
    }

    /// Appends one slot (the log appends whole runs, with `push_run`).
    #[cfg(test)]
    fn push(&mut self, slot: Slot) {
        self.all.push(slot);
    }

    pub(super) fn keep_first(&mut self, keep: usize) {
        self.all.truncate(self.head.saturating_add(keep));
    }

    pub(super) fn clear(&mut self) {
        self.all.clear();
        self.head = 0;
    }

    pub(super) fn drop_first(&mut self, count: usize) {
        self.head += count.min(self.len());
        if self.head >= self.len() {
            self.all.drain(..self.head);
            self.head = 0;
        }
    }

    /// Appends the slots of an entries run: `entries` holds `count` times a u32 length and
    /// that many payload bytes, and its first byte lies at file offset `entries_offset`.
    pub(super) fn push_run(&mut self, entries: &[u8], count: u32, entries_offset: u32) {
        self.all.reserve(count as usize);
        let mut rest = entries;
        // The file offset of the next entry's length field. Inside the run, which lies
        // inside the segment (offsets fit in u32): no overflow.
        let mut next = entries_offset;
        for _ in 0..count {
            let (len, after) = rest
                .split_first_chunk::<ENTRY_HEADER_BYTES>()
                .expect("a run's bytes hold its entries");
            let len = u32::from_le_bytes(*len);
            let offset = next + ENTRY_HEADER_U32;
            next = offset + len;
            self.all.push(Slot { offset });
            rest = after
                .get(len as usize..)
                .expect("a run's bytes hold its entries");
        }
        assert!(rest.is_empty(), "a run's bytes hold exactly its entries");
        // The group's next run (in a later batch, or later in this one) writes after these
        // slots: ask for that cache line now, so the store does not wait for it then.
        prefetch_line(
            self.all
                .as_ptr()
                .wrapping_add(self.all.len() + SLOTS_PER_LINE),
        );
    }
}

/// Slots in one 64-byte cache line.
const SLOTS_PER_LINE: usize = 64 / std::mem::size_of::<Slot>();

/// Hints the processor to fetch the cache line at `at` for a later access. A hint only: an
/// address past an allocation is never dereferenced, and it does nothing on other
/// architectures.
fn prefetch_line<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // A prefetch reads nothing the program sees and never faults, whatever the address;
        // SSE, the feature it needs, is part of every x86_64 processor.
        // SAFETY: the target feature is present (above).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(at.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Chunk;
    use crate::ids::{GroupId, LogIndex, Term};

    fn slot(n: u32) -> Slot {
        Slot { offset: n }
    }

    fn live(slots: &Slots) -> Vec<u32> {
        (0..slots.len())
            .map(|k| slots.get(k).expect("live").offset)
            .collect()
    }

    #[test]
    fn slots_drop_their_front_lazily_and_keep_the_rest_in_order() {
        let mut slots = Slots::default();
        for n in 0..10 {
            slots.push(slot(n));
        }
        slots.drop_first(3);
        assert_eq!(live(&slots), (3..10).collect::<Vec<_>>());
        assert_eq!(
            slots.head, 3,
            "a short dead front stays until it pays to move"
        );
        slots.drop_first(3);
        assert_eq!(live(&slots), vec![6, 7, 8, 9]);
        assert_eq!(
            slots.head, 0,
            "a dead front as long as the rest is reclaimed"
        );
        slots.keep_first(2);
        assert_eq!(live(&slots), vec![6, 7]);
        slots.drop_first(5);
        assert!(slots.is_empty());
        assert_eq!(slots.get(0).map(|s| s.offset), None);
    }

    #[test]
    fn a_run_pushes_one_slot_per_entry_at_its_payload() {
        let mut batch = crate::WriteBatch::new();
        batch.add_entry(GroupId(1), LogIndex(1), Term(1), b"ab");
        batch.add_entry(GroupId(1), LogIndex(2), Term(1), b"");
        batch.add_entry(GroupId(1), LogIndex(3), Term(1), b"xyz");
        let Some(Ok(Chunk::Run {
            count,
            offset,
            entries,
            ..
        })) = crate::format::BodyReader::chunks(batch.body()).next()
        else {
            panic!("one entries run");
        };
        let mut slots = Slots::default();
        let base = 1000;
        let offset = u32::try_from(offset).expect("a small body");
        slots.push_run(entries, count, base + offset);
        let found: Vec<u32> = (0..slots.len())
            .map(|k| slots.get(k).map(|s| s.offset).expect("live"))
            .collect();
        let first = base + offset + 4;
        assert_eq!(found, vec![first, first + 2 + 4, first + 2 + 4 + 4]);
        // The length is the field right before each payload.
        let body = batch.body();
        let payload = |at: u32| {
            let at = (at - base) as usize;
            let len = u32::from_le_bytes(body[at - 4..at].try_into().expect("4 bytes"));
            body[at..at + len as usize].to_vec()
        };
        assert_eq!(payload(found[1]), b"");
        assert_eq!(payload(found[0]), b"ab");
        assert_eq!(payload(found[2]), b"xyz");
    }
}
