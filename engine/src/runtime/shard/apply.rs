//! What happens to a group's proposals as its log is applied: an applied entry decides
//! the proposals waiting at or below it (`apply`), a snapshot that replaces the log
//! decides those it overtook (`snapshot_decides_waiting`), a replica removed from its group
//! gives up on those it can no longer learn about (`fail_waiting_if_removed`); and taking
//! a snapshot of a group's state machine (`take_snapshot`).

use super::{Completion, ShardError, Slot, Unapplied};
use crate::raft::Entry;
use crate::raft::{EntryKind, LogIndex, NodeId, Proposed, Term};
use crate::runtime::snapshots::SnapshotStore;
use crate::runtime::state_machine::StateMachine;
use crate::runtime::wire::GroupId;

/// Applies one committed entry and completes the proposals it decides.
pub(super) fn apply<M: StateMachine>(
    slot: &mut Slot<M>,
    group: GroupId,
    entry: &Entry,
    completions: &mut Vec<Completion>,
) {
    let result = match entry.kind {
        EntryKind::Normal => Some(slot.machine.apply(entry.index.0, &entry.data)),
        EntryKind::Noop => None,
        // A membership change's proposer learns it is applied (an empty result).
        EntryKind::Configuration => Some(Vec::new()),
        EntryKind::Verify => {
            let hash = slot.machine.state_hash();
            slot.raft.on_state_hash(entry.index, hash);
            None
        }
    };
    // A proposal at this index succeeded iff the entry has its term; one at a later index
    // with a lower term failed for good (Leader Completeness: see `Proposed`). Proposals
    // are made in terms at least as high as every term already applied, so the sweep of
    // later indexes is needed only when the applied term rises.
    let decided: Vec<(LogIndex, Term)> = if entry.term > slot.applied_term {
        slot.applied_term = entry.term;
        slot.waiting
            .range(entry.index..)
            .filter(|&(&index, &term)| index == entry.index || term < entry.term)
            .map(|(&index, &term)| (index, term))
            .collect()
    } else {
        slot.waiting
            .get(&entry.index)
            .map(|&term| (entry.index, term))
            .into_iter()
            .collect()
    };
    for (index, term) in decided {
        slot.waiting.remove(&index);
        let outcome = match &result {
            Some(result) if index == entry.index && term == entry.term => Ok(result.clone()),
            _ => Err(Unapplied::Superseded),
        };
        completions.push(Completion {
            group,
            proposed: Proposed { index, term },
            outcome,
        });
    }
}

/// Snapshots `slot`'s state machine at its applied index into `store`, durably, then
/// compacts the core's log; the log's compaction mark goes with the next record. Returns
/// whether a snapshot was taken (a joining replica that does not know its configuration
/// yet takes none).
pub(super) fn take_snapshot<M: StateMachine>(
    slot: &mut Slot<M>,
    group: GroupId,
    store: &mut SnapshotStore,
    compactions: &mut Vec<(GroupId, LogIndex)>,
) -> Result<bool, ShardError> {
    let applied = slot.raft.status().applied;
    let Ok(compaction) = slot.raft.compact(applied) else {
        return Ok(false);
    };
    let data = slot.machine.snapshot();
    store.save(group, &compaction.snapshot, &data)?;
    compactions.push((group, compaction.log_compacted_through));
    Ok(true)
}

/// A snapshot through (`index`, `term`) replaced this replica's log and state machine:
/// proposals made here at or below `index` never apply here (their outcome is unknown),
/// and those of a lower term above it failed for good (the `Proposed` contract).
pub(super) fn snapshot_decides_waiting<M>(
    slot: &mut Slot<M>,
    group: GroupId,
    index: LogIndex,
    term: Term,
    completions: &mut Vec<Completion>,
) {
    slot.applied_term = slot.applied_term.max(term);
    let decided: Vec<(LogIndex, Term)> = slot
        .waiting
        .iter()
        .filter(|&(&at, &at_term)| at <= index || at_term < term)
        .map(|(&at, &at_term)| (at, at_term))
        .collect();
    for (at, at_term) in decided {
        slot.waiting.remove(&at);
        let outcome = if at <= index {
            Unapplied::Unknown("replaced by a snapshot before it applied here")
        } else {
            Unapplied::Superseded
        };
        completions.push(Completion {
            group,
            proposed: Proposed {
                index: at,
                term: at_term,
            },
            outcome: Err(outcome),
        });
    }
}

/// A replica removed from its group (no longer a member and no longer leading) learns
/// nothing past its commit index: proposals waiting beyond it get an unknown outcome.
pub(super) fn fail_waiting_if_removed<M: StateMachine>(
    slot: &mut Slot<M>,
    group: GroupId,
    this: NodeId,
    completions: &mut Vec<Completion>,
) {
    if slot.raft.is_leader() || slot.raft.configuration().contains(this) {
        return;
    }
    let commit = slot.raft.status().commit;
    let undecided: Vec<(LogIndex, Term)> = slot
        .waiting
        .range(commit.next()..)
        .map(|(&index, &term)| (index, term))
        .collect();
    for (index, term) in undecided {
        slot.waiting.remove(&index);
        completions.push(Completion {
            group,
            proposed: Proposed { index, term },
            outcome: Err(Unapplied::Unknown(
                "this node left the group before it was decided",
            )),
        });
    }
}
