//! The linearizability checker for the key-value histories that the simulator's clients record.
//!
//! Each key is a register holding an `Option<u64>` (`None` means absent, the initial value). `Put`
//! writes it, `Get` reads it, and compare-and-set writes it only if it holds the expected value.
//! A history is linearizable if each operation can be given one instant inside its interval (from
//! `invoke` to `complete`) so that, taken in the order of those instants, the operations are a
//! legal sequential run of the register. Linearizability is local (Herlihy and Wing, 1990): a
//! history is linearizable if and only if each key's sub-history is. So `check_history` checks
//! the keys one at a time and reports the first that fails.
//!
//! An operation whose outcome the client never learned (a timeout, a crash) never completes. It
//! may take effect at any instant after its invocation, or never, and never is the same as last.
//!
//! # Search
//!
//! The search is the depth-first one of Wing and Gong (1993), with Lowe's memoization (2017), in
//! the shape Porcupine gives it. The invocations and completions, sorted by time, form a doubly
//! linked list. At equal times invocations come first, so intervals that touch overlap. The search
//! lets a pending operation take effect if it was invoked before the first pending completion,
//! unlinks its events, and starts again from the head. If the scan reaches a completion, that
//! operation's deadline has passed, so the search backtracks. The stack is a `Vec`, so long
//! histories do not overflow the thread's stack. A configuration is the set of operations that
//! took effect plus the register's value. The search never explores a configuration twice: it
//! failed the first time, and it would fail again.
//!
//! # Operations with unknown outcomes
//!
//! An unknown write stays pending forever, so a plain search tries it at every point and the
//! configurations multiply with every subset of such writes. The rules below keep the search exact
//! and small. Each holds because any linearization can be rearranged into one that obeys it, and
//! the search only looks for those:
//!
//! 1. An unknown read changes nothing, so it is dropped. Unknown operations get no completion
//!    event, and their invocations sit in a second list. The search ends once every completed
//!    operation has taken effect; the unknown operations left over go last.
//! 2. No operation can tell apart two values that no read returns and no compare-and-set
//!    expects. Every write of such a value writes one stand-in value instead.
//! 3. An unknown operation takes effect only to enable the next one. It must change the value, and
//!    the next operation must be either a completed one that would be illegal without it or an
//!    unknown compare-and-set that it enables. Any other unknown operation can move to the end, or
//!    swap places with the operation after it.
//! 4. Unknown operations with the same input are interchangeable, so they take effect in order of
//!    invocation. A configuration is also skipped if an earlier one failed with the same completed
//!    operations and value but a subset of its unknown ones, because the extra unknown operations
//!    could just be kept for later. Completed operations are tried before unknown ones, so the
//!    smaller subsets come first.
//!
//! The self-test compares the verdict with an exhaustive search on hundreds of small random
//! histories that are full of unknown operations and repeated values.
//!
//! # Budget
//!
//! Deciding linearizability is NP-complete (Gibbons and Korach, 1997). The search of one key
//! stops after `SEARCH_BUDGET` is spent and reports "search budget exhausted". This is a
//! failure: the checker never passes a history it did not finish checking.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// The default limits on the search of one key.
const SEARCH_BUDGET: Budget = Budget {
    configurations_max: 5_000_000,
    events_scanned_max: 1_000_000_000,
};

/// How many of the last operations of the deepest partial linearization a report names.
const RECENT_MAX: usize = 5;

/// The end of a linked list.
const NIL: usize = usize::MAX;

/// The head of the list that holds the calls and returns of completed operations.
const MAIN_HEAD: usize = 0;

/// The head of the list that holds the calls of operations with unknown outcomes.
const UNKNOWN_HEAD: usize = 1;

/// The register's value: `None` is absent.
type State = Option<u64>;

/// What a client asked for, on one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Input {
    /// Write the value.
    Put(u64),
    /// Read the value.
    Get,
    /// Write `new` if the register holds `expected` (`None`: if it is absent).
    Cas { expected: Option<u64>, new: u64 },
}

/// What the client was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// The write took effect.
    Put,
    /// The value read (`None`: absent).
    Get(Option<u64>),
    /// Whether the compare-and-set wrote.
    Cas(bool),
    /// The client never learned the outcome (timeout, crash). The operation may have taken
    /// effect at any instant after its invocation, or never.
    Unknown,
}

