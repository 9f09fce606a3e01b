//! The checker's self-tests: known non-linearizable histories are rejected, linearizable
//! ones (including long random ones) accepted, and small histories agree with an exhaustive
//! search.

use super::*;

fn put(client: u64, value: u64, invoke: u64, complete: u64) -> Operation {
    let input = Input::Put(value);
    Operation {
        client,
        key: 1,
        input,
        output: Output::Put,
        invoke,
        complete: Some(complete),
    }
}

fn get(client: u64, seen: Option<u64>, invoke: u64, complete: u64) -> Operation {
    let output = Output::Get(seen);
    Operation {
        client,
        key: 1,
        input: Input::Get,
        output,
        invoke,
        complete: Some(complete),
    }
}

fn cas(
    client: u64,
    expected: Option<u64>,
    new: u64,
    swapped: bool,
    invoke: u64,
    complete: u64,
) -> Operation {
    let input = Input::Cas { expected, new };
    let output = Output::Cas(swapped);
    Operation {
        client,
        key: 1,
        input,
        output,
        invoke,
        complete: Some(complete),
    }
}

fn unknown(client: u64, input: Input, invoke: u64) -> Operation {
    Operation {
        client,
        key: 1,
        input,
        output: Output::Unknown,
        invoke,
        complete: None,
    }
}

fn on_key(key: u64, operation: Operation) -> Operation {
    Operation { key, ..operation }
}

fn assert_linearizable(history: &[Operation]) {
    if let Err(error) = check_history(history) {
        panic!("a linearizable history was rejected: {error}");
    }
}

fn assert_not_linearizable(history: &[Operation]) -> NotLinearizable {
    let error = check_history(history).expect_err("a history with no linearization passed");
    assert!(
        error.explanation.starts_with("no linearization exists"),
        "{error}"
    );
    error
}

#[test]
fn empty_history_is_accepted() {
    assert_linearizable(&[]);
}

#[test]
fn sequential_history_is_accepted() {
    assert_linearizable(&[
        get(1, None, 0, 1),
        put(1, 1, 2, 3),
        get(2, Some(1), 4, 5),
        cas(1, Some(1), 2, true, 6, 7),
        cas(2, Some(1), 3, false, 8, 9),
        get(2, Some(2), 10, 11),
        put(1, 4, 12, 13),
        get(1, Some(4), 14, 15),
        cas(2, None, 5, false, 16, 17),
    ]);
}

#[test]
fn stale_read_is_rejected() {
    let error = assert_not_linearizable(&[put(1, 1, 0, 1), get(2, None, 2, 3)]);
    assert_eq!(error.key, 1);
    assert_eq!(error.operations.len(), 2);
}

#[test]
fn read_of_a_value_never_written_is_rejected() {
    assert_not_linearizable(&[put(1, 1, 0, 1), get(2, Some(7), 2, 3)]);
}

#[test]
fn concurrent_read_sees_the_old_or_the_new_value() {
    for seen in [Some(1), Some(2)] {
        assert_linearizable(&[put(1, 1, 0, 1), put(1, 2, 2, 6), get(2, seen, 3, 4)]);
    }
    // The value before the old one was overwritten before the read began.
    assert_not_linearizable(&[put(1, 1, 0, 1), put(1, 2, 2, 6), get(2, None, 3, 4)]);
}

#[test]
fn reads_do_not_go_back_in_time() {
    let new_then_old = [
        put(1, 1, 0, 1),
        put(1, 2, 2, 10),
        get(2, Some(2), 3, 4),
        get(3, Some(1), 5, 6),
    ];
    assert_not_linearizable(&new_then_old);
    let old_then_new = [
        put(1, 1, 0, 1),
        put(1, 2, 2, 10),
        get(2, Some(1), 3, 4),
        get(3, Some(2), 5, 6),
    ];
    assert_linearizable(&old_then_new);
}

#[test]
fn intervals_that_touch_are_concurrent() {
    // The read completes at 5, the instant the write is invoked, so either may go first.
    assert_linearizable(&[get(1, Some(1), 0, 5), put(2, 1, 5, 6)]);
    assert_not_linearizable(&[get(1, Some(1), 0, 4), put(2, 1, 5, 6)]);
}

#[test]
fn cas_must_swap_exactly_when_the_expected_value_is_current() {
    assert_not_linearizable(&[put(1, 1, 0, 1), cas(2, Some(2), 3, true, 2, 3)]);
    assert_not_linearizable(&[put(1, 1, 0, 1), cas(2, Some(1), 3, false, 2, 3)]);
    assert_linearizable(&[put(1, 1, 0, 1), cas(2, Some(1), 3, true, 2, 3)]);
}

