//! Membership changes and consistency verification through the engine's API, on real
//! engines over loopback, under a steady load of proposals: grow a group from 3 to 5 voters
//! and shrink it back (the leader among the removed), replace a failed node, and find a
//! corrupted replica with `verify`.

mod cluster;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use flotilla::raft::{MembershipChange, NodeId, Role, Verification};
use flotilla::runtime::{GroupId, KvMap};
use flotilla::{Engine, EngineBuilder, RequestError};

const GROUP: GroupId = GroupId(1);

/// Starts node `k + 1` of the five, keeping its state in `dir`.
fn start(
    k: usize,
    addrs: &[std::net::SocketAddr],
    dir: &std::path::Path,
    snapshot_every: u64,
) -> Engine<KvMap> {
    let mut raft = cluster::raft_config();
    raft.compaction_tail_entries = 5;
    raft.snapshot_chunk_bytes_max = 64;
    let mut builder = EngineBuilder::new(NodeId(k as u64 + 1), 0xBEEF, dir, addrs[k])
        .shards(1)
        .tick(Duration::from_millis(2))
        .raft_config(raft)
        .snapshot_every_entries(snapshot_every);
    for (other, &addr) in addrs.iter().enumerate() {
        if other != k {
            builder = builder.peer(NodeId(other as u64 + 1), addr);
        }
    }
    builder.start().expect("the node starts")
}

/// Creates the group on node `k + 1`: the first three bootstrap it, the others join.
fn create(engine: &Engine<KvMap>, k: usize) {
    let bootstrap = [NodeId(1), NodeId(2), NodeId(3)];
    let members: &[NodeId] = if k < 3 { &bootstrap } else { &[] };
    engine
        .create_group(GROUP, members, KvMap::default())
        .expect("group created");
}

/// Five engines that all know each other, snapshotting every `snapshot_every` entries;
/// the group starts on the first three.
fn five_nodes_snapshotting(
    snapshot_every: u64,
) -> (
    Vec<tempfile::TempDir>,
    Vec<std::net::SocketAddr>,
    Vec<Engine<KvMap>>,
) {
    let listeners: Vec<_> = (0..5)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    let addrs: Vec<_> = listeners
        .iter()
        .map(|l| l.local_addr().expect("bound"))
        .collect();
    drop(listeners);
    let dirs: Vec<_> = (0..5)
        .map(|_| tempfile::tempdir().expect("directory"))
        .collect();
    let engines: Vec<Engine<KvMap>> = (0..5)
        .map(|k| start(k, &addrs, dirs[k].path(), snapshot_every))
        .collect();
    for (k, engine) in engines.iter().enumerate() {
        create(engine, k);
    }
    (dirs, addrs, engines)
}

/// Five engines (no snapshots); the group starts on the first three.
fn five_nodes() -> (Vec<tempfile::TempDir>, Vec<Engine<KvMap>>) {
    let (dirs, _, engines) = five_nodes_snapshotting(0);
    (dirs, engines)
}

