//! The in-memory transport: the [`Transport`] interface without sockets, for tests and
//! simulation.
//!
//! A [`MemoryNetwork`] connects any number of [`MemoryTransport`] endpoints. Frames take
//! the same path as over TCP except the socket: encoded and bounded by the same send queue
//! on the sender, stamped with a sequence number, then decoded, crc-checked and validated
//! on the receiver, which reads them in place. A frame is delivered when its receiver
//! polls. Faults are explicit: [`MemoryNetwork::disconnect`] breaks the "connection"
//! between two nodes (queued frames are reported lost, as TCP would), and
//! [`MemoryNetwork::partition`] keeps it broken until [`MemoryNetwork::heal`]; dropping an
//! endpoint is a crash. Connection events (`Connected`, `ConnectionClosed`) and sequence
//! numbers (from 1 on each connection) behave as over TCP.
//!
//! **Boundary:** deterministic: no threads, clocks or randomness. Thread-safe (a mutex), so
//! endpoints may live on different threads.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::codec::MessageBatch;
use crate::error::{ConnectionError, FrameError, SendError};
use crate::frame::{FRAME_HEADER_BYTES, FrameHeader};
use crate::transport::send_queue::SendQueue;
use crate::transport::{
    Direction, FrameId, NodeId, ReceivedFrame, Transport, TransportConfig, TransportEvent,
};

/// A set of in-memory endpoints that can reach each other.
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    hub: Arc<Mutex<Hub>>,
}

#[derive(Default)]
struct Hub {
    /// Events waiting for each endpoint's next poll (losses, connections).
    events: BTreeMap<NodeId, Vec<TransportEvent>>,
    /// The configuration of each live endpoint.
    configs: BTreeMap<NodeId, TransportConfig>,
    /// Frames in transit per (from, to): one simulated connection each.
    links: BTreeMap<(NodeId, NodeId), Link>,
    /// Node pairs that cannot reach each other (stored as (smaller, larger)).
    partitions: BTreeSet<(NodeId, NodeId)>,
}

struct Link {
    queue: SendQueue,
    /// Sequence number of the last frame delivered on the current connection.
    delivered_seq: u64,
    /// The sender was told the connection is up (and the receiver, once it delivered).
    connected_outbound: bool,
    connected_inbound: bool,
}

impl MemoryNetwork {
    /// An empty network.
    pub fn new() -> MemoryNetwork {
        MemoryNetwork::default()
    }

    /// Adds the endpoint described by `config` (its `node_id` must not be live already).
    pub fn endpoint(&self, config: TransportConfig) -> MemoryTransport {
        let node = config.node_id;
        let mut hub = self.lock();
        assert!(
            !hub.configs.contains_key(&node),
            "node {node} joined the network twice"
        );
        hub.configs.insert(node, config.clone());
        hub.events.insert(node, Vec::new());
        MemoryTransport {
            network: self.clone(),
            config,
        }
    }

    /// Breaks the connections between `a` and `b` in both directions: frames in transit
    /// are reported lost to their senders, and both ends see the connection close.
    pub fn disconnect(&self, a: NodeId, b: NodeId) {
        let mut hub = self.lock();
        hub.break_link(a, b, None);
        hub.break_link(b, a, None);
    }

    /// Cuts `a` from `b` until [`MemoryNetwork::heal`]: frames between them are lost.
    pub fn partition(&self, a: NodeId, b: NodeId) {
        self.disconnect(a, b);
        self.lock().partitions.insert((a.min(b), a.max(b)));
    }

    /// Ends a partition between `a` and `b`.
    pub fn heal(&self, a: NodeId, b: NodeId) {
        self.lock().partitions.remove(&(a.min(b), a.max(b)));
    }

    fn lock(&self) -> MutexGuard<'_, Hub> {
        self.hub
            .lock()
            .expect("memory network mutex poisoned by a panicking thread")
    }
}

impl Hub {
    /// Ends the connection `from` → `to`: its queued frames (and `refused`, a frame taken
    /// off it and refused by the receiver) are reported lost to `from`, and each end that
    /// saw the connection open sees it close.
    fn break_link(&mut self, from: NodeId, to: NodeId, refused: Option<(FrameId, FrameError)>) {
        let Some(link) = self.links.get_mut(&(from, to)) else {
            return;
        };
        let mut lost = link.queue.drain_ids();
        let (was_outbound, was_inbound) = (link.connected_outbound, link.connected_inbound);
        link.delivered_seq = 0;
        link.connected_outbound = false;
        link.connected_inbound = false;
        let inbound_error = match refused {
            Some((id, error)) => {
                lost.push(id);
                lost.sort_unstable();
                ConnectionError::Frame(error)
            }
            None => reset(),
        };
        if was_inbound {
            self.events
                .entry(to)
                .or_default()
                .push(TransportEvent::ConnectionClosed {
                    peer: Some(from),
                    direction: Direction::Inbound,
                    error: inbound_error,
                });
        }
        let events = self.events.entry(from).or_default();
        if was_outbound {
            events.push(TransportEvent::ConnectionClosed {
                peer: Some(to),
                direction: Direction::Outbound,
                error: reset(),
            });
        }
        if !lost.is_empty() {
            events.push(TransportEvent::FramesLost {
                peer: to,
                frames: lost,
            });
        }
    }
}

