//! Helpers shared by the log's integration tests: a seeded RNG and payload makers.
#![allow(dead_code, reason = "each test binary uses a different subset")]
#![allow(clippy::unwrap_used, reason = "test helpers fail by panicking")]

use flotilla_wal::{GroupId, LogIndex};

/// SplitMix64: small, seeded, good enough to drive tests deterministically.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo < hi);
        lo + self.next_u64() % (hi - lo)
    }

    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.range(0, 100) < percent
    }
}

/// The payload of entry `index` of `group`, `len` bytes, never containing a zero byte (so
/// that the end of a record's data is its last non-zero byte).
pub(crate) fn payload(group: GroupId, index: LogIndex, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(group.0.wrapping_mul(1_000_003) ^ index.0);
    (0..len).map(|_| (rng.range(1, 256)) as u8).collect()
}

/// The one segment file of a log directory with a single segment.
pub(crate) fn only_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let mut segments: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    assert_eq!(
        segments.len(),
        1,
        "expected one segment in {}",
        dir.display()
    );
    segments.pop().unwrap()
}
