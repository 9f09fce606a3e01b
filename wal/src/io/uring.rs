//! The io_uring writer: record writes and group-commit syncs in flight while the caller
//! keeps working.
//!
//! The writer owns one ring and the buffers lent to it. A buffer belongs to the kernel
//! from the moment its write is pushed until its completion is reaped; only then does it
//! return to the pool.
//!
//! Syncs are `fdatasync` operations tagged with the lsn they make durable. A group-commit
//! sync is pushed by [`UringWriter::poll`] only when no sync is in flight and every write
//! submitted so far has completed, so it covers exactly the records up to its tag; writes
//! submitted while it runs proceed at once (no `IO_DRAIN`, which would defer them to the
//! kernel's worker threads). The sync that ends a segment is flagged `IO_DRAIN`: it starts
//! after every earlier operation and holds back the writes to the next segment until it
//! completed. Either way at most one group-commit sync is in flight and a drained one
//! waits for it, so sync completions arrive in submission order and durability is a
//! prefix of lsns.
//!
//! A caller that blocks in [`UringWriter::wait_durable`] syncs on its own thread once
//! nothing is in flight: handing the sync to a worker would only add two wakeups.
//!
//! **Boundary:** the writer knows files only as descriptors and offsets; which segment a
//! record goes to is the log's business. All `unsafe` of the crate's write path is here.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

use hdrhistogram::Histogram;
use io_uring::{IoUring, opcode, squeue, types};

use crate::ids::{Lsn, SegmentId};
use crate::io::aligned::AlignedBuf;
use crate::usize_of;

/// Ring size (submission entries).
const RING_ENTRIES: u32 = 256;
/// Most record writes in flight at once; `write` waits for a completion beyond this.
pub(crate) const WRITES_INFLIGHT_MAX: usize = 64;
/// Free buffers kept for reuse.
const POOL_BUFFERS_MAX: usize = 16;
/// Parts of a record written by [`UringWriter::write_blocking`]: header, body, padding.
const RECORD_PARTS_MAX: usize = 3;
/// Marks a sync in `user_data`; writes carry their bare lsn.
const SYNC_BIT: u64 = 1 << 63;

const _: () = assert!(WRITES_INFLIGHT_MAX + 8 < RING_ENTRIES as usize);

struct InflightWrite {
    lsn: Lsn,
    segment: SegmentId,
    file_offset: u64,
    buf: AlignedBuf,
    len: usize,
    done: bool,
}

/// Record writes and syncs through one io_uring.
pub(crate) struct UringWriter {
    ring: IoUring,
    writes: VecDeque<InflightWrite>,
    /// Syncs in flight: the lsn each covers and when it was pushed.
    syncs: VecDeque<(Lsn, Instant)>,
    pool: Vec<AlignedBuf>,
    submitted: Lsn,
    written: Lsn,
    durable: Lsn,
    /// Descriptors written to since the last sync pushed for them.
    unsynced: Vec<RawFd>,
    syncs_completed: u64,
    /// Microseconds from pushing a sync to reaping its completion.
    sync_latency: Histogram<u64>,
    failure: Option<String>,
}

impl UringWriter {
    /// A writer whose log is durable through `durable` (everything recovered).
    pub(crate) fn new(durable: Lsn) -> io::Result<UringWriter> {
        let ring = IoUring::new(RING_ENTRIES)?;
        Ok(UringWriter {
            ring,
            writes: VecDeque::with_capacity(WRITES_INFLIGHT_MAX),
            syncs: VecDeque::new(),
            pool: Vec::new(),
            submitted: durable,
            written: durable,
            durable,
            unsynced: Vec::new(),
            syncs_completed: 0,
            sync_latency: Histogram::new(3).expect("3 significant digits are valid"),
            failure: None,
        })
    }

    pub(crate) fn durable(&self) -> Lsn {
        self.durable
    }

    pub(crate) fn submitted(&self) -> Lsn {
        self.submitted
    }

    pub(crate) fn syncs_completed(&self) -> u64 {
        self.syncs_completed
    }

    pub(crate) fn sync_latency(&self) -> &Histogram<u64> {
        &self.sync_latency
    }

    fn record_sync(&mut self, started: Instant) {
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.sync_latency.saturating_record(micros);
    }

    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    pub(crate) fn has_room(&self) -> bool {
        self.writes.len() < WRITES_INFLIGHT_MAX
    }

