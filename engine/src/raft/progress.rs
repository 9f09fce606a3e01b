//! What a leader knows about one follower's log, and how fast it may send to it.
//!
//! A follower is in one of two states here (a third, `Snapshot`, arrives with snapshots in
//! issue 6):
//! - **Probe**: the leader does not know where the follower's log matches. It sends one
//!   AppendEntries and waits for the answer (or a heartbeat response) before the next.
//! - **Replicate**: the follower's log is known to match; the leader streams entries
//!   optimistically (`next_index` moves on at send), up to a window of in-flight messages
//!   bounded in count and bytes.
//!
//! # Invariants
//! - `match_index < next_index`.
//! - In Probe, no in-flight window is kept; in Replicate, the window's last indexes are
//!   increasing, each below `next_index`, and its totals stay within the configured maxima.

use std::collections::VecDeque;

use crate::raft::types::LogIndex;

/// The replication state of one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// Finding where the logs match; one message at a time.
    Probe,
    /// Streaming entries with a bounded window.
    Replicate,
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
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// The highest read round this follower acknowledged in the current term.
    pub read_round_acked: u64,
    /// In Replicate: the last index and entry bytes of each unacknowledged message.
    inflights: VecDeque<(LogIndex, usize)>,
    inflight_bytes: usize,
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
            recent_active: false,
            read_round_acked: 0,
            inflights: VecDeque::new(),
            inflight_bytes: 0,
        }
    }

    /// Whether the leader may not send another AppendEntries with entries now.
    #[must_use]
    pub fn is_paused(&self, inflight_messages_max: usize, inflight_bytes_max: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => {
                self.inflights.len() >= inflight_messages_max
                    || self.inflight_bytes >= inflight_bytes_max
            }
        }
    }

    /// Whether the in-flight window is full (Replicate only).
    #[must_use]
    pub fn window_full(&self, inflight_messages_max: usize, inflight_bytes_max: usize) -> bool {
        self.state == ProgressState::Replicate
            && self.is_paused(inflight_messages_max, inflight_bytes_max)
    }

    /// Records that an AppendEntries ending at `last_index` with `bytes` of entries was sent.
    pub fn on_sent(&mut self, last_index: LogIndex, entry_count: usize, bytes: usize) {
        match self.state {
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Replicate => {
                if entry_count > 0 {
                    assert!(
                        last_index >= self.next_index,
                        "sent entries behind next_index"
                    );
                    self.next_index = last_index.next();
                    self.inflights.push_back((last_index, bytes));
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
        self.free_inflights_through(index);
        moved
    }

    /// The follower rejected AppendEntries at `rejected_index`; the leader computed
    /// `next_index` from the follower's hint. Returns false if the rejection is stale
    /// (an answer to a message sent before the progress moved).
    pub fn on_rejected(&mut self, rejected_index: LogIndex, next_index: LogIndex) -> bool {
        match self.state {
            ProgressState::Replicate => {
                if rejected_index <= self.match_index {
                    return false;
                }
            }
            ProgressState::Probe => {
                if rejected_index != self.next_index.prev() {
                    return false;
                }
            }
        }
        self.next_index =
            next_index.clamp(self.match_index.next(), rejected_index.max(LogIndex(1)));
        self.become_probe();
        true
    }

    /// Back to probing from just after the match (a lost message, a restarted follower).
    pub fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflights.clear();
        self.inflight_bytes = 0;
    }

    /// Stream from just after the match.
    fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.probe_sent = false;
        self.next_index = self.match_index.next();
        self.inflights.clear();
        self.inflight_bytes = 0;
    }

    /// Drops in-flight records the follower acknowledged.
    fn free_inflights_through(&mut self, index: LogIndex) {
        while let Some(&(last_index, bytes)) = self.inflights.front() {
            if last_index > index {
                break;
            }
            self.inflights.pop_front();
            self.inflight_bytes -= bytes;
        }
    }

    /// Frees the oldest in-flight slot: called on a heartbeat response while the window is
    /// full, so that a window whose messages were all lost still makes progress (the next
    /// send reaches the follower, which rejects the gap and sends the leader back to probing).
    pub fn free_first_inflight(&mut self) {
        if let Some((_, bytes)) = self.inflights.pop_front() {
            self.inflight_bytes -= bytes;
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
            ProgressState::Probe => assert!(self.inflights.is_empty(), "probe with inflights"),
            ProgressState::Replicate => {
                assert!(!self.probe_sent, "replicate with probe_sent");
                assert!(
                    self.inflights.len() <= inflight_messages_max,
                    "window overflow"
                );
                let mut previous = self.match_index;
                let mut bytes = 0;
                for &(last_index, size) in &self.inflights {
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
