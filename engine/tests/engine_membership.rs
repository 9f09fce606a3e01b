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

/// Five engines that all know each other; the group starts on the first three.
fn five_nodes() -> (Vec<tempfile::TempDir>, Vec<Engine<KvMap>>) {
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
        .map(|k| {
            let mut builder =
                EngineBuilder::new(NodeId(k as u64 + 1), 0xBEEF, dirs[k].path(), addrs[k])
                    .shards(1)
                    .tick(Duration::from_millis(2))
                    .raft_config(cluster::raft_config());
            for (other, &addr) in addrs.iter().enumerate() {
                if other != k {
                    builder = builder.peer(NodeId(other as u64 + 1), addr);
                }
            }
            builder.start().expect("the node starts")
        })
        .collect();
    let bootstrap = [NodeId(1), NodeId(2), NodeId(3)];
    for (k, engine) in engines.iter().enumerate() {
        let members: &[NodeId] = if k < 3 { &bootstrap } else { &[] };
        engine
            .create_group(GROUP, members, KvMap::default())
            .expect("group created");
    }
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
        for _ in 0..5_000 {
            let k = leader(&engines);
            match engines[k].add_voter(GROUP, NodeId(node)) {
                Ok(()) => break,
                Err(RequestError::NotLeader { .. }) => {}
                Err(RequestError::Refused(_)) => std::thread::sleep(Duration::from_millis(2)),
                Err(error) => panic!("add_voter failed: {error}"),
            }
        }
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
    for _ in 0..5_000 {
        let k = leader(&engines);
        match engines[k].add_voter(GROUP, NodeId(4)) {
            Ok(()) => break,
            Err(RequestError::NotLeader { .. }) => {}
            Err(RequestError::Refused(_)) => std::thread::sleep(Duration::from_millis(2)),
            Err(error) => panic!("add_voter failed: {error}"),
        }
    }
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
