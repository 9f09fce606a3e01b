//! Which peer nodes a shard still hears from, for quiesced groups.
//!
//! A quiesced group sends nothing and its followers run no election timer, so they would
//! never notice that their leader died. The shard watches nodes instead of groups: every
//! frame from a peer counts as a sign of life, a shard that sent a peer nothing for a
//! heartbeat interval sends it an empty batch (one small frame per node pair, whatever the
//! number of groups), and a peer silent for an election timeout is reported once, so that
//! the shard wakes the quiesced groups it leads ([`crate::raft::RaftGroup::wake`]). Woken
//! followers elect a new leader by the usual rules.
//!
//! Time is the shard's ticks; nothing here reads a clock.

use std::collections::BTreeMap;

use crate::raft::NodeId;

/// What the shard knows of one peer node.
#[derive(Clone, Copy, Debug)]
struct Peer {
    last_heard_tick: u64,
    last_sent_tick: u64,
    /// Reported silent, and not heard from since.
    silent: bool,
}

/// The peers of one shard and when each was last heard from and sent to.
#[derive(Debug)]
pub(crate) struct Liveness {
    ticks: u64,
    keepalive_ticks: u64,
    silence_ticks: u64,
    peers: BTreeMap<NodeId, Peer>,
}

impl Liveness {
    /// Keepalives after `keepalive_ticks` without sending; silence after `silence_ticks`
    /// without hearing.
    pub(crate) fn new(keepalive_ticks: u32, silence_ticks: u32) -> Liveness {
        Liveness {
            ticks: 0,
            keepalive_ticks: u64::from(keepalive_ticks.max(1)),
            silence_ticks: u64::from(silence_ticks.max(1)),
            peers: BTreeMap::new(),
        }
    }

    /// Starts watching `node` (a member of some group here); counts from now.
    pub(crate) fn add_peer(&mut self, node: NodeId) {
        let now = self.ticks;
        self.peers.entry(node).or_insert(Peer {
            last_heard_tick: now,
            last_sent_tick: now,
            silent: false,
        });
    }

    /// A frame arrived from `node`.
    pub(crate) fn heard(&mut self, node: NodeId) {
        if let Some(peer) = self.peers.get_mut(&node) {
            peer.last_heard_tick = self.ticks;
            peer.silent = false;
        }
    }

    /// A frame was handed to the transport for `node`.
    pub(crate) fn sent(&mut self, node: NodeId) {
        if let Some(peer) = self.peers.get_mut(&node) {
            peer.last_sent_tick = self.ticks;
        }
    }

    /// One tick: the peers owed a keepalive go into `keepalive`, the peers that just fell
    /// silent into `silent`.
    pub(crate) fn tick(&mut self, keepalive: &mut Vec<NodeId>, silent: &mut Vec<NodeId>) {
        self.ticks += 1;
        for (&node, peer) in &mut self.peers {
            if self.ticks - peer.last_sent_tick >= self.keepalive_ticks {
                keepalive.push(node);
            }
            if !peer.silent && self.ticks - peer.last_heard_tick >= self.silence_ticks {
                peer.silent = true;
                silent.push(node);
            }
        }
    }

    /// The peers currently reported silent.
    pub(crate) fn silent_peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.peers
            .iter()
            .filter(|(_, peer)| peer.silent)
            .map(|(&node, _)| node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(liveness: &mut Liveness) -> (Vec<NodeId>, Vec<NodeId>) {
        let (mut keepalive, mut silent) = (Vec::new(), Vec::new());
        liveness.tick(&mut keepalive, &mut silent);
        (keepalive, silent)
    }

    #[test]
    fn a_peer_is_kept_alive_and_reported_silent_once() {
        let mut liveness = Liveness::new(2, 5);
        liveness.add_peer(NodeId(2));
        assert_eq!(tick(&mut liveness), (vec![], vec![]));
        assert_eq!(tick(&mut liveness), (vec![NodeId(2)], vec![]));
        liveness.sent(NodeId(2));
        assert_eq!(tick(&mut liveness), (vec![], vec![]));
        liveness.heard(NodeId(2)); // Tick 3.
        for _ in 4..8 {
            assert!(tick(&mut liveness).1.is_empty());
        }
        assert_eq!(
            tick(&mut liveness).1,
            vec![NodeId(2)],
            "silent at tick 3 + 5"
        );
        assert!(tick(&mut liveness).1.is_empty(), "reported once");
        assert_eq!(liveness.silent_peers().collect::<Vec<_>>(), vec![NodeId(2)]);
        liveness.heard(NodeId(2));
        assert_eq!(liveness.silent_peers().count(), 0);
    }

    #[test]
    fn unknown_peers_are_ignored() {
        let mut liveness = Liveness::new(1, 1);
        liveness.heard(NodeId(9));
        liveness.sent(NodeId(9));
        assert_eq!(tick(&mut liveness), (vec![], vec![]));
    }
}
