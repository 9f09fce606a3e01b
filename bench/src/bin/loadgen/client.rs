//! One load-generating client thread.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flotilla::raft::ReadMode;
use flotilla::runtime::{GroupId, KvMap};
use flotilla::{Answer, BatchProposal, Engine, RequestError};
use hdrhistogram::Histogram;

use crate::NODES;
use crate::args::Args;

/// A request in flight: proposals to one group, or a linearizable read of `count` keys.
enum Request {
    Write(BatchProposal),
    Read { answer: Answer<usize>, count: usize },
}

/// What a failed operation tells the client.
enum Failure {
    /// Go to this node (`None`: try the next one).
    Retry { leader: Option<usize> },
    /// The engine shut down.
    Stopped,
}

fn failure_of(error: &RequestError) -> Failure {
    match error {
        RequestError::NotLeader {
            leader: Some(leader),
        } => Failure::Retry {
            leader: NODES.iter().position(|node| node == leader),
        },
        RequestError::NotLeader { leader: None } | RequestError::Superseded => {
            Failure::Retry { leader: None }
        }
        RequestError::Shutdown => Failure::Stopped,
        error => panic!("request failed: {error}"),
    }
}

impl Request {
    /// Operations done, and the last failure if any.
    fn wait(self) -> (usize, Option<Failure>) {
        match self {
            Request::Write(batch) => {
                let mut done = 0;
                let mut failure = None;
                for answer in batch.wait() {
                    match answer {
                        Ok(_) => done += 1,
                        Err(error) => failure = Some(failure_of(&error)),
                    }
                }
                (done, failure)
            }
            Request::Read { answer, count } => match answer.wait() {
                Ok(_) => (count, None),
                Err(error) => (0, Some(failure_of(&error))),
            },
        }
    }
}

/// Round-robin over groups, `window` operations in flight in requests of `batch` to one
/// group each, following leader hints; paced to `args.rate / args.clients` when a rate is
/// set. A request is a read with probability `read_ratio`: one ReadIndex read of `batch`
/// keys. Returns the latency of every operation, in µs (a request's latency counts for
/// each of its operations).
pub(crate) fn run(
    engines: &[Engine<KvMap>],
    args: &Args,
    seed: u64,
    stop: &AtomicBool,
    done: &AtomicU64,
) -> Histogram<u64> {
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut leader_of: Vec<usize> = vec![0; usize::try_from(args.groups).expect("fits")];
    let mut in_flight: VecDeque<(Instant, u64, Request)> = VecDeque::new();
    let mut rng = seed | 1;
    let mut next_group = seed % args.groups;
    let value = vec![0x42u8; args.payload];
    let requests_max = args.window.div_ceil(args.batch);
    let started = Instant::now();
    let per_second = args.rate.map(|rate| rate / args.clients as f64);
    let mut issued = 0u64;
    let mut random = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    while !stop.load(Ordering::Relaxed) || !in_flight.is_empty() {
        while !stop.load(Ordering::Relaxed) && in_flight.len() < requests_max {
            if let Some(per_second) = per_second {
                // Open-loop pacing: request k leaves at k · batch / rate.
                let due = Duration::from_secs_f64(issued as f64 * args.batch as f64 / per_second);
                let now = started.elapsed();
                if due > now {
                    if in_flight.is_empty() {
                        std::thread::sleep(due - now);
                    } else {
                        break;
                    }
                }
            }
            let at = leader_of[usize::try_from(next_group).expect("fits")];
            let group = GroupId(next_group);
            let read = (random() % 10_000) as f64 / 10_000.0 < args.read_ratio;
            let request = if read {
                let keys: Vec<[u8; 8]> = (0..args.batch)
                    .map(|_| (random() % 1024).to_le_bytes())
                    .collect();
                let count = keys.len();
                let answer = engines[at].read(group, ReadMode::ReadIndex, move |map: &KvMap| {
                    keys.iter()
                        .filter(|key| map.get(&key[..]).is_some())
                        .count()
                });
                Request::Read { answer, count }
            } else {
                let commands: Vec<Vec<u8>> = (0..args.batch)
                    .map(|_| KvMap::set_command(&(random() % 1024).to_le_bytes(), &value))
                    .collect();
                Request::Write(engines[at].propose_batch(group, commands))
            };
            in_flight.push_back((Instant::now(), next_group, request));
            issued += 1;
            next_group = (next_group + 1) % args.groups;
        }
        let Some((sent, group, request)) = in_flight.pop_front() else {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            continue;
        };
        let slot = usize::try_from(group).expect("fits");
        let (count, failure) = request.wait();
        let micros = u64::try_from(sent.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, 60_000_000);
        if count > 0 {
            latencies
                .record_n(micros, count as u64)
                .expect("within the histogram's bounds");
            done.fetch_add(count as u64, Ordering::Relaxed);
        }
        match failure {
            None => {}
            Some(Failure::Retry { leader }) => {
                leader_of[slot] = leader.unwrap_or((leader_of[slot] + 1) % NODES.len());
            }
            Some(Failure::Stopped) => return latencies,
        }
    }
    latencies
}
