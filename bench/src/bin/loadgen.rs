//! `loadgen`: the demo and the throughput run. Starts a 3-node cluster in this process
//! (three `Engine`s, real TCP on loopback, real logs in a temporary directory), creates
//! `--groups` groups, and drives proposals from `--clients` client threads, each keeping
//! `--window` proposals in flight in requests of `--batch` proposals to one group (one
//! hand-off to the shard thread and one answer per request), for `--duration` seconds.
//!
//! It shows live ops/s, then prints ops/s, MB/s, latency percentiles (hdrhistogram), log
//! records and syncs per second and entries per sync, so the batching shows.
//!
//! Reads (`--read-ratio`) go through the log as `get` commands: linearizable reads without
//! the log (ReadIndex, leases) are not exposed by the engine yet.
//!
//! Usage: `cargo run --release -p flotilla-bench --bin loadgen -- [--duration SECS]
//! [--payload BYTES] [--groups N] [--clients N] [--window N] [--batch N] [--read-ratio F]
//! [--json PATH]`.

use std::collections::VecDeque;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flotilla::raft::{Config, NodeId};
use flotilla::runtime::{GroupId, KvMap, ShardStats};
use flotilla::{BatchProposal, Engine, EngineBuilder, RequestError};
use hdrhistogram::Histogram;

const NODES: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

#[derive(Clone, Debug)]
struct Args {
    duration_s: f64,
    payload: usize,
    groups: u64,
    clients: usize,
    window: usize,
    batch: usize,
    read_ratio: f64,
    json: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        duration_s: 10.0,
        payload: 16,
        groups: 64,
        clients: 4,
        window: 256,
        batch: 32,
        read_ratio: 0.0,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--duration" => args.duration_s = value()?.parse().context("--duration")?,
            "--payload" => args.payload = value()?.parse().context("--payload")?,
            "--groups" => args.groups = value()?.parse().context("--groups")?,
            "--clients" => args.clients = value()?.parse().context("--clients")?,
            "--window" => args.window = value()?.parse().context("--window")?,
            "--batch" => args.batch = value()?.parse().context("--batch")?,
            "--read-ratio" => args.read_ratio = value()?.parse().context("--read-ratio")?,
            "--json" => args.json = Some(value()?),
            other => bail!("unknown flag {other} (see the usage in the file's docs)"),
        }
    }
    if args.duration_s.is_nan()
        || args.duration_s <= 0.0
        || args.groups == 0
        || args.clients == 0
        || args.window == 0
        || args.batch == 0
    {
        bail!("--duration, --groups, --clients, --window and --batch must be positive");
    }
    if !(0.0..=1.0).contains(&args.read_ratio) {
        bail!("--read-ratio must be between 0 and 1");
    }
    Ok(args)
}

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

