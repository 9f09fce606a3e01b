//! The requests a shard serves for embedders: creating and removing groups, proposing,
//! reading, transferring leadership, and looking at a group. Each is an input to one
//! group's core, which the loop (`shard.rs`) then turns into Readies.

use std::collections::BTreeMap;

use flotilla_net::Transport;

use super::{
    Completion, CreateGroupError, ReadCompletion, Shard, ShardProposeError, ShardRequestError,
    Slot, Unapplied,
};
use crate::raft::{
    Config, Configuration, MembershipChange, NodeId, Proposed, RaftGroup, ReadMode, Status, Term,
    Verification,
};
use crate::runtime::state_machine::StateMachine;
use crate::runtime::storage::restore_group;
use crate::runtime::wire::GroupId;

impl<T: Transport, M: StateMachine> Shard<T, M> {
    /// Adds the replica of `group` whose bootstrap members are `voters` (none: a replica
    /// joining the group, which learns its configuration from the leader), restored from
    /// its snapshot and the log if this node held it before. `machine` must be empty: it
    /// is restored from the snapshot, and the committed log after it is applied again.
    pub fn create_group(
        &mut self,
        group: GroupId,
        voters: &[NodeId],
        mut machine: M,
    ) -> Result<(), CreateGroupError> {
        if self.groups.contains_key(&group) {
            return Err(CreateGroupError::Exists(group));
        }
        let snapshot = match &self.snapshots {
            Some(store) => store.load(group)?,
            None => None,
        };
        let restored = restore_group(&self.wal, group, snapshot.as_ref().map(|(meta, _)| meta))?;
        if let Some(repair) = restored.repair {
            // Between turns the write batch is empty: the repair is a record of its own,
            // before anything the group writes.
            debug_assert!(self.batch.is_empty(), "a request between turns");
            repair.write(&mut self.batch, group);
            super::submit_turn(
                &mut self.wal,
                &mut self.batch,
                Vec::new(),
                &mut self.in_flight,
                &mut self.stats,
            )?;
        }
        let (last_index, restored) = (restored.last_index, restored.state);
        let applied_term = match &snapshot {
            Some((meta, data)) => {
                machine
                    .restore(data)
                    .map_err(|reason| CreateGroupError::SnapshotRestore { group, reason })?;
                meta.term
            }
            None => Term(0),
        };
        // Each (node, group) draws its own election timeouts: replicas of one group that
        // shared a seed would time out together and split their votes forever.
        let seed = self.config.seed
            ^ group.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ self.config.id.0.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let config = Config {
            seed,
            ..self.config.clone()
        };
        let raft = RaftGroup::new(config, voters, restored)?;
        for &voter in voters {
            if voter != self.config.id {
                self.liveness.add_peer(voter);
            }
        }
        let mut slot = Slot {
            raft,
            machine,
            last_index,
            waiting: BTreeMap::new(),
            applied_term,
            ticking: false,
            dirty: false,
            leading: false,
            incarnation: self.next_incarnation,
        };
        self.next_incarnation += 1;
        slot.touch(group, &mut self.ticking, &mut self.dirty);
        self.groups.insert(group, slot);
        Ok(())
    }

    /// Proposes `command` to `group`, whose replica here must lead it. The outcome arrives
    /// later through [`Shard::take_completions`].
    pub fn propose(
        &mut self,
        group: GroupId,
        command: &[u8],
    ) -> Result<Proposed, ShardProposeError> {
        let proposed = self
            .input(group, |raft| raft.propose(command))
            .ok_or(ShardProposeError::UnknownGroup(group))??;
        self.wait_for(group, proposed);
        Ok(proposed)
    }

    /// Runs `input` on `group`'s core and schedules the group for the next turn (`None`:
    /// no such group).
    fn input<R>(&mut self, group: GroupId, input: impl FnOnce(&mut RaftGroup) -> R) -> Option<R> {
        let slot = self.groups.get_mut(&group)?;
        let result = input(&mut slot.raft);
        slot.touch(group, &mut self.ticking, &mut self.dirty);
        Some(result)
    }

    /// Remembers that a caller here waits for `proposed` to be applied.
    fn wait_for(&mut self, group: GroupId, proposed: Proposed) {
        let slot = self.groups.get_mut(&group).expect("proposed just now");
        // An older proposal of ours at the same index (from an earlier term in which this
        // replica also led) can never apply now: its index holds an entry of a later term.
        if let Some(older) = slot.waiting.insert(proposed.index, proposed.term) {
            assert!(
                older < proposed.term,
                "two proposals at one index in one term"
            );
            self.completions.push(Completion {
                group,
                proposed: Proposed {
                    index: proposed.index,
                    term: older,
                },
                outcome: Err(Unapplied::Superseded),
            });
        }
    }

    /// The replica status of `group`.
    pub fn status(&self, group: GroupId) -> Option<Status> {
        self.groups.get(&group).map(|slot| slot.raft.status())
    }

    /// The state machine of `group`.
    pub fn machine(&self, group: GroupId) -> Option<&M> {
        self.groups.get(&group).map(|slot| &slot.machine)
    }

