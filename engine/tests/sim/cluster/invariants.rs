//! The checks the simulator runs: after every event (Election Safety, Log Matching, Leader
//! Completeness, monotonic term and commit; State Machine Safety is checked where entries
//! are applied, in `clients.rs`), and at the end (liveness, linearizability).

use flotilla::raft::{Entry, Role};

use super::{Event, LIVENESS_US, Simulation, data_hash};
use crate::linearizability::{self, Operation};

impl Simulation {
    /// Log Matching: an entry with a given index and term is the same entry everywhere, and
    /// follows the same previous term.
    pub(super) fn check_log_matching(&mut self, node: usize, group: usize, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let raft = &self.nodes[node].replicas[group].raft;
        let mut prev_term = raft
            .entry_term(first.index.prev())
            .expect("the entry before a new suffix is held");
        let mut violations = Vec::new();
        for entry in entries {
            let seen = (data_hash(entry), prev_term);
            match self.entries_seen.get(&(group, entry.index, entry.term)) {
                Some(&other) if other != seen => {
                    violations.push(format!("{:?}@{:?}", entry.index, entry.term))
                }
                Some(_) => {}
                None => {
                    self.entries_seen
                        .insert((group, entry.index, entry.term), seen);
                }
            }
            prev_term = entry.term;
        }
        if let Some(violation) = violations.first() {
            self.fail(format!(
                "Log Matching: group {group} node {node} holds a different entry {violation}"
            ));
        }
    }

    /// Election Safety, Leader Completeness, and monotonic term and commit per replica.
    pub(super) fn check_replica(&mut self, node: usize, group: usize) {
        let status = self.nodes[node].replicas[group].raft.status();
        let replica = &self.nodes[node].replicas[group];
        let (last_term, last_commit, was_leader) =
            (replica.last_term, replica.last_commit, replica.was_leader);
        if status.term < last_term {
            self.fail(format!("term went back on node {node} group {group}"));
        }
        if status.commit < last_commit {
            self.fail(format!("commit went back on node {node} group {group}"));
        }
        let replica = &mut self.nodes[node].replicas[group];
        replica.last_term = status.term;
        replica.last_commit = status.commit;
        replica.was_leader = status.role == Role::Leader;
        if status.role != Role::Leader {
            return;
        }
        match self.leaders.get(&(group, status.term)) {
            Some(&other) if other != node => {
                self.fail(format!(
                    "Election Safety: group {group} has leaders {other} and {node} in {:?}",
                    status.term
                ));
                return;
            }
            Some(_) => {}
            None => {
                self.leaders.insert((group, status.term), node);
                self.leader_term_max[group] = self.leader_term_max[group].max(status.term);
                self.totals.elections += 1;
            }
        }
        if !was_leader && self.trace {
            println!(
                "{} µs LEADER n{} g{group} {:?} last {:?} commit {:?}",
                self.now_us,
                node + 1,
                status.term,
                status.last_index,
                status.commit
            );
        }
        if !was_leader && self.faults_on && self.rng.chance(self.params.leader_churn_per_mille) {
            let at = self.now_us + self.rng.range(0, 20_000);
            self.schedule(at, Event::IsolateNewLeader { node });
        }
        if !was_leader {
            // Leader Completeness: a leader of term T holds every entry committed in a term
            // below T. An entry applied when no leader above term B had been elected was
            // committed in a term at most B, so a new leader of a term above B must hold it.
            // (A leader of an older term may still be elected late, without it.)
            // Entries below the log's base are in its snapshot, which holds only committed
            // (hence, by State Machine Safety, the same) entries.
            let raft = &self.nodes[node].replicas[group].raft;
            let (base, _) = raft.log_base();
            let missing = self.applied_global[group]
                .iter()
                .find(|(index, (term, _, bound))| {
                    **index >= base
                        && status.term > *bound
                        && raft.entry_term(**index) != Some(*term)
                });
            if let Some((index, (term, _, _))) = missing {
                let message = format!(
                    "Leader Completeness: new leader {node} of group {group} lacks {index:?}@{term:?}, applied elsewhere"
                );
                self.fail(message);
            }
        }
    }

    /// After faults stop: one leader per group that every member of its configuration
    /// follows, every operation finished, every member applied the same prefix, and no
    /// group left in a joint configuration.
    pub(super) fn check_liveness(&mut self) {
        for (client, state) in self.clients.iter().enumerate() {
            if let Some((slot, pending)) = &state.pending {
                let (input, invoked_us) =
                    (self.history[*slot].input, self.history_invoked_us[*slot]);
                let at = match pending {
                    super::Pending::Write {
                        node, index, term, ..
                    } => {
                        let raft = &self.nodes[*node].replicas[state.group].raft;
                        format!(
                            "write {index:?}@{term:?} at node {node}: {:?}, {:?}",
                            raft.status(),
                            raft.configuration()
                        )
                    }
                    super::Pending::Read { node, ctx } => format!("read {ctx} at node {node}"),
                };
                self.fail(format!(
                    "liveness: client {client} operation {input:?} invoked at {invoked_us} µs still pending {} µs after faults stopped ({at})",
                    LIVENESS_US
                ));
                return;
            }
        }
        for group in 0..self.params.groups as usize {
            let statuses: Vec<_> = self
                .nodes
                .iter()
                .map(|node| node.replicas[group].raft.status())
                .collect();
            let leaders: Vec<_> = statuses.iter().filter(|s| s.role == Role::Leader).collect();
            let Some(leader) = leaders.iter().max_by_key(|s| s.term) else {
                let replicas: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|node| {
                        let raft = &node.replicas[group].raft;
                        format!("{:?} {:?}", raft.status(), raft.configuration())
                    })
                    .collect();
                self.fail(format!(
                    "liveness: group {group} has no leader {} µs after faults stopped: {replicas:?}",
                    LIVENESS_US
                ));
                return;
            };
            let leader_node = usize::try_from(leader.id.0 - 1).expect("small");
            let configuration = self.nodes[leader_node].replicas[group]
                .raft
                .configuration()
                .clone();
            if configuration.is_joint() {
                self.fail(format!(
                    "liveness: group {group} is still joint {} µs after faults stopped: {configuration:?}",
                    LIVENESS_US
                ));
                return;
            }
            for status in statuses.iter().filter(|s| configuration.contains(s.id)) {
                if status.leader != Some(leader.id) || status.applied != leader.commit {
                    let leader_node = usize::try_from(leader.id.0 - 1).expect("small");
                    let progress = self.nodes[leader_node].replicas[group]
                        .raft
                        .progress(status.id)
                        .cloned();
                    let replica = &self.nodes[usize::try_from(status.id.0 - 1).expect("small")]
                        .replicas[group]
                        .raft;
                    let detail = format!(
                        "leader quiesced {}, configuration {configuration:?}; replica quiesced {}, configuration {:?}",
                        self.nodes[leader_node].replicas[group].raft.is_quiesced(),
                        replica.is_quiesced(),
                        replica.configuration()
                    );
                    self.fail(format!(
                        "liveness: group {group} did not converge: leader {leader:?}, replica {status:?}, \
                         leader's progress for it {progress:?}; {detail}"
                    ));
                    return;
                }
            }
        }
    }

    pub(super) fn check_linearizable(&mut self) {
        let operations: Vec<Operation> = self
            .history
            .iter()
            .zip(&self.history_void)
            .filter(|(_, void)| !**void)
            .map(|(op, _)| op.clone())
            .collect();
        if let Err(violation) = linearizability::check_history(&operations) {
            self.fail(format!("linearizability: {violation}"));
        }
    }
}
