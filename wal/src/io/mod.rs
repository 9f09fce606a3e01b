//! Write-path I/O: the io_uring writer and the aligned buffers it lends to the kernel.
//!
//! **Boundary:** nothing here knows the record format; callers hand in descriptors,
//! offsets and a closure that encodes the bytes.

pub(crate) mod aligned;
pub(crate) mod uring;
