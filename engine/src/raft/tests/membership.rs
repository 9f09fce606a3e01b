//! Membership changes, snapshots and consistency verification, scenario by scenario: the
//! cases the Raft thesis §4 names (learners, joint consensus, removing the leader, one
//! change at a time) and the ones operators live through (replacing a failed node, growing
//! and shrinking under load, a node joining from a snapshot, a lost chunk, a corrupted
//! replica).

use std::cell::Cell;
use std::rc::Rc;

use bytes::Bytes;

use crate::raft::tests::network::{Network, config, ids};
use crate::raft::{
    ChangeError, LogIndex, MembershipChange, MessageBody, NodeId, ProgressState, Role, Verification,
};

fn n(ids: &[u64]) -> Vec<NodeId> {
    ids.iter().map(|&id| NodeId(id)).collect()
}

/// A settled group of `count` with node 1 leading and its no-op committed.
fn led_by_one(count: u64) -> Network {
    let mut network = Network::new(count);
    network.campaign(1);
    assert_eq!(network.leader(), Some(NodeId(1)));
    network
}

/// Proposes `count` entries on `leader`, settling after each (load during a change).
fn load(network: &mut Network, leader: u64, count: usize) {
    for _ in 0..count {
        network
            .node(leader)
            .propose(Bytes::from_static(b"load"))
            .expect("the leader takes load");
        network.settle();
    }
}

/// Ticks until the leader's configuration is no longer joint (it leaves by itself).
fn until_not_joint(network: &mut Network) {
    for _ in 0..50 {
        let leader = network.leader().expect("a leader");
        if !network.nodes[&leader].configuration().is_joint() {
            return;
        }
        network.tick_all(1);
    }
    panic!("the group stayed joint");
}

#[test]
fn a_learner_gets_the_log_but_never_votes_or_counts() {
    let mut network = led_by_one(3);
    network.add_node(4);
    network
        .node(1)
        .propose_change(&[MembershipChange::AddLearner(NodeId(4))])
        .expect("learner added");
    network.settle();
    load(&mut network, 1, 3);
    assert_eq!(
        network.applied_data(4).len(),
        3,
        "the learner applied the log"
    );
    assert!(
        network.nodes[&NodeId(4)]
            .configuration()
            .is_learner(NodeId(4))
    );
    // With both other voters cut off, the learner's acknowledgement commits nothing.
    network.isolate(1, &[2, 3]);
    let proposed = network.propose(1, b"alone with a learner");
    assert!(network.nodes[&NodeId(4)].status().last_index >= proposed.index);
    assert!(network.nodes[&NodeId(1)].status().commit < proposed.index);
    // Cut from everyone, the learner never campaigns.
    network.heal();
    network.isolate(4, &[1, 2, 3]);
    let term = network.nodes[&NodeId(4)].status().term;
    network.tick_all(60);
    let learner = network.nodes[&NodeId(4)].status();
    assert_eq!((learner.role, learner.term), (Role::Follower, term));
}

#[test]
fn add_voter_goes_through_a_learner_and_is_promoted_once_caught_up() {
    let mut network = led_by_one(3);
    load(&mut network, 1, 5);
    network.add_node(4);
    network.node(1).add_voter(NodeId(4)).expect("add accepted");
    assert!(
        network.nodes[&NodeId(1)]
            .configuration()
            .is_learner(NodeId(4))
    );
    assert_eq!(network.nodes[&NodeId(1)].promotions_pending(), &[NodeId(4)]);
    network.settle();
    network.tick_all(3);
    until_not_joint(&mut network);
    let configuration = network.nodes[&NodeId(1)].configuration().clone();
    assert_eq!(configuration.voters(), n(&[1, 2, 3, 4]));
    assert!(configuration.learners().is_empty());
    // Every member agrees, and the new voter holds the whole log.
    network.tick_all(2);
    for id in 1..=4 {
        assert_eq!(network.nodes[&NodeId(id)].configuration(), &configuration);
    }
    assert_eq!(network.applied_data(4).len(), 5);
}

