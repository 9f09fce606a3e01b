//! Quiescence (`quiesce.rs`): idle groups go silent, anything wakes them, and a quiesced
//! leader holds no lease.

use super::network::Network;
use crate::raft::{MessageBody, NodeId, ReadMode, Role};

fn quiescing() -> Network {
    let mut network = Network::with_config(3, |cfg| cfg.quiesce_after_ticks = 4);
    network.campaign(1);
    assert_eq!(network.node(1).status().role, Role::Leader);
    network
}

fn all_quiesced(network: &mut Network) -> bool {
    (1..=3).all(|id| network.node(id).is_quiesced())
}

#[test]
fn an_idle_group_quiesces_and_then_sends_nothing() {
    let mut network = quiescing();
    network.propose(1, b"x");
    network.tick_all(20);
    assert!(all_quiesced(&mut network), "every replica quiesced");
    assert_eq!(
        network.node(2).status().commit,
        network.node(1).status().commit
    );
    let sent = network.delivered.len();
    network.tick_all(500); // 50 election timeouts: nobody campaigns, nobody heartbeats.
    assert_eq!(network.delivered.len(), sent, "a quiesced group is silent");
    assert_eq!(network.node(1).status().role, Role::Leader);
}

#[test]
fn a_proposal_wakes_the_group_and_commits() {
    let mut network = quiescing();
    network.tick_all(20);
    assert!(all_quiesced(&mut network));
    let proposed = network.propose(1, b"after");
    assert!(!network.node(1).is_quiesced());
    network.tick_all(1);
    for id in 1..=3 {
        assert!(network.node(id).status().commit >= proposed.index);
        assert_eq!(network.applied_data(id).last(), Some(&&b"after"[..]));
    }
    network.tick_all(20);
    assert!(all_quiesced(&mut network), "idle again, quiesced again");
}

#[test]
fn a_quiesced_leader_gives_up_its_lease() {
    let mut network = quiescing();
    network.tick_all(20);
    assert!(network.node(1).is_quiesced());
    assert!(!network.node(1).lease_valid(), "no lease while quiesced");
    // A lease read after waking waits for a new heartbeat round instead of answering at once.
    network
        .node(1)
        .read_index(7, ReadMode::Lease)
        .expect("leader");
    let rounds_before = network
        .delivered
        .iter()
        .filter(|m| matches!(m.body, MessageBody::HeartbeatResponse(_)))
        .count();
    let mut answered = None;
    network.settle_collecting_reads(1, &mut answered);
    let rounds_after = network
        .delivered
        .iter()
        .filter(|m| matches!(m.body, MessageBody::HeartbeatResponse(_)))
        .count();
    assert!(answered.is_some_and(|(ctx, result)| ctx == 7 && result.is_ok()));
    assert!(
        rounds_after > rounds_before,
        "the read was confirmed by a round"
    );
}

#[test]
fn a_woken_follower_whose_leader_is_gone_elects_a_new_one() {
    let mut network = quiescing();
    network.tick_all(20);
    assert!(all_quiesced(&mut network));
    network.isolate(1, &[2, 3]);
    network.tick_all(100);
    assert_eq!(
        network.node(2).status().leader,
        Some(NodeId(1)),
        "nobody noticed"
    );
    // The driver notices the leader's node is silent and wakes its followers.
    network.node(2).wake();
    network.node(3).wake();
    network.tick_all(60);
    let leader = network.node(2).status().leader;
    assert!(
        matches!(leader, Some(NodeId(2 | 3))),
        "a new leader among the majority, not {leader:?}"
    );
}

#[test]
fn a_follower_that_missed_the_quiesce_wakes_the_leader_instead_of_deposing_it() {
    let mut network = quiescing();
    network.tick_all(1);
    network.drop_if = Some(Box::new(|m| {
        m.to == NodeId(3) && matches!(m.body, MessageBody::Quiesce(_))
    }));
    network.tick_all(20);
    assert!(network.node(1).is_quiesced() && !network.node(3).is_quiesced());
    let term = network.node(1).status().term;
    network.drop_if = None;
    network.tick_all(60); // Node 3 times out; its pre-vote wakes the leader.
    let status = network.node(1).status();
    assert_eq!(
        (status.role, status.term),
        (Role::Leader, term),
        "the leader stays"
    );
    network.tick_all(20);
    assert!(all_quiesced(&mut network), "and the group quiesces again");
}

#[test]
fn a_quiesced_leader_demoted_by_a_late_answer_ticks_again() {
    let mut network = quiescing();
    network.tick_all(20);
    assert!(network.node(1).is_quiesced());
    let term = network.node(1).status().term;
    // A refused pre-vote answer of a higher term: it does not wake, but the term rule
    // makes the leader a follower, which must run its election timer again.
    network
        .node(1)
        .step(crate::raft::Message {
            from: NodeId(2),
            to: NodeId(1),
            term: crate::raft::Term(term.0 + 1),
            body: MessageBody::VoteResponse(crate::raft::VoteResponse {
                kind: crate::raft::VoteKind::Vote,
                granted: false,
            }),
        })
        .expect("taken");
    let status = network.node(1).status();
    assert_eq!(status.role, Role::Follower);
    assert!(
        !network.node(1).is_quiesced(),
        "a demoted leader is not quiesced"
    );
}
