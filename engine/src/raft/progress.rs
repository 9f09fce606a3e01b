//! What a leader knows about one follower's log, and how fast it may send to it.
//!
//! A follower is in one of three states here:
//! - **Probe**: the leader does not know where the follower's log matches. It sends one
//!   AppendEntries and waits for the answer (or a heartbeat response) before the next.
//! - **Replicate**: the follower's log is known to match; the leader streams entries
//!   optimistically (`next_index` moves on at send), up to a window of in-flight messages
//!   bounded in count and bytes.
//! - **Snapshot**: the follower needs entries the leader compacted away; it receives the
//!   snapshot, one chunk at a time (`snapshot.rs`), and no entries until it acknowledges it.
//!
//! # Invariants
//! - `match_index < next_index`.
//! - In Probe, no in-flight window is kept; in Replicate, the window's last indexes are
//!   increasing, each below `next_index`, and its totals stay within the configured maxima.

use std::collections::VecDeque;

use crate::raft::snapshot::SnapshotMeta;
use crate::raft::types::LogIndex;

/// The replication state of one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// Finding where the logs match; one message at a time.
    Probe,
    /// Streaming entries with a bounded window.
    Replicate,
    /// Receiving a snapshot; no entries.
    Snapshot,
}

/// One unacknowledged AppendEntries: its last index, its entry bytes, and the leader's read
/// round when it was sent (a heartbeat of a later round answered before it hints it was lost).
#[derive(Clone, Copy, Debug)]
struct Inflight {
    last_index: LogIndex,
    bytes: usize,
    sent_round: u64,
}

/// One follower's replication progress, kept by the leader.
#[derive(Clone, Debug)]
pub struct Progress {
    /// The highest index known to match the leader's log (and be durable there).
    pub match_index: LogIndex,
    /// The next index to send.
    pub next_index: LogIndex,
    /// Probe or replicate.
    pub state: ProgressState,
    /// In Probe: a message was sent and is awaiting an answer.
    pub probe_sent: bool,
    /// In Probe: the leader's read round when the probe was sent.
    probe_round: u64,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// The highest read round this follower acknowledged in the current term.
    pub read_round_acked: u64,
    /// In Replicate: the last index and entry bytes of each unacknowledged message.
    inflights: VecDeque<Inflight>,
    inflight_bytes: usize,
    /// Entries for this follower are being read back from storage (`LogFetch`): nothing
    /// else is sent to it with entries until they arrive.
    pub fetch_pending: bool,
    /// A fetch for this follower failed during this read round: the next waits for a
    /// later round (a heartbeat interval), so that a log that cannot be read is not asked
    /// again and again in one turn.
    pub fetch_failed_round: Option<u64>,
    /// In Snapshot: the snapshot being sent.
    pub snapshot: Option<SnapshotMeta>,
    /// In Snapshot: its total length, once a chunk of it went out.
    pub snapshot_total: u64,
    /// In Snapshot: the byte offset the follower acknowledged.
    pub snapshot_offset: u64,
    /// In Snapshot: a chunk is being read from the driver.
    pub snapshot_read_pending: bool,
    /// In Snapshot: the read round in which the last chunk went out (or its read failed),
    /// while unanswered; a heartbeat answered in a later round re-sends it.
    pub snapshot_chunk_round: Option<u64>,
}

impl Progress {
    /// A follower the leader knows nothing about yet: probe from `next_index`.
    #[must_use]
    pub fn new(next_index: LogIndex) -> Progress {
        Progress {
            match_index: LogIndex(0),
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            probe_round: 0,
            recent_active: false,
            read_round_acked: 0,
            inflights: VecDeque::new(),
            inflight_bytes: 0,
            fetch_pending: false,
            fetch_failed_round: None,
            snapshot: None,
            snapshot_total: 0,
            snapshot_offset: 0,
            snapshot_read_pending: false,
            snapshot_chunk_round: None,
        }
    }

    /// The index of the snapshot being sent (0 when none).
    #[must_use]
    pub fn snapshot_index(&self) -> LogIndex {
        self.snapshot
            .as_ref()
            .map_or(LogIndex(0), |meta| meta.index)
    }

    /// Starts sending `snapshot` from its first byte; no entries meanwhile.
    pub fn become_snapshot(&mut self, snapshot: SnapshotMeta) {
        self.state = ProgressState::Snapshot;
        self.probe_sent = false;
        self.inflights.clear();
        self.inflight_bytes = 0;
        self.snapshot = Some(snapshot);
        self.snapshot_total = 0;
        self.snapshot_offset = 0;
        self.snapshot_read_pending = false;
        self.snapshot_chunk_round = None;
    }

    /// In Snapshot: whether the next chunk should be read now (none is being read or is
    /// unanswered).
    #[must_use]
    pub fn snapshot_read_wanted(&self) -> bool {
        !self.snapshot_read_pending && self.snapshot_chunk_round.is_none()
    }

    /// Gives back the spare capacity of the in-flight window.
    pub fn shrink(&mut self) {
        self.inflights.shrink_to_fit();
    }