/// One client operation on one key, with the interval in which it ran.
#[derive(Clone, Debug)]
pub(crate) struct Operation {
    /// The client that sent it, for reports.
    pub(crate) client: u64,
    /// The key it reads or writes.
    pub(crate) key: u64,
    /// What the client asked for.
    pub(crate) input: Input,
    /// What the client was told.
    pub(crate) output: Output,
    /// When the client sent it, on a clock shared by the whole history.
    pub(crate) invoke: u64,
    /// When the client learned the outcome. `None` exactly when `output` is `Unknown`: the
    /// operation never completes.
    pub(crate) complete: Option<u64>,
}

/// A key whose history has no linearization, or whose check ran out of budget.
#[derive(Debug)]
pub(crate) struct NotLinearizable {
    /// The first failing key, in key order.
    pub(crate) key: u64,
    /// That key's whole history, sorted by invocation time; reports number operations by their
    /// position here (`#0`, `#1`, ...).
    pub(crate) operations: Vec<Operation>,
    /// Why the check failed: how far the search got and which operation it could not place, or
    /// that the search budget ran out.
    pub(crate) explanation: String,
}

/// Checks that `operations` (any keys, in any order) are linearizable, key by key.
///
/// Returns the first key (in key order) whose history has no linearization, or whose search ran
/// out of budget.
///
/// # Panics
///
/// If an operation is malformed: an output that does not answer its input, `complete` set
/// although the output is `Unknown` (or the reverse), or a completion before the invocation.
/// These are bugs in the code that recorded the history.
pub(crate) fn check_history(operations: &[Operation]) -> Result<(), NotLinearizable> {
    check_history_within(operations, SEARCH_BUDGET)
}

/// Limits on the search of one key. Past either one, the key fails as unchecked.
#[derive(Clone, Copy)]
struct Budget {
    /// Configurations entered. Each one is remembered, so this bounds memory (around 100 bytes
    /// each for histories of a few thousand operations).
    configurations_max: u64,
    /// Events examined. This bounds time.
    events_scanned_max: u64,
}

fn check_history_within(operations: &[Operation], budget: Budget) -> Result<(), NotLinearizable> {
    let mut histories: BTreeMap<u64, Vec<Operation>> = BTreeMap::new();
    for operation in operations {
        assert_well_formed(operation);
        histories
            .entry(operation.key)
            .or_default()
            .push(operation.clone());
    }
    for (key, mut history) in histories {
        // The sort is stable and its key total, so the `#` numbers in reports do not change
        // between runs.
        history.sort_by_key(|operation| {
            (
                operation.invoke,
                operation.complete.unwrap_or(u64::MAX),
                operation.client,
            )
        });
        let mut search = Search::new(&history);
        if let Err(explanation) = search.run(&history, budget) {
            return Err(NotLinearizable {
                key,
                operations: history,
                explanation,
            });
        }
    }
    Ok(())
}

fn assert_well_formed(operation: &Operation) {
    let answers = matches!(
        (operation.input, operation.output),
        (_, Output::Unknown)
            | (Input::Put(_), Output::Put)
            | (Input::Get, Output::Get(_))
            | (Input::Cas { .. }, Output::Cas(_))
    );
    assert!(
        answers,
        "{operation:?}: the output does not answer the input"
    );
    assert_eq!(
        operation.complete.is_none(),
        operation.output == Output::Unknown,
        "{operation:?}: `complete` must be None exactly when the output is Unknown"
    );
    if let Some(complete) = operation.complete {
        assert!(
            operation.invoke <= complete,
            "{operation:?}: completes before it is invoked"
        );
    }
}

/// The register's sequential specification: the state after `input`, if `output` is a legal
/// answer to it in `state`. Any answer is legal for an unknown output.
fn apply(state: State, input: Input, output: Output) -> Option<State> {
    match (input, output) {
        (Input::Put(value), Output::Put | Output::Unknown) => Some(Some(value)),
        (Input::Get, Output::Get(seen)) => (seen == state).then_some(state),
        (Input::Get, Output::Unknown) => Some(state),
        (Input::Cas { expected, new }, Output::Cas(swapped)) => {
            let swaps = state == expected;
            (swaps == swapped).then_some(if swaps { Some(new) } else { state })
        }
        (Input::Cas { expected, new }, Output::Unknown) => {
            Some(if state == expected { Some(new) } else { state })
        }
        (input, output) => unreachable!("{output:?} does not answer {input:?}"),
    }
}

