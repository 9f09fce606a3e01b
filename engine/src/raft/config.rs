//! The configuration of one Raft group replica, and its validation.
//!
//! Time is counted in ticks: the driver calls `RaftGroup::tick` at a fixed rate (the engine's
//! default is one tick per 10 ms) and every timeout below is a number of ticks.

use crate::raft::types::NodeId;

/// How one replica of a group behaves. Build it with [`Config::new`] and adjust fields; the
/// group checks it with [`Config::validate`] when it is created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This replica's node.
    pub id: NodeId,
    /// The base election timeout: a follower that hears nothing from a leader for a random
    /// number of ticks in `[base, 2·base)` starts an election.
    pub election_timeout_ticks: u32,
    /// A leader sends heartbeats this often. Must be below the election timeout.
    pub heartbeat_interval_ticks: u32,
    /// Run a pre-vote round before a real election, so that a node cut off from the
    /// cluster does not raise the term and depose a healthy leader when it comes back
    /// (Raft thesis §9.6).
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum for an election timeout steps down, and a
    /// follower that heard from a leader within the base election timeout ignores votes
    /// (thesis §6.2). Required for lease reads.
    pub check_quorum: bool,
    /// How long a lease read may rely on the last heartbeat round a quorum acknowledged,
    /// counted from when that round was sent. Must stay below the election timeout by the
    /// worst clock drift between nodes: with drift ρ, at most `(base − 1)·(1−ρ)/(1+ρ)` (a
    /// follower's promise starts when a heartbeat arrives and its next tick may come at once,
    /// so it lasts at least `base − 1` of its ticks).
    pub lease_ticks: u32,
    /// At most this many AppendEntries messages unacknowledged per follower.
    pub inflight_messages_max: usize,
    /// At most this many entry bytes unacknowledged per follower.
    pub inflight_bytes_max: usize,
    /// At most this many entries in one AppendEntries message.
    pub append_entries_max: usize,
    /// At most this many entry bytes in one AppendEntries message (one entry is always
    /// allowed, whatever its size, up to `proposal_bytes_max`).
    pub append_bytes_max: usize,
    /// A proposal larger than this is refused with `ProposalTooLarge`.
    pub proposal_bytes_max: usize,
    /// At most this many committed entries handed out for apply in one `Ready`.
    pub apply_entries_max: usize,
    /// Applied, durable entries are evicted from memory once no follower is expected to
    /// need them (followers and candidates keep none, a leader those some follower lacks);
    /// beyond this many entries a leader evicts even those, and reads them back through the
    /// driver when a follower needs them (`Ready::fetches`).
    pub log_cache_entries_max: usize,
    /// The same bound in entry bytes.
    pub log_cache_bytes_max: usize,
    /// A leader whose group has been idle for this many ticks (every follower holds the
    /// whole log and knows it is committed, no read or transfer waits) tells its followers
    /// to quiesce, and the group stops ticking: no heartbeats, no election timer, until any
    /// message, proposal or read wakes it. 0 never quiesces. A driver that enables this must
    /// wake the quiesced groups of a leader it stops hearing from ([`RaftGroup::wake`]):
    /// quiesced followers do not notice a dead leader by themselves.
    ///
    /// [`RaftGroup::wake`]: crate::raft::RaftGroup::wake
    pub quiesce_after_ticks: u32,
    /// `compact(index)` keeps this many entries before `index` in the log, so that
    /// followers a little behind get entries rather than a whole snapshot.
    pub compaction_tail_entries: usize,
    /// At most this many snapshot bytes in one InstallSnapshot message.
    pub snapshot_chunk_bytes_max: usize,
    /// `add_voter` promotes a learner once its log is within this many entries of the
    /// leader's.
    pub learner_catch_up_lag_entries: usize,
    /// A verification (`propose_verify`) reports with the hashes it has after this many
    /// ticks, even if some replica has not answered.
    pub verify_timeout_ticks: u32,
    /// Seeds the replica's random election timeouts; give each replica a different one.
    pub seed: u64,
}

