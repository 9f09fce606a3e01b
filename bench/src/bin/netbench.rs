//! `netbench`: loopback throughput of the TCP transport against a raw baseline, measured
//! in the same run.
//!
//! - `raw`: a plain TCP socket pair on loopback (two threads, blocking I/O); the writer
//!   writes, with no framing at all, the same payload bytes per write as one frame of the
//!   transport carries; the reader reads into a 1 MiB buffer.
//! - `flotilla`: two `TcpTransport`s on loopback, each on its own glommio executor; the
//!   sender queues batches of `--messages` AppendEntries (one entry of `--payload` bytes
//!   each); the receiver validates every frame and takes every entry's payload in place.
//!
//! Both report payload MB/s (entry bytes only: framing, headers and archive overhead count
//! against the transport) and messages/s. Rounds alternate raw and flotilla so that both
//! see the same machine; the table gives each round and the median ratio.
//!
//! Usage: `cargo run --release -p flotilla-bench --bin netbench -- [--seconds S]
//! [--payload BYTES] [--messages N] [--rounds R] [--raw-write BYTES]` (`--raw-write` sets
//! the raw loop's bytes per `write`, to compare with larger writes than one batch).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flotilla_bench::append_batch;
use flotilla_net::{
    ArchivedMessageBody, GroupHeartbeat, MessageBatch, NodeId, SendError, TcpTransport, Transport,
    TransportConfig, TransportEvent,
};
use glommio::{LocalExecutorBuilder, Placement};

struct Args {
    seconds: f64,
    payload: usize,
    messages: usize,
    rounds: usize,
    /// Bytes per `write` in the raw loop; by default one batch's payload bytes.
    raw_write_bytes: Option<usize>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        seconds: 2.0,
        payload: 1024,
        messages: 64,
        rounds: 3,
        raw_write_bytes: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => args.seconds = value()?.parse().context("--seconds")?,
            "--payload" => args.payload = value()?.parse().context("--payload")?,
            "--messages" => args.messages = value()?.parse().context("--messages")?,
            "--rounds" => args.rounds = value()?.parse().context("--rounds")?,
            "--raw-write" => args.raw_write_bytes = Some(value()?.parse().context("--raw-write")?),
            other => bail!("unknown flag {other}"),
        }
    }
    if args.seconds <= 0.0 || args.payload == 0 || args.messages == 0 || args.rounds == 0 {
        bail!("--seconds, --payload, --messages and --rounds must be positive");
    }
    Ok(args)
}

/// What one run delivered.
struct Delivered {
    payload_bytes: u64,
    messages: u64,
    elapsed: Duration,
}

impl Delivered {
    fn mb_per_s(&self) -> f64 {
        self.payload_bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
    fn messages_per_s(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }
}

/// The raw baseline: the same payload bytes per write, no framing.
fn run_raw(args: &Args) -> anyhow::Result<Delivered> {
    let chunk = vec![
        7u8;
        args.raw_write_bytes
            .unwrap_or(args.payload * args.messages)
            .max(1)
    ];
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> anyhow::Result<(u64, Duration)> {
        let (mut stream, _) = listener.accept()?;
        let mut buffer = vec![0u8; 1 << 20];
        let mut total = 0u64;
        let mut started = None;
        loop {
            let read = stream.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            started.get_or_insert_with(Instant::now);
            total += read as u64;
        }
        Ok((total, started.map(|at| at.elapsed()).unwrap_or_default()))
    });
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    while Instant::now() < deadline {
        stream.write_all(&chunk)?;
    }
    stream.shutdown(Shutdown::Write)?;
    let (payload_bytes, elapsed) = reader.join().expect("reader thread")?;
    let messages = payload_bytes / args.payload as u64;
    Ok(Delivered {
        payload_bytes,
        messages,
        elapsed,
    })
}

/// The group id of the batch that tells the receiver the run is over.
const END_MARKER: u64 = u64::MAX;