/// `apply`, restricted to the linearizations the search looks for (rule 3 of the module docs).
/// `unknown_from` is set when the previous operation to take effect was an unknown one, and it
/// holds the state that operation started from.
fn apply_in_normal_form(entry: &Entry, state: State, unknown_from: Option<State>) -> Option<State> {
    let state_after = apply(state, entry.input, entry.output)?;
    let allowed = match (entry.output, unknown_from) {
        // An unknown operation that changes nothing can wait until the end.
        (Output::Unknown, None) => state_after != state,
        // A put right after an unknown operation hides it: the earlier one can wait.
        (Output::Unknown, Some(_)) => state_after != state && !matches!(entry.input, Input::Put(_)),
        (_, None) => true,
        // If this operation was legal before the unknown one, then the two can swap places (the
        // unknown one then goes after it) or the unknown one can wait until the end.
        (_, Some(state_before_unknown)) => {
            apply(state_before_unknown, entry.input, entry.output).is_none()
        }
    };
    allowed.then_some(state_after)
}

/// The values that some operation compares with the register: every value a read returned and
/// every value a compare-and-set expected.
fn observed_values(history: &[Operation]) -> HashSet<u64> {
    let mut observed = HashSet::new();
    for operation in history {
        if let Output::Get(Some(value)) = operation.output {
            observed.insert(value);
        }
        if let Input::Cas {
            expected: Some(value),
            ..
        } = operation.input
        {
            observed.insert(value);
        }
    }
    observed
}

/// One operation that the search places, in invocation order.
#[derive(Clone, Copy)]
struct Entry {
    /// The operation's position in the key's history: its `#` number in reports.
    slot: usize,
    /// The input, with unobserved written values replaced by the stand-in (rule 2).
    input: Input,
    output: Output,
    invoke: u64,
    complete: Option<u64>,
    /// The operation's bit in `completed_done` or in `unknown_done`.
    bit: usize,
    /// For an unknown operation, the previous unknown one with the same input. That one must
    /// take effect first (rule 4).
    twin_before: Option<usize>,
    call_node: usize,
    /// `None` for an unknown operation, which never completes.
    return_node: Option<usize>,
}

#[derive(Clone, Copy)]
enum Event {
    Head,
    Call(usize),
    Return(usize),
}

#[derive(Clone, Copy)]
struct Node {
    event: Event,
    /// The position of the event in time order.
    rank: usize,
    prev: usize,
    next: usize,
}

/// Two doubly linked lists threaded through one `Vec`, each sorted by time. Unlinking and
/// relinking nodes in last-in first-out order restores every link (Knuth's dancing links).
struct EventLists {
    nodes: Vec<Node>,
}

impl EventLists {
    fn after(&self, node: usize) -> usize {
        self.nodes[node].next
    }

    fn rank(&self, node: usize) -> usize {
        self.nodes[node].rank
    }

    fn unlink(&mut self, node: usize) {
        let Node { prev, next, .. } = self.nodes[node];
        self.nodes[prev].next = next;
        if next != NIL {
            self.nodes[next].prev = prev;
        }
    }

    fn relink(&mut self, node: usize) {
        let Node { prev, next, .. } = self.nodes[node];
        self.nodes[prev].next = node;
        if next != NIL {
            self.nodes[next].prev = node;
        }
    }
}

/// A fixed-size set of small integers.
struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    fn new(len: usize) -> Bitset {
        Bitset {
            words: vec![0; len.div_ceil(64)],
        }
    }

    fn contains(&self, bit: usize) -> bool {
        self.words[bit / 64] & (1_u64 << (bit % 64)) != 0
    }

    fn insert(&mut self, bit: usize) {
        self.words[bit / 64] |= 1_u64 << (bit % 64);
    }

    fn remove(&mut self, bit: usize) {
        self.words[bit / 64] &= !(1_u64 << (bit % 64));
    }
}

fn is_subset(small: &[u64], large: &[u64]) -> bool {
    small
        .iter()
        .zip(large)
        .all(|(small_word, large_word)| small_word & !large_word == 0)
}

