//! Memory figures: the process's resident set (the three nodes share one process), and the
//! cost of an idle group.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flotilla::Engine;
use flotilla::runtime::{GroupId, KvMap};

use crate::NODES;

/// A field of /proc/self/status in bytes (`VmRSS`: resident now; `VmHWM`: peak).
fn status_bytes(field: &str) -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .with_context(|| format!("no {field} in /proc/self/status"))?;
    let kib: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("parsing {line:?}"))?;
    Ok(kib * 1024)
}

/// Resident bytes now.
pub(crate) fn rss_bytes() -> anyhow::Result<u64> {
    status_bytes("VmRSS:")
}

/// The peak resident bytes so far.
pub(crate) fn peak_rss_bytes() -> anyhow::Result<u64> {
    status_bytes("VmHWM:")
}

/// Resident bytes after asking the allocator to return its free memory to the system, so
/// that what elections and messages allocated and freed is not counted.
fn trimmed_rss_bytes() -> anyhow::Result<u64> {
    // SAFETY: malloc_trim only releases free heap memory; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
    rss_bytes()
}

/// What creating idle groups cost.
pub(crate) struct IdleCost {
    /// Resident bytes before the groups (after trimming).
    pub(crate) before: u64,
    /// Resident bytes once every replica is quiesced, as is.
    pub(crate) after: u64,
    /// The same, after trimming the allocator's free memory.
    pub(crate) after_trimmed: u64,
    /// Replicas created (groups × 3 nodes).
    pub(crate) replicas: u64,
}

/// Creates `groups` groups on every node, waits until every one has a leader and every
/// replica is quiesced, and measures the resident memory before and after.
pub(crate) fn idle_groups(engines: &[Engine<KvMap>], groups: u64) -> anyhow::Result<IdleCost> {
    // Let the allocator settle what starting the cluster took.
    std::thread::sleep(Duration::from_millis(500));
    let before = trimmed_rss_bytes()?;
    for engine in engines {
        for group in 0..groups {
            engine.create_group(GroupId(group), &NODES, KvMap::default())?;
        }
    }
    let started = Instant::now();
    loop {
        let totals: Vec<_> = engines.iter().map(|e| e.metrics().totals()).collect();
        let leaders: u64 = totals.iter().map(|t| t.leaders).sum();
        let quiesced: u64 = totals.iter().map(|t| t.groups_quiesced).sum();
        eprint!(
            "\r{:5.1} s: {leaders} of {groups} groups led, {quiesced} of {} replicas quiesced   ",
            started.elapsed().as_secs_f64(),
            3 * groups
        );
        if leaders == groups && quiesced == 3 * groups {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("the groups did not all elect and quiesce within 300 s");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!();
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_bytes()?;
    Ok(IdleCost {
        before,
        after,
        after_trimmed: trimmed_rss_bytes()?,
        replicas: 3 * groups,
    })
}