#[test]
fn one_change_at_a_time_and_bad_changes_are_refused_by_name() {
    let mut network = led_by_one(3);
    network.add_node(4);
    let change = network
        .node(1)
        .propose_change(&[MembershipChange::AddVoter(NodeId(4))])
        .expect("first change");
    assert_eq!(
        network
            .node(1)
            .propose_change(&[MembershipChange::AddLearner(NodeId(5))]),
        Err(ChangeError::ChangeInProgress {
            index: change.index
        })
    );
    assert!(matches!(
        network
            .node(2)
            .propose_change(&[MembershipChange::AddVoter(NodeId(5))]),
        Err(ChangeError::NotLeader { .. })
    ));
    network.settle();
    until_not_joint(&mut network);
    assert_eq!(
        network
            .node(1)
            .propose_change(&[MembershipChange::RemoveVoter(NodeId(9))]),
        Err(ChangeError::NotAVoter(NodeId(9)))
    );
    assert_eq!(
        network.node(1).add_voter(NodeId(2)),
        Err(ChangeError::AlreadyVoter(NodeId(2)))
    );
}

#[test]
fn a_joint_configuration_needs_majorities_of_both_sets() {
    // C_old = {1,2,3} → C_new = {1,4,5}.
    let mut network = led_by_one(3);
    network.add_node(4);
    network.add_node(5);
    network.isolate(4, &[1, 2, 3, 5]);
    network.isolate(5, &[1, 2, 3, 4]);
    let joint = network
        .node(1)
        .propose_change(&[
            MembershipChange::RemoveVoter(NodeId(2)),
            MembershipChange::RemoveVoter(NodeId(3)),
            MembershipChange::AddVoter(NodeId(4)),
            MembershipChange::AddVoter(NodeId(5)),
        ])
        .expect("joint change");
    network.settle();
    network.tick_all(5);
    // The old majority {1,2,3} holds it, but C_new = {1,4,5} has only node 1: not committed.
    assert!(network.nodes[&NodeId(1)].status().commit < joint.index);
    assert!(network.nodes[&NodeId(1)].configuration().is_joint());
    network.heal();
    network.tick_all(5);
    until_not_joint(&mut network);
    network.tick_all(3);
    let leader = network.leader().expect("a leader");
    assert_eq!(
        network.nodes[&leader].configuration().voters(),
        n(&[1, 4, 5])
    );
}

#[test]
fn removing_the_leader_makes_it_step_down_and_the_rest_elect_a_new_one() {
    let mut network = led_by_one(3);
    load(&mut network, 1, 2);
    network
        .node(1)
        .propose_change(&[MembershipChange::RemoveVoter(NodeId(1))])
        .expect("leader removal");
    network.settle();
    // The old leader leads through the joint configuration, then steps down once C_new
    // (without it) commits; the voter it hands over to is elected at once.
    network.tick_all(5);
    let old = network.nodes[&NodeId(1)].status();
    assert_ne!(old.role, Role::Leader);
    let leader = network.leader().expect("a new leader");
    assert!(leader == NodeId(2) || leader == NodeId(3));
    assert_eq!(network.nodes[&leader].configuration().voters(), n(&[2, 3]));
    let leader = leader.0;
    network.propose(leader, b"after the removal");
    assert_eq!(
        network.applied_data(if leader == 2 { 3 } else { 2 }).last(),
        Some(&&b"after the removal"[..])
    );
    // The removed node never campaigns again.
    network.tick_all(40);
    assert_ne!(network.nodes[&NodeId(1)].status().role, Role::Leader);
}

#[test]
fn replacing_a_failed_node_under_load() {
    let mut network = led_by_one(3);
    load(&mut network, 1, 3);
    network.isolate(3, &[1, 2]); // Node 3 fails.
    network.add_node(4);
    network.isolate(3, &[4]);
    network
        .node(1)
        .propose_change(&[MembershipChange::RemoveVoter(NodeId(3))])
        .expect("remove the failed node");
    network.settle();
    load(&mut network, 1, 2);
    until_not_joint(&mut network);
    network
        .node(1)
        .add_voter(NodeId(4))
        .expect("add the replacement");
    network.settle();
    load(&mut network, 1, 3);
    network.tick_all(3);
    until_not_joint(&mut network);
    assert_eq!(
        network.nodes[&NodeId(1)].configuration().voters(),
        n(&[1, 2, 4])
    );
    // The group now survives losing node 2: 1 and 4 are a majority.
    network.isolate(2, &[1, 3, 4]);
    let proposed = network.propose(1, b"without node 2");
    assert!(network.nodes[&NodeId(1)].status().commit >= proposed.index);
    assert_eq!(network.applied_data(4).len(), 9);
}

