//! Segment files: creation with every byte written ahead of use, recycling of collected
//! segments, header checks on open, and the read-only memory map through which records are
//! read.
//!
//! A segment is a file of fixed size named by its sequence number (`{id:020}.seg`). It is
//! created under a temporary name, filled with its header and zeros, synced, then renamed
//! and the directory synced, so a crash never leaves a half-made segment under a real
//! name. Writing the zeros ahead matters: a sync of a freshly allocated extent also
//! commits file-system metadata and costs about twice as much as one of written bytes.
//!
//! A collected segment is kept as a free file (`{old id:020}.free`) and later becomes a new
//! segment by getting a new header only: its old records stay in place, told apart from
//! the new segment's records by the nonce every record carries (see `format`). This saves
//! writing the zeros and freeing and allocating the blocks, which otherwise compete with
//! the appends for the disk.
//!
//! **Boundary:** this module never writes records; the writer in `io::uring` does.
//! The only `unsafe` here is the memory map, whose soundness argument is below.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::OpenError;
use crate::format::{
    FORMAT_VERSION, SEGMENT_HEADER_BYTES, SEGMENT_HEADER_PAGE_BYTES, SegmentHeader,
};
use crate::ids::SegmentId;

/// Suffix of segment files.
pub(crate) const SEGMENT_SUFFIX: &str = ".seg";
/// Suffix of segments being created; they are removed when a log is opened.
pub(crate) const TEMP_SUFFIX: &str = ".seg.tmp";
/// Suffix of collected segment files kept for recycling.
pub(crate) const FREE_SUFFIX: &str = ".free";
/// Zeros are written in chunks of this size when a segment is created.
const FILL_CHUNK_BYTES: usize = 1 << 20;

/// One open segment file.
pub(crate) struct Segment {
    pub(crate) id: SegmentId,
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    pub(crate) size_bytes: u64,
    /// The nonce every record of this segment carries.
    pub(crate) nonce: u32,
    /// The file held an earlier segment: past the records lie stale bytes, not zeros.
    pub(crate) reused: bool,
    map: Mmap,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> OpenError + '_ {
    move |source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The file name of segment `id`.
pub(crate) fn segment_path(dir: &Path, id: SegmentId) -> PathBuf {
    dir.join(format!("{:020}{SEGMENT_SUFFIX}", id.0))
}

/// The name under which collected segment `id` waits to be recycled.
pub(crate) fn free_path(dir: &Path, id: SegmentId) -> PathBuf {
    dir.join(format!("{:020}{FREE_SUFFIX}", id.0))
}

/// Parses a segment file name; `None` for any other file.
pub(crate) fn parse_segment_name(name: &str) -> Option<SegmentId> {
    parse_numbered(name, SEGMENT_SUFFIX)
}

/// Parses a free file name; `None` for any other file.
pub(crate) fn parse_free_name(name: &str) -> Option<SegmentId> {
    parse_numbered(name, FREE_SUFFIX)
}

fn parse_numbered(name: &str, suffix: &str) -> Option<SegmentId> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(SegmentId)
}

