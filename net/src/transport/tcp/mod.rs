//! The TCP transport, on the glommio executor of the shard that owns it.
//!
//! One outbound connection per peer node (this shard → that node), dialed lazily when the
//! first frame is queued, redialed after a failure with capped exponential backoff and
//! jitter; data frames flow out on it, acks flow back. Inbound connections are accepted on
//! the listening socket, checked by the handshake, and their frames validated and queued as
//! [`TransportEvent::Received`]. See [`outbound`] and [`inbound`].
//!
//! Everything lives on one thread: state is `Rc`/`RefCell`, tasks are glommio local tasks
//! owned by the transport and cancelled when it shuts down or is dropped (glommio drops a
//! cancelled task's future, and so closes its socket, the next time the executor runs).
//!
//! Memory is bounded by [`TransportConfig`]: queued frames per peer, received frames not
//! yet polled (in bytes), pooled buffers per connection, connections and handshakes.
//!
//! Data and control frames are written with `MSG_NOSIGNAL`; the fallback write used when a
//! socket buffer is full goes through glommio, which does not set it: a process embedding
//! the transport must ignore `SIGPIPE`, as Rust programs do by default.
//!
//! **Boundary:** the transport never interprets messages beyond their addressing; it never
//! blocks its thread; it never panics on what a peer sends.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

use glommio::Task;
use glommio::net::TcpListener;

use crate::codec::MessageBatch;
use crate::error::{ConnectionError, SendError, StartError};
use crate::handshake::Hello;
use crate::transport::notify::{Notify, WaitQueue};
use crate::transport::send_queue::SendQueue;
use crate::transport::{Direction, FrameId, NodeId, Transport, TransportConfig, TransportEvent};

mod inbound;
mod io;
mod outbound;

/// Events other than received frames kept for `poll_events` before connections closed
/// ahead of their handshake are only logged (a port scanner must not grow memory).
const ANONYMOUS_EVENTS_PENDING_MAX: usize = 1024;

/// One inbound connection's task and what the accept loop and its peers need to know of it.
struct InboundTask {
    /// Set by the task when it ends.
    finished: Rc<Cell<bool>>,
    /// The peer's (node, shard) once its handshake completed.
    peer: Rc<Cell<Option<(NodeId, u32)>>>,
    task: Task<()>,
}

/// A [`Transport`] over TCP. Create it inside the glommio executor that will use it.
pub struct TcpTransport {
    shared: Rc<Shared>,
    local_addr: Option<SocketAddr>,
}

/// State shared by the transport and its tasks.
pub(crate) struct Shared {
    pub(crate) config: TransportConfig,
    pub(crate) hello: Hello,
    events: RefCell<Vec<TransportEvent>>,
    /// Bytes of the `Received` frames in `events`.
    received_bytes_pending: Cell<usize>,
    /// Inbound readers waiting for `received_bytes_pending` to drop.
    receive_room: WaitQueue,
    /// Inbound connections in their handshake.
    handshakes: Cell<usize>,
    events_ready: Notify,
    peers: RefCell<HashMap<NodeId, Rc<Peer>>>,
    tasks: RefCell<Vec<Task<()>>>,
    inbound_tasks: RefCell<Vec<InboundTask>>,
    closed: Cell<bool>,
}

/// One peer node, as seen by the sending side.
pub(crate) struct Peer {
    pub(crate) id: NodeId,
    pub(crate) addr: Cell<SocketAddr>,
    pub(crate) queue: RefCell<SendQueue>,
    /// Wakes the peer's connection task: a frame was queued or the window opened.
    pub(crate) work: Notify,
    task_started: Cell<bool>,
}

impl TcpTransport {
    /// Starts the transport on the current glommio executor, listening on `listen` if
    /// given (port 0 picks a free port; see [`TcpTransport::local_addr`]).
    pub fn start(
        config: TransportConfig,
        listen: Option<SocketAddr>,
    ) -> Result<TcpTransport, StartError> {
        config.validate()?;
        let hello = Hello::new(config.cluster_id, config.node_id, config.shard);
        let shared = Rc::new(Shared {
            config,
            hello,
            events: RefCell::new(Vec::new()),
            received_bytes_pending: Cell::new(0),
            receive_room: WaitQueue::default(),
            handshakes: Cell::new(0),
            events_ready: Notify::default(),
            peers: RefCell::new(HashMap::new()),
            tasks: RefCell::new(Vec::new()),
            inbound_tasks: RefCell::new(Vec::new()),
            closed: Cell::new(false),
        });
        let mut local_addr = None;
        if let Some(addr) = listen {
            let listener = TcpListener::bind(addr).map_err(|error| StartError::Listen {
                addr,
                source: std::io::Error::other(error.to_string()),
            })?;
            local_addr = Some(listener.local_addr().map_err(|error| StartError::Listen {
                addr,
                source: std::io::Error::other(error.to_string()),
            })?);
            let task = glommio::spawn_local(inbound::accept_loop(Rc::clone(&shared), listener));
            shared.tasks.borrow_mut().push(task);
        }
        Ok(TcpTransport { shared, local_addr })
    }

