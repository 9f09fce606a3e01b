//! Three shards (one per node) over real logs and the in-memory transport: many groups
//! elect, commit and apply the same commands everywhere; a restarted node catches up; a
//! lagging follower is served entries read back from the leader's log.

use flotilla_net::{MemoryNetwork, MemoryTransport, NodeId as NetNodeId, TransportConfig};
use flotilla_wal::{Wal, WalOptions};

use super::*;
use crate::raft::Role;
use crate::runtime::KvMap;

const NODES: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

type TestShard = Shard<MemoryTransport, KvMap>;

fn start(node: NodeId, dir: &std::path::Path, network: &MemoryNetwork, groups: u64) -> TestShard {
    let options = WalOptions {
        segment_size_bytes: 4 << 20,
        ..WalOptions::default()
    };
    let (wal, _) = Wal::open(dir, options).expect("log opens");
    let transport = network.endpoint(TransportConfig::new(7, NetNodeId(node.0)));
    // A one-entry cache: a follower that falls behind is served entries read back from the
    // leader's log (`Ready::fetches`).
    let config = Config {
        log_cache_entries_max: 1,
        ..Config::new(node, 17)
    };
    let mut shard = Shard::new(config, wal, transport);
    for group in 0..groups {
        shard
            .create_group(GroupId(group), &NODES, KvMap::default())
            .expect("group created");
    }
    shard
}

/// Three nodes on one in-memory network, each with its log in its own directory.
fn cluster(groups: u64) -> (MemoryNetwork, Vec<tempfile::TempDir>, Vec<TestShard>) {
    let network = MemoryNetwork::new();
    let dirs: Vec<_> = NODES
        .iter()
        .map(|_| tempfile::tempdir().expect("directory"))
        .collect();
    let shards = NODES
        .iter()
        .zip(&dirs)
        .map(|(&node, dir)| start(node, dir.path(), &network, groups))
        .collect();
    (network, dirs, shards)
}

