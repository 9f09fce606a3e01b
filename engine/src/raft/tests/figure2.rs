//! One test per rule of Figure 2 of the Raft paper ("Rules for Servers", the AppendEntries
//! and RequestVote receiver rules, and "persistent state"), named after the rule.

use bytes::Bytes;

use super::network::{Network, ids};
use crate::raft::{
    AppendEntries, AppendResponse, Entry, EntryKind, LogIndex, Message, MessageBody, NodeId, Role,
    Term, VoteKind, VoteRequest, VoteResponse,
};

fn message(from: u64, to: u64, term: u64, body: MessageBody) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        body,
    }
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index: LogIndex(index),
        term: Term(term),
        kind: EntryKind::Normal,
        data: Bytes::from(format!("{index}")).into(),
    }
}

fn append(prev_index: u64, prev_term: u64, entries: Vec<Entry>, commit: u64) -> MessageBody {
    MessageBody::AppendEntries(AppendEntries {
        prev_index: LogIndex(prev_index),
        prev_term: Term(prev_term),
        entries,
        commit: LogIndex(commit),
    })
}

fn vote(last_index: u64, last_term: u64) -> MessageBody {
    MessageBody::RequestVote(VoteRequest {
        kind: VoteKind::Vote,
        last_index: LogIndex(last_index),
        last_term: Term(last_term),
        transfer: false,
    })
}

/// Steps `body` into node 1 of a fresh 3-node network with pre-vote and check-quorum off
/// (so the plain Figure 2 rules apply), returning every message node 1 then emits.
fn respond(network: &mut Network, body: MessageBody, from: u64, term: u64) -> Vec<Message> {
    network
        .node(1)
        .step(message(from, 1, term, body))
        .expect("valid message");
    let node = network.node(1);
    let mut out = Vec::new();
    while let Some(ready) = node.poll_ready() {
        out.extend(ready.messages);
        node.on_persisted(ready.id);
        out.extend(ready.persisted_messages);
    }
    out
}

fn plain() -> Network {
    Network::with_config(3, |cfg| {
        cfg.pre_vote = false;
        cfg.check_quorum = false;
    })
}

fn plain_with_log(log: &[u64], term: u64) -> Network {
    Network::with_logs(&[log, &[], &[]], term, |cfg| {
        cfg.pre_vote = false;
        cfg.check_quorum = false;
    })
}

fn accepted(messages: &[Message]) -> Option<LogIndex> {
    messages.iter().find_map(|m| match m.body {
        MessageBody::AppendResponse(AppendResponse::Accepted { match_index }) => Some(match_index),
        _ => None,
    })
}

fn granted(messages: &[Message]) -> Option<bool> {
    messages.iter().find_map(|m| match m.body {
        MessageBody::VoteResponse(VoteResponse { granted, .. }) => Some(granted),
        _ => None,
    })
}

#[test]
fn all_servers_apply_committed_entries_in_log_order() {
    let mut network = Network::new(3);
    network.campaign(1);
    for data in [&b"a"[..], b"b", b"c"] {
        network.propose(1, data);
    }
    network.tick_all(3);
    for id in 1..=3 {
        assert_eq!(
            network.applied_data(id),
            vec![&b"a"[..], b"b", b"c"],
            "node {id}"
        );
        let applied: Vec<u64> = network.applied[&NodeId(id)]
            .iter()
            .map(|e| e.index.0)
            .collect();
        assert_eq!(
            applied,
            (1..=4).collect::<Vec<_>>(),
            "node {id} applies every index once, in order"
        );
    }
}

#[test]
fn all_servers_convert_to_follower_on_a_higher_term() {
    let mut network = plain();
    network.campaign(1);
    assert_eq!(network.node(1).status().role, Role::Leader);
    let term = network.node(1).status().term.0;
    let response = MessageBody::HeartbeatResponse(crate::raft::HeartbeatResponse { read_round: 0 });
    network
        .node(1)
        .step(message(2, 1, term + 5, response))
        .expect("valid");
    let status = network.node(1).status();
    assert_eq!((status.role, status.term), (Role::Follower, Term(term + 5)));
    assert_eq!(
        network.node(1).hard_state().vote,
        None,
        "a new term clears the vote"
    );
}