/// Syncs a directory so that file creations and renames in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Segment {
    /// Creates segment `id` of `size_bytes` in `dir`: header, zeros, sync, rename, dir sync.
    pub(crate) fn create(dir: &Path, id: SegmentId, size_bytes: u64) -> Result<Segment, OpenError> {
        let path = segment_path(dir, id);
        let temp = temp_path(dir, id);
        let header = SegmentHeader {
            version: FORMAT_VERSION,
            segment: id,
            segment_size_bytes: size_bytes,
            nonce: fresh_nonce(0),
            reused: false,
        };
        {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&temp)
                .map_err(io_error(&temp))?;
            file.write_all(&header.encode()).map_err(io_error(&temp))?;
            let zeros = vec![0u8; FILL_CHUNK_BYTES];
            let mut left = size_bytes - SEGMENT_HEADER_BYTES;
            while left > 0 {
                let chunk = left.min(FILL_CHUNK_BYTES as u64);
                file.write_all(&zeros[..crate::usize_of(chunk)])
                    .map_err(io_error(&temp))?;
                left -= chunk;
            }
            file.sync_all().map_err(io_error(&temp))?;
        }
        fs::rename(&temp, &path).map_err(io_error(&path))?;
        sync_dir(dir).map_err(io_error(dir))?;
        Segment::open(&path, id)
    }

    /// Makes the free file `free` (a collected segment of `size_bytes`) segment `id`: rename
    /// to the temporary name, write the new header over the old one, sync, rename, dir sync.
    /// The old records stay; the new nonce differs from the one they carry.
    pub(crate) fn recycle(
        dir: &Path,
        free: &Path,
        id: SegmentId,
        size_bytes: u64,
    ) -> Result<Segment, OpenError> {
        let path = segment_path(dir, id);
        let temp = temp_path(dir, id);
        fs::rename(free, &temp).map_err(io_error(free))?;
        {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&temp)
                .map_err(io_error(&temp))?;
            let len = file.metadata().map_err(io_error(&temp))?.len();
            if len != size_bytes {
                return Err(OpenError::SegmentSize {
                    path: free.to_path_buf(),
                    expected: size_bytes,
                    found: len,
                });
            }
            let mut old_page = [0u8; SEGMENT_HEADER_PAGE_BYTES];
            let got = read_up_to(&file, &mut old_page).map_err(io_error(&temp))?;
            let old_nonce = SegmentHeader::decode(&old_page[..got]).map_or(0, |old| old.nonce);
            let header = SegmentHeader {
                version: FORMAT_VERSION,
                segment: id,
                segment_size_bytes: size_bytes,
                nonce: fresh_nonce(old_nonce),
                reused: true,
            };
            file.write_all_at(&header.encode(), 0)
                .map_err(io_error(&temp))?;
            file.sync_data().map_err(io_error(&temp))?;
        }
        fs::rename(&temp, &path).map_err(io_error(&path))?;
        sync_dir(dir).map_err(io_error(dir))?;
        Segment::open(&path, id)
    }

    /// Opens an existing segment, checking its header against its name and its length
    /// against its header. A last segment shorter than its header says (cut by hand or by
    /// a tool) is accepted by recovery through `open_extending`; here it is an error.
    pub(crate) fn open(path: &Path, id: SegmentId) -> Result<Segment, OpenError> {
        let (file, header, len) = Segment::open_checked_header(path, id)?;
        if len != header.segment_size_bytes {
            return Err(OpenError::SegmentSize {
                path: path.to_path_buf(),
                expected: header.segment_size_bytes,
                found: len,
            });
        }
        Segment::map(path, &header, file, len)
    }

    /// Like `open`, but a file shorter than its declared size is extended with zeros to
    /// that size first (the missing bytes are unwritten space). Used for the last segment
    /// only; the zeros are unwritten space, so nothing is lost.
    pub(crate) fn open_extending(path: &Path, id: SegmentId) -> Result<Segment, OpenError> {
        let (file, header, len) = Segment::open_checked_header(path, id)?;
        if len > header.segment_size_bytes {
            return Err(OpenError::SegmentSize {
                path: path.to_path_buf(),
                expected: header.segment_size_bytes,
                found: len,
            });
        }
        if len < header.segment_size_bytes {
            let zeros = vec![0u8; crate::usize_of(header.segment_size_bytes - len)];
            file.write_all_at(&zeros, len).map_err(io_error(path))?;
            file.sync_all().map_err(io_error(path))?;
        }
        Segment::map(path, &header, file, header.segment_size_bytes)
    }

    /// Reads and checks a segment's header; returns the file, the header and the length.
    pub(crate) fn open_checked_header(
        path: &Path,
        id: SegmentId,
    ) -> Result<(File, SegmentHeader, u64), OpenError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io_error(path))?;
        let len = file.metadata().map_err(io_error(path))?.len();
        let mut page = [0u8; SEGMENT_HEADER_PAGE_BYTES];
        let got = read_up_to(&file, &mut page).map_err(io_error(path))?;
        if let Some(found) = SegmentHeader::peek_version(&page[..got])
            && found != FORMAT_VERSION
        {
            return Err(OpenError::UnsupportedVersion {
                path: path.to_path_buf(),
                found,
                supported: FORMAT_VERSION,
            });
        }
        let header = SegmentHeader::decode(&page[..got]).map_err(|e| OpenError::NotALog {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if header.segment != id {
            return Err(OpenError::NotALog {
                path: path.to_path_buf(),
                reason: format!(
                    "header names segment {} but the file name says {id}",
                    header.segment
                ),
            });
        }
        if header.segment_size_bytes < crate::format::SEGMENT_SIZE_MIN_BYTES
            || header.segment_size_bytes > crate::format::SEGMENT_SIZE_MAX_BYTES
            || header.segment_size_bytes % crate::format::SEGMENT_SIZE_ALIGN_BYTES != 0
        {
            return Err(OpenError::NotALog {
                path: path.to_path_buf(),
                reason: format!(
                    "header declares an invalid size of {} bytes",
                    header.segment_size_bytes
                ),
            });
        }
        Ok((file, header, len))
    }

    fn map(
        path: &Path,
        header: &SegmentHeader,
        file: File,
        size_bytes: u64,
    ) -> Result<Segment, OpenError> {
        // The map is read-only and the file is never truncated while a `Segment` exists:
        // this process holds the log's (advisory) lock file, writes only through `write_at`
        // calls and io_uring writes inside the file's fixed length, and deletes a segment
        // only after dropping it. Bytes under an in-flight write are never read (see
        // `Wal::payload`), so no read races a write of the same bytes. Another process
        // truncating the file would still raise SIGBUS: the lock is advisory.
        // SAFETY: the mapped file keeps its length while mapped (above).
        let map = unsafe { Mmap::map(&file) }.map_err(io_error(path))?;
        Ok(Segment {
            id: header.segment,
            path: path.to_path_buf(),
            file,
            size_bytes,
            nonce: header.nonce,
            reused: header.reused,
            map,
        })
    }

    /// The whole file, header included.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Writes zeros over `[from, to)` and syncs: erases a torn tail so that later appends
    /// never sit in front of stale bytes.
    pub(crate) fn zero_range(&self, from: u64, to: u64) -> io::Result<()> {
        if to <= from {
            return Ok(());
        }
        let zeros = vec![0u8; FILL_CHUNK_BYTES];
        let mut at = from;
        while at < to {
            let chunk = (to - at).min(FILL_CHUNK_BYTES as u64);
            self.file
                .write_all_at(&zeros[..crate::usize_of(chunk)], at)?;
            at += chunk;
        }
        self.file.sync_data()
    }
}