/// Defaults, chosen for a 10 ms tick: elections after 1–2 s of silence, heartbeats every
/// 100 ms, lease reads valid for 500 ms after a confirmed heartbeat round.
pub const ELECTION_TIMEOUT_TICKS_DEFAULT: u32 = 100;
/// See [`ELECTION_TIMEOUT_TICKS_DEFAULT`].
pub const HEARTBEAT_INTERVAL_TICKS_DEFAULT: u32 = 10;

impl Config {
    /// A configuration for node `id` with the defaults; `seed` should differ per replica.
    #[must_use]
    pub fn new(id: NodeId, seed: u64) -> Config {
        Config {
            id,
            election_timeout_ticks: ELECTION_TIMEOUT_TICKS_DEFAULT,
            heartbeat_interval_ticks: HEARTBEAT_INTERVAL_TICKS_DEFAULT,
            pre_vote: true,
            check_quorum: true,
            lease_ticks: ELECTION_TIMEOUT_TICKS_DEFAULT / 2,
            inflight_messages_max: 256,
            inflight_bytes_max: 64 << 20,
            append_entries_max: 4096,
            append_bytes_max: 1 << 20,
            proposal_bytes_max: 8 << 20,
            apply_entries_max: 4096,
            log_cache_entries_max: 1024,
            log_cache_bytes_max: 1 << 20,
            quiesce_after_ticks: 0,
            compaction_tail_entries: 1024,
            snapshot_chunk_bytes_max: 1 << 20,
            learner_catch_up_lag_entries: 64,
            verify_timeout_ticks: 2 * ELECTION_TIMEOUT_TICKS_DEFAULT,
            seed,
        }
    }

    /// Checks that the values make sense together.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first field that is wrong and why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |field: &'static str, reason: &'static str| Err(ConfigError { field, reason });
        if self.heartbeat_interval_ticks == 0 {
            return invalid("heartbeat_interval_ticks", "must be at least 1");
        }
        if self.election_timeout_ticks <= self.heartbeat_interval_ticks {
            return invalid(
                "election_timeout_ticks",
                "must be greater than heartbeat_interval_ticks",
            );
        }
        if self.election_timeout_ticks > u32::MAX / 2 {
            return invalid("election_timeout_ticks", "must be at most u32::MAX / 2");
        }
        if self.lease_ticks >= self.election_timeout_ticks {
            return invalid("lease_ticks", "must be less than election_timeout_ticks");
        }
        if self.inflight_messages_max == 0 {
            return invalid("inflight_messages_max", "must be at least 1");
        }
        if self.inflight_bytes_max == 0 {
            return invalid("inflight_bytes_max", "must be at least 1");
        }
        if self.append_entries_max == 0 {
            return invalid("append_entries_max", "must be at least 1");
        }
        if self.append_bytes_max == 0 {
            return invalid("append_bytes_max", "must be at least 1");
        }
        if self.snapshot_chunk_bytes_max == 0 {
            return invalid("snapshot_chunk_bytes_max", "must be at least 1");
        }
        if self.verify_timeout_ticks == 0 {
            return invalid("verify_timeout_ticks", "must be at least 1");
        }
        if self.apply_entries_max == 0 {
            return invalid("apply_entries_max", "must be at least 1");
        }
        if self.quiesce_after_ticks > 0 && !(self.pre_vote && self.check_quorum) {
            // A follower woken for no good reason campaigns while its leader sleeps: only a
            // pre-vote round (answered by a leader it wakes) keeps it from deposing it.
            return invalid(
                "quiesce_after_ticks",
                "needs pre_vote and check_quorum (a woken follower must not depose a quiesced leader)",
            );
        }
        Ok(())
    }
}

/// A configuration value that cannot work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid raft configuration: {field} {reason}")]
pub struct ConfigError {
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}