#[test]
fn growing_three_to_five_and_shrinking_back_under_load() {
    let mut network = led_by_one(3);
    network.add_node(4);
    network.add_node(5);
    for node in [4, 5] {
        network.node(1).add_voter(NodeId(node)).expect("grow");
        network.settle();
        load(&mut network, 1, 2);
        network.tick_all(2);
        until_not_joint(&mut network);
    }
    assert_eq!(
        network.nodes[&NodeId(1)].configuration().voters(),
        n(&[1, 2, 3, 4, 5])
    );
    network
        .node(1)
        .propose_change(&[
            MembershipChange::RemoveVoter(NodeId(2)),
            MembershipChange::RemoveVoter(NodeId(3)),
        ])
        .expect("shrink");
    network.settle();
    load(&mut network, 1, 2);
    until_not_joint(&mut network);
    network.tick_all(2);
    assert_eq!(
        network.nodes[&NodeId(1)].configuration().voters(),
        n(&[1, 4, 5])
    );
    for id in [1, 4, 5] {
        assert_eq!(network.applied_data(id).len(), 6, "node {id}");
    }
}

#[test]
fn a_new_node_joins_from_a_snapshot_when_the_log_it_needs_was_compacted() {
    let mut network = Network::with_config(3, |cfg| {
        cfg.compaction_tail_entries = 0;
        cfg.snapshot_chunk_bytes_max = 16;
    });
    network.campaign(1);
    load(&mut network, 1, 6);
    let compaction = network.compact(1);
    assert!(compaction.log_compacted_through >= LogIndex(7));
    assert_eq!(
        network.nodes[&NodeId(1)].log_base().0,
        compaction.log_compacted_through
    );
    network.add_node(4);
    network.node(1).add_voter(NodeId(4)).expect("add");
    network.settle();
    network.tick_all(3);
    until_not_joint(&mut network);
    assert_eq!(network.installs.len(), 1, "one snapshot installed");
    assert_eq!(network.installs[0].0, NodeId(4));
    let joined = network.nodes[&NodeId(4)].status();
    assert_eq!(joined.applied, network.nodes[&NodeId(1)].status().applied);
    assert_eq!(network.applied_data(4), network.applied_data(1));
    // Several chunks went (the snapshot is larger than one chunk).
    let chunks = network
        .delivered
        .iter()
        .filter(|m| matches!(m.body, MessageBody::InstallSnapshot(_)))
        .count();
    assert!(chunks > 3, "{chunks} chunks");
    // Restarted, the new node comes back from its snapshot and log.
    network.restart(NodeId(4));
    assert_eq!(
        network.nodes[&NodeId(4)].configuration().voters(),
        n(&[1, 2, 3, 4])
    );
    load(&mut network, 1, 1);
    assert_eq!(network.applied_data(4), network.applied_data(1));
}

#[test]
fn a_chunk_lost_mid_snapshot_is_sent_again_and_no_entries_go_meanwhile() {
    let mut network = Network::with_config(3, |cfg| {
        cfg.compaction_tail_entries = 0;
        cfg.snapshot_chunk_bytes_max = 16;
    });
    network.campaign(1);
    network.isolate(3, &[1, 2]);
    load(&mut network, 1, 6);
    network.compact(1);
    // Drop the second chunk once.
    let dropped = Rc::new(Cell::new(false));
    let flag = Rc::clone(&dropped);
    network.drop_if = Some(Box::new(move |message| {
        let second =
            matches!(&message.body, MessageBody::InstallSnapshot(chunk) if chunk.offset == 16);
        if second && !flag.get() {
            flag.set(true);
            return true;
        }
        false
    }));
    network.heal();
    for _ in 0..10 {
        if dropped.get() {
            break;
        }
        network.tick_all(1);
    }
    assert!(dropped.get(), "the second chunk was dropped");
    let progress = network.nodes[&NodeId(1)]
        .progress(NodeId(3))
        .cloned()
        .expect("progress");
    assert_eq!(progress.state, ProgressState::Snapshot);
    // Meanwhile the follower gets no entries, however much is proposed.
    let appends_before = network
        .delivered
        .iter()
        .filter(|m| {
            m.to == NodeId(3)
                && matches!(&m.body, MessageBody::AppendEntries(a) if !a.entries.is_empty())
        })
        .count();
    network
        .node(1)
        .propose(Bytes::from_static(b"during"))
        .expect("proposal");
    network.settle();
    let appends_after = network
        .delivered
        .iter()
        .filter(|m| {
            m.to == NodeId(3)
                && matches!(&m.body, MessageBody::AppendEntries(a) if !a.entries.is_empty())
        })
        .count();
    assert_eq!(
        appends_before, appends_after,
        "entries sent while snapshotting"
    );
    // A heartbeat round later the lost chunk goes again, and the follower catches up.
    network.tick_all(6);
    assert_eq!(
        network.installs,
        vec![(
            NodeId(3),
            network.nodes[&NodeId(3)]
                .snapshot()
                .expect("installed")
                .index
        )]
    );
    assert_eq!(network.applied_data(3), network.applied_data(1));
    let offsets: Vec<u64> = network
        .delivered
        .iter()
        .filter_map(|m| match &m.body {
            MessageBody::InstallSnapshot(chunk) => Some(chunk.offset),
            _ => None,
        })
        .collect();
    assert_eq!(
        offsets.iter().filter(|&&offset| offset == 16).count(),
        1,
        "delivered once, after the loss: {offsets:?}"
    );
}