fn start_cluster(dir: &std::path::Path) -> anyhow::Result<Vec<Engine<KvMap>>> {
    let addrs = free_addrs()?;
    let raft = Config {
        election_timeout_ticks: 50,
        heartbeat_interval_ticks: 5,
        lease_ticks: 25,
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
            .raft_config(raft.clone());
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

/// One client: round-robin over groups, `window` proposals in flight in requests of
/// `batch` proposals to one group each, following leader hints.
fn client(
    engines: &[Engine<KvMap>],
    args: &Args,
    seed: u64,
    stop: &AtomicBool,
    done: &AtomicU64,
) -> Histogram<u64> {
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut leader_of: Vec<usize> = vec![0; usize::try_from(args.groups).expect("fits")];
    let mut in_flight: VecDeque<(Instant, u64, BatchProposal)> = VecDeque::new();
    let mut rng = seed | 1;
    let mut next_group = seed % args.groups;
    let value = vec![0x42u8; args.payload];
    let requests_max = args.window.div_ceil(args.batch);
    while !stop.load(Ordering::Relaxed) || !in_flight.is_empty() {
        while !stop.load(Ordering::Relaxed) && in_flight.len() < requests_max {
            let commands: Vec<Vec<u8>> = (0..args.batch)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let read = (rng % 10_000) as f64 / 10_000.0 < args.read_ratio;
                    let key = (rng % 1024).to_le_bytes();
                    if read {
                        KvMap::get_command(&key)
                    } else {
                        KvMap::set_command(&key, &value)
                    }
                })
                .collect();
            let at = leader_of[usize::try_from(next_group).expect("fits")];
            let request = engines[at].propose_batch(GroupId(next_group), commands);
            in_flight.push_back((Instant::now(), next_group, request));
            next_group = (next_group + 1) % args.groups;
        }
        let Some((started, group, request)) = in_flight.pop_front() else {
            break;
        };
        let slot = usize::try_from(group).expect("fits");
        let answers = request.wait();
        // The request's latency, from sending to its answer, counts for each proposal.
        let micros = u64::try_from(started.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        for answer in answers {
            match answer {
                Ok(_) => {
                    latencies.saturating_record(micros);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Err(RequestError::NotLeader {
                    leader: Some(leader),
                }) => {
                    leader_of[slot] = NODES.iter().position(|&node| node == leader).unwrap_or(0);
                }
                Err(RequestError::NotLeader { leader: None } | RequestError::Superseded) => {
                    leader_of[slot] = (leader_of[slot] + 1) % NODES.len();
                }
                Err(RequestError::Shutdown) => return latencies,
                Err(error) => panic!("proposal failed: {error}"),
            }
        }
    }
    latencies
}

fn totals(engines: &[Engine<KvMap>]) -> ShardStats {
    engines
        .iter()
        .flat_map(Engine::stats)
        .fold(ShardStats::default(), |sum, s| ShardStats {
            wal_records: sum.wal_records + s.wal_records,
            wal_entries: sum.wal_entries + s.wal_entries,
            wal_syncs: sum.wal_syncs + s.wal_syncs,
            frames_sent: sum.frames_sent + s.frames_sent,
            messages_sent: sum.messages_sent + s.messages_sent,
            ..sum
        })
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let dir = tempfile::tempdir_in(".").context("creating the data directory")?;
    eprintln!(
        "loadgen: 3 nodes on loopback, {} groups, {} clients x {} in flight (requests of {}), {} B payloads, {} s, read ratio {}",
        args.groups,
        args.clients,
        args.window,
        args.batch,
        args.payload,
        args.duration_s,
        args.read_ratio
    );
    let engines = Arc::new(start_cluster(dir.path())?);
    for engine in engines.iter() {
        for group in 0..args.groups {
            engine.create_group(GroupId(group), &NODES, KvMap::default())?;
        }
    }
    // Warm up: one write per group, so that every group has elected a leader.
    let warm_start = Instant::now();
    {
        for group in 0..args.groups {
            let mut at = 0;
            loop {
                match engines[at]
                    .propose_blocking(GroupId(group), KvMap::set_command(b"warm", b"up"))
                {
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
    }
    eprintln!(
        "cluster ready: every group has a leader ({:.1} s)",
        warm_start.elapsed().as_secs_f64()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let before = totals(&engines);
    let started = Instant::now();
    let clients: Vec<_> = (0..args.clients)
        .map(|k| {
            let (engines, stop, done, args) = (
                Arc::clone(&engines),
                Arc::clone(&stop),
                Arc::clone(&done),
                args.clone(),
            );
            std::thread::spawn(move || client(&engines, &args, k as u64 * 7919 + 1, &stop, &done))
        })
        .collect();
    let duration = Duration::from_secs_f64(args.duration_s);
    let mut last = (Instant::now(), 0u64);
    while started.elapsed() < duration {
        std::thread::sleep(Duration::from_millis(250));
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
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    for client in clients {
        latencies
            .add(client.join().expect("client thread"))
            .expect("same bounds");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = totals(&engines);
    eprintln!();
    let ops = latencies.len() as f64 / elapsed;
    let mb = ops * args.payload as f64 / 1e6;
    let records = (after.wal_records - before.wal_records) as f64;
    let syncs = (after.wal_syncs - before.wal_syncs) as f64;
    let entries = (after.wal_entries - before.wal_entries) as f64;
    let messages = (after.messages_sent - before.messages_sent) as f64;
    let frames = (after.frames_sent - before.frames_sent) as f64;
    let q = |quantile: f64| latencies.value_at_quantile(quantile);
    // (name in the JSON, column in the table, value): one list for both outputs.
    let figures: [(&str, &str, f64); 11] = [
        ("ops_per_sec", "ops/s", ops),
        ("mb_per_sec", "MB/s", mb),
        ("p50_us", "p50 µs", q(0.5) as f64),
        ("p90_us", "p90 µs", q(0.9) as f64),
        ("p99_us", "p99 µs", q(0.99) as f64),
        ("p999_us", "p99.9 µs", q(0.999) as f64),
        ("max_us", "max µs", latencies.max() as f64),
        ("wal_records_per_sec", "WAL records/s", records / elapsed),
        ("wal_syncs_per_sec", "WAL syncs/s", syncs / elapsed),
        (
            "entries_per_sync",
            "entries per sync",
            entries / syncs.max(1.0),
        ),
        (
            "messages_per_frame",
            "messages per frame",
            messages / frames.max(1.0),
        ),
    ];
    let column = |value: f64| {
        if value >= 100.0 {
            format!("{value:.0}")
        } else {
            format!("{value:.2}")
        }
    };
    println!();
    println!("| {} |", figures.map(|(_, title, _)| title).join(" | "));
    println!("|{}", "---|".repeat(figures.len()));
    println!(
        "| {} |",
        figures.map(|(_, _, value)| column(value)).join(" | ")
    );
    println!(
        "(3 replicas: each committed entry is written and synced on every node; counters sum the three nodes)"
    );
    if let Some(path) = &args.json {
        let fields: Vec<String> = figures
            .iter()
            .map(|(name, _, value)| format!("\"{name}\": {value:.3}"))
            .collect();
        let config = format!(
            "\"config\": {{\"duration_s\": {}, \"payload\": {}, \"groups\": {}, \"clients\": {}, \"window\": {}, \"batch\": {}, \"read_ratio\": {}, \"nodes\": 3, \"shards_per_node\": 1}}",
            args.duration_s,
            args.payload,
            args.groups,
            args.clients,
            args.window,
            args.batch,
            args.read_ratio
        );
        let json = format!("{{{}, {config}}}\n", fields.join(", "));
        std::fs::write(path, json).with_context(|| format!("writing {path}"))?;
    }
    for engine in engines.iter() {
        engine.shutdown();
    }
    Ok(())
}
