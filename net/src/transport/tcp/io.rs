//! Reading and writing frames on a glommio TCP stream: timeouts, headers, the small
//! handshake frames, and vectored writes of many data frames at once.

use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::ConnectionError;
use crate::frame::{FRAME_HEADER_BYTES, FrameHeader, FrameKind, check_body};
use crate::transport::WRITE_IOVECS_MAX;
use crate::transport::sys::send_vectored_nonblocking;

/// Largest body of a handshake frame.
const HANDSHAKE_BODY_BYTES_MAX: u32 = 64;

/// Runs `future`, failing with `Timeout(what)` after `timeout_ms`.
pub(super) async fn with_timeout<T>(
    timeout_ms: u64,
    what: &'static str,
    future: impl Future<Output = Result<T, ConnectionError>>,
) -> Result<T, ConnectionError> {
    futures_lite::future::or(future, async {
        glommio::timer::sleep(Duration::from_millis(timeout_ms)).await;
        Err(ConnectionError::Timeout(what))
    })
    .await
}

/// Reads and checks one frame header.
pub(super) async fn read_header(
    reader: &mut (impl AsyncRead + Unpin),
    body_bytes_max: u32,
) -> Result<FrameHeader, ConnectionError> {
    let mut bytes = [0u8; FRAME_HEADER_BYTES];
    reader.read_exact(&mut bytes).await?;
    Ok(FrameHeader::decode(&bytes, body_bytes_max)?)
}

/// Reads one handshake frame (a small body, checked by its crc).
pub(super) async fn read_handshake_frame(
    reader: &mut (impl AsyncRead + Unpin),
) -> Result<(FrameKind, Vec<u8>), ConnectionError> {
    let header = read_header(reader, HANDSHAKE_BODY_BYTES_MAX).await?;
    let mut body = vec![0u8; header.body_len()];
    reader.read_exact(&mut body).await?;
    check_body(&header, &body)?;
    Ok((header.kind, body))
}

/// Writes one control frame (handshake or ack) on `writer`, whose socket is `fd`.
pub(super) async fn write_control_frame(
    fd: RawFd,
    writer: &mut (impl AsyncWrite + Unpin),
    kind: FrameKind,
    seq: u64,
    body: &[u8],
) -> Result<(), ConnectionError> {
    let header = FrameHeader::for_body(kind, seq, body).encode();
    let mut frame = [0u8; FRAME_HEADER_BYTES + HANDSHAKE_BODY_BYTES_MAX as usize];
    assert!(body.len() <= HANDSHAKE_BODY_BYTES_MAX as usize);
    frame[..FRAME_HEADER_BYTES].copy_from_slice(&header);
    frame[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + body.len()].copy_from_slice(body);
    write_all_vectored(fd, writer, &[&frame[..FRAME_HEADER_BYTES + body.len()]]).await
}

/// Writes every slice, in order, gathering them into as few `sendmsg` calls as the socket
/// allows. When the socket buffer is full, waits for room through the stream's own write
/// (which writes part of the first slice), then goes back to gathering. `fd` must be the
/// socket of `writer`, which the caller keeps open for the duration.
pub(super) async fn write_all_vectored(
    fd: RawFd,
    writer: &mut (impl AsyncWrite + Unpin),
    slices: &[&[u8]],
) -> Result<(), ConnectionError> {
    assert!(slices.len() <= WRITE_IOVECS_MAX);
    let mut first = 0; // the first slice not fully written
    let mut offset = 0; // bytes of `slices[first]` already written
    let mut window: [&[u8]; WRITE_IOVECS_MAX] = [&[]; WRITE_IOVECS_MAX];
    // Skip empty slices so that the first slice of each call has bytes to write.
    while first < slices.len() && slices[first].is_empty() {
        first += 1;
    }
    while first < slices.len() {
        let count = slices.len() - first;
        window[0] = &slices[first][offset..];
        window[1..count].copy_from_slice(&slices[first + 1..]);
        let written = match send_vectored_nonblocking(fd, &window[..count]) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
            Ok(written) => written,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                let written = writer.write(window[0]).await?;
                if written == 0 {
                    return Err(io::Error::from(io::ErrorKind::WriteZero).into());
                }
                written
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => 0,
            Err(error) => return Err(error.into()),
        };
        // Advance past what was written.
        let mut remaining = written;
        while remaining > 0 {
            let left_in_first = slices[first].len() - offset;
            if remaining >= left_in_first {
                remaining -= left_in_first;
                first += 1;
                offset = 0;
            } else {
                offset += remaining;
                remaining = 0;
            }
        }
        // Skip empty slices so the loop ends.
        while first < slices.len() && slices[first].len() == offset {
            first += 1;
            offset = 0;
        }
    }
    Ok(())
}
