//! The deterministic simulator: many groups of 3 or 5 replicas of the real `RaftGroup` on a
//! simulated network and disk, driven by one seeded RNG, with clients whose history is
//! checked for linearizability. See docs/TESTING.md for the seeds and the replay command.
//!
//! - `SIM_SEED=N` runs exactly seed N (and prints its trace summary);
//! - `SIM_SEEDS=K` runs K seeds (default 500) starting at `SIM_SEED_START` (default 0).

mod cluster;
mod linearizability;
mod rng;

use cluster::{Outcome, Simulation};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|value| {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be an integer, got {value:?}"))
    })
}

/// Runs one seed; an assertion inside the core (a broken invariant caught where it breaks)
/// becomes a failure of that seed, so the seed and the replay command are still printed.
fn run(seed: u64) -> Outcome {
    match std::panic::catch_unwind(|| Simulation::from_seed(seed).run()) {
        Ok(outcome) => outcome,
        Err(panic) => {
            let reason = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "a panic without a message".to_string());
            Outcome {
                failure: Some(format!("assertion: {reason}")),
                summary: String::new(),
                totals: Default::default(),
            }
        }
    }
}

#[test]
fn simulator_seeds() {
    if let Some(seed) = env_u64("SIM_SEED") {
        let outcome = run(seed);
        println!("seed {seed}: {}", outcome.summary);
        if let Some(failure) = outcome.failure {
            panic!(
                "seed {seed} failed: {failure}\nreplay: SIM_SEED={seed} cargo test -p flotilla --test sim -- --nocapture"
            );
        }
        return;
    }
    let count = env_u64("SIM_SEEDS").unwrap_or(500);
    let start = env_u64("SIM_SEED_START").unwrap_or(0);
    let mut totals = cluster::Totals::default();
    for seed in start..start + count {
        let outcome = run(seed);
        totals.add(&outcome);
        if let Some(failure) = outcome.failure {
            panic!(
                "seed {seed} failed: {failure}\n{}\nreplay: SIM_SEED={seed} cargo test -p flotilla --test sim -- --nocapture",
                outcome.summary
            );
        }
    }
    println!("{count} seeds from {start}: {totals}");
}
