//! A three-engine cluster on loopback for the engine tests: start it, propose through
//! whichever node leads, wait for replicas to converge or quiesce.
//!
//! These helpers run real threads and sockets: they wait for progress by polling with
//! short sleeps and never assert on time.
#![allow(dead_code, reason = "each test binary uses its own subset")]

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use flotilla::raft::{Config, NodeId};
use flotilla::runtime::{GroupId, KvMap};
use flotilla::{Engine, EngineBuilder, RequestError};

pub(crate) const NODES: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

/// Three free loopback ports (bound, then released for the engines).
pub(crate) fn free_addrs() -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("bound"))
        .collect()
}

pub(crate) fn raft_config() -> Config {
    // 2 ms ticks: elections after 40-80 ms of silence.
    Config {
        election_timeout_ticks: 20,
        heartbeat_interval_ticks: 4,
        lease_ticks: 10,
        quiesce_after_ticks: 20,
        ..Config::new(NodeId(0), 0)
    }
}

pub(crate) fn start_node(k: usize, addrs: &[SocketAddr], dir: &std::path::Path) -> Engine<KvMap> {
    let mut builder = EngineBuilder::new(NODES[k], 0xC0FFEE, dir, addrs[k])
        .shards(1)
        .tick(Duration::from_millis(2))
        .raft_config(raft_config());
    for (other, &addr) in addrs.iter().enumerate() {
        if other != k {
            builder = builder.peer(NODES[other], addr);
        }
    }
    builder.start().expect("the node starts")
}

/// Three engines on loopback, each with its logs in its own directory.
pub(crate) fn cluster() -> (Vec<tempfile::TempDir>, Vec<SocketAddr>, Vec<Engine<KvMap>>) {
    let dirs: Vec<_> = NODES
        .iter()
        .map(|_| tempfile::tempdir().expect("directory"))
        .collect();
    let addrs = free_addrs();
    let engines = (0..3)
        .map(|k| start_node(k, &addrs, dirs[k].path()))
        .collect();
    (dirs, addrs, engines)
}

/// Proposes through whichever of `engines` leads, following leader hints (a hint to a
/// node not in `engines` is skipped); retries while no leader is known among them.
pub(crate) fn propose(engines: &[Engine<KvMap>], group: GroupId, command: &[u8]) -> Vec<u8> {
    let mut at = 0;
    for _attempt in 0..5_000 {
        match engines[at].propose_blocking(group, command.to_vec()) {
            Ok(result) => return result,
            Err(RequestError::NotLeader {
                leader: Some(leader),
            }) if engines.iter().any(|engine| engine.node() == leader) => {
                at = engines
                    .iter()
                    .position(|engine| engine.node() == leader)
                    .expect("found");
            }
            Err(RequestError::NotLeader { .. } | RequestError::Superseded) => {
                at = (at + 1) % engines.len();
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(error) => panic!("proposal failed: {error}"),
        }
    }
    panic!("no leader accepted the proposal");
}

/// Waits until every replica of `group` holds `value` under `key`.
pub(crate) fn wait_converged(engines: &[Engine<KvMap>], group: GroupId, key: &[u8], value: &[u8]) {
    for _attempt in 0..5_000 {
        let all = engines.iter().all(|engine| {
            let key = key.to_vec();
            engine
                .inspect(group, move |map| map.get(&key).map(<[u8]>::to_vec))
                .expect("held")
                == Some(value.to_vec())
        });
        if all {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let held: Vec<_> = engines
        .iter()
        .map(|engine| {
            let key = key.to_vec();
            (
                engine.node(),
                engine.inspect(group, move |map| map.get(&key).map(<[u8]>::to_vec)),
            )
        })
        .collect();
    panic!("group {group:?} did not converge on {key:?}: {held:?}");
}

/// Waits until every replica of the `groups` groups is quiesced.
pub(crate) fn wait_quiesced(engines: &[Engine<KvMap>], groups: u64) {
    let quiesced = || -> u64 {
        engines
            .iter()
            .flat_map(Engine::stats)
            .map(|s| s.groups_quiesced)
            .sum()
    };
    for _attempt in 0..5_000 {
        if quiesced() == engines.len() as u64 * groups {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!(
        "groups quiesced: {} of {}",
        quiesced(),
        engines.len() as u64 * groups
    );
}
