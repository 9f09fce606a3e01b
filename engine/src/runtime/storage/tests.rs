//! Readys persisted into a real log and restored after reopening it, down to a cluster of
//! replicas that restarts from its logs and carries on.

use flotilla_wal::{Wal, WalOptions};

use super::*;
use crate::raft::{Config, RaftGroup, ReadyId, Role};

fn entry(index: u64, term: u64, kind: EntryKind, data: &[u8]) -> Entry {
    Entry {
        index: LogIndex(index),
        term: Term(term),
        kind,
        data: Payload::from(data),
    }
}

fn ready(entries: Vec<Entry>, hard_state: Option<HardState>) -> Ready {
    Ready {
        id: ReadyId(1),
        hard_state,
        entries,
        ..Ready::default()
    }
}

fn open(dir: &std::path::Path) -> Wal {
    Wal::open(
        dir,
        WalOptions {
            segment_size_bytes: 1 << 20,
            ..WalOptions::default()
        },
    )
    .expect("log opens")
    .0
}

#[test]
fn persisted_readies_come_back_after_a_reopen_including_replaced_entries() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let group = GroupId(42);
    let large = vec![7u8; 1000];
    let first = vec![
        entry(1, 1, EntryKind::Noop, b""),
        entry(2, 1, EntryKind::Normal, b""),
        entry(3, 1, EntryKind::Normal, b"three"),
        entry(4, 1, EntryKind::Normal, &large),
        entry(5, 1, EntryKind::Normal, b"five"),
    ];
    let voted = HardState {
        term: Term(1),
        vote: Some(NodeId(0)),
        commit: LogIndex(3),
    };
    let replacing = vec![
        entry(4, 2, EntryKind::Noop, b""),
        entry(5, 2, EntryKind::Normal, b"new"),
    ];
    let later = HardState {
        term: Term(2),
        vote: None,
        commit: LogIndex(4),
    };
    {
        let mut wal = open(dir.path());
        let mut last_index = LogIndex(0);
        let mut batch = WriteBatch::new();
        persist_ready(
            &mut batch,
            group,
            &ready(first.clone(), Some(voted)),
            &mut last_index,
        )
        .expect("persists");
        assert_eq!(last_index, LogIndex(5));
        wal.append_durable(&batch).expect("durable");
        batch.clear();
        persist_ready(
            &mut batch,
            group,
            &ready(replacing.clone(), Some(later)),
            &mut last_index,
        )
        .expect("persists");
        wal.append_durable(&batch).expect("durable");
        wal.close().expect("closes");
    }
    let wal = open(dir.path());
    let restored = restore_group(&wal, group, None)
        .map(|restored| restored.state)
        .expect("restores");
    let mut expected = first[..3].to_vec();
    expected.extend(replacing);
    assert_eq!(restored.entries, expected);
    assert_eq!(restored.hard_state, later);
    assert_eq!(restored.applied, LogIndex(0));
    // The vote for node 0 survives its encoding; a commit beyond the log is refused.
    let vote_only = HardState {
        commit: LogIndex(0),
        ..voted
    };
    let mut batch = WriteBatch::new();
    persist_ready(
        &mut batch,
        GroupId(1),
        &ready(vec![], Some(vote_only)),
        &mut LogIndex(0),
    )
    .expect("persists");
    persist_ready(
        &mut batch,
        GroupId(2),
        &ready(vec![], Some(voted)),
        &mut LogIndex(0),
    )
    .expect("persists");
    let mut wal = wal;
    wal.append_durable(&batch).expect("durable");
    assert_eq!(
        restore_group(&wal, GroupId(1), None)
            .map(|restored| restored.state)
            .expect("restores")
            .hard_state,
        vote_only
    );
    assert!(matches!(
        restore_group(&wal, GroupId(2), None).map(|restored| restored.state),
        Err(RestoreError::CommitBeyondLog {
            group: 2,
            commit: 3,
            last_index: 0
        })
    ));
    assert_eq!(
        restore_group(&wal, GroupId(9), None)
            .map(|restored| restored.state)
            .expect("an unknown group")
            .entries,
        vec![]
    );
}

#[test]
fn a_vote_the_log_cannot_encode_is_an_error() {
    let mut batch = WriteBatch::new();
    let hard_state = HardState {
        term: Term(1),
        vote: Some(NodeId(u64::MAX)),
        commit: LogIndex(0),
    };
    assert_eq!(
        persist_ready(
            &mut batch,
            GroupId(3),
            &ready(vec![], Some(hard_state)),
            &mut LogIndex(0)
        ),
        Err(PersistError::VoteUnrepresentable {
            group: 3,
            node: u64::MAX
        })
    );
}

