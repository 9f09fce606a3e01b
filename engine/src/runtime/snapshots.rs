//! A shard's snapshots on disk: one file per group, holding the state machine's bytes at
//! an applied index with the snapshot's metadata (index, term, configuration).
//!
//! A snapshot file is written whole and made durable (write to a temporary name, fsync,
//! rename, fsync the directory) *before* the log record that compacts the group's entries
//! behind it is written, so the log never refers to a snapshot that is not on disk. The
//! newest file of a group is the group's snapshot. The one before it is kept until the
//! next, so that a transfer to a follower survives one compaction on the leader; older
//! ones are deleted. The layout is in docs/FORMATS.md ("Snapshot file").
//!
//! Chunks a follower receives are staged in memory until the last one arrives
//! (`stage`/`take_staged`); a leader reads its chunks from the file (`read_chunk`).
//!
//! **Boundary:** plain blocking file I/O on the shard thread, rare (every
//! `snapshot_every_entries` applied entries per group) and sequential.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::raft::{Configuration, LogIndex, SnapshotChunkData, SnapshotMeta, Term};
use crate::runtime::wire::GroupId;

/// The first 8 bytes of a snapshot file.
const MAGIC: &[u8; 8] = b"FLTSNAP1";
/// Magic, index, term, configuration length.
const HEADER_BYTES: usize = 8 + 8 + 8 + 4;

/// A snapshot file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading or writing failed.
    #[error("snapshot {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not a snapshot this build wrote, or it was damaged.
    #[error("snapshot {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// What the store knows of a group's snapshot file.
#[derive(Clone, Debug)]
struct Stored {
    meta: SnapshotMeta,
    path: PathBuf,
    /// Where the state machine's bytes start in the file, and how many there are.
    data_offset: u64,
    data_len: u64,
}

/// A shard's snapshot directory.
#[derive(Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    every_entries: u64,
    latest: BTreeMap<GroupId, Stored>,
    /// The snapshot each group had before its latest, still readable by transfers.
    previous: BTreeMap<GroupId, Stored>,
    staging: BTreeMap<GroupId, Vec<u8>>,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Parses `g{group}-i{index}.snap`.
fn parse_name(name: &str) -> Option<(GroupId, LogIndex)> {
    let rest = name.strip_prefix('g')?.strip_suffix(".snap")?;
    let (group, index) = rest.split_once("-i")?;
    Some((GroupId(group.parse().ok()?), LogIndex(index.parse().ok()?)))
}

impl SnapshotStore {
    /// Opens (creating it if needed) the snapshot directory `dir`; a group snapshots every
    /// `every_entries` applied entries (0: never). Leftover temporary files go; of several
    /// files of one group, the newest is kept.
    ///
    /// # Errors
    /// The directory cannot be created or listed, or a file cannot be read or removed.
    pub fn open(dir: &Path, every_entries: u64) -> Result<SnapshotStore, SnapshotError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let mut store = SnapshotStore {
            dir: dir.to_path_buf(),
            every_entries,
            latest: BTreeMap::new(),
            previous: BTreeMap::new(),
            staging: BTreeMap::new(),
        };
        let mut found: BTreeMap<GroupId, Vec<(LogIndex, PathBuf)>> = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(io_error(dir))? {
            let path = entry.map_err(io_error(dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".tmp") {
                fs::remove_file(&path).map_err(io_error(&path))?;
            } else if let Some((group, index)) = parse_name(name) {
                found.entry(group).or_default().push((index, path));
            }
        }
        for (group, mut files) in found {
            files.sort();
            let (_, newest) = files.pop().expect("at least one");
            // Checked before anything older goes.
            let stored = read_header(&newest)?;
            for (_, older) in files {
                fs::remove_file(&older).map_err(io_error(&older))?;
            }
            store.latest.insert(group, stored);
        }
        Ok(store)
    }

    /// Whether `group`, applied through `applied`, is due for a snapshot.
    #[must_use]
    pub fn due(&self, group: GroupId, applied: LogIndex) -> bool {
        let last = self
            .latest
            .get(&group)
            .map_or(0, |stored| stored.meta.index.0);
        self.every_entries > 0 && applied.0 >= last.saturating_add(self.every_entries)
    }

    /// `group`'s snapshot, whole, verified.
    ///
    /// # Errors
    /// The file cannot be read, or its checksum or layout is wrong.
    pub fn load(&self, group: GroupId) -> Result<Option<(SnapshotMeta, Vec<u8>)>, SnapshotError> {
        let Some(stored) = self.latest.get(&group) else {
            return Ok(None);
        };
        let path = &stored.path;
        let bytes = fs::read(path).map_err(io_error(path))?;
        let corrupt = |reason: &str| SnapshotError::Corrupt {
            path: path.clone(),
            reason: reason.to_string(),
        };
        let Some(body_len) = bytes.len().checked_sub(4) else {
            return Err(corrupt("shorter than its checksum"));
        };
        let stored_crc = u32::from_le_bytes(bytes[body_len..].try_into().expect("4 bytes"));
        if crc32fast::hash(&bytes[..body_len]) != stored_crc {
            return Err(corrupt("checksum mismatch"));
        }
        let start = usize::try_from(stored.data_offset).expect("in memory");
        let end = start + usize::try_from(stored.data_len).expect("in memory");
        if end != body_len {
            return Err(corrupt("data length does not match the file"));
        }
        Ok(Some((stored.meta.clone(), bytes[start..end].to_vec())))
    }

