//! The seeded random number generator of the core: SplitMix64 (Steele, Lea and Flood, 2014).
//!
//! The core draws only election timeouts from it. It is seeded from `Config::seed`, never from
//! the operating system, so a simulation replays exactly.

/// A small, fast, seedable generator; not for cryptography.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose sequence is fixed by `seed`.
    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value uniformly in `[low, high)`; `high` must exceed `low`.
    pub(crate) fn below(&mut self, low: u32, high: u32) -> u32 {
        assert!(low < high, "empty range {low}..{high}");
        let span = u64::from(high - low);
        // The modulo bias is below span / 2^64: irrelevant for timeouts.
        let offset = u32::try_from(self.next_u64() % span).expect("offset < span <= u32::MAX");
        low + offset
    }
}