/// The transport: two executors, batches of AppendEntries, every payload taken in place.
fn run_flotilla(args: &Args) -> anyhow::Result<Delivered> {
    let (addr_tx, addr_rx) = mpsc::channel();
    let receiver = LocalExecutorBuilder::new(Placement::Unbound)
        .name("netbench-rx")
        .spawn(move || async move {
            let mut transport = TcpTransport::start(
                TransportConfig::new(1, NodeId(2)),
                Some("127.0.0.1:0".parse().expect("an address")),
            )
            .expect("receiver starts");
            transport.set_peer(NodeId(1), "127.0.0.1:9".parse().expect("an address"));
            addr_tx
                .send(transport.local_addr().expect("listens"))
                .expect("main waits");
            let mut events = Vec::new();
            let (mut payload_bytes, mut messages) = (0u64, 0u64);
            let mut started = None;
            loop {
                transport.wait_events().await;
                transport.poll_events(&mut events);
                for event in events.drain(..) {
                    let TransportEvent::Received { frame, .. } = event else {
                        continue;
                    };
                    started.get_or_insert_with(Instant::now);
                    let batch = frame.batch();
                    if batch
                        .heartbeats
                        .first()
                        .is_some_and(|beat| beat.group == END_MARKER)
                    {
                        let elapsed = started.map(|at| at.elapsed()).unwrap_or_default();
                        return Delivered {
                            payload_bytes,
                            messages,
                            elapsed,
                        };
                    }
                    for message in batch.messages.iter() {
                        if let ArchivedMessageBody::AppendEntries { entries, .. } = &message.body {
                            for entry in entries.iter() {
                                payload_bytes += frame.payload(entry).len() as u64;
                            }
                            messages += 1;
                        }
                    }
                }
            }
        })
        .map_err(|error| anyhow::anyhow!("receiver executor: {error}"))?;
    let addr = addr_rx.recv().context("receiver address")?;
    let batch = append_batch(args.messages, args.payload);
    let seconds = args.seconds;
    let done = Arc::new(AtomicBool::new(false));
    let receiver_done = Arc::clone(&done);
    let sender = LocalExecutorBuilder::new(Placement::Unbound)
        .name("netbench-tx")
        .spawn(move || async move {
            let mut transport = TcpTransport::start(TransportConfig::new(1, NodeId(1)), None)
                .expect("sender starts");
            transport.set_peer(NodeId(2), addr);
            let deadline = Instant::now() + Duration::from_secs_f64(seconds);
            while Instant::now() < deadline {
                match transport.try_send(NodeId(2), &batch) {
                    Ok(_) => {}
                    Err(SendError::QueueFull { .. }) => {
                        glommio::timer::sleep(Duration::from_micros(100)).await
                    }
                    Err(error) => panic!("send failed: {error}"),
                }
            }
            let mut end = MessageBatch::new(1, 2);
            end.heartbeats.push(GroupHeartbeat {
                group: END_MARKER,
                term: 0,
                commit: 0,
                read_round: 0,
            });
            loop {
                match transport.try_send(NodeId(2), &end) {
                    Ok(_) => break,
                    Err(SendError::QueueFull { .. }) => {
                        glommio::timer::sleep(Duration::from_micros(100)).await
                    }
                    Err(error) => panic!("send failed: {error}"),
                }
            }
            // Keep the transport (and its connection) alive until the receiver is done.
            while !receiver_done.load(Ordering::Acquire) {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            drop(transport);
        })
        .map_err(|error| anyhow::anyhow!("sender executor: {error}"))?;
    let delivered = receiver
        .join()
        .map_err(|error| anyhow::anyhow!("receiver: {error}"));
    done.store(true, Ordering::Release);
    sender
        .join()
        .map_err(|error| anyhow::anyhow!("sender: {error}"))?;
    delivered
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    println!(
        "netbench: {} B entries, {} AppendEntries per batch, {} s per run, {} rounds, raw writes of {} B",
        args.payload,
        args.messages,
        args.seconds,
        args.rounds,
        args.raw_write_bytes.unwrap_or(args.payload * args.messages)
    );
    println!();
    println!("| round | raw MB/s | flotilla MB/s | flotilla messages/s | ratio |");
    println!("|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for round in 1..=args.rounds {
        let raw = run_raw(&args)?;
        let flotilla = run_flotilla(&args)?;
        let ratio = flotilla.mb_per_s() / raw.mb_per_s();
        ratios.push(ratio);
        println!(
            "| {round} | {:.0} | {:.0} | {:.0} | {:.2} |",
            raw.mb_per_s(),
            flotilla.mb_per_s(),
            flotilla.messages_per_s(),
            ratio
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!();
    println!("median ratio flotilla/raw: {:.2}", ratios[ratios.len() / 2]);
    Ok(())
}