/// The engine leading the group, waiting for one.
fn leader(engines: &[Engine<KvMap>]) -> usize {
    for _ in 0..5_000 {
        if let Some(k) = engines.iter().position(|engine| {
            engine
                .status(GROUP)
                .is_ok_and(|status| status.role == Role::Leader)
        }) {
            return k;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("no leader");
}

/// Proposes on a background thread until stopped; counts the writes acknowledged.
struct Load {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(engines: Arc<Vec<Engine<KvMap>>>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicU64::new(0));
        let (stop_flag, count) = (Arc::clone(&stop), Arc::clone(&acknowledged));
        let thread = std::thread::spawn(move || {
            let mut at = 0;
            let mut sequence = 0u64;
            while !stop_flag.load(Ordering::Relaxed) {
                sequence += 1;
                let command = KvMap::set_command(b"load", &sequence.to_le_bytes());
                match engines[at].propose_blocking(GROUP, command) {
                    Ok(_) => {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(RequestError::NotLeader {
                        leader: Some(leader),
                    }) => {
                        at = usize::try_from(leader.0 - 1).expect("small");
                    }
                    Err(_) => {
                        at = (at + 1) % engines.len();
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        });
        Load {
            stop,
            acknowledged,
            thread: Some(thread),
        }
    }

    /// Waits until `more` writes beyond the current count were acknowledged.
    fn wait_for(&self, more: u64) {
        let target = self.acknowledged.load(Ordering::Relaxed) + more;
        for _ in 0..10_000 {
            if self.acknowledged.load(Ordering::Relaxed) >= target {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("the load stalled");
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("load thread");
    }
}

/// Asks the current leader for `change`, retrying while another change is in flight or
/// leadership moves.
fn change(engines: &[Engine<KvMap>], changes: &[MembershipChange]) {
    for _ in 0..5_000 {
        let k = leader(engines);
        match engines[k].change_membership(GROUP, changes.to_vec()) {
            Ok(()) => return,
            Err(RequestError::NotLeader { .. } | RequestError::Superseded) => {}
            Err(RequestError::Refused(reason))
                if reason.contains("in flight") || reason.contains("not committed an entry") => {}
            Err(error) => panic!("change {changes:?} failed: {error}"),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("change {changes:?} never went through");
}

/// Waits until the leader's configuration has exactly `voters`, not joint, and every one
/// of them agrees.
fn wait_voters(engines: &[Engine<KvMap>], voters: &[u64]) {
    let voters: Vec<NodeId> = voters.iter().map(|&id| NodeId(id)).collect();
    for _ in 0..5_000 {
        let agreed = voters.iter().all(|voter| {
            engines[usize::try_from(voter.0 - 1).expect("small")]
                .configuration(GROUP)
                .is_ok_and(|c| c.voters() == voters && !c.is_joint() && c.learners().is_empty())
        });
        if agreed {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let seen: Vec<_> = engines.iter().map(|e| e.configuration(GROUP)).collect();
    panic!("voters never became {voters:?}: {seen:?}");
}

/// Asks the current leader to add `node` as a voter (through a learner), retrying while
/// leadership moves or another change is in flight.
fn add_voter(engines: &[Engine<KvMap>], node: u64) {
    for _ in 0..5_000 {
        let k = leader(engines);
        match engines[k].add_voter(GROUP, NodeId(node)) {
            Ok(()) => return,
            Err(RequestError::NotLeader { .. }) => {}
            Err(RequestError::Refused(_)) => std::thread::sleep(Duration::from_millis(2)),
            Err(error) => panic!("add_voter failed: {error}"),
        }
    }
    panic!("add_voter({node}) never went through");
}

fn verify(engines: &[Engine<KvMap>]) -> Verification {
    for _ in 0..1_000 {
        let k = leader(engines);
        match engines[k].verify(GROUP).wait() {
            Ok(verification) => return verification,
            Err(RequestError::NotLeader { .. }) => std::thread::sleep(Duration::from_millis(2)),
            Err(error) => panic!("verify failed: {error}"),
        }
    }
    panic!("verify never answered");
}

#[test]
fn growing_three_to_five_and_shrinking_back_under_load_then_verifying() {
    let (_dirs, engines) = five_nodes();
    let engines = Arc::new(engines);
    let load = Load::start(Arc::clone(&engines));
    load.wait_for(20);
    for node in [4, 5] {
        add_voter(&engines, node);
        let mut expected: Vec<u64> = (1..=node).collect();
        expected.sort_unstable();
        wait_voters(&engines, &expected);
        load.wait_for(20);
    }
    // Shrink to 3, removing the leader among others.
    let k = leader(&engines);
    let leader_id = k as u64 + 1;
    let mut removed = vec![leader_id];
    removed.push(if leader_id == 1 { 2 } else { 1 });
    change(
        &engines,
        &removed
            .iter()
            .map(|&id| MembershipChange::RemoveVoter(NodeId(id)))
            .collect::<Vec<_>>(),
    );
    let remaining: Vec<u64> = (1..=5).filter(|id| !removed.contains(id)).collect();
    wait_voters(&engines, &remaining);
    load.wait_for(20);
    load.stop();
    // The remaining replicas agree, and a corrupted one is named.
    match verify(&engines) {
        Verification::Consistent { replicas, .. } => {
            assert_eq!(
                replicas,
                remaining.iter().map(|&id| NodeId(id)).collect::<Vec<_>>()
            );
        }
        other => panic!("expected consistent: {other:?}"),
    }
    let victim = remaining[2];
    engines[usize::try_from(victim - 1).expect("small")]
        .corrupt_for_tests(GROUP, |map| map.corrupt_for_tests(b"load", b"wrong"));
    match verify(&engines) {
        Verification::Divergent { hashes, .. } => {
            let odd: Vec<NodeId> = hashes
                .iter()
                .filter(|(_, hash)| hashes.iter().filter(|(_, other)| other == hash).count() == 1)
                .map(|(node, _)| *node)
                .collect();
            assert_eq!(odd, vec![NodeId(victim)]);
        }
        other => panic!("expected divergent: {other:?}"),
    }
}

#[test]
fn replacing_a_failed_node_under_load() {
    let (_dirs, engines) = five_nodes();
    // Node 3 fails for good (its engine stays in the list, answering `Shutdown`).
    engines[2].shutdown();
    let engines = Arc::new(engines);
    let load = Load::start(Arc::clone(&engines));
    load.wait_for(20);
    change(&engines, &[MembershipChange::RemoveVoter(NodeId(3))]);
    load.wait_for(10);
    add_voter(&engines, 4);
    for _ in 0..5_000 {
        let configuration = engines[leader(&engines)]
            .configuration(GROUP)
            .expect("held");
        if configuration.voters() == [NodeId(1), NodeId(2), NodeId(4)] && !configuration.is_joint()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    load.wait_for(20);
    load.stop();
    match verify(&engines) {
        Verification::Consistent { replicas, .. } => {
            assert_eq!(replicas, vec![NodeId(1), NodeId(2), NodeId(4)]);
        }
        other => panic!("expected consistent: {other:?}"),
    }
}

#[test]
fn a_new_node_joins_from_a_snapshot_and_a_restarted_node_restores_from_its_own() {
    let (dirs, addrs, mut engines) = five_nodes_snapshotting(20);
    for k in 0..200u64 {
        cluster::propose(&engines, GROUP, &KvMap::set_command(&k.to_le_bytes(), b"v"));
    }
    let taken: u64 = engines[..3]
        .iter()
        .flat_map(Engine::stats)
        .map(|s| s.snapshots_taken)
        .sum();
    assert!(taken >= 3, "snapshots taken: {taken}");
    // Node 4 needs entries the leader compacted long ago: it gets the snapshot.
    add_voter(&engines, 4);
    wait_voters(&engines, &[1, 2, 3, 4]);
    let installed: u64 = engines[3]
        .stats()
        .iter()
        .map(|s| s.snapshots_installed)
        .sum();
    assert!(installed >= 1, "node 4 installed no snapshot");
    cluster::wait_converged(&engines[..4], GROUP, &199u64.to_le_bytes(), b"v");
    // Node 2 restarts from its snapshot and the log after it.
    let k = if leader(&engines) == 1 { 2 } else { 1 };
    engines[k].shutdown();
    let restarted = start(k, &addrs, dirs[k].path(), 20);
    create(&restarted, k);
    engines[k] = restarted;
    cluster::propose(&engines, GROUP, &KvMap::set_command(b"after", b"restart"));
    cluster::wait_converged(&engines[..4], GROUP, b"after", b"restart");
    match verify(&engines) {
        Verification::Consistent { replicas, .. } => {
            assert_eq!(replicas, vec![NodeId(1), NodeId(2), NodeId(3), NodeId(4)]);
        }
        other => panic!("expected consistent: {other:?}"),
    }
}
