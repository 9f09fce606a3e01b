//! Model test: random appends, truncations, compactions, hard states, group drops, garbage
//! collections and reopens for many groups, and batches refused for a gap, with every read
//! checked against a plain in-memory model. Seeds are fixed; `WAL_MODEL_SEEDS=N` runs more.

#![allow(
    clippy::unwrap_used,
    reason = "integration tests fail by panicking, helpers included"
)]

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::Rng;
use flotilla_wal::{
    AppendError, GroupId, HardState, LogIndex, ReadError, Term, Wal, WalOptions, WriteBatch,
};

#[derive(Clone, Default)]
struct ModelGroup {
    /// Entries after the compaction mark: (term, payload).
    entries: Vec<(Term, Vec<u8>)>,
    compacted_through: u64,
    hard_state: Option<HardState>,
}

impl ModelGroup {
    fn first(&self) -> u64 {
        self.compacted_through + 1
    }

    fn last(&self) -> u64 {
        self.compacted_through + self.entries.len() as u64
    }
}

type Model = HashMap<GroupId, ModelGroup>;

const GROUPS: u64 = 8;

fn options() -> WalOptions {
    WalOptions {
        segment_size_bytes: 16 << 10,
        ..WalOptions::default()
    }
}

fn random_payload(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.range(0, 10) {
        0 => 0,
        1 => rng.range(500, 3000),
        _ => rng.range(1, 100),
    };
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// Adds one random operation to `batch` and applies it to `model`.
fn random_op(rng: &mut Rng, batch: &mut WriteBatch, model: &mut Model) {
    let group = GroupId(rng.range(1, GROUPS + 1));
    let state = model.entry(group).or_default();
    let kind = rng.range(0, 100);
    if std::env::var("WAL_MODEL_TRACE").is_ok() {
        eprintln!(
            "  op {kind} on group {group}: first {} last {}",
            state.first(),
            state.last()
        );
    }
    match kind {
        0..=59 => {
            let term = Term(rng.range(1, 4));
            for _ in 0..rng.range(1, 6) {
                let index = LogIndex(state.last() + 1);
                let payload = random_payload(rng);
                batch.add_entry(group, index, term, &payload);
                state.entries.push((term, payload));
            }
        }
        60..=69 => {
            if state.last() >= state.first() {
                let from = rng.range(state.first(), state.last() + 1);
                batch.truncate(group, LogIndex(from));
                state.entries.truncate((from - state.first()) as usize);
            }
        }
        70..=79 => {
            let through = rng.range(state.compacted_through, state.last() + 3);
            batch.compact(group, LogIndex(through));
            if through > state.compacted_through {
                let drop = (through - state.compacted_through).min(state.entries.len() as u64);
                state.entries.drain(..drop as usize);
                state.compacted_through = through;
            }
        }
        80..=96 => {
            let hard_state = HardState {
                term: Term(rng.range(1, 100)),
                vote: rng.range(0, 5),
                commit: LogIndex(rng.range(0, 50)),
            };
            batch.set_hard_state(group, hard_state);
            state.hard_state = Some(hard_state);
        }
        _ => {
            batch.drop_group(group);
            model.remove(&group);
        }
    }
}

/// Adds an entry one index past where `model` says a group's log continues; returns the
/// group.
fn add_gap(rng: &mut Rng, batch: &mut WriteBatch, model: &Model) -> GroupId {
    let group = GroupId(rng.range(1, GROUPS + 1));
    let last = model.get(&group).map_or(0, ModelGroup::last);
    batch.add_entry(group, LogIndex(last + 2), Term(1), b"gap");
    group
}

fn check(wal: &Wal, model: &Model, context: &str) {
    for g in 1..=GROUPS {
        let group = GroupId(g);
        let Some(expected) = model.get(&group) else {
            assert_eq!(
                wal.group(group),
                None,
                "{context}: group {g} should be absent"
            );
            continue;
        };
        let state = wal.group(group);
        // A group the model knows only as empty defaults may be absent from the log.
        let Some(state) = state else {
            assert!(
                expected.entries.is_empty()
                    && expected.hard_state.is_none()
                    && expected.compacted_through == 0,
                "{context}: group {g} missing"
            );
            continue;
        };
        assert_eq!(
            state.first_index,
            LogIndex(expected.first()),
            "{context}: group {g} first"
        );
        assert_eq!(
            state.last_index,
            LogIndex(expected.last()),
            "{context}: group {g} last"
        );
        assert_eq!(
            state.hard_state, expected.hard_state,
            "{context}: group {g} hard state"
        );
        let mut seen = 0;
        wal.read_entries(
            group,
            LogIndex(expected.first()),
            LogIndex(expected.last() + 1),
            |index, term, payload| {
                let (want_term, want_payload) =
                    &expected.entries[(index.0 - expected.first()) as usize];
                assert_eq!(term, *want_term, "{context}: group {g} index {index}");
                assert_eq!(
                    payload,
                    &want_payload[..],
                    "{context}: group {g} index {index}"
                );
                seen += 1;
            },
        )
        .unwrap();
        assert_eq!(seen, expected.entries.len());
        if expected.compacted_through > 0 {
            assert!(matches!(
                wal.term(group, LogIndex(expected.compacted_through)),
                Err(ReadError::Compacted { .. })
            ));
        }
        assert!(matches!(
            wal.term(group, LogIndex(expected.last() + 1)),
            Err(ReadError::Unavailable { .. })
        ));
    }
}

/// Runs one seed; returns how many times the log moved to a recycled segment.
fn run_seed(seed: u64, dir: &Path) -> u64 {
    let mut recycled = 0;
    let mut rng = Rng::new(seed);
    let mut model = Model::new();
    let (mut wal, _) = Wal::open(dir, options()).unwrap();
    for step in 0..300 {
        let context = format!("seed {seed} step {step}");
        let action = rng.range(0, 100);
        if std::env::var("WAL_MODEL_TRACE").is_ok() {
            eprintln!("{context}: action {action}");
        }
        match action {
            0..=84 => {
                let mut batch = WriteBatch::new();
                let mut next = model.clone();
                let ops = rng.range(1, 8);
                // Now and then one operation leaves a gap, and the whole batch is refused.
                let gap_at = rng.chance(15).then(|| rng.range(0, ops));
                let mut gap_group = None;
                for op in 0..ops {
                    if gap_at == Some(op) {
                        gap_group = Some(add_gap(&mut rng, &mut batch, &next));
                    }
                    random_op(&mut rng, &mut batch, &mut next);
                }
                match wal.submit(&batch) {
                    Ok(_) if gap_group.is_none() => model = next,
                    Ok(_) => panic!("{context}: a batch with a gap was taken"),
                    // Refused whole: the model stays as it was, and `check` proves the log did.
                    Err(AppendError::TooLarge { .. }) => {}
                    // Every other operation is valid, so the gap is what is refused.
                    Err(AppendError::InvalidBatch { group, .. }) if Some(group) == gap_group => {}
                    Err(e) => panic!("{context}: {e}"),
                }
                if rng.chance(30) {
                    wal.poll().unwrap();
                }
            }
            85..=91 => {
                wal.wait_durable(wal.submitted_lsn()).unwrap();
                wal.collect_garbage().unwrap();
            }
            92..=95 => {
                recycled += wal.stats().segments_recycled;
                wal.close().unwrap();
                wal = Wal::open(dir, options()).unwrap().0;
            }
            _ => {
                // Dropped without close: everything submitted reached the kernel, and the
                // process lives on, so a reopen sees all of it.
                recycled += wal.stats().segments_recycled;
                drop(wal);
                wal = Wal::open(dir, options()).unwrap().0;
            }
        }
        check(&wal, &model, &context);
    }
    recycled + wal.stats().segments_recycled
}

#[test]
fn random_operations_match_the_model() {
    let seeds: u64 = std::env::var("WAL_MODEL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let mut recycled = 0;
    for seed in 0..seeds {
        let dir = tempfile::tempdir().unwrap();
        recycled += run_seed(seed, dir.path());
    }
    // Collected segments come back as new ones, so reads and reopens cross stale records.
    assert!(recycled > 0, "no seed moved the log to a recycled segment");
}