    /// Whether the leader may not send another AppendEntries with entries now.
    #[must_use]
    pub fn is_paused(&self, inflight_messages_max: usize, inflight_bytes_max: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Snapshot => true,
            ProgressState::Replicate => {
                self.inflights.len() >= inflight_messages_max
                    || self.inflight_bytes >= inflight_bytes_max
            }
        }
    }

    /// Records that an AppendEntries ending at `last_index` with `bytes` of entries was sent.
    pub fn on_sent(&mut self, last_index: LogIndex, entry_count: usize, bytes: usize, round: u64) {
        match self.state {
            ProgressState::Snapshot => {}
            ProgressState::Probe => {
                self.probe_sent = true;
                self.probe_round = round;
            }
            ProgressState::Replicate => {
                if entry_count > 0 {
                    assert!(
                        last_index >= self.next_index,
                        "sent entries behind next_index"
                    );
                    self.next_index = last_index.next();
                    self.inflights.push_back(Inflight {
                        last_index,
                        bytes,
                        sent_round: round,
                    });
                    self.inflight_bytes += bytes;
                }
            }
        }
    }

    /// The follower acknowledged a match through `index`. Returns whether anything moved.
    pub fn on_accepted(&mut self, index: LogIndex) -> bool {
        let mut moved = false;
        if index > self.match_index {
            self.match_index = index;
            moved = true;
            self.probe_sent = false;
        }
        if self.next_index <= index {
            self.next_index = index.next();
            moved = true;
        }
        if self.state == ProgressState::Probe && moved {
            self.become_replicate();
        }
        if self.state == ProgressState::Snapshot && self.match_index >= self.snapshot_index() {
            // The follower installed the snapshot (or holds its entries anyway).
            self.become_replicate();
        }
        self.free_inflights_through(index);
        moved
    }

    /// The follower rejected AppendEntries at `rejected_index`; the leader computed
    /// `next_index` from the follower's hint. Returns false if the rejection is stale
    /// (an answer to a message sent before the progress moved).
    pub fn on_rejected(&mut self, rejected_index: LogIndex, next_index: LogIndex) -> bool {
        // The follower acknowledged everything through match_index, durably: a rejection at or
        // below it answers an older message (a duplicate, or one overtaken by later ones).
        if rejected_index <= self.match_index {
            return false;
        }
        if self.state == ProgressState::Snapshot
            || (self.state == ProgressState::Probe && rejected_index != self.next_index.prev())
        {
            return false;
        }
        // match < rejected_index here, so the range is not empty.
        self.next_index = next_index.clamp(self.match_index.next(), rejected_index);
        self.become_probe();
        true
    }

    /// Back to probing from just after the match (a lost message, a restarted follower).
    pub fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.snapshot = None;
        self.probe_sent = false;
        self.inflights.clear();
        self.inflight_bytes = 0;
    }

    /// Stream from just after the match.
    fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.snapshot = None;
        self.probe_sent = false;
        self.next_index = self.match_index.next();
        self.inflights.clear();
        self.inflight_bytes = 0;
    }

    /// Drops in-flight records the follower acknowledged.
    fn free_inflights_through(&mut self, index: LogIndex) {
        while let Some(&Inflight {
            last_index, bytes, ..
        }) = self.inflights.front()
        {
            if last_index > index {
                break;
            }
            self.inflights.pop_front();
            self.inflight_bytes -= bytes;
        }
    }

    /// A heartbeat response of read round `round` arrived while the follower is behind.
    /// Returns whether the leader should send an AppendEntries now.
    ///
    /// A probe or an in-flight message sent before that heartbeat and still unanswered was
    /// probably lost: the probe is unpaused, or the follower goes back to probing from just
    /// after its match. Messages sent after that heartbeat are merely slow; resending them
    /// early would only cause duplicates and spurious rejections.
    pub fn on_heartbeat_response(&mut self, round: u64) -> bool {
        match self.state {
            ProgressState::Snapshot => {
                if self.snapshot_chunk_round.is_some_and(|sent| sent < round) {
                    self.snapshot_chunk_round = None;
                }
                self.snapshot_read_wanted()
            }
            ProgressState::Probe => {
                if self.probe_sent && round > self.probe_round {
                    self.probe_sent = false;
                }
                !self.probe_sent
            }
            ProgressState::Replicate => match self.inflights.front() {
                Some(first) if first.sent_round < round => {
                    // Probably lost: resend everything unacknowledged, probing from the
                    // match (skipping ahead would only make the follower reject the gap).
                    self.next_index = self.match_index.next();
                    self.become_probe();
                    true
                }
                Some(_) => false,
                None => true,
            },
        }
    }

    /// Asserts the invariants in this module's docs.
    pub fn check_invariants(&self, inflight_messages_max: usize) {
        assert!(
            self.match_index < self.next_index,
            "match {:?} >= next {:?}",
            self.match_index,
            self.next_index
        );
        match self.state {
            ProgressState::Probe | ProgressState::Snapshot => {
                assert!(
                    self.inflights.is_empty(),
                    "probe or snapshot with inflights"
                );
            }
            ProgressState::Replicate => {
                assert!(!self.probe_sent, "replicate with probe_sent");
                assert!(
                    self.inflights.len() <= inflight_messages_max,
                    "window overflow"
                );
                let mut previous = self.match_index;
                let mut bytes = 0;
                for &Inflight {
                    last_index,
                    bytes: size,
                    ..
                } in &self.inflights
                {
                    assert!(last_index > previous, "inflights not increasing");
                    assert!(last_index < self.next_index, "inflight beyond next_index");
                    previous = last_index;
                    bytes += size;
                }
                assert_eq!(bytes, self.inflight_bytes, "inflight byte total drifted");
            }
        }
    }
}