    /// Removes this node's replica of `group`: its state here is gone, its entries and hard
    /// state are dropped from the log (one record, submitted now), and proposals and reads
    /// waiting on it fail with `GroupNotFound` in the executor, and its snapshot files are
    /// deleted. The other replicas are not told: remove the node from the group first
    /// (`change_membership`). The replica forgets its votes, so the id must not be created
    /// here again while other nodes still run the group.
    pub fn remove_group(&mut self, group: GroupId) -> Result<(), ShardRequestError> {
        let slot = self
            .groups
            .remove(&group)
            .ok_or(ShardRequestError::UnknownGroup(group))?;
        if slot.ticking {
            self.ticking.retain(|g| *g != group);
        }
        if slot.dirty {
            self.dirty.retain(|g| *g != group);
        }
        // A compaction mark queued for the removed replica must not reach a new one.
        self.compactions.retain(|(queued, _)| *queued != group);
        if let Some(store) = &mut self.snapshots {
            store
                .remove(group)
                .map_err(|error| ShardRequestError::Shard(error.into()))?;
        }
        // Between turns the write batch is empty: the drop is a record of its own.
        debug_assert!(self.batch.is_empty(), "a request between turns");
        self.batch.drop_group(flotilla_wal::GroupId(group.0));
        super::submit_turn(
            &mut self.wal,
            &mut self.batch,
            Vec::new(),
            &mut self.in_flight,
            &mut self.stats,
        )?;
        Ok(())
    }

    /// Asks `group`'s leader here for a linearizable read (`ReadIndex`) or a lease read. The
    /// answer arrives through [`Shard::take_read_completions`] once the state machine has
    /// applied through the read's index, or as a refusal.
    pub fn read_index(
        &mut self,
        group: GroupId,
        ctx: u64,
        mode: ReadMode,
    ) -> Result<(), ShardRequestError> {
        self.input(group, |raft| raft.read_index(ctx, mode))
            .ok_or(ShardRequestError::UnknownGroup(group))?
            .map_err(ShardRequestError::Read)
    }

    /// Starts handing `group`'s leadership to `to` (thesis §3.10); done once `to` wins the
    /// election it is told to start, abandoned after an election timeout.
    pub fn transfer_leader(&mut self, group: GroupId, to: NodeId) -> Result<(), ShardRequestError> {
        self.input(group, |raft| raft.transfer_leader(to))
            .ok_or(ShardRequestError::UnknownGroup(group))?
            .map_err(ShardRequestError::Transfer)
    }

    /// Proposes `changes` to `group`'s membership (its replica here must lead). Like a
    /// proposal, the outcome arrives through [`Shard::take_completions`] once the
    /// configuration entry is applied here (an empty result), or as superseded.
    pub fn change_membership(
        &mut self,
        group: GroupId,
        changes: &[MembershipChange],
    ) -> Result<Proposed, ShardRequestError> {
        let proposed = self
            .input(group, |raft| raft.propose_change(changes))
            .ok_or(ShardRequestError::UnknownGroup(group))??;
        for change in changes {
            if change.node() != self.config.id {
                self.liveness.add_peer(change.node());
            }
        }
        self.wait_for(group, proposed);
        Ok(proposed)
    }

    /// Adds `node` to `group` as a voter, the safe way: as a learner first, promoted by the
    /// leader here once caught up (`RaftGroup::add_voter`). Returns once the learner is
    /// appended; [`Shard::configuration`] shows the promotion.
    pub fn add_voter(&mut self, group: GroupId, node: NodeId) -> Result<(), ShardRequestError> {
        self.input(group, |raft| raft.add_voter(node))
            .ok_or(ShardRequestError::UnknownGroup(group))??;
        if node != self.config.id {
            self.liveness.add_peer(node);
        }
        Ok(())
    }

    /// The configuration in force on `group`'s replica here.
    pub fn configuration(&self, group: GroupId) -> Option<Configuration> {
        self.groups
            .get(&group)
            .map(|slot| slot.raft.configuration().clone())
    }

    /// Proposes a verify entry to `group` (its replica here must lead); the leader's
    /// verdict arrives through [`Shard::take_verifications`].
    pub fn verify(&mut self, group: GroupId) -> Result<Proposed, ShardRequestError> {
        Ok(self
            .input(group, RaftGroup::propose_verify)
            .ok_or(ShardRequestError::UnknownGroup(group))??)
    }

    /// Moves the verifications finished since the last call into `out`.
    pub fn take_verifications(&mut self, out: &mut Vec<(GroupId, Verification)>) {
        out.append(&mut self.verifications);
    }

    /// Runs `corrupt` on `group`'s state machine here, outside the log: a test hook that
    /// makes this replica diverge, for consistency verification to find.
    #[doc(hidden)]
    pub fn corrupt_for_tests(&mut self, group: GroupId, corrupt: impl FnOnce(&mut M)) {
        if let Some(slot) = self.groups.get_mut(&group) {
            corrupt(&mut slot.machine);
        }
    }

    /// Moves the reads answered since the last call into `out`.
    pub fn take_read_completions(&mut self, out: &mut Vec<ReadCompletion>) {
        out.append(&mut self.read_completions);
    }
}
