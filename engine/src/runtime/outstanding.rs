//! What a shard thread owes its callers: proposals waiting for their entry to apply, reads
//! waiting for their index, and the accounting around them (the proposal memory budget
//! and the proposal-to-apply latency histogram).
//!
//! The budget is shared with the embedder threads: [`ProposalBudget::reserve`] runs on the
//! caller's thread before a proposal is even sent to the shard, so a full shard refuses
//! with `Busy` at once instead of letting its command channel grow; the shard releases the
//! bytes when the proposal is decided (applied, superseded, refused or failed).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::api::RequestError;
use crate::raft::{LogIndex, Term};
use crate::runtime::oneshot;
use crate::runtime::wire::GroupId;

/// Bytes of proposals accepted by one shard and not yet decided, and their maximum.
#[derive(Clone, Debug)]
pub(crate) struct ProposalBudget {
    used: Arc<AtomicUsize>,
    max: usize,
}

impl ProposalBudget {
    pub(crate) fn new(max: usize) -> ProposalBudget {
        ProposalBudget {
            used: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// Takes `bytes` from the budget, or refuses with `Busy` when they do not fit.
    pub(crate) fn reserve(&self, bytes: usize) -> Result<(), RequestError> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let wanted = used.saturating_add(bytes);
            if wanted > self.max {
                return Err(RequestError::Busy {
                    pending_bytes: used,
                    max_bytes: self.max,
                });
            }
            match self.used.compare_exchange_weak(
                used,
                wanted,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }

    /// Gives `bytes` back.
    pub(crate) fn release(&self, bytes: usize) {
        let before = self.used.fetch_sub(bytes, Ordering::Relaxed);
        debug_assert!(before >= bytes, "released more than reserved");
    }

    /// Bytes reserved now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// The outcome of each proposal of a batch, in order.
pub(crate) type BatchOutcomes = Vec<Result<Vec<u8>, RequestError>>;

/// The outcomes of one batch of proposals, sent when the last one is known.
pub(crate) struct BatchReply {
    outcomes: Vec<Option<Result<Vec<u8>, RequestError>>>,
    remaining: usize,
    reply: Option<oneshot::Sender<BatchOutcomes>>,
}

impl BatchReply {
    /// A reply for `count` proposals; an empty batch is answered at once.
    pub(crate) fn new(count: usize, reply: oneshot::Sender<BatchOutcomes>) -> BatchReply {
        let mut batch = BatchReply {
            outcomes: (0..count).map(|_| None).collect(),
            remaining: count,
            reply: Some(reply),
        };
        if count == 0
            && let Some(reply) = batch.reply.take()
        {
            reply.send(Vec::new());
        }
        batch
    }

    fn decide(&mut self, slot: usize, outcome: Result<Vec<u8>, RequestError>) {
        assert!(self.outcomes[slot].is_none(), "an outcome decided twice");
        self.outcomes[slot] = Some(outcome);
        self.remaining -= 1;
        if self.remaining == 0 {
            let outcomes = self
                .outcomes
                .drain(..)
                .map(|o| o.expect("all decided"))
                .collect();
            if let Some(reply) = self.reply.take() {
                reply.send(outcomes);
            }
        }
    }
}

/// Who waits for a proposal's outcome.
pub(crate) enum Waiter {
    One(oneshot::Sender<Result<Vec<u8>, RequestError>>),
    InBatch {
        batch: Rc<RefCell<BatchReply>>,
        slot: usize,
    },
}

impl Waiter {
    pub(crate) fn decide(self, outcome: Result<Vec<u8>, RequestError>) {
        match self {
            Waiter::One(reply) => reply.send(outcome),
            Waiter::InBatch { batch, slot } => batch.borrow_mut().decide(slot, outcome),
        }
    }
}

/// A proposal taken by the core, waiting for its index to be decided.
struct WaitingProposal {
    term: Term,
    waiter: Waiter,
    bytes: usize,
    started: Instant,
}

/// A read running on the shard thread once its index is applied (`Err`: refused, or the
/// group is gone).
pub(crate) type ReadFn<M> = Box<dyn FnOnce(Result<&M, RequestError>) + Send>;

/// Everything a shard thread owes its callers. Dropping it (shutdown) answers every
/// proposal and read with `Shutdown`: their senders are dropped.
pub(crate) struct Outstanding<M> {
    proposals: HashMap<(GroupId, LogIndex), WaitingProposal>,
    reads: HashMap<u64, (GroupId, ReadFn<M>)>,
    next_read_ctx: u64,
    budget: ProposalBudget,
    /// Microseconds from a proposal reaching the shard to its answer.
    latency: Histogram<u64>,
}

impl<M> Outstanding<M> {
    pub(crate) fn new(budget: ProposalBudget) -> Outstanding<M> {
        Outstanding {
            proposals: HashMap::new(),
            reads: HashMap::new(),
            next_read_ctx: 1,
            budget,
            latency: Histogram::new(3).expect("3 significant digits are valid"),
        }
    }

    /// Decides a proposal that never reached the core (refused, or unknown group).
    pub(crate) fn refuse(&mut self, waiter: Waiter, bytes: usize, error: RequestError) {
        self.budget.release(bytes);
        waiter.decide(Err(error));
    }

    /// Records a proposal the core took at (`group`, `index`, `term`).
    pub(crate) fn proposed(
        &mut self,
        group: GroupId,
        index: LogIndex,
        term: Term,
        waiter: Waiter,
        bytes: usize,
        started: Instant,
    ) {
        let waiting = WaitingProposal {
            term,
            waiter,
            bytes,
            started,
        };
        if let Some(older) = self.proposals.insert((group, index), waiting) {
            // Proposed in an earlier term at this index: it can never apply now.
            self.settle(older, Err(RequestError::Superseded));
        }
    }

    /// The proposal at (`group`, `index`) of `term` was decided.
    pub(crate) fn decide(
        &mut self,
        group: GroupId,
        index: LogIndex,
        term: Term,
        outcome: Result<Vec<u8>, RequestError>,
    ) {
        // The waiter of an older proposal at this index was answered when the newer one
        // took its place (`proposed`); only the proposal of the same term is decided here.
        if self
            .proposals
            .get(&(group, index))
            .is_some_and(|waiting| waiting.term == term)
        {
            let waiting = self.proposals.remove(&(group, index)).expect("checked");
            self.settle(waiting, outcome);
        }
    }

    fn settle(&mut self, waiting: WaitingProposal, outcome: Result<Vec<u8>, RequestError>) {
        self.budget.release(waiting.bytes);
        let micros = u64::try_from(waiting.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(micros);
        waiting.waiter.decide(outcome);
    }

    /// A context for a new read of `group`, remembered with `read`.
    pub(crate) fn add_read(&mut self, group: GroupId, read: ReadFn<M>) -> u64 {
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        self.reads.insert(ctx, (group, read));
        ctx
    }

    /// Takes the read of `ctx` back (to answer it).
    pub(crate) fn take_read(&mut self, ctx: u64) -> Option<(GroupId, ReadFn<M>)> {
        self.reads.remove(&ctx)
    }

    /// Fails everything waiting on `group` (removed) with `GroupNotFound`.
    pub(crate) fn fail_group(&mut self, group: GroupId) {
        let keys: Vec<(GroupId, LogIndex)> = self
            .proposals
            .keys()
            .filter(|(g, _)| *g == group)
            .copied()
            .collect();
        for key in keys {
            let waiting = self.proposals.remove(&key).expect("listed");
            self.settle(waiting, Err(RequestError::GroupNotFound(group)));
        }
        let ctxs: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, (g, _))| *g == group)
            .map(|(&ctx, _)| ctx)
            .collect();
        for ctx in ctxs {
            let (_, read) = self.reads.remove(&ctx).expect("listed");
            read(Err(RequestError::GroupNotFound(group)));
        }
    }

    /// The proposal-to-answer latency so far, in microseconds.
    pub(crate) fn latency(&self) -> &Histogram<u64> {
        &self.latency
    }

    /// Proposal bytes waiting for a decision on this shard.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.budget.used()
    }
}

impl<M> Drop for Outstanding<M> {
    fn drop(&mut self) {
        // Shutdown: the reserved bytes go back (a new engine would start from zero anyway,
        // but an embedder keeps its `Engine` after `shutdown` and its proposals must fail
        // with `Shutdown`, not `Busy`).
        for (_, waiting) in self.proposals.drain() {
            self.budget.release(waiting.bytes);
        }
        for (_, (_, read)) in self.reads.drain() {
            read(Err(RequestError::Shutdown));
        }
    }
}