/// Runs every shard (ticking every 4th turn) until `done` holds.
fn run_until(
    shards: &mut [TestShard],
    turns_max: u32,
    mut done: impl FnMut(&mut [TestShard]) -> bool,
) {
    for turn in 0..turns_max {
        if turn % 4 == 0 {
            shards.iter_mut().for_each(Shard::tick);
        }
        let mut worked = false;
        for shard in shards.iter_mut() {
            worked |= shard.run_once().expect("the shard runs");
        }
        if done(shards) {
            return;
        }
        // Turns are time here: a turn that only waits for the disk lasts a little, so that
        // a slow sync (a loaded machine) does not make ticks, and so elections, race ahead.
        if !worked && shards.iter().any(|shard| shard.records_in_flight() > 0) {
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
    }
    panic!("not done within {turns_max} turns");
}

fn leader_of(shards: &[TestShard], group: GroupId) -> Option<usize> {
    shards
        .iter()
        .position(|shard| shard.status(group).is_some_and(|s| s.role == Role::Leader))
}

/// Proposes `key = value` on every group through its leader and waits for every outcome.
fn write_everywhere(shards: &mut [TestShard], groups: u64, value: &[u8]) -> Vec<Completion> {
    run_until(shards, 20_000, |shards| {
        (0..groups).all(|g| leader_of(shards, GroupId(g)).is_some())
    });
    let mut pending = 0;
    for group in 0..groups {
        let leader = leader_of(shards, GroupId(group)).expect("elected");
        let key = group.to_le_bytes();
        shards[leader]
            .propose(GroupId(group), &KvMap::set_command(&key, value))
            .expect("leads");
        pending += 1;
    }
    let mut completions = Vec::new();
    run_until(shards, 20_000, |shards| {
        shards
            .iter_mut()
            .for_each(|shard| shard.take_completions(&mut completions));
        completions.len() >= pending
    });
    completions
}

/// Every replica of every group holds the same map, with `value` under the group's key.
fn assert_converged(shards: &mut [TestShard], groups: u64, value: &[u8]) {
    run_until(shards, 20_000, |shards| {
        (0..groups).all(|group| {
            let key = group.to_le_bytes();
            shards.iter().all(|shard| {
                shard.machine(GroupId(group)).and_then(|map| map.get(&key)) == Some(value)
            })
        })
    });
    for group in 0..groups {
        let maps: Vec<&KvMap> = shards
            .iter()
            .map(|shard| shard.machine(GroupId(group)).expect("held"))
            .collect();
        assert!(
            maps.windows(2).all(|pair| pair[0] == pair[1]),
            "group {group} diverged"
        );
    }
}

#[test]
fn a_thousand_groups_commit_a_proposal_each_and_every_replica_agrees() {
    const GROUPS: u64 = 1000;
    let (_network, _dirs, mut shards) = cluster(GROUPS);
    let completions = write_everywhere(&mut shards, GROUPS, b"v1");
    assert_eq!(completions.len() as u64, GROUPS);
    assert!(
        completions
            .iter()
            .all(|completion| completion.outcome == Ok(Vec::new()))
    );
    assert_converged(&mut shards, GROUPS, b"v1");
    // Group commit at work: far fewer records than entries.
    let stats: Vec<ShardStats> = shards.iter().map(Shard::stats).collect();
    let (records, entries): (u64, u64) = stats
        .iter()
        .fold((0, 0), |(r, e), s| (r + s.wal_records, e + s.wal_entries));
    assert!(
        entries >= 3 * GROUPS * 2,
        "every replica wrote a no-op and the proposal per group"
    );
    assert!(
        records * 4 < entries,
        "{records} records for {entries} entries"
    );
}

#[test]
fn a_node_restarted_from_its_log_catches_up() {
    const GROUPS: u64 = 50;
    let (network, dirs, mut shards) = cluster(GROUPS);
    write_everywhere(&mut shards, GROUPS, b"before");
    assert_converged(&mut shards, GROUPS, b"before");
    // Node 3 stops; the others keep writing.
    let stopped = shards.pop().expect("three shards");
    drop(stopped.close().expect("closes"));
    let completions = write_everywhere(&mut shards, GROUPS, b"during");
    assert!(
        completions
            .iter()
            .all(|completion| completion.outcome.is_ok())
    );
    // Node 3 restarts from its log and catches up with what it missed.
    shards.push(start(NodeId(3), dirs[2].path(), &network, GROUPS));
    assert_converged(&mut shards, GROUPS, b"during");
}

#[test]
fn proposals_to_unknown_groups_and_followers_are_refused() {
    let network = MemoryNetwork::new();
    let dir = tempfile::tempdir().expect("directory");
    let mut shard = start(NodeId(1), dir.path(), &network, 1);
    assert_eq!(
        shard.propose(GroupId(9), b"x"),
        Err(ShardProposeError::UnknownGroup(GroupId(9)))
    );
    assert!(matches!(
        shard.propose(GroupId(0), b"x"),
        Err(ShardProposeError::Raft(ProposeError::NotLeader { .. }))
    ));
    assert!(matches!(
        shard.create_group(GroupId(0), &NODES, KvMap::default()),
        Err(CreateGroupError::Exists(GroupId(0)))
    ));
}

#[test]
fn a_partitioned_minority_commits_nothing_and_healing_converges() {
    const GROUPS: u64 = 30;
    let (network, _dirs, mut shards) = cluster(GROUPS);
    write_everywhere(&mut shards, GROUPS, b"one");
    assert_converged(&mut shards, GROUPS, b"one");
    // Node 1 alone on one side.
    for other in [NodeId(2), NodeId(3)] {
        network.partition(NetNodeId(1), NetNodeId(other.0));
    }
    let applied_before = shards[0].stats().entries_applied;
    // The majority elects leaders for every group and commits.
    let completions = {
        let mut majority: Vec<TestShard> = shards.drain(1..).collect();
        let completions = write_everywhere(&mut majority, GROUPS, b"two");
        shards.extend(majority);
        completions
    };
    assert!(
        completions
            .iter()
            .all(|completion| completion.outcome.is_ok())
    );
    // Meanwhile the minority node, run as long again, commits nothing: proposals it takes
    // as a stale leader never complete.
    let mut stale = Vec::new();
    for group in 0..GROUPS {
        if shards[0]
            .status(GroupId(group))
            .is_some_and(|status| status.role == Role::Leader)
        {
            stale.push(
                shards[0]
                    .propose(GroupId(group), &KvMap::set_command(b"x", b"stale"))
                    .expect("leads"),
            );
        }
    }
    for turn in 0..2_000 {
        if turn % 4 == 0 {
            shards[0].tick();
        }
        shards[0].run_once().expect("runs");
    }
    let mut minority_completions = Vec::new();
    shards[0].take_completions(&mut minority_completions);
    assert!(
        minority_completions.is_empty(),
        "the minority committed {minority_completions:?}"
    );
    assert_eq!(
        shards[0].stats().entries_applied,
        applied_before,
        "the minority applied entries"
    );
    // Healing converges everyone on the majority's writes; the stale proposals fail.
    for other in [NodeId(2), NodeId(3)] {
        network.heal(NetNodeId(1), NetNodeId(other.0));
    }
    assert_converged(&mut shards, GROUPS, b"two");
    let fetches: u64 = shards.iter().map(|shard| shard.stats().log_fetches).sum();
    assert!(
        fetches > 0,
        "node 1 caught up from entries read back from the log"
    );
    let mut healed = Vec::new();
    run_until(&mut shards, 20_000, |shards| {
        shards[0].take_completions(&mut healed);
        healed.len() >= stale.len()
    });
    assert!(
        healed
            .iter()
            .all(|completion| completion.outcome == Err(Unapplied::Superseded))
    );
    for group in 0..GROUPS {
        assert!(shards.iter().all(|shard| {
            shard
                .machine(GroupId(group))
                .expect("held")
                .get(b"x")
                .is_none()
        }));
    }
}

#[test]
fn when_the_node_leading_most_groups_fails_the_others_take_over_and_it_catches_up() {
    const GROUPS: u64 = 40;
    let (network, dirs, mut shards) = cluster(GROUPS);
    let first = write_everywhere(&mut shards, GROUPS, b"one");
    assert!(first.iter().all(|completion| completion.outcome.is_ok()));
    let leads = |shard: &TestShard| {
        (0..GROUPS)
            .filter(|&g| {
                shard
                    .status(GroupId(g))
                    .is_some_and(|s| s.role == Role::Leader)
            })
            .count()
    };
    let busiest = (0..3)
        .max_by_key(|&k| leads(&shards[k]))
        .expect("three shards");
    let failed = shards.remove(busiest);
    let failed_node = failed.node();
    drop(failed.close().expect("closes"));
    // Every group elects a leader among the two left, and commits.
    let second = write_everywhere(&mut shards, GROUPS, b"two");
    assert!(second.iter().all(|completion| completion.outcome.is_ok()));
    // The failed node restarts from its directory and catches up; every acknowledged
    // write is on every replica.
    shards.insert(
        busiest,
        start(failed_node, dirs[busiest].path(), &network, GROUPS),
    );
    assert_converged(&mut shards, GROUPS, b"two");
}

#[test]
fn an_oversize_proposal_is_refused_with_its_size() {
    let (_network, _dirs, mut shards) = cluster(1);
    run_until(&mut shards, 20_000, |shards| {
        leader_of(shards, GroupId(0)).is_some()
    });
    let leader = leader_of(&shards, GroupId(0)).expect("elected");
    let max = Config::new(NodeId(1), 0).proposal_bytes_max;
    let too_large = vec![0u8; max + 1];
    assert_eq!(
        shards[leader].propose(GroupId(0), &too_large),
        Err(ShardProposeError::Raft(ProposeError::ProposalTooLarge {
            size_bytes: max + 1,
            max_bytes: max
        }))
    );
}

#[test]
fn snapshots_let_the_log_delete_segments_every_group_compacted_past() {
    let network = MemoryNetwork::new();
    let dirs: Vec<_> = NODES
        .iter()
        .map(|_| tempfile::tempdir().expect("directory"))
        .collect();
    let mut shards: Vec<TestShard> = NODES
        .iter()
        .zip(&dirs)
        .map(|(&node, dir)| {
            let options = WalOptions {
                segment_size_bytes: 4 << 20,
                ..WalOptions::default()
            };
            let (wal, _) = Wal::open(dir.path().join("log"), options).expect("log opens");
            let transport = network.endpoint(TransportConfig::new(7, NetNodeId(node.0)));
            let config = Config {
                compaction_tail_entries: 4,
                ..Config::new(node, 17)
            };
            let store = SnapshotStore::open(&dir.path().join("snapshots"), 20).expect("opens");
            let mut shard = Shard::new(config, wal, transport).with_snapshots(store);
            shard
                .create_group(GroupId(0), &NODES, KvMap::default())
                .expect("group created");
            shard
        })
        .collect();
    run_until(&mut shards, 20_000, |shards| {
        leader_of(shards, GroupId(0)).is_some()
    });
    // 16 MiB of 64 KiB commands (the same key, so the state machine stays small): four
    // segments' worth on every node.
    let value = vec![7u8; 64 << 10];
    let mut completions = Vec::new();
    for _round in 0..16 {
        let leader = leader_of(&shards, GroupId(0)).expect("elected");
        for _ in 0..16 {
            shards[leader]
                .propose(GroupId(0), &KvMap::set_command(b"k", &value))
                .expect("leads");
        }
        let target = completions.len() + 16;
        run_until(&mut shards, 200_000, |shards| {
            shards
                .iter_mut()
                .for_each(|shard| shard.take_completions(&mut completions));
            completions.len() >= target
        });
    }
    // A collection runs every few ticks; the first rewrites, a later one deletes.
    run_until(&mut shards, 200_000, |shards| {
        shards
            .iter()
            .all(|shard| shard.stats().wal_segments_collected > 0)
    });
    for shard in &shards {
        let stats = shard.stats();
        assert!(stats.snapshots_taken > 0, "{stats:?}");
    }
    run_until(&mut shards, 200_000, |shards| {
        let applied: Vec<_> = shards
            .iter()
            .map(|shard| shard.status(GroupId(0)).expect("held").applied)
            .collect();
        applied.windows(2).all(|pair| pair[0] == pair[1])
    });
    let maps: Vec<&KvMap> = shards
        .iter()
        .map(|shard| shard.machine(GroupId(0)).expect("held"))
        .collect();
    assert!(
        maps.windows(2).all(|pair| pair[0] == pair[1]),
        "replicas diverged"
    );
}
