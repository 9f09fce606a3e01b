//! The one system call the transport makes itself: a non-blocking vectored send.
//!
//! glommio's streams write one slice at a time; gathering many frames into one `sendmsg`
//! is what makes small frames cheap. The socket stays owned by its glommio stream; this
//! module only borrows its descriptor for the call.

use std::io;
use std::os::fd::RawFd;

use crate::transport::WRITE_IOVECS_MAX;

/// Sends as much of `slices` as the socket takes now, without blocking and without
/// raising SIGPIPE. Returns the bytes sent; `WouldBlock` when the socket buffer is full.
pub(crate) fn send_vectored_nonblocking(fd: RawFd, slices: &[&[u8]]) -> io::Result<usize> {
    assert!(slices.len() <= WRITE_IOVECS_MAX, "{} slices", slices.len());
    let mut iovecs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; WRITE_IOVECS_MAX];
    for (iovec, slice) in iovecs.iter_mut().zip(slices) {
        // The kernel only reads through these pointers (sendmsg never writes to iov_base).
        *iovec = libc::iovec {
            iov_base: slice.as_ptr().cast_mut().cast(),
            iov_len: slice.len(),
        };
    }
    // SAFETY: all-zero bytes are a valid `msghdr` (null pointers, zero lengths).
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = iovecs.as_mut_ptr();
    header.msg_iovlen = slices.len();
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    // `header` points at `slices.len()` iovecs, each describing a live slice that outlives
    // the call; sendmsg only reads them, and keeps no reference after it returns.
    // SAFETY: valid header and iovecs (above); `fd` is an open socket the caller holds.
    let sent = unsafe { libc::sendmsg(fd, &header, flags) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(sent).expect("non-negative"))
}
