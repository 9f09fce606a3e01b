//! Pre-vote, check-quorum, reads, leadership transfer and the errors returned as values.

use bytes::Bytes;

use super::network::Network;
use crate::raft::{
    LogIndex, Message, MessageBody, NodeId, ProposeError, ReadError, ReadMode, Role, StepError,
    Term, TransferError,
};

fn elected(count: u64) -> Network {
    let mut network = Network::new(count);
    network.campaign(1);
    assert_eq!(network.node(1).status().role, Role::Leader);
    network.tick_all(1);
    network
}

#[test]
fn pre_vote_a_partitioned_follower_rejoins_without_deposing_the_leader() {
    let mut network = elected(3);
    let term = network.node(1).status().term;
    network.isolate(3, &[1, 2]);
    network.tick_all(100); // Node 3 times out again and again, but only pre-votes.
    assert_eq!(
        network.node(3).status().term,
        term,
        "pre-vote keeps the partitioned node's term"
    );
    network.heal();
    network.tick_all(30);
    let status = network.node(1).status();
    assert_eq!(
        (status.role, status.term),
        (Role::Leader, term),
        "the healthy leader stays"
    );
    assert_eq!(network.node(3).status().leader, Some(NodeId(1)));
}

#[test]
fn check_quorum_a_follower_in_lease_ignores_a_higher_term_vote_request() {
    let mut network = Network::with_config(3, |cfg| cfg.pre_vote = false);
    network.campaign(1);
    network.tick_all(1);
    let term = network.node(1).status().term;
    // Node 3, partitioned (and without pre-vote), raises its term twice.
    network.isolate(3, &[1, 2]);
    network.campaign(3);
    network.campaign(3);
    assert_eq!(network.node(3).status().term.0, term.0 + 2);
    // Back, with a log as up-to-date as anyone's, it asks for votes in a higher term: nodes 1
    // and 2 heard from the leader within the election timeout and ignore it.
    network.heal();
    network.campaign(3);
    let leader = network.node(1).status();
    assert_eq!(
        (leader.role, leader.term),
        (Role::Leader, term),
        "the leader keeps its term"
    );
    assert_eq!(
        network.node(2).status().term,
        term,
        "the request did not even raise node 2's term"
    );
    assert_ne!(network.node(3).status().role, Role::Leader);
}

#[test]
fn check_quorum_a_leader_cut_from_its_quorum_steps_down_within_an_election_timeout() {
    let mut network = elected(5);
    network.isolate(1, &[2, 3, 4, 5]);
    let mut ticks = 0;
    while network.node(1).status().role == Role::Leader {
        network.node(1).tick();
        network.settle();
        ticks += 1;
        assert!(ticks <= 2 * 10, "still leader after {ticks} ticks");
    }
    assert_eq!(network.node(1).status().role, Role::Follower);
    assert_eq!(
        network.node(1).propose(Bytes::from_static(b"x")),
        Err(ProposeError::NotLeader { leader: None })
    );
}

#[test]
fn read_index_waits_for_a_heartbeat_round_and_for_apply() {
    let mut network = elected(3);
    network.propose(1, b"a");
    network
        .node(1)
        .read_index(7, ReadMode::ReadIndex)
        .expect("leader");
    let ready = network
        .node(1)
        .poll_ready()
        .expect("a heartbeat round to send");
    assert!(
        ready.read_states.is_empty(),
        "not confirmed before a majority answers"
    );
    assert_eq!(
        ready
            .messages
            .iter()
            .filter(|m| matches!(m.body, MessageBody::Heartbeat(_)))
            .count(),
        2
    );
    network.queue.extend(ready.messages);
    network.node(1).on_persisted(ready.id);
    let mut answered = None;
    for _ in 0..10 {
        network.settle_collecting_reads(1, &mut answered);
    }
    assert_eq!(
        answered,
        Some((7, Ok(LogIndex(2)))),
        "read index = commit (no-op, then a)"
    );
    // Isolated, the leader can no longer confirm a read.
    network.isolate(1, &[2, 3]);
    network
        .node(1)
        .read_index(8, ReadMode::ReadIndex)
        .expect("still leader");
    let mut answered = None;
    network.settle_collecting_reads(1, &mut answered);
    assert_eq!(answered, None);
}

#[test]
fn lease_read_is_served_without_a_round_while_the_lease_holds() {
    let mut network = elected(3);
    network.tick_all(2); // A heartbeat round confirms the lease.
    network
        .node(1)
        .read_index(9, ReadMode::Lease)
        .expect("leader");
    let ready = network.node(1).poll_ready().expect("the read is ready");
    assert_eq!(ready.read_states.len(), 1);
    assert!(ready.messages.is_empty(), "no heartbeat round needed");
    let mut network = Network::with_config(3, |cfg| cfg.check_quorum = false);
    network.campaign(1);
    assert_eq!(
        network.node(1).read_index(1, ReadMode::Lease),
        Err(ReadError::LeaseUnavailable)
    );
}

#[test]
fn lease_read_is_not_served_once_the_lease_expired() {
    let mut network = elected(3);
    network.tick_all(2); // A heartbeat round confirms the lease (lease_ticks = 5).
    network.isolate(1, &[2, 3]);
    for _ in 0..5 {
        network.node(1).tick();
        network.settle();
    }
    assert_eq!(
        network.node(1).status().role,
        Role::Leader,
        "still leader, but the lease is over"
    );
    network
        .node(1)
        .read_index(10, ReadMode::Lease)
        .expect("leader");
    let ready = network
        .node(1)
        .poll_ready()
        .expect("a heartbeat round to send");
    assert!(
        ready.read_states.is_empty(),
        "an expired lease falls back to a ReadIndex round"
    );
}

