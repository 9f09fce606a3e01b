//! A write that fails: the log stops, and its index keeps naming only what the file holds.
//!
//! The failure is real: the child process (this test binary run again with
//! `WAL_WRITE_FAILURE_CHILD` set) lowers its file-size limit (`RLIMIT_FSIZE`) below the end
//! of the next record, so the kernel refuses the write with `EFBIG`. The limit is
//! process-wide, hence the child.

#![allow(
    clippy::unwrap_used,
    reason = "integration tests fail by panicking, helpers included"
)]

use std::path::Path;
use std::process::Command;

use flotilla_wal::{AppendError, GroupId, LogIndex, ReadError, Term, Wal, WalOptions, WriteBatch};

const CHILD_ENV: &str = "WAL_WRITE_FAILURE_CHILD";

fn options() -> WalOptions {
    WalOptions {
        segment_size_bytes: 1 << 20,
        ..WalOptions::default()
    }
}

/// A batch of entries `from..from + count` for groups 1 and 2 and a hard state for 3.
fn batch(from: u64, count: u64) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for group in 1..=2 {
        for index in from..from + count {
            batch.add_entry(
                GroupId(group),
                LogIndex(index),
                Term(1),
                &[group as u8; 100],
            );
        }
    }
    batch.set_hard_state(
        GroupId(3),
        flotilla_wal::HardState {
            term: Term(from),
            vote: 1,
            commit: LogIndex(0),
        },
    );
    batch
}

fn child(dir: &Path) {
    let (mut wal, _) = Wal::open(dir, options()).unwrap();
    wal.append_durable(&batch(1, 10)).unwrap();
    let groups = |wal: &Wal| {
        let mut groups = wal.groups();
        groups.sort_by_key(|(group, _)| *group);
        groups
    };
    let before = groups(&wal);
    // The next record starts after the segment header and the first record; the limit
    // lets its first 100 bytes through, then refuses the rest.
    let limit = flotilla_wal::format::SEGMENT_HEADER_BYTES + wal.stats().bytes + 100;
    // Ignoring SIGXFSZ makes a refused write return EFBIG instead of ending the process.
    // SAFETY: installs the predefined "ignore" disposition; no handler code runs.
    let previous = unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    assert_ne!(previous, libc::SIG_ERR);
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `rlimit` is a valid, initialized struct that outlives the call.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) }, 0);
    // The refused batch also starts a group the log does not hold yet.
    let mut refused = batch(11, 10);
    refused.add_entry(GroupId(4), LogIndex(1), Term(1), b"new group");
    let failed = wal.append_durable(&refused);
    assert!(
        matches!(failed, Err(AppendError::Io(_))),
        "the write past the limit fails: {failed:?}"
    );
    assert_eq!(groups(&wal), before, "the refused record left the index");
    assert_eq!(wal.group(GroupId(4)), None);
    for group in 1..=2 {
        let entries = wal
            .entries(GroupId(group), LogIndex(1), LogIndex(11))
            .unwrap();
        assert_eq!(entries.len(), 10);
        assert!(entries.iter().all(|e| e.payload == [group as u8; 100]));
        assert!(matches!(
            wal.term(GroupId(group), LogIndex(11)),
            Err(ReadError::Unavailable { .. })
        ));
    }
    assert!(matches!(
        wal.append_durable(&batch(11, 1)),
        Err(AppendError::Stopped(_))
    ));
    println!("child checks passed");
}

#[test]
fn write_failure_child_process() {
    // Only does something when run as the child of the test below.
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir));
    }
}

#[test]
fn a_failed_write_stops_the_log_and_leaves_its_index_as_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "write_failure_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("child checks passed"),
        "child failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // Reopened, the log holds exactly the first batch.
    let (wal, _) = Wal::open(dir.path(), options()).unwrap();
    assert_eq!(wal.group(GroupId(1)).unwrap().last_index, LogIndex(10));
    assert_eq!(
        wal.group(GroupId(3)).unwrap().hard_state.unwrap().term,
        Term(1)
    );
}