/// A configuration, minus its unknown operations, which are compared by inclusion instead
/// (rule 4).
#[derive(PartialEq, Eq, Hash)]
struct CacheKey {
    /// The set of completed operations that took effect. It is stored as the number of leading
    /// full words, then the remaining words up to the last non-zero one. The set mostly grows
    /// from the front, so this stays short.
    full_words: usize,
    rest: Box<[u64]>,
    state: State,
    /// The state the last operation started from, if it was an unknown one. This changes what
    /// may come next (rule 3).
    unknown_from: Option<State>,
}

impl CacheKey {
    fn new(completed_done: &Bitset, state: State, unknown_from: Option<State>) -> CacheKey {
        let words = &completed_done.words;
        let full_words = words.iter().take_while(|&&word| word == u64::MAX).count();
        let end = words
            .iter()
            .rposition(|&word| word != 0)
            .map_or(0, |last| last + 1);
        let rest = Box::from(&words[full_words..end.max(full_words)]);
        CacheKey {
            full_words,
            rest,
            state,
            unknown_from,
        }
    }
}

#[derive(Clone, Copy)]
struct Frame {
    /// The entry that took effect.
    id: usize,
    state_before: State,
    /// The phase in which the entry was found, to resume the scan there after backtracking.
    barrier: Option<usize>,
}

/// The deepest point the search reached, for the report.
struct DeadEnd {
    /// How many completed operations had taken effect.
    placed: usize,
    state: State,
    /// The entry whose completion stopped the search.
    blocked: usize,
    /// The history slots of the last operations that took effect, oldest first.
    recent: Vec<usize>,
}

/// The search of one key's history.
struct Search {
    entries: Vec<Entry>,
    events: EventLists,
    /// The stand-in for every value that no operation compares with (rule 2).
    unobserved_value: u64,
    completed_count: usize,
    /// Completed operations that have not taken effect yet. The search succeeds at zero.
    completed_pending: usize,
    state: State,
    stack: Vec<Frame>,
    completed_done: Bitset,
    unknown_done: Bitset,
    /// For each configuration entered, the sets of unknown operations it was entered with.
    cache: HashMap<CacheKey, Vec<Box<[u64]>>>,
    configurations: u64,
    dead_end: Option<DeadEnd>,
}

impl Search {
    /// Prepares the search of `history`, one key's operations sorted by invocation.
    fn new(history: &[Operation]) -> Search {
        let observed = observed_values(history);
        let unobserved_value = (0_u64..)
            .find(|value| !observed.contains(value))
            .expect("a finite set leaves some u64 out");
        let canonical = |value: u64| {
            if observed.contains(&value) {
                value
            } else {
                unobserved_value
            }
        };

        let mut entries: Vec<Entry> = Vec::with_capacity(history.len());
        let mut completed_count = 0;
        let mut unknown_count = 0;
        let mut last_twin: HashMap<Input, usize> = HashMap::new();
        for (slot, operation) in history.iter().enumerate() {
            // Rule 1: an unknown read changes nothing.
            if operation.input == Input::Get && operation.output == Output::Unknown {
                continue;
            }
            let input = match operation.input {
                Input::Put(value) => Input::Put(canonical(value)),
                Input::Get => Input::Get,
                Input::Cas { expected, new } => Input::Cas {
                    expected,
                    new: canonical(new),
                },
            };
            let id = entries.len();
            let (bit, twin_before) = if operation.complete.is_some() {
                completed_count += 1;
                (completed_count - 1, None)
            } else {
                unknown_count += 1;
                (unknown_count - 1, last_twin.insert(input, id))
            };
            entries.push(Entry {
                slot,
                input,
                output: operation.output,
                invoke: operation.invoke,
                complete: operation.complete,
                bit,
                twin_before,
                call_node: NIL,
                return_node: None,
            });
        }

        // At equal times a call sorts before a return, so touching intervals overlap.
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * entries.len());
        for (id, entry) in entries.iter().enumerate() {
            events.push((entry.invoke, false, id));
            if let Some(complete) = entry.complete {
                events.push((complete, true, id));
            }
        }
        events.sort_unstable();
        let head = Node {
            event: Event::Head,
            rank: 0,
            prev: NIL,
            next: NIL,
        };
        let mut nodes = vec![head; 2];
        let mut tails = [MAIN_HEAD, UNKNOWN_HEAD];
        for (rank, &(_, is_return, id)) in events.iter().enumerate() {
            let list = if entries[id].complete.is_some() {
                MAIN_HEAD
            } else {
                UNKNOWN_HEAD
            };
            let node = nodes.len();
            let event = if is_return {
                Event::Return(id)
            } else {
                Event::Call(id)
            };
            nodes.push(Node {
                event,
                rank,
                prev: tails[list],
                next: NIL,
            });
            nodes[tails[list]].next = node;
            tails[list] = node;
            if is_return {
                entries[id].return_node = Some(node);
            } else {
                entries[id].call_node = node;
            }
        }

