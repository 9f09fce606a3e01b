//! Three shards (one per node) over real logs and the in-memory transport: many groups
//! elect, commit and apply the same commands everywhere; a restarted node catches up.

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
    let mut shard = Shard::new(Config::new(node, 17), wal, transport);
    for group in 0..groups {
        shard
            .create_group(GroupId(group), &NODES, KvMap::default())
            .expect("group created");
    }
    shard
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
        for shard in shards.iter_mut() {
            shard.run_once().expect("the shard runs");
        }
        if done(shards) {
            return;
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
    let network = MemoryNetwork::new();
    let dirs: Vec<_> = NODES
        .iter()
        .map(|_| tempfile::tempdir().expect("directory"))
        .collect();
    let mut shards: Vec<TestShard> = NODES
        .iter()
        .zip(&dirs)
        .map(|(&node, dir)| start(node, dir.path(), &network, GROUPS))
        .collect();
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
        records * 10 < entries,
        "{records} records for {entries} entries"
    );
}

#[test]
fn a_node_restarted_from_its_log_catches_up() {
    const GROUPS: u64 = 50;
    let network = MemoryNetwork::new();
    let dirs: Vec<_> = NODES
        .iter()
        .map(|_| tempfile::tempdir().expect("directory"))
        .collect();
    let mut shards: Vec<TestShard> = NODES
        .iter()
        .zip(&dirs)
        .map(|(&node, dir)| start(node, dir.path(), &network, GROUPS))
        .collect();
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
