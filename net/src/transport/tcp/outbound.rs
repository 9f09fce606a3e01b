//! The sending side of one peer: dial, handshake, pipelined vectored writes, acks, and
//! redial with capped exponential backoff and jitter.
//!
//! Frames written and not yet acknowledged are "in flight" (at most
//! `frames_in_flight_max`: the pipeline). When the connection breaks, the frames in flight
//! and those still queued are reported in one [`TransportEvent::FramesLost`].

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::AsyncWrite;
use glommio::net::TcpStream;

use super::io::{
    read_handshake_frame, read_header, with_timeout, write_all_vectored, write_control_frame,
};
use super::{Peer, Shared};
use crate::error::{ConnectionError, HandshakeError};
use crate::frame::FrameKind;
use crate::handshake::{Hello, RefuseReason};
use crate::transport::send_queue::QueuedFrame;
use crate::transport::{Direction, FrameId, TransportEvent, WRITE_IOVECS_MAX};

/// How a connection attempt ended.
struct ConnectionEnd {
    error: ConnectionError,
    /// The handshake completed (so the backoff starts over).
    established: bool,
    /// Frames written and never acknowledged.
    in_flight: Vec<FrameId>,
}

/// The peer's connection task: runs until the transport shuts down.
pub(super) async fn run_peer(shared: Rc<Shared>, peer: Rc<Peer>) {
    let config = &shared.config;
    let mut backoff_ms = config.reconnect_backoff_initial_ms;
    // Jitter from a seed per (node, shard, peer), so that shards and nodes that failed
    // together redial apart.
    let seed = (config.node_id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        ^ (u64::from(config.shard) << 32)
        ^ peer.id.0.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut jitter = JitterRng(seed | 1);
    loop {
        // Lazy: dial only when there is something to send.
        while peer.queue.borrow().is_empty() {
            peer.work.wait().await;
        }
        if shared.is_closed() {
            return;
        }
        let end = connect_and_serve(&shared, &peer).await;
        let mut lost = end.in_flight;
        lost.extend(peer.queue.borrow_mut().drain_ids());
        lost.sort_unstable();
        shared.report_closed(Some(peer.id), Direction::Outbound, end.error);
        if !lost.is_empty() {
            shared.push_event(TransportEvent::FramesLost {
                peer: peer.id,
                frames: lost,
            });
        }
        if end.established {
            backoff_ms = config.reconnect_backoff_initial_ms;
        }
        // Sleep between half and all of the backoff, then double it, up to the cap.
        let delay_ms = backoff_ms / 2 + jitter.below(backoff_ms / 2 + 1);
        glommio::timer::sleep(Duration::from_millis(delay_ms)).await;
        backoff_ms = backoff_ms
            .saturating_mul(2)
            .min(config.reconnect_backoff_max_ms);
    }
}

async fn connect_and_serve(shared: &Shared, peer: &Peer) -> ConnectionEnd {
    let config = &shared.config;
    let addr = peer.addr.get();
    let dial = async {
        let stream =
            TcpStream::connect_timeout(addr, Duration::from_millis(config.connect_timeout_ms))
                .await
                .map_err(|error| ConnectionError::Io(error.into()))?;
        stream
            .set_nodelay(true)
            .map_err(|error| ConnectionError::Io(error.into()))?;
        Ok(stream)
    };
    let mut stream = match dial.await {
        Ok(stream) => stream,
        Err(error) => {
            return ConnectionEnd {
                error,
                established: false,
                in_flight: Vec::new(),
            };
        }
    };
    let fd = stream.as_raw_fd();
    let handshake = with_timeout(
        config.handshake_timeout_ms,
        "waiting for the handshake",
        async {
            let hello = shared.hello.encode();
            write_control_frame(fd, &mut stream, FrameKind::Hello, 0, &hello).await?;
            let (kind, body) = read_handshake_frame(&mut stream).await?;
            match kind {
                FrameKind::HelloAccept => {
                    let acceptor = Hello::decode(kind, &body)?;
                    shared.hello.check_acceptor(&acceptor, peer.id)?;
                    Ok(())
                }
                FrameKind::HelloRefuse => {
                    Err(HandshakeError::Refused(RefuseReason::decode(&body)?).into())
                }
                found => Err(HandshakeError::UnexpectedFrame {
                    expected: FrameKind::HelloAccept,
                    found,
                }
                .into()),
            }
        },
    );
    if let Err(error) = handshake.await {
        return ConnectionEnd {
            error,
            established: false,
            in_flight: Vec::new(),
        };
    }
    shared.push_event(TransportEvent::Connected {
        peer: peer.id,
        direction: Direction::Outbound,
    });

    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let pipeline = Pipeline::default();
    let error = futures_lite::future::or(
        write_loop(shared, peer, fd, &mut writer, &pipeline),
        ack_loop(shared, peer, &mut reader, &pipeline),
    )
    .await;
    let in_flight = pipeline
        .in_flight
        .borrow()
        .iter()
        .map(|&(_, id, _)| id)
        .collect();
    ConnectionEnd {
        error,
        established: true,
        in_flight,
    }
}

/// Frames written on this connection and not yet acknowledged.
#[derive(Default)]
struct Pipeline {
    /// `(connection sequence number, frame, bulk lane)` in write order.
    in_flight: RefCell<VecDeque<(u64, FrameId, bool)>>,
    /// How many of `in_flight` are bulk frames (at most one).
    bulk_in_flight: Cell<usize>,
    /// The sequence number of the last frame written.
    written_seq: Cell<u64>,
}

/// Writes queued frames, many per `sendmsg`, while the pipeline has room. Returns only on
/// an error.
async fn write_loop(
    shared: &Shared,
    peer: &Peer,
    fd: std::os::fd::RawFd,
    writer: &mut (impl AsyncWrite + Unpin),
    pipeline: &Pipeline,
) -> ConnectionError {
    let config = &shared.config;
    let mut batch: Vec<QueuedFrame> = Vec::with_capacity(WRITE_IOVECS_MAX);
    loop {
        let room = loop {
            let room = config
                .frames_in_flight_max
                .saturating_sub(pipeline.in_flight.borrow().len());
            let bulk_allowed = pipeline.bulk_in_flight.get() == 0;
            if room > 0 && peer.queue.borrow().has_ready(bulk_allowed) {
                break room;
            }
            // A connection with nothing to do for half the idle timeout is closed here,
            // before the acceptor's idle timeout could close it under a frame in flight.
            let idle_ms = config.idle_timeout_ms / 2;
            let timed_out = futures_lite::future::or(
                async {
                    peer.work.wait().await;
                    false
                },
                async {
                    glommio::timer::sleep(Duration::from_millis(idle_ms)).await;
                    true
                },
            )
            .await;
            if timed_out && pipeline.in_flight.borrow().is_empty() && peer.queue.borrow().is_empty()
            {
                return ConnectionError::Idle { idle_ms };
            }
        };
        {
            let mut queue = peer.queue.borrow_mut();
            let mut in_flight = pipeline.in_flight.borrow_mut();
            let mut bytes = 0;
            while batch.len() < room.min(WRITE_IOVECS_MAX) && bytes < config.write_bytes_max {
                // One bulk frame (a snapshot chunk) on the wire at a time: an urgent frame
                // queued later waits behind at most that one.
                let bulk_allowed = pipeline.bulk_in_flight.get() == 0;
                let Some(mut queued) = queue.pop(bulk_allowed) else {
                    break;
                };
                if queued.bulk {
                    pipeline
                        .bulk_in_flight
                        .set(pipeline.bulk_in_flight.get() + 1);
                }
                let seq = pipeline.written_seq.get() + 1;
                pipeline.written_seq.set(seq);
                queued.frame.stamp(seq);
                in_flight.push_back((seq, queued.id, queued.bulk));
                bytes += queued.frame.as_bytes().len();
                batch.push(queued);
            }
        }
        assert!(!batch.is_empty(), "woken with room and a non-empty queue");
        let mut slices: [&[u8]; WRITE_IOVECS_MAX] = [&[]; WRITE_IOVECS_MAX];
        for (slice, queued) in slices.iter_mut().zip(&batch) {
            *slice = queued.frame.as_bytes();
        }
        if let Err(error) = write_all_vectored(fd, writer, &slices[..batch.len()]).await {
            return error;
        }
        let mut queue = peer.queue.borrow_mut();
        for queued in batch.drain(..) {
            queue.recycle(queued.frame);
        }
    }
}

/// Reads acks and releases acknowledged frames from the pipeline. Returns only on an
/// error: the socket closed, a malformed frame, or no ack for `ack_timeout_ms` while
/// frames wait for one.
async fn ack_loop(
    shared: &Shared,
    peer: &Peer,
    reader: &mut (impl futures_lite::AsyncRead + Unpin),
    pipeline: &Pipeline,
) -> ConnectionError {
    let config = &shared.config;
    let mut acked = 0u64;
    loop {
        let read = async {
            let header = read_header(reader, 0).await?;
            if header.kind != FrameKind::Ack {
                return Err(ConnectionError::Protocol(format!(
                    "{:?} frame on the ack stream",
                    header.kind
                )));
            }
            Ok(header.seq)
        };
        let watchdog = async {
            // Fails when the oldest frame in flight was already written one full period
            // ago and is still not acknowledged.
            loop {
                let written_before = pipeline.written_seq.get();
                glommio::timer::sleep(Duration::from_millis(config.ack_timeout_ms)).await;
                let oldest = pipeline.in_flight.borrow().front().map(|&(seq, _, _)| seq);
                if oldest.is_some_and(|seq| seq <= written_before) {
                    return Err(ConnectionError::Timeout("waiting for acks"));
                }
            }
        };
        let seq = match futures_lite::future::or(read, watchdog).await {
            Ok(seq) => seq,
            Err(error) => return error,
        };
        if seq < acked || seq > pipeline.written_seq.get() {
            return ConnectionError::Protocol(format!(
                "ack of frame {seq} after ack {acked} with {} frames written",
                pipeline.written_seq.get()
            ));
        }
        acked = seq;
        let mut in_flight = pipeline.in_flight.borrow_mut();
        while let Some(&(written, _, bulk)) = in_flight.front() {
            if written > seq {
                break;
            }
            in_flight.pop_front();
            if bulk {
                pipeline
                    .bulk_in_flight
                    .set(pipeline.bulk_in_flight.get() - 1);
            }
        }
        drop(in_flight);
        peer.work.notify();
    }
}

/// A tiny xorshift generator for backoff jitter (not for anything that must be random).
struct JitterRng(u64);

impl JitterRng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}
