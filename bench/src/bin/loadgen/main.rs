//! `loadgen`: the demo and the throughput run. Starts a 3-node cluster in this process
//! (three `Engine`s, real TCP on loopback, real logs in a temporary directory), creates
//! `--groups` groups, and drives proposals from `--clients` client threads, each keeping
//! `--window` proposals in flight in requests of `--batch` proposals to one group (one
//! hand-off to the shard thread and one answer per request), for `--duration` seconds.
//!
//! It shows live ops/s, then prints ops/s, MB/s, latency percentiles (hdrhistogram), log
//! records and syncs per second, entries per sync, entries and messages per frame, sync
//! latency, and the process's resident memory (peak, and its growth over the second half
//! of the run), so the batching and the memory bound show.
//!
//! Reads (`--read-ratio`): a request is a linearizable read (ReadIndex) of `--batch` keys
//! instead of `--batch` writes, with that probability. `--rate OPS` paces the clients to
//! OPS operations per second in total (for latency at a given load). `--idle-groups N`
//! measures instead the memory of N idle (quiesced) groups per node. `--snapshot-every N`
//! sets how often groups snapshot their state machine (default 10 000 entries; 0 never).
//!
//! Usage: `cargo run --release -p flotilla-bench --bin loadgen -- [--duration SECS]
//! [--payload BYTES] [--groups N] [--clients N] [--window N] [--batch N] [--read-ratio F]
//! [--rate OPS] [--idle-groups N] [--snapshot-every N] [--json PATH]`.

mod args;
mod client;
mod memory;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flotilla::raft::{Config, NodeId};
use flotilla::runtime::{GroupId, KvMap, ShardStats};
use flotilla::{Engine, EngineBuilder, Metrics, RequestError};
use hdrhistogram::Histogram;

use crate::args::{Args, parse_args};

pub(crate) const NODES: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

fn free_addrs() -> anyhow::Result<Vec<SocketAddr>> {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .context("finding free loopback ports")?;
    Ok(listeners
        .iter()
        .map(|l| l.local_addr().expect("bound"))
        .collect())
}

fn start_cluster(dir: &std::path::Path, snapshot_every: u64) -> anyhow::Result<Vec<Engine<KvMap>>> {
    let addrs = free_addrs()?;
    let raft = Config {
        election_timeout_ticks: 50,
        heartbeat_interval_ticks: 5,
        lease_ticks: 25,
        quiesce_after_ticks: 50,
        ..Config::new(NodeId(0), 0)
    };
    (0..3)
        .map(|k| {
            let mut builder = EngineBuilder::new(
                NODES[k],
                0x10AD,
                dir.join(format!("node-{}", k + 1)),
                addrs[k],
            )
            .shards(1)
            .tick(Duration::from_millis(2))
            .raft_config(raft.clone())
            .snapshot_every_entries(snapshot_every);
            for (other, &addr) in addrs.iter().enumerate() {
                if other != k {
                    builder = builder.peer(NODES[other], addr);
                }
            }
            builder
                .start()
                .with_context(|| format!("starting node {}", k + 1))
        })
        .collect()
}

fn metrics(engines: &[Engine<KvMap>]) -> Vec<Metrics> {
    engines.iter().map(Engine::metrics).collect()
}

fn totals(metrics: &[Metrics]) -> ShardStats {
    let mut totals = ShardStats::default();
    for node in metrics {
        totals.add(&node.totals());
    }
    totals
}