#[test]
fn followers_respond_to_leaders_and_candidates() {
    let mut network = plain();
    let out = respond(&mut network, append(0, 0, vec![entry(1, 1)], 0), 2, 1);
    assert_eq!(accepted(&out), Some(LogIndex(1)));
    let out = respond(&mut network, vote(1, 1), 3, 2);
    assert_eq!(granted(&out), Some(true));
}

#[test]
fn followers_start_an_election_after_a_randomized_timeout_without_a_leader() {
    let mut network = plain();
    let base = 10;
    let mut elapsed = 0;
    while network.node(1).status().role == Role::Follower {
        network.node(1).tick();
        elapsed += 1;
        assert!(elapsed < 2 * base, "timeout must be below 2·base");
    }
    assert!(
        elapsed >= base,
        "timeout {elapsed} must be at least the base {base}"
    );
    // Different seeds draw different timeouts (randomized, so split votes resolve).
    let timeouts: Vec<u32> = (1..=3)
        .map(|id| network.node(id).election_timeout_randomized)
        .collect();
    assert!(
        timeouts.iter().any(|&t| t != timeouts[0]) || timeouts.len() < 2,
        "{timeouts:?}"
    );
}

#[test]
fn candidates_increment_term_vote_for_themselves_and_request_votes() {
    let mut network = plain();
    network.node(1).start_election(false);
    let node = network.node(1);
    assert_eq!(node.status().role, Role::Candidate);
    assert_eq!(node.hard_state().term, Term(1));
    assert_eq!(node.hard_state().vote, Some(NodeId(1)));
    let ready = node.poll_ready().expect("votes to request");
    assert_eq!(ready.hard_state.map(|hs| hs.vote), Some(Some(NodeId(1))));
    assert!(
        ready.messages.is_empty(),
        "requests wait for the self-vote to be durable"
    );
    let requests: Vec<NodeId> = ready.persisted_messages.iter().map(|m| m.to).collect();
    assert_eq!(requests, vec![NodeId(2), NodeId(3)]);
}

#[test]
fn candidates_with_votes_from_a_majority_become_leader() {
    let mut network = plain();
    network.isolate(3, &[1, 2]);
    network.campaign(1);
    assert_eq!(
        network.node(1).status().role,
        Role::Leader,
        "1 + 2 is a majority of 3"
    );
    let mut network = Network::with_config(5, |cfg| cfg.pre_vote = false);
    network.isolate(1, &[3, 4, 5]);
    network.campaign(1);
    assert_eq!(
        network.node(1).status().role,
        Role::Candidate,
        "2 of 5 is not a majority"
    );
}

#[test]
fn candidates_become_followers_on_append_entries_from_a_leader_of_their_term() {
    let mut network = plain();
    network.isolate(1, &[2, 3]);
    network.campaign(1);
    assert_eq!(network.node(1).status().role, Role::Candidate);
    respond(&mut network, append(0, 0, vec![], 0), 2, 1);
    let status = network.node(1).status();
    assert_eq!(
        (status.role, status.leader),
        (Role::Follower, Some(NodeId(2)))
    );
}

#[test]
fn candidates_start_a_new_election_when_the_timeout_elapses_on_a_split_vote() {
    let mut network = plain();
    network.isolate(1, &[2, 3]);
    network.campaign(1);
    let term = network.node(1).status().term;
    network.tick_all(20);
    let status = network.node(1).status();
    assert_eq!(status.role, Role::Candidate);
    assert!(status.term > term, "a new election in a new term");
    network.heal();
    network.tick_all(40);
    assert!(
        network.leader().is_some(),
        "the split resolves once the network heals"
    );
}

#[test]
fn leaders_send_heartbeats_while_idle() {
    let mut network = plain();
    network.campaign(1);
    network.delivered.clear();
    network.tick_all(6);
    let heartbeats = network
        .delivered
        .iter()
        .filter(|m| matches!(m.body, MessageBody::Heartbeat(_)))
        .count();
    assert_eq!(
        heartbeats, 6,
        "interval 2 ticks: 3 rounds to 2 followers in 6 ticks"
    );
    assert_eq!(network.node(2).status().leader, Some(NodeId(1)));
}

