//! Entries evicted from memory (`evicted.rs`): terms stay answerable, and a follower that
//! needs evicted entries gets them read back from the driver's storage.

use super::network::Network;
use crate::raft::{LogIndex, MessageBody, Role};

fn small_cache() -> Network {
    let mut network = Network::with_config(3, |cfg| {
        cfg.log_cache_entries_max = 4;
        cfg.append_entries_max = 3;
    });
    network.campaign(1);
    assert_eq!(network.node(1).status().role, Role::Leader);
    network
}

const DATA: [&[u8]; 30] = [
    b"a0", b"a1", b"a2", b"a3", b"a4", b"a5", b"a6", b"a7", b"a8", b"a9", b"b0", b"b1", b"b2",
    b"b3", b"b4", b"b5", b"b6", b"b7", b"b8", b"b9", b"c0", b"c1", b"c2", b"c3", b"c4", b"c5",
    b"c6", b"c7", b"c8", b"c9",
];

#[test]
fn a_lagging_follower_catches_up_from_entries_read_back_from_storage() {
    let mut network = small_cache();
    network.isolate(3, &[1, 2]);
    for data in DATA {
        network.propose(1, data);
    }
    network.tick_all(2);
    let leader = network.node(1);
    assert!(
        leader.log.first_index() > LogIndex(20),
        "the leader evicted what node 2 and itself applied"
    );
    // Terms of evicted entries are still known (for the consistency check and hints).
    assert_eq!(leader.entry_term(LogIndex(2)), Some(leader.status().term));
    assert!(leader.entry(LogIndex(2)).is_none(), "not in memory");
    network.heal();
    network.tick_all(10);
    let fetched = network
        .delivered
        .iter()
        .filter(|m| m.to.0 == 3)
        .any(|m| matches!(&m.body, MessageBody::AppendEntries(a) if a.prev_index < LogIndex(10) && !a.entries.is_empty()));
    assert!(fetched, "node 3 got entries from before the leader's cache");
    assert_eq!(
        network.applied_data(3),
        DATA.to_vec(),
        "node 3 applied everything"
    );
    assert_eq!(network.applied_data(3), network.applied_data(1));
}

#[test]
fn a_new_leader_with_an_evicted_prefix_still_wins_and_replicates() {
    let mut network = small_cache();
    for data in &DATA[..20] {
        network.propose(1, data);
    }
    network.tick_all(2);
    assert!(
        network.node(2).log.first_index() > LogIndex(10),
        "node 2 evicted too"
    );
    // Node 2 or 3 takes over while node 1 is gone; its up-to-date check and appends rely on the
    // terms of evicted entries.
    network.isolate(1, &[2, 3]);
    network.tick_all(40);
    let leader = [2, 3]
        .into_iter()
        .find(|&id| network.node(id).status().role == Role::Leader)
        .expect("node 2 or 3 leads");
    for data in &DATA[20..] {
        network.propose(leader, data);
    }
    network.heal();
    network.tick_all(30);
    for id in 1..=3 {
        assert_eq!(network.applied_data(id), DATA.to_vec(), "node {id}");
    }
}

#[test]
fn a_quiesced_replica_keeps_no_entry_in_memory() {
    let mut network = Network::with_config(3, |cfg| cfg.quiesce_after_ticks = 2);
    network.campaign(1);
    for data in &DATA[..10] {
        network.propose(1, data);
    }
    network.tick_all(10);
    for id in 1..=3 {
        let node = network.node(id);
        assert!(node.is_quiesced());
        assert_eq!(
            node.log.first_index(),
            node.status().last_index.next(),
            "node {id}"
        );
        assert_eq!(
            node.log.last_term(),
            node.status().term,
            "its last term is known"
        );
    }
}

#[test]
fn a_failed_fetch_is_retried_a_heartbeat_round_later_not_in_a_loop() {
    let mut network = small_cache();
    network.isolate(3, &[1, 2]);
    for data in DATA {
        network.propose(1, data);
    }
    network.tick_all(2);
    network.fetches_fail = true;
    network.heal();
    // Settling terminates (it panics after 100 000 deliveries): a failed fetch is not
    // asked again in the same round.
    network.tick_all(6);
    assert!(
        network.applied_data(3).len() < DATA.len(),
        "nothing could be read"
    );
    network.fetches_fail = false;
    network.tick_all(10);
    assert_eq!(
        network.applied_data(3),
        DATA.to_vec(),
        "retried and caught up"
    );
}
