//! [`Wal`]: the log of one shard — open and recover, submit batches, learn what is durable,
//! read entries, collect segments.
//!
//! # Driving contract
//! - [`Wal::submit`] validates a batch, hands its record to io_uring and returns its
//!   [`Lsn`] at once. Its entries are readable immediately; they are *durable* only once
//!   [`Wal::durable_lsn`] reaches that lsn. Nothing may be acknowledged before that.
//! - [`Wal::poll`] reaps completions without blocking and returns the durable lsn; a
//!   caller with its own event loop calls it each iteration. [`Wal::wait_durable`] blocks
//!   the thread instead, for plain threads and tools.
//! - Durability advances only through `poll` or `wait_durable`: `poll` starts a sync when
//!   none is in flight and every write completed, so one `fdatasync` covers every batch
//!   submitted while the previous sync ran (group commit); `wait_durable` syncs on the
//!   calling thread once nothing is in flight.
//! - After any write or sync failure the log is stopped: every later call fails with
//!   [`AppendError::Stopped`], and the only way on is to reopen (and so recover).
//!
//! # Invariants
//! - `durable_lsn <= submitted_lsn`, and durability is a prefix: when lsn `L` is durable,
//!   every record before it is too.
//! - A segment is synced before anything is written to the next one.
//! - A segment is collected (deleted, or kept as a free file to be recycled into a later
//!   segment) only when every record in it is superseded by durable records.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use crate::batch::WriteBatch;
use crate::error::{AppendError, OpenError, ReadError};
use crate::format::{
    self, BodyReader, FORMAT_VERSION, RECORD_HEADER_BYTES, RecordHeader, SEGMENT_HEADER_BYTES,
};
use crate::ids::{GroupId, LogIndex, Lsn, SegmentId, Term};
use crate::index::{EntryLoc, GroupState, Invalid, LogIndexMap, Mode};
use crate::io::uring::UringWriter;
use crate::recovery::{self, RecoveryReport};
use crate::segment::{self, Segment};

/// Name of the file that marks a directory as a flotilla log.
pub const MARKER_FILE: &str = "FLOTILLA_WAL";
/// Name of the lock file held while a log is open.
pub const LOCK_FILE: &str = "LOCK";
/// Default segment size: 64 MiB.
pub const SEGMENT_SIZE_DEFAULT_BYTES: u64 = 64 << 20;
/// Default number of collected segments kept for recycling: 256 MiB of disk per log at
/// the default segment size.
pub const RECYCLE_SEGMENTS_DEFAULT: usize = 4;

/// The zeros a record is padded with (less than the record alignment).
const PADDING_ZEROS: [u8; 8] = [0; 8];
const _: () = assert!(format::RECORD_ALIGN_BYTES == PADDING_ZEROS.len() as u64);

/// Options of [`Wal::open`].
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Size of new segments: a multiple of 4 KiB between 16 KiB and 1 GiB. Existing
    /// segments keep the size they were created with.
    pub segment_size_bytes: u64,
    /// On corruption (not a torn tail), cut the log at the damaged record instead of
    /// failing. Copies of the affected segments go to `quarantine/` first.
    pub repair: bool,
    /// Prepare the next segment on a background thread once the active one is half full,
    /// so that moving to it does not wait for its bytes to be written.
    pub preallocate: bool,
    /// How many collected segments to keep as free files, to become later segments by a
    /// header rewrite instead of being written from scratch. 0 deletes them.
    pub recycle_segments_max: usize,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size_bytes: SEGMENT_SIZE_DEFAULT_BYTES,
            repair: false,
            preallocate: true,
            recycle_segments_max: RECYCLE_SEGMENTS_DEFAULT,
        }
    }
}

/// One entry read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its index.
    pub index: LogIndex,
    /// Its term.
    pub term: Term,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// Counters of the log's work since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records (batches) submitted.
    pub records: u64,
    /// Entries submitted.
    pub entries: u64,
    /// Record bytes submitted, headers and padding included.
    pub bytes: u64,
    /// Syncs completed.
    pub syncs: u64,
    /// Moves to a new segment.
    pub rotations: u64,
    /// Moves that had to create the next segment on the spot.
    pub rotation_waits: u64,
    /// Moves to a segment recycled from a collected one.
    pub segments_recycled: u64,
    /// Segments released by garbage collection (deleted or kept to be recycled).
    pub segments_collected: u64,
}

