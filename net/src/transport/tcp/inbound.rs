//! The receiving side: accept, handshake, then read, check and deliver data frames, and
//! acknowledge them.
//!
//! Each frame is read header first; the header's checks (including the body length against
//! the maximum) pass before a receive buffer is sized for the body. The body is read
//! straight into a pooled aligned buffer, checked by crc and by rkyv validation once, and
//! handed to the consumer in place. Any failure closes this connection only, with the
//! reason logged and reported; the listener and every other connection carry on.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite};
use glommio::net::{TcpListener, TcpStream};

use super::Shared;
use super::io::{read_handshake_frame, read_header, with_timeout, write_control_frame};
use crate::error::{ConnectionError, HandshakeError};
use crate::frame::FrameKind;
use crate::handshake::{Hello, RefuseReason};
use crate::transport::notify::Notify;
use crate::transport::received::{ReceiveBuffers, ReceivedFrame};
use crate::transport::{Direction, NodeId, TransportEvent, check_addressing};

/// Frames read in a row before the reader yields to the connection's ack writer and to
/// other tasks.
const FRAMES_PER_YIELD: u32 = 16;

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
        let mut tasks = shared.inbound_tasks.borrow_mut();
        tasks.retain(|(finished, _)| !finished.get());
        if tasks.len() >= shared.config.inbound_connections_max {
            log::warn!(
                "node {}: refusing a connection: {} inbound connections already",
                shared.config.node_id,
                tasks.len()
            );
            continue;
        }
        let finished = Rc::new(Cell::new(false));
        let task = glommio::spawn_local(serve_connection(
            Rc::clone(&shared),
            stream,
            Rc::clone(&finished),
        ));
        tasks.push((finished, task));
    }
}

async fn serve_connection(shared: Rc<Shared>, stream: TcpStream, finished: Rc<Cell<bool>>) {
    let mut peer = None;
    let error = serve(&shared, stream, &mut peer).await;
    shared.report_closed(peer, Direction::Inbound, error);
    finished.set(true);
}

/// Serves one inbound connection; returns why it ended.
async fn serve(
    shared: &Shared,
    mut stream: TcpStream,
    peer: &mut Option<NodeId>,
) -> ConnectionError {
    let config = &shared.config;
    if let Err(error) = stream.set_nodelay(true) {
        return ConnectionError::Io(std::io::Error::other(error.to_string()));
    }
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
                    write_control_frame(&mut stream, FrameKind::HelloRefuse, 0, &reason).await;
                return Err(error.into());
            }
            write_control_frame(
                &mut stream,
                FrameKind::HelloAccept,
                0,
                &shared.hello.encode(),
            )
            .await?;
            Ok(dialer.node_id)
        },
    );
    let node = match handshake.await {
        Ok(node) => node,
        Err(error) => return error,
    };
    *peer = Some(node);
    shared.push_event(TransportEvent::Connected {
        peer: node,
        direction: Direction::Inbound,
    });

    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let acks = Acks::default();
    futures_lite::future::or(
        read_loop(shared, node, &mut reader, &acks),
        ack_loop(&mut writer, &acks),
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
            Err(error) => return error,
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
        // The length was checked against the maximum by `read_header`; only now is a
        // buffer sized for it.
        let body = buffers.writable(header.body_len());
        if let Err(error) = reader.read_exact(body).await {
            return error.into();
        }
        let body = buffers.freeze(header.body_len());
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

/// Acknowledges received frames, one ack for however many arrived since the last.
async fn ack_loop(writer: &mut (impl AsyncWrite + Unpin), acks: &Acks) -> ConnectionError {
    let mut acked = 0;
    loop {
        acks.ready.wait().await;
        let received = acks.received_seq.get();
        if received > acked {
            if let Err(error) = write_control_frame(writer, FrameKind::Ack, received, &[]).await {
                return error;
            }
            acked = received;
        }
    }
}
