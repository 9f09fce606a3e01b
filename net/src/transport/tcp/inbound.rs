//! The receiving side: accept, handshake, then read, check and deliver data frames, and
//! acknowledge them.
//!
//! Each frame is read header first; the header's checks (including the body length against
//! the maximum) pass before a receive buffer is sized for the body. The body is read
//! straight into a pooled aligned buffer, checked by crc and by rkyv validation once, and
//! handed to the consumer in place. Any failure closes this connection only, with the
//! reason logged and reported; the listener and every other connection carry on.
//!
//! Slots are bounded: connections in all (`inbound_connections_max`), connections still in
//! their handshake (`handshakes_max`), an idle timeout on every read (a peer that vanished
//! without a reset frees its slot), and a newer connection from the same peer shard
//! replaces an older one.

use std::cell::Cell;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite};
use glommio::net::{TcpListener, TcpStream};

use super::io::{read_handshake_frame, read_header, with_timeout, write_control_frame};
use super::{InboundTask, Shared};
use crate::error::{ConnectionError, HandshakeError};
use crate::frame::FrameKind;
use crate::handshake::{Hello, RefuseReason};
use crate::transport::notify::Notify;
use crate::transport::received::{ReceiveBuffers, ReceivedFrame};
use crate::transport::{Direction, NodeId, TransportEvent, check_addressing};

/// Frames read in a row before the reader yields to the connection's ack writer and to
/// other tasks.
const FRAMES_PER_YIELD: u32 = 16;

/// A body is read in steps of this size, so a peer that claims a large body and stalls
/// pins only what it sent plus one step.
const BODY_READ_STEP_BYTES: usize = 1 << 20;

/// Accepts connections until the transport shuts down.
pub(super) async fn accept_loop(shared: Rc<Shared>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                // Out of descriptors, say: wait a little instead of spinning.
                log::warn!("node {}: accept failed: {error}", shared.config.node_id);
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let config = &shared.config;
        let mut tasks = shared.inbound_tasks.borrow_mut();
        tasks.retain(|inbound| !inbound.finished.get());
        if tasks.len() >= config.inbound_connections_max
            || shared.handshakes.get() >= config.handshakes_max
        {
            log::warn!(
                "node {}: refusing a connection: {} inbound connections, {} in their handshake",
                config.node_id,
                tasks.len(),
                shared.handshakes.get()
            );
            continue;
        }
        let finished = Rc::new(Cell::new(false));
        let peer = Rc::new(Cell::new(None));
        let task = glommio::spawn_local(serve_connection(
            Rc::clone(&shared),
            stream,
            Rc::clone(&finished),
            Rc::clone(&peer),
        ));
        tasks.push(InboundTask {
            finished,
            peer,
            task,
        });
    }
}

async fn serve_connection(
    shared: Rc<Shared>,
    stream: TcpStream,
    finished: Rc<Cell<bool>>,
    peer: Rc<Cell<Option<(NodeId, u32)>>>,
) {
    let error = serve(&shared, stream, &peer).await;
    shared.report_closed(peer.get().map(|(node, _)| node), Direction::Inbound, error);
    finished.set(true);
}

/// Counts a connection as "in its handshake" while alive (also when its task is cancelled).
struct HandshakeSlot<'a>(&'a Cell<usize>);