        Search {
            entries,
            events: EventLists { nodes },
            unobserved_value,
            completed_count,
            completed_pending: completed_count,
            state: None,
            stack: Vec::new(),
            completed_done: Bitset::new(completed_count),
            unknown_done: Bitset::new(unknown_count),
            cache: HashMap::new(),
            configurations: 0,
            dead_end: None,
        }
    }

    /// Looks for a linearization. On failure, returns the explanation for the report.
    fn run(&mut self, history: &[Operation], budget: Budget) -> Result<(), String> {
        let mut events_scanned: u64 = 0;
        let mut cursor = self.events.after(MAIN_HEAD);
        // `None` while the scan walks the completed operations. `Some(node)` once it has reached
        // the return `node`: the scan then tries the unknown operations invoked before it.
        let mut barrier: Option<usize> = None;
        while self.completed_pending > 0 {
            events_scanned += 1;
            if events_scanned > budget.events_scanned_max
                || self.configurations > budget.configurations_max
            {
                return Err(format!(
                    "search budget exhausted: {} configurations and {events_scanned} scanned \
                     events, against limits of {} and {}. The history could not be checked, \
                     which is a failure, not a pass",
                    self.configurations, budget.configurations_max, budget.events_scanned_max,
                ));
            }
            let candidate = match barrier {
                None => {
                    assert_ne!(cursor, NIL, "a pending completion ends every scan");
                    match self.events.nodes[cursor].event {
                        Event::Call(id) => id,
                        Event::Return(_) => {
                            barrier = Some(cursor);
                            cursor = self.events.after(UNKNOWN_HEAD);
                            continue;
                        }
                        Event::Head => unreachable!("no node links to a list head"),
                    }
                }
                Some(barrier_node) => {
                    if cursor == NIL || self.events.rank(cursor) > self.events.rank(barrier_node) {
                        // Nothing pending can take effect before the operation whose completion
                        // is `barrier_node`.
                        self.note_dead_end(barrier_node);
                        let Some(frame) = self.stack.pop() else {
                            return Err(self.explain_dead_end(history));
                        };
                        cursor = self.undo(frame);
                        barrier = frame.barrier;
                        continue;
                    }
                    match self.events.nodes[cursor].event {
                        Event::Call(id) => id,
                        Event::Return(_) | Event::Head => {
                            unreachable!("the unknown list holds calls only")
                        }
                    }
                }
            };
            if self.try_take_effect(candidate, barrier) {
                cursor = self.events.after(MAIN_HEAD);
                barrier = None;
            } else {
                cursor = self.events.after(cursor);
            }
        }
        Ok(())
    }

    /// The state the last operation started from, if it was an unknown one.
    fn unknown_from(&self) -> Option<State> {
        let frame = self.stack.last()?;
        self.entries[frame.id]
            .complete
            .is_none()
            .then_some(frame.state_before)
    }

    /// Lets entry `id` take effect now, unless the register forbids it, the normal form rules
    /// it out, or the configuration it leads to has already failed.
    fn try_take_effect(&mut self, id: usize, barrier: Option<usize>) -> bool {
        let entry = self.entries[id];
        let unknown = entry.complete.is_none();
        if let Some(twin) = entry.twin_before
            && !self.unknown_done.contains(self.entries[twin].bit)
        {
            return false;
        }
        let Some(state_after) = apply_in_normal_form(&entry, self.state, self.unknown_from())
        else {
            return false;
        };

        if unknown {
            self.unknown_done.insert(entry.bit);
        } else {
            self.completed_done.insert(entry.bit);
        }
        let key = CacheKey::new(
            &self.completed_done,
            state_after,
            unknown.then_some(self.state),
        );
        let entered = self.cache.entry(key).or_default();
        if entered
            .iter()
            .any(|earlier| is_subset(earlier, &self.unknown_done.words))
        {
            if unknown {
                self.unknown_done.remove(entry.bit);
            } else {
                self.completed_done.remove(entry.bit);
            }
            return false;
        }
        entered.push(self.unknown_done.words.clone().into_boxed_slice());
        self.configurations += 1;

        self.stack.push(Frame {
            id,
            state_before: self.state,
            barrier,
        });
        self.state = state_after;
        self.events.unlink(entry.call_node);
        if let Some(return_node) = entry.return_node {
            self.events.unlink(return_node);
            self.completed_pending -= 1;
        }
        true
    }

    /// Takes back the operation of `frame`. Returns the node where the scan resumes.
    fn undo(&mut self, frame: Frame) -> usize {
        let entry = self.entries[frame.id];
        match entry.return_node {
            Some(return_node) => {
                self.events.relink(return_node);
                self.completed_done.remove(entry.bit);
                self.completed_pending += 1;
            }
            None => self.unknown_done.remove(entry.bit),
        }
        self.events.relink(entry.call_node);
        self.state = frame.state_before;
        self.events.after(entry.call_node)
    }

    fn note_dead_end(&mut self, barrier_node: usize) {
        let placed = self.completed_count - self.completed_pending;
        if self
            .dead_end
            .as_ref()
            .is_some_and(|deepest| deepest.placed >= placed)
        {
            return;
        }
        let Event::Return(blocked) = self.events.nodes[barrier_node].event else {
            unreachable!("a barrier is a return");
        };
        let start = self.stack.len().saturating_sub(RECENT_MAX);
        let recent = self.stack[start..]
            .iter()
            .map(|frame| self.entries[frame.id].slot)
            .collect();
        self.dead_end = Some(DeadEnd {
            placed,
            state: self.state,
            blocked,
            recent,
        });
    }

    fn explain_dead_end(&self, history: &[Operation]) -> String {
        let dead_end = self
            .dead_end
            .as_ref()
            .expect("a dead end is noted before the search gives up");
        let recent: Vec<String> = dead_end
            .recent
            .iter()
            .map(|slot| format!("#{slot}"))
            .collect();
        let ending = if recent.is_empty() {
            String::new()
        } else {
            format!(", the last being {}", recent.join(", "))
        };
        let state = match dead_end.state {
            Some(value) if value == self.unobserved_value => String::from("a value nobody reads"),
            state => StateDisplay(state).to_string(),
        };
        let blocked = self.entries[dead_end.blocked].slot;
        format!(
            "no linearization exists. The deepest partial linearization found places {} of the \
             {} completed operations{ending}. The value is then {state}, and no pending \
             operation can take effect next in a way that lets #{blocked} ({}) take effect \
             before it completes",
            dead_end.placed, self.completed_count, history[blocked],
        )
    }
}