#[test]
fn two_cas_from_absent_cannot_both_succeed() {
    assert_not_linearizable(&[cas(1, None, 1, true, 0, 1), cas(2, None, 2, true, 2, 3)]);
    assert_not_linearizable(&[cas(1, None, 1, true, 0, 5), cas(2, None, 2, true, 1, 6)]);
    assert_linearizable(&[
        cas(1, None, 1, true, 0, 5),
        cas(2, None, 2, false, 1, 6),
        get(1, Some(1), 7, 8),
    ]);
}

#[test]
fn unknown_put_observed_later_is_accepted() {
    assert_linearizable(&[
        put(1, 1, 0, 1),
        unknown(1, Input::Put(2), 2),
        get(2, Some(2), 50, 51),
    ]);
}

#[test]
fn unknown_put_never_observed_is_accepted() {
    assert_linearizable(&[
        put(1, 1, 0, 1),
        unknown(1, Input::Put(2), 2),
        get(2, Some(1), 50, 51),
        put(2, 3, 52, 53),
        get(2, Some(3), 54, 55),
    ]);
}

#[test]
fn read_cannot_observe_an_operation_invoked_after_it_completed() {
    assert_not_linearizable(&[get(1, Some(2), 0, 1), unknown(2, Input::Put(2), 5)]);
    assert_not_linearizable(&[get(1, Some(2), 0, 1), put(2, 2, 5, 6)]);
}

#[test]
fn unknown_read_is_ignored() {
    assert_linearizable(&[
        put(1, 1, 0, 1),
        unknown(2, Input::Get, 2),
        put(1, 2, 3, 4),
        get(2, Some(2), 5, 6),
    ]);
}

#[test]
fn unknown_operation_takes_effect_at_most_once() {
    // 1 is read, then 2, then 1 again: 1 must be written twice after 2's put began.
    let once = [
        unknown(1, Input::Put(1), 0),
        put(2, 2, 1, 20),
        get(3, Some(1), 3, 4),
        get(3, Some(2), 5, 6),
        get(3, Some(1), 7, 8),
    ];
    assert_not_linearizable(&once);
    let mut twice = once.to_vec();
    twice.push(unknown(4, Input::Put(1), 0));
    assert_linearizable(&twice);
}

#[test]
fn unknown_write_can_explain_a_failed_cas() {
    // Only the unknown put of 2, whose value nobody reads, can make the CAS from 1 fail.
    assert_linearizable(&[
        put(1, 1, 0, 1),
        unknown(1, Input::Put(2), 2),
        cas(2, Some(1), 3, false, 5, 6),
    ]);
    assert_not_linearizable(&[put(1, 1, 0, 1), cas(2, Some(1), 3, false, 5, 6)]);
}

/// A regression test for the subset rule of the search cache (found by an independent
/// review with a brute-force checker): the cache must not skip a configuration because of
/// one reached with a different set of unknown operations.
#[test]
fn the_cache_distinguishes_which_unknown_operations_took_effect() {
    assert_linearizable(&[
        unknown(1, Input::Put(1), 0),
        unknown(
            2,
            Input::Cas {
                expected: None,
                new: 1,
            },
            0,
        ),
        get(3, Some(1), 1, 2),
        put(3, 2, 3, 4),
        get(3, Some(1), 5, 6),
    ]);
}

#[test]
fn unknown_operations_can_chain() {
    // An unknown put enables an unknown CAS, whose result a read then sees.
    let cas_from_1 = Input::Cas {
        expected: Some(1),
        new: 2,
    };
    assert_linearizable(&[
        unknown(1, Input::Put(1), 0),
        unknown(2, cas_from_1, 1),
        get(3, Some(2), 5, 6),
    ]);
    assert_not_linearizable(&[unknown(2, cas_from_1, 1), get(3, Some(2), 5, 6)]);
}