#[test]
fn verification_is_consistent_and_names_a_corrupted_replica() {
    let mut network = led_by_one(3);
    load(&mut network, 1, 3);
    let verify = network.node(1).propose_verify().expect("verify");
    network.settle();
    assert_eq!(network.verifications.len(), 1);
    match &network.verifications[0].1 {
        Verification::Consistent {
            index, replicas, ..
        } => {
            assert_eq!(*index, verify.index);
            assert_eq!(replicas, &ids(3));
        }
        other => panic!("expected consistent, got {other:?}"),
    }
    // Corrupt node 3's state machine (test hook: an entry applied outside the log).
    network
        .applied
        .get_mut(&NodeId(3))
        .expect("node 3")
        .push(crate::raft::Entry {
            index: LogIndex(0),
            term: crate::raft::Term(0),
            kind: crate::raft::EntryKind::Normal,
            data: Bytes::from_static(b"corruption").into(),
        });
    network.node(1).propose_verify().expect("verify");
    network.settle();
    match &network.verifications[1].1 {
        Verification::Divergent { hashes, .. } => {
            let odd: Vec<NodeId> = hashes
                .iter()
                .filter(|(_, hash)| hashes.iter().filter(|(_, other)| other == hash).count() == 1)
                .map(|(node, _)| *node)
                .collect();
            assert_eq!(odd, vec![NodeId(3)]);
        }
        other => panic!("expected divergent, got {other:?}"),
    }
    // A replica that never answers: the leader reports the others after its timeout.
    network.isolate(2, &[1, 3]);
    network.node(1).propose_verify().expect("verify");
    network.settle();
    assert_eq!(network.verifications.len(), 2);
    let timeout = config(NodeId(1)).verify_timeout_ticks;
    network.tick_all(timeout);
    assert_eq!(network.verifications.len(), 3);
}

#[test]
fn a_follower_acknowledges_a_snapshot_only_once_it_is_durable() {
    use crate::raft::{
        AppendResponse, Configuration, InstallSnapshot, Message, RaftGroup, RestoredState,
        SnapshotMeta, Term,
    };
    let mut follower =
        RaftGroup::new(config(NodeId(2)), &ids(3), RestoredState::default()).expect("valid");
    let chunk = Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(2),
        body: MessageBody::InstallSnapshot(InstallSnapshot {
            meta: SnapshotMeta {
                index: LogIndex(50),
                term: Term(2),
                configuration: Configuration::new(&ids(3)).expect("voters"),
            },
            offset: 0,
            total_bytes: 4,
            data: Bytes::from_static(b"data"),
        }),
    };
    let accepted = |messages: &[Message]| {
        messages.iter().any(|m| {
            matches!(
                m.body,
                MessageBody::AppendResponse(AppendResponse::Accepted { .. })
            )
        })
    };
    // The follower already knows the leader, durably: nothing else holds its answers back.
    follower
        .step(Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(2),
            body: MessageBody::Heartbeat(crate::raft::Heartbeat {
                commit: LogIndex(0),
                read_round: 1,
            }),
        })
        .expect("taken");
    let known = follower.poll_ready().expect("a ready");
    follower.on_persisted(known.id);
    follower.step(chunk.clone()).expect("taken");
    let install = follower.poll_ready().expect("a ready");
    assert!(install.install_snapshot.is_some());
    assert!(!accepted(&install.messages), "acknowledged before durable");
    assert!(accepted(&install.persisted_messages));
    // The leader re-sends the last chunk (its answer was slow): the answer to it must
    // wait for the install too, or a crash now would leave the leader believing entries
    // through 50 are here.
    follower.step(chunk).expect("taken");
    let again = follower.poll_ready().expect("a ready");
    assert!(
        !accepted(&again.messages),
        "acknowledged before the install is durable"
    );
    assert!(accepted(&again.persisted_messages));
    follower.on_persisted(again.id);
    follower
        .step(Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(2),
            body: MessageBody::Heartbeat(crate::raft::Heartbeat {
                commit: LogIndex(50),
                read_round: 1,
            }),
        })
        .expect("taken");
    let after = follower.poll_ready().expect("a ready");
    assert!(
        !after.messages.is_empty(),
        "answers go at once once the install is durable"
    );
}

