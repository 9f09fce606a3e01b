//! Three engines in one process on loopback, with real logs: groups elect, proposals commit
//! and every replica agrees; requests that cannot succeed get their typed errors.
//!
//! These tests run real threads and sockets: they wait for progress by polling with short
//! sleeps and never assert on time.

mod cluster;

use std::time::Duration;

use cluster::{NODES, cluster, propose, raft_config, start_node, wait_converged, wait_quiesced};
use flotilla::raft::NodeId;
use flotilla::runtime::{GroupId, KvMap};
use flotilla::{Engine, EngineBuilder, RequestError};

#[test]
fn a_thousand_groups_on_three_nodes_commit_and_agree() {
    const GROUPS: u64 = 1000;
    let (_dirs, _addrs, engines) = cluster();
    for engine in &engines {
        for group in 0..GROUPS {
            engine
                .create_group(GroupId(group), &NODES, KvMap::default())
                .expect("created");
        }
    }
    for group in 0..GROUPS {
        let key = group.to_le_bytes();
        assert_eq!(
            propose(&engines, GroupId(group), &KvMap::set_command(&key, b"v")),
            b""
        );
    }
    for group in 0..GROUPS {
        wait_converged(&engines, GroupId(group), &group.to_le_bytes(), b"v");
        let maps: Vec<KvMap> = engines
            .iter()
            .map(|engine| engine.inspect(GroupId(group), KvMap::clone).expect("held"))
            .collect();
        assert!(
            maps.windows(2).all(|pair| pair[0] == pair[1]),
            "group {group} diverged"
        );
    }
    // Proposals here go one at a time, so this test shows no group commit (the shard tests
    // and loadgen do); it checks that every entry written was counted.
    let entries: u64 = engines
        .iter()
        .flat_map(Engine::stats)
        .map(|s| s.wal_entries)
        .sum();
    assert!(
        entries >= 3 * 2 * GROUPS,
        "a no-op and a proposal per group on every node"
    );
    assert_idle_groups_go_silent(&engines, GROUPS);
    for engine in &engines {
        engine.shutdown();
    }
}

/// Once every group has quiesced, the nodes exchange (close to) no Raft messages: over the
/// next 500 ticks, heartbeating groups would send 1000 · 2 · 500 / 4 = 250 000.
fn assert_idle_groups_go_silent(engines: &[Engine<KvMap>], groups: u64) {
    let totals = |engines: &[Engine<KvMap>]| {
        engines
            .iter()
            .flat_map(Engine::stats)
            .fold((0, 0, 0), |acc, s| {
                (
                    acc.0 + s.groups_quiesced,
                    acc.1 + s.messages_sent,
                    acc.2 + s.frames_sent,
                )
            })
    };
    wait_quiesced(engines, groups);
    let (_, messages_before, frames_before) = totals(engines);
    std::thread::sleep(Duration::from_millis(1000)); // 500 ticks of 2 ms.
    let (quiesced, messages_after, frames_after) = totals(engines);
    assert_eq!(quiesced, 3 * groups, "every group stays quiesced");
    assert!(
        messages_after - messages_before <= 10,
        "{} messages sent by idle groups",
        messages_after - messages_before
    );
    // What still flows is the node-level keepalive: about one frame per node pair per
    // heartbeat interval, independent of the number of groups.
    assert!(
        frames_after - frames_before <= 6 * 500 / 4 * 2,
        "{} frames sent by idle nodes",
        frames_after - frames_before
    );
}

