//! The scenarios of Figures 7 and 8 of the Raft paper.

use super::network::Network;
use crate::raft::{AppendResponse, LogIndex, Message, MessageBody, NodeId, Role, Term};

/// Figure 7: a leader of term 8 and six followers (a)–(f) with missing, extra and
/// conflicting entries. Each follower's log is made identical to the leader's, and the
/// leader finds each divergence point in O(terms) rejections, not O(entries).
#[test]
fn figure_7_leader_brings_every_follower_log_into_agreement() {
    let leader: &[u64] = &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let followers: [(&str, &[u64]); 6] = [
        ("a", &[1, 1, 1, 4, 4, 5, 5, 6, 6]),
        ("b", &[1, 1, 1, 4]),
        ("c", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6]),
        ("d", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7]),
        ("e", &[1, 1, 1, 4, 4, 4, 4]),
        ("f", &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]),
    ];
    for (name, follower) in followers {
        // Node 3 holds the leader's log so that node 1 can win term 8 even against (d).
        let mut network =
            Network::with_logs(&[leader, follower, leader], 7, |cfg| cfg.pre_vote = false);
        network.isolate(2, &[1, 3]);
        network.campaign(1);
        assert_eq!(network.node(1).status().role, Role::Leader, "({name})");
        assert_eq!(network.node(1).status().term.0, 8, "({name})");
        network.heal();
        network.delivered.clear();
        network.tick_all(4);
        let mut expected = leader.to_vec();
        expected.push(8);
        assert_eq!(
            network.log_terms(2),
            expected,
            "follower ({name}) agrees with the leader"
        );
        let rejections = network.rejections_from(2);
        assert!(
            rejections <= 3,
            "({name}): {rejections} rejections, expected at most one per conflicting term"
        );
        assert_eq!(
            network.node(2).status().commit,
            LogIndex(11),
            "({name}) committed through the no-op"
        );
    }
}

/// Builds Figure 8 (a)–(c) on five nodes: S1 led term 2 and put index 2 on S2; S5 led
/// term 3 and wrote its own index 2 alone; S1 is back as leader of term 4 and has copied its
/// term-2 entry to S3, so that entry is on a majority (S1, S2, S3). Returns the network with
/// S5 isolated and S1's term-4 no-op not yet on anyone.
fn figure_8_until_c() -> Network {
    // (a) and (b) as durable logs: index 1 is committed everywhere (term 1).
    let mut network = Network::with_logs(&[&[1, 2], &[1, 2], &[1], &[1], &[1, 3]], 3, |cfg| {
        cfg.pre_vote = false;
        cfg.check_quorum = false;
        cfg.append_entries_max = 1;
    });
    // (c) S5 is down; S1 wins term 4 with S2 and S3 (S4 is cut off too).
    network.isolate(5, &[1, 2, 3, 4]);
    network.isolate(4, &[1, 2, 3]);
    network.node(1).start_election(false);
    // S1's term-4 no-op (index 3) must not reach anyone yet; index 2 may reach S3.
    // The one exception: S1's first probe to S3 (prev_index 2, which S3 lacks) goes through
    // and is rejected, so that S1 backs off and sends index 2 alone.
    let first_probe_to_s3 = std::cell::Cell::new(true);
    network.drop_if = Some(Box::new(move |m| match &m.body {
        MessageBody::AppendEntries(append) if append.entries.iter().any(|e| e.index.0 >= 3) => {
            let probe =
                m.to == NodeId(3) && append.prev_index == LogIndex(2) && first_probe_to_s3.get();
            first_probe_to_s3.set(first_probe_to_s3.get() && !probe);
            !probe
        }
        _ => false,
    }));
    network.settle();
    network.tick_all(2);
    assert_eq!(network.node(1).status().role, Role::Leader);
    assert_eq!(network.node(1).status().term.0, 4);
    assert_eq!(network.log_terms(3), vec![1, 2], "S3 got the term-2 entry");
    network
}

/// Figure 8 (c)→(d): the term-2 entry sits on a majority but is NOT committed (it is not
/// of the leader's term); S1 crashes, S5 wins term 5 and overwrites it everywhere. Had S1
/// counted it as committed, State Machine Safety would now be broken.
#[test]
fn figure_8_c_d_an_old_term_entry_on_a_majority_is_not_committed_and_may_be_overwritten() {
    let mut network = figure_8_until_c();
    // S2 tells S1 it holds index 2 (it does, from term 2): with S1 and S3 that is a majority.
    let ack = Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(4),
        body: MessageBody::AppendResponse(AppendResponse::Accepted {
            match_index: LogIndex(2),
        }),
    };
    network.node(1).step(ack).expect("valid");
    assert_eq!(
        network.node(1).progress(NodeId(3)).map(|pr| pr.match_index),
        Some(LogIndex(2))
    );
    assert!(
        network.node(1).status().commit < LogIndex(2),
        "Figure 8 rule: index 2 is not committed by counting"
    );
    // (d) S1 crashes; S5 comes back and is elected by S2, S3, S4 (its last term 3 > 2).
    network.isolate(1, &[2, 3, 4, 5]);
    network.heal_except(1);
    network.drop_if = None;
    // S5 first campaigns in term 4, where everyone already voted; it wins term 5.
    network.campaign(5);
    network.campaign(5);
    assert_eq!(network.node(5).status().role, Role::Leader);
    assert_eq!(network.node(5).status().term.0, 5);
    network.tick_all(2);
    for id in 2..=5 {
        assert_eq!(
            network.log_terms(id)[1],
            3,
            "S{id} holds S5's term-3 entry at index 2"
        );
    }
    for id in 1..=5 {
        assert!(
            network.applied[&NodeId(id)]
                .iter()
                .all(|e| !(e.index.0 == 2 && e.term.0 == 2)),
            "S{id} never applied it"
        );
    }
}

/// Figure 8 (e): once S1 replicates an entry of its own term (the no-op) to a majority, both
/// it and the term-2 entry below it are committed, and S5 can no longer win an election.
#[test]
fn figure_8_e_an_entry_of_the_current_term_commits_everything_before_it() {
    let mut network = figure_8_until_c();
    network.drop_if = None;
    network.tick_all(2);
    assert_eq!(network.node(1).status().commit, LogIndex(3));
    network.isolate(1, &[2, 3, 4, 5]);
    network.heal_except(1);
    network.campaign(5);
    network.campaign(5);
    assert_ne!(
        network.node(5).status().role,
        Role::Leader,
        "S2 and S3 refuse: their logs are more up-to-date"
    );
}