/// Shows a register value: a number, or `absent`.
struct StateDisplay(State);

impl fmt::Display for StateDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(value) => write!(f, "{value}"),
            None => f.write_str("absent"),
        }
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Input::Put(value) => write!(f, "put({value})"),
            Input::Get => f.write_str("get"),
            Input::Cas { expected, new } => write!(f, "cas({} -> {new})", StateDisplay(expected)),
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Output::Put => f.write_str("ok"),
            Output::Get(seen) => write!(f, "{}", StateDisplay(seen)),
            Output::Cas(swapped) => write!(f, "{swapped}"),
            Output::Unknown => f.write_str("unknown"),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, ", self.invoke)?;
        match self.complete {
            Some(complete) => write!(f, "{complete}")?,
            None => f.write_str("-")?,
        }
        write!(
            f,
            "] client {}: {} -> {}",
            self.client, self.input, self.output
        )
    }
}

impl fmt::Display for NotLinearizable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "key {} is not linearizable: {}",
            self.key, self.explanation
        )?;
        write!(f, "history of key {}, sorted by invocation time:", self.key)?;
        for (slot, operation) in self.operations.iter().enumerate() {
            write!(f, "\n  #{slot} {operation}")?;
        }
        Ok(())
    }
}

impl std::error::Error for NotLinearizable {}

#[cfg(test)]
mod tests;
