//! [`ShardStats`]: the counters of one shard's work, summed across shards by the engine's
//! metrics.

/// Counters of a shard's work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Records submitted to the log (one per turn with something to persist).
    pub wal_records: u64,
    /// Entries written to the log.
    pub wal_entries: u64,
    /// Record bytes written to the log (headers and padding included).
    pub wal_bytes: u64,
    /// Log segments collected (deleted or kept to be recycled): every group compacted past
    /// their entries.
    pub wal_segments_collected: u64,
    /// `fdatasync`s the log completed (one covers every record submitted before it).
    pub wal_syncs: u64,
    /// Frames handed to the transport.
    pub frames_sent: u64,
    /// Core messages sent (coalesced heartbeats count one per group).
    pub messages_sent: u64,
    /// Log entries sent in AppendEntries messages.
    pub entries_sent: u64,
    /// Core messages received.
    pub messages_received: u64,
    /// Frames the transport refused (queue full): their messages are dropped, Raft resends.
    pub frames_refused: u64,
    /// Messages for groups this shard does not hold.
    pub unknown_group_messages: u64,
    /// Messages the core refused as malformed, or could not take yet.
    pub rejected_messages: u64,
    /// Entries applied to state machines.
    pub entries_applied: u64,
    /// Ranges of entries read back from the log for a follower (evicted from memory).
    pub log_fetches: u64,
    /// Groups on this shard.
    pub groups: u64,
    /// Groups quiesced now (idle: not ticked, sending nothing).
    pub groups_quiesced: u64,
    /// Groups this node leads now.
    pub leaders: u64,
    /// Times a replica here became leader.
    pub elections_won: u64,
    /// Peer nodes not heard from for an election timeout, now.
    pub peers_silent: u64,
    /// Snapshots of state machines written here (the log compacted behind each).
    pub snapshots_taken: u64,
    /// Snapshot chunks read here for followers.
    pub snapshot_chunks_sent: u64,
    /// Snapshots received from a leader and installed here.
    pub snapshots_installed: u64,
}

impl ShardStats {
    /// Adds `other`'s counters to these.
    pub fn add(&mut self, other: &ShardStats) {
        let ShardStats {
            wal_records,
            wal_entries,
            wal_bytes,
            wal_segments_collected,
            wal_syncs,
            frames_sent,
            messages_sent,
            entries_sent,
            messages_received,
            frames_refused,
            unknown_group_messages,
            rejected_messages,
            entries_applied,
            log_fetches,
            groups,
            groups_quiesced,
            leaders,
            elections_won,
            peers_silent,
            snapshots_taken,
            snapshot_chunks_sent,
            snapshots_installed,
        } = *other;
        self.wal_records += wal_records;
        self.wal_entries += wal_entries;
        self.wal_bytes += wal_bytes;
        self.wal_segments_collected += wal_segments_collected;
        self.wal_syncs += wal_syncs;
        self.frames_sent += frames_sent;
        self.messages_sent += messages_sent;
        self.entries_sent += entries_sent;
        self.messages_received += messages_received;
        self.frames_refused += frames_refused;
        self.unknown_group_messages += unknown_group_messages;
        self.rejected_messages += rejected_messages;
        self.entries_applied += entries_applied;
        self.log_fetches += log_fetches;
        self.groups += groups;
        self.groups_quiesced += groups_quiesced;
        self.leaders += leaders;
        self.elections_won += elections_won;
        self.peers_silent += peers_silent;
        self.snapshots_taken += snapshots_taken;
        self.snapshot_chunks_sent += snapshot_chunks_sent;
        self.snapshots_installed += snapshots_installed;
    }
}