#[test]
fn violation_is_reported_on_its_own_key() {
    let history = [
        on_key(2, get(2, None, 6, 7)),
        on_key(1, put(1, 1, 0, 1)),
        on_key(3, get(3, None, 0, 9)),
        on_key(2, put(1, 1, 2, 3)),
        on_key(1, get(2, Some(1), 4, 5)),
    ];
    let error = assert_not_linearizable(&history);
    assert_eq!(error.key, 2);
    assert_eq!(error.operations.len(), 2);
    let report = error.to_string();
    assert!(
        report.starts_with("key 2 is not linearizable: no linearization exists"),
        "{report}"
    );
    assert!(
        report.contains("\n  #0 [2, 3] client 1: put(1) -> ok"),
        "{report}"
    );
    assert!(
        report.contains("\n  #1 [6, 7] client 2: get -> absent"),
        "{report}"
    );
    assert!(
        report.contains("lets #1 ([6, 7] client 2: get -> absent) take effect"),
        "{report}"
    );
    // Without the put on key 2, the same read is fine.
    assert_linearizable(&[
        history[0].clone(),
        history[1].clone(),
        history[2].clone(),
        history[4].clone(),
    ]);
}

#[test]
fn exhausted_search_budget_is_a_failure() {
    let mut rng = XorShift::new(11);
    let history = random_history(&mut rng, 1, &Workload::long(40, 3));
    let tight_budgets = [
        Budget {
            configurations_max: 10,
            events_scanned_max: u64::MAX,
        },
        Budget {
            configurations_max: u64::MAX,
            events_scanned_max: 10,
        },
    ];
    for budget in tight_budgets {
        let error = check_history_within(&history, budget).expect_err("the budget is too small");
        assert_eq!(error.key, 1);
        assert!(
            error.explanation.starts_with("search budget exhausted"),
            "{error}"
        );
    }
    assert_linearizable(&history);
}

#[test]
fn long_random_histories_are_accepted_and_a_corrupted_read_is_rejected() {
    // 5 clients; 1000 or 2000 operations on one key; some with unknown outcomes.
    for (seed, operations_per_client, unknown_percent) in [(1, 200, 0), (2, 200, 3), (3, 400, 5)] {
        let mut rng = XorShift::new(seed);
        let workload = Workload::long(operations_per_client, unknown_percent);
        let mut history = random_history(&mut rng, 7, &workload);
        assert_linearizable(&history);

        let reads: Vec<usize> = history
            .iter()
            .enumerate()
            .filter(|(_, operation)| matches!(operation.output, Output::Get(_)))
            .map(|(slot, _)| slot)
            .collect();
        // Written values are small and distinct, so this one is never written.
        history[reads[reads.len() / 2]].output = Output::Get(Some(u64::MAX));
        let error = assert_not_linearizable(&history);
        assert_eq!(error.key, 7);
    }
}

#[test]
fn agrees_with_exhaustive_search_on_small_histories() {
    let mut rng = XorShift::new(5);
    let mut verdicts = [0_u32; 2];
    for _ in 0..600 {
        let workload = Workload {
            clients: 3,
            operations_per_client: 1 + rng.below(3),
            distinct_values: (rng.below(2) == 0).then_some(3),
            unknown_percent: 30,
            duration_max: 6,
        };
        let mut history = random_history(&mut rng, 1, &workload);
        if rng.below(2) == 0 {
            perturb(&mut rng, &mut history);
        }
        let expected = is_linearizable_by_exhaustive_search(&history);
        assert_eq!(check_history(&history).is_ok(), expected, "{history:#?}");
        verdicts[usize::from(expected)] += 1;
    }
    assert!(
        verdicts[0] >= 30,
        "too few histories were not linearizable: {verdicts:?}"
    );
    assert!(
        verdicts[1] >= 30,
        "too few histories were linearizable: {verdicts:?}"
    );
}

/// The definition, tried on every order: each operation takes effect after every operation
/// that completed before it was invoked, and the register answers as recorded.
fn is_linearizable_by_exhaustive_search(history: &[Operation]) -> bool {
    fn extend(history: &[Operation], done: &mut [bool], state: State) -> bool {
        if done.iter().all(|&placed| placed) {
            return true;
        }
        for (next, operation) in history.iter().enumerate() {
            if done[next] {
                continue;
            }
            let must_wait = history.iter().zip(done.iter()).any(|(other, &other_done)| {
                !other_done
                    && other
                        .complete
                        .is_some_and(|complete| complete < operation.invoke)
            });
            if must_wait {
                continue;
            }
            if let Some(state_after) = apply(state, operation.input, operation.output) {
                done[next] = true;
                if extend(history, done, state_after) {
                    return true;
                }
                done[next] = false;
            }
        }
        false
    }
    extend(history, &mut vec![false; history.len()], None)
}

/// Xorshift64 (Marsaglia, 2003): tiny and seeded, so the tests replay exactly.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        // Zero is a fixed point; the multiplication spreads small seeds over the bits.
        XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform enough in `[0, bound)`.
    fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    fn below_usize(&mut self, bound: usize) -> usize {
        let bound = u64::try_from(bound).expect("usize fits in u64");
        usize::try_from(self.below(bound)).expect("below a usize bound")
    }
}