    /// Writes record `lsn` of `len` bytes at `file_offset` of `fd`; `fill` encodes it into
    /// the buffer. The buffer's address is congruent to the file offset modulo a page so
    /// that the kernel's copy into the page cache runs at full speed. A sync follows
    /// according to the group-commit policy.
    pub(crate) fn write(
        &mut self,
        fd: RawFd,
        segment: SegmentId,
        file_offset: u64,
        lsn: Lsn,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> io::Result<()> {
        assert_eq!(
            lsn,
            self.submitted.next(),
            "records are written in lsn order"
        );
        while !self.has_room() {
            self.reap(true)?;
        }
        let page_offset = usize_of(file_offset % AlignedBuf::ALIGN as u64);
        let mut buf = self.take_buffer(page_offset + len);
        let record = &mut buf.as_mut_slice()[page_offset..page_offset + len];
        fill(record);
        let ptr = record.as_ptr();
        let len_u32 = u32::try_from(len).expect("records are smaller than a segment");
        let entry = opcode::Write::new(types::Fd(fd), ptr, len_u32)
            .offset(file_offset)
            .build()
            .user_data(lsn.0);
        // The buffer moves into the deque; its heap allocation (which `ptr` points into)
        // stays where it is until the completion is reaped.
        self.writes.push_back(InflightWrite {
            lsn,
            segment,
            file_offset,
            buf,
            len: page_offset + len,
            done: false,
        });
        if let Err(e) = self.push(&entry) {
            // Not queued: the kernel never saw the buffer.
            self.writes.pop_back();
            return Err(self.fail(e, "write submission"));
        }
        self.submit()
            .map_err(|e| self.fail(e, "write submission"))?;
        self.submitted = lsn;
        if !self.unsynced.contains(&fd) {
            self.unsynced.push(fd);
        }
        Ok(())
    }

    /// Whether nothing is in flight (no write, no sync).
    pub(crate) fn is_idle(&self) -> bool {
        self.writes.is_empty() && self.syncs.is_empty()
    }

    /// Like [`UringWriter::write`], but on this thread with `pwritev` of the record's
    /// `parts` (header, body, padding) as they lie, for a caller that is about to block
    /// until the record is durable and has nothing in flight: handing the write to the ring
    /// would only add a copy, a submission and a completion round (and, when the kernel
    /// punts a buffered write to its workers, two thread wakeups) to the same work.
    pub(crate) fn write_blocking(
        &mut self,
        fd: RawFd,
        file_offset: u64,
        lsn: Lsn,
        parts: &[&[u8]],
    ) -> io::Result<()> {
        assert_eq!(
            lsn,
            self.submitted.next(),
            "records are written in lsn order"
        );
        assert!(
            self.is_idle(),
            "a blocking write with writes or syncs in flight"
        );
        if let Some(failure) = &self.failure {
            return Err(io::Error::other(failure.clone()));
        }
        // The parts go straight from the caller's memory: nothing is in flight, and
        // pwritev keeps no reference to them after it returns, so no copy is needed.
        assert!(
            parts.len() <= RECORD_PARTS_MAX,
            "a record has at most three parts"
        );
        let len: usize = parts.iter().map(|part| part.len()).sum();
        let mut done = 0;
        while done < len {
            // The parts not yet written, the first one cut where the last write stopped.
            let mut iovecs = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; RECORD_PARTS_MAX];
            let mut count = 0;
            let mut skip = done;
            for part in parts {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                let rest = &part[skip..];
                skip = 0;
                iovecs[count] = libc::iovec {
                    iov_base: rest.as_ptr().cast_mut().cast(),
                    iov_len: rest.len(),
                };
                count += 1;
            }
            let offset =
                i64::try_from(file_offset + done as u64).expect("segment offsets fit in off_t");
            let count = i32::try_from(count).expect("at most three parts");
            // pwritev only reads the memory the iovecs name, and keeps no reference to it
            // after it returns.
            // SAFETY: the first `count` iovecs point into live, initialized `parts`.
            let written = unsafe { libc::pwritev(fd, iovecs.as_ptr(), count, offset) };
            match usize::try_from(written) {
                Ok(0) => {
                    let e = io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("short write of record {lsn}"),
                    );
                    return Err(self.fail(e, "write"));
                }
                Ok(n) => done += n,
                Err(_) => {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(self.fail(e, "write"));
                }
            }
        }
        self.submitted = lsn;
        self.written = lsn;
        if !self.unsynced.contains(&fd) {
            self.unsynced.push(fd);
        }
        Ok(())
    }

    /// Pushes a drained sync of `fd` covering everything submitted so far, whatever is in
    /// flight. The log calls this before it moves to a new segment, so that a segment is
    /// durable before anything is written to the next one.
    pub(crate) fn sync_segment_end(&mut self, fd: RawFd) -> io::Result<()> {
        self.push_sync(fd, squeue::Flags::IO_DRAIN)
    }

    fn push_sync(&mut self, fd: RawFd, flags: squeue::Flags) -> io::Result<()> {
        let entry = opcode::Fsync::new(types::Fd(fd))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .flags(flags)
            .user_data(SYNC_BIT | self.submitted.0);
        self.push(&entry)
            .map_err(|e| self.fail(e, "sync submission"))?;
        self.syncs.push_back((self.submitted, Instant::now()));
        self.submit().map_err(|e| self.fail(e, "sync submission"))?;
        self.unsynced.retain(|unsynced| *unsynced != fd);
        Ok(())
    }

    /// Queues an entry; an error means it was not queued.
    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        // Every buffer a pushed entry points to is owned by `self.writes` until its
        // completion is reaped in `complete`, and `Drop` waits for all completions before
        // the buffers are freed; syncs point to no memory.
        // SAFETY: the entry's buffer outlives the kernel's use of it (above).
        let pushed = unsafe { self.ring.submission().push(entry) };
        if pushed.is_err() {
            // The queue is full only if submissions were not flushed; flush and retry once.
            self.submit()?;
            // SAFETY: as above.
            let retried = unsafe { self.ring.submission().push(entry) };
            retried.map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        Ok(())
    }

    /// Hands queued entries to the kernel.
    fn submit(&mut self) -> io::Result<()> {
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn take_buffer(&mut self, len: usize) -> AlignedBuf {
        match self.pool.iter().position(|buf| buf.capacity() >= len) {
            Some(slot) => self.pool.swap_remove(slot),
            None => AlignedBuf::with_capacity(len),
        }
    }

    /// Reaps completions without blocking and, when no sync is in flight and every write
    /// completed, pushes one sync covering every record written since the last (group
    /// commit).
    pub(crate) fn poll(&mut self) -> io::Result<()> {
        self.reap(false)?;
        if self.syncs.is_empty() && self.writes.is_empty() && self.failure.is_none() {
            for fd in std::mem::take(&mut self.unsynced) {
                // Not drained: every write it must cover already completed.
                self.push_sync(fd, squeue::Flags::empty())?;
            }
        }
        Ok(())
    }

    /// Blocks until `target` is durable. A caller that blocks anyway gains nothing from
    /// handing the sync to the kernel's workers (two thread wakeups per sync), so once
    /// nothing is in flight the remaining records are synced on this thread.
    pub(crate) fn wait_durable(&mut self, target: Lsn) -> io::Result<()> {
        while self.durable < target {
            if let Some(failure) = &self.failure {
                return Err(io::Error::other(failure.clone()));
            }
            if !self.writes.is_empty() || !self.syncs.is_empty() {
                self.reap(true)?;
                continue;
            }
            // Every write completed, and every record not covered by a completed sync was
            // written to one of `unsynced`.
            let started = Instant::now();
            for fd in std::mem::take(&mut self.unsynced) {
                // The log keeps every segment file open while the writer lives (the writer is
                // dropped first); fdatasync touches no memory.
                // SAFETY: `fd` is an open segment file descriptor (above).
                let synced = unsafe { libc::fdatasync(fd) };
                if synced != 0 {
                    return Err(self.fail(io::Error::last_os_error(), "fdatasync"));
                }
            }
            self.durable = self.submitted;
            self.syncs_completed += 1;
            self.record_sync(started);
        }
        Ok(())
    }

    /// Reaps completions (waiting for at least one when `wait` and something is in
    /// flight) and advances the written and durable positions.
    fn reap(&mut self, wait: bool) -> io::Result<()> {
        if wait && (!self.writes.is_empty() || !self.syncs.is_empty()) {
            loop {
                match self.ring.submit_and_wait(1) {
                    Ok(_) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        let completions: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|cqe| (cqe.user_data(), cqe.result()))
            .collect();
        let mut first_error = None;
        for (user_data, result) in completions {
            if let Err(e) = self.complete(user_data, result) {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        Ok(())
    }

    fn complete(&mut self, user_data: u64, result: i32) -> io::Result<()> {
        // After a failure nothing more counts as written or durable: a drained sync that
        // follows a failed write still succeeds, and a second sync after a failed one may
        // too (the kernel reports a writeback error once).
        let frozen = self.failure.is_some();
        if user_data & SYNC_BIT != 0 {
            let tag = Lsn(user_data & !SYNC_BIT);
            let expected = self.syncs.pop_front();
            assert_eq!(
                expected.map(|(lsn, _)| lsn),
                Some(tag),
                "drained syncs complete in submission order"
            );
            if result < 0 {
                return Err(self.fail(io::Error::from_raw_os_error(-result), "fdatasync"));
            }
            if frozen {
                return Ok(());
            }
            // A group-commit sync is pushed after every earlier write completed, a
            // segment-end sync is drained: either way its writes completed first.
            assert!(
                self.written >= tag,
                "a drained sync completed before its writes"
            );
            self.durable = self.durable.max(tag);
            self.syncs_completed += 1;
            if let Some((_, started)) = expected {
                self.record_sync(started);
            }
            return Ok(());
        }
        let lsn = Lsn(user_data);
        let write = self
            .writes
            .iter_mut()
            .find(|w| w.lsn == lsn && !w.done)
            .expect("a completion names a write in flight");
        write.done = true;
        let want = write.len - usize_of(write.file_offset % AlignedBuf::ALIGN as u64);
        let outcome = if result < 0 {
            Err(io::Error::from_raw_os_error(-result))
        } else if result as usize != want {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write of record {lsn}: {result} of {want} bytes"),
            ))
        } else {
            Ok(())
        };
        let outcome = outcome.map_err(|e| self.fail(e, "write"));
        while self.writes.front().is_some_and(|w| w.done) {
            let done = self.writes.pop_front().expect("front exists");
            if self.failure.is_none() {
                self.written = done.lsn;
            }
            if self.pool.len() < POOL_BUFFERS_MAX {
                self.pool.push(done.buf);
            }
        }
        outcome
    }

    fn fail(&mut self, error: io::Error, what: &str) -> io::Error {
        let message = format!("{what} failed: {error}");
        self.failure.get_or_insert(message);
        error
    }

    /// The bytes of a record still owned by the writer that cover `[offset, offset + len)`
    /// of `segment`, if any. Entries are read from here until their write completed and
    /// the record left the in-flight list.
    pub(crate) fn inflight_bytes(
        &self,
        segment: SegmentId,
        offset: u64,
        len: usize,
    ) -> Option<&[u8]> {
        self.writes.iter().find_map(|w| {
            let start = w.file_offset;
            let end = w.file_offset - w.file_offset % AlignedBuf::ALIGN as u64 + w.len as u64;
            if w.segment != segment || offset < start || offset + len as u64 > end {
                return None;
            }
            let in_buf =
                usize_of(offset - (w.file_offset - w.file_offset % AlignedBuf::ALIGN as u64));
            Some(&w.buf.as_slice()[in_buf..in_buf + len])
        })
    }

    /// Waits until everything submitted is durable and nothing is in flight.
    pub(crate) fn drain(&mut self) -> io::Result<()> {
        self.wait_durable(self.submitted)?;
        while !self.writes.is_empty() || !self.syncs.is_empty() {
            self.reap(true)?;
        }
        Ok(())
    }
}

impl Drop for UringWriter {
    fn drop(&mut self) {
        // The kernel may still write from the buffers: they must outlive every completion.
        while !self.writes.is_empty() || !self.syncs.is_empty() {
            let waited = self.ring.submit_and_wait(1);
            if let Err(e) = waited {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // Without a way to learn that the kernel is done, leak the buffers rather
                // than free memory it may still read.
                std::mem::forget(std::mem::take(&mut self.writes));
                return;
            }
            let completions: Vec<(u64, i32)> = self
                .ring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result()))
                .collect();
            for (user_data, result) in completions {
                let _ignored_on_drop = self.complete(user_data, result);
            }
        }
    }
}