#[test]
fn restart_guard_a_restarted_voter_ignores_votes_for_one_election_timeout() {
    // A voter that may have promised a lease before crashing keeps the promise after restart.
    let mut network = Network::new(3);
    network.campaign(1);
    network.tick_all(1);
    let term = network.node(1).status().term;
    network.restart(NodeId(2));
    let request = Message {
        from: NodeId(3),
        to: NodeId(2),
        term: Term(term.0 + 1),
        body: MessageBody::RequestVote(crate::raft::VoteRequest {
            kind: crate::raft::VoteKind::Vote,
            last_index: LogIndex(100),
            last_term: term,
            transfer: false,
        }),
    };
    network.node(2).step(request.clone()).expect("valid");
    assert_eq!(
        network.node(2).hard_state().vote,
        Some(NodeId(1)),
        "ignored during the guard: still the vote of the restored term"
    );
    assert_eq!(network.node(2).status().term, term);
    for _ in 0..10 {
        network.node(2).tick(); // The guard is one base election timeout (10 ticks).
    }
    let mut later = request;
    later.term = Term(network.node(2).status().term.0 + 1);
    network.node(2).step(later).expect("valid");
    assert_eq!(
        network.node(2).hard_state().vote,
        Some(NodeId(3)),
        "granted after the guard"
    );
}

#[test]
fn leadership_transfer_brings_the_target_up_to_date_then_it_takes_over() {
    let mut network = elected(3);
    network.isolate(3, &[1, 2]);
    network.propose(1, b"a");
    network.heal();
    network.node(1).transfer_leader(NodeId(3)).expect("leader");
    assert_eq!(
        network.node(1).propose(Bytes::from_static(b"b")),
        Err(ProposeError::TransferInProgress { to: NodeId(3) })
    );
    network.settle();
    assert_eq!(
        network.node(3).status().role,
        Role::Leader,
        "the target campaigned at once and won"
    );
    assert_eq!(network.node(1).status().role, Role::Follower);
    assert_eq!(
        network.node(1).transfer_leader(NodeId(2)),
        Err(TransferError::NotLeader {
            leader: Some(NodeId(3))
        })
    );
}

/// Found by the `raft_step` fuzz target: a message with a term near u64::MAX, then a few
/// elections, overflowed `Term::next`.
#[test]
fn terms_beyond_term_max_are_refused_and_elections_above_it_do_not_overflow() {
    let mut network = Network::with_config(3, |cfg| cfg.pre_vote = false);
    let huge = Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(crate::raft::TERM_MAX.0 + 1),
        body: MessageBody::TimeoutNow,
    };
    assert!(matches!(
        network.node(1).step(huge),
        Err(StepError::Malformed { .. })
    ));
    let highest = Message {
        term: crate::raft::TERM_MAX,
        ..huge_heartbeat()
    };
    network
        .node(1)
        .step(highest)
        .expect("TERM_MAX itself is accepted");
    for _ in 0..100 {
        network.node(1).tick(); // Elections above TERM_MAX, alone: no overflow.
    }
    assert!(network.node(1).status().term > crate::raft::TERM_MAX);
}

fn huge_heartbeat() -> Message {
    Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(0),
        body: MessageBody::Heartbeat(crate::raft::Heartbeat {
            commit: LogIndex(0),
            read_round: 0,
        }),
    }
}

#[test]
fn errors_are_values_for_refused_proposals_and_bad_messages() {
    let mut network = Network::with_config(3, |cfg| cfg.proposal_bytes_max = 4);
    assert_eq!(
        network.node(2).propose(Bytes::from_static(b"x")),
        Err(ProposeError::NotLeader { leader: None })
    );
    network.campaign(1);
    assert_eq!(
        network.node(1).propose(Bytes::from_static(b"toolong")),
        Err(ProposeError::ProposalTooLarge {
            size_bytes: 7,
            max_bytes: 4
        })
    );
    network.node(1).stop();
    assert_eq!(
        network.node(1).propose(Bytes::from_static(b"x")),
        Err(ProposeError::GroupStopping)
    );
    let from_itself = Message {
        from: NodeId(1),
        to: NodeId(1),
        term: Term(99),
        body: MessageBody::TimeoutNow,
    };
    assert_eq!(
        network.node(1).step(from_itself),
        Err(StepError::UnknownPeer(NodeId(1)))
    );
    let misrouted = Message {
        from: NodeId(2),
        to: NodeId(3),
        term: Term(1),
        body: MessageBody::TimeoutNow,
    };
    assert!(matches!(
        network.node(1).step(misrouted),
        Err(StepError::WrongDestination { .. })
    ));
    let gap = crate::raft::AppendEntries {
        prev_index: LogIndex(5),
        prev_term: Term(1),
        entries: vec![crate::raft::Entry {
            index: LogIndex(9),
            term: Term(1),
            kind: crate::raft::EntryKind::Normal,
            data: Bytes::new().into(),
        }],
        commit: LogIndex(u64::MAX),
    };
    let malformed = Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(1),
        body: MessageBody::AppendEntries(gap),
    };
    assert!(matches!(
        network.node(2).step(malformed),
        Err(StepError::Malformed { .. })
    ));
    assert_eq!(
        network.node(2).status().last_index,
        LogIndex(1),
        "nothing changed"
    );
}