/// What one [`Wal::collect_garbage`] call did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Segments released (deleted, or kept as free files to be recycled).
    pub collected: Vec<SegmentId>,
    /// Groups whose hard state or compaction mark was rewritten to release old segments.
    pub rewritten_groups: usize,
    /// A rewrite was submitted; the segments it releases go once it is durable.
    pub pending: bool,
}

/// The segmented write-ahead log of one shard. See the module docs for the contract.
pub struct Wal {
    /// Declared first so that it is dropped first: its drop waits for every write and
    /// sync in flight, which still use the segments' descriptors (io_uring resolves a
    /// deferred request's descriptor only when it starts), and the lock must outlive them.
    writer: UringWriter,
    dir: PathBuf,
    options: WalOptions,
    _lock: File,
    /// Every segment with data or already prepared, by id; the active one among them.
    segments: BTreeMap<SegmentId, Segment>,
    active: SegmentId,
    write_offset: u64,
    preparing: Option<(SegmentId, mpsc::Receiver<Result<Segment, OpenError>>)>,
    /// Collected segment files waiting to be recycled (at most `recycle_segments_max`).
    free: Vec<PathBuf>,
    index: LogIndexMap,
    /// A rewrite submitted by garbage collection: once durable through this lsn, segments
    /// below the id may go.
    gc_barrier: Option<(Lsn, SegmentId)>,
    stats: WalStats,
    stopped: Option<String>,
}