fn reset() -> ConnectionError {
    ConnectionError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
}

/// One node's endpoint on a [`MemoryNetwork`]. Dropping it is a crash: frames to and from
/// it are reported lost to their senders.
pub struct MemoryTransport {
    network: MemoryNetwork,
    config: TransportConfig,
}

impl Transport for MemoryTransport {
    fn try_send(&mut self, peer: NodeId, batch: &MessageBatch) -> Result<FrameId, SendError> {
        let local = self.config.node_id;
        let mut hub = self.network.lock();
        if !hub.configs.contains_key(&peer) || peer == local {
            return Err(SendError::UnknownPeer(peer));
        }
        let config = &self.config;
        config.check_outgoing(peer, batch)?;
        let link = hub.links.entry((local, peer)).or_insert_with(|| Link {
            queue: SendQueue::new(config.send_queue_frames_max, config.send_queue_bytes_max),
            delivered_seq: 0,
            connected_outbound: false,
            connected_inbound: false,
        });
        if !link.queue.has_room() {
            return Err(SendError::QueueFull { peer });
        }
        let buffer = link.queue.take_spare();
        let frame = config.encode(batch, buffer)?;
        let id = link.queue.push(frame, batch.has_snapshot_chunk());
        let partitioned = hub.partitions.contains(&(local.min(peer), local.max(peer)));
        if partitioned {
            hub.break_link(local, peer, None);
        } else if !std::mem::replace(
            &mut link_mut(&mut hub, local, peer).connected_outbound,
            true,
        ) {
            hub.events
                .entry(local)
                .or_default()
                .push(TransportEvent::Connected {
                    peer,
                    direction: Direction::Outbound,
                });
        }
        Ok(id)
    }

    fn poll_events(&mut self, events: &mut Vec<TransportEvent>) {
        let local = self.config.node_id;
        let mut hub = self.network.lock();
        let senders: Vec<NodeId> = hub
            .links
            .keys()
            .filter(|(_, to)| *to == local)
            .map(|(from, _)| *from)
            .collect();
        for from in senders {
            while let Some(mut queued) = link_mut(&mut hub, from, local).queue.pop(true) {
                let link = link_mut(&mut hub, from, local);
                link.delivered_seq += 1;
                queued.frame.stamp(link.delivered_seq);
                let first = !std::mem::replace(&mut link.connected_inbound, true);
                let bytes = Bytes::from_owner(queued.frame.into_buffer());
                match decode(&bytes, self.config.frame_body_bytes_max) {
                    Ok(frame) => {
                        let pending = hub.events.entry(local).or_default();
                        if first {
                            pending.push(TransportEvent::Connected {
                                peer: from,
                                direction: Direction::Inbound,
                            });
                        }
                        pending.push(TransportEvent::Received { peer: from, frame });
                    }
                    Err(error) => {
                        // A sender whose limits exceed ours: what TCP would do, minus the
                        // socket: close the connection, and the sender learns its losses.
                        log::warn!("node {local}: frame from node {from} refused: {error}");
                        hub.break_link(from, local, Some((queued.id, error)));
                        break;
                    }
                }
            }
        }
        events.append(hub.events.entry(local).or_default());
    }
}

impl Drop for MemoryTransport {
    fn drop(&mut self) {
        let local = self.config.node_id;
        let Ok(mut hub) = self.network.hub.lock() else {
            return;
        };
        hub.configs.remove(&local);
        let links: Vec<(NodeId, NodeId)> = hub
            .links
            .keys()
            .filter(|(from, to)| *from == local || *to == local)
            .copied()
            .collect();
        for (from, to) in links {
            hub.break_link(from, to, None);
            hub.links.remove(&(from, to));
        }
        hub.events.remove(&local);
    }
}

fn link_mut(hub: &mut Hub, from: NodeId, to: NodeId) -> &mut Link {
    hub.links.get_mut(&(from, to)).expect("the link exists")
}

/// The receiving half of the TCP path, minus the socket.
fn decode(frame: &Bytes, body_bytes_max: u32) -> Result<ReceivedFrame, FrameError> {
    let header_bytes: &[u8; FRAME_HEADER_BYTES] = frame[..FRAME_HEADER_BYTES]
        .try_into()
        .expect("a stamped frame has a header");
    let header = FrameHeader::decode(header_bytes, body_bytes_max)?;
    ReceivedFrame::validate(&header, frame.slice(FRAME_HEADER_BYTES..))
}