#[test]
fn an_entry_not_written_here_is_refused_on_restore() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut wal = open(dir.path());
    let mut batch = WriteBatch::new();
    batch.add_entry(
        flotilla_wal::GroupId(5),
        flotilla_wal::LogIndex(1),
        WalTerm(1),
        b"\x07raw",
    );
    wal.append_durable(&batch).expect("durable");
    assert!(matches!(
        restore_group(&wal, GroupId(5), None).map(|restored| restored.state),
        Err(RestoreError::BadEntry {
            group: 5,
            index: 1,
            tag: Some(7)
        })
    ));
}

/// One replica of group 1 with its own log.
struct Replica {
    raft: RaftGroup,
    wal: Wal,
    last_index: LogIndex,
    applied: Vec<Vec<u8>>,
}

const GROUP: GroupId = GroupId(1);

fn start(id: NodeId, dir: &std::path::Path) -> Replica {
    let ids = [NodeId(1), NodeId(2), NodeId(3)];
    let wal = open(dir);
    let restored = restore_group(&wal, GROUP, None)
        .map(|restored| restored.state)
        .expect("restores");
    let last_index = restored
        .entries
        .last()
        .map_or(LogIndex(0), |entry| entry.index);
    let raft = RaftGroup::new(Config::new(id, id.0 + 100), &ids, restored).expect("valid");
    Replica {
        raft,
        wal,
        last_index,
        applied: Vec::new(),
    }
}

/// Runs the cluster until `done` holds; every Ready is persisted through `persist_ready`
/// and made durable before `on_persisted`.
fn run_until(replicas: &mut [Replica], mut done: impl FnMut(&mut [Replica]) -> bool) {
    for _round in 0..5_000 {
        let mut messages = Vec::new();
        for replica in replicas.iter_mut() {
            replica.raft.tick();
            while let Some(ready) = replica.raft.poll_ready() {
                messages.extend(ready.messages.iter().cloned());
                let mut batch = WriteBatch::new();
                persist_ready(&mut batch, GROUP, &ready, &mut replica.last_index)
                    .expect("persists");
                if !batch.is_empty() {
                    replica.wal.append_durable(&batch).expect("durable");
                }
                replica.raft.on_persisted(ready.id);
                messages.extend(ready.persisted_messages.iter().cloned());
                for entry in &ready.committed_entries {
                    if entry.kind == EntryKind::Normal {
                        replica.applied.push(entry.data.to_vec());
                    }
                }
                if let Some(last) = ready.committed_entries.last() {
                    replica.raft.on_applied(last.index);
                }
            }
        }
        for message in messages {
            let to = usize::try_from(message.to.0 - 1).expect("small");
            replicas[to].raft.step(message).expect("well-formed");
        }
        if done(replicas) {
            return;
        }
    }
    panic!("the cluster did not get there");
}

fn propose_and_wait(replicas: &mut [Replica], payload: &[u8]) {
    let mut proposed = false;
    run_until(replicas, |replicas| {
        let leader = replicas
            .iter_mut()
            .find(|r| r.raft.status().role == Role::Leader);
        if let (false, Some(leader)) = (proposed, leader) {
            leader.raft.propose(payload).expect("the leader takes it");
            proposed = true;
        }
        replicas
            .iter()
            .all(|replica| replica.applied.last().is_some_and(|last| last == payload))
    });
}

#[test]
fn a_cluster_restarted_from_its_logs_keeps_its_entries_and_carries_on() {
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("directory"))
        .collect();
    let mut replicas: Vec<Replica> = (0..3)
        .map(|k| start(NodeId(k as u64 + 1), dirs[k].path()))
        .collect();
    for payload in [&b"one"[..], b"two", &[9u8; 500]] {
        propose_and_wait(&mut replicas, payload);
    }
    let before: Vec<(HardState, Vec<Entry>)> = replicas
        .iter()
        .map(|replica| {
            let restored = restore_group(&replica.wal, GROUP, None)
                .map(|restored| restored.state)
                .expect("restores");
            (restored.hard_state, restored.entries)
        })
        .collect();
    // Every replica's log holds the three entries it applied.
    for (_, entries) in &before {
        let normal: Vec<&[u8]> = entries
            .iter()
            .filter(|entry| entry.kind == EntryKind::Normal)
            .map(|entry| &entry.data[..])
            .collect();
        assert_eq!(normal, vec![&b"one"[..], b"two", &[9u8; 500]]);
    }
    // Crash everyone and restart from the logs.
    for replica in replicas.drain(..) {
        replica.wal.close().expect("closes");
    }
    let mut replicas: Vec<Replica> = (0..3)
        .map(|k| start(NodeId(k as u64 + 1), dirs[k].path()))
        .collect();
    for (replica, (hard_state, entries)) in replicas.iter().zip(&before) {
        let restored = restore_group(&replica.wal, GROUP, None)
            .map(|restored| restored.state)
            .expect("restores");
        assert_eq!(&restored.entries, entries);
        assert_eq!(restored.hard_state.term, hard_state.term);
    }
    propose_and_wait(&mut replicas, b"after the restart");
    for replica in &replicas {
        // Without snapshots the state machine is rebuilt by applying the whole log again.
        assert_eq!(
            replica.applied,
            vec![
                b"one".to_vec(),
                b"two".to_vec(),
                vec![9u8; 500],
                b"after the restart".to_vec()
            ]
        );
    }
}