    /// The address the transport listens on, if it listens.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Adds `node` as a peer reachable at `addr`, or changes its address (used from the
    /// next dial on). Only peers may connect to this node.
    pub fn set_peer(&self, node: NodeId, addr: SocketAddr) {
        let mut peers = self.shared.peers.borrow_mut();
        if let Some(peer) = peers.get(&node) {
            peer.addr.set(addr);
            return;
        }
        let config = &self.shared.config;
        let peer = Peer {
            id: node,
            addr: Cell::new(addr),
            queue: RefCell::new(SendQueue::new(
                config.send_queue_frames_max,
                config.send_queue_bytes_max,
            )),
            work: Notify::default(),
            task_started: Cell::new(false),
        };
        peers.insert(node, Rc::new(peer));
    }

    /// Returns once at least one event is waiting for [`Transport::poll_events`]. One task
    /// at a time may wait (the shard loop).
    pub async fn wait_events(&self) {
        while self.shared.events.borrow().is_empty() {
            self.shared.events_ready.wait().await;
        }
    }

    /// Closes every connection and stops every task. Frames still queued are dropped.
    /// Also done on drop.
    pub fn shutdown(&self) {
        self.shared.closed.set(true);
        let tasks = std::mem::take(&mut *self.shared.tasks.borrow_mut());
        let inbound = std::mem::take(&mut *self.shared.inbound_tasks.borrow_mut());
        drop(tasks);
        drop(inbound);
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Transport for TcpTransport {
    fn try_send(&mut self, peer: NodeId, batch: &MessageBatch) -> Result<FrameId, SendError> {
        if self.shared.closed.get() {
            return Err(SendError::Closed);
        }
        let peer = self
            .shared
            .peers
            .borrow()
            .get(&peer)
            .cloned()
            .ok_or(SendError::UnknownPeer(peer))?;
        self.shared.config.check_outgoing(peer.id, batch)?;
        let id = {
            let mut queue = peer.queue.borrow_mut();
            if !queue.has_room() {
                return Err(SendError::QueueFull { peer: peer.id });
            }
            let buffer = queue.take_spare();
            let frame = self.shared.config.encode(batch, buffer)?;
            queue.push(frame, batch.has_snapshot_chunk())
        };
        peer.work.notify();
        if !peer.task_started.replace(true) {
            let task = glommio::spawn_local(outbound::run_peer(Rc::clone(&self.shared), peer));
            self.shared.tasks.borrow_mut().push(task);
        }
        Ok(id)
    }

    fn poll_events(&mut self, events: &mut Vec<TransportEvent>) {
        events.append(&mut self.shared.events.borrow_mut());
        self.shared.received_bytes_pending.set(0);
        self.shared.receive_room.wake_all();
    }
}

/// A close that happens in normal operation: an idle connection, a replaced one, or a peer
/// that hung up with nothing in flight.
fn is_routine(error: &ConnectionError) -> bool {
    match error {
        ConnectionError::Idle { .. } | ConnectionError::Replaced => true,
        ConnectionError::Io(error) => error.kind() == std::io::ErrorKind::UnexpectedEof,
        _ => false,
    }
}

impl Shared {
    pub(crate) fn push_event(&self, event: TransportEvent) {
        if let TransportEvent::Received { frame, .. } = &event {
            let pending = self.received_bytes_pending.get() + frame.body().len();
            self.received_bytes_pending.set(pending);
        }
        self.events.borrow_mut().push(event);
        self.events_ready.notify();
    }

    /// Logs why a connection ended and reports it.
    pub(crate) fn report_closed(
        &self,
        peer: Option<NodeId>,
        direction: Direction,
        error: ConnectionError,
    ) {
        let node = self.config.node_id;
        match peer {
            Some(peer) if is_routine(&error) => {
                log::info!("node {node}: {direction:?} connection with node {peer} closed: {error}")
            }
            Some(peer) => {
                log::warn!("node {node}: {direction:?} connection with node {peer} closed: {error}")
            }
            None => log::warn!(
                "node {node}: {direction:?} connection closed before the handshake: {error}"
            ),
        }
        if peer.is_none() && self.events.borrow().len() >= ANONYMOUS_EVENTS_PENDING_MAX {
            return;
        }
        self.push_event(TransportEvent::ConnectionClosed {
            peer,
            direction,
            error,
        });
    }

    /// Closes the other inbound connections from the peer shard in `peer` (a dialer that
    /// reconnected; its old connection may be half-open).
    fn replace_older_inbound(&self, peer: &Cell<Option<(NodeId, u32)>>) {
        let key = peer.get();
        let replaced: Vec<InboundTask> = {
            let mut tasks = self.inbound_tasks.borrow_mut();
            let (replaced, kept) = std::mem::take(&mut *tasks)
                .into_iter()
                .partition(|inbound| {
                    !std::ptr::eq(Rc::as_ptr(&inbound.peer), peer)
                        && !inbound.finished.get()
                        && inbound.peer.get() == key
                });
            *tasks = kept;
            replaced
        };
        for inbound in replaced {
            let node = inbound.peer.get().map(|(node, _)| node);
            drop(inbound.task); // cancels it; its future is dropped by the executor
            self.report_closed(node, Direction::Inbound, ConnectionError::Replaced);
        }
    }

    pub(crate) fn is_peer(&self, node: NodeId) -> bool {
        self.peers.borrow().contains_key(&node)
    }

    /// Waits while the consumer has not polled `received_bytes_pending_max` bytes of
    /// received frames.
    pub(crate) async fn wait_for_room_to_receive(&self) {
        let max = self.config.received_bytes_pending_max;
        self.receive_room
            .wait_until(|| self.received_bytes_pending.get() < max)
            .await;
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }
}