/// A random nonce, neither 0 nor `avoid` (the nonce of the file's previous use). Stale
/// records from uses before that one match it with a chance of 2^-32; even then their lsns
/// are older than the log's, so recovery reports them instead of taking them.
fn fresh_nonce(avoid: u32) -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut salt = 0u64;
    loop {
        // `RandomState` is seeded from the operating system's randomness.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(salt);
        let nonce = hasher.finish().to_le_bytes();
        let nonce = u32::from_le_bytes([nonce[0], nonce[1], nonce[2], nonce[3]]);
        if nonce != 0 && nonce != avoid {
            return nonce;
        }
        salt += 1;
    }
}

/// The temporary name of segment `id` while it is being made.
fn temp_path(dir: &Path, id: SegmentId) -> PathBuf {
    dir.join(format!("{:020}{TEMP_SUFFIX}", id.0))
}

fn read_up_to(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_others_are_ignored() {
        let dir = Path::new("/x");
        let path = segment_path(dir, SegmentId(42));
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_segment_name(name), Some(SegmentId(42)));
        assert_eq!(parse_segment_name("42.seg"), None);
        assert_eq!(parse_segment_name("00000000000000000042.seg.tmp"), None);
        assert_eq!(parse_segment_name("LOCK"), None);
    }
}