/// A log of entries 1..=`last` of term 1 for group 3, durable.
fn log_of(dir: &std::path::Path, last: u64) -> Wal {
    let mut wal = open(dir);
    let mut batch = WriteBatch::new();
    let entries = (1..=last)
        .map(|index| entry(index, 1, EntryKind::Normal, b"x"))
        .collect();
    let mut last_index = LogIndex(0);
    persist_ready(
        &mut batch,
        GroupId(3),
        &ready(entries, None),
        &mut last_index,
    )
    .expect("ok");
    wal.append_durable(&batch).expect("durable");
    wal
}

fn snapshot_at(index: u64, term: u64) -> SnapshotMeta {
    SnapshotMeta {
        index: LogIndex(index),
        term: Term(term),
        configuration: crate::raft::Configuration::new(&[NodeId(1)]).expect("voters"),
    }
}

#[test]
fn a_snapshot_whose_record_did_not_land_is_restored_and_the_log_repaired() {
    // The log holds 1..=25 of term 1; a snapshot at 20 of term 2 replaced the suffix, but
    // its install record never landed.
    let dir = tempfile::tempdir().expect("dir");
    let mut wal = log_of(dir.path(), 25);
    let meta = snapshot_at(20, 2);
    let restored = restore_group(&wal, GroupId(3), Some(&meta)).expect("restores");
    assert!(
        restored.state.entries.is_empty(),
        "the replaced suffix is left out"
    );
    assert_eq!(
        restored.state.hard_state.term,
        Term(2),
        "term raised to the snapshot's"
    );
    assert_eq!(restored.state.applied, LogIndex(20));
    let repair = restored.repair.expect("a repair");
    assert_eq!(repair.truncate_from, Some(LogIndex(21)));
    assert_eq!(repair.compact_through, LogIndex(20));
    assert_eq!(restored.last_index, LogIndex(20));
    let mut batch = WriteBatch::new();
    repair.write(&mut batch, GroupId(3));
    // The entries after the snapshot follow the repair in the log, and survive a reopen.
    let mut last_index = restored.last_index;
    let after = vec![entry(21, 2, EntryKind::Normal, b"new")];
    persist_ready(&mut batch, GroupId(3), &ready(after, None), &mut last_index).expect("ok");
    wal.append_durable(&batch)
        .expect("the log takes the repair and the entries after");
    drop(wal);
    let wal = open(dir.path());
    let again = restore_group(&wal, GroupId(3), Some(&meta)).expect("restores");
    assert_eq!(again.repair, None);
    assert_eq!(
        again
            .state
            .entries
            .iter()
            .map(|e| (e.index.0, e.term.0))
            .collect::<Vec<_>>(),
        vec![(21, 2)]
    );
}

#[test]
fn a_snapshot_ahead_of_a_shorter_or_matching_log_keeps_what_follows_it() {
    let dir = tempfile::tempdir().expect("dir");
    let wal = log_of(dir.path(), 8);
    let restored = restore_group(&wal, GroupId(3), Some(&snapshot_at(20, 2))).expect("restores");
    assert!(restored.state.entries.is_empty());
    assert_eq!(restored.last_index, LogIndex(20));
    assert_eq!(restored.repair.map(|r| r.truncate_from), Some(None));
    let dir = tempfile::tempdir().expect("dir");
    let wal = log_of(dir.path(), 25);
    let restored = restore_group(&wal, GroupId(3), Some(&snapshot_at(20, 1))).expect("restores");
    assert_eq!(
        restored.state.entries.len(),
        5,
        "21..=25 follow the snapshot"
    );
    assert_eq!(restored.last_index, LogIndex(25));
    // A log that never knew the group: the snapshot alone, and a mark to write.
    let restored = restore_group(&wal, GroupId(4), Some(&snapshot_at(20, 1))).expect("restores");
    assert_eq!(restored.last_index, LogIndex(20));
    assert_eq!(
        restored.repair.map(|r| r.compact_through),
        Some(LogIndex(20))
    );
}
