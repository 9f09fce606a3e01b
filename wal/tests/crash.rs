//! Process crash: a child process appends and syncs, reporting each durable position on
//! stdout; the parent kills it with SIGKILL at a random moment, reopens the log, and checks
//! that everything reported durable is there, byte for byte. Repeated on the same log, so
//! each child also recovers what the previous one left. The child also compacts and
//! collects as it goes, so kills land while segments are retired and recycled, and
//! recovery reads recycled segments with stale records behind the live ones.
//!
//! The child is this test binary run again with `WAL_CRASH_CHILD` set (see
//! `crash_child_process`), so no helper binary is needed.

#![allow(
    clippy::unwrap_used,
    reason = "integration tests fail by panicking, helpers included"
)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Rng, payload};
use flotilla_wal::{GroupId, LogIndex, Lsn, Term, Wal, WalOptions, WriteBatch};

const GROUPS: u64 = 4;
const CHILD_ENV: &str = "WAL_CRASH_CHILD";

fn options() -> WalOptions {
    WalOptions {
        segment_size_bytes: 64 << 10,
        ..WalOptions::default()
    }
}

fn entry_len(group: GroupId, index: LogIndex) -> usize {
    ((group.0 * 31 + index.0 * 17) % 200) as usize
}

/// Entries each group keeps behind its last index when the child compacts.
const KEEP_ENTRIES: u64 = 200;

/// The child: append forever, printing `durable <lsn> <last index of each group>` whenever
/// the durable position moves, and `recycled <n>` when it moved to a recycled segment.
fn child(dir: &Path) {
    let (mut wal, _) = Wal::open(dir, options()).unwrap();
    let mut last: Vec<u64> = (1..=GROUPS)
        .map(|g| wal.group(GroupId(g)).map_or(0, |s| s.last_index.0))
        .collect();
    // Per submitted lsn, the last indices it makes durable.
    let mut pending: std::collections::VecDeque<(Lsn, Vec<u64>)> = Default::default();
    let mut reported = wal.durable_lsn();
    let mut rng = Rng::new(std::process::id() as u64);
    let mut recycled = 0;
    for round in 0u64.. {
        if round % 50 == 49 {
            let mut compaction = WriteBatch::new();
            for (slot, last) in last.iter().enumerate() {
                if *last > KEEP_ENTRIES {
                    compaction.compact(GroupId(slot as u64 + 1), LogIndex(last - KEEP_ENTRIES));
                }
            }
            wal.submit(&compaction).unwrap();
            wal.collect_garbage().unwrap();
            if wal.stats().segments_recycled > recycled {
                recycled = wal.stats().segments_recycled;
                println!("recycled {recycled}");
            }
        }
        let mut batch = WriteBatch::new();
        for _ in 0..rng.range(1, 20) {
            let slot = rng.range(0, GROUPS) as usize;
            let group = GroupId(slot as u64 + 1);
            last[slot] += 1;
            let index = LogIndex(last[slot]);
            batch.add_entry(
                group,
                index,
                Term(1),
                &payload(group, index, entry_len(group, index)),
            );
        }
        let lsn = wal.submit(&batch).unwrap();
        pending.push_back((lsn, last.clone()));
        let durable = wal.poll().unwrap();
        let mut newest = None;
        while pending.front().is_some_and(|(l, _)| *l <= durable) {
            newest = pending.pop_front();
        }
        if let Some((lsn, lasts)) = newest
            && lsn > reported
        {
            let fields: Vec<String> = lasts.iter().map(u64::to_string).collect();
            println!("durable {} {}", lsn.0, fields.join(" "));
            reported = lsn;
        }
    }
}

#[test]
fn crash_child_process() {
    // Only does something when run as the child of the test below.
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir));
    }
}

#[test]
fn sigkill_never_loses_a_reported_durable_entry() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng::new(42);
    let mut total_reports = 0;
    let mut recycled = 0;
    for round in 0..8 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let kill_after = Duration::from_millis(rng.range(50, 400));
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u64>>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("recycled ") {
                    if tx.send(vec![u64::MAX, rest.parse().unwrap()]).is_err() {
                        break;
                    }
                } else if let Some(rest) = line.strip_prefix("durable ") {
                    let fields: Vec<u64> = rest.split(' ').map(|f| f.parse().unwrap()).collect();
                    if tx.send(fields).is_err() {
                        break;
                    }
                }
            }
        });
        let started = Instant::now();
        let mut last_report: Option<Vec<u64>> = None;
        // Kill at a random moment after the child made some progress (bounded wait).
        while started.elapsed() < kill_after
            || (last_report.is_none() && started.elapsed() < Duration::from_secs(20))
        {
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok(fields) if fields[0] == u64::MAX => recycled += fields[1],
                Ok(fields) => {
                    last_report = Some(fields);
                    total_reports += 1;
                }
                Err(_) => {}
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        while let Ok(fields) = rx.try_recv() {
            if fields[0] == u64::MAX {
                recycled += fields[1];
            } else {
                last_report = Some(fields);
                total_reports += 1;
            }
        }
        reader.join().unwrap();
        let report =
            last_report.unwrap_or_else(|| panic!("round {round}: the child reported nothing"));

        let (wal, recovery) = Wal::open(dir.path(), options()).unwrap();
        assert!(
            recovery.last_lsn >= Lsn(report[0]),
            "round {round}: lost lsns: {recovery:?} < {}",
            report[0]
        );
        for (slot, last) in report[1..].iter().enumerate() {
            let group = GroupId(slot as u64 + 1);
            if *last == 0 {
                continue;
            }
            let state = wal
                .group(group)
                .unwrap_or_else(|| panic!("round {round}: group {group} lost"));
            assert!(
                state.last_index.0 >= *last,
                "round {round}: group {group} has {} < {last}",
                state.last_index
            );
            // What the child compacted may reach past its last report (the compaction
            // can be durable before the child learns so); the rest must read back.
            let first = state.compacted_through.0 + 1;
            if first > *last {
                continue;
            }
            wal.read_entries(
                group,
                LogIndex(first),
                LogIndex(last + 1),
                |index, _, bytes| {
                    assert_eq!(
                        bytes,
                        payload(group, index, entry_len(group, index)),
                        "round {round}"
                    );
                },
            )
            .unwrap();
        }
    }
    assert!(total_reports > 8);
    assert!(recycled > 0, "no child ever moved to a recycled segment");
}
