//! `walbench`: durable append throughput of the WAL against a raw baseline, measured in
//! the same run, and recovery speed.
//!
//! For each entry size (16 B, 256 B, 4 KiB) and batch size (4 KiB, 64 KiB, 1 MiB):
//! - `raw`: a plain loop of `write` + `fdatasync` of buffers as large as the log's batch
//!   bodies to a file whose bytes were written ahead (the best a single writer can do
//!   with one sync per batch);
//! - `wal`: the WAL with one sync per batch (submit, then wait until durable): the same
//!   work plus encoding, crc, indexing and segment management; building the batches is
//!   left out of its time;
//! - `wal-pipelined`: the WAL with submissions kept in flight (group commit: one sync
//!   covers every batch submitted while the previous sync ran), building included.
//!
//! A round runs the three in turn, in slices of `--slice-ms` (default 50 ms), until each
//! ran for `--seconds`: a slow spell of the shared disk falls on all three alike, and the
//! ratios are taken within a round. With `--rounds R` each column is the median over R
//! rounds, and the range of the sync-per-batch ratio is printed too.
//!
//! The log is measured in its steady state: before timing starts it is written until it
//! has collected enough segments that every later one is recycled (as the raw baseline's
//! file is written ahead). The last column counts segments still written from scratch
//! while timed.
//!
//! Then a log of `--recovery-mib` MiB is written and reopened; recovery's rate of
//! verified-and-indexed bytes is reported.
//!
//! Usage: `cargo run --release -p flotilla-bench --bin walbench -- [--seconds S]
//! [--rounds R] [--slice-ms MS] [--dir DIR] [--recovery-mib N] [--only-recovery] [--entry BYTES]
//! [--batch BYTES]`. Prints a markdown table.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flotilla_bench::BatchMaker;
use flotilla_wal::{Wal, WalOptions, WriteBatch};

struct Args {
    seconds: f64,
    rounds: usize,
    /// Length of one slice of a round, in milliseconds.
    slice_ms: f64,
    dir: Option<PathBuf>,
    recovery_mib: u64,
    only_recovery: bool,
    /// Only this entry size, when given.
    entry: Option<usize>,
    /// Only this batch size, when given.
    batch: Option<usize>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        seconds: 3.0,
        rounds: 1,
        slice_ms: 50.0,
        dir: None,
        recovery_mib: 1024,
        only_recovery: false,
        entry: None,
        batch: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => args.seconds = value()?.parse().context("--seconds")?,
            "--rounds" => args.rounds = value()?.parse().context("--rounds")?,
            "--slice-ms" => args.slice_ms = value()?.parse().context("--slice-ms")?,
            "--dir" => args.dir = Some(PathBuf::from(value()?)),
            "--recovery-mib" => args.recovery_mib = value()?.parse().context("--recovery-mib")?,
            "--only-recovery" => args.only_recovery = true,
            "--entry" => args.entry = Some(value()?.parse().context("--entry")?),
            "--batch" => args.batch = Some(value()?.parse().context("--batch")?),
            other => bail!("unknown flag {other} (see the module docs of walbench.rs)"),
        }
    }
    Ok(args)
}

/// One measured run.
#[derive(Default)]
struct Run {
    bytes: u64,
    entries: u64,
    syncs: u64,
    elapsed: Duration,
    /// Segments the log wrote from scratch (not recycled) while timed.
    segments_created: u64,
}

impl Run {
    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }

    fn entries_per_sec(&self) -> f64 {
        self.entries as f64 / self.elapsed.as_secs_f64()
    }
}

/// Writes `len` zero bytes to `path` and syncs: a file written ahead, as the WAL's segments are.
fn prewritten_file(path: &Path, len: u64) -> anyhow::Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64);
        file.write_all(&chunk[..n as usize])?;
        left -= n;
    }
    file.sync_all()?;
    Ok(file)
}

/// The raw baseline: `write` + `fdatasync` of one ready-made batch-sized buffer at a time,
/// into a file written ahead.
struct RawWriter {
    file: File,
    path: PathBuf,
    file_len: u64,
    storage: Vec<u8>,
    /// Where the page-aligned buffer starts in `storage`.
    shift: usize,
    batch_bytes: usize,
    /// Entries in one of the log's batches, credited to raw per write.
    batch_entries: usize,
    offset: u64,
}

impl RawWriter {
    /// A writer of buffers as large as the log's batches of `batch_bytes` of
    /// `entry_bytes` entries: a batch's body ends with the entry that reaches
    /// `batch_bytes`, so it is a little larger (3 % for 256 B entries in 4 KiB).
    fn new(dir: &Path, batch_bytes: usize, entry_bytes: usize) -> anyhow::Result<RawWriter> {
        let mut sample = WriteBatch::new();
        BatchMaker::new(64, entry_bytes).fill(&mut sample, batch_bytes);
        let batch_bytes = sample.body_bytes();
        let batch_entries = sample.entry_count();
        let file_len: u64 = 256 << 20;
        let path = dir.join("raw.bin");
        let file = prewritten_file(&path, file_len)?;
        // Page-aligned buffer contents: a Vec from the allocator is 16-byte aligned; copy
        // into an offset that keeps it congruent with the file offset, as the WAL does.
        let mut storage = vec![7u8; batch_bytes + 4096];
        let shift = storage.as_ptr().align_offset(4096);
        storage[shift..shift + batch_bytes].fill(7);
        Ok(RawWriter {
            file,
            path,
            file_len,
            storage,
            shift,
            batch_bytes,
            batch_entries,
            offset: 0,
        })
    }