impl Wal {
    /// Opens the log in `dir`, creating it if `dir` is missing or empty, and recovers it.
    pub fn open(
        dir: impl AsRef<Path>,
        options: WalOptions,
    ) -> Result<(Wal, RecoveryReport), OpenError> {
        let dir = dir.as_ref().to_path_buf();
        validate_options(&options)?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OpenError::Io { path, source }
        };
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        check_or_write_marker(&dir)?;

        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(OpenError::Locked { path: lock_path });
        }

        let Listing { ids, temps, frees } = list_dir(&dir)?;
        let recovered = if ids.is_empty() {
            remove_temps(&temps)?;
            let first = Segment::create(&dir, SegmentId(1), options.segment_size_bytes)?;
            recovery::Recovered {
                segments: vec![first],
                index: LogIndexMap::default(),
                active_slot: 0,
                write_offset: SEGMENT_HEADER_BYTES,
                report: RecoveryReport {
                    segments: 1,
                    ..RecoveryReport::default()
                },
            }
        } else {
            let recovered = recovery::recover(&dir, &ids, options.repair)?;
            remove_temps(&temps)?;
            recovered
        };

        let report = recovered.report;
        let active = recovered.segments[recovered.active_slot].id;
        let mut segments: BTreeMap<SegmentId, Segment> =
            recovered.segments.into_iter().map(|s| (s.id, s)).collect();
        // What recovery read may have reached the kernel without a sync (the previous
        // process died before syncing): sync it before reporting it durable.
        for segment in segments.values() {
            segment.file.sync_data().map_err(io(&segment.path))?;
        }
        // Free files of another size than this run's, or beyond the limit, go.
        let mut free = Vec::new();
        for path in frees {
            let len = fs::metadata(&path).map_err(io(&path))?.len();
            if len == options.segment_size_bytes && free.len() < options.recycle_segments_max {
                free.push(path);
            } else {
                fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        // Segments after the active one (prepared ahead by an earlier run) hold nothing
        // of the log; retire them, highest first, so that a crash midway leaves no gap in
        // the ids, and so that the next segment is made with this run's size.
        let spares: Vec<SegmentId> = segments
            .range(SegmentId(active.0 + 1)..)
            .map(|(id, _)| *id)
            .collect();
        for id in spares.iter().rev() {
            let segment = segments.remove(id).expect("listed above");
            let path = segment.path.clone();
            retire(&dir, &options, &mut free, segment).map_err(io(&path))?;
        }
        if !spares.is_empty() {
            segment::sync_dir(&dir).map_err(io(&dir))?;
        }
        let writer = UringWriter::new(report.last_lsn).map_err(OpenError::Uring)?;
        let wal = Wal {
            dir,
            options,
            _lock: lock,
            segments,
            active,
            write_offset: recovered.write_offset,
            preparing: None,
            free,
            writer,
            index: recovered.index,
            gc_barrier: None,
            stats: WalStats::default(),
            stopped: None,
        };
        Ok((wal, report))
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The largest record (batch, header included) a segment of the configured size holds.
    pub fn record_bytes_max(&self) -> u64 {
        self.options.segment_size_bytes - SEGMENT_HEADER_BYTES
    }

    /// Validates `batch`, writes it as one record and returns its lsn without waiting.
    /// An empty batch writes nothing and returns the last submitted lsn.
    ///
    /// This blocks only when the in-flight window (64 records) is full; [`Wal::has_room`]
    /// tells beforehand. An invalid batch changes nothing and the log stays usable.
    pub fn submit(&mut self, batch: &WriteBatch) -> Result<Lsn, AppendError> {
        self.submit_with(batch, false)
    }

    /// `submit`, writing on this thread when `blocking` and nothing is in flight.
    fn submit_with(&mut self, batch: &WriteBatch, blocking: bool) -> Result<Lsn, AppendError> {
        self.check_running()?;
        if batch.is_empty() {
            return Ok(self.writer.submitted());
        }
        let body = batch.body();
        let record_bytes = format::align_record((RECORD_HEADER_BYTES + body.len()) as u64);
        if record_bytes > self.record_bytes_max() {
            return Err(AppendError::TooLarge {
                bytes: record_bytes,
                limit: self.record_bytes_max(),
            });
        }
        let invalid_batch = |invalid: Invalid| AppendError::InvalidBatch {
            group: invalid.group,
            reason: invalid.reason,
        };
        let chunks = || BodyReader::batch_chunks(body, batch.run_ends());
        let body_offset = |file_offset: u64| file_offset + RECORD_HEADER_BYTES as u64;
        let rotates = self.write_offset + record_bytes > self.active_segment().size_bytes;
        // A batch of appends written to the active segment is checked and indexed in one
        // pass (taken back if its record is not written); any other batch is checked whole
        // before anything changes, and indexed once written.
        let one_pass = batch.appends_only() && !rotates;
        if one_pass {
            self.index
                .check_apply_appends(chunks(), self.active, body_offset(self.write_offset))
                .map_err(invalid_batch)?;
        } else {
            self.index.check(chunks()).map_err(invalid_batch)?;
            if rotates {
                self.rotate()?;
            }
        }
        let lsn = self.writer.submitted().next();
        let synced_through = self.writer.durable();
        let file_offset = self.write_offset;
        let fd = self.active_segment().file.as_raw_fd();
        let nonce = self.active_segment().nonce;
        let fill = |out: &mut [u8]| {
            let body_end = RECORD_HEADER_BYTES + body.len();
            out[RECORD_HEADER_BYTES..body_end].copy_from_slice(body);
            out[body_end..].fill(0);
            RecordHeader::encode_into(out, nonce, lsn, synced_through, body);
        };
        let len = crate::usize_of(record_bytes);
        let result = if blocking && self.writer.is_idle() {
            let mut header = [0u8; RECORD_HEADER_BYTES];
            RecordHeader::encode_into(&mut header, nonce, lsn, synced_through, body);
            let padding = &PADDING_ZEROS[..len - RECORD_HEADER_BYTES - body.len()];
            self.writer
                .write_blocking(fd, file_offset, lsn, &[&header, body, padding])
        } else {
            self.writer
                .write(fd, self.active, file_offset, lsn, len, fill)
        };
        if let Err(e) = result {
            if one_pass {
                // The record was not written (or, through io_uring, not queued): the index
                // must not name its entries. (A queued write that fails later is reported
                // by `poll` and stops the log with its entries still indexed.)
                self.index.undo_appends();
            }
            return Err(self.stop(e));
        }
        if one_pass {
            self.index.keep_appends();
        } else {
            let applied = self.index.apply_all(
                chunks(),
                self.active,
                body_offset(file_offset),
                Mode::Submit,
            );
            if let Err(invalid) = applied {
                panic!(
                    "a checked batch applies: group {}: {}",
                    invalid.group, invalid.reason
                );
            }
        }
        self.write_offset += record_bytes;
        self.stats.records += 1;
        self.stats.entries += batch.entry_count() as u64;
        self.stats.bytes += record_bytes;
        self.maybe_prepare_next();
        Ok(lsn)
    }

    /// Waits until the segment being prepared in the background (recycled or created once
    /// the active one is half full), if any, is ready. The log never needs this; it lets a
    /// tool that measures the log count that I/O as the log's own.
    pub fn finish_preparing(&mut self) -> Result<(), AppendError> {
        self.check_running()?;
        let Some((next, rx)) = self.preparing.take() else {
            return Ok(());
        };
        match rx.recv() {
            Ok(Ok(segment)) => {
                self.segments.insert(next, segment);
                Ok(())
            }
            Ok(Err(e)) => Err(self.stop(std::io::Error::other(e.to_string()))),
            // The thread ended without an answer: the next rotation makes the segment.
            Err(_) => Ok(()),
        }
    }

    /// True when [`Wal::submit`] will not have to wait for an in-flight write.
    pub fn has_room(&self) -> bool {
        self.writer.has_room()
    }

    /// Reaps completed writes and syncs without blocking; returns the durable lsn.
    pub fn poll(&mut self) -> Result<Lsn, AppendError> {
        self.check_running()?;
        if let Err(e) = self.writer.poll() {
            return Err(self.stop(e));
        }
        self.stats.syncs = self.writer.syncs_completed();
        Ok(self.writer.durable())
    }

    /// Blocks until `lsn` (at most the last submitted lsn) is durable.
    pub fn wait_durable(&mut self, lsn: Lsn) -> Result<(), AppendError> {
        self.check_running()?;
        let target = lsn.min(self.writer.submitted());
        if let Err(e) = self.writer.wait_durable(target) {
            return Err(self.stop(e));
        }
        self.stats.syncs = self.writer.syncs_completed();
        Ok(())
    }

    /// Submits `batch` and waits until it is durable. With nothing in flight, the record is
    /// written and synced on this thread (`pwrite` + `fdatasync`), as a plain blocking
    /// writer would.
    pub fn append_durable(&mut self, batch: &WriteBatch) -> Result<Lsn, AppendError> {
        let lsn = self.submit_with(batch, true)?;
        self.wait_durable(lsn)?;
        Ok(lsn)
    }

    /// The highest lsn known durable.
    pub fn durable_lsn(&self) -> Lsn {
        self.writer.durable()
    }

    /// The last lsn submitted.
    pub fn submitted_lsn(&self) -> Lsn {
        self.writer.submitted()
    }

    /// How long syncs took, in microseconds, from being pushed to io_uring (or started on
    /// a blocked caller's thread) to their completion being reaped: what a durable write
    /// waits for the disk, plus up to one polling interval of the caller.
    pub fn sync_latency(&self) -> &hdrhistogram::Histogram<u64> {
        self.writer.sync_latency()
    }

    /// Counters since open.
    pub fn stats(&self) -> WalStats {
        WalStats {
            syncs: self.writer.syncs_completed(),
            ..self.stats
        }
    }

    /// What the log holds for `group`, if anything.
    pub fn group(&self, group: GroupId) -> Option<GroupState> {
        self.index.group(group).map(|log| log.state())
    }

    /// Every group the log holds state for.
    pub fn groups(&self) -> Vec<(GroupId, GroupState)> {
        self.index
            .groups()
            .map(|(id, log)| (id, log.state()))
            .collect()
    }

    /// The term of `group`'s entry at `index`.
    pub fn term(&self, group: GroupId, index: LogIndex) -> Result<Term, ReadError> {
        self.locate(group, index).map(|loc| loc.term)
    }

    /// Calls `visit` with each entry of `group` in `[from, to)`, its payload borrowed from
    /// the log (the segment's memory map, or the write buffer while the write is in flight).
    pub fn read_entries(
        &self,
        group: GroupId,
        from: LogIndex,
        to: LogIndex,
        mut visit: impl FnMut(LogIndex, Term, &[u8]),
    ) -> Result<(), ReadError> {
        let mut index = from;
        while index < to {
            let loc = self.locate(group, index)?;
            visit(index, loc.term, self.payload(&loc));
            index = index.next();
        }
        Ok(())
    }

    /// The entries of `group` in `[from, to)`, copied out.
    pub fn entries(
        &self,
        group: GroupId,
        from: LogIndex,
        to: LogIndex,
    ) -> Result<Vec<Entry>, ReadError> {
        let mut entries = Vec::new();
        self.read_entries(group, from, to, |index, term, payload| {
            entries.push(Entry {
                index,
                term,
                payload: payload.to_vec(),
            });
        })?;
        Ok(entries)
    }

    fn locate(&self, group: GroupId, index: LogIndex) -> Result<EntryLoc, ReadError> {
        let log = self
            .index
            .group(group)
            .ok_or(ReadError::UnknownGroup(group))?;
        let state = log.state();
        if index < state.first_index {
            return Err(ReadError::Compacted {
                group,
                index,
                first: state.first_index,
            });
        }
        log.entry(index).ok_or(ReadError::Unavailable {
            group,
            index,
            last: state.last_index,
        })
    }

    /// The payload at `loc`, preceded in the file by its u32 length.
    fn payload(&self, loc: &EntryLoc) -> &[u8] {
        let offset = u64::from(loc.offset);
        let len_at = offset - format::ENTRY_HEADER_BYTES as u64;
        let read = |at: u64, len: usize| -> &[u8] {
            if let Some(bytes) = self.writer.inflight_bytes(loc.segment, at, len) {
                return bytes;
            }
            let segment = self
                .segments
                .get(&loc.segment)
                .expect("indexed entries live in open segments");
            let start = crate::usize_of(at);
            &segment.bytes()[start..start + len]
        };
        let len_field = read(len_at, format::ENTRY_HEADER_BYTES);
        let len = u32::from_le_bytes(len_field.try_into().expect("a 4-byte length field"));
        read(offset, len as usize)
    }

    /// Deletes the segments no group needs any more. Groups that hold an old segment only
    /// through their hard state or compaction mark get those rewritten into the current
    /// segment; the segments they release are deleted by a later call, once that rewrite
    /// is durable. Groups whose live entries are in a segment keep it: compact them.
    pub fn collect_garbage(&mut self) -> Result<GcReport, AppendError> {
        self.check_running()?;
        let mut report = GcReport::default();
        if let Some((lsn, bound)) = self.gc_barrier {
            if self.writer.durable() < lsn {
                report.pending = true;
                return Ok(report);
            }
            self.gc_barrier = None;
            report.collected = self.collect_below(bound)?;
        }
        let (oldest_entries, metadata) = self.index.pins();
        let bound = oldest_entries.map_or(self.active, |s| s.min(self.active));
        let oldest = *self
            .segments
            .keys()
            .next()
            .expect("the active segment exists");
        if oldest >= bound {
            return Ok(report);
        }
        let mut rewrite = WriteBatch::new();
        for (group, pinned) in &metadata {
            if *pinned >= bound {
                continue;
            }
            let (hard_state, compacted_through) = self.index.metadata(*group);
            if let Some(hard_state) = hard_state {
                rewrite.set_hard_state(*group, hard_state);
            }
            rewrite.compact(*group, compacted_through);
            report.rewritten_groups += 1;
        }
        self.submit(&rewrite)?;
        self.gc_barrier = Some((self.writer.submitted(), bound));
        report.pending = true;
        Ok(report)
    }

    fn collect_below(&mut self, bound: SegmentId) -> Result<Vec<SegmentId>, AppendError> {
        let (oldest_entries, metadata) = self.index.pins();
        // Pins only move forward: nothing may have come to need a segment below the bound.
        assert!(
            oldest_entries.is_none_or(|s| s >= bound),
            "entries pin a collected segment"
        );
        assert!(
            metadata.iter().all(|(_, s)| *s >= bound),
            "metadata pins a collected segment"
        );
        let doomed: Vec<SegmentId> = self
            .segments
            .keys()
            .copied()
            .filter(|id| *id < bound && *id != self.active)
            .collect();
        for id in &doomed {
            let segment = self.segments.remove(id).expect("listed above");
            retire(&self.dir, &self.options, &mut self.free, segment).map_err(|e| self.stop(e))?;
            self.stats.segments_collected += 1;
        }
        if !doomed.is_empty() {
            segment::sync_dir(&self.dir).map_err(|e| self.stop(e))?;
        }
        Ok(doomed)
    }

    /// Waits until everything submitted is durable, then closes the log.
    pub fn close(mut self) -> Result<(), AppendError> {
        self.check_running()?;
        self.writer.drain().map_err(|e| self.stop(e))?;
        Ok(())
    }

    fn active_segment(&self) -> &Segment {
        self.segments
            .get(&self.active)
            .expect("the active segment is open")
    }

    /// Moves writing to the next segment. The old segment gets a drained sync first, so
    /// the kernel starts no write to the new segment before the old one is durable.
    fn rotate(&mut self) -> Result<(), AppendError> {
        let old_fd = self.active_segment().file.as_raw_fd();
        if let Err(e) = self.writer.sync_segment_end(old_fd) {
            return Err(self.stop(e));
        }
        let next = SegmentId(self.active.0 + 1);
        if !self.segments.contains_key(&next) {
            let prepared = match self.preparing.take() {
                Some((id, rx)) if id == next => rx.recv().ok(),
                _ => None,
            };
            let segment = match prepared {
                Some(Ok(segment)) => segment,
                Some(Err(e)) => return Err(self.stop(std::io::Error::other(e.to_string()))),
                None => {
                    self.stats.rotation_waits += 1;
                    let free = self.free.pop();
                    make_segment(
                        &self.dir,
                        free.as_deref(),
                        next,
                        self.options.segment_size_bytes,
                    )
                    .map_err(|e| self.stop(std::io::Error::other(e.to_string())))?
                }
            };
            self.segments.insert(next, segment);
        }
        self.active = next;
        if self.active_segment().reused {
            self.stats.segments_recycled += 1;
        }
        self.write_offset = SEGMENT_HEADER_BYTES;
        self.stats.rotations += 1;
        Ok(())
    }

    fn maybe_prepare_next(&mut self) {
        let next = SegmentId(self.active.0 + 1);
        if !self.options.preallocate
            || self.preparing.is_some()
            || self.segments.contains_key(&next)
            || self.write_offset < self.active_segment().size_bytes / 2
        {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let dir = self.dir.clone();
        let size = self.options.segment_size_bytes;
        let free = self.free.pop();
        let free_for_thread = free.clone();
        let spawned = std::thread::Builder::new()
            .name("flotilla-wal-prealloc".to_string())
            .spawn(move || {
                let made = make_segment(&dir, free_for_thread.as_deref(), next, size);
                let _receiver_may_be_gone = tx.send(made);
            });
        // Without a thread the next rotation makes the segment itself.
        match spawned {
            Ok(_) => self.preparing = Some((next, rx)),
            Err(_) => self.free.extend(free),
        }
    }

    fn check_running(&self) -> Result<(), AppendError> {
        match &self.stopped {
            Some(reason) => Err(AppendError::Stopped(reason.clone())),
            None => Ok(()),
        }
    }

    fn stop(&mut self, error: std::io::Error) -> AppendError {
        let reason = self
            .writer
            .failure()
            .map_or_else(|| error.to_string(), str::to_string);
        self.stopped.get_or_insert(reason);
        AppendError::Io(error)
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        // A segment being prepared must be finished (or failed) before the log can be
        // opened again: a later open must not see it appear under its name halfway.
        if let Some((_, rx)) = self.preparing.take() {
            let _finished_or_failed = rx.recv();
        }
    }
}

/// Makes segment `id`: recycled from the free file `free` if there is one, else created.
/// A free file that cannot be recycled (gone, or an I/O error) costs only its reuse: the
/// segment is then created, and a failure there is the one reported.
fn make_segment(
    dir: &Path,
    free: Option<&Path>,
    id: SegmentId,
    size_bytes: u64,
) -> Result<Segment, OpenError> {
    free.and_then(|free| Segment::recycle(dir, free, id, size_bytes).ok())
        .map_or_else(|| Segment::create(dir, id, size_bytes), Ok)
}

/// Releases a segment no longer part of the log: renamed to a free file if `free` has room
/// and it has this run's size, deleted otherwise. The caller syncs the directory.
fn retire(
    dir: &Path,
    options: &WalOptions,
    free: &mut Vec<PathBuf>,
    segment: Segment,
) -> std::io::Result<()> {
    let (id, path, size) = (segment.id, segment.path.clone(), segment.size_bytes);
    drop(segment);
    let free_path = segment::free_path(dir, id);
    // A free file of the same name exists when an earlier run retired a spare with this
    // id; it may even be on its way to becoming a segment on the prepare thread, which
    // took it off the list. Keep that one and delete this one: never rename over it.
    let name_taken = free.contains(&free_path) || fs::symlink_metadata(&free_path).is_ok();
    if free.len() < options.recycle_segments_max
        && size == options.segment_size_bytes
        && !name_taken
    {
        fs::rename(&path, &free_path)?;
        free.push(free_path);
        Ok(())
    } else {
        fs::remove_file(&path)
    }
}

fn validate_options(options: &WalOptions) -> Result<(), OpenError> {
    let size = options.segment_size_bytes;
    if !(format::SEGMENT_SIZE_MIN_BYTES..=format::SEGMENT_SIZE_MAX_BYTES).contains(&size)
        || !size.is_multiple_of(format::SEGMENT_SIZE_ALIGN_BYTES)
    {
        return Err(OpenError::InvalidOptions(format!(
            "segment_size_bytes {size} must be a multiple of {} between {} and {}",
            format::SEGMENT_SIZE_ALIGN_BYTES,
            format::SEGMENT_SIZE_MIN_BYTES,
            format::SEGMENT_SIZE_MAX_BYTES
        )));
    }
    Ok(())
}

fn marker_text() -> String {
    format!("flotilla-wal\nversion {FORMAT_VERSION}\n")
}

/// Checks the marker of an existing log, or writes it into an empty directory.
fn check_or_write_marker(dir: &Path) -> Result<(), OpenError> {
    let marker = dir.join(MARKER_FILE);
    let io = |source| OpenError::Io {
        path: marker.clone(),
        source,
    };
    match fs::read_to_string(&marker) {
        Ok(text) => {
            let mut lines = text.lines();
            let version = (lines.next() == Some("flotilla-wal"))
                .then(|| lines.next().and_then(|l| l.strip_prefix("version ")))
                .flatten()
                .and_then(|v| v.trim().parse::<u32>().ok());
            match version {
                Some(FORMAT_VERSION) => Ok(()),
                Some(found) => Err(OpenError::UnsupportedVersion {
                    path: marker.clone(),
                    found,
                    supported: FORMAT_VERSION,
                }),
                None => Err(OpenError::NotALog {
                    path: marker.clone(),
                    reason: "the marker file does not name a wal format version".to_string(),
                }),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let entries = fs::read_dir(dir).map_err(|source| OpenError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            // A marker left half written by an interrupted first open does not count.
            let marker_temp = format!("{MARKER_FILE}.tmp");
            let mut foreign = entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name() != *marker_temp);
            if foreign.next().is_some() {
                return Err(OpenError::NotALog {
                    path: dir.to_path_buf(),
                    reason: format!("the directory is not empty and has no {MARKER_FILE} marker"),
                });
            }
            let temp = dir.join(format!("{MARKER_FILE}.tmp"));
            let mut file = File::create(&temp).map_err(|source| OpenError::Io {
                path: temp.clone(),
                source,
            })?;
            file.write_all(marker_text().as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
            fs::rename(&temp, &marker).map_err(io)?;
            segment::sync_dir(dir).map_err(|source| OpenError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
        Err(e) => Err(io(e)),
    }
}

/// Removes segments a crashed run left half made.
fn remove_temps(temps: &[PathBuf]) -> Result<(), OpenError> {
    for temp in temps {
        match fs::remove_file(temp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(OpenError::Io {
                    path: temp.clone(),
                    source: e,
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// The files of a log directory, by kind.
struct Listing {
    /// Segment ids, sorted.
    ids: Vec<SegmentId>,
    /// Segments a crashed run left half made.
    temps: Vec<PathBuf>,
    /// Collected segments kept to be recycled, sorted.
    frees: Vec<PathBuf>,
}

/// Lists the files of `dir` that belong to the log.
fn list_dir(dir: &Path) -> Result<Listing, OpenError> {
    let io = |source| OpenError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut ids = Vec::new();
    let mut temps = Vec::new();
    let mut frees = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = segment::parse_segment_name(name) {
            ids.push(id);
        } else if name.ends_with(segment::TEMP_SUFFIX) {
            temps.push(entry.path());
        } else if segment::parse_free_name(name).is_some() {
            frees.push(entry.path());
        }
    }
    ids.sort();
    frees.sort();
    Ok(Listing { ids, temps, frees })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> WalOptions {
        WalOptions {
            segment_size_bytes: format::SEGMENT_SIZE_MIN_BYTES,
            ..WalOptions::default()
        }
    }

    #[test]
    fn a_retired_segment_becomes_a_free_file_and_never_replaces_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = small();
        let mut free = Vec::new();

        let segment = Segment::create(dir.path(), SegmentId(5), options.segment_size_bytes)
            .expect("segment 5");
        retire(dir.path(), &options, &mut free, segment).expect("retired");
        let kept = segment::free_path(dir.path(), SegmentId(5));
        assert_eq!(free, vec![kept.clone()]);
        assert!(kept.exists() && !segment::segment_path(dir.path(), SegmentId(5)).exists());

        // The prepare thread took `5.free` off the list and is about to recycle it when a
        // new segment 5 is collected: that segment is deleted, not renamed over it.
        free.clear();
        let before = fs::read(&kept).expect("free file");
        let again = Segment::create(dir.path(), SegmentId(5), options.segment_size_bytes)
            .expect("segment 5 again");
        retire(dir.path(), &options, &mut free, again).expect("retired");
        assert!(free.is_empty(), "no second entry for one name");
        assert!(!segment::segment_path(dir.path(), SegmentId(5)).exists());
        assert_eq!(
            fs::read(&kept).expect("free file"),
            before,
            "the free file is untouched"
        );
    }

    #[test]
    fn a_finished_preparation_is_the_segment_the_next_rotation_moves_to() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = Wal::open(dir.path(), small()).expect("open");
        let mut index = 0;
        let mut append = |wal: &mut Wal| {
            index += 1;
            let mut batch = WriteBatch::new();
            batch.add_entry(GroupId(1), LogIndex(index), Term(1), &[7; 1000]);
            wal.append_durable(&batch).expect("append")
        };
        while wal.preparing.is_none() {
            append(&mut wal);
        }
        wal.finish_preparing().expect("prepared");
        assert!(wal.preparing.is_none());
        assert!(segment::segment_path(dir.path(), SegmentId(2)).exists());
        wal.finish_preparing().expect("nothing to wait for");
        while wal.stats().rotations == 0 {
            append(&mut wal);
        }
        assert_eq!(wal.active, SegmentId(2));
        assert_eq!(
            wal.stats().rotation_waits,
            0,
            "the prepared segment was used"
        );
        assert_eq!(
            wal.stats().segments_recycled,
            0,
            "nothing was collected to recycle"
        );
    }

    #[test]
    fn a_free_file_that_cannot_be_recycled_gives_way_to_a_fresh_segment() {
        let dir = tempfile::tempdir().expect("temp dir");
        let size = small().segment_size_bytes;
        let missing = segment::free_path(dir.path(), SegmentId(1));
        let made =
            make_segment(dir.path(), Some(&missing), SegmentId(2), size).expect("created instead");
        assert!(!made.reused);
        assert_eq!(made.id, SegmentId(2));
    }
}