#[test]
fn compaction_refuses_the_same_index_twice_and_an_unknown_configuration() {
    let mut network = led_by_one(3);
    load(&mut network, 1, 3);
    let applied = network.nodes[&NodeId(1)].status().applied;
    network.compact(1);
    assert!(matches!(
        network.node(1).compact(applied),
        Err(crate::raft::CompactError::Stale { .. })
    ));
    // A joining replica that applied entries before learning its configuration.
    let mut joiner = crate::raft::RaftGroup::new(
        config(NodeId(9)),
        &[],
        crate::raft::RestoredState {
            entries: vec![crate::raft::Entry {
                index: LogIndex(1),
                term: crate::raft::Term(1),
                kind: crate::raft::EntryKind::Normal,
                data: Bytes::from_static(b"x").into(),
            }],
            hard_state: crate::raft::HardState {
                term: crate::raft::Term(1),
                vote: None,
                commit: LogIndex(1),
            },
            snapshot: None,
            applied: LogIndex(1),
        },
    )
    .expect("valid");
    assert_eq!(
        joiner.compact(LogIndex(1)),
        Err(crate::raft::CompactError::ConfigurationUnknown { index: LogIndex(1) })
    );
}

#[test]
fn a_leaving_node_holding_the_only_copy_of_c_new_can_still_lead_until_it_commits() {
    // C_old = {1,2} → C_new = {2,3}: node 1 leads and replaces itself with node 3.
    let mut network = led_by_one(2);
    network.add_node(3);
    network
        .node(1)
        .propose_change(&[
            MembershipChange::RemoveVoter(NodeId(1)),
            MembershipChange::AddVoter(NodeId(3)),
        ])
        .expect("joint change");
    // Node 1 appends C_new as soon as the joint entry commits, but cut off it is the only
    // one to hold it (and more entries), and check-quorum makes it step down.
    network.drop_if = Some(Box::new(|message| {
        message.from == NodeId(1)
            && matches!(&message.body, MessageBody::AppendEntries(append)
                if append.entries.iter().any(|e| e.kind == crate::raft::EntryKind::Configuration
                    && crate::raft::Configuration::decode(&e.data).is_ok_and(|c| !c.is_joint())))
    }));
    network.settle();
    network.tick_all(2);
    assert!(network.nodes[&NodeId(2)].configuration().is_joint());
    assert!(
        !network.nodes[&NodeId(1)].configuration().is_joint(),
        "node 1 holds C_new"
    );
    network.drop_if = None;
    network.isolate(1, &[2, 3]);
    network
        .node(1)
        .propose(Bytes::from_static(b"only on node 1"))
        .expect("still the leader");
    network.settle();
    network.tick_all(25);
    assert_ne!(
        network.nodes[&NodeId(1)].status().role,
        Role::Leader,
        "check-quorum"
    );
    // Nodes 2 and 3 hold the joint configuration: a majority of C_old = {1,2} needs node 1,
    // whose log is longer. Only node 1 can be elected, though C_new leaves it out.
    network.heal();
    network.tick_all(60);
    let leader = network.leader().expect("a leader after healing");
    assert_eq!(network.nodes[&leader].configuration().voters(), n(&[2, 3]));
    assert!(!network.nodes[&leader].configuration().is_joint());
    assert_ne!(
        leader,
        NodeId(1),
        "node 1 stepped down once C_new committed"
    );
}