    /// Writes and syncs batches for `slice`, adding to `run`.
    fn run_for(&mut self, slice: Duration, run: &mut Run) -> anyhow::Result<()> {
        let buf = &self.storage[self.shift..self.shift + self.batch_bytes];
        let started = Instant::now();
        while started.elapsed() < slice {
            if self.offset + self.batch_bytes as u64 > self.file_len {
                self.offset = 0;
            }
            self.file.write_all_at(buf, self.offset)?;
            self.file.sync_data()?;
            self.offset += self.batch_bytes as u64;
            run.bytes += self.batch_bytes as u64;
            run.entries += self.batch_entries as u64;
            run.syncs += 1;
        }
        run.elapsed += started.elapsed();
        Ok(())
    }

    fn remove(self) -> anyhow::Result<()> {
        drop(self.file);
        std::fs::remove_file(&self.path)?;
        Ok(())
    }
}

/// The WAL, driven one sync per batch or with submissions in flight.
struct WalWriter {
    wal: Wal,
    dir: PathBuf,
    maker: BatchMaker,
    batch: WriteBatch,
    batch_bytes: usize,
    compacted_at_rotation: u64,
}

impl WalWriter {
    fn new(dir: &Path, batch_bytes: usize, entry_bytes: usize) -> anyhow::Result<WalWriter> {
        let dir = dir.join("wal");
        let (wal, _) = Wal::open(&dir, WalOptions::default())?;
        let mut writer = WalWriter {
            wal,
            dir,
            maker: BatchMaker::new(64, entry_bytes),
            batch: WriteBatch::new(),
            batch_bytes,
            compacted_at_rotation: 0,
        };
        writer.warm_up()?;
        Ok(writer)
    }

    /// Appends, untimed, until the log has collected enough segments that every later one
    /// is recycled rather than written from scratch: the steady state of a log that has
    /// run for a while, as the raw baseline's file is written ahead.
    fn warm_up(&mut self) -> anyhow::Result<()> {
        let target = WalOptions::default().recycle_segments_max as u64 + 1;
        let mut ignored = Run::default();
        while self.wal.stats().rotations < target {
            self.run_for(Duration::from_millis(100), true, &mut ignored)?;
        }
        Ok(())
    }

    /// Appends batches for `slice`, adding to `run`.
    ///
    /// With one sync per batch, building a batch (the caller's work; raw's buffer is
    /// ready-made) is timed apart and left out: nothing is in flight meanwhile. Pipelined,
    /// it counts, since the disk works on earlier batches meanwhile. A slice ends once
    /// everything it submitted is durable and the segment the log prepares in the
    /// background (if any) is ready, so that no I/O of the log spills into raw's slice.
    fn run_for(&mut self, slice: Duration, pipelined: bool, run: &mut Run) -> anyhow::Result<()> {
        let before = self.wal.stats();
        let started = Instant::now();
        let mut building = Duration::ZERO;
        while started.elapsed() - building < slice {
            let build_started = Instant::now();
            self.maker.fill(&mut self.batch, self.batch_bytes);
            if pipelined {
                self.wal.submit(&self.batch)?;
                self.wal.poll()?;
            } else {
                building += build_started.elapsed();
                self.wal.append_durable(&self.batch)?;
            }
            run.bytes += self.batch.body_bytes() as u64;
            run.entries += self.batch.entry_count() as u64;
            // Keep the log from growing without end: once per new segment, compact what
            // was written and collect the segments it frees (as Raft snapshots would).
            let rotations = self.wal.stats().rotations;
            if rotations > self.compacted_at_rotation {
                self.compacted_at_rotation = rotations;
                compact_all(&mut self.wal)?;
            }
        }
        self.wal.wait_durable(self.wal.submitted_lsn())?;
        self.wal.finish_preparing()?;
        run.elapsed += started.elapsed() - building;
        let after = self.wal.stats();
        run.syncs += after.syncs - before.syncs;
        run.segments_created += (after.rotations - before.rotations)
            - (after.segments_recycled - before.segments_recycled);
        Ok(())
    }

    fn remove(self) -> anyhow::Result<()> {
        drop(self.wal);
        std::fs::remove_dir_all(&self.dir)?;
        Ok(())
    }
}