#[test]
fn leaders_append_proposals_and_apply_them_once_committed() {
    let mut network = plain();
    network.campaign(1);
    network.isolate(1, &[2, 3]);
    let proposed = network
        .node(1)
        .propose(Bytes::from_static(b"x"))
        .expect("leader");
    network.settle();
    assert_eq!(
        network.node(1).status().last_index,
        proposed.index,
        "appended locally at once"
    );
    assert!(
        network.applied_data(1).is_empty(),
        "not applied before a majority has it"
    );
    network.heal();
    network.tick_all(2);
    assert_eq!(network.applied_data(1), vec![&b"x"[..]]);
}

#[test]
fn leaders_back_off_next_index_by_whole_terms_on_rejection() {
    // The follower holds 60 entries of an old term the leader does not have: one rejection
    // must skip the whole term, not one entry at a time.
    let follower_log: Vec<u64> = std::iter::repeat_n(1, 5)
        .chain(std::iter::repeat_n(2, 60))
        .collect();
    let leader_log: Vec<u64> = std::iter::repeat_n(1, 5)
        .chain(std::iter::repeat_n(3, 10))
        .collect();
    let mut network = Network::with_logs(&[&leader_log, &follower_log, &leader_log], 3, |cfg| {
        cfg.pre_vote = false
    });
    network.campaign(1);
    assert_eq!(network.node(1).status().role, Role::Leader);
    network.tick_all(2);
    let rejections = network.rejections_from(2);
    assert!(
        rejections <= 2,
        "{rejections} rejections for one conflicting term"
    );
    assert_eq!(network.log_terms(2), network.log_terms(1));
}

#[test]
fn leaders_commit_by_majority_match_only_entries_of_their_term() {
    // Node 1 leads term 3 with an entry of term 2 that node 2 also holds.
    let mut network = Network::with_logs(&[&[1, 2], &[1, 2], &[1]], 2, |cfg| cfg.pre_vote = false);
    network.isolate(1, &[3]);
    network.node(1).start_election(false);
    // Deliver the votes but drop the leader's appends: the term-2 entry is on a majority.
    network.drop_if = Some(Box::new(|m| {
        matches!(m.body, MessageBody::AppendEntries(_))
    }));
    network.settle();
    assert_eq!(network.node(1).status().role, Role::Leader);
    // Node 2 acknowledges index 2 (which it holds): leader (3, durable) and node 2 (2) make
    // a majority at index 2, but its entry is of term 2.
    let ack = MessageBody::AppendResponse(AppendResponse::Accepted {
        match_index: LogIndex(2),
    });
    network.node(1).step(message(2, 1, 3, ack)).expect("valid");
    assert_eq!(
        network.node(1).status().commit,
        LogIndex(0),
        "index 2 (term 2) is not committed by counting"
    );
    network.drop_if = None;
    network.tick_all(2);
    assert_eq!(
        network.node(1).status().commit,
        LogIndex(3),
        "committed under the term-3 no-op"
    );
}

#[test]
fn append_entries_rejects_a_stale_term() {
    let mut network = plain();
    respond(&mut network, append(0, 0, vec![], 0), 2, 5);
    let out = respond(&mut network, append(0, 0, vec![entry(1, 3)], 0), 3, 3);
    assert_eq!(accepted(&out), None, "term 3 < 5");
    assert_eq!(out[0].term, Term(5), "the answer carries the newer term");
    assert_eq!(network.node(1).status().last_index, LogIndex(0));
}