    /// Writes `group`'s snapshot `meta` with the state machine's `data`, durably, and
    /// deletes the one it replaces.
    ///
    /// # Errors
    /// A write, sync, rename or delete failed; the previous snapshot is then still the
    /// group's.
    pub fn save(
        &mut self,
        group: GroupId,
        meta: &SnapshotMeta,
        data: &[u8],
    ) -> Result<(), SnapshotError> {
        let configuration = meta.configuration.encode();
        let mut body = Vec::with_capacity(HEADER_BYTES + configuration.len() + 8 + data.len() + 4);
        body.extend_from_slice(MAGIC);
        body.extend_from_slice(&meta.index.0.to_le_bytes());
        body.extend_from_slice(&meta.term.0.to_le_bytes());
        body.extend_from_slice(&(configuration.len() as u32).to_le_bytes());
        body.extend_from_slice(&configuration);
        body.extend_from_slice(&(data.len() as u64).to_le_bytes());
        let data_offset = body.len() as u64;
        body.extend_from_slice(data);
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        let name = format!("g{}-i{}.snap", group.0, meta.index.0);
        let path = self.dir.join(&name);
        let temporary = self.dir.join(format!("{name}.tmp"));
        let mut file = File::create(&temporary).map_err(io_error(&temporary))?;
        file.write_all(&body).map_err(io_error(&temporary))?;
        file.sync_all().map_err(io_error(&temporary))?;
        drop(file);
        fs::rename(&temporary, &path).map_err(io_error(&path))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error(&self.dir))?;
        let previous = self.latest.insert(
            group,
            Stored {
                meta: meta.clone(),
                path: path.clone(),
                data_offset,
                data_len: data.len() as u64,
            },
        );
        if let Some(previous) = previous
            && previous.path != path
            && let Some(older) = self.previous.insert(group, previous)
        {
            fs::remove_file(&older.path).map_err(io_error(&older.path))?;
        }
        Ok(())
    }

    /// Up to `bytes_max` bytes of `group`'s snapshot data at `offset`, if its snapshot is
    /// still the one at `index`.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn read_chunk(
        &self,
        group: GroupId,
        index: LogIndex,
        offset: u64,
        bytes_max: usize,
    ) -> Result<Option<SnapshotChunkData>, SnapshotError> {
        let Some(stored) = [self.latest.get(&group), self.previous.get(&group)]
            .into_iter()
            .flatten()
            .find(|stored| stored.meta.index == index)
        else {
            return Ok(None);
        };
        if offset > stored.data_len {
            return Ok(None);
        }
        let len = usize::try_from((stored.data_len - offset).min(bytes_max as u64))
            .expect("bounded by bytes_max");
        let mut data = vec![0; len];
        let path = &stored.path;
        let mut file = File::open(path).map_err(io_error(path))?;
        file.seek(SeekFrom::Start(stored.data_offset + offset))
            .map_err(io_error(path))?;
        file.read_exact(&mut data).map_err(io_error(path))?;
        Ok(Some(SnapshotChunkData {
            data: Bytes::from(data),
            total_bytes: stored.data_len,
        }))
    }

    /// Keeps a received chunk of `group`'s incoming snapshot (offset 0 starts over).
    pub fn stage(&mut self, group: GroupId, offset: u64, data: &[u8]) {
        let staged = self.staging.entry(group).or_default();
        if offset == 0 {
            staged.clear();
        }
        // The core hands chunks over in order, each at the offset it expects.
        debug_assert_eq!(staged.len() as u64, offset, "chunks staged out of order");
        staged.extend_from_slice(data);
    }

    /// The chunks staged for `group`, now complete.
    pub fn take_staged(&mut self, group: GroupId) -> Vec<u8> {
        self.staging.remove(&group).unwrap_or_default()
    }

    /// Deletes everything of `group` (it was removed from this node).
    ///
    /// # Errors
    /// The file cannot be deleted.
    pub fn remove(&mut self, group: GroupId) -> Result<(), SnapshotError> {
        self.staging.remove(&group);
        for stored in [self.latest.remove(&group), self.previous.remove(&group)]
            .into_iter()
            .flatten()
        {
            fs::remove_file(&stored.path).map_err(io_error(&stored.path))?;
        }
        Ok(())
    }
}