/// One round: raw, wal and pipelined alternate in slices of `slice` until each ran for
/// `seconds`, so that a slow spell of the shared disk falls on all three alike.
fn round(
    dir: &Path,
    batch_bytes: usize,
    entry_bytes: usize,
    seconds: f64,
    slice: Duration,
) -> anyhow::Result<[Run; 3]> {
    let mut raw_writer = RawWriter::new(dir, batch_bytes, entry_bytes)?;
    let mut wal_writer = WalWriter::new(dir, batch_bytes, entry_bytes)?;
    let mut runs: [Run; 3] = Default::default();
    let target = Duration::from_secs_f64(seconds);
    while runs.iter().any(|run| run.elapsed < target) {
        raw_writer.run_for(slice, &mut runs[0])?;
        wal_writer.run_for(slice, false, &mut runs[1])?;
        wal_writer.run_for(slice, true, &mut runs[2])?;
    }
    raw_writer.remove()?;
    wal_writer.remove()?;
    Ok(runs)
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

fn compact_all(wal: &mut Wal) -> anyhow::Result<()> {
    let mut batch = WriteBatch::new();
    for (group, state) in wal.groups() {
        if state.last_index > state.compacted_through {
            batch.compact(group, state.last_index);
        }
    }
    wal.submit(&batch)?;
    wal.collect_garbage()?;
    Ok(())
}

/// Writes `mib` MiB of 256 B entries in 1 MiB batches, reopens, and reports recovery.
fn recovery(dir: &Path, mib: u64) -> anyhow::Result<()> {
    let log_dir = dir.join("recovery");
    let mut maker = BatchMaker::new(64, 256);
    let mut batch = WriteBatch::new();
    {
        let (mut wal, _) = Wal::open(&log_dir, WalOptions::default())?;
        for _ in 0..mib {
            maker.fill(&mut batch, 1 << 20);
            wal.submit(&batch)?;
            wal.poll()?;
        }
        wal.close()?;
    }
    // Twice: the first open may read from disk, the second measures crc + index work
    // over bytes in the page cache (what the target is stated in).
    for attempt in ["first open", "second open"] {
        let started = Instant::now();
        let (wal, report) = Wal::open(&log_dir, WalOptions::default())?;
        let total = started.elapsed();
        let gb_per_sec = report.bytes as f64 / report.elapsed.as_secs_f64() / 1e9;
        println!(
            "| recovery ({attempt}) | {:.0} MiB, {} records, {} entries, {} segments | scan {:.3} s = {:.2} GB/s | open total {:.3} s |",
            report.bytes as f64 / (1 << 20) as f64,
            report.records,
            report.entries,
            report.segments,
            report.elapsed.as_secs_f64(),
            gb_per_sec,
            total.as_secs_f64()
        );
        drop(wal);
    }
    std::fs::remove_dir_all(&log_dir)?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let temp;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("walbench")
                .tempdir_in(".")?;
            temp.path().to_path_buf()
        }
    };
    let slice = Duration::from_secs_f64(args.slice_ms / 1e3);
    if !args.only_recovery {
        println!(
            "| entry | batch | raw MB/s | wal MB/s | wal/raw | wal/raw range | wal entries/s | pipelined MB/s | pipelined/raw | pipelined entries/s | batches per sync | segments created |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        for entry_bytes in [16usize, 256, 4096] {
            for batch_bytes in [4usize << 10, 64 << 10, 1 << 20] {
                if args.entry.is_some_and(|e| e != entry_bytes)
                    || args.batch.is_some_and(|b| b != batch_bytes)
                {
                    continue;
                }
                let mut rounds = Vec::new();
                let mut segments_created = 0;
                for _ in 0..args.rounds.max(1) {
                    let [raw, wal_run, piped] =
                        round(&dir, batch_bytes, entry_bytes, args.seconds, slice)?;
                    segments_created += wal_run.segments_created + piped.segments_created;
                    let batches = piped.bytes as f64 / batch_bytes as f64;
                    rounds.push([
                        raw.mb_per_sec(),
                        wal_run.mb_per_sec(),
                        wal_run.mb_per_sec() / raw.mb_per_sec(),
                        wal_run.entries_per_sec(),
                        piped.mb_per_sec(),
                        piped.mb_per_sec() / raw.mb_per_sec(),
                        piped.entries_per_sec(),
                        batches / piped.syncs.max(1) as f64,
                    ]);
                }
                let column = |k: usize| median(rounds.iter().map(|round| round[k]).collect());
                let ratios = rounds.iter().map(|round| round[2]);
                let lowest = ratios.clone().fold(f64::INFINITY, f64::min);
                let highest = ratios.fold(0.0, f64::max);
                println!(
                    "| {entry_bytes} B | {} KiB | {:.1} | {:.1} | {:.2} | {lowest:.2}–{highest:.2} | {:.0} | {:.1} | {:.2} | {:.0} | {:.2} | {segments_created} |",
                    batch_bytes >> 10,
                    column(0),
                    column(1),
                    column(2),
                    column(3),
                    column(4),
                    column(5),
                    column(6),
                    column(7),
                );
            }
        }
    }
    if args.recovery_mib > 0 {
        recovery(&dir, args.recovery_mib)?;
    }
    Ok(())
}
