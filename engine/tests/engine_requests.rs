//! The engine's requests beyond proposals, on three engines over loopback with real logs:
//! linearizable reads, leadership transfer, group removal, the `Busy` budget and metrics.
//!
//! These tests run real threads and sockets: they wait for progress by polling with short
//! sleeps and never assert on time.

mod cluster;

use std::time::Duration;

use cluster::{NODES, cluster, free_addrs, propose, raft_config};
use flotilla::raft::{NodeId, ReadMode, Role};
use flotilla::runtime::{GroupId, KvMap};
use flotilla::{Engine, EngineBuilder, RequestError};

/// The index in `engines` of `group`'s leader, once one is known to all.
fn leader_index(engines: &[Engine<KvMap>], group: GroupId) -> usize {
    for _attempt in 0..5_000 {
        if let Some(k) = engines.iter().position(|engine| {
            engine
                .status(group)
                .is_ok_and(|status| status.role == Role::Leader)
        }) {
            return k;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("no leader for {group:?}");
}

fn get(key: &'static [u8]) -> impl FnOnce(&KvMap) -> Option<Vec<u8>> + Send + 'static {
    move |map: &KvMap| map.get(key).map(<[u8]>::to_vec)
}

#[test]
fn reads_on_the_leader_see_every_acknowledged_write_and_followers_refuse() {
    let (_dirs, _addrs, engines) = cluster();
    let group = GroupId(5);
    for engine in &engines {
        engine
            .create_group(group, &NODES, KvMap::default())
            .expect("created");
    }
    let mut served = 0;
    for round in 0..20u8 {
        propose(&engines, group, &KvMap::set_command(b"k", &[round]));
        let leader = leader_index(&engines, group);
        for mode in [ReadMode::ReadIndex, ReadMode::Lease] {
            let read = engines[leader].read(group, mode, get(b"k")).wait();
            match read {
                // A read right after the write sees it (linearizability), whatever the mode.
                Ok(value) => {
                    assert_eq!(value, Some(vec![round]), "{mode:?}");
                    served += 1;
                }
                // Leadership moved meanwhile: the read is refused, never stale.
                Err(RequestError::NotLeader { .. }) => {}
                Err(other) => panic!("read failed: {other}"),
            }
        }
    }
    assert!(served >= 20, "only {served} of 40 reads served");
    let leader = leader_index(&engines, group);
    let follower = (leader + 1) % 3;
    assert!(matches!(
        engines[follower]
            .read(group, ReadMode::ReadIndex, get(b"k"))
            .wait(),
        Err(RequestError::NotLeader { .. })
    ));
    assert_eq!(
        engines[leader]
            .read(GroupId(99), ReadMode::ReadIndex, get(b"k"))
            .wait(),
        Err(RequestError::GroupNotFound(GroupId(99)))
    );
}

#[test]
fn leadership_moves_to_the_node_it_is_handed_to() {
    let (_dirs, _addrs, engines) = cluster();
    let group = GroupId(3);
    for engine in &engines {
        engine
            .create_group(group, &NODES, KvMap::default())
            .expect("created");
    }
    propose(&engines, group, &KvMap::set_command(b"k", b"v"));
    let leader = leader_index(&engines, group);
    let target = (leader + 1) % 3;
    let follower = (leader + 2) % 3;
    assert!(matches!(
        engines[follower].transfer_leader(group, NODES[target]),
        Err(RequestError::NotLeader { .. })
    ));
    assert!(matches!(
        engines[leader].transfer_leader(group, NodeId(42)),
        Err(RequestError::Refused(_))
    ));
    engines[leader]
        .transfer_leader(group, NODES[target])
        .expect("transfer starts");
    let mut moved = false;
    for _attempt in 0..5_000 {
        if engines[target]
            .status(group)
            .is_ok_and(|status| status.role == Role::Leader)
        {
            moved = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(moved, "the target leads");
    assert_eq!(
        engines[target].propose_blocking(group, KvMap::set_command(b"k", b"w")),
        Ok(b"v".to_vec()),
        "the previous value, from the old leader's term"
    );
}

#[test]
fn a_removed_group_is_gone_and_its_waiters_fail() {
    let (_dirs, _addrs, engines) = cluster();
    let (kept, removed) = (GroupId(1), GroupId(2));
    for engine in &engines {
        for group in [kept, removed] {
            engine
                .create_group(group, &NODES, KvMap::default())
                .expect("created");
        }
    }
    propose(&engines, removed, &KvMap::set_command(b"k", b"v"));
    for engine in &engines {
        engine.remove_group(removed).expect("removed");
        assert_eq!(
            engine.remove_group(removed),
            Err(RequestError::GroupNotFound(removed))
        );
        assert_eq!(
            engine.propose_blocking(removed, b"x".to_vec()),
            Err(RequestError::GroupNotFound(removed))
        );
        assert_eq!(
            engine.status(removed),
            Err(RequestError::GroupNotFound(removed))
        );
    }
    // The other group is untouched, and the removed id can start afresh everywhere.
    propose(&engines, kept, &KvMap::set_command(b"k", b"still"));
    for engine in &engines {
        engine
            .create_group(removed, &NODES, KvMap::default())
            .expect("created again");
    }
    propose(&engines, removed, &KvMap::set_command(b"fresh", b"1"));
    for engine in &engines {
        let old = engine.inspect(removed, |map| map.get(b"k").map(<[u8]>::to_vec));
        assert_eq!(old, Ok(None), "the old group's state is gone");
    }
}

#[test]
fn a_full_proposal_budget_refuses_with_busy_and_metrics_count_the_work() {
    let dirs: Vec<_> = NODES
        .iter()
        .map(|_| tempfile::tempdir().expect("directory"))
        .collect();
    let addrs = free_addrs();
    let mut config = raft_config();
    config.proposal_bytes_max = 1000;
    let start = |k: usize| -> Engine<KvMap> {
        let mut builder = EngineBuilder::new(NODES[k], 0xB05, dirs[k].path(), addrs[k])
            .shards(1)
            .tick(Duration::from_millis(2))
            .raft_config(config.clone())
            .proposal_budget_bytes(1000);
        for other in (0..3).filter(|&other| other != k) {
            builder = builder.peer(NODES[other], addrs[other]);
        }
        builder.start().expect("the node starts")
    };
    let engines: Vec<Engine<KvMap>> = (0..3).map(start).collect();
    let group = GroupId(0);
    for engine in &engines {
        engine
            .create_group(group, &NODES, KvMap::default())
            .expect("created");
    }
    for round in 0..50u8 {
        propose(&engines, group, &KvMap::set_command(b"k", &[round]));
    }
    let leader = leader_index(&engines, group);
    let metrics = engines[leader].metrics();
    assert!(
        metrics.proposal_latency_us().len() >= 50,
        "latencies recorded"
    );
    assert!(!metrics.sync_latency_us().is_empty(), "syncs timed");
    let totals = metrics.totals();
    assert!(totals.wal_entries >= 51 && totals.wal_syncs > 0 && totals.frames_sent > 0);
    assert_eq!(metrics.shards[0].proposal_bytes_pending, 0);
    // With its followers gone the leader cannot commit: a proposal holds its bytes...
    for (k, engine) in engines.iter().enumerate() {
        if k != leader {
            engine.shutdown();
        }
    }
    let stuck = engines[leader].propose(group, vec![7; 600]);
    // ...and the next one does not fit the 1000-byte budget.
    assert_eq!(
        engines[leader].propose_blocking(group, vec![8; 600]),
        Err(RequestError::Busy {
            pending_bytes: 600,
            max_bytes: 1000
        })
    );
    let batch = engines[leader]
        .propose_batch(group, vec![vec![9; 300], vec![9; 300]])
        .wait();
    assert!(
        batch
            .iter()
            .all(|answer| matches!(answer, Err(RequestError::Busy { .. })))
    );
    engines[leader].shutdown();
    assert_eq!(stuck.wait(), Err(RequestError::Shutdown));
    // After shutdown the budget no longer matters: the answer is Shutdown, not Busy.
    assert_eq!(
        engines[leader].propose_blocking(group, vec![1; 600]),
        Err(RequestError::Shutdown)
    );
}

#[test]
fn a_budget_below_the_largest_proposal_is_refused() {
    let dir = tempfile::tempdir().expect("directory");
    let addr = free_addrs()[0];
    let built = EngineBuilder::new(NodeId(1), 1, dir.path(), addr)
        .shards(1)
        .proposal_budget_bytes(1024)
        .start::<KvMap>();
    let Err(error) = built else {
        panic!("a budget below proposal_bytes_max was accepted");
    };
    assert!(
        error.to_string().contains("proposal_budget_bytes"),
        "{error}"
    );
}