#[test]
fn bad_requests_get_typed_errors() {
    let (dirs, addrs, engines) = cluster();
    for engine in &engines {
        engine
            .create_group(GroupId(1), &NODES, KvMap::default())
            .expect("created");
    }
    assert_eq!(
        engines[0].create_group(GroupId(1), &NODES, KvMap::default()),
        Err(RequestError::GroupExists(GroupId(1)))
    );
    assert_eq!(
        engines[0].propose_blocking(GroupId(77), b"x".to_vec()),
        Err(RequestError::GroupNotFound(GroupId(77)))
    );
    // Members that leave this node out (no members at all is a replica joining a group).
    assert!(matches!(
        engines[0].create_group(GroupId(2), &[NodeId(7), NodeId(8)], KvMap::default()),
        Err(RequestError::InvalidGroup(_))
    ));
    propose(&engines, GroupId(1), &KvMap::set_command(b"k", b"v"));
    // A batch: every command answered, in order, with one reply.
    let leader = engines[0]
        .status(GroupId(1))
        .expect("held")
        .leader
        .expect("a leader");
    let at = NODES
        .iter()
        .position(|&node| node == leader)
        .expect("a member");
    let commands: Vec<Vec<u8>> = (0..100u8)
        .map(|k| KvMap::set_command(b"batch", &[k]))
        .collect();
    let answers = engines[at]
        .propose_batch(GroupId(1), commands.clone())
        .wait();
    assert_eq!(answers.len(), 100);
    assert_eq!(answers[0], Ok(Vec::new()), "the key was unset");
    for (k, answer) in answers.iter().enumerate().skip(1) {
        assert_eq!(
            answer,
            &Ok(vec![u8::try_from(k - 1).expect("small")]),
            "answer {k}"
        );
    }
    let follower = (at + 1) % 3;
    let refused = engines[follower].propose_batch(GroupId(1), commands).wait();
    assert!(
        refused
            .iter()
            .all(|answer| matches!(answer, Err(RequestError::NotLeader { .. })))
    );
    assert_eq!(
        engines[at].propose_batch(GroupId(1), Vec::new()).wait(),
        Vec::new()
    );
    let max = raft_config().proposal_bytes_max;
    let leader = engines[0]
        .status(GroupId(1))
        .expect("held")
        .leader
        .expect("a leader");
    let at = NODES
        .iter()
        .position(|&node| node == leader)
        .expect("a member");
    assert_eq!(
        engines[at].propose_blocking(GroupId(1), vec![0; max + 1]),
        Err(RequestError::TooLarge {
            size_bytes: max + 1,
            max_bytes: max
        })
    );
    // A batch larger than one turn's record is refused whole, and the shard keeps going.
    let huge: Vec<Vec<u8>> = (0..3).map(|_| vec![1u8; 4 << 20]).collect();
    let refused = engines[at].propose_batch(GroupId(1), huge).wait();
    assert!(
        refused
            .iter()
            .all(|answer| matches!(answer, Err(RequestError::TooLarge { .. })))
    );
    propose(
        &engines,
        GroupId(1),
        &KvMap::set_command(b"still", b"alive"),
    );
    // A data directory remembers its node and shard count.
    assert!(matches!(
        EngineBuilder::new(NODES[0], 0xC0FFEE, dirs[0].path(), addrs[0]).shards(2).start::<KvMap>(),
        Err(flotilla::BuildError::Config(reason)) if reason.contains("another node or shard count")
    ));
    // After shutdown every request is answered with `Shutdown`, never left hanging.
    engines[2].shutdown();
    assert_eq!(
        engines[2].propose_blocking(GroupId(1), b"x".to_vec()),
        Err(RequestError::Shutdown)
    );
    assert_eq!(engines[2].status(GroupId(1)), Err(RequestError::Shutdown));
    assert!(matches!(
        EngineBuilder::new(NodeId(1), 1, dirs[0].path(), addrs[0])
            .shards(0)
            .start::<KvMap>(),
        Err(flotilla::BuildError::Config(_))
    ));
}

#[test]
fn the_node_leading_most_groups_fails_the_others_take_over_and_it_catches_up_on_restart() {
    const GROUPS: u64 = 40;
    let (dirs, addrs, mut engines) = cluster();
    for engine in &engines {
        for group in 0..GROUPS {
            engine
                .create_group(GroupId(group), &NODES, KvMap::default())
                .expect("created");
        }
    }
    for group in 0..GROUPS {
        propose(
            &engines,
            GroupId(group),
            &KvMap::set_command(b"before", b"one"),
        );
    }
    let leads = |engine: &Engine<KvMap>| {
        (0..GROUPS)
            .filter(|&g| {
                engine
                    .status(GroupId(g))
                    .is_ok_and(|s| s.role == flotilla::raft::Role::Leader)
            })
            .count()
    };
    let busiest = (0..3)
        .max_by_key(|&k| leads(&engines[k]))
        .expect("three nodes");
    // Every group goes quiet first: its followers run no election timer, so only the
    // shards' silence detection can wake them when the leader's node goes.
    wait_quiesced(&engines, GROUPS);
    engines[busiest].shutdown();
    let survivors_lead_every_group = |engines: &[Engine<KvMap>]| {
        (0..GROUPS).all(|g| {
            engines.iter().enumerate().any(|(k, engine)| {
                k != busiest
                    && engine
                        .status(GroupId(g))
                        .is_ok_and(|s| s.role == flotilla::raft::Role::Leader)
            })
        })
    };
    let mut elected = false;
    for _attempt in 0..5_000 {
        // Status does not wake a group; nothing is proposed until every group has a leader.
        if survivors_lead_every_group(&engines) {
            elected = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        elected,
        "the quiesced groups of the failed node elected new leaders"
    );
    // Every group commits without it (proposals go to the two nodes left).
    let survivors: Vec<Engine<KvMap>> = {
        let mut rest = Vec::new();
        for (k, engine) in engines.drain(..).enumerate() {
            if k != busiest {
                rest.push(engine);
            }
        }
        rest
    };
    for group in 0..GROUPS {
        propose(
            &survivors,
            GroupId(group),
            &KvMap::set_command(b"after", b"two"),
        );
    }
    // It restarts from its data directory and catches up: every acknowledged write is on
    // every replica.
    let restarted = start_node(busiest, &addrs, dirs[busiest].path());
    for group in 0..GROUPS {
        restarted
            .create_group(GroupId(group), &NODES, KvMap::default())
            .expect("restored");
    }
    let mut all = survivors;
    all.push(restarted);
    for group in 0..GROUPS {
        wait_converged(&all, GroupId(group), b"after", b"two");
        wait_converged(&all, GroupId(group), b"before", b"one");
    }
}
