//! The in-memory transport: the [`Transport`] interface without sockets, for tests and
//! simulation.
//!
//! A [`MemoryNetwork`] connects any number of [`MemoryTransport`] endpoints. Frames take
//! the same path as over TCP except the socket: encoded and bounded by the same send queue
//! on the sender, stamped with a sequence number, then decoded, crc-checked and validated
//! on the receiver, which reads them in place. A frame is delivered when its receiver
//! polls. Faults are explicit: [`MemoryNetwork::disconnect`] breaks the "connection"
//! between two nodes (queued frames are reported lost, as TCP would), and
//! [`MemoryNetwork::partition`] keeps it broken until [`MemoryNetwork::heal`].
//!
//! **Boundary:** deterministic: no threads, clocks or randomness. Thread-safe (a mutex), so
//! endpoints may live on different threads.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::codec::MessageBatch;
use crate::error::{ConnectionError, SendError};
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
    /// Events waiting for each endpoint's next poll (losses, closed connections).
    events: BTreeMap<NodeId, Vec<TransportEvent>>,
    /// The configuration of each endpoint.
    configs: BTreeMap<NodeId, TransportConfig>,
    /// Frames in transit per (from, to).
    links: BTreeMap<(NodeId, NodeId), Link>,
    /// Node pairs that cannot reach each other (stored as (smaller, larger)).
    partitions: BTreeSet<(NodeId, NodeId)>,
}

struct Link {
    queue: SendQueue,
    /// Sequence number of the last frame delivered on this link.
    delivered_seq: u64,
}

impl MemoryNetwork {
    /// An empty network.
    pub fn new() -> MemoryNetwork {
        MemoryNetwork::default()
    }

    /// Adds the endpoint described by `config` (its `node_id` must be new).
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
    /// are reported lost to their senders, with a closed connection.
    pub fn disconnect(&self, a: NodeId, b: NodeId) {
        let mut hub = self.lock();
        hub.break_link(a, b);
        hub.break_link(b, a);
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
    fn break_link(&mut self, from: NodeId, to: NodeId) {
        let Some(link) = self.links.get_mut(&(from, to)) else {
            return;
        };
        let lost = link.queue.drain_ids();
        let error = ConnectionError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let events = self.events.entry(from).or_default();
        events.push(TransportEvent::ConnectionClosed {
            peer: Some(to),
            direction: Direction::Outbound,
            error,
        });
        if !lost.is_empty() {
            events.push(TransportEvent::FramesLost {
                peer: to,
                frames: lost,
            });
        }
    }
}

/// One node's endpoint on a [`MemoryNetwork`].
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
        });
        if !link.queue.has_room() {
            return Err(SendError::QueueFull { peer });
        }
        let buffer = link.queue.take_spare();
        let frame = config.encode_for(peer, batch, buffer)?;
        let id = link.queue.push(frame, batch.has_snapshot_chunk());
        if hub.partitions.contains(&(local.min(peer), local.max(peer))) {
            hub.break_link(local, peer);
        }
        Ok(id)
    }

    fn poll_events(&mut self, events: &mut Vec<TransportEvent>) {
        let local = self.config.node_id;
        let mut hub = self.network.lock();
        let Hub {
            events: pending,
            links,
            ..
        } = &mut *hub;
        events.append(pending.entry(local).or_default());
        for (&(from, to), link) in links.iter_mut() {
            if to != local {
                continue;
            }
            while let Some(mut queued) = link.queue.pop(true) {
                link.delivered_seq += 1;
                queued.frame.stamp(link.delivered_seq);
                let id = queued.id;
                let bytes = Bytes::from_owner(queued.frame.into_buffer());
                match decode(&bytes, self.config.frame_body_bytes_max) {
                    Ok(frame) => events.push(TransportEvent::Received { peer: from, frame }),
                    Err(error) => {
                        // A sender whose limits exceed ours: what TCP would do, minus the
                        // socket: close, and tell the sender its frame was lost.
                        let error = ConnectionError::Frame(error);
                        log::warn!("node {local}: frame from node {from} refused: {error}");
                        events.push(TransportEvent::ConnectionClosed {
                            peer: Some(from),
                            direction: Direction::Inbound,
                            error,
                        });
                        pending
                            .entry(from)
                            .or_default()
                            .push(TransportEvent::FramesLost {
                                peer: local,
                                frames: vec![id],
                            });
                    }
                }
            }
        }
    }
}

/// The receiving half of the TCP path, minus the socket.
fn decode(frame: &Bytes, body_bytes_max: u32) -> Result<ReceivedFrame, crate::error::FrameError> {
    let header_bytes: &[u8; FRAME_HEADER_BYTES] = frame[..FRAME_HEADER_BYTES]
        .try_into()
        .expect("a stamped frame has a header");
    let header = FrameHeader::decode(header_bytes, body_bytes_max)?;
    ReceivedFrame::validate(&header, frame.slice(FRAME_HEADER_BYTES..))
}