/// Proposes one write per group, following leader hints, so that every group has elected.
fn warm_up(engines: &[Engine<KvMap>], groups: u64) -> anyhow::Result<()> {
    for group in 0..groups {
        let mut at = 0;
        loop {
            match engines[at].propose_blocking(GroupId(group), KvMap::set_command(b"warm", b"up")) {
                Ok(_) => break,
                Err(RequestError::NotLeader {
                    leader: Some(leader),
                }) => at = NODES.iter().position(|&node| node == leader).unwrap_or(0),
                Err(RequestError::NotLeader { leader: None } | RequestError::Superseded) => {
                    at = (at + 1) % 3;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(error) => bail!("warm-up proposal failed: {error}"),
            }
        }
    }
    Ok(())
}

/// The figures of a run: (name in the JSON, column in the table, value).
type Figures = Vec<(&'static str, &'static str, f64)>;

fn print_table(figures: &Figures) {
    let column = |value: f64| {
        if value >= 100.0 {
            format!("{value:.0}")
        } else {
            format!("{value:.2}")
        }
    };
    let titles: Vec<&str> = figures.iter().map(|(_, title, _)| *title).collect();
    let values: Vec<String> = figures.iter().map(|(_, _, value)| column(*value)).collect();
    println!();
    println!("| {} |", titles.join(" | "));
    println!("|{}", "---|".repeat(figures.len()));
    println!("| {} |", values.join(" | "));
}

fn write_json(path: &str, figures: &Figures, args: &Args) -> anyhow::Result<()> {
    let fields: Vec<String> = figures
        .iter()
        .map(|(name, _, value)| format!("\"{name}\": {value:.3}"))
        .collect();
    let optional = |value: Option<String>| value.unwrap_or_else(|| "null".into());
    let config = format!(
        "\"config\": {{\"duration_s\": {}, \"payload\": {}, \"groups\": {}, \"clients\": {}, \"window\": {}, \"batch\": {}, \"read_ratio\": {}, \"rate\": {}, \"idle_groups\": {}, \"snapshot_every\": {}, \"nodes\": 3, \"shards_per_node\": 1}}",
        args.duration_s,
        args.payload,
        args.groups,
        args.clients,
        args.window,
        args.batch,
        args.read_ratio,
        optional(args.rate.map(|rate| rate.to_string())),
        optional(args.idle_groups.map(|groups| groups.to_string())),
        args.snapshot_every,
    );
    let json = format!("{{{}, {config}}}\n", fields.join(", "));
    std::fs::write(path, json).with_context(|| format!("writing {path}"))
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let dir = tempfile::tempdir_in(".").context("creating the data directory")?;
    let engines = Arc::new(start_cluster(dir.path(), args.snapshot_every)?);
    if let Some(groups) = args.idle_groups {
        eprintln!("loadgen: 3 nodes on loopback, {groups} idle groups per node");
        let cost = memory::idle_groups(&engines, groups)?;
        let per_replica =
            |after: u64| after.saturating_sub(cost.before) as f64 / cost.replicas as f64;
        let figures: Figures = vec![
            ("rss_before_mb", "RSS before MB", cost.before as f64 / 1e6),
            ("rss_after_mb", "RSS after MB", cost.after as f64 / 1e6),
            ("replicas", "replicas", cost.replicas as f64),
            (
                "bytes_per_idle_replica",
                "bytes per idle replica",
                per_replica(cost.after),
            ),
            (
                "bytes_per_idle_replica_trimmed",
                "same, allocator trimmed",
                per_replica(cost.after_trimmed),
            ),
            (
                "peak_rss_mb",
                "peak RSS MB",
                memory::peak_rss_bytes()? as f64 / 1e6,
            ),
        ];
        print_table(&figures);
        println!("(one process holds all 3 nodes: a replica is one node's share of a group)");
        if let Some(path) = &args.json {
            write_json(path, &figures, &args)?;
        }
        for engine in engines.iter() {
            engine.shutdown();
        }
        return Ok(());
    }
    eprintln!(
        "loadgen: 3 nodes on loopback, {} groups, {} clients x {} in flight (requests of {}), {} B payloads, {} s, read ratio {}{}",
        args.groups,
        args.clients,
        args.window,
        args.batch,
        args.payload,
        args.duration_s,
        args.read_ratio,
        args.rate
            .map_or(String::new(), |rate| format!(", paced to {rate:.0} ops/s"))
    );
    for engine in engines.iter() {
        for group in 0..args.groups {
            engine.create_group(GroupId(group), &NODES, KvMap::default())?;
        }
    }
    let warm_start = Instant::now();
    warm_up(&engines, args.groups)?;
    eprintln!(
        "cluster ready: every group has a leader ({:.1} s)",
        warm_start.elapsed().as_secs_f64()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let before = totals(&metrics(&engines));
    let started = Instant::now();
    let clients: Vec<_> = (0..args.clients)
        .map(|k| {
            let (engines, stop, done, args) = (
                Arc::clone(&engines),
                Arc::clone(&stop),
                Arc::clone(&done),
                args.clone(),
            );
            std::thread::spawn(move || {
                client::run(&engines, &args, k as u64 * 7919 + 1, &stop, &done)
            })
        })
        .collect();
    let duration = Duration::from_secs_f64(args.duration_s);
    let mut last = (Instant::now(), 0u64);
    // Resident memory at half time: after warm-up, before the second half whose growth
    // (a leak, an unbounded queue) the report shows.
    let mut rss_half = None;
    while started.elapsed() < duration {
        std::thread::sleep(Duration::from_millis(250));
        if rss_half.is_none() && started.elapsed() >= duration / 2 {
            rss_half = Some(memory::rss_bytes()?);
        }
        let now = (Instant::now(), done.load(Ordering::Relaxed));
        let rate = (now.1 - last.1) as f64 / now.0.duration_since(last.0).as_secs_f64();
        let progress = (started.elapsed().as_secs_f64() / args.duration_s).min(1.0);
        let filled = (progress * 30.0) as usize;
        eprint!(
            "\r[{}{}] {:5.1} s  {:>10.0} ops/s  {:>10} done",
            "#".repeat(filled),
            ".".repeat(30 - filled),
            started.elapsed().as_secs_f64(),
            rate,
            now.1
        );
        let _ = std::io::stderr().flush();
        last = now;
    }
    let rss_end = memory::rss_bytes()?;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    for client in clients {
        latencies
            .add(client.join().expect("client thread"))
            .expect("same bounds");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let metrics_after = metrics(&engines);
    let after = totals(&metrics_after);
    eprintln!();
    let mut syncs_latency = Histogram::<u64>::new(3).expect("valid");
    for node in &metrics_after {
        syncs_latency
            .add(node.sync_latency_us())
            .expect("auto-resizing histograms");
    }
    let ops = latencies.len() as f64 / elapsed;
    let mb = ops * args.payload as f64 / 1e6;
    let delta = |f: fn(&ShardStats) -> u64| (f(&after) - f(&before)) as f64;
    let records = delta(|s| s.wal_records);
    let syncs = delta(|s| s.wal_syncs);
    let entries = delta(|s| s.wal_entries);
    let messages = delta(|s| s.messages_sent);
    let entries_sent = delta(|s| s.entries_sent);
    let frames = delta(|s| s.frames_sent);
    let q = |quantile: f64| latencies.value_at_quantile(quantile) as f64;
    let rss_half = rss_half.unwrap_or(rss_end);
    let figures: Figures = vec![
        ("ops_per_sec", "ops/s", ops),
        ("mb_per_sec", "MB/s", mb),
        ("p50_us", "p50 µs", q(0.5)),
        ("p90_us", "p90 µs", q(0.9)),
        ("p99_us", "p99 µs", q(0.99)),
        ("p999_us", "p99.9 µs", q(0.999)),
        ("max_us", "max µs", latencies.max() as f64),
        ("wal_records_per_sec", "WAL records/s", records / elapsed),
        ("wal_syncs_per_sec", "WAL syncs/s", syncs / elapsed),
        (
            "entries_per_sync",
            "entries per sync",
            entries / syncs.max(1.0),
        ),
        (
            "bytes_per_record",
            "bytes per WAL record",
            delta(|s| s.wal_bytes) / records.max(1.0),
        ),
        (
            "sync_p50_us",
            "sync p50 µs",
            syncs_latency.value_at_quantile(0.5) as f64,
        ),
        (
            "sync_p99_us",
            "sync p99 µs",
            syncs_latency.value_at_quantile(0.99) as f64,
        ),
        (
            "entries_per_frame",
            "entries per frame",
            entries_sent / frames.max(1.0),
        ),
        (
            "messages_per_frame",
            "messages per frame",
            messages / frames.max(1.0),
        ),
        (
            "peak_rss_mb",
            "peak RSS MB",
            memory::peak_rss_bytes()? as f64 / 1e6,
        ),
        (
            "rss_growth_second_half_mb",
            "RSS growth 2nd half MB",
            (rss_end as f64 - rss_half as f64) / 1e6,
        ),
    ];
    print_table(&figures);
    println!(
        "(3 replicas: each committed entry is written and synced on every node; counters sum the three nodes, which share one process for RSS)"
    );
    if let Some(path) = &args.json {
        write_json(path, &figures, &args)?;
    }
    for engine in engines.iter() {
        engine.shutdown();
    }
    Ok(())
}