/// Reads a snapshot file's metadata (the data is checked when loaded).
fn read_header(path: &Path) -> Result<Stored, SnapshotError> {
    let corrupt = |reason: &str| SnapshotError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let mut file = File::open(path).map_err(io_error(path))?;
    let file_len = file.metadata().map_err(io_error(path))?.len();
    let mut header = [0u8; HEADER_BYTES];
    file.read_exact(&mut header)
        .map_err(|_| corrupt("shorter than its header"))?;
    if &header[..8] != MAGIC {
        return Err(corrupt("not a snapshot file (bad magic)"));
    }
    let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let (index, term) = (word(8), word(16));
    let configuration_len = u32::from_le_bytes(header[24..28].try_into().expect("4 bytes"));
    if u64::from(configuration_len) > file_len {
        return Err(corrupt("configuration longer than the file"));
    }
    let mut configuration = vec![0; configuration_len as usize];
    file.read_exact(&mut configuration)
        .map_err(|_| corrupt("truncated configuration"))?;
    let configuration = Configuration::decode(&configuration).map_err(&corrupt)?;
    let mut data_len = [0u8; 8];
    file.read_exact(&mut data_len)
        .map_err(|_| corrupt("truncated data length"))?;
    let data_len = u64::from_le_bytes(data_len);
    let data_offset = (HEADER_BYTES as u64) + u64::from(configuration_len) + 8;
    if data_offset
        .checked_add(data_len)
        .and_then(|end| end.checked_add(4))
        != Some(file_len)
    {
        return Err(corrupt("data length does not match the file"));
    }
    Ok(Stored {
        meta: SnapshotMeta {
            index: LogIndex(index),
            term: Term(term),
            configuration,
        },
        path: path.to_path_buf(),
        data_offset,
        data_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::NodeId;

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            index: LogIndex(index),
            term: Term(3),
            configuration: Configuration::new(&[NodeId(1), NodeId(2)]).expect("voters"),
        }
    }

    #[test]
    fn a_saved_snapshot_loads_back_reads_in_chunks_and_replaces_the_older_one() {
        let dir = tempfile::tempdir().expect("dir");
        let mut store = SnapshotStore::open(dir.path(), 10).expect("opens");
        assert!(store.due(GroupId(7), LogIndex(10)));
        assert!(!store.due(GroupId(7), LogIndex(9)));
        store.save(GroupId(7), &meta(10), b"first").expect("saved");
        store
            .save(GroupId(7), &meta(20), b"second state")
            .expect("saved");
        assert!(!store.due(GroupId(7), LogIndex(29)));
        // The one before stays readable (a transfer in progress), the one before that goes.
        let old = store
            .read_chunk(GroupId(7), LogIndex(10), 0, 64)
            .expect("reads");
        assert_eq!(
            old.map(|chunk| chunk.data),
            Some(Bytes::from_static(b"first"))
        );
        store.save(GroupId(7), &meta(30), b"third").expect("saved");
        assert_eq!(
            store
                .read_chunk(GroupId(7), LogIndex(10), 0, 64)
                .expect("reads"),
            None
        );
        assert!(!dir.path().join("g7-i10.snap").exists());
        store.remove(GroupId(7)).expect("removed");
        store.save(GroupId(7), &meta(10), b"first").expect("saved");
        store
            .save(GroupId(7), &meta(20), b"second state")
            .expect("saved");
        let reopened = SnapshotStore::open(dir.path(), 10).expect("reopens");
        assert_eq!(
            reopened.load(GroupId(7)).expect("loads"),
            Some((meta(20), b"second state".to_vec()))
        );
        assert_eq!(
            fs::read_dir(dir.path()).expect("list").count(),
            1,
            "older file deleted"
        );
        let chunk = reopened
            .read_chunk(GroupId(7), LogIndex(20), 7, 3)
            .expect("reads")
            .expect("that snapshot");
        assert_eq!((&chunk.data[..], chunk.total_bytes), (&b"sta"[..], 12));
        assert_eq!(
            reopened
                .read_chunk(GroupId(7), LogIndex(10), 0, 3)
                .expect("reads"),
            None
        );
    }

    #[test]
    fn a_damaged_snapshot_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let mut store = SnapshotStore::open(dir.path(), 10).expect("opens");
        store.save(GroupId(1), &meta(5), b"state").expect("saved");
        let path = dir.path().join("g1-i5.snap");
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 6;
        bytes[last] ^= 0x40;
        fs::write(&path, &bytes).expect("write");
        let store = SnapshotStore::open(dir.path(), 10).expect("opens");
        let error = store.load(GroupId(1)).expect_err("corrupt");
        assert!(error.to_string().contains("g1-i5.snap"), "{error}");
        assert!(error.to_string().contains("checksum"), "{error}");
        fs::write(&path, b"junk").expect("write");
        let error = SnapshotStore::open(dir.path(), 10).expect_err("corrupt header");
        assert!(error.to_string().contains("header"), "{error}");
    }
}
