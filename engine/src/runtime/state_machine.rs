//! The embedder's state machine, and the small key-value map the tests use.
//!
//! A shard applies every committed normal entry of a group, in index order, to that group's
//! [`StateMachine`] and hands the result to whoever proposed the entry. `state_hash` answers
//! consistency verification (`Engine::verify`). `snapshot` and `restore` are part of the
//! contract, for when the engine streams snapshots between nodes (the core does already).

use std::collections::BTreeMap;

/// What a group replicates. Called only from the group's shard thread.
pub trait StateMachine: Send {
    /// Applies the command of the committed entry at `index` and returns its result.
    /// Must be deterministic: every replica applies the same commands in the same order.
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8>;

    /// The whole state, to be restored by [`StateMachine::restore`] on another replica.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the state with one produced by [`StateMachine::snapshot`].
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;

    /// A hash of the whole state, equal on two replicas exactly when their states are
    /// equal (up to hash collisions), and independent of the machine it runs on: it is
    /// compared across replicas by consistency verification.
    fn state_hash(&self) -> u64;
}

/// 64-bit FNV-1a: a hash that is the same on every machine and Rust version (the standard
/// library's hasher promises neither), for [`StateMachine::state_hash`].
#[derive(Clone, Copy, Debug)]
pub struct StableHasher(u64);

impl StableHasher {
    /// A hasher with FNV-1a's offset basis.
    #[must_use]
    pub fn new() -> StableHasher {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }

    /// Hashes `bytes`, preceded by their length (so that ("ab","c") and ("a","bc") differ).
    pub fn write(&mut self, bytes: &[u8]) {
        for byte in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// The hash so far.
    #[must_use]
    pub fn finish(self) -> u64 {
        self.0
    }
}

impl Default for StableHasher {
    fn default() -> StableHasher {
        StableHasher::new()
    }
}

/// A key-value map: the reference state machine of the tests and the load generator.
///
/// Commands: `[0] key_len:u32 LE, key, value` sets `key` and returns the previous value (empty
/// if none); `[1] key` returns the value (a read through the log). Anything else returns
/// `b"bad command"` and changes nothing (a command is data: it must not crash a replica).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvMap {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The index of the last command applied.
    pub applied: u64,
}

impl KvMap {
    /// The command that sets `key` to `value`.
    pub fn set_command(key: &[u8], value: &[u8]) -> Vec<u8> {
        let key_len = u32::try_from(key.len()).expect("keys under 4 GiB");
        let mut command = Vec::with_capacity(5 + key.len() + value.len());
        command.push(0);
        command.extend_from_slice(&key_len.to_le_bytes());
        command.extend_from_slice(key);
        command.extend_from_slice(value);
        command
    }

    /// The command that reads `key`.
    pub fn get_command(key: &[u8]) -> Vec<u8> {
        let mut command = vec![1];
        command.extend_from_slice(key);
        command
    }

    /// The value of `key`, read locally.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries.get(key).map(Vec::as_slice)
    }

    /// How many keys are set.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no key is set.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sets `key` to `value` outside the log: this replica's state no longer matches the
    /// others'. A test hook for consistency verification, never for real use.
    #[doc(hidden)]
    pub fn corrupt_for_tests(&mut self, key: &[u8], value: &[u8]) {
        self.entries.insert(key.to_vec(), value.to_vec());
    }
}

impl StateMachine for KvMap {
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
        self.applied = index;
        match command.split_first() {
            Some((0, rest)) if rest.len() >= 4 => {
                let key_len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let Some(key) = rest.get(4..4 + key_len) else {
                    return b"bad command".to_vec();
                };
                let value = &rest[4 + key_len..];
                self.entries
                    .insert(key.to_vec(), value.to_vec())
                    .unwrap_or_default()
            }
            Some((1, key)) => self.entries.get(key).cloned().unwrap_or_default(),
            _ => b"bad command".to_vec(),
        }
    }

    /// `applied` (u64 LE), then per key in order: key length (u32 LE), key, value length
    /// (u32 LE), value.
    fn snapshot(&self) -> Vec<u8> {
        let mut out = self.applied.to_le_bytes().to_vec();
        for (key, value) in &self.entries {
            for bytes in [key, value] {
                let len = u32::try_from(bytes.len()).expect("keys and values under 4 GiB");
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(bytes);
            }
        }
        out
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        fn take<'a>(rest: &mut &'a [u8], len: usize) -> Result<&'a [u8], String> {
            let (head, tail) = rest.split_at_checked(len).ok_or("truncated snapshot")?;
            *rest = tail;
            Ok(head)
        }
        fn take_sized<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], String> {
            let len = take(rest, 4)?;
            let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
            take(rest, len)
        }
        let mut rest = snapshot;
        let applied = u64::from_le_bytes(take(&mut rest, 8)?.try_into().expect("8 bytes"));
        let mut entries = BTreeMap::new();
        while !rest.is_empty() {
            let key = take_sized(&mut rest)?.to_vec();
            let value = take_sized(&mut rest)?.to_vec();
            entries.insert(key, value);
        }
        self.entries = entries;
        self.applied = applied;
        Ok(())
    }

    fn state_hash(&self) -> u64 {
        let mut hasher = StableHasher::new();
        for (key, value) in &self.entries {
            hasher.write(key);
            hasher.write(value);
        }
        hasher.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_apply_and_a_snapshot_restores_the_same_map() {
        let mut map = KvMap::default();
        assert_eq!(map.apply(1, &KvMap::set_command(b"a", b"1")), b"");
        assert_eq!(map.apply(2, &KvMap::set_command(b"a", b"2")), b"1");
        assert_eq!(map.apply(3, &KvMap::set_command(b"b", b"")), b"");
        assert_eq!(map.apply(4, &KvMap::get_command(b"a")), b"2");
        assert_eq!(map.apply(5, b"\x09junk"), b"bad command");
        assert_eq!(map.apply(6, b"\x00\xff\xff\xff\xffk"), b"bad command");
        let mut copy = KvMap::default();
        copy.restore(&map.snapshot()).expect("restores");
        assert_eq!(copy, map);
        assert!(copy.restore(b"short").is_err());
    }
}