impl<'a> HandshakeSlot<'a> {
    fn take(handshakes: &'a Cell<usize>) -> HandshakeSlot<'a> {
        handshakes.set(handshakes.get() + 1);
        HandshakeSlot(handshakes)
    }
}

impl Drop for HandshakeSlot<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Serves one inbound connection; returns why it ended.
async fn serve(
    shared: &Shared,
    mut stream: TcpStream,
    peer: &Cell<Option<(NodeId, u32)>>,
) -> ConnectionError {
    let config = &shared.config;
    let fd = stream.as_raw_fd();
    let idle = Duration::from_millis(config.idle_timeout_ms);
    if let Err(error) = stream
        .set_nodelay(true)
        .and_then(|()| stream.set_read_timeout(Some(idle)))
    {
        return ConnectionError::Io(error.into());
    }
    let slot = HandshakeSlot::take(&shared.handshakes);
    let handshake = with_timeout(
        config.handshake_timeout_ms,
        "waiting for the hello",
        async {
            let (kind, body) = read_handshake_frame(&mut stream).await?;
            if kind != FrameKind::Hello {
                return Err(ConnectionError::Handshake(
                    HandshakeError::UnexpectedFrame {
                        expected: FrameKind::Hello,
                        found: kind,
                    },
                ));
            }
            let dialer = Hello::decode(kind, &body)?;
            if let Err(error) = shared
                .hello
                .check_dialer(&dialer, |node| shared.is_peer(node))
            {
                let reason = RefuseReason::for_error(&error).encode();
                // Best effort: the dialer learns why; we close either way.
                let _refusal_sent =
                    write_control_frame(fd, &mut stream, FrameKind::HelloRefuse, 0, &reason).await;
                return Err(error.into());
            }
            let accept = shared.hello.encode();
            write_control_frame(fd, &mut stream, FrameKind::HelloAccept, 0, &accept).await?;
            Ok(dialer)
        },
    );
    let dialer = match handshake.await {
        Ok(dialer) => dialer,
        Err(error) => return error,
    };
    drop(slot);
    peer.set(Some((dialer.node_id, dialer.shard)));
    shared.replace_older_inbound(peer);
    shared.push_event(TransportEvent::Connected {
        peer: dialer.node_id,
        direction: Direction::Inbound,
    });

    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let acks = Acks::default();
    futures_lite::future::or(
        read_loop(shared, dialer.node_id, &mut reader, &acks),
        ack_loop(fd, &mut writer, &acks),
    )
    .await
}

/// What the reader tells the ack writer.
#[derive(Default)]
struct Acks {
    /// The last data frame received.
    received_seq: Cell<u64>,
    ready: Notify,
}

async fn read_loop(
    shared: &Shared,
    peer: NodeId,
    reader: &mut (impl AsyncRead + Unpin),
    acks: &Acks,
) -> ConnectionError {
    let config = &shared.config;
    let mut buffers = ReceiveBuffers::new(config.receive_buffers_max);
    let mut since_yield = 0;
    loop {
        let header = match read_header(reader, config.frame_body_bytes_max).await {
            Ok(header) => header,
            Err(error) => return idle_or(error, config.idle_timeout_ms),
        };
        if header.kind != FrameKind::Data {
            return ConnectionError::Protocol(format!(
                "{:?} frame after the handshake",
                header.kind
            ));
        }
        let expected = acks.received_seq.get() + 1;
        if header.seq != expected {
            return ConnectionError::Protocol(format!(
                "data frame {} where frame {expected} was due",
                header.seq
            ));
        }
        // The length was checked against the maximum by `read_header`; the buffer grows
        // only as the body's bytes arrive.
        let body_len = header.body_len();
        buffers.begin(body_len);
        let mut filled = 0;
        while filled < body_len {
            let next = (filled + BODY_READ_STEP_BYTES).min(body_len);
            if let Err(error) = reader.read_exact(&mut buffers.grow(next)[filled..]).await {
                return idle_or(error.into(), config.idle_timeout_ms);
            }
            filled = next;
        }
        let body = buffers.freeze(body_len);
        let frame = match ReceivedFrame::validate(&header, body) {
            Ok(frame) => frame,
            Err(error) => return error.into(),
        };
        if let Err(error) = check_addressing(&frame, config.node_id, peer) {
            return error;
        }
        shared.push_event(TransportEvent::Received { peer, frame });
        acks.received_seq.set(header.seq);
        acks.ready.notify();
        since_yield += 1;
        if since_yield >= FRAMES_PER_YIELD {
            since_yield = 0;
            futures_lite::future::yield_now().await;
        }
        shared.wait_for_room_to_receive().await;
    }
}

/// A read that timed out is the connection's idle timeout.
fn idle_or(error: ConnectionError, idle_ms: u64) -> ConnectionError {
    match error {
        ConnectionError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            ConnectionError::Idle { idle_ms }
        }
        other => other,
    }
}

/// Acknowledges received frames, one ack for however many arrived since the last.
async fn ack_loop(
    fd: RawFd,
    writer: &mut (impl AsyncWrite + Unpin),
    acks: &Acks,
) -> ConnectionError {
    let mut acked = 0;
    loop {
        acks.ready.wait().await;
        let received = acks.received_seq.get();
        if received > acked {
            if let Err(error) = write_control_frame(fd, writer, FrameKind::Ack, received, &[]).await
            {
                return error;
            }
            acked = received;
        }
    }
}