struct Workload {
    clients: u64,
    /// Each client runs its operations one after another.
    operations_per_client: u64,
    /// `Some(n)`: written values are drawn from `1..=n`. `None`: every write writes a new one.
    distinct_values: Option<u64>,
    unknown_percent: u64,
    duration_max: u64,
}

impl Workload {
    fn long(operations_per_client: u64, unknown_percent: u64) -> Workload {
        Workload {
            clients: 5,
            operations_per_client,
            distinct_values: None,
            unknown_percent,
            duration_max: 20,
        }
    }
}

/// An operation before its outcome is known.
struct Planned {
    client: u64,
    invoke: u64,
    complete: u64,
    /// The instant at which the operation takes effect on the register.
    point: u64,
    /// 0 to 3: put; 4 to 6: get; 7 to 9: compare-and-set.
    kind: u64,
    unknown: bool,
    takes_effect: bool,
}

/// A linearizable history of one key. Each operation takes effect on a real register at a
/// random instant inside its interval. An unknown operation takes effect at some instant
/// after its invocation (possibly after the client gave up) or not at all.
fn random_history(rng: &mut XorShift, key: u64, workload: &Workload) -> Vec<Operation> {
    let mut plans = Vec::new();
    for client in 0..workload.clients {
        let mut time = rng.below(5);
        for _ in 0..workload.operations_per_client {
            let invoke = time;
            let duration = rng.below(workload.duration_max);
            let complete = invoke + duration;
            let unknown = rng.below(100) < workload.unknown_percent;
            let point = if unknown {
                invoke + rng.below(3 * duration + 1)
            } else {
                invoke + rng.below(duration + 1)
            };
            let takes_effect = !unknown || rng.below(2) == 0;
            let kind = rng.below(10);
            plans.push(Planned {
                client,
                invoke,
                complete,
                point,
                kind,
                unknown,
                takes_effect,
            });
            time = complete + rng.below(3);
        }
    }
    // Stable: a client's operations that take effect at the same instant keep their order.
    plans.sort_by_key(|plan| (plan.point, plan.client));

    let mut state: State = None;
    let mut written: Vec<u64> = Vec::new();
    let mut fresh = 0;
    let mut history = Vec::with_capacity(plans.len());
    for plan in plans {
        let (input, output) = match plan.kind {
            0..=3 => {
                let value = next_value(rng, &mut fresh, workload.distinct_values);
                written.push(value);
                if plan.takes_effect {
                    state = Some(value);
                }
                (Input::Put(value), Output::Put)
            }
            4..=6 => (Input::Get, Output::Get(state)),
            _ => {
                let expected = match rng.below(4) {
                    0 | 1 => state,
                    2 => None,
                    _ if written.is_empty() => None,
                    _ => Some(written[rng.below_usize(written.len())]),
                };
                let new = next_value(rng, &mut fresh, workload.distinct_values);
                written.push(new);
                let swapped = state == expected;
                if plan.takes_effect && swapped {
                    state = Some(new);
                }
                (Input::Cas { expected, new }, Output::Cas(swapped))
            }
        };
        history.push(Operation {
            client: plan.client,
            key,
            input,
            output: if plan.unknown {
                Output::Unknown
            } else {
                output
            },
            invoke: plan.invoke,
            complete: (!plan.unknown).then_some(plan.complete),
        });
    }
    history
}

fn next_value(rng: &mut XorShift, fresh: &mut u64, distinct_values: Option<u64>) -> u64 {
    match distinct_values {
        Some(count) => 1 + rng.below(count),
        None => {
            *fresh += 1;
            *fresh
        }
    }
}

/// Changes one answer, which may or may not break linearizability.
fn perturb(rng: &mut XorShift, history: &mut [Operation]) {
    let answered: Vec<usize> = history
        .iter()
        .enumerate()
        .filter(|(_, operation)| matches!(operation.output, Output::Get(_) | Output::Cas(_)))
        .map(|(slot, _)| slot)
        .collect();
    if answered.is_empty() {
        return;
    }
    let operation = &mut history[answered[rng.below_usize(answered.len())]];
    operation.output = match operation.output {
        Output::Get(_) => Output::Get([None, Some(1), Some(2), Some(3)][rng.below_usize(4)]),
        Output::Cas(swapped) => Output::Cas(!swapped),
        output @ (Output::Put | Output::Unknown) => output,
    };
}