#[test]
fn append_entries_rejects_when_the_log_lacks_prev_entry() {
    let mut network = plain_with_log(&[1, 1], 2);
    let out = respond(&mut network, append(2, 2, vec![entry(3, 2)], 0), 2, 2);
    assert!(matches!(
        out[0].body,
        MessageBody::AppendResponse(AppendResponse::Rejected {
            rejected_index: LogIndex(2),
            ..
        })
    ));
    let out = respond(&mut network, append(5, 2, vec![], 0), 2, 2);
    match out[0].body {
        MessageBody::AppendResponse(AppendResponse::Rejected { hint, .. }) => {
            assert_eq!(
                (hint.conflict_term, hint.conflict_index),
                (None, LogIndex(3)),
                "log too short: its end"
            );
        }
        ref other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn append_entries_deletes_a_conflicting_entry_and_all_that_follow() {
    let mut network = plain_with_log(&[1, 1, 1, 1], 2);
    let out = respond(&mut network, append(1, 1, vec![entry(2, 2)], 0), 2, 2);
    assert_eq!(accepted(&out), Some(LogIndex(2)));
    assert_eq!(network.log_terms(1), vec![1, 2]);
}

#[test]
fn append_entries_appends_only_entries_not_already_in_the_log() {
    let mut network = plain();
    let entries = vec![entry(1, 1), entry(2, 1), entry(3, 1)];
    respond(&mut network, append(0, 0, entries.clone(), 0), 2, 1);
    // A delayed duplicate of a shorter, older message must not truncate anything.
    let out = respond(&mut network, append(0, 0, entries[..1].to_vec(), 0), 2, 1);
    assert_eq!(accepted(&out), Some(LogIndex(1)));
    assert_eq!(network.log_terms(1), vec![1, 1, 1]);
}

#[test]
fn append_entries_sets_commit_to_min_of_leader_commit_and_last_new_entry() {
    // Entries after the last new one may be a stale suffix the leader has not reached yet:
    // they must not be committed by a leader commit that is beyond them.
    let mut network = plain_with_log(&[1, 1, 2], 3);
    respond(&mut network, append(1, 1, vec![entry(2, 1)], 9), 2, 3);
    assert_eq!(
        network.node(1).status().commit,
        LogIndex(2),
        "not the stale index 3"
    );
    let mut network = plain();
    respond(
        &mut network,
        append(0, 0, vec![entry(1, 1), entry(2, 1)], 9),
        2,
        1,
    );
    assert_eq!(
        network.node(1).status().commit,
        LogIndex(2),
        "capped at the last new entry"
    );
    respond(&mut network, append(2, 1, vec![entry(3, 1)], 1), 2, 1);
    assert_eq!(
        network.node(1).status().commit,
        LogIndex(2),
        "never lowered"
    );
}

#[test]
fn request_vote_rejects_a_stale_term() {
    let mut network = plain();
    network
        .node(1)
        .step(message(2, 1, 4, append(0, 0, vec![], 0)))
        .expect("valid");
    let out = respond(&mut network, vote(0, 0), 3, 3);
    assert!(
        out.is_empty() || granted(&out) != Some(true),
        "no vote for term 3 < 4"
    );
    assert_eq!(network.node(1).hard_state().vote, None);
}

#[test]
fn request_vote_grants_at_most_one_vote_per_term() {
    let mut network = plain();
    assert_eq!(
        granted(&respond(&mut network, vote(0, 0), 2, 1)),
        Some(true)
    );
    assert_eq!(
        granted(&respond(&mut network, vote(0, 0), 3, 1)),
        Some(false),
        "already voted for 2 in term 1"
    );
    assert_eq!(
        granted(&respond(&mut network, vote(0, 0), 2, 1)),
        Some(true),
        "a duplicate request from 2 is fine"
    );
}

#[test]
fn request_vote_rejects_a_candidate_whose_log_is_less_up_to_date() {
    let mut network = plain_with_log(&[1, 2], 2);
    assert_eq!(
        granted(&respond(&mut network, vote(5, 1), 2, 3)),
        Some(false),
        "lower last term"
    );
    assert_eq!(
        granted(&respond(&mut network, vote(1, 2), 3, 4)),
        Some(false),
        "same term, shorter"
    );
    assert_eq!(
        granted(&respond(&mut network, vote(2, 2), 3, 5)),
        Some(true),
        "same term and length"
    );
}

#[test]
fn persistent_state_vote_is_durable_before_the_response_leaves() {
    let mut network = plain();
    network
        .node(1)
        .step(message(2, 1, 1, vote(0, 0)))
        .expect("valid");
    let ready = network.node(1).poll_ready().expect("a vote to persist");
    assert_eq!(
        ready.hard_state.map(|hs| (hs.term, hs.vote)),
        Some((Term(1), Some(NodeId(2))))
    );
    assert!(ready.messages.is_empty());
    assert_eq!(
        granted(&ready.persisted_messages),
        Some(true),
        "the grant waits for persistence"
    );
    let _ = ids(1);
}
